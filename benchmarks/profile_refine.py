"""Where the MLE refinement spends its time, on the CPU or a GPU.

    python benchmarks/profile_refine.py [--device cuda] [--frames 2000] [--block-frames N] [--timing-only]

Runs `napari_dsir.run.reconstruct` (default model, localize, refine) on the
Bundled Tubes HD sequence repeated to ``--frames`` frames, recording every
`napari_dsir.fit.refine` call the run makes (its frames, detections and
keywords, its time synchronised). Then it replays those calls:

- timed again (median of ``--repeats`` replays of all of them);
- under cProfile: the functions with the most time of their own (on a GPU a
  function that waits for the device, ``.item()``, ``.cpu()``, ``nonzero``,
  shows the wait there);
- under torch.profiler: the torch operators with the most CPU time, and how
  many kernels and host-device copies and synchronisations a call makes.

DSIR_SHARED_DATA points at the shared data folder when it is not beside the
checkout. The machine is named in the output.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _machine import describe, sync

import napari_dsir.fit as fit_module
import napari_dsir.reconstruct as reconstruct_module
from napari_dsir.io import open_stack
from napari_dsir.model import load_model
from napari_dsir.run import reconstruct

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("DSIR_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
SEQ = SHARED / "bundled_tubes_hd" / "sequence"


def record_calls(movie, model, device, batch_size):
    """Run the whole path once; return its time and the refine calls it made."""
    calls, original = [], fit_module.refine

    def recording(frames, locs, *args, **kw):
        sync(device)
        t0 = time.perf_counter()
        out = original(frames, locs, *args, **kw)
        sync(device)
        calls.append(dict(frames=frames, locs=locs, args=args, kw=kw, seconds=time.perf_counter() - t0))
        return out

    fit_module.refine = recording
    try:
        t0 = time.perf_counter()
        res = reconstruct(movie, model=model, pixel_size=100.0, batch_size=batch_size, device=device,
                          localize=True, refine=True)
        sync(device)
        total = time.perf_counter() - t0
    finally:
        fit_module.refine = original
    return total, calls, res


def replay(calls, device, **override):
    for c in calls:
        fit_module.refine(c["frames"], c["locs"], *c["args"], **{**c["kw"], **override})
    sync(device)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--frames", type=int, default=None, help="default: 2000 on a GPU, 361 on the CPU")
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--block-frames", type=int, default=None,
                    help="frames per refine call (default: the run's own, reconstruct.FIT_EVERY / FIT_BLOCK_PIXELS)")
    ap.add_argument("--batch-elements", type=int, default=None,
                    help="replays only: fit.refine's batch_elements (default: the run's)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    ap.add_argument("--timing-only", action="store_true", help="no cProfile and torch.profiler replays")
    ap.add_argument("--save-locs", type=Path, default=None, help="the run's localizations to this .npz")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not SEQ.is_dir():
        print(f"{SEQ} not found (set DSIR_SHARED_DATA)")
        return 1
    dev = args.device
    n_frames = args.frames or (2000 if dev.startswith("cuda") else 361)
    out = args.out or HERE / "results" / f"profile_refine_{dev.split(':')[0]}.md"
    seq = open_stack(SEQ).read()
    movie = np.concatenate([seq] * (n_frames // len(seq) + 1))[:n_frames]
    model = load_model("default", device=dev)
    if args.block_frames:
        reconstruct_module.FIT_EVERY = args.block_frames
        reconstruct_module.FIT_BLOCK_PIXELS = args.block_frames * seq.shape[1] * seq.shape[2]
    hw = torch.cuda.get_device_name(0) if dev.startswith("cuda") else "CPU"

    record_calls(movie[: min(len(movie), 361)], model, dev, args.batch_size)  # warm-up
    t_none = []
    for _ in range(args.repeats):
        sync(dev)
        t0 = time.perf_counter()
        reconstruct(movie, model=model, pixel_size=100.0, batch_size=args.batch_size, device=dev,
                    localize=True, refine=False)
        sync(dev)
        t_none.append(time.perf_counter() - t0)
    t_mle, calls, res = record_calls(movie, model, dev, args.batch_size)
    n_det = sum(len(c["locs"]) for c in calls)
    if args.save_locs:
        np.savez(args.save_locs, **{k: np.asarray(v) for k, v in res.localizations.columns().items()},
                 frame=res.localizations.frame, x=res.localizations.x, y=res.localizations.y)
    t_calls = sum(c["seconds"] for c in calls)
    override = {} if args.batch_elements is None else {"batch_elements": args.batch_elements}
    t_replay = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        replay(calls, dev, **override)
        t_replay.append(time.perf_counter() - t0)
    t_rep = statistics.median(t_replay)

    n_calls = len(calls)
    lines = [
        "# Where the MLE refinement spends its time (`python benchmarks/profile_refine.py`)", "",
        f"Run on {time.strftime('%Y-%m-%d')}: device {dev} ({hw}), host {describe()}, "
        f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}; Bundled Tubes HD (64x64 px) "
        f"repeated to {n_frames} frames, default model, batch {args.batch_size or 'default'}, "
        f"refined in blocks of {args.block_frames or reconstruct_module.FIT_EVERY} frames.", "",
        "| | seconds |", "|---|---|",
        f"| whole run, network positions (median of {args.repeats}) | {statistics.median(t_none):.2f} |",
        f"| whole run with the MLE refinement | {t_mle:.2f} |",
        f"| of which `fit.refine` ({n_calls} calls, {n_det:,} detections, "
        f"{1e6 * t_calls / max(n_det, 1):.1f} us per detection) | {t_calls:.2f} |",
        f"| the same calls replayed (median of {args.repeats}; {override or 'the same settings'}) | {t_rep:.2f} |",
        "",
    ]
    if not args.timing_only:
        prof = cProfile.Profile()
        prof.enable()
        replay(calls, dev, **override)
        prof.disable()
        buf = io.StringIO()
        st = pstats.Stats(prof, stream=buf)
        st.sort_stats("tottime")
        funcs = []
        for (file, line, name), (_cc, nc, tt, ct, _) in st.stats.items():
            where = f"{Path(file).name}:{line} {name}" if file != "~" else name
            funcs.append((tt, ct, nc, where))
        funcs.sort(reverse=True)

        activities = [torch.profiler.ProfilerActivity.CPU]
        if dev.startswith("cuda"):
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as tp:
            replay(calls, dev, **override)
        ka = tp.key_averages()
        ops = sorted(ka, key=lambda e: e.self_cpu_time_total, reverse=True)
        counts = {e.key: e.count for e in ka}
        lines += [
            f"Per call: {sum(counts.get(k, 0) for k in ('cudaLaunchKernel', 'cuLaunchKernel')) / n_calls:,.0f} "
            f"kernel launches, {counts.get('cudaStreamSynchronize', 0) / n_calls:,.0f} stream synchronisations, "
            f"{counts.get('cudaMemcpyAsync', 0) / n_calls:,.0f} copies, "
            f"{counts.get('aten::item', 0) / n_calls:,.0f} `item()`, "
            f"{counts.get('aten::nonzero', 0) / n_calls:,.0f} `nonzero`, "
            f"{counts.get('aten::to', 0) / n_calls:,.0f} `to`.", "",
            f"## Python functions with the most time of their own (cProfile, one replay, {n_calls} calls)", "",
            "| function | own s | with callees s | calls |", "|---|---|---|---|",
        ]
        for tt, ct, nc, where in funcs[: args.top]:
            lines.append(f"| `{where}` | {tt:.3f} | {ct:.3f} | {nc:,} |")
        lines += ["", "## torch operators with the most CPU time of their own (torch.profiler, one replay)", "",
                  "| operator | calls | self CPU s | self device s |", "|---|---|---|---|"]
        for e in ops[: args.top]:
            dev_t = getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0))
            lines.append(f"| `{e.key}` | {e.count:,} | {e.self_cpu_time_total / 1e6:.3f} | {dev_t / 1e6:.3f} |")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

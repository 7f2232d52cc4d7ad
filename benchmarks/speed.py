"""Reconstruction speed on the EPFL Bundled Tubes HD set (361 frames, 64x64).

Measures, in one process, end to end from the TIFF files:
- baseline: the original DSIR pipeline as its own script ran it
  (benchmarks/original_pipeline.py: the plain 2018 `nn.Module`, scikit-image
  bilinear x8 resize, per-frame z-score, one frame at a time);
- napari-dsir `reconstruct` (sum image) with the original weights (legacy
  mode), the DSIR auto-encoder (``dsir``) and the default fast network;
- `reconstruct` + localization (network positions, and with the MLE
  refinement, interleaved: the share the refinement adds) with the default
  model; batch sizes 1, 8 and 32;
- the same on a 2-worker dask.distributed LocalCluster (one thread each),
  to show the cost of scale-out on one machine.
Then a per-stage profile of the default model on 64x64 frames: multiply-
accumulates per layer and milliseconds per frame of each stage.
Whole-process timings on a longer movie: benchmarks/speed_processes.py.
Each is run ``--repeats`` times; medians are reported with the ratio to the
baseline, and the peak RSS of the process. Writes benchmarks/results/speed.md.

``--legacy-cpu`` measures only the original weights' run in fresh child
processes (wall, user and system CPU seconds, page faults: the kernel's
share of the time) and compares its sum image with the original pipeline's;
``--src DIR`` runs the children on another copy of the package (e.g. an
older commit's ``src``, for a before/after figure).

    python benchmarks/speed.py [--repeats 3] [--device cpu]
    python benchmarks/speed.py --legacy-cpu [--src DIR] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import original_pipeline
import torch
from _machine import describe, median_seconds

from napari_dsir.io import open_stack
from napari_dsir.model import load_model, resolve_device
from napari_dsir.run import reconstruct

SHARED = Path(os.environ.get("DSIR_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SEQ = SHARED / "bundled_tubes_hd" / "sequence"
LEGACY = SHARED / "dsir_original" / "autoencoder_model.pt"


def baseline(model) -> np.ndarray:
    """The original load_model.py loop: one frame at a time."""
    from skimage.io import imread
    from skimage.transform import resize

    files = sorted(SEQ.glob("*.tif"))
    acc = None
    with torch.no_grad():
        for f in files:
            img = imread(f).astype(np.float64)
            up = resize(img, (img.shape[0] * 8, img.shape[1] * 8), preserve_range=True, mode="constant")
            up = (up - up.mean()) / up.std()
            out = model.net(torch.as_tensor(up, dtype=torch.float32).view(1, 1, *up.shape))[0, 0].numpy()
            acc = out if acc is None else acc + out
    return acc


_LEGACY_CHILD = """
import sys
import numpy as np
import torch
from napari_dsir.io import open_stack
from napari_dsir.model import load_model
from napari_dsir.progress import drive
from napari_dsir.reconstruct import iter_reconstruct

if int(sys.argv[4]) > 0:
    torch.set_num_threads(int(sys.argv[4]))
model = load_model("legacy:" + sys.argv[1])
res = drive(iter_reconstruct(open_stack(sys.argv[2]), model, pixel_size=100.0))
np.save(sys.argv[3], res.sum_image)
"""


def legacy_cpu(repeats: int, src: Path | None = None, threads: int = 0) -> tuple[list[dict], np.ndarray]:
    """Original weights on the whole movie, each run in a fresh process
    (allocator state and page faults as a user's run sees them).

    ``threads``: torch intra-op threads of the child (0: torch's default).
    Returns per run: wall, user and system CPU seconds and minor page faults
    of the child; and the last run's sum image (512, 512)."""
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(Path(src).resolve()) + os.pathsep + env.get("PYTHONPATH", "")
    runs, img = [], None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "sum.npy"
        for _ in range(repeats):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", _LEGACY_CHILD, str(LEGACY), str(SEQ), str(out), str(threads)],
                           env=env, check=True)
            wall = time.perf_counter() - t0
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            runs.append({"wall": wall, "user": after.ru_utime - before.ru_utime,
                         "sys": after.ru_stime - before.ru_stime,
                         "faults": after.ru_minflt - before.ru_minflt})
        img = np.load(out)
    return runs, img


def legacy_cpu_report(repeats: int, src: Path | None = None, threads: int = 0) -> list[str]:
    """Markdown lines: CPU time of the original weights' run, and how its sum
    image compares with the original pipeline's (whole image, and without
    the outer 8 super-resolved pixels)."""
    import napari_dsir

    runs, ours = legacy_cpu(repeats, src, threads)
    ref = baseline(load_model(f"legacy:{LEGACY}", device="cpu"))
    inner = (slice(8, -8), slice(8, -8))
    r_all = np.corrcoef(ours.ravel(), ref.ravel())[0, 1]
    r_in = np.corrcoef(ours[inner].ravel(), ref[inner].ravel())[0, 1]
    rel = np.abs(ours - ref).max() / np.abs(ref).max()
    code = Path(src).resolve() if src else Path(napari_dsir.__file__).resolve().parents[1]
    lines = [f"Original weights, `iter_reconstruct` on all {len(open_stack(SEQ))} frames, each run in a fresh "
             f"process ({threads or 'default'} torch threads); package from `{code}`:", "",
             "| run | wall s | user s | system s | minor page faults |", "|---|---|---|---|---|"]
    for i, r in enumerate(runs, 1):
        lines.append(f"| {i} | {r['wall']:.1f} | {r['user']:.1f} | {r['sys']:.1f} | {r['faults']:,} |")
    med = {k: statistics.median(r[k] for r in runs) for k in ("wall", "user", "sys")}
    lines += ["", f"Median: wall {med['wall']:.1f} s, user {med['user']:.1f} s, system {med['sys']:.1f} s.",
              f"Sum image vs the original pipeline's: r = {r_all:.5f} (whole), {r_in:.5f} (without the outer 8 px); "
              f"max |difference| / max = {rel:.2e}."]
    return lines


def _per_call_ms(fn, n=30) -> float:
    for _ in range(3):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def network_profile(model, device, batch: int = 8) -> list[str]:
    """Multiply-accumulates per layer and median milliseconds per frame of
    each stage of the default model's run on 64x64 frames (batch ``batch``)."""
    from napari_dsir.localize import find_peaks, params_for
    from napari_dsir.model import preprocess

    x = torch.from_numpy(open_stack(SEQ).read(0, batch).astype(np.float32)).to(device)
    net = model._inference_net()
    macs: list[tuple[str, tuple, float]] = []

    def hook(mod, inp, out):
        k = mod.kernel_size[0] * mod.kernel_size[1]
        per_px = mod.in_channels * k // (mod.groups if isinstance(mod, torch.nn.Conv2d) else 1)
        if isinstance(mod, torch.nn.ConvTranspose2d):
            per_px = mod.in_channels * k // (mod.stride[0] * mod.stride[1])
        macs.append((type(mod).__name__ + f" {mod.kernel_size[0]}x{mod.kernel_size[1]}", tuple(out.shape[1:]),
                     out.shape[-2] * out.shape[-1] * mod.out_channels * per_px))

    up = 1 if model.camera_resolution else model.upsampling
    scale = model.movie_scale(x.cpu().numpy())
    with torch.inference_mode():
        inp = preprocess(x, up, model.normalization, scale=scale).contiguous(memory_format=torch.channels_last)
        hooks = [m.register_forward_hook(hook) for m in net.modules()
                 if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
        net(inp)
        for h in hooks:
            h.remove()
        pre_ms = _per_call_ms(lambda: preprocess(x, up, model.normalization, scale=scale)) / batch
        net_ms = _per_call_ms(lambda: net(inp)) / batch
        sr = model.predict(x, tile=None, scale=scale)
        pred_ms = _per_call_ms(lambda: model.predict(x, tile=None, scale=scale)) / batch
        params = params_for(model)
        peaks_ms = _per_call_ms(lambda: find_peaks(sr, 12.5, params)) / batch
        sum_ms = _per_call_ms(lambda: sr.sum(0, dtype=torch.float64)) / batch
    lines = [f"## Where the time goes ({model.source} model, {model.arch}, 64x64 frames, batch {batch})", "",
             "| layer | output (C, Y, X) | MMAC per frame |", "|---|---|---|"]
    for name, shape, mac in macs:
        lines.append(f"| {name} | {shape} | {mac / 1e6:.1f} |")
    total = sum(m for _, _, m in macs)
    lines += [f"| **total** | | **{total / 1e6:.0f}** |", "",
              "| stage | ms per frame (median of 30 calls) |", "|---|---|",
              f"| normalisation ({model.normalization}) | {pre_ms:.2f} |",
              f"| network | {net_ms:.2f} |",
              f"| `predict` (normalisation, network, crop, clip) | {pred_ms:.2f} |",
              f"| local maxima + centroids (`find_peaks`) | {peaks_ms:.2f} |",
              f"| sum image | {sum_ms:.2f} |"]
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the package's for each model")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "speed.md")
    ap.add_argument("--legacy-cpu", action="store_true", help="only the original weights' CPU time (printed)")
    ap.add_argument("--src", type=Path, default=None, help="with --legacy-cpu: the package copy to run")
    ap.add_argument("--threads", type=int, default=0, help="with --legacy-cpu: torch threads (0: default)")
    ap.add_argument("--profile-only", nargs="+", default=None, metavar="MODEL",
                    help="only the per-stage profile of these models (names or files), to benchmarks/results/"
                         "speed_profile.md")
    args = ap.parse_args()
    if args.profile_only:
        device = resolve_device(args.device)
        lines = [f"# Per-stage profile (`python benchmarks/speed.py --profile-only {' '.join(args.profile_only)}`)",
                 "", f"Run on {time.strftime('%Y-%m-%d')} on {describe()}, {torch.get_num_threads()} CPU threads, "
                 f"torch {torch.__version__}.", ""]
        for spec in args.profile_only:
            model = load_model(spec, device=device)
            lines += network_profile(model, device, batch=8 if model.camera_resolution else 1) + [""]
        out = args.out.with_name("speed_profile.md")
        out.write_text("\n".join(lines))
        print("\n".join(lines))
        return
    if args.legacy_cpu:
        print(f"{describe()}, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}")
        print("\n".join(legacy_cpu_report(args.repeats, args.src, args.threads)))
        return
    device = resolve_device(args.device)
    legacy_dev = load_model(f"legacy:{LEGACY}", device=device)
    default = load_model("default", device=device)
    dsir = load_model("dsir", device=device)
    n = len(open_stack(SEQ))

    def ours(model, localize=False, refine=False, batch_size=args.batch_size, **kw):
        # from the files every time, through the run path a user's run takes
        return reconstruct(open_stack(SEQ), model, pixel_size=100.0, batch_size=batch_size, localize=localize,
                           refine=refine, **kw)

    rows = [("baseline: original pipeline (plain 2018 nn.Module, skimage resize, 1 frame at a time, CPU)",
             median_seconds(lambda: original_pipeline.reconstruct(LEGACY, SEQ), args.repeats))]
    rows.append((f"reconstruct, original weights, legacy mode ({device})",
                 median_seconds(lambda: ours(legacy_dev), args.repeats)))
    rows.append((f"reconstruct, dsir model ({device})", median_seconds(lambda: ours(dsir), args.repeats)))
    rows.append((f"reconstruct, default model ({device})", median_seconds(lambda: ours(default), args.repeats)))
    # with and without the refinement interleaved (one of each, then again;
    # at least 5 of each), so that a slow spell of the machine hits both
    pairs = [(median_seconds(lambda: ours(default, True), 1), median_seconds(lambda: ours(default, True, True), 1))
             for _ in range(max(5, args.repeats))]
    t_none, t_mle = (statistics.median(t) for t in zip(*pairs))
    rows.append((f"reconstruct + localize, default model, network positions ({device})", t_none))
    rows.append((f"reconstruct + localize + MLE refinement, default model ({device})", t_mle))
    for bs in (1, 8, 32):
        rows.append((f"reconstruct, default model, batch {bs} ({device})",
                     median_seconds(lambda bs=bs: ours(default, batch_size=bs), args.repeats)))
    try:
        from dask.distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                Client(cl) as client:
            rows.append(("reconstruct + localize, default model, 2-worker LocalCluster (chunks of 64 frames)",
                         median_seconds(lambda: ours(default, True, client=client, chunk=64), args.repeats)))
    except ImportError:
        pass
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    extra = network_profile(default, device)
    base = rows[0][1]
    lines = [
        "# Reconstruction speed: Bundled Tubes HD (361 frames of 64x64 -> 512x512)",
        "",
        f"Run on {time.strftime('%Y-%m-%d')} with `python benchmarks/speed.py --repeats {args.repeats} "
        f"--device {args.device}` on {describe()}, {torch.get_num_threads()} CPU threads, "
        f"torch {torch.__version__}, batch {args.batch_size or 'default'}; medians of {args.repeats} runs, end to end "
        "from the TIFF files.",
        "",
        "| pipeline | seconds | frames/s | speed-up vs baseline |",
        "|---|---|---|---|",
    ]
    for name, t in rows:
        lines.append(f"| {name} | {t:.2f} | {n / t:.0f} | {base / t:.2f}x |")
    lines += ["", f"The two localize rows are medians of {len(pairs)} interleaved runs of each (one without "
              f"refinement, one with, and again): the MLE refinement adds {100 * (t_mle / t_none - 1):.0f}% to "
              f"`reconstruct` + localize (per pair: "
              f"{', '.join(f'{100 * (b / a - 1):+.0f}%' for a, b in pairs)}).",
              "", f"Peak RSS of the benchmark process: {peak_mb:.0f} MB.", ""] + extra
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Throughput on a GPU: frames per second of the shipped models, network alone and the whole run path.

    python benchmarks/gpu.py [--device cuda] [--frames 20000] [--out benchmarks/results/gpu.md]

The movie is the Bundled Tubes HD sequence (64x64 px) repeated to
``--frames`` frames, held in memory as uint16 (as a TIFF reader gives it);
DSIR_SHARED_DATA points at the shared data folder when it is not beside the
checkout. For each shipped model and batch size:

- network: ``model.raw`` on a batch already on the GPU (synchronised), the
  ceiling of the run path;
- reconstruct: `napari_dsir.run.reconstruct` from the numpy movie (transfer,
  normalisation, network, sum image), no localizations;
- + localize: network positions (``refine=False``);
- + MLE: refinement on the raw frames (the default of `dsir localize`), on a
  shorter movie (``--fit-frames``).

Medians of ``--repeats`` runs after one warm-up. The machine is named in the
output.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _machine import describe, sync

from napari_dsir.io import open_stack
from napari_dsir.model import load_model
from napari_dsir.run import reconstruct

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("DSIR_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
SEQ = SHARED / "bundled_tubes_hd" / "sequence"


def median_time(fn, device, repeats):
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--fit-frames", type=int, default=2000)
    ap.add_argument("--batches", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "gpu.md")
    args = ap.parse_args(argv)
    if not SEQ.is_dir():
        print(f"{SEQ} not found (set DSIR_SHARED_DATA)")
        return 1
    seq = open_stack(SEQ).read()
    movie = np.concatenate([seq] * (args.frames // len(seq) + 1))[: args.frames]
    short = movie[: args.fit_frames]
    dev = args.device
    gpu = torch.cuda.get_device_name(0) if dev.startswith("cuda") else "cpu"
    rows = []
    for name in ("default", "dsir"):
        model = load_model(name, device=dev)
        for b in args.batches:
            x = torch.from_numpy(movie[:b].astype(np.float32)).to(dev)

            def net(model=model, x=x):
                with torch.no_grad():
                    model.raw(x, scale=100.0)

            t_net = median_time(net, dev, args.repeats) / b
            run = partial(reconstruct, model=model, pixel_size=100.0, batch_size=b, device=dev)
            t_rec = median_time(partial(run, movie), dev, args.repeats) / len(movie)
            t_loc = median_time(partial(run, movie, localize=True, refine=False), dev, args.repeats) / len(movie)
            t_fit = median_time(partial(run, short, localize=True, refine=True), dev, args.repeats) / len(short)
            rows.append(f"| {name} | {b} | {1 / t_net:,.0f} | {1 / t_rec:,.0f} | {1 / t_loc:,.0f} | {1 / t_fit:,.0f} |")
            print(rows[-1], flush=True)
    lines = [
        "# GPU throughput (`python benchmarks/gpu.py`)", "",
        f"Run on {time.strftime('%Y-%m-%d')}: {gpu}, host {describe()}, torch {torch.__version__}; "
        f"Bundled Tubes HD (64x64 px) repeated to {args.frames} frames ({args.fit_frames} with MLE); "
        f"frames per second, medians of {args.repeats} after a warm-up.", "",
        "| model | batch | network alone | reconstruct | + localize (network positions) | + MLE refinement |",
        "|---|---|---|---|---|---|",
    ] + rows
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Memory and frame rate over a long movie: 20,000 frames of 128x128 px.

    python benchmarks/memory.py [--frames 20000] [--size 128] [--every 1000] [--work DIR]
                                [--out benchmarks/results/memory.md]

Generates a 16-bit TIFF of ``--frames`` frames of ``--size`` px a side (up
to 200 distinct simulated frames at 2 emitters/um^2, repeated; 655 MB for
20,000 frames of 128x128 px) in ``--work``
(a temporary folder by default), then runs what `dsir localize --image` runs:
the shipped model over the whole movie, keeping the sum image and the
localization table, and writes both (TIFF, ThunderSTORM CSV). Records the
resident memory (VmRSS) and the frame rate every ``--every`` frames, and the
peak (ru_maxrss). The results table is rewritten at every record, so a run
stopped early still leaves its figures.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from _machine import cpu_name

from napari_dsir.io import open_stack, write_localizations, write_tiff
from napari_dsir.localize import params_for
from napari_dsir.model import load_model
from napari_dsir.reconstruct import default_batch_size, iter_reconstruct
from napari_dsir.simulate import SimulationConfig, simulate

HERE = Path(__file__).resolve().parent


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_movie(path: Path, n: int, size: int = 128) -> None:
    frames, _ = simulate(min(200, n), SimulationConfig(frame_size=(size, size), density=2.0), seed=5150)
    frames = frames.astype(np.uint16)
    mm = tifffile.memmap(path, shape=(n, size, size), dtype=np.uint16, photometric="minisblack")
    for b in range(0, n, 200):
        e = min(b + 200, n)
        mm[b:e] = frames[: e - b]
    mm.flush()
    del mm


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--every", type=int, default=1000)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "memory.md")
    ap.add_argument("--make-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.make_only:
        make_movie(args.work / f"movie_{args.frames}x{args.size}.tif", args.frames, args.size)
        return 0
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    work = args.work or Path(tempfile.mkdtemp(prefix="dsir-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    movie = work / f"movie_{args.frames}x{args.size}.tif"
    if not movie.is_file():  # in another process: writing it must not count in this one's peak
        subprocess.run([sys.executable, __file__, "--make-only", "--frames", str(args.frames),
                        "--size", str(args.size), "--work", str(work)], check=True)
    model = load_model("default")
    params = params_for(model)
    stack = open_stack(movie, pixel_size=100.0)
    start_rss = rss_mb()
    rows: list[str] = []
    t0 = last_t = time.perf_counter()
    last_done = 0

    def report(done: int, final: str = "") -> None:
        head = [
            f"# Memory over a long movie ({args.frames:,} frames of {args.size}x{args.size} px)",
            "",
            f"Run on {time.strftime('%Y-%m-%d')} with `python benchmarks/memory.py --frames {args.frames}"
            + ("" if args.size == 128 else f" --size {args.size}")
            + ("" if args.every == 1000 else f" --every {args.every}") + "` on "
            f"{platform.machine()} ({os.cpu_count()} cores, {cpu_name()}), "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, default model ({model.arch}), "
            f"batch {default_batch_size(model.device, model, (args.size, args.size))} (CPU default), "
            "sum image + localization table (what `dsir localize --image` keeps).",
            "",
            f"RSS after loading the model and opening the movie: {start_rss:.0f} MB.",
            "",
            "| frames done | RSS MB | peak RSS MB | frames/s over the last block |",
            "|---|---|---|---|",
        ]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(head + rows) + ("\n\n" + final if final else "") + "\n")

    gen = iter_reconstruct(stack, model, pixel_size=100.0, localize=params)
    try:
        while True:
            p = next(gen)
            if p.done and (p.done % args.every == 0 or p.done == p.total) and p.done != last_done:
                now = time.perf_counter()
                fps = (p.done - last_done) / (now - last_t)
                last_t, last_done = now, p.done
                rows.append(f"| {p.done:,} | {rss_mb():.0f} | {peak_mb():.0f} | {fps:.1f} |")
                print(rows[-1], flush=True)
                report(p.done)
    except StopIteration as stop:
        result = stop.value
    n_locs = len(result.localizations)
    compute_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    write_tiff(work / "sum.tif", result.sum_image, result.pixel_size, overwrite=True)
    write_localizations(work / "locs.csv", result.localizations, overwrite=True)
    write_s = time.perf_counter() - t1
    final = (f"Done: {args.frames:,} frames in {compute_s:.0f} s ({args.frames / compute_s:.1f} frames/s), "
             f"{n_locs:,} localizations; writing the sum image and the CSV "
             f"({(work / 'locs.csv').stat().st_size / 1e6:.0f} MB) took {write_s:.0f} s. "
             f"Peak RSS over the whole run, writing included: {peak_mb():.0f} MB.")
    print(final)
    report(args.frames, final)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

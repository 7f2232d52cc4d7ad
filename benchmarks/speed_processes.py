"""Whole-process speed: `dsir reconstruct` / `dsir localize` against the original DSIR pipeline.

    python benchmarks/speed_processes.py [--repeats 3] [--copies 4] [--out benchmarks/results/speed_processes.md]

The EPFL Bundled Tubes HD movie (361 frames of 64x64) played ``--copies``
times in one multi-page TIFF (4: 1,444 frames) is reconstructed by whole
processes, started from the shell as a user starts them, interpreter and
torch start-up included:

- **original pipeline**: benchmarks/original_pipeline.py, the 2018 network as
  a plain `nn.Module` one frame at a time with scikit-image resize (the
  baseline);
- `dsir reconstruct` (sum image) and `dsir localize` (table, with and
  without the Poisson MLE refinement), with the shipped default model,
  with the DSIR auto-encoder (``--model dsir``) and with the wider network
  (``--model wide``).

Runs are interleaved (one of each, then again) so that a slow spell of the
machine hits every command alike; medians and ratios to the baseline's
median are reported, with the machine. Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from _machine import describe

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
SEQ = SHARED / "bundled_tubes_hd" / "sequence"
LEGACY = SHARED / "dsir_original" / "autoencoder_model.pt"


def make_movie(path: Path, copies: int) -> int:
    frames = np.stack([tifffile.imread(f) for f in sorted(SEQ.glob("*.tif"))])
    movie = np.concatenate([frames] * copies)
    tifffile.imwrite(path, movie, imagej=True, resolution=(1e-2, 1e-2), metadata={"unit": "nm"})
    return len(movie)


def commands(movie: Path, tmp: Path) -> dict[str, list[str]]:
    beside = Path(sys.executable).parent / "dsir"  # this environment's, even when not activated
    dsir = [str(beside) if beside.is_file() else shutil.which("dsir") or "dsir"]
    common = [str(movie), "--pixel-size", "100", "--device", "cpu", "-q", "--overwrite"]
    return {
        "original pipeline (baseline)": [sys.executable, str(HERE / "original_pipeline.py"), str(LEGACY), str(movie)],
        "dsir reconstruct": dsir + ["reconstruct"] + common + ["-o", str(tmp / "sum.tif")],
        "dsir localize --refine none": dsir + ["localize"] + common + ["-o", str(tmp / "a.csv"), "--refine", "none"],
        "dsir localize (MLE refinement)": dsir + ["localize"] + common + ["-o", str(tmp / "b.csv")],
        "dsir reconstruct --model dsir": dsir + ["reconstruct"] + common + ["-o", str(tmp / "sum2.tif"),
                                                                            "--model", "dsir"],
        "dsir reconstruct --model wide": dsir + ["reconstruct"] + common + ["-o", str(tmp / "sum3.tif"),
                                                                            "--model", "wide"],
        "dsir localize --model wide (MLE refinement)": dsir + ["localize"] + common + ["-o", str(tmp / "c.csv"),
                                                                                      "--model", "wide"],
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--only", nargs="*", default=None, help="names of the commands to run (default: all)")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "speed_processes.md")
    args = ap.parse_args(argv)
    if not (SEQ.is_dir() and LEGACY.is_file()):
        print(f"needs {SEQ} and {LEGACY}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        movie = tmp / "bundled_tubes_x4.tif"
        n = make_movie(movie, args.copies)
        cmds = commands(movie, tmp)
        if args.only:
            cmds = {k: v for k, v in cmds.items() if k in args.only or k.startswith("original")}
        times: dict[str, list[float]] = {k: [] for k in cmds}
        for r in range(args.repeats):
            for name, cmd in cmds.items():
                t0 = time.perf_counter()
                subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
                times[name].append(time.perf_counter() - t0)
                print(f"run {r + 1}: {name}: {times[name][-1]:.1f} s", file=sys.stderr, flush=True)
    base = statistics.median(times["original pipeline (baseline)"])
    lines = ["# Whole-process speed (`python benchmarks/speed_processes.py`)", "",
             f"Machine: {describe()}.", "",
             f"Bundled Tubes HD played {args.copies} times: {n} frames of 64x64 px in one TIFF. Each command is a "
             f"whole process (start-up included), {args.repeats} interleaved runs; median wall time and its "
             "ratio to the original pipeline's median.", "",
             "| command | runs (s) | median (s) | frames/s | speed-up vs original |", "|---|---|---|---|---|"]
    for name, ts in times.items():
        med = statistics.median(ts)
        lines.append(f"| {name} | {', '.join(f'{t:.1f}' for t in ts)} | {med:.1f} | {n / med:.0f} | "
                     f"{base / med:.1f}x |")
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Test-time augmentation: the network's output averaged over flipped copies of each frame.

    python benchmarks/flip_average.py [--frames 60] [--out benchmarks/results/flip_average.md]

Not in the package: a check of whether averaging the shipped model's
localization images over 2 (as is, rotated 180 degrees) or 4 (and both
transposes) copies of each frame places crowded emitters better, at what
cost. Detection moves with the averaging (a peak the copies disagree on
comes out lower), so each is localized with the checkpoint's threshold
times 0.7-1.2 and the RMSE is compared at equal Jaccard (interpolated
between thresholds). Sets: the accuracy benchmark's sCMOS camera and
emitters (`accuracy.sim_config`) at 4, 6 and 8 emitters/um^2, validation
seeds 76104+ (in no other benchmark). Network positions only (no
refinement). The cost: network time per frame, median of 5, one process.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import accuracy
import numpy as np
import torch
from _machine import describe

from napari_dsir.evaluate import evaluate
from napari_dsir.localize import find_peaks, params_for
from napari_dsir.model import load_model
from napari_dsir.simulate import simulate

HERE = Path(__file__).resolve().parent
#: copies as (flip x, flip y, transpose); 0: as is
COPIES = {1: ((0, 0, 0),), 2: ((0, 0, 0), (1, 1, 0)), 4: ((0, 0, 0), (1, 1, 0), (1, 0, 1), (0, 1, 1))}
THRESHOLDS = (0.7, 0.8, 0.9, 1.0, 1.1, 1.2)


def averaged(model, frames: torch.Tensor, copies) -> torch.Tensor:
    """(frame, Y, X) localization images averaged over ``copies`` of the frames."""
    scale = model.movie_scale(frames)
    out = 0
    for fx, fy, tr in copies:
        t = frames
        t = t.flip(-1) if fx else t
        t = t.flip(-2) if fy else t
        t = t.transpose(-1, -2) if tr else t
        y = model.predict(t.contiguous(), scale=scale)
        y = y.transpose(-1, -2) if tr else y
        y = y.flip(-2) if fy else y
        out = out + (y.flip(-1) if fx else y)
    return out / len(copies)


def rmse_at(jaccards, rmses, target: float) -> float:
    """RMSE interpolated at Jaccard ``target`` (NaN outside the range)."""
    j, r = np.asarray(jaccards), np.asarray(rmses)
    order = np.argsort(j)
    if not j.min() <= target <= j.max():
        return float("nan")
    return float(np.interp(target, j[order], r[order]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "flip_average.md")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    model = load_model("default")
    params = params_for(model)
    rows, cost = [], {}
    for i, density in enumerate((4.0, 6.0, 8.0)):
        frames, gt = simulate(args.frames, accuracy.sim_config(density), seed=76104 + i)
        x = torch.from_numpy(np.asarray(frames, np.float32))
        curves = {}
        for n, copies in COPIES.items():
            with torch.inference_mode():
                times = []
                for _ in range(5):
                    t0 = time.perf_counter()
                    y = averaged(model, x, copies)
                    times.append(time.perf_counter() - t0)
            cost.setdefault(n, []).append(1e3 * float(np.median(times)) / len(x))
            js, rs = [], []
            for t in THRESHOLDS:
                locs = find_peaks(y, 12.5, replace(params, threshold=params.threshold * t))
                a = evaluate(gt, locs, 250.0)
                js.append(a.jaccard)
                rs.append(a.rmse)
            curves[n] = (js, rs)
        j_ref = curves[1][0][THRESHOLDS.index(1.0)]
        for n, (js, rs) in curves.items():
            cells = " | ".join(f"{j:.3f} / {r:.1f}" for j, r in zip(js, rs))
            rows.append(f"| {density:g} /um^2 | {n} | {cells} | {rmse_at(js, rs, j_ref):.1f} |")
            print(rows[-1], flush=True)
    head = ["# The network's output averaged over flipped frames (`python benchmarks/flip_average.py`)", "",
            f"Run on {time.strftime('%Y-%m-%d')} on {describe()}; the shipped `default` model, network "
            f"positions, {args.frames} frames per set (validation seeds, see the script's docstring).", "",
            "Cells: Jaccard 250 nm / RMSE of the pairs within 250 nm (nm) at the checkpoint's threshold times "
            "the column's factor; last column: the RMSE at the Jaccard the model reaches alone at its own "
            "threshold (interpolated).", "",
            "| set | copies | " + " | ".join(f"x {t:g}" for t in THRESHOLDS) + " | RMSE at equal Jaccard |",
            "|---|---|" + "---|" * len(THRESHOLDS) + "---|"]
    foot = ["", "Network time per 64x64 frame (ms, median of 5 passes over each set, mean over the sets): "
            + ", ".join(f"{n} cop{'y' if n == 1 else 'ies'} {np.mean(v):.1f}" for n, v in cost.items()) + "."]
    args.out.write_text("\n".join(head + rows + foot) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

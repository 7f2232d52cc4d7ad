"""How a movie model's calibrated threshold holds on a larger sample of its own training mix.

    python benchmarks/threshold_sample.py [--models default wide] [--frames 12000] [--seed 7000001]
        [--out benchmarks/results/threshold_sample.md]

`napari_dsir.calibrate.calibrate_movies` picks the threshold on the
validation movies of a training run (2,400 frames, of which 360-380 are empty):
the best mean Jaccard (250 nm) over four density bands among the thresholds
whose precision is at least `MIN_PRECISION` in every band and whose false
positives per empty frame are at most `MAX_EMPTY_FP`. Here each model's
output is scored the same way on ``--frames`` other frames of its training
mix (`MovieConfig` from the checkpoint; a seed no training or validation
used), at thresholds around the shipped one: does the shipped threshold still
meet both constraints, and which is the lowest threshold that does?
Network positions, peaks and scores as the calibration finds them (`calibrate.candidate_peaks`,
`calibrate.band_scores`; the checkpoint's radius).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _machine import describe

from napari_dsir.calibrate import DENSITY_BANDS, MAX_EMPTY_FP, MIN_PRECISION, _predict, band_scores, candidate_peaks
from napari_dsir.model import load_model
from napari_dsir.simulate import MovieConfig, SimulationConfig
from napari_dsir.train import _Data

HERE = Path(__file__).resolve().parent


def scores(model, data, thresholds):
    """Per threshold: (mean Jaccard, per-band Jaccard, worst precision, false positives per empty frame)."""
    sr = _predict(model, data.frames, 32, data.scales)
    every, value = candidate_peaks(sr, float(min(thresholds)), int(model.metadata["localize"]["radius"]),
                                   data.sr_pixel)
    dens = np.array([st["density"] for st in data.settings])[data.movie]
    band = np.digitize(dens, [hi for _, hi in DENSITY_BANDS[:-1]])
    empty = np.flatnonzero(np.bincount(data.locs.frame.astype(int), minlength=len(data.frames)) == 0)
    out = []
    for t in thresholds:
        rows, efp = band_scores(data.locs, every.select(value > t), band, empty)
        js = [r["jaccard"] for r in rows.values()]
        out.append((float(np.mean(js)), js, min(r["precision"] for r in rows.values()), efp))
    return out, len(empty)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["default", "wide"])
    ap.add_argument("--frames", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=7_000_001)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "threshold_sample.md")
    args = ap.parse_args()
    lines = ["# Calibrated thresholds on a larger sample (`python benchmarks/threshold_sample.py`)", "",
             f"Run on {time.strftime('%Y-%m-%d')} on {describe()}, torch {torch.__version__}: {args.frames} frames "
             f"of each model's training mix (seed {args.seed}), network positions. Constraints of the "
             f"calibration: precision >= {MIN_PRECISION} in every band, <= {MAX_EMPTY_FP} false positives per "
             f"empty frame. Bands: {', '.join(f'{lo:g}-{hi:g}' for lo, hi in DENSITY_BANDS)} /um^2.", ""]
    for name in args.models:
        model = load_model(name)
        tr = model.metadata["training"]
        movies = MovieConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in tr["movies"].items()})
        data = _Data(args.frames, SimulationConfig(), args.seed, model.upsampling, movies)
        shipped = float(model.metadata["localize"]["threshold"])
        grid = np.round(np.arange(7.0, 13.01, 0.5), 2)
        thresholds = sorted(set(grid.tolist()) | {shipped})
        res, n_empty = scores(model, data, thresholds)
        ok = [t for t, (_, _, p, e) in zip(thresholds, res) if p >= MIN_PRECISION and e <= MAX_EMPTY_FP]
        lines += [f"## `{name}` (shipped threshold {shipped:.3f}, calibrated on {tr['n_val']} validation frames; "
                  f"here {n_empty} empty frames)", "",
                  "| threshold | mean Jaccard | Jaccard per band | worst precision | false positives / empty frame "
                  "| both constraints |", "|---|---|---|---|---|---|"]
        for t, (mj, js, p, e) in zip(thresholds, res):
            mark = " (shipped)" if t == shipped else ""
            lines.append(f"| {t:.3f}{mark} | {mj:.4f} | {' / '.join(f'{j:.3f}' for j in js)} | {p:.3f} | {e:.4f} "
                         f"| {'yes' if p >= MIN_PRECISION and e <= MAX_EMPTY_FP else 'no'} |")
        lines += ["", f"Lowest threshold here that meets both: {min(ok):.3f}." if ok else "None here meets both.", ""]
        print("\n".join(lines[-len(thresholds) - 6:]), flush=True)
    args.out.write_text("\n".join(lines))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

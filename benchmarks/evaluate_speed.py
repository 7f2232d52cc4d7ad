"""Speed of `napari_dsir.evaluate` (Hungarian matching per frame) on long tables.

    python benchmarks/evaluate_speed.py [--out benchmarks/results/evaluate_speed.md]

Tables of 30 localizations per frame over 1,000-64,000 frames (a long
movie's ground truth and localizations: positions 20 nm apart), matched at
250 nm by `evaluate.match` and by the per-frame scan it replaced (each
frame's rows found with a pass over the whole table: time grows with the
square of the frames; the baseline, run in the same process, only up to
16,000 frames). Median of 3 runs; both give the same pairs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _machine import describe, write_report

from napari_dsir.evaluate import match, match_frame
from napari_dsir.locs import Localizations

HERE = Path(__file__).resolve().parent
FRAMES = (1000, 4000, 16000, 64000)
BASELINE_UP_TO = 16000


def match_scan(gt: Localizations, pred: Localizations, radius: float):
    """The previous `match`: one pass over both tables per frame."""
    gi, pi = [], []
    gframes = {f: np.flatnonzero(gt.frame == f) for f in np.unique(gt.frame)}
    for f in np.unique(pred.frame):
        g = gframes.get(f)
        if g is None:
            continue
        p = np.flatnonzero(pred.frame == f)
        a, b = match_frame(np.column_stack([gt.x[g], gt.y[g]]), np.column_stack([pred.x[p], pred.y[p]]), radius)
        gi.append(g[a])
        pi.append(p[b])
    return np.concatenate(gi), np.concatenate(pi)


def timed(fn, args: tuple, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "evaluate_speed.md")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    rows = []
    for nf in FRAMES:
        n = 30 * nf
        frame = rng.integers(0, nf, n)
        x, y = rng.uniform(0, 6400, n), rng.uniform(0, 6400, n)
        gt = Localizations(frame, x, y)
        pred = Localizations(frame, x + rng.normal(0, 20, n), y + rng.normal(0, 20, n))
        t_new, (gi, pi, _) = timed(match, (gt, pred, 250.0), args.repeats)
        cell = "-"
        if nf <= BASELINE_UP_TO:
            t_old, (go, po) = timed(match_scan, (gt, pred, 250.0), args.repeats)
            if not (np.array_equal(gi, go) and np.array_equal(pi, po)):
                raise SystemExit(f"{nf} frames: the two matchings differ")
            cell = f"{t_old:.2f} ({t_old / t_new:.1f}x)"
        rows.append(f"| {nf:,} | {n:,} | {t_new:.2f} | {cell} |")
        print(rows[-1], flush=True)
    lines = ["# Matching speed (`python benchmarks/evaluate_speed.py`)", "",
             f"Run on {time.strftime('%Y-%m-%d')} on {describe()}; median of {args.repeats} runs. "
             "See the script's docstring.", "",
             "| frames | localizations (each table) | `match` (s) | per-frame scan, before (s; ratio) |",
             "|---|---|---|---|", *rows, ""]
    write_report(args.out, lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())

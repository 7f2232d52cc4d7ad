"""How a run on a dask cluster differs from one process: the same detections, fits per chunk.

    python benchmarks/distributed_fits.py [--chunk 256] [--out benchmarks/results/distributed_fits.md]

`dsir localize` on Bundled Tubes HD (361 frames; ../shared/data), once in
one process and once on a 2-worker `LocalCluster` (``--scheduler
local:2``, chunks of ``--chunk`` frames), both with the default model, its
MLE refinement and the default camera. One process refines blocks of up
to 512 frames (`reconstruct.FIT_EVERY`); the cluster refines each chunk on
its own, and what the fits of a block share (the crowded rows' PSF sigma,
taken from the block's fits; the density of detections around each row
over the block's frames, in the network's error model) then comes from
the chunk. Reported: whether the detections and positions are the same,
and the relative differences of photons, sigma and uncertainty (median,
99th percentile) between the two tables, matched row by row.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _machine import describe

from napari_dsir.run import reconstruct

HERE = Path(__file__).resolve().parent
MOVIE = HERE.parents[1] / "shared" / "data" / "bundled_tubes_hd" / "sequence"


def run(**kw):
    return reconstruct(MOVIE, localize=True, refine=True, device="cpu", **kw).localizations


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "distributed_fits.md")
    args = ap.parse_args()
    if not MOVIE.is_dir():
        raise SystemExit(f"needs {MOVIE}")
    t0 = time.perf_counter()
    one, cluster = run(), run(scheduler="local:2", chunk=args.chunk)
    a, b = (t.select(np.lexsort((t.y, t.x, t.frame))) for t in (one, cluster))
    same = len(a) == len(b) and np.array_equal(a.frame, b.frame)
    lines = [
        "# A run on a dask cluster against one process (`python benchmarks/distributed_fits.py`)",
        "",
        f"Run on {time.strftime('%Y-%m-%d')} on {describe()} in {time.perf_counter() - t0:.0f} s: Bundled Tubes HD "
        f"(361 frames), the default model with its MLE refinement, one process against `--scheduler local:2 "
        f"--chunk {args.chunk}`. See the script's docstring.",
        "",
        f"Localizations: {len(a)} in one process, {len(b)} on the cluster; the same frames and positions: "
        + (f"{'yes' if same and np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) else 'no'}"
           + (f" (largest shift {np.max(np.hypot(a.x - b.x, a.y - b.y)):.2f} nm)" if same else "")),
        "",
        "| column | median relative difference | 99th percentile | rows identical |",
        "|---|---|---|---|",
    ]
    if same:
        for c in ("photons", "sigma", "uncertainty"):
            x, y = getattr(a, c), getattr(b, c)
            ok = np.isfinite(x) & np.isfinite(y) & (x != 0)
            r = np.abs(x[ok] - y[ok]) / np.abs(x[ok])
            lines.append(f"| {c} | {np.median(r):.2%} | {np.percentile(r, 99):.2%} | {np.mean(r == 0):.1%} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

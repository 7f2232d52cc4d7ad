"""Peak memory of `napari_dsir.render.render` per image pixel, against the
`render.BYTES_PER_PIXEL` that its free-memory check assumes.

    python benchmarks/render_memory.py [--out benchmarks/results/render_memory.md]

200,000 localizations over a 4000 x 4000 image (10 nm pixels, 40 um), each
mode once; the peak of the numpy allocations (tracemalloc) divided by the
pixel count. The check refuses a render needing more than
`render.MEMORY_SHARE` of the free memory, so the assumed bytes must not be
below the measured peak.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from pathlib import Path

import numpy as np
from _machine import describe

from napari_dsir import render as R
from napari_dsir.locs import Localizations

HERE = Path(__file__).resolve().parent
CASES = (("histogram", {"mode": "hist"}), ("Gaussians of each uncertainty", {"mode": "gauss"}),
         ("Gaussians of 80 nm", {"mode": "gauss", "sigma_nm": 80.0}),
         ("Gaussians of 600 nm (blurred histograms)", {"mode": "gauss", "sigma_nm": 600.0}))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "render_memory.md")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(0)
    n, field, p = 200_000, 40_000.0, 10.0
    locs = Localizations(rng.integers(0, 300, n), rng.uniform(0, field, n), rng.uniform(0, field, n),
                         uncertainty=rng.uniform(5, 30, n))
    pixels = (field / p) ** 2
    rows = []
    for by_frame in (False, True):
        for name, kw in CASES:
            tracemalloc.start()
            R.render(locs, p, by_frame=by_frame, **kw)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            per = peak / pixels
            assumed = R.BYTES_PER_PIXEL[by_frame]
            rows.append(f"| {name}{', coloured by frame' if by_frame else ''} | {per:.1f} | {assumed} | "
                        f"{'yes' if assumed >= per else 'NO'} |")
            print(rows[-1], flush=True)
    out = ["# Peak memory of a rendering (`python benchmarks/render_memory.py`)", "",
           f"Run on {time.strftime('%Y-%m-%d')} on {describe()}; {n:,} localizations, a 4000 x 4000 px image "
           f"(10 nm pixels); tracemalloc peak of the numpy allocations per image pixel.", "",
           "| mode | measured, bytes per pixel | assumed by the free-memory check | assumed >= measured |",
           "|---|---|---|---|", *rows]
    args.out.write_text("\n".join(out) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

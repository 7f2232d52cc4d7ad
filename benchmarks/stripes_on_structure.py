"""Column and row offsets (sCMOS fixed-pattern noise) searched on short frame
ranges of structured movies, whose filaments are lit in every frame.

    python benchmarks/stripes_on_structure.py [--out benchmarks/results/stripes_on_structure.md]

Movies: the shipped sample (blinking filaments, 120 frames) and, where
``../shared/data`` is present, Bundled Tubes HD (361 frames, high
density: its tubes are lit in nearly every frame). Windows of 16, 32 and
64 frames (every quarter window), searched as a run searches them
(`napari_dsir.reconstruct.movie_defects`). Neither movie has a column or
row offset: a window where one is found is a false pattern, which the run
subtracts from every frame and warns of. Then one column and one row
planted in each window, reading 2x the search's level above their
neighbours (`napari_dsir.defects.STRIPE_LEVEL` times the background's noise,
measured on the window), each found or not. Each now and as the previous
release searched: without the test that a line reads its offset along its
whole length (`napari_dsir.defects.STRIPE_SEGMENTS`: ``defects._uniform``
passing every line in this process) and without the floor under the
estimate's noise (`napari_dsir.defects.STRIPE_NOISE_FLOOR` 0: on the
shipped sample's integer frames of low noise it was 0, and no search ran).
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path
from unittest import mock

import numpy as np
import tifffile
import torch
from _machine import describe

from napari_dsir import defects
from napari_dsir.reconstruct import movie_defects

HERE = Path(__file__).resolve().parent
SAMPLE = HERE.parent / "src" / "napari_dsir" / "data" / "sample_stack.tif"
BUNDLED = HERE.parent.parent / "shared" / "data" / "bundled_tubes_hd" / "sequence"
WINDOWS = (16, 32, 64)


def background_noise(window: np.ndarray) -> float:
    """The background's noise (ADU) as `defects.find_stripes` measures it."""
    low5, low = defects._quantiles(defects._frames(window), (0.05, defects.LOW_QUANTILE))
    return float((low - low5).median()) / 0.363


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "stripes_on_structure.md")
    args = ap.parse_args()
    movies = [("shipped sample (blinking filaments, 120 frames)", tifffile.imread(SAMPLE))]
    files = sorted(glob.glob(str(BUNDLED / "*.tif")))
    if files:
        movies.append(("Bundled Tubes HD (361 frames)", np.stack([tifffile.imread(f) for f in files])))
    lines = ["# Column and row offsets searched on structured movies (`python benchmarks/stripes_on_structure.py`)",
             "", f"Run with {describe()}; see the script's docstring.", "",
             "| movie | frames per window | windows | windows with a pattern found (none there), now / before | "
             "lines subtracted in those, now / before | planted column found, now / before | "
             "planted row found, now / before |", "|---|---|---|---|---|---|---|"]
    uniform = defects._uniform
    for name, movie in movies:
        movie = movie.astype(np.float32)
        for n in WINDOWS:
            starts = range(0, len(movie) - n + 1, n // 4)
            counts = []
            before = (lambda diff, off, noise: torch.ones_like(off, dtype=torch.bool), 0.0)
            for check, floor in ((uniform, defects.STRIPE_NOISE_FLOOR), before):
                rng = np.random.default_rng(97100 + n)  # the same lines now and before
                false = subtracted = col_found = row_found = 0
                with mock.patch.object(defects, "_uniform", check), \
                        mock.patch.object(defects, "STRIPE_NOISE_FLOOR", floor):
                    for s0 in starts:
                        window = movie[s0:s0 + n]
                        stripes = movie_defects(window, 0, n)[2]
                        false += stripes is not None
                        if stripes is not None:
                            subtracted += sum(stripes.counts()[k] for k in ("columns", "rows"))
                        offset = 2.0 * defects.STRIPE_LEVEL * background_noise(window)
                        c, r = (int(v) for v in rng.integers(4, np.array(window.shape[1:]) - 4))
                        planted = window.copy()
                        planted[:, :, c] += offset
                        planted[:, r, :] += offset
                        got = movie_defects(planted, 0, n)[2]
                        col_found += got is not None and abs(got.columns[c]) > offset / 2
                        row_found += got is not None and abs(got.rows[r]) > offset / 2
                counts.append((false, subtracted, col_found, row_found))
            (f1, s1, c1, r1), (f0, s0_, c0, r0) = counts
            lines.append(f"| {name} | {n} | {len(starts)} | {f1} / {f0} | {s1} / {s0_} | {c1} / {c0} | {r1} / {r0} |")
            print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

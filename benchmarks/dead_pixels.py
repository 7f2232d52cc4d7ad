"""Dead pixels and padding: regions that read the same value in every frame.

    python benchmarks/dead_pixels.py [--frames 40] [--out benchmarks/results/dead_pixels.md]

Simulated sCMOS movies (64x64 px of 100 nm, seeds 99101+, used nowhere
else): 300-3,000 photons, FWHM 250-350 nm, background 30 photons/px,
baseline 100 ADU, 2 ADU/e-, read noise 1.5 e-, the camera given; clean, and
with a dead column (0 ADU, or at the baseline), an 8 px border on two
sides at 0 ADU or at the baseline (frames registered, or cropped to a
shape, and padded), and a 20x20 px corner at 0 ADU (a masked part of the
chip). Each movie is localized with the defaults (refinement on) by this
release and as the previous release did (no dead-pixel search:
`defects.find_dead_pixels` switched off, and no column and row search,
`defects.find_stripes`, which came after it).

Reported: the dead pixels found; Jaccard, precision and RMSE (nm) at
250 nm of every detection against the emitters in the live part of the
frames (all of the frame for a column), this release / previous;
detections inside the dead region, this release / previous.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
from _machine import describe

import napari_dsir.reconstruct as R
from napari_dsir.evaluate import evaluate
from napari_dsir.run import reconstruct
from napari_dsir.simulate import SimulationConfig, simulate

HERE = Path(__file__).resolve().parent
CAMERA = {"baseline": 100.0, "sensitivity": 0.5, "read_noise": 1.5}
#: (name, (y0, y1, x0, x1) dead boxes in px, value ADU)
CASES = [
    ("clean", [], 0.0),
    ("dead column at 0 ADU", [(0, 64, 20, 21)], 0.0),
    ("dead column at the baseline", [(0, 64, 20, 21)], 100.0),
    ("8 px border on two sides at 0 ADU", [(0, 64, 0, 8), (0, 8, 0, 64)], 0.0),
    ("8 px border on two sides at the baseline", [(0, 64, 0, 8), (0, 8, 0, 64)], 100.0),
    ("20x20 px corner at 0 ADU", [(44, 64, 44, 64)], 0.0),
]


def live(x_nm, y_nm, boxes, margin):
    """Positions more than ``margin`` px clear of every box (px)."""
    ok = np.ones(len(x_nm), bool)
    for y0, y1, x0, x1 in boxes:
        if x1 - x0 > 1 and y1 - y0 > 1:  # regions, not a column
            ok &= ~((x_nm / 100 >= x0 - margin) & (x_nm / 100 < x1 + margin) &
                    (y_nm / 100 >= y0 - margin) & (y_nm / 100 < y1 + margin))
    return ok


def inside(x_nm, y_nm, boxes):
    out = np.zeros(len(x_nm), bool)
    for y0, y1, x0, x1 in boxes:
        if x1 - x0 > 1 and y1 - y0 > 1:
            out |= (x_nm / 100 >= x0) & (x_nm / 100 < x1) & (y_nm / 100 >= y0) & (y_nm / 100 < y1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "dead_pixels.md")
    args = ap.parse_args()
    lines = [
        "# Dead pixels and padding (`python benchmarks/dead_pixels.py`)", "",
        f"Run on {time.strftime('%Y-%m-%d')}, {describe()}, {args.frames} frames per set (64x64 px, sCMOS-like "
        "camera given); default model and settings; see the script's docstring.", "",
        "| movie | /um^2 | dead pixels found | J250, this / previous | precision | RMSE (nm) | detections inside "
        "the dead region |",
        "|---|---|---|---|---|---|---|",
    ]
    for density in (1.0, 4.0):
        cfg = SimulationConfig(frame_size=(64, 64), density=density, fwhm=(250.0, 350.0), photons=(300.0, 3000.0),
                               background=30.0, base_level=100.0, gain=2.0, read_noise=1.5, margin=200.0)
        clean, gt = simulate(args.frames, cfg, seed=99101 + int(density))
        for name, boxes, value in CASES:
            frames = clean.copy()
            for y0, y1, x0, x1 in boxes:
                frames[:, y0:y1, x0:x1] = value
            g = gt.select(live(gt.x, gt.y, boxes, 0.0))
            cells, n_dead = [], 0
            for release in ("this", "previous"):
                with (mock.patch.multiple(R, find_dead_pixels=lambda sample: np.zeros((0, 2), np.int64),
                                          find_stripes=lambda *args: None)
                      if release == "previous" else nullcontext()):
                    res = reconstruct(frames, pixel_size=100.0, localize=True, camera=CAMERA)
                L = res.localizations
                e = evaluate(g, L, 250.0)
                cells.append((e.jaccard, e.precision, e.rmse, int(inside(L.x, L.y, boxes).sum())))
                n_dead = res.info.get("dead_pixels", 0) if release == "this" else n_dead
            pair = " / ".join
            lines.append(f"| {name} | {density:g} | {n_dead} | {pair(f'{c[0]:.3f}' for c in cells)} | "
                         f"{pair(f'{c[1]:.3f}' for c in cells)} | {pair(f'{c[2]:.1f}' for c in cells)} | "
                         f"{pair(str(c[3]) for c in cells)} |")
            print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""Bright emitters and dark backgrounds: the movie scaled down for the network, and not.

    python benchmarks/brightness.py [--frames 40] [--out benchmarks/results/brightness.md]

The default network was trained on movies whose spots, divided by the
movie's noise level, stay under its spot ceiling (99 % of its training
movies; `DSIRModel.spot_ceiling`). Emitters taller than that (many photons
on a dark background) made it add false detections beside them. A run now
divides such a movie by its noise level times the ratio of its spots'
height to the ceiling (`DSIRModel.input_scale`), and leaves out the weak
detections it still makes beside the brightest (`localize.suppress_echoes`,
less than 20 % of a detection's intensity within 2 px). This script
localizes (defaults, the camera given, refinement on) simulated movies
(64x64 px of 100 nm, seeds 95001+, used nowhere else) with the rule
("scaled"), with it but the echoes kept (the previous release: the
localizer's `suppress_echoes` replaced by one that keeps every detection)
and with the plain noise level ("unscaled", the release before), from dim
to very bright emitters and dark to bright backgrounds, plus controls
within the training's range where the rule must not act.

Reported: the factor the run chose, Jaccard / precision / recall at 250 nm,
RMSE (100 nm matches), std(error / uncertainty) over isolated emitters and
the median ratio of fitted to true photons.
"""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

from _machine import describe
from calibrated import calibration

import napari_dsir.model as M
import napari_dsir.reconstruct as R
from napari_dsir.camera import Camera
from napari_dsir.evaluate import evaluate
from napari_dsir.run import reconstruct
from napari_dsir.simulate import SimulationConfig, simulate

HERE = Path(__file__).resolve().parent
CAMERA = Camera(100.0, 1.0, 1.0, 1.0, read_noise=1.5)
#: (photons, background photons/px, density /um^2, FWHM nm)
SETS = [
    ((200.0, 5000.0), 35.0, 1.0, (250.0, 350.0)),  # controls: the calibrated benchmark's range
    ((200.0, 5000.0), 35.0, 6.0, (250.0, 350.0)),
    ((1000.0, 20000.0), 100.0, 0.5, (250.0, 330.0)),
    ((1000.0, 10000.0), 3.0, 1.0, (250.0, 350.0)),
    ((200.0, 5000.0), 3.0, 1.0, (170.0, 220.0)),
    ((5000.0, 50000.0), 100.0, 0.5, (250.0, 330.0)),
    ((5000.0, 50000.0), 10.0, 1.0, (180.0, 240.0)),
    ((2000.0, 20000.0), 3.0, 0.5, (300.0, 370.0)),
    ((20000.0, 100000.0), 100.0, 0.5, (250.0, 330.0)),
    ((200.0, 100000.0), 100.0, 0.5, (250.0, 330.0)),
    ((20000.0, 100000.0), 100.0, 3.0, (250.0, 330.0)),
]


def run(frames, gt, unscaled: bool, echoes_kept: bool = False) -> tuple[float, str]:
    original = R.movie_noise_scale
    with ExitStack() as stack:
        if unscaled or echoes_kept:
            stack.enter_context(mock.patch.object(R, "suppress_echoes", lambda locs, radius: locs))
        if unscaled:  # the movie's noise level alone, and (as then) no limit to the network's input
            stack.enter_context(mock.patch.object(
                R, "movie_noise_scale", lambda *a, **kw: (lambda s, f: (s / f, 1.0))(*original(*a, **kw))))
            stack.enter_context(mock.patch.object(M, "INPUT_CEILING", float("inf")))
        res = reconstruct(frames, pixel_size=100.0, localize=True, camera=CAMERA)
    locs = res.localizations
    a, b = evaluate(gt, locs, 250.0), evaluate(gt, locs, 100.0)
    c = calibration(gt, locs, (frames.shape[1] * 100.0, frames.shape[2] * 100.0))
    return res.info["brightness_factor"], (f"{a.jaccard:.3f} / {a.precision:.2f} / {a.recall:.2f}; {b.rmse:.1f}; "
                                           f"{c['z_std']:.2f}; {c['photons']:.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "brightness.md")
    args = ap.parse_args()
    lines = [
        "# Bright emitters and dark backgrounds (`python benchmarks/brightness.py`)", "",
        f"Run on {time.strftime('%Y-%m-%d')}, {describe()}, {args.frames} frames per set (64x64 px of 100 nm, "
        "sCMOS-like camera given); default model and settings. Cells: Jaccard / precision / recall at 250 nm; "
        "RMSE of the 100 nm matches (nm); std(error / uncertainty), isolated emitters away from the edges; "
        "photons fitted / true (median).", "",
        "| photons | background (photons/px) | /um^2 | FWHM (nm) | factor | scaled, echoes left out (this release) | "
        "scaled, echoes kept (previous) | unscaled (the release before) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, (photons, bg, density, fwhm) in enumerate(SETS):
        cfg = SimulationConfig(frame_size=(64, 64), density=density, fwhm=fwhm, background=bg, photons=photons,
                               margin=200.0, base_level=100.0, gain=1.0, read_noise=1.5)
        frames, gt = simulate(args.frames, cfg, seed=95001 + i)
        factor, scaled = run(frames, gt, False)
        _, kept = run(frames, gt, False, True) if factor > 1 else (1.0, "the same")
        _, unscaled = run(frames, gt, True) if factor > 1 else (1.0, "the same")
        lines.append(f"| {photons[0]:,.0f}-{photons[1]:,.0f} | {bg:g} | {density:g} | {fwhm[0]:g}-{fwhm[1]:g} | "
                     f"{factor:.2f} | {scaled} | {kept} | {unscaled} |")
        print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

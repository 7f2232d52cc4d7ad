"""Reported uncertainty on cameras with other pixel sizes than the network's 100 nm training pixels.

    python benchmarks/pixel_size.py [--frames 40] [--out benchmarks/results/pixel_size.md]

The refinement's window and the density in the network's error model are
counted in camera pixels; the optics set the PSF in nm. This compares, on
validation movies of 80, 100, 130 and 160 nm pixels:

- "previous": a 7 px fitting window whatever the pixel, and the density of
  detections around counted per um^2 within +-1 um (as before; reproduced
  here by `_density_per_um2`);
- "7 px window": the density per 100 camera px^2 within +-10 px, the window
  still 7 px;
- "current": what `dsir localize` does now, the density per 100 camera px^2
  and a window of about 700 nm (`reconstruct.fit_window`: 9 / 7 / 5 / 5 px).

At 100 nm pixels all three are the same.

Sets: the project's simulator with seeds 71001+ (apart from the training's,
the calibration's and the other benchmarks'), 64x64 px, PSF FWHM 220-380
nm, 300-4,000 photons, background 30 photons/px, sCMOS-like camera
(baseline 100 ADU, 0.46 e-/ADU, read noise 1.6 e-), at 0.5, 1, 2 and 4
emitters/um^2. The default model's detections (its own threshold) are
refined as reconstruct does (`reconstruct.fit_settings`, the model's
network error).

Reported: std of (error / reported uncertainty) per axis of the isolated
emitters (no other within 500 nm, pairs matched within 100 nm; also only
those at least 500 nm from the frame's edges: the truth lists no emitter
outside the frame, and the simulator's emitters up to 200 nm outside shine
in, as a sample that goes on past the frame does) and of the
rows kept at the network's position (crowded or pulled), the share of free
fits (status ok) and of pulled ones, lateral RMSE of the pairs within 250 nm.
The target of the calibrated-localizations issue for the isolated emitters:
0.8-1.25.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _machine import describe
from calibrated import calibration, kept_z

from napari_dsir import fit
from napari_dsir import reconstruct as R
from napari_dsir.camera import Camera
from napari_dsir.evaluate import evaluate
from napari_dsir.localize import local_density, params_for
from napari_dsir.model import load_model
from napari_dsir.run import reconstruct
from napari_dsir.simulate import SimulationConfig, simulate

PIXELS = (80.0, 100.0, 130.0, 160.0)
DENSITIES = (0.5, 1.0, 2.0, 4.0)
CAMERA = Camera(100.0, 0.46, 1.0, 1.0, read_noise=1.6)


def validation_movie(n_frames: int, pixel_size: float, fwhm: tuple[float, float], density: float, seed: int):
    """(frames, truth) of 64x64 px on `CAMERA` (simulated: baseline 100 ADU,
    0.46 e-/ADU, read noise 1.6 e-), 300-4,000 photons, background 30."""
    cfg = SimulationConfig(frame_size=(64, 64), density=density, fwhm=fwhm, background=30.0, photons=(300.0, 4000.0),
                           margin=200.0, base_level=100.0, gain=1 / 0.46, read_noise=1.6, pixel_size=pixel_size)
    return simulate(n_frames, cfg, seed=seed)


def _density_per_um2(pixel_size: float):
    """The previous density measure for ``pixel_size`` nm pixels: detections
    per frame and um^2 within +-1 um (its radius rounded to camera px)."""

    def density(x_px, y_px, n_frames, shape):
        r = max(1, round(1000.0 / pixel_size))
        return local_density(x_px, y_px, n_frames, shape, r) * (100.0 / pixel_size) ** 2

    return density


def run(frames, gt, px: float, params, variant: str) -> str:
    found = reconstruct(frames, None, pixel_size=px, localize=True, refine=False, camera=CAMERA).localizations
    photons = CAMERA.to_photons(torch.from_numpy(np.asarray(frames, np.float32)))
    start = R.fit_sigma_init(R.movie_psf(frames, 0, len(frames), px, CAMERA))  # as a run starts its fits
    settings = R.refine_settings(px, params, start, window=None if variant == "current" else 7)
    original = fit.local_density
    if variant == "previous":
        fit.local_density = _density_per_um2(px)
    found = R.merge_splits(photons, found, px, CAMERA, settings)[0]  # as a run does
    try:
        res = fit.refine(photons, found, px, CAMERA, threads=2, **settings)
    finally:
        fit.local_density = original
    locs = res.locs
    c = calibration(gt, locs)
    inner = calibration(gt, locs, size_nm=tuple(n * px for n in frames.shape[1:]))
    kept = np.isin(res.status, (fit.CROWDED, fit.PULLED))
    return (f"| {px:g} nm, {variant} ({settings['window']} px) | {c['z_std']:.2f} ({c['n_iso']}) | "
            f"{inner['z_std']:.2f} ({inner['n_iso']}) | "
            f"{kept_z(gt, locs, kept).split(';')[0]} | {np.mean(res.status == fit.OK):.0%} | "
            f"{np.mean(res.status == fit.PULLED):.0%} | {evaluate(gt, locs, 250.0).rmse:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pixel_size.md")
    args = ap.parse_args()
    params = params_for(load_model())
    rows = []
    for px in PIXELS:
        for i, d in enumerate(DENSITIES):
            frames, gt = validation_movie(args.frames, px, (220.0, 380.0), d, 71001 + 10 * i + int(px))
            variants = ("current",) if px == 100.0 else ("previous", "7 px window", "current")
            for v in variants:
                rows.append(run(frames, gt, px, params, v).replace("| ", f"| {d:g} /um^2, ", 1))
                print(rows[-1], flush=True)
    head = [
        "# Other camera pixel sizes (`python benchmarks/pixel_size.py`)",
        "",
        f"Run on {time.strftime('%Y-%m-%d')}, {describe()}, {args.frames} frames per set; default model, "
        "its own threshold; see the script's docstring for the sets and variants.",
        "",
        "| set | std(err/unc), isolated (n) | isolated, 500 nm from the edges (n) | "
        "std(err/unc), network position kept (n) | free fits | pulled | RMSE 250 (nm) |",
        "|---|---|---|---|---|---|---|",
    ]
    args.out.write_text("\n".join(head + rows) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

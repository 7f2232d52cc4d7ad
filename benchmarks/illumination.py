"""Uneven illumination: the fits with a flat background in each window against the fits that follow the beam.

    python benchmarks/illumination.py [--frames 60] [--out benchmarks/results/illumination.md]

Sets (validation seeds 79101+, in no other benchmark): 64x64 px of 100 nm
lit by a Gaussian beam whose brightness falls from the centre to the
corners by 1 (flat, the control), 2, 3 and 6 times. It lights the
background (70 photons/px in the centre) and the emitters alike (200-5,000
photons in the centre, PSF FWHM 250-350 nm, emitters also up to 500 nm
outside the frame); 0.5, 2 and 4 emitters/um^2; and evenly lit emitters
on a background rising linearly across the frame from 10 to 150
photons/px (0.5 and 2 /um^2), not a beam's shape; the accuracy benchmark's
sCMOS camera (400 ADU, 0.5 e-/ADU, read noise 1.5 e-). Every run is a
user's run (`napari_dsir.run.reconstruct`, the camera given); "flat" is the
same run with the beam never used (`illumination.MIN_R2` out of reach): the
network sees the frames as they are and the fits take each window's
background as flat.

Second table, runs without the fits (`--refine none`, the network's
positions; `dsir reconstruct`): no camera given (nothing measured: the
network sees the frames as they are) against the camera given (the beam
measured in photons and taken out of the network's input). Sets: the
background alone under a 2x and a 6x beam (seeds 79201+; every detection
is false: detections per frame, and the sum image's mean over the middle
30 % of the field over its mean over the four corners' 30 % squares: the
haze), and five of the sets above.

Per set: what the run measured (the beam's ratio, its share of the
background map explained, whether it was followed), then for both runs:
Jaccard and precision at 250 nm, RMSE of the pairs within 250 nm; over the
isolated emitters
(no other within 500 nm) matched within 100 nm: the mean error towards the
centre of the beam, along x on the ramp (nm: a fit on a sloping flat
background is pulled uphill) and std(error / reported uncertainty) per axis; median fitted /
true photons over all pairs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
from _machine import describe
from calibrated import isolated

from napari_dsir import illumination
from napari_dsir.camera import Camera
from napari_dsir.evaluate import evaluate, match
from napari_dsir.locs import Localizations
from napari_dsir.run import reconstruct
from napari_dsir.simulate import FWHM_TO_SIGMA, camera_electrons, render_emitters

HERE = Path(__file__).resolve().parent
CAMERA = Camera(400.0, 0.5, 1.0, 1.0, read_noise=1.5)
SIZE, PIXEL, MARGIN = 64, 100.0, 500.0
RATIOS = (1.0, 2.0, 3.0, 6.0)
DENSITIES = (0.5, 2.0, 4.0)


def beam(ratio: float, size: int = SIZE) -> np.ndarray:
    """(y, x) the beam's brightness: 1 in the centre, 1 / ``ratio`` in the corners (Gaussian)."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    r2 = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 2) ** 2)
    return ratio ** (-r2)


def ramp(low: float, high: float, size: int = SIZE) -> np.ndarray:
    """(y, x) a background rising linearly across x from ``low`` to ``high`` (photons/px), / 70."""
    return np.broadcast_to(np.linspace(low, high, size)[None, :], (size, size)) / 70.0


def movie(n: int, density: float, ratio: float, seed: int, background=None) -> tuple[np.ndarray, Localizations]:
    """Frames (ADU) and truth (nm, photons as lit) under the beam; or, with
    ``background`` (y, x, times 70 photons/px), emitters lit evenly on it."""
    rng = np.random.default_rng(seed)
    lit = beam(ratio) if background is None else np.ones((SIZE, SIZE))
    frames = np.empty((n, SIZE, SIZE), np.float32)
    parts = []
    side = SIZE * PIXEL + 2 * MARGIN
    for f in range(n):
        k = rng.poisson(density * side * side / 1e6)
        x, y = rng.uniform(-MARGIN, SIZE * PIXEL + MARGIN, (2, k))
        ix = np.clip((x / PIXEL).astype(int), 0, SIZE - 1)
        iy = np.clip((y / PIXEL).astype(int), 0, SIZE - 1)
        photons = rng.uniform(200.0, 5000.0, k) * lit[iy, ix]
        sigma = rng.uniform(250.0, 350.0, k) * FWHM_TO_SIGMA
        expected = render_emitters(x, y, photons, sigma, (SIZE, SIZE), PIXEL) + 70.0 * (
            lit if background is None else background)
        e = camera_electrons(rng, expected * CAMERA.qe, 1.0, CAMERA.read_noise)
        frames[f] = np.clip(np.round(CAMERA.baseline + e / CAMERA.sensitivity), 0, 65535)
        inside = (x >= 0) & (x < SIZE * PIXEL) & (y >= 0) & (y < SIZE * PIXEL)
        parts.append(Localizations(np.full(inside.sum(), f), x[inside], y[inside], photons[inside],
                                   sigma=sigma[inside]))
    return frames, Localizations.concatenate(parts)


def isolated_errors(gt: Localizations, locs: Localizations, ramp_set: bool = False) -> tuple[float, float]:
    """(mean error uphill (nm): towards the frame's centre, or along x on a
    ramp (``ramp_set``); std(error / uncertainty)
    per axis; NaN without uncertainties) over the isolated emitters matched
    within 100 nm (with an uncertainty, where the table has them)."""
    gi, pi, _ = match(gt, locs, 100.0)
    if locs.uncertainty is not None:
        ok = np.isfinite(locs.uncertainty[pi])
        gi, pi = gi[ok], pi[ok]
    iso = isolated(gt)[gi]
    gi, pi = gi[iso], pi[iso]
    ex, ey = locs.x[pi] - gt.x[gi], locs.y[pi] - gt.y[gi]
    cx, cy = SIZE * PIXEL / 2 - gt.x[gi], SIZE * PIXEL / 2 - gt.y[gi]
    if ramp_set:
        cx, cy = np.ones_like(cx), np.zeros_like(cy)
    towards = (ex * cx + ey * cy) / np.maximum(np.hypot(cx, cy), 1e-9)
    if locs.uncertainty is None:
        return float(np.mean(towards)), float("nan")
    u = locs.uncertainty[pi]
    return float(np.mean(towards)), float(np.std(np.concatenate([ex / u, ey / u])))


def photons_ratio(gt: Localizations, locs: Localizations) -> float:
    gi, pi, _ = match(gt, locs, 100.0)
    ok = np.isfinite(locs.photons[pi])
    return float(np.median(locs.photons[pi][ok] / gt.intensity[gi][ok]))


def middle_over_corners(img: np.ndarray) -> float:
    """The image's mean over the middle 30 % of the field over its mean over the four corners' 30 % squares."""
    k = img.shape[0] * 3 // 10
    c0, c1 = img.shape[0] // 2 - k // 2, img.shape[1] // 2 - k // 2
    corners = np.mean([img[:k, :k].mean(), img[-k:, -k:].mean(), img[:k, -k:].mean(), img[-k:, :k].mean()])
    return float(img[c0 : c0 + k, c1 : c1 + k].mean() / max(corners, 1e-12))


def network_rows(n_frames: int) -> list[str]:
    """The second table: runs without the fits, no camera against the camera given."""
    rows = []
    sets = [(f"background alone, beam {r:g}x", 0.0, r, None, 79200 + i) for i, r in enumerate((2.0, 6.0), 1)]
    sets += [(f"{d:g} /um^2, beam {r:g}x", d, r, None, 79101 + 1 + DENSITIES.index(d) * len(RATIOS) + RATIOS.index(r))
             for d, r in ((0.5, 3.0), (0.5, 6.0), (2.0, 6.0))]
    sets += [(f"{d:g} /um^2, ramp 10-150 photons/px", d, 1.0, ramp(10.0, 150.0), 79101 + 1 + 12 + i)
             for i, d in enumerate((0.5, 2.0))]
    for name, density, ratio, background, seed in sets:
        frames, gt = movie(n_frames, density, ratio, seed, background)
        cells = []
        for cam in (None, CAMERA):
            res = reconstruct(frames, None, pixel_size=PIXEL, localize=True, refine=False, camera=cam)
            per_frame = len(res.localizations) / n_frames
            if len(gt):
                a = evaluate(gt, res.localizations, 250.0)
                cells.append(f"{a.jaccard:.3f} / {a.precision:.3f} / {per_frame:.1f}")
            else:
                cells.append(f"- / - / {per_frame:.1f}; haze {middle_over_corners(res.sum_image):.2f}")
        rows.append(f"| {name} | {' | '.join(cells)} | {'yes' if res.info.get('background_shaped') else 'no'} |")
        print(rows[-1], flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "illumination.md")
    args = ap.parse_args(argv)
    rows = []
    seed = 79101
    sets = [(f"{d:g} /um^2, beam {r:g}x", d, r, None) for d in DENSITIES for r in RATIOS]
    sets += [(f"{d:g} /um^2, ramp 10-150 photons/px", d, 1.0, ramp(10.0, 150.0)) for d in (0.5, 2.0)]
    for name, density, ratio, background in sets:
        seed += 1
        frames, gt = movie(args.frames, density, ratio, seed, background)
        shaped = reconstruct(frames, None, pixel_size=PIXEL, localize=True, camera=CAMERA)
        with mock.patch.object(illumination, "MIN_R2", 2.0):  # the beam never followed
            flat = reconstruct(frames, None, pixel_size=PIXEL, localize=True, camera=CAMERA)
        info = shaped.info
        measured = (f"{info['background_ratio']:.1f}x, {info['background_r2']:.2f}, "
                    f"{'yes' if info['background_shaped'] else 'no'}")
        cells = []
        for locs in (flat.localizations, shaped.localizations):
            a = evaluate(gt, locs, 250.0)
            cells.append(f"{a.jaccard:.3f} / {a.precision:.3f} / {a.rmse:.1f}")
        (bf, zf), (bs, zs) = (isolated_errors(gt, r.localizations, background is not None) for r in (flat, shaped))
        pf, ps = (photons_ratio(gt, r.localizations) for r in (flat, shaped))
        rows.append(f"| {name} | {measured} | {' | '.join(cells)} | "
                    f"{bf:+.1f} / {bs:+.1f} | {zf:.2f} / {zs:.2f} | {pf:.3f} / {ps:.3f} |")
        print(rows[-1], flush=True)
    head = ["# Uneven illumination (`python benchmarks/illumination.py`)", "",
            f"Run on {time.strftime('%Y-%m-%d')} on {describe()}; {args.frames} frames per set (see the script's "
            "docstring). Flat: each fit's background flat over its window (as before); beam: the fits follow "
            "the background's shape the run measured.", "",
            "| set | measured: ratio, R^2, followed | flat: Jaccard / precision / RMSE 250 | "
            "beam: Jaccard / precision / RMSE 250 | isolated: error uphill (nm), flat / beam | "
            "isolated: std(error / uncertainty), flat / beam | photons / truth, flat / beam |",
            "|---|---|---|---|---|---|---|"]
    second = ["", "Without the fits (the network's positions, `--refine none`; the sum image of `dsir reconstruct`): "
              "Jaccard / precision at 250 nm / detections per frame; on the background alone every detection "
              "is false, and haze: the sum image's mean over the middle of the field over the corners' (1: none).",
              "", "| set | no camera given | camera given | beam taken out |", "|---|---|---|---|"]
    second += network_rows(args.frames)
    args.out.write_text("\n".join(head + rows + second) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

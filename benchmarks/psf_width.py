"""PSFs wider in camera pixels than the network's training: the network's binning.

    python benchmarks/psf_width.py [--frames 40] [--out benchmarks/results/psf_width.md]

The default network was trained on PSFs of FWHM 170-370 nm on 100 nm pixels
(1.7-3.7 px). Small camera pixels (65 nm: a 6.5 um sCMOS pixel behind a 100x
objective) or a wide PSF put it beyond that. `dsir localize` measures the
PSF on the movie (`napari_dsir.psf.measure_fwhm`, 32 frames) and bins the
frames for the network when 60 % of the fitted widths are beyond the
training's widest (their 40th percentile; `reconstruct.movie_binning`),
unless the network would then see more emitters per pixel^2 than in its
training (its detections on the sample, unbinned, x 4 above 9 per 100
px^2), or when 30 % of them are (the 70th percentile, with 20 fits in that
share at least) and the binned frames would hold at most 0.8 of that (`psf.STRADDLE_DENSITY_SHARE`); the
fits use the camera's own pixels.

Sets: the project's simulator with seeds 74001+ (apart from the training's,
the calibration's and the other benchmarks'), 64x64 px, 300-4,000 photons,
background 30 photons/px, sCMOS-like camera (baseline 100 ADU, 0.46 e-/ADU,
read noise 1.6 e-), the PSFs and densities in the table; and, as controls,
PSFs within the training range and three narrower than it (not resampled:
the weak echoes the network makes beside their emitters are left out,
`localize.suppress_echoes`). Each set runs as `dsir localize` does
(default model, its own threshold, refinement), with the binning measured
("auto") and with the other choice ("other": 2x2 where auto kept the
frames, none where it binned them, the echoes kept for narrow PSFs).

Also the binning measured on the ThunderSTORM demo and the sample stack,
and the time of the PSF's measurement (`reconstruct.movie_binning`, median
of 5 in one process) on the Bundled Tubes HD movie when it exists.

Reported: the measured FWHM (median; 40th / 70th percentiles, in camera px) and the
binning it gives, then per binning the Jaccard at 250 nm and the precision
(detections matched within 250 nm / all detections), the lateral RMSE of
the pairs matched within 250 nm, and std(error / uncertainty) per axis of the
isolated emitters (no other within 500 nm) and of the rows kept at the
network's position (pairs within 100 nm).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from _machine import describe, median_seconds
from calibrated import calibration, kept_z
from pixel_size import CAMERA, validation_movie

from napari_dsir import fit
from napari_dsir import reconstruct as R
from napari_dsir.evaluate import evaluate
from napari_dsir.io import open_stack
from napari_dsir.localize import params_for
from napari_dsir.model import load_model
from napari_dsir.run import reconstruct

BUNDLED_TUBES = Path(__file__).resolve().parents[2] / "shared" / "data" / "bundled_tubes_hd" / "sequence"
#: (pixel nm, FWHM range nm, density /um^2)
SETS = [
    (65.0, (250.0, 350.0), 0.5), (65.0, (250.0, 350.0), 2.0), (65.0, (300.0, 380.0), 1.0),
    (80.0, (300.0, 380.0), 1.0), (100.0, (400.0, 480.0), 1.0), (100.0, (450.0, 550.0), 2.0),
    (100.0, (400.0, 480.0), 4.0), (100.0, (360.0, 400.0), 8.0),
    # controls: within the training range
    (100.0, (250.0, 350.0), 1.0), (100.0, (300.0, 370.0), 4.0), (80.0, (220.0, 280.0), 1.0),
    # narrower than the training (not resampled)
    (130.0, (150.0, 200.0), 1.0), (160.0, (180.0, 240.0), 1.0), (160.0, (220.0, 280.0), 2.0),
    # straddling the training's widest (3.7 px): the median beyond it, the lower quartile within
    (100.0, (300.0, 450.0), 1.0), (80.0, (220.0, 380.0), 1.0),
    # emitters at many depths: the median well beyond, at moderate densities
    (100.0, (300.0, 600.0), 2.0), (100.0, (300.0, 500.0), 2.0), (80.0, (220.0, 380.0), 2.5),
]


def _kept_z(frames, gt, found, px, binning, params, start) -> str:
    """std(err/unc) of the rows held at the network's position (their status
    from a refine call with reconstruct's settings on the same detections,
    started as the run's: ``start``, nm)."""
    photons = CAMERA.to_photons(torch.from_numpy(np.asarray(frames, np.float32)))
    settings = R.refine_settings(px, params, start, binning)
    found = R.merge_splits(photons, found, px, CAMERA, settings, binning)[0]  # as the run does
    res = fit.refine(photons, found, px, CAMERA, threads=2, **settings)
    return kept_z(gt, res.locs, np.isin(res.status, (fit.CROWDED, fit.PULLED))).split(";")[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "psf_width.md")
    args = ap.parse_args()
    params = params_for(load_model())
    rows = []
    for i, (px, fwhm, d) in enumerate(SETS):
        frames, gt = validation_movie(args.frames, px, fwhm, d, 74001 + i)
        cells = [f"{px:g} nm, FWHM {fwhm[0]:g}-{fwhm[1]:g} nm ({fwhm[0] / px:.1f}-{fwhm[1] / px:.1f} px), {d:g} /um^2"]
        chosen = narrow = None
        for binning in (None, "other"):
            if binning == "other":  # the other choice: 2x2 where auto kept the frames, else none;
                # for a narrow PSF, the echoes kept (an explicit binning measures the PSF for the fits only)
                binning = 1 if chosen > 1 or narrow else 2
            res = reconstruct(frames, pixel_size=px, localize=True, camera=CAMERA, binning=binning)
            locs, b = res.localizations, res.info["binning"]
            if binning is None:
                chosen, narrow = b, res.info.get("psf_narrow")
                med, q40, q70 = (res.info.get(f"psf_fwhm{k}_nm") for k in ("", "_q40", "_q70"))
                dens = res.info.get("network_density")
                crowd = f", {dens:.1f} detections / 100 px^2" if dens is not None else ""
                echo = ", echoes left out" if narrow else ""
                widths = f"{q40:.0f} / {q70:.0f} ({q40 / px:.1f} / {q70 / px:.1f} px{crowd})" if med else ""
                cells.append(f"{med:.0f}; {widths} -> {b}{echo}" if med else f"- -> {b}")
            e = evaluate(gt, locs, 250.0)
            # the same detections (auto: the same binning and echoes), to class the rows by their status
            found = reconstruct(frames, pixel_size=px, localize=True, refine=False, camera=CAMERA,
                                binning=binning).localizations
            c = calibration(gt, locs)
            cells += [] if binning is None else [f"{b}{' (echoes kept)' if narrow else ''}"]
            cells += [f"{e.jaccard:.3f} ({e.precision:.2f})", f"{e.rmse:.1f}", f"{c['z_std']:.2f}",
                      _kept_z(frames, gt, found, px, b, params, R.fit_sigma_init(res.info))]
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    head = [
        "# PSFs wide in camera pixels (`python benchmarks/psf_width.py`)",
        "",
        f"Run on {time.strftime('%Y-%m-%d')}, {describe()}, {args.frames} frames per set; default model, its own "
        "threshold, refinement; see the script's docstring.",
        "",
        "| set | FWHM measured: median; 40th / 70th percentiles (nm) -> binning | J250 (precision) auto | "
        "RMSE250 auto | "
        "std(err/unc) isolated, auto | std(err/unc) network position kept, auto | other binning | "
        "J250 (precision), other | RMSE250, other | std isolated, other | std kept, other |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    demo = BUNDLED_TUBES.parents[1] / "thunderstorm_demo" / "ArtificialDataset_demo1.tif"
    sample = Path(__file__).resolve().parents[1] / "src" / "napari_dsir" / "data" / "sample_stack.tif"
    for name, path in (("the ThunderSTORM demo", demo), ("the sample stack", sample)):
        if path.is_file():
            stack = open_stack(path)
            b, psf = R.movie_binning(stack, load_model(), 0, len(stack), 100.0)
            rows += ["", f"{name}: FWHM {psf['psf_fwhm_nm']:.0f} nm, 70th percentile {psf['psf_fwhm_q70_nm']:.0f} nm, "
                     f"{psf['psf_fits']} fits -> binning {b}."]
    if BUNDLED_TUBES.is_dir():
        stack, model = open_stack(BUNDLED_TUBES), load_model()
        R.movie_binning(stack, model, 0, len(stack), 100.0)  # warm-up
        sec = median_seconds(lambda: R.movie_binning(stack, model, 0, len(stack), 100.0), 5)
        b, psf = R.movie_binning(stack, model, 0, len(stack), 100.0)
        rows += ["", f"Measuring the PSF of Bundled Tubes HD ({len(stack)} frames, 32 of them fitted): {sec:.3f} s "
                 f"(median of 5, one process); FWHM {psf['psf_fwhm_nm']:.0f} nm, 70th percentile "
                 f"{psf['psf_fwhm_q70_nm']:.0f} nm, {psf['psf_fits']} fits -> binning {b}."]
    args.out.write_text("\n".join(head + rows) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

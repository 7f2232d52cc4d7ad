"""The refinement settings of `reconstruct` (FIT_MAX_GROUP, FIT_MAX_ITER, FIT_FALLBACK_PASSES, FIT_ISOLATION_NM).

    python benchmarks/fit_settings.py [--out benchmarks/results/fit_settings.md]

On the accuracy benchmark's sCMOS sets at 1, 4 and 6 emitters/um^2
(benchmarks/accuracy.py), the default model's detections are refined by
`napari_dsir.fit.refine` (float32, max_shift_px as reconstruct) with:

- the previous settings: joint fits of groups of up to 3 detections, 20
  iterations, 1 pass over larger groups, every position fitted;
- reconstruct's (`reconstruct.refine_settings()`, the fits started from the
  PSF measured on the set as a run measures it): every detection alone with
  its neighbours' light held at first estimates, 15 iterations, 1 pass,
  detections with a neighbour closer than 5 px keeping the network's
  position (status CROWDED), free fits pulled away (moved more than 1 px,
  or a chi-square `reconstruct.FIT_MAX_CHI2_SIGMA` standard deviations too
  high) held at the network's position too (status PULLED);
- reconstruct's with the pulled fits failing instead (MOVED, BAD_FIT: NaN
  photons and uncertainty), as before;
- reconstruct's without the isolation rule (every position fitted);
- joint fits of groups of up to 3 detections with one PSF sigma per
  emitter (the simulator draws each emitter's FWHM, as defocus does in a
  real sample; one sigma per group leaves the light of the others
  misplaced), float64, 50 iterations, 2 passes, every position fitted.

Besides those sets, one of bright emitters (2,000-20,000 photons, 1
/um^2, the accuracy benchmark's camera; a validation seed, 76201, in no
other benchmark), where the bound is far below the network's error.

Reports the fit time per detection (median of 3, one torch thread, as
`refine` runs), the share of failed fits (NaN photons), the share held at
the network's position, and the lateral RMSE of all localizations matched
within 250 and 100 nm (failed fits count with the network's position, as
users get them), next to the network's own.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

import accuracy
import numpy as np
import torch
from _machine import describe

from napari_dsir import reconstruct as R
from napari_dsir.camera import Camera
from napari_dsir.evaluate import evaluate
from napari_dsir.fit import CROWDED, PULLED, refine
from napari_dsir.run import reconstruct
from napari_dsir.simulate import simulate

HERE = Path(__file__).resolve().parent
RECONSTRUCTS = R.fit_settings()
SETTINGS = {"previous: joint groups of 3, 20 iterations, 1 pass":
            {**RECONSTRUCTS, "max_group": 3, "max_iter": 20, "fallback_passes": 1, "isolation_px": None,
             "max_chi2_sigma": None, "hold_pulled": False},
            f"reconstruct's, isolation {R.FIT_ISOLATION_NM / 100:g} px": RECONSTRUCTS,
            "reconstruct's, pulled fits failing": {**RECONSTRUCTS, "hold_pulled": False},
            "reconstruct's, every position fitted": {**RECONSTRUCTS, "isolation_px": None},
            "joint groups of 3, one sigma per emitter, float64, 50 iterations, 2 passes":
            {**RECONSTRUCTS, "max_group": 3, "shared_sigma": False, "dtype": torch.float64, "max_iter": 50,
             "fallback_passes": 2, "isolation_px": None, "max_chi2_sigma": None, "hold_pulled": False}}
SETS = ("sCMOS 1 /um^2", "sCMOS 4 /um^2", "sCMOS 6 /um^2")


def bright_set():
    """The accuracy benchmark's sCMOS at 1 /um^2 with 2,000-20,000 photons per emitter."""
    cfg = dataclasses.replace(accuracy.sim_config(1.0), photons=(2000.0, 20000.0))
    return "sCMOS 1 /um^2, 2,000-20,000 photons", accuracy.SCMOS, simulate(60, cfg, seed=76201)


def sets():
    for name, cam, data, _ in accuracy.datasets():
        if name.split(" (")[0] in SETS:
            yield name, cam, data
    yield bright_set()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fit_settings.md")
    args = ap.parse_args(argv)
    rows = []
    for name, cam, (frames, gt) in sets():
        found = reconstruct(frames, model="default", pixel_size=100.0, localize=True, refine=False).localizations
        a, b = evaluate(gt, found, 250), evaluate(gt, found, 100)
        rows.append(f"| {name} | network positions only | {len(found)} | - | - | - | {a.rmse:.1f} | {b.rmse:.1f} |")
        camera = Camera.from_dict(cam)
        photons = camera.to_photons(torch.from_numpy(np.asarray(frames, np.float32)))
        start = R.fit_sigma_init(R.movie_psf(frames, 0, len(frames), 100.0, camera))
        for label, kw in SETTINGS.items():
            # the previous settings started at a PSF of 1 camera px, reconstruct's start from the movie's
            kw = kw if label.startswith("previous") else {**kw, "sigma_init_nm": start}
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fit = refine(photons, found, 100.0, camera, **kw)
                times.append(time.perf_counter() - t0)
            a, b = evaluate(gt, fit.locs, 250), evaluate(gt, fit.locs, 100)
            us = 1e6 * statistics.median(times) / max(1, len(found))
            held = np.mean(np.isin(fit.status, (CROWDED, PULLED)))
            rows.append(f"| {name} | {label} | {len(found)} | {us:.0f} | {100 * fit.n_failed / len(found):.0f}% | "
                        f"{100 * held:.0f}% | {a.rmse:.1f} | {b.rmse:.1f} |")
            print(rows[-1], flush=True)
    head = ["# Refinement settings (`python benchmarks/fit_settings.py`)", "",
            f"Run on {time.strftime('%Y-%m-%d')} on {describe()}; default model's detections, "
            f"median of {args.repeats} `refine` calls.", "",
            "| set | settings | detections | us per detection | failed | network position kept | "
            "RMSE 250 nm pairs (nm) | RMSE 100 nm pairs (nm) |",
            "|---|---|---|---|---|---|---|---|"]
    args.out.write_text("\n".join(head + rows) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The network's echoes beside emitters narrower than its training's: which movies lose them.

    python benchmarks/echoes.py [--frames 40] [--out benchmarks/results/echoes.md]

For a PSF narrower in (network) pixels than its training's (1.7 px FWHM for
the default model), the network adds weak detections beside the emitters;
`localize.suppress_echoes` leaves out those with less than 20 % of the
intensity of another within 2 px. A run does so where a quarter of the
movie's fitted spot widths, in the network's pixels (binned or not), are
narrower than the training's narrowest (`reconstruct.movie_binning`'s
``psf_narrow``); before, where their median was. Crowded frames widen the
fits (undetected neighbours), which moved the median of narrow PSFs past
the edge at 2-4 /um^2.

Sets: 72 validation movies (seeds 82001+, in no other benchmark), 40
frames of 64x64 px, the camera and emitters of `benchmarks/pixel_size.py`
(300-4,000 photons, background 30 photons/px), pixels of 110, 130 and 160
nm, PSF FWHM centred on 1.4, 1.6, 1.8 and 2.0 camera px, +-10 % or +-25 %,
at 0.5, 2 and 4 emitters/um^2; and, as a check, the accuracy benchmark's
sCMOS validation movies (`crowded_limits.validation_set`, 100 nm pixels,
250-350 nm) at 0.5-8 /um^2. Each runs as `dsir localize` does (default
model, its threshold, refinement) with the echoes left out and kept (the
rule forced either way by setting ``psf_narrow``); scored by the SMLM
efficiency E = 100 - sqrt((100 (1 - J))^2 + RMSE^2) (Jaccard and RMSE at
250 nm), per rule: the median rule, this one, always, never.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path
from unittest import mock

import accuracy
import crowded_limits
import numpy as np
from _machine import describe, write_report
from pixel_size import CAMERA, validation_movie

from napari_dsir import reconstruct as R
from napari_dsir.evaluate import evaluate
from napari_dsir.run import reconstruct

SEED = 82001
GRID = list(itertools.product((110.0, 130.0, 160.0), (1.4, 1.6, 1.8, 2.0), (0.1, 0.25), (0.5, 2.0, 4.0)))
NARROWEST_PX = 1.7  # the default model's training (FWHM, px)


def runs(frames, gt, px: float, camera):
    """(metrics with the echoes left out, kept, the run's own info) of one movie."""
    measured = R.movie_binning
    out = {}
    for narrow in (True, False, None):
        def forced(*a, narrow=narrow, **k):
            b, info = measured(*a, **k)
            if narrow is not None and info.get("psf_fwhm_nm") is not None:
                info["psf_narrow"] = narrow
            return b, info
        with mock.patch.object(R, "movie_binning", forced):
            res = reconstruct(frames, pixel_size=px, localize=True, camera=camera)
        out[narrow] = (evaluate(gt, res.localizations, 250.0), res.info)
    return out[True][0], out[False][0], out[None][1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "echoes.md")
    args = ap.parse_args()
    rows, scores = [], {k: [] for k in ("median (previous)", "lower quartile (this)", "always", "never", "better")}
    for i, (px, c, rel, d) in enumerate(GRID):
        frames, gt = validation_movie(args.frames, px, (c * (1 - rel) * px, c * (1 + rel) * px), d, SEED + i)
        left, kept, info = runs(frames, gt, px, CAMERA)
        el, ek = left.efficiency, kept.efficiency
        med, q25 = info["psf_fwhm_nm"] / px, info["psf_fwhm_q25_nm"] / px
        for key, on in (("median (previous)", med < NARROWEST_PX), ("lower quartile (this)", info["psf_narrow"]),
                        ("always", True), ("never", False)):
            scores[key].append(el if on else ek)
        scores["better"].append(max(el, ek))
        rows.append(f"| {px:g} | {c * (1 - rel):.2f}-{c * (1 + rel):.2f} | {d:g} | {med:.2f} / {q25:.2f} | "
                    f"{'yes' if info['psf_narrow'] else 'no'} | {left.jaccard:.3f} / {left.precision:.2f} / "
                    f"{left.rmse:.1f} / {el:.1f} | {kept.jaccard:.3f} / {kept.precision:.2f} / {kept.rmse:.1f} / "
                    f"{ek:.1f} |")
        print(rows[-1], flush=True)
    check = []
    for d in (0.5, 1.0, 2.0, 4.0, 6.0, 8.0):
        frames, gt = crowded_limits.validation_set(d)
        left, kept, info = runs(frames, gt, 100.0, dict(accuracy.SCMOS))
        check.append(f"| {d:g} | {'yes' if info['psf_narrow'] else 'no'} | {left.jaccard:.3f} / {left.rmse:.1f} | "
                     f"{kept.jaccard:.3f} / {kept.rmse:.1f} |")
        print(check[-1], flush=True)
    best = np.array(scores.pop("better"))
    summary = [f"| {k} | {np.mean(v):.2f} | {int(np.sum(best - np.array(v) > 1.0))} | "
               f"{np.max(best - np.array(v)):.1f} |" for k, v in scores.items()]
    lines = [
        "# The network's echoes beside narrow PSFs (`python benchmarks/echoes.py`)", "",
        f"Run on {time.strftime('%Y-%m-%d')} on {describe()}; {len(GRID)} validation movies of {args.frames} frames "
        f"(seeds {SEED}+); see the script's docstring. E: the SMLM efficiency from the Jaccard and RMSE at 250 nm.",
        "", f"Mean efficiency when the echoes are left out by each rule (the better choice of each movie: "
        f"{np.mean(best):.2f}):", "",
        "| echoes left out where | mean efficiency | movies more than 1 below the better choice | most below it |",
        "|---|---|---|---|", *summary, "",
        "| pixel (nm) | simulated FWHM (px) | /um^2 | fitted FWHM (px): median / lower quartile | "
        "left out by this rule | echoes left out: J / precision / RMSE / E | kept: J / precision / RMSE / E |",
        "|---|---|---|---|---|---|---|", *rows, "",
        "The accuracy benchmark's sCMOS validation movies (100 nm pixels, FWHM 250-350 nm): Jaccard / RMSE at "
        "250 nm.", "",
        "| /um^2 | left out by this rule | echoes left out | kept |", "|---|---|---|---|", *check, ""]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()

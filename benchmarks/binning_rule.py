"""Validation of the network's binning rule for PSFs straddling the training's widest.

    python benchmarks/binning_rule.py [--frames 40] [--out benchmarks/results/binning_rule.md]

`reconstruct.movie_binning` bins the frames 2x2 for the network when 60 %
of the movie's fitted spot widths are beyond the widest PSF of its training
(3.7 px for the default model; the binned frames up to its densest, 9
detections per 100 px^2), or 30 % of them (the binned frames up to 0.8 of
that, `psf.STRADDLE_DENSITY_SHARE`; with fewer than 20 fits in that share,
half of them, as before). The rule was set on these movies,
apart from `benchmarks/psf_width.py`'s (seeds 74001+), which reports it:
128 simulated movies (seeds 81001+), 40 frames of 64x64 px, the sCMOS-like
camera and emitters of `benchmarks/pixel_size.py` (300-4,000 photons,
background 30 photons/px), pixels of 65, 80, 100 and 120 nm, PSF FWHM
centred on 3.3, 3.6, 3.9 and 4.3 camera px, +-10 % or +-25 % around it,
0.5, 1, 2 and 3 emitters/um^2.

Each movie runs as `dsir localize` does (default model, its threshold,
refinement) binned 1 and 2; scored by the SMLM efficiency (Jaccard and
lateral RMSE at 250 nm: E = 100 - sqrt((100 (1 - J))^2 + RMSE^2)). The
rule's choice is compared with the better binning of each movie, with the
previous rule (the median of the widths beyond the widest, or the lower
quartile; the same density limits), and with never or always binning.
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import numpy as np
from _machine import describe, write_report
from pixel_size import CAMERA, validation_movie

from napari_dsir.evaluate import evaluate
from napari_dsir.model import load_model
from napari_dsir.psf import STRADDLE_DENSITY_SHARE, network_binning, training_density, training_fwhm_range_px
from napari_dsir.run import reconstruct

SEED = 81001
GRID = list(itertools.product((65.0, 80.0, 100.0, 120.0), (3.3, 3.6, 3.9, 4.3), (0.1, 0.25), (0.5, 1.0, 2.0, 3.0)))


def previous_rule(info: dict, px: float, hi: float, most: float, density: float | None) -> int:
    """The rule before this one: the median beyond the widest (binned frames
    up to 0.8 of the densest), or the lower quartile (up to the densest);
    1 where the PSF was not measured (too few spots), as both rules."""
    if info["psf_fwhm_nm"] is None:
        return 1
    med, q25 = info["psf_fwhm_nm"] / px, info["psf_fwhm_q25_nm"] / px
    if network_binning(med, hi) == 1:
        return 1
    return max(network_binning(q25, hi, density, most),
               network_binning(med, hi, density, most * STRADDLE_DENSITY_SHARE))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "binning_rule.md")
    args = ap.parse_args()
    from napari_dsir.reconstruct import _detection_density, movie_binning

    model = load_model()
    hi, most = training_fwhm_range_px(model)[1], training_density(model)
    rows, scores = [], {k: [] for k in ("this rule", "previous rule", "never", "always", "the better of each movie")}
    for i, (px, c, rel, d) in enumerate(GRID):
        frames, gt = validation_movie(args.frames, px, (c * (1 - rel) * px, c * (1 + rel) * px), d, SEED + i)
        chosen, info = movie_binning(frames, model, 0, len(frames), px, CAMERA)
        density = info.get("network_density")
        if density is None:
            density = _detection_density(model, frames[:32])
        e = {}
        for b in (1, 2):
            m = evaluate(gt, reconstruct(frames, model, pixel_size=px, localize=True, camera=CAMERA,
                                         binning=b).localizations, 250.0)
            e[b] = (m.efficiency, m)
        before = previous_rule(info, px, hi, most, density)
        for key, b in (("this rule", chosen), ("previous rule", before), ("never", 1), ("always", 2)):
            scores[key].append(e[b][0])
        scores["the better of each movie"].append(max(e[1][0], e[2][0]))
        q = [info[f"psf_fwhm{k}_nm"] for k in ("_q25", "_q40", "", "_q70")]
        widths = " / ".join(f"{v / px:.2f}" for v in q) if q[0] is not None else "not measured"
        cells = [f"{px:g}", f"{c * (1 - rel):.1f}-{c * (1 + rel):.1f}", f"{d:g}", widths, f"{4 * density:.1f}",
                 str(chosen), str(before)]
        cells += [f"{e[b][1].jaccard:.3f} / {e[b][1].rmse:.1f} / {e[b][0]:.1f}" for b in (1, 2)]
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    best = np.array(scores["the better of each movie"])
    below = {k: best - np.array(v) for k, v in scores.items()}
    summary = [f"| {k} | {np.mean(v):.2f} | {int(np.sum(below[k] > 2.0))} | {np.max(below[k]):.1f} |"
               for k, v in scores.items()]
    lines = [
        "# The network's binning for PSFs straddling its training's widest (`python benchmarks/binning_rule.py`)", "",
        f"Run on {time.strftime('%Y-%m-%d')} on {describe()}; {len(GRID)} validation movies of {args.frames} frames "
        f"(seeds {SEED}+); see the script's docstring. Efficiency E from the Jaccard and RMSE at 250 nm.", "",
        "| binning chosen by | mean efficiency | movies more than 2 below the better binning | most below it |",
        "|---|---|---|---|", *summary, "",
        "| pixel (nm) | simulated FWHM (px) | /um^2 | fitted FWHM (px): 25th / 40th / 50th / 70th percentile | "
        "detections per 100 px^2 binned | this rule | previous rule | binning 1: J / RMSE / E | "
        "binning 2: J / RMSE / E |",
        "|---|---|---|---|---|---|---|---|---|", *rows, ""]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()

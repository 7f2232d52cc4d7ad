"""Split spots: the network's two detections of one bright emitter, merged or kept.

    python benchmarks/split_spots.py [--movies 48] [--bright 24] [--repeats 5] [--out benchmarks/results/split_spots.md]

For bright emitters the network often puts a second detection about one of
its pixels from the first; the fits then hold both at the network's
positions. `napari_dsir.splits` tests each group of detections closer than
1.5 network px on the raw frame (one emitter against the group at the
network's positions, neighbours in the box fitted with both) and merges it
where the posterior odds of a split are higher: the test's likelihood
ratio times the prior odds, from the movie's pairs at 2-4 network px (how
many true pairs are that close) against its close pairs (the rest are
splits), higher where the detections are denser. A movie with no more
close pairs than its pairs at 2-4 px predict (crowded frames) is not
tested.

Sets: held-out-like validation movies (seeds 83001+, in no other
benchmark), 64x64 px, settings drawn per movie: pixels of 65-160 nm, PSF
FWHM 200-420 nm (+-5 to +-30 % per emitter), photons 50-400 to 5,000-50,000,
background 3-150 photons/px, three cameras (sCMOS 0.46 e-/ADU, read noise
1.6 e-; EMCCD gain 300, 20 e-/ADU, read noise 50 e-; CCD baseline 1000,
0.25 e-/ADU, read noise 8 e-), 0.1-2 emitters/um^2, about 400 emitters a
movie; a bright set drawn the same way (seeds 84001+) but with 1,000-20,000
or 5,000-50,000 photons, where the network splits spots; and, as a check,
the accuracy benchmark's sCMOS validation movies
(`crowded_limits.validation_set`, 100 nm pixels, 250-350 nm) at 0.5-8
/um^2. Each runs as `dsir localize` does (default model, its threshold,
the camera given, refinement), with the test (`reconstruct.SPLIT_SPOTS`)
on and off. Scored by the Jaccard, precision and RMSE at 250 nm, the SMLM
efficiency E = 100 - sqrt((100 (1 - J))^2 + RMSE^2), the median fitted /
true photons and the std of error / reported uncertainty of isolated
emitters (`calibrated.calibration`).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from unittest import mock

import accuracy
import calibrated
import crowded_limits
import numpy as np
from _machine import describe, write_report

from napari_dsir import reconstruct as R
from napari_dsir.evaluate import evaluate
from napari_dsir.fit import SPLIT
from napari_dsir.io import open_stack
from napari_dsir.run import reconstruct
from napari_dsir.simulate import SimulationConfig, simulate

SEED = 83001
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
BRIGHT_SEED = 84001
CAMERAS = (
    ("sCMOS", dict(base_level=100.0, gain=1 / 0.46, read_noise=1.6)),
    ("EMCCD", dict(base_level=100.0, gain=0.05, read_noise=50.0, em_gain=300.0)),
    ("CCD", dict(base_level=1000.0, gain=4.0, read_noise=8.0)),
)
PHOTONS = ((50.0, 400.0), (200.0, 5000.0), (1000.0, 20000.0), (5000.0, 50000.0), (80.0, 2050.0))


def movie(i: int, bright: bool = False):
    """Settings, frames, truth and camera (CLI terms) of validation movie
    ``i`` (``bright``: of the bright set, seeds `BRIGHT_SEED`+)."""
    seed = (BRIGHT_SEED if bright else SEED) + i
    rng = np.random.default_rng(seed)
    px = float(rng.choice([65, 80, 100, 108, 120, 130, 160]))
    centre, rel = float(rng.uniform(200, 420)), float(rng.choice([0.05, 0.15, 0.3]))
    photons = (PHOTONS[2:4] if bright else PHOTONS)[rng.integers(2 if bright else len(PHOTONS))]
    bg = float(rng.choice([3.0, 10.0, 35.0, 100.0, 150.0]))
    cam_name, cam = CAMERAS[rng.integers(len(CAMERAS))]
    d = float(rng.choice([0.1, 0.5, 1.0, 2.0]))
    n = int(max(30, min(200, 400 / (d * (64 * px / 1000) ** 2))))
    cfg = SimulationConfig(frame_size=(64, 64), density=d, fwhm=(centre * (1 - rel), centre * (1 + rel)),
                           photons=photons, background=bg, margin=200.0, pixel_size=px, **cam)
    frames, gt = simulate(n, cfg, seed=seed)
    camera = {"baseline": cam["base_level"], "sensitivity": 1 / cam["gain"], "em_gain": cam.get("em_gain", 1.0),
              "read_noise": cam["read_noise"]}
    label = (f"{px:g} | {centre * (1 - rel):.0f}-{centre * (1 + rel):.0f} | {photons[0]:g}-{photons[1]:g} | "
             f"{bg:g} | {cam_name} | {d:g}")
    return label, frames, gt, px, camera


def runs(frames, gt, px, camera):
    """Per setting (test on, off): metrics, calibration and merged count."""
    out = {}
    for on in (True, False):
        with mock.patch.object(R, "SPLIT_SPOTS", on):
            res = reconstruct(frames, pixel_size=px, localize=True, camera=camera)
        m = evaluate(gt, res.localizations, 250.0)
        c = calibrated.calibration(gt, res.localizations)
        out[on] = (m, c, (res.info.get("fit") or {}).get(SPLIT, 0))
    return out


def bundled_tubes(repeats: int) -> list[str]:
    """Bundled Tubes HD (no truth; 100 nm pixels, camera assumed: baseline
    100 ADU, 1 e-/ADU): detections merged, and a run's time with the test
    on and off (`dsir localize`'s path in one process, interleaved)."""
    seq = SHARED / "bundled_tubes_hd" / "sequence"
    if not seq.is_dir():
        return ["Bundled Tubes HD: not found (../shared/data), not run.", ""]
    stack = open_stack(seq)
    frames = stack.read(0, len(stack))
    camera = {"baseline": 100.0, "sensitivity": 1.0}
    times, found = {True: [], False: []}, {}
    reconstruct(frames, pixel_size=100.0, localize=True, camera=camera)  # warm-up
    for _ in range(repeats):
        for on in (True, False):
            with mock.patch.object(R, "SPLIT_SPOTS", on):
                t0 = time.perf_counter()
                res = reconstruct(frames, pixel_size=100.0, localize=True, camera=camera)
                times[on].append(time.perf_counter() - t0)
            found[on] = (len(res.localizations), (res.info.get("fit") or {}).get(SPLIT, 0))
    on, off = (statistics.median(times[k]) for k in (True, False))
    return [f"Bundled Tubes HD (361 frames, crowded microtubules): {found[True][1]} merged of "
            f"{found[False][0]} detections; a run with the refinement in one process {on:.2f} s with the test, "
            f"{off:.2f} s without ({100 * (on / off - 1):+.1f} %; medians of {repeats} interleaved runs).", ""]


def cell(m, c) -> str:
    return (f"{m.jaccard:.3f} / {m.precision:.3f} / {m.rmse:.1f} / {m.efficiency:.1f} / {c['photons']:.3f} / "
            f"{c['z_std']:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--movies", type=int, default=48)
    ap.add_argument("--bright", type=int, default=24, help="movies of the bright set")
    ap.add_argument("--repeats", type=int, default=5, help="timed runs of Bundled Tubes HD with the test on and off")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "split_spots.md")
    args = ap.parse_args()
    tables, summaries = [], []
    for bright, count in ((False, args.movies), (True, args.bright)):
        rows, diff = [], []
        for i in range(count):
            label, frames, gt, px, camera = movie(i, bright)
            r = runs(frames, gt, px, camera)
            (m1, c1, k), (m0, c0, _) = r[True], r[False]
            diff.append((m1.jaccard - m0.jaccard, m1.precision - m0.precision, m1.rmse - m0.rmse,
                         m1.efficiency - m0.efficiency))
            rows.append(f"| {label} | {k} | {cell(m1, c1)} | {cell(m0, c0)} |")
            print(rows[-1], flush=True)
        dj, dp, dr, de = np.array(diff).T
        summaries.append(
            f"{'Bright set' if bright else 'All'} ({count} movies, seeds {BRIGHT_SEED if bright else SEED}+): "
            f"mean Jaccard {dj.mean():+.4f} (from {dj.min():+.3f} to {dj.max():+.3f}), precision {dp.mean():+.4f}, "
            f"RMSE {np.nanmean(dr):+.2f} nm (from {np.nanmin(dr):+.1f} to {np.nanmax(dr):+.1f}), efficiency "
            f"{de.mean():+.3f} (from {de.min():+.2f} to {de.max():+.2f}); {int(np.sum(np.abs(de) > 1e-9))} movies "
            f"changed, {int((dj < -0.005).sum())} lost more than 0.005 of Jaccard.")
        tables.append(rows)
    check = []
    for d in (0.5, 1.0, 2.0, 4.0, 6.0, 8.0):
        frames, gt = crowded_limits.validation_set(d)
        r = runs(frames, gt, 100.0, dict(accuracy.SCMOS))
        (m1, c1, k), (m0, c0, _) = r[True], r[False]
        check.append(f"| {d:g} | {k} | {cell(m1, c1)} | {cell(m0, c0)} |")
        print(check[-1], flush=True)
    tubes = bundled_tubes(args.repeats)
    head = ["| pixel (nm) | FWHM (nm) | photons | background | camera | /um^2 | merged | test on | off |",
            "|---|---|---|---|---|---|---|---|---|"]
    lines = [
        "# Split spots merged or kept (`python benchmarks/split_spots.py`)", "",
        f"Run on {time.strftime('%Y-%m-%d')} on {describe()}; see the script's docstring. Cells: Jaccard / "
        "precision / RMSE (nm) / efficiency E at 250 nm / median fitted / true photons / std of error / "
        "uncertainty (isolated emitters).", "",
        "Test on against off:", "", *(f"- {x}" for x in summaries), "",
        "All held-out-like movies:", "", *head, *tables[0], "",
        "Bright emitters (1,000-20,000 or 5,000-50,000 photons; the other settings drawn as above):", "",
        *head, *tables[1], "",
        "The accuracy benchmark's sCMOS validation movies (100 nm pixels, FWHM 250-350 nm):", "",
        "| /um^2 | merged | test on | off |", "|---|---|---|---|", *check, "", *tubes]
    write_report(args.out, lines)


if __name__ == "__main__":
    main()

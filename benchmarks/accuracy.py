"""Accuracy benchmark: the shipped models with their shipped thresholds, the original DSIR weights and Picasso.

    python benchmarks/accuracy.py [--picasso-python PATH] [--out benchmarks/results/accuracy.md]

Every DSIR model runs as a user runs it: `napari_dsir.run.reconstruct` with
``localize=True`` and the threshold stored in its checkpoint, never tuned on
these sets. Test sets (seeds never used in training):

- the ThunderSTORM demo in ../shared/data/thunderstorm_demo (ThunderSTORM's
  own simulator, ~6 emitters/um^2, 20 frames of 64x64);
- the project's simulator at 0.1, 0.5, 1, 2, 4, 6 and 8 emitters/um^2, 64x64
  px of 100 nm, on an sCMOS-like camera (offset 400 ADU, 2 ADU per
  photoelectron, read noise 1.5 e-), PSF FWHM 250-350 nm, 80-2,050
  photons, background 35 photons/px; enough frames for >= 600 emitters;
- an EMCCD-like camera (EM gain 100, 0.1 ADU per electron after it, offset
  100 ADU, read noise 30 e-) at 2 emitters/um^2;
- 100 empty frames (background only, the sCMOS camera): false positives per frame.

Methods:

- **default**: the shipped default model (fast camera-resolution network),
  with the Poisson MLE refinement on the raw frames (the camera given) and
  without (network positions only);
- **wide**: the shipped wider network (48/64 channels instead of 32/48;
  docs/model_card.md), with and without the refinement, as the default;
- a checkpoint named in ``--models`` (a candidate before it is shipped):
  with and without the refinement, as the default;
- **dsir**: the DSIR auto-encoder retrained in 2026 (the previous default),
  network positions, its shipped threshold;
- **original DSIR weights** (2018, legacy mode), with the localizer
  calibrated once by benchmarks/calibrate_legacy.py;
- **Picasso gausslq** (box 5): identification and Gaussian least squares, run
  by benchmarks/classical.py in its own environment
  (benchmarks/requirements-picasso.txt) with the true camera. Picasso has no
  threshold of its own that fits every camera, so its min. net gradient is
  tuned on a validation split of each set (seeds 71001+): an upper bound for
  a classical fitter. Without that environment its rows are left out.

Metrics (`napari_dsir.evaluate`, Hungarian matching per frame): Jaccard at
250 and 100 nm, RMSE of the matched pairs, recall and precision at 250 nm;
the RMSE of the pairs within 250 nm whose true emitter is at least 500 nm
from the frame's edges (the truth lists no emitter outside the frame, while
the simulator's emitters up to 200 nm outside shine in, and their
detections, matched to a true emitter nearby, count as far off).
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _machine import describe

from napari_dsir.evaluate import evaluate, match
from napari_dsir.io import open_stack, read_localizations
from napari_dsir.locs import Localizations
from napari_dsir.run import reconstruct
from napari_dsir.simulate import SimulationConfig, simulate

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
LEGACY = SHARED / "dsir_original" / "autoencoder_model.pt"
DENSITIES = (0.1, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0)
PICASSO_GRADIENTS = np.geomspace(50, 20000, 27)
SCMOS = {"baseline": 400.0, "sensitivity": 0.5, "read_noise": 1.5}
EMCCD = {"baseline": 100.0, "sensitivity": 10.0, "em_gain": 100.0, "read_noise": 30.0}


def sim_config(density: float, emccd: bool = False) -> SimulationConfig:
    cam = dict(base_level=100.0, gain=0.1, read_noise=30.0, em_gain=100.0) if emccd else dict(
        base_level=400.0, gain=2.0, read_noise=1.5)
    return SimulationConfig(frame_size=(64, 64), density=density, fwhm=(250.0, 350.0), photons=(80.0, 2050.0),
                            background=35.0, margin=200.0, **cam)


def n_frames(density: float) -> int:
    return max(30, math.ceil(600 / max(density * 40.96, 1e-9)))


def datasets():
    """(name, camera dict, test (frames, truth), make validation split or None)."""
    demo = SHARED / "thunderstorm_demo"
    if demo.is_dir():
        frames = open_stack(demo / "ArtificialDataset_demo1.tif").read().astype(np.float32)
        gt = read_localizations(demo / "positions_demo1.csv")
        yield "ThunderSTORM demo (~6 /um^2)", {"baseline": 100.0, "sensitivity": 1.0}, (frames, gt), None
    else:
        print(f"skipping the ThunderSTORM demo: {demo} not found", file=sys.stderr)
    for i, d in enumerate(DENSITIES):
        cfg = sim_config(d)
        yield (f"sCMOS {d:g} /um^2", SCMOS, simulate(n_frames(d), cfg, seed=81001 + i),
               lambda cfg=cfg, i=i: simulate(20, cfg, seed=71001 + i))
    cfg = sim_config(2.0, emccd=True)
    yield ("EMCCD 2 /um^2", EMCCD, simulate(n_frames(2.0), cfg, seed=81101),
           lambda: simulate(20, cfg, seed=71101))
    yield "empty frames", SCMOS, simulate(100, sim_config(0.0), seed=81201), None


def interior_rmse(gt: Localizations, locs: Localizations, size_nm: tuple[float, float], margin: float = 500.0):
    """Lateral RMSE (nm) of the pairs matched within 250 nm whose true emitter
    is at least ``margin`` nm inside the frame of ``size_nm`` (height, width)."""
    gi, pi, dist = match(gt, locs, 250.0)
    h, w = size_nm
    inside = (gt.x[gi] >= margin) & (gt.x[gi] <= w - margin) & (gt.y[gi] >= margin) & (gt.y[gi] <= h - margin)
    return float(np.sqrt(np.mean(dist[inside] ** 2))) if inside.any() else float("nan")


class DSIRMethod:
    def __init__(self, name: str, model: str, refine: bool):
        self.name, self.model, self.refine = name, model, refine

    def run(self, frames, camera):
        res = reconstruct(frames, model=self.model, pixel_size=100.0, localize=True, refine=self.refine,
                          camera=camera if self.refine else None, device="cpu")
        return res.localizations


class PicassoMethod:
    name = "Picasso gausslq (box 5, tuned)"

    def __init__(self, python: str):
        self.python = python

    def _fit(self, frames, camera):
        with tempfile.TemporaryDirectory() as tmp:
            movie, out = Path(tmp) / "movie.npy", Path(tmp) / "locs.csv"
            np.save(movie, np.asarray(frames, np.float32))
            cmd = [self.python, str(HERE / "classical.py"), str(movie), str(out), "--box", "5",
                   "--min-net-gradient", str(PICASSO_GRADIENTS[0]), "--baseline", str(camera["baseline"]),
                   "--sensitivity", str(camera["sensitivity"]), "--gain", str(camera.get("em_gain", 1.0)),
                   "--pixel-size", "100"]
            run = subprocess.run(cmd, capture_output=True, text=True)
            if run.returncode != 0:
                raise RuntimeError(f"Picasso failed:\n{run.stderr[-2000:]}")
            table = np.loadtxt(out, delimiter=",", skiprows=1, ndmin=2)
        if table.size == 0:
            return Localizations.empty(), np.zeros(0)
        return Localizations(table[:, 0].astype(int), table[:, 1], table[:, 2], table[:, 3]), table[:, 4]

    def run(self, frames, camera, validation):
        best = float(PICASSO_GRADIENTS[len(PICASSO_GRADIENTS) // 2])
        if validation is not None:
            vf, vgt = validation()
            locs_val, ng_val = self._fit(vf, camera)
            scores = [evaluate(vgt, locs_val.select(ng_val >= g), 250).jaccard for g in PICASSO_GRADIENTS]
            best = float(PICASSO_GRADIENTS[int(np.argmax(scores))])
        locs, ng = self._fit(frames, camera)
        return locs.select(ng >= best)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--picasso-python", default=os.environ.get("PICASSO_PYTHON", "/tmp/picvenv/bin/python"),
                    help="Python of the environment with picassosr (benchmarks/requirements-picasso.txt)")
    ap.add_argument("--models", nargs="*", default=["default", "wide", "dsir"],
                    help="shipped names or checkpoints")
    ap.add_argument("--no-legacy", action="store_true", help="leave out the original DSIR weights")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "accuracy.md")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    methods = []
    for m in args.models:
        if m != "dsir":  # the camera-resolution movie models (shipped or a checkpoint)
            methods.append(DSIRMethod(f"{m} + MLE refinement", m, True))
        methods.append(DSIRMethod(f"{m} (network positions)", m, False))
    if LEGACY.is_file() and not args.no_legacy:
        methods.append(DSIRMethod("original DSIR weights", f"legacy:{LEGACY}", False))
    picasso = PicassoMethod(args.picasso_python) if Path(args.picasso_python).exists() else None
    if picasso is None:
        print(f"Picasso not run: {args.picasso_python} not found", file=sys.stderr)

    rows = []
    for name, camera, (frames, gt), validation in datasets():
        results = [(m.name, m.run(frames, camera)) for m in methods]
        if picasso is not None:
            results.append((picasso.name, picasso.run(frames, camera, validation)))
        for mname, locs in results:
            if len(gt) == 0:
                rows.append(f"| {name} ({len(frames)} frames) | {mname} | | | | | | | | "
                            f"{len(locs) / len(frames):.3f} |")
            else:
                a, b = evaluate(gt, locs, 250), evaluate(gt, locs, 100)
                inner = interior_rmse(gt, locs, tuple(n * 100.0 for n in np.shape(frames)[1:]))
                rows.append(f"| {name} ({len(frames)} frames) | {mname} | {a.jaccard:.3f} | {b.jaccard:.3f} | "
                            f"{a.rmse:.1f} | {b.rmse:.1f} | {inner:.1f} | {a.recall:.3f} | {a.precision:.3f} | |")
            print(rows[-1], flush=True)

    head = [
        "# Accuracy: shipped thresholds, every density and camera",
        "",
        f"Run on {time.strftime('%Y-%m-%d')} with `python benchmarks/accuracy.py` on {describe()}.",
        "DSIR models use the threshold shipped in their checkpoint (never tuned on these sets); Picasso's",
        "min. net gradient is tuned on a validation split of each set. Sets and settings: see the",
        "docstring of benchmarks/accuracy.py. RMSE in nm over the pairs matched within 250 and 100 nm;",
        "recall and precision at 250 nm; on empty frames, false positives per frame. 'RMSE 250, 500 nm from the",
        "edges': the pairs within 250 nm whose true emitter is at least 500 nm inside the frame (the truth lists",
        "no emitter outside the frame; the simulator's up to 200 nm outside shine in).",
        "",
        "| test set | method | Jaccard 250 nm | Jaccard 100 nm | RMSE 250 | RMSE 100 | "
        "RMSE 250, 500 nm from the edges | recall | precision | false positives / empty frame |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    if picasso is None:
        head.insert(2, "**Picasso was not run** (its environment was not found); its rows are missing.\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(head + rows) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

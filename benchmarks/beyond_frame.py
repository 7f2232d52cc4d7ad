"""Emitters outside the frame: the refinement's free fits on the frame's edge with and without leave to go past it.

    python benchmarks/beyond_frame.py [--out benchmarks/results/beyond_frame.md]

A camera images part of a sample: emitters just outside the frame shine
into its edge pixels, and the network reports them on the edge. With
``reconstruct.FIT_BEYOND_FRAME`` a free fit whose window touches the edge
may place its emitter up to half a window past it, and one outside by more
than `napari_dsir.fit.BEYOND_BOUNDS` of its bounds is left out of the table
(status "beyond"). This runs the default model with its MLE refinement,
with that leave and without it (the fits stop on the edge, as before), on
the accuracy benchmark's sets (`benchmarks/accuracy.py`: its seeds, 64x64
px of 100 nm, PSF FWHM 250-350 nm, 80-2,050 photons, background 35
photons/px, the sCMOS at 0.1-8 /um^2 and the EMCCD at 2 /um^2), whose
simulator puts emitters up to 200 nm outside the frame (not in the truth),
and on the same sets with none outside (margin 0: every emitter in the
truth, up to the edge itself, as ThunderSTORM's simulator has them).

The fits run as `reconstruct` runs them (`calibrate.fit_movies`: the
set's own camera, `reconstruct.refine_settings`, the split spots merged
first, one `fit.refine` call per set) with
``beyond_frame`` off and on. Per set: Jaccard, precision and RMSE (nm) at
250 nm without / with the leave; the detections left out, against those
within 150 nm of the edge; how many of them lie within 250 nm of an
emitter outside the frame (the simulation's full list), and how many were
matched to a true emitter in the frame within 250 nm without the leave.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
from _machine import describe
from accuracy import n_frames, sim_config

from napari_dsir.calibrate import fit_movies
from napari_dsir.evaluate import evaluate, match
from napari_dsir.fit import BEYOND
from napari_dsir.localize import params_for
from napari_dsir.model import load_model
from napari_dsir.simulate import simulate

HERE = Path(__file__).resolve().parent
DENSITIES = (0.1, 0.5, 1.0, 2.0, 4.0, 6.0, 8.0)
SIZE_NM = 6400.0
P = 100.0


def sets(margin: bool):
    """(name, config, frames, seed): the accuracy benchmark's test sets (the camera is the config's)."""
    def cfg(c):
        return c if margin else dataclasses.replace(c, margin=0.0)
    for i, d in enumerate(DENSITIES):
        yield f"sCMOS {d:g} /um^2", cfg(sim_config(d)), n_frames(d), 81001 + i
    yield "EMCCD 2 /um^2", cfg(sim_config(2.0, emccd=True)), n_frames(2.0), 81101


def refined(frames, truth, cfg, beyond: bool):
    """The default model's detections refined as `reconstruct` refines them
    (`calibrate.fit_movies`: the set as one movie on its own camera), its
    free fits on the edge let past it or not: the `FitResult`."""
    model = load_model("default")
    params = params_for(model)
    camera = [{k: getattr(cfg, k) for k in ("base_level", "gain", "em_gain", "read_noise")}]
    ((res, _),) = fit_movies(model, frames, truth, np.zeros(len(frames), np.int64), camera, P, params,
                             error_model=params, refine_overrides={"beyond_frame": beyond})
    return res


def near(locs, others, radius=250.0) -> np.ndarray:
    """Per row of ``locs``: an emitter of ``others`` in its frame within ``radius`` nm."""
    out = np.zeros(len(locs), bool)
    for f in np.intersect1d(np.unique(locs.frame), np.unique(others.frame)):
        j, k = np.flatnonzero(locs.frame == f), np.flatnonzero(others.frame == f)
        out[j] = np.hypot(locs.x[j, None] - others.x[k], locs.y[j, None] - others.y[k]).min(1) < radius
    return out


def edge_distance(locs) -> np.ndarray:
    """nm from the frame's nearest edge (negative outside)."""
    return np.minimum.reduce([locs.x, locs.y, SIZE_NM - locs.x, SIZE_NM - locs.y])


def row(name, cfg, nf, seed) -> str:
    frames, truth = simulate(nf, cfg, seed=seed)
    _, everyone = simulate(nf, cfg, seed=seed, outside=True)
    outside = everyone.select(edge_distance(everyone) < 0)
    off, on = refined(frames, truth, cfg, False), refined(frames, truth, cfg, True)
    left = on.status == BEYOND
    kept = on.locs.select(~left)
    cells = []
    for locs in (off.locs, kept):
        m = evaluate(truth, locs, 250.0)
        _, _, dist = match(truth, locs, 250.0)
        cells.append((m.jaccard, m.precision, float(np.sqrt(np.mean(dist**2)))))
    _, pi, _ = match(truth, off.locs, 250.0)  # the rows left out, as they were without the leave
    matched = np.isin(np.flatnonzero(left), pi)
    edge = int((edge_distance(off.locs) < 150.0).sum())
    (j0, p0, r0), (j1, p1, r1) = cells
    return (f"| {name} | {j0:.3f} / {j1:.3f} | {p0:.3f} / {p1:.3f} | {r0:.1f} / {r1:.1f} | {left.sum()} of {edge} "
            f"({100 * left.sum() / max(edge, 1):.1f} %) | {int(near(off.locs.select(left), outside).sum())} | "
            f"{int(matched.sum())} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "beyond_frame.md")
    args = ap.parse_args()
    t0 = time.perf_counter()
    lines = []
    for margin, title in ((True, "Emitters up to 200 nm outside the frame (the accuracy benchmark's sets)"),
                          (False, "No emitter outside the frame (margin 0)")):
        lines += ["", f"## {title}", "",
                  "| set | Jaccard 250 nm, without / with | precision | RMSE 250 nm (nm) | left out, of the detections "
                  "within 150 nm of the edge | of them within 250 nm of an emitter outside | of them matched to a true "
                  "emitter |",
                  "|---|---|---|---|---|---|---|"]
        for s in sets(margin):
            lines.append(row(*s))
            print(lines[-1], flush=True)
    head = [
        "# Emitters outside the frame (`python benchmarks/beyond_frame.py`)",
        "",
        f"Run on {time.strftime('%Y-%m-%d')} on {describe()} in {time.perf_counter() - t0:.0f} s: the default model "
        "with its MLE refinement, its free fits on the frame's edge stopped there (without) or let go up to half a "
        "window past it, those outside by more than two of their bounds left out (with). See the script's docstring.",
    ]
    args.out.write_text("\n".join(head + lines) + "\n")
    print("\n".join(head + lines))


if __name__ == "__main__":
    main()

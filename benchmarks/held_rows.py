"""Where the network's error model is off: the rows held at the network's position, on movies of the training mix.

    python benchmarks/held_rows.py [--movies 2000] [--seed 990001] [--out benchmarks/results/held_rows.md]

The uncertainty of a detection that the refinement holds at the network's
position (status crowded or pulled) is its Cramer-Rao bound and the
network's own error in quadrature (`localize.crowded_extra`, calibrated on
validation movies of the training mix). This runs the default model as
`calibrate.crowded_error` runs it (`calibrate.fit_movies`: each movie's own
camera, reconstruct's fit settings, here with the shipped error model) on ``--movies`` more movies of its
training mix (seed ``--seed``: apart from the training's, the
calibration's and the other benchmarks') and reports, per axis,
mean(error^2) / mean(uncertainty^2) (1: calibrated on average) and the
std of error / uncertainty, for all the held rows matched to the truth
within 100 nm and for those whose true emitter has no other within 500
nm ("isolated", as in the benchmarks' std(error / uncertainty) of isolated
emitters), in bins of

- the nearest other detection's distance in the row's PSF sigmas (the
  model's covariate, here not capped at the fits' pair search radius);
- the nearest other detection's fitted photons over the row's own (not in
  the model);
- the light of the other detections at the row's position over its own
  (their photons x exp(-d^2 / 4 sigma^2) summed, d their distance, sigma
  the frame's median fitted sigma; not in the model);
- the reduced chi-square of the row's own fit at the network's position
  (`fit.FitResult.chi2`: photons and background fitted there, the
  neighbours' light held; light that no detection explains, such as an
  undetected neighbour's, raises it; not in the model).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _machine import describe
from calibrated import isolated

from napari_dsir.calibrate import fit_movies
from napari_dsir.evaluate import match
from napari_dsir.fit import CROWDED, PULLED
from napari_dsir.localize import params_for
from napari_dsir.locs import Localizations
from napari_dsir.model import load_model
from napari_dsir.simulate import MovieConfig, simulate_movies

HERE = Path(__file__).resolve().parent
BINS = {
    "nearest detection (PSF sigmas)": (0, 1.5, 2.5, 3.5, 5, 7, np.inf),
    "nearest detection's photons / the row's": (0, 0.2, 0.35, 0.6, 1, 2, 5, np.inf),
    "other detections' light at the row / its own": (0, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 3, np.inf),
    "reduced chi-square of its fit at the network's position": (0, 0.8, 1, 1.2, 1.5, 2, 3, 5, np.inf),
}


def neighbours_of(locs: Localizations, p: float):
    """Per detection: nearest other detection's distance (camera px) and
    photons over its own, and the other detections' light at it over its own."""
    n = len(locs)
    near, ratio, light = np.full(n, np.inf), np.full(n, np.nan), np.zeros(n)
    for f in np.unique(locs.frame):
        j = np.flatnonzero(locs.frame == f)
        if len(j) < 2:
            continue
        pts = np.column_stack([locs.x[j], locs.y[j]]) / p
        dist = np.hypot(*(pts[:, None, :] - pts[None, :, :]).transpose(2, 0, 1))
        np.fill_diagonal(dist, np.inf)
        k = dist.argmin(1)
        near[j], ratio[j] = dist[np.arange(len(j)), k], locs.photons[j[k]] / locs.photons[j]
        s = np.nanmedian(locs.sigma[j]) / p
        light[j] = np.nansum(np.exp(-(dist**2) / (4 * s * s)) * locs.photons[j][None, :], 1) / locs.photons[j]
    return near, ratio, light


def held_rows(model, movies: MovieConfig, n_movies: int, seed: int) -> dict:
    """Columns of the held rows matched to the truth: per-axis errors and
    uncertainty (camera px), isolated, and the four covariates."""
    frames, truth, movie, settings = simulate_movies(n_movies, movies, seed=seed)
    p, params, cols = float(movies.pixel_size), params_for(model), []
    for res, gt in fit_movies(model, frames, truth, movie, settings, p, params, error_model=params):
        locs = res.locs
        gi, pi, _ = match(gt, locs, 100.0)
        keep = np.isin(res.status[pi], (CROWDED, PULLED))
        gi, pi = gi[keep], pi[keep]
        near, ratio, light = neighbours_of(locs, p)
        sigma = locs.sigma[pi] / p
        cols.append(np.column_stack([(locs.x[pi] - gt.x[gi]) / p, (locs.y[pi] - gt.y[gi]) / p,
                                     locs.uncertainty[pi] / p, isolated(gt)[gi], near[pi] / sigma, ratio[pi],
                                     light[pi], res.chi2[pi]]))
    a = np.concatenate(cols)
    names = ["dx", "dy", "unc", "isolated", *BINS]
    return {k: a[:, i] for i, k in enumerate(names)}


def cell(r: dict, sel: np.ndarray) -> str:
    if sel.sum() < 20:
        return f"{sel.sum()} | "
    z = np.concatenate([r["dx"][sel], r["dy"][sel]]) / np.tile(r["unc"][sel], 2)
    e2 = 0.5 * (r["dx"][sel] ** 2 + r["dy"][sel] ** 2)
    return f"{sel.sum()} | {e2.mean() / np.mean(r['unc'][sel] ** 2):.2f} / {np.std(z):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--movies", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=990001)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "held_rows.md")
    args = ap.parse_args()
    model = load_model("default")
    tr = model.metadata["training"]
    movies = MovieConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in tr["movies"].items()})
    t0 = time.perf_counter()
    r = held_rows(model, movies, args.movies, args.seed)
    iso = r["isolated"].astype(bool)
    every = np.ones(len(iso), bool)
    rows = [f"| all | | {cell(r, every)} | {cell(r, iso)} |"]
    for name, edges in BINS.items():
        v = r[name]
        for lo, hi in zip(edges[:-1], edges[1:]):
            s = (v >= lo) & (v < hi)
            rows.append(f"| {name} | {lo:g}-{hi:g} | {cell(r, s)} | {cell(r, s & iso)} |")
    head = [
        "# The rows held at the network's position (`python benchmarks/held_rows.py`)",
        "",
        f"Run on {time.strftime('%Y-%m-%d')} on {describe()} in {time.perf_counter() - t0:.0f} s: the default "
        f"model on {args.movies} movies of its training mix (seed {args.seed}), its shipped error model. Per bin: "
        "rows, then mean(error^2) / mean(uncertainty^2) per axis / std(error / uncertainty) per axis; "
        "isolated: no other true emitter within 500 nm. See the script's docstring.",
        "",
        "| covariate | bin | held rows | ratio / std | isolated rows | ratio / std |",
        "|---|---|---|---|---|---|",
    ]
    args.out.write_text("\n".join(head + rows) + "\n")
    print("\n".join(head + rows))


if __name__ == "__main__":
    main()

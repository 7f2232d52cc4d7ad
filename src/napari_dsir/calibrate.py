"""Calibrating the localizer of a trained model on its validation frames.

The threshold (and the blur and radii) that the checkpoint ships: searched
once, after training, on simulated frames with known positions, and never
tuned per movie afterwards.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import torch

from .errors import DSIRError
from .evaluate import evaluate
from .localize import (
    CROWDED_BOUND_REF_PX,
    CROWDED_DENSITY_KNOTS,
    CROWDED_DENSITY_REF,
    CROWDED_SIGMA_REF_PX,
    LocalizeParams,
    centroids,
    check_density_factors,
    crowded_extra,
    density_or_ref,
    distance_factor,
    find_peaks,
    local_maxima,
    sigma_or_ref,
)
from .localize import blur as blur_images
from .locs import Localizations
from .model import SPOT_CEILING_SHARE, DSIRModel, movie_spot_height
from .simulate import MovieConfig, simulate_movies

# what the shipped threshold must hold at every density of the validation
# movies (issue 12): precision, and false positives per empty frame
MIN_PRECISION = 0.93
MAX_EMPTY_FP = 0.03
# thresholds tried by `calibrate_movies`, log-spaced from 0.5 % to 90 % of
# the validation output's maximum: 96 (5.6 % apart). With 24 (25 % apart)
# the threshold that keeps the precision lands up to a step above where it
# could: an Airy-tuned model's validation Jaccard 0.754 at 10.5 against
# 0.765 at 9.1 on the finer grid
THRESHOLD_STEPS = 96


def _predict(model: DSIRModel, frames: np.ndarray, batch_size: int, scales=None) -> torch.Tensor:
    model.net.eval()
    outs = []
    with torch.inference_mode():
        for s in range(0, len(frames), batch_size):
            x = torch.from_numpy(np.ascontiguousarray(frames[s : s + batch_size], np.float32)).to(model.device)
            sc = None if scales is None else torch.from_numpy(np.asarray(scales[s : s + batch_size], np.float32))
            outs.append(model.predict(x, scale=sc).cpu())
    return torch.cat(outs)


def calibrate_localizer(model: DSIRModel, frames: np.ndarray, truth: Localizations, sr_pixel: float,
                        batch_size: int = 32, radius_nm: float = 250.0,
                        blur: tuple[int, float] = (5, 3.0)) -> tuple[LocalizeParams, float]:
    """Localizer settings maximising Jaccard on validation frames.

    Searched: an extra blur (none, the loss's Gaussian, twice as wide; the
    local-maximum radius grows with it) and the threshold on a log grid.
    ``frames`` (frame, y, x) ADU with ``truth`` in nm; ``sr_pixel`` nm.
    Returns the best `LocalizeParams` and its Jaccard at ``radius_nm``."""
    sr = _predict(model, frames, batch_size)
    if not (sr.numel() and float(sr.max()) > 0):  # (a geometric grid of thresholds needs a peak above 0)
        raise DSIRError("the network's output is 0 on every validation frame: no threshold can be calibrated "
                        "(a training too short, or a learning rate that silenced the network: train longer)")
    best = (LocalizeParams(), -1.0)
    # (width, fwhm) of the extra blur before peak finding; fwhm 0: none
    blurs = [(blur[0], 0.0), (blur[0], blur[1]), (2 * math.ceil(2 * blur[1]) + 1, 2 * blur[1])]
    for width, fwhm in blurs:
        rad = max(2, math.ceil(fwhm / 2))
        sb = blur_images(sr, width, fwhm)  # once per blur, not once per threshold
        top = float(sb.max()) if sb.numel() else 1.0
        for t in np.geomspace(top * 2e-3, top * 0.9, 15):
            p = LocalizeParams(threshold=float(t), radius=rad, window=rad, blur_width=width, blur_fwhm=fwhm)
            found = find_peaks(sb, sr_pixel, replace(p, blur_fwhm=0.0))
            jac = evaluate(truth, found, radius_nm).jaccard
            if jac > best[1]:
                best = (p, jac)
    return best


#: the density bands (emitters/um^2) whose mean Jaccard `calibrate_movies` maximises
DENSITY_BANDS = [(0.0, 1.0), (1.0, 3.0), (3.0, 6.0), (6.0, math.inf)]


def candidate_peaks(sr: torch.Tensor, lowest: float, radius: int, sr_pixel: float):
    """(localizations, peak values) of the peaks of ``sr`` (frame, y, x) above
    ``lowest``, positions by log-parabola: found once, a higher threshold
    keeps those whose value is above it."""
    b, yy, xx = local_maxima(sr, lowest, radius)
    return centroids(sr, b, yy, xx, radius, sr_pixel, subpixel="gauss"), sr[b, yy, xx].numpy()


def band_scores(truth: Localizations, found: Localizations, frame_band: np.ndarray, empty: np.ndarray,
                radius_nm: float = 250.0) -> tuple[dict, float]:
    """Per `DENSITY_BANDS` band with frames (``frame_band``: each frame's band
    index): Jaccard and precision of ``found`` against ``truth``; and the
    false positives per ``empty`` frame."""
    rows = {}
    for i, (lo, hi) in enumerate(DENSITY_BANDS):
        sel = np.flatnonzero(frame_band == i)
        if len(sel) == 0:
            continue
        m = evaluate(truth.select(np.isin(truth.frame, sel)), found.select(np.isin(found.frame, sel)), radius_nm)
        rows[f"{lo:g}-{hi:g}"] = {"jaccard": m.jaccard, "precision": m.precision}
    return rows, float(np.isin(found.frame, empty).sum() / max(1, len(empty)))


def calibrate_movies(model: DSIRModel, frames: np.ndarray, truth: Localizations, sr_pixel: float,
                     scales: np.ndarray, densities: np.ndarray, batch_size: int = 32,
                     radius_nm: float = 250.0) -> tuple[LocalizeParams, dict]:
    """The one threshold for every density: on validation movies of
    ``densities`` (emitters/um^2, one per frame), the threshold with the best
    mean Jaccard over density bands among those whose precision is at least
    `MIN_PRECISION` in every band and whose false positives per empty frame
    are at most `MAX_EMPTY_FP`; when none meets both, the one with the
    highest worst-band precision less empty-frame false positives. Peaks are
    found in the output itself (trained to be the blurred label), local-maximum
    radius and intensity window 2 or 3 SR px, positions by log-parabola
    (``subpixel="gauss"``: the output's peaks are Gaussian). Returns the
    parameters and a report (per band: Jaccard, precision; empty-frame false
    positives).
    """
    sr = _predict(model, frames, batch_size, scales)
    frame_band = np.digitize(densities, [b[1] for b in DENSITY_BANDS[:-1]])
    empty = np.flatnonzero(np.bincount(truth.frame.astype(int), minlength=len(frames)) == 0)
    top = float(sr.max()) if sr.numel() else 1.0
    thresholds = np.geomspace(top * 5e-3, top * 0.9, THRESHOLD_STEPS)
    best, best_key, report = None, None, {}
    for rad in (2, 3):
        every, value = candidate_peaks(sr, float(thresholds[0]), rad, sr_pixel)
        for t in thresholds:
            p = LocalizeParams(threshold=float(t), radius=rad, window=rad, blur_width=1, blur_fwhm=0.0,
                               subpixel="gauss")
            rows, efp = band_scores(truth, every.select(value > t), frame_band, empty, radius_nm)
            jac = float(np.mean([r["jaccard"] for r in rows.values()]))
            worst = min(r["precision"] for r in rows.values())
            ok = worst >= MIN_PRECISION and efp <= MAX_EMPTY_FP
            key = (ok, jac if ok else worst - efp)
            if best_key is None or key > best_key:
                best, best_key = p, key
                report = {"bands": rows, "empty_frame_fp": efp, "mean_jaccard": jac, "constraints_met": ok}
    return best, report


#: movies simulated beyond the validation movies for `crowded_error` (the
#: network's error is measured on both): its factors at low densities rest
#: on the few crowded detections of sparse movies (300 movies: the factor at
#: 1 /um^2 came out 0.97; 1,200 movies of three other seeds: 0.69-0.82)
ERROR_MOVIES = 1500
#: their seed: the training seed plus this (the validation's: plus 1,000,003)
ERROR_SEED_OFFSET = 2_000_003


def calibrate_movie_localizer(model: DSIRModel, frames: np.ndarray, truth: Localizations, sr_pixel: float,
                              scales: np.ndarray, movie: np.ndarray, settings: list[dict], movies: MovieConfig,
                              seed: int, batch_size: int = 32, error_movies: int = ERROR_MOVIES
                              ) -> tuple[LocalizeParams, dict]:
    """The localizer settings a movie-trained model ships, from its
    validation movies (`simulate.simulate_movies` of the training's
    ``movies`` config: frames in ADU, truth in nm, each frame's movie, each
    movie's drawn settings): the threshold (`calibrate_movies`), then the
    network's own error where the refinement keeps its positions
    (`crowded_error`), on those movies and ``error_movies`` more (seed:
    the training ``seed`` + `ERROR_SEED_OFFSET`). Returns the parameters and
    the report (``report["crowded_error"]``: the latter's)."""
    dens = np.array([st["density"] for st in settings])[movie]
    params, report = calibrate_movies(model, frames, truth, sr_pixel, scales, dens, batch_size)
    if int(error_movies) > 0:
        more, more_truth, more_movie, more_settings = simulate_movies(int(error_movies), movies,
                                                                      seed=int(seed) + ERROR_SEED_OFFSET)
        truth = Localizations.concatenate([Localizations(truth.frame, truth.x, truth.y),
                                           Localizations(more_truth.frame + len(frames), more_truth.x, more_truth.y)])
        movie = np.r_[movie, more_movie + int(movie.max()) + 1]
        frames, settings = np.concatenate([frames, more]), list(settings) + list(more_settings)
    fields, report["crowded_error"] = crowded_error(model, frames, truth, movie, settings, movies.pixel_size, params)
    report["crowded_error"]["movies"] = len(settings)
    return replace(params, **fields), report


#: neighbour classes of `crowded_error`: 1, 2, 3 and >= 4 neighbours
CROWDED_CLASSES = 4


def fit_movies(model: DSIRModel, frames: np.ndarray, truth: Localizations, movie: np.ndarray,
               settings: list[dict], pixel_size: float, params: LocalizeParams, error_model=None,
               refine_overrides: dict | None = None):
    """Each movie of validation movies (`simulate.simulate_movies`: frames
    in ADU, truth in nm, the movie of each frame and each movie's drawn
    camera) run as `reconstruct` runs it: its own noise level, detections
    with ``params``, its own camera, reconstruct's fit settings (with the
    network's error of ``error_model``, `LocalizeParams`; None: none), the
    split spots merged, one `refine` call, with ``refine_overrides`` over
    those settings (e.g. ``{"beyond_frame": True}``). Yields its `fit.FitResult` and
    its truth (frames counted from the movie's first); movies with fewer
    than 2 detections are left out."""
    from .camera import Camera
    from .fit import refine
    from .reconstruct import fit_sigma_init, merge_splits, movie_psf, refine_settings
    from .run import reconstruct

    p = float(pixel_size)
    for mv in np.unique(movie):
        idx = np.flatnonzero(movie == mv)
        st = settings[int(mv)]
        cam = Camera(st["base_level"], 1.0 / st["gain"], st["em_gain"], 1.0, read_noise=st["read_noise"])
        found = reconstruct(frames[idx], model=model, pixel_size=p, localize=params, refine=False,
                            binning=1).localizations
        if len(found) < 2:
            continue
        photons = cam.to_photons(torch.from_numpy(np.asarray(frames[idx], np.float32)))
        start = fit_sigma_init(movie_psf(frames[idx], 0, len(idx), p, cam))  # as in a run
        fit_kw = {**refine_settings(p, error_model, start), **(refine_overrides or {})}
        found = merge_splits(photons, found, p, cam, fit_kw)[0]  # as in a run
        gt = truth.select(np.isin(truth.frame, idx))
        yield refine(photons, found, p, cam, **fit_kw), Localizations(np.searchsorted(idx, gt.frame), gt.x, gt.y)


def crowded_error(model: DSIRModel, frames: np.ndarray, truth: Localizations, movie: np.ndarray,
                  settings: list[dict], pixel_size: float, params: LocalizeParams | None = None,
                  match_nm: float = 100.0) -> tuple[dict, dict]:
    """The network's own position error for the detections the refinement
    keeps at the network's position (status CROWDED and PULLED), beyond their
    Cramer-Rao bound, on validation movies (`simulate.simulate_movies`:
    frames in ADU, truth in nm, the movie of each frame and each movie's
    drawn camera). Each movie is run as `reconstruct` runs it (its own noise
    level, its own camera, reconstruct's fit settings, one `refine` call per
    movie); crowded detections matched to the truth within ``match_nm`` give
    the mean squared error per axis against the model ``bound^2 + (c_k
    (bound / CROWDED_BOUND_REF_PX) ** power * f(density) * (sigma /
    CROWDED_SIGMA_REF_PX) ** sigma_power * distance_factor)^2``
    (`localize.crowded_extra`; density: the refine call's
    `FitResult.density`, f: factors at `localize.CROWDED_DENSITY_KNOTS`,
    sigma: the row's PSF sigma in camera px, distance: its
    `FitResult.nearest` in sigmas), per class k of 1, 2, 3 and >= 4
    neighbours: `fit_crowded_error`;
    the pulled rows (isolated detections whose free fit was pulled away)
    get their own c with those powers and f. Returns the `LocalizeParams`
    fields (``crowded_error_px``: c_1..c_4 in camera px,
    ``crowded_error_power``, ``crowded_error_density``,
    ``crowded_error_sigma_power``, ``crowded_error_distance_power``,
    ``pulled_error_px``: None with fewer than 20 pulled rows) and a report (per class count, RMSE and RMS bound
    per axis in px, c, bins; the same for "pulled"; the powers and the
    factors)."""
    from .evaluate import match
    from .fit import CROWDED, PULLED

    params = replace(params or LocalizeParams(), crowded_error_px=(), crowded_error_power=0.0, pulled_error_px=None,
                     crowded_error_density=(), crowded_error_sigma_power=0.0, crowded_error_distance_power=0.0)
    p = float(pixel_size)
    err2, bound2, dens, sigma, near, cls = [], [], [], [], [], []  # class -1: pulled
    for res, gt in fit_movies(model, frames, truth, movie, settings, p, params):
        locs = res.locs
        gi, pi, _ = match(gt, locs, match_nm)
        sel = np.isin(res.status[pi], (CROWDED, PULLED))
        gi, pi = gi[sel], pi[sel]
        err2.append(0.5 * (((locs.x[pi] - gt.x[gi]) / p) ** 2 + ((locs.y[pi] - gt.y[gi]) / p) ** 2))
        bound2.append((locs.uncertainty[pi] / p) ** 2)
        dens.append(res.density[pi])
        sigma.append(locs.sigma[pi] / p)
        near.append(res.nearest[pi])
        # the neighbour counts refine held the crowded rows by
        cls.append(np.where(res.status[pi] == PULLED, -1, np.minimum(res.neighbours[pi], CROWDED_CLASSES) - 1))
    e2, b2, d, s, nn, c = (np.concatenate(v) if v else np.zeros(0) for v in (err2, bound2, dens, sigma, near, cls))
    c = c.astype(int)
    crowded = c >= 0
    fit = fit_crowded_error(e2[crowded], b2[crowded], c[crowded], density=d[crowded], sigma=s[crowded],
                            nearest=nn[crowded])
    pulled = fit_crowded_error(e2[~crowded], b2[~crowded], np.zeros((~crowded).sum(), int), power=fit.power,
                               density=d[~crowded], density_factors=fit.density_factors, sigma=s[~crowded],
                               sigma_power=fit.sigma_power, nearest=nn[~crowded], distance_power=fit.distance_power)
    report = dict(fit.report)
    report["pulled"] = pulled.report["1"]
    fields = {"crowded_error_px": fit.errors, "crowded_error_power": fit.power,
              "crowded_error_density": fit.density_factors, "crowded_error_sigma_power": fit.sigma_power,
              "crowded_error_distance_power": fit.distance_power,
              "pulled_error_px": pulled.errors[0] if "extra_px" in pulled.report["1"] else None}
    return fields, report


#: distance classes per neighbour class and density range in
#: `fit_crowded_error` (equal counts, by the nearest detection in PSF
#: sigmas), bound classes in each, and PSF-sigma classes in those
DISTANCE_BINS = 3
BOUND_BINS = 6
SIGMA_BINS = 3
#: weight (as rows) that ties the log density factors of neighbouring knots
#: (where no rows say otherwise, a knot takes its neighbours' factor)
DENSITY_TIE_ROWS = 20


class CrowdedErrorFit(NamedTuple):
    """`fit_crowded_error`'s result: c_1.. (camera px), the power of the
    bound, the density factors (at `localize.CROWDED_DENSITY_KNOTS`; empty:
    none), the power of the PSF sigma, a report and the power of the nearest
    detection's distance."""

    errors: tuple
    power: float
    density_factors: tuple
    sigma_power: float
    report: dict
    distance_power: float = 0.0


def fit_crowded_error(err2, bound2, cls, min_rows: int = 20, power: float | None = None, density=None,
                      density_factors=None, sigma=None, sigma_power: float | None = None, nearest=None,
                      distance_power: float | None = None) -> CrowdedErrorFit:
    """Fit ``err2 ~ bound2 + extra^2``, ``extra = c_k (bound /
    CROWDED_BOUND_REF_PX) ** power * f(density) * (sigma /
    CROWDED_SIGMA_REF_PX) ** sigma_power * (distance /
    CROWDED_DISTANCE_REF) ** -distance_power`` (`localize.crowded_extra`) to
    crowded rows: their squared error per axis (the mean of x and y, px^2),
    their bare bound squared, their neighbour class ``cls`` (0-based) and,
    optionally, their local ``density`` (detections per frame and 100 px^2),
    their PSF ``sigma`` (camera px) and the distance to their ``nearest``
    other detection (camera px; in sigmas within `CROWDED_DISTANCE_RANGE`:
    `localize.distance_factor`); f: factors at `CROWDED_DENSITY_KNOTS`,
    1 at `CROWDED_DENSITY_REF`, interpolated in log-log
    (`localize.density_factor`; without densities, none; without sigmas,
    no sigma power; without distances, no distance power). The rows of each
    class are cut by density into the ranges of the knots (edges halfway
    between them, in log), each range into up to `DISTANCE_BINS` bins of
    equal count by their distance, each of those into up to `BOUND_BINS` by
    their bound, and each of those into up to `SIGMA_BINS` by their sigma;
    the log of each bin's mean squared error is fitted (each bin weighted by
    its count), with one power of each kind (0..2) and one f for every
    class; neighbouring knots' log factors are tied with the weight of
    `DENSITY_TIE_ROWS` rows. A class with fewer than ``min_rows`` rows
    takes the previous class's c (none before it: 0); with fewer than
    ``BOUND_BINS * min_rows`` rows in all the powers are 0, f none and c_k =
    sqrt(mean err2 - mean bound2) per class. ``power``,
    ``density_factors``, ``sigma_power``, ``distance_power``: given, they
    are held."""
    from scipy.optimize import least_squares

    err2, bound2, cls = (np.asarray(v) for v in (err2, bound2, cls))
    bound = np.sqrt(bound2)
    knots = np.log(CROWDED_DENSITY_KNOTS)
    ref = int(np.argmin(np.abs(knots - math.log(CROWDED_DENSITY_REF))))
    with_density = density is not None and len(err2) > 0
    dens = density_or_ref(density if with_density else np.full(len(err2), CROWDED_DENSITY_REF))
    drange = np.digitize(np.log(dens), 0.5 * (knots[1:] + knots[:-1])) if with_density else np.zeros(len(err2), int)
    with_sigma = sigma is not None and len(err2) > 0
    sg = sigma_or_ref(sigma if with_sigma else np.full(len(err2), CROWDED_SIGMA_REF_PX))
    log_s = np.log(sg / CROWDED_SIGMA_REF_PX)
    with_distance = nearest is not None and len(err2) > 0
    near = np.asarray(nearest, float) if with_distance else np.full(len(err2), np.inf)
    log_r = -np.log(distance_factor(1.0, near, sg))  # log(distance in sigmas / CROWDED_DISTANCE_REF)
    bins = []  # (class, rows) of each bin
    for k in range(CROWDED_CLASSES):
        rows = np.flatnonzero(cls == k)
        if len(rows) < min_rows:
            continue
        for j in np.unique(drange[rows]):
            r = rows[drange[rows] == j]
            if len(r) < min_rows and len(bins) and bins[-1][0] == k:  # too few: with the previous range's last bin
                bins[-1] = (k, np.r_[bins[-1][1], r])
                continue
            r = r[np.argsort(log_r[r], kind="stable")]
            for u in np.array_split(r, min(DISTANCE_BINS, max(1, len(r) // min_rows)) if with_distance else 1):
                u = u[np.argsort(bound[u], kind="stable")]
                for q in np.array_split(u, min(BOUND_BINS, max(1, len(u) // min_rows))):
                    if with_sigma:
                        q = q[np.argsort(sg[q], kind="stable")]
                        bins += [(k, t) for t in np.array_split(q, min(SIGMA_BINS, max(1, len(q) // min_rows)))]
                    else:
                        bins.append((k, q))
    present = sorted({k for k, _ in bins})
    enough = len(err2) >= BOUND_BINS * min_rows and len(bins) > len(present)
    fit_power = power is None and enough
    fit_sigma = sigma_power is None and with_sigma and enough
    fit_density = density_factors is None and with_density and enough
    fit_distance = distance_power is None and with_distance and enough
    power = 0.0 if power is None else float(power)
    sigma_power = 0.0 if sigma_power is None else float(sigma_power)
    distance_power = 0.0 if distance_power is None else float(distance_power)
    held_f = check_density_factors(density_factors if density_factors is not None else ())
    logf = np.log(held_f) if len(held_f) else np.zeros(len(knots))
    c = np.zeros(CROWDED_CLASSES)
    for k in present:
        rows = np.flatnonzero(cls == k)
        c[k] = math.sqrt(max(float(np.mean(err2[rows]) - np.mean(bound2[rows])), 0.0))
    free_knots = [i for i in range(len(knots)) if i != ref] if fit_density else []
    if present and (enough or power > 0 or sigma_power > 0 or distance_power > 0 or len(held_f)):
        def unpack(q):
            ck, pw, sp, dp, lf, i = q[: len(present)], power, sigma_power, distance_power, logf.copy(), len(present)
            if fit_power:
                pw, i = float(q[i]), i + 1
            if fit_sigma:
                sp, i = float(q[i]), i + 1
            if fit_distance:
                dp, i = float(q[i]), i + 1
            lf[free_knots] = q[i:]
            return ck, pw, sp, dp, lf

        def resid(q):
            ck, pw, sp, dp, lf = unpack(q)
            scale2 = np.exp(2 * np.interp(np.log(dens), knots, lf) + 2 * sp * log_s - 2 * dp * log_r)
            out = []
            for k, r in bins:
                extra = ck[present.index(k)] ** 2 * (np.maximum(bound[r], 1e-6) / CROWDED_BOUND_REF_PX) ** (2 * pw)
                out.append(math.sqrt(len(r)) * (math.log(np.mean(err2[r]) + 1e-12)
                                                  - math.log(np.mean(bound2[r] + extra * scale2[r]) + 1e-12)))
            if fit_density:
                out += list(math.sqrt(DENSITY_TIE_ROWS) * np.diff(lf))
            return np.array(out)

        n_pow = int(fit_power) + int(fit_sigma) + int(fit_distance)
        q0 = np.r_[np.maximum(c[present], 0.05), [0.25] * n_pow, np.zeros(len(free_knots))]
        lo = np.r_[np.zeros(len(present)), [0.0] * n_pow, np.full(len(free_knots), -3.0)]
        hi = np.r_[np.full(len(present), np.inf), [2.0] * n_pow, np.full(len(free_knots), 3.0)]
        c_fit, power, sigma_power, distance_power, logf = unpack(least_squares(resid, q0, bounds=(lo, hi)).x)
        c[present] = c_fit
    factors = tuple(float(v) for v in np.exp(logf)) if (fit_density or len(held_f)) else ()
    out, report = [], {}
    for k in range(CROWDED_CLASSES):
        name = f"{k + 1}{'+' if k == CROWDED_CLASSES - 1 else ''}"
        rows = np.flatnonzero(cls == k)
        if k not in present:  # too few to say: the previous class's (none: no extra)
            out.append(out[-1] if out else 0.0)
            report[name] = {"n": len(rows)}
            continue
        out.append(float(c[k]))
        mine = [r for kk, r in bins if kk == k]
        report[name] = {"n": len(rows), "rmse_px": float(np.sqrt(np.mean(err2[rows]))),
                        "rms_bound_px": float(np.sqrt(np.mean(bound2[rows]))), "extra_px": out[-1],
                        # per bin (by density range, bound, sigma): rms bound, RMSE and
                        # the modelled RMSE (px), median density (per 100 px^2), median sigma (px)
                        "bins": [[float(np.sqrt(np.mean(bound2[r]))), float(np.sqrt(np.mean(err2[r]))),
                                  float(np.sqrt(np.mean(bound2[r] + crowded_extra(
                                      out, power, k + 1, bound[r], dens[r], factors, sg[r], sigma_power,
                                      nearest_px=near[r], distance_power=distance_power) ** 2))),
                                  float(np.median(dens[r])), float(np.median(sg[r]))] for r in mine]}
    report["power"] = power
    report["density_factors"] = list(factors)
    report["density_knots"] = list(CROWDED_DENSITY_KNOTS)
    report["sigma_power"] = sigma_power
    report["distance_power"] = distance_power
    return CrowdedErrorFit(tuple(out), power, factors, sigma_power, report, distance_power)


def calibrate_crowded_error(path, n_movies: int = 300 + ERROR_MOVIES, seed: int = 2026, device: str = "cpu") -> dict:
    """Measure `crowded_error` for the checkpoint at ``path`` on ``n_movies``
    validation movies of the training distribution (`MovieConfig()`, its
    pixel size) and store it in the checkpoint's localizer settings (and the
    report under ``metadata["calibration"]["crowded_error"]``)."""
    from .localize import params_for
    from .model import load_checkpoint, save_checkpoint
    from .simulate import MovieConfig, simulate_movies

    model = load_checkpoint(path).to(device)
    cfg = MovieConfig()
    frames, truth, movie, settings = simulate_movies(int(n_movies), cfg, seed=seed)
    params = params_for(model)
    fields, report = crowded_error(model, frames, truth, movie, settings, cfg.pixel_size, params)
    params = replace(params, **fields)
    model.metadata["localize"] = {**model.metadata.get("localize", {}), **params.to_dict()}
    cal = dict(model.metadata.get("calibration", {}))
    cal["crowded_error"] = {"movies": int(n_movies), "seed": int(seed), "classes": report}
    model.metadata["calibration"] = cal
    save_checkpoint(path, model)
    return {k: params.to_dict()[k] for k in fields} | cal["crowded_error"]


#: fewer training movies with a spot height than this: no ceiling
MIN_CEILING_MOVIES = 20


def spot_ceiling(frames: np.ndarray, movie: np.ndarray, scales: np.ndarray) -> dict | None:
    """The spot height (`napari_dsir.model.movie_spot_height`, in noise
    levels) that `SPOT_CEILING_SHARE` of a model's training movies stay
    under, from movies of its training distribution: ``frames`` (frame, y,
    x) ADU, each frame's ``movie`` index and noise level ``scales`` (the
    validation split's). Stored in the checkpoint (``spot_ceiling``): a
    movie whose spots are taller is scaled down for the network
    (`napari_dsir.model.DSIRModel.input_scale`). None with fewer than
    `MIN_CEILING_MOVIES` movies with spots."""
    heights = []
    for m in np.unique(movie):
        idx = np.flatnonzero(movie == m)
        h = movie_spot_height(torch.from_numpy(np.ascontiguousarray(frames[idx], np.float32)), float(scales[idx[0]]))
        if h is not None:
            heights.append(h)
    if len(heights) < MIN_CEILING_MOVIES:
        return None
    return {"height": float(np.quantile(heights, SPOT_CEILING_SHARE)), "share": SPOT_CEILING_SHARE,
            "movies": len(heights)}


if __name__ == "__main__":  # python -m napari_dsir.calibrate CHECKPOINT [N_MOVIES [SEED]]
    import json
    import sys

    a = sys.argv[1:]
    if not a:
        sys.exit("usage: python -m napari_dsir.calibrate CHECKPOINT [N_MOVIES [SEED]]")
    print(json.dumps(calibrate_crowded_error(a[0], *(int(v) for v in a[1:3])), indent=1))

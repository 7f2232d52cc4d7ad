"""Refinement of detections on the raw frames: batched Poisson maximum likelihood.

Each detection (an initial position, e.g. a peak of the network's output) is
fitted on the camera frame it came from, in a ``window`` x ``window`` pixel box
around it, with an integrated Gaussian PSF (erf over each pixel), as
ThunderSTORM, Picasso and Gpufit do (Smith et al. 2010, Nat Methods 7:373):

    mu(pixel) = b + sum_k N_k * PSF(pixel; x_k, y_k, s_k)        (photoelectrons)

The Poisson negative log-likelihood is minimised with Levenberg-Marquardt
(Fisher-scoring Hessian, Laurence & Chromy 2010), vectorised in torch over all
fits of a batch (CPU or GPU; no Python loop per spot; `napari_dsir.mle`).
Parameters are bounded: each position stays in its own window, ``N >= 1``
e-, ``b >= 0``, ``s`` in ``sigma_bounds_px``.

Neighbours. Detections of one frame closer than ``window`` pixels are fitted
*together*: one joint model of K emitters sharing one background over the union
of their windows (groups of 1, 2, ... ``max_group`` emitters, each size batched).
A larger group (or one whose union box is wider than 3 windows) is fitted
emitter by emitter: each with its ``max_group - 1`` nearest neighbours free
(over the union of their windows; only the emitter's own result is kept) and
the light of the rest of the group held fixed at the current estimates (first
the start values, then ``fallback_passes`` passes, each from the previous
one's results). Still batched; it costs about ``max_group`` times a joint fit
per emitter, and only dense clusters go there.

Neighbours held fixed start from first estimates of their photons that
share the light of overlapping detections among them
(`napari_dsir.neighbours.deblend`), and
their light is rendered 2 px past their own windows.

Crowding. With ``isolation_px``, a detection that has another one closer
than that in its frame keeps its starting position (x and y held, the
rest fitted with the neighbours' light modelled): in crowded frames the
network places overlapping emitters better than a fit whose model misses
their undetected neighbours (benchmarks/results/calibrated.md). Such rows
have status `CROWDED`; they are fitted after the free ones, with the PSF
sigma of the free fits (one PSF per call; with fewer than `MIN_PSF_FITS`
free fits, that of sigma-free fits of the crowded ones), and their photons,
background, sigma and uncertainty (the bound of a fit at that position, plus
``crowded_error_px`` in quadrature: the network's own error there, larger
for dim emitters by ``crowded_error_power``, where the detections around
are dense by ``crowded_error_density`` and for a wide PSF by
``crowded_error_sigma_power``) are reported.

Pulled fits. With ``hold_pulled``, a free fit that moved (``max_shift_px``,
the window's edge) or whose residuals its model does not explain
(``max_chi2_sigma``) was pulled by light the model misses: an emitter that
was not detected, or one outside the frame. A PSF that is not Gaussian (an
objective's Airy rings) leaves residuals that grow with each fit's light:
that share, measured per call from the lone free fits (`_psf_mismatch`), is
taken out of the chi-square before the test. It is fitted again as a crowded
one, at its starting position (status `PULLED`; its bound plus
``pulled_error_px``, the network's error there), instead of failing.

Uncertainty is the Cramer-Rao lower bound: sqrt of the diagonal of the inverse
Fisher information of the Poisson model at the fitted parameters (x and y
averaged, per axis, in nm). Read noise (sCMOS) enters as in Huang et al. 2013:
data and model both offset by the read-noise variance in e-^2 (Poisson
approximation), in the fit and in the Fisher information. An EMCCD's excess
noise (``em_gain > 1``) doubles the variances (Mortensen et al. 2010). The
quantum efficiency is accounted for by fitting photoelectrons (photons * qe);
the reported photons and background are photons (divided by qe again). With
``chi2_scale`` a free fit's bound is multiplied by the square root of its
reduced chi-square where that is above 1 (light its model misses).

Failed fits are flagged, never dropped: `FitResult.status` says why (see
`STATUS`); they keep their initial position and get NaN photons, background,
sigma and uncertainty.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from scipy.spatial import cKDTree

from .camera import Camera
from .errors import DSIRError
from .io import check_pixel_size
from .localize import (
    check_crowded_error,
    check_crowded_error_power,
    check_density_factors,
    check_sigma_min,
    crowded_extra,
    local_density,
)
from .locs import Localizations
from .mle import N_MIN, fit_groups
from .neighbours import (
    DEBLEND_PX,
    FixedLight,
    count_neighbours,
    deblend,
    duplicates,
    frame_pairs,
    frame_quartiles,
    groups,
    inside,
    nearest_distance,
    shape_at,
)

OK = 0
NON_FINITE = 1
MOVED = 2
SIGMA_AT_BOUND = 3
DIM = 4
NOT_CONVERGED = 5
OUTSIDE = 6
DUPLICATE = 7
BAD_FIT = 8
CROWDED = 9
PULLED = 10
BEYOND = 11

#: status code -> meaning
STATUS = {
    OK: "ok",
    NON_FINITE: "non-finite result",
    MOVED: "moved out of its window, onto its edge or farther than max_shift_px",
    SIGMA_AT_BOUND: "PSF sigma at its bound",
    DIM: "photons at their bound or not significant, or no precision within the window",
    NOT_CONVERGED: "not converged within max_iter",
    OUTSIDE: "initial position not finite or outside the frame",
    DUPLICATE: "merged into a stronger detection closer than merge_px",
    BAD_FIT: "residuals not explained by the model (chi-square above max_chi2_sigma): e.g. an undetected neighbour",
    CROWDED: "a neighbour closer than isolation_px: position held at the start, photons and bound fitted there",
    PULLED: "free fit pulled away (it moved or its residuals were not explained, as for MOVED and BAD_FIT: "
            "e.g. an undetected neighbour): position held at the start, photons and bound fitted there",
    BEYOND: "free fit outside the frame by more than BEYOND_BOUNDS times its uncertainty: an emitter beyond the "
            "field of view whose light shines in",
}

#: key of ``Result.info["fit"]`` for the detections left out before the fits
#: as the network's splits of one spot (`napari_dsir.splits`); not a status
SPLIT = "split spot: merged into a detection beside it"

#: statuses whose photons, background, sigma and uncertainty are reported
#: (the others get NaN); only `OK` and `BEYOND` fits move the position
REPORTED = (OK, CROWDED, PULLED, BEYOND)

#: with ``beyond_frame``, a free fit whose position is outside the frame by
#: more than this many times its reported uncertainty on that axis is an
#: emitter outside the field of view (status `BEYOND`): an emitter on the
#: edge itself stays in the frame in 97.7 % of its fits (the test
#: catches the clear cases only; benchmarks/results/beyond_frame.md)
BEYOND_BOUNDS = 2.0

class FitResult(NamedTuple):
    """``locs``: refined localizations (same rows and order as the input);
    ``ok``: bool mask of the successful free fits; ``status``: int8 code per
    row (`STATUS`); rows in `REPORTED` carry photons and uncertainty."""

    locs: Localizations
    ok: np.ndarray
    status: np.ndarray
    #: per row, the reduced chi-square of its free fit (Pearson chi-square /
    #: degrees of freedom, an EMCCD's excess noise divided out) where no
    #: other detection is within 7 px (NaN elsewhere, where no free fit
    #: converged, and where a PSF that is not Gaussian adds more than half
    #: its standard deviation to it: `_psf_mismatch`): about 1 where the
    #: camera model is right
    free_chi2: np.ndarray | None = None
    #: per row, the other detections of its frame closer than
    #: ``isolation_px`` (what CROWDED rows are classed by; zeros without it)
    neighbours: np.ndarray | None = None
    #: per row, detections per frame and 100 camera px^2 around it over the
    #: frames of the call (`localize.local_density`)
    density: np.ndarray | None = None
    #: per row, the distance (camera px) to the nearest other detection of
    #: its frame, or the pair search's radius (the window, 7 px at 100 nm,
    #: or more) where none is closer (`neighbours.nearest_distance`)
    nearest: np.ndarray | None = None
    #: per row, the reduced chi-square of its own fit (free, or at the
    #: network's position for the crowded and pulled rows, their
    #: neighbours' light held), an EMCCD's excess noise divided out and a
    #: non-Gaussian PSF's share taken out (`_chi2_ratio`); NaN where not fitted
    chi2: np.ndarray | None = None

    def summary(self) -> dict[str, int]:
        """Count of fits per status name (only the statuses that occur)."""
        codes, counts = np.unique(self.status, return_counts=True)
        return {STATUS[int(c)]: int(n) for c, n in zip(codes, counts)}

    @property
    def n_failed(self) -> int:
        """Fits that failed (NaN photons and uncertainty): status not in `REPORTED`."""
        return int((~np.isin(self.status, REPORTED)).sum())


#: bins of `chi2_histogram`: log10 of the reduced chi-square, 0.1 to 10
_CHI2_EDGES = np.linspace(-1.0, 1.0, 81)
#: median reduced chi-square of the lone free fits (no other detection
#: within 7 px) outside which the camera settings are reported as doubtful
#: (`fit_report`), and the fits it needs. Measured on the calibrated
#: benchmark's sets with the right camera: 0.97-1.09 up to 2 /um^2, 1.45 at
#: 4 /um^2 (undetected neighbours), too few lone fits above; photons
#: overestimated k-fold (sensitivity set k times too high) give about k
CHI2_DOUBT = (0.6, 2.0)
CHI2_MIN_FITS = 30


def chi2_histogram(values) -> np.ndarray:
    """Counts of reduced chi-square values in 80 log-spaced bins from 0.1 to
    10 (those outside in the end bins): a summary that adds up over blocks
    of frames and dask chunks (`chi2_median`)."""
    v = np.asarray(values, float)
    v = np.log10(v[np.isfinite(v) & (v > 0)])
    idx = np.clip(np.searchsorted(_CHI2_EDGES, v, side="right") - 1, 0, len(_CHI2_EDGES) - 2)
    return np.bincount(idx, minlength=len(_CHI2_EDGES) - 1).astype(np.int64)


def chi2_median(hist) -> tuple[float, int]:
    """Median reduced chi-square (to the bin, ~6 %) and the number of fits
    of a `chi2_histogram`; NaN for none."""
    hist = np.asarray(hist)
    n = int(hist.sum())
    if n == 0:
        return float("nan"), 0
    k = int(np.searchsorted(np.cumsum(hist), 0.5 * n))
    return float(10 ** (0.5 * (_CHI2_EDGES[k] + _CHI2_EDGES[k + 1]))), n


def fit_report(counts: dict[str, int] | None, locs: Localizations | None, chi2_hist=None) -> dict | None:
    """What a refined table holds, for the CLI and the widget: fits per kind
    (``counts``: per `STATUS` name, as `FitResult.summary` and
    ``Result.info["fit"]``) and the median photons and uncertainty (nm) of
    the rows that have them. None when nothing was refined."""
    if not counts:
        return None
    split, beyond = int(counts.get(SPLIT, 0)), int(counts.get(STATUS[BEYOND], 0))
    counts = {k: v for k, v in counts.items() if k not in (SPLIT, STATUS[BEYOND])}
    failed = {k: v for k, v in counts.items() if k not in (STATUS[c] for c in REPORTED)}

    def median(col):
        col = None if col is None else col[np.isfinite(col)]
        return float(np.median(col)) if col is not None and len(col) else float("nan")

    chi2, n_chi2 = chi2_median(chi2_hist) if chi2_hist is not None else (float("nan"), 0)
    return {
        "median_free_chi2": chi2, "n_free_chi2": n_chi2,
        "camera_doubtful": bool(n_chi2 >= CHI2_MIN_FITS and not CHI2_DOUBT[0] <= chi2 <= CHI2_DOUBT[1]),
        "total": int(sum(counts.values())), "free": int(counts.get(STATUS[OK], 0)),
        "crowded": int(counts.get(STATUS[CROWDED], 0)), "pulled": int(counts.get(STATUS[PULLED], 0)),
        "failed": failed, "split": split, "beyond": beyond,
        "median_photons": median(None if locs is None else locs.photons),
        "median_uncertainty_nm": median(None if locs is None else locs.uncertainty),
    }


def fit_summary(report: dict) -> str:
    """One line of `fit_report`: medians, then the fits per kind."""
    n_failed = sum(report["failed"].values())
    photons, unc = report["median_photons"], report["median_uncertainty_nm"]
    if not (np.isfinite(photons) or np.isfinite(unc)):
        medians = "no fitted photons or uncertainty"
    else:
        medians = (f"median {photons:.0f} photons" if np.isfinite(photons) else "no fitted photons") + ", " + (
            f"median uncertainty {unc:.1f} nm" if np.isfinite(unc) else "no uncertainty")
    return (f"{medians}; {report['free']} free fits, {report['crowded']} "
            f"at the network's position (crowded), {report.get('pulled', 0)} at the network's position "
            f"(fit pulled away), {n_failed} failed"
            + (f"; {report['split']} split spot{'s' * (report['split'] != 1)} merged" if report.get("split") else "")
            + (f"; {report['beyond']} emitters outside the frame left out" if report.get("beyond") else "")
            + (f"; {report['dead_left_out']} of these inside dead pixels left out after their fits"
               if report.get("dead_left_out") else ""))


def failed_fits_message(report: dict) -> str | None:
    """A warning when fits failed (`fit_report`), with how many of each kind; else None."""
    failed = report.get("failed") or {}
    if not failed:
        return None
    return (f"{sum(failed.values())} of {report['total']} fits failed and keep the network's position with no "
            f"photons or uncertainty ({', '.join(f'{v} {k}' for k, v in failed.items())})")


def camera_doubt(report: dict) -> str | None:
    """A warning when the free fits' residuals disagree with the camera
    model (`fit_report`'s median reduced chi-square outside `CHI2_DOUBT`),
    else None."""
    if not report.get("camera_doubtful"):
        return None
    c = report["median_free_chi2"]
    which = ("higher: the photons are probably overestimated (sensitivity in e-/ADU set too high, or an EMCCD's "
             "EM gain not given)" if c > 1 else
             "lower: the photons are probably underestimated (sensitivity in e-/ADU set too low)")
    return (f"the residuals of {report['n_free_chi2']} lone free fits are {c:.1f}x the variance the camera "
            f"settings predict (median reduced chi-square; about 1 when they are right), {which}; photons and "
            "uncertainties rest on the camera settings: check them (a PSF far from a Gaussian raises it too)")


# --------------------------------------------------------------------------
# the public function


def refine(
    frames_photons,
    locs: Localizations,
    pixel_size_nm: float,
    camera: Camera | None = None,
    *,
    first_frame: int = 0,
    window: int = 7,
    sigma_init_nm: float | None = None,
    fit_sigma: bool = True,
    sigma_bounds_px: tuple[float, float] = (0.5, 3.0),
    max_iter: int = 30,
    max_group: int = 5,
    shared_sigma: bool = True,
    min_snr: float = 0.0,
    fallback_passes: int = 2,
    merge_px: float = 0.0,
    tol: float | None = None,
    dtype: torch.dtype | None = None,
    batch_elements: int = 1 << 22,
    threads: int | None = 1,
    max_shift_px: float | None = None,
    max_chi2_sigma: float | None = None,
    isolation_px: float | None = None,
    crowded_error_px=(),
    hold_pulled: bool = False,
    crowded_error_power: float = 0.0,
    pulled_error_px: float | None = None,
    crowded_error_density=(),
    crowded_error_sigma_power: float = 0.0,
    network_binning: int = 1,
    chi2_scale: bool = False,
    crowded_error_sigma_min_px: float = 0.0,
    background_shape=None,
    crowded_error_distance_power: float = 0.0,
    beyond_frame: bool = False,
) -> FitResult:
    """Refine detections by Poisson MLE of an integrated Gaussian PSF.

    frames_photons: (frame, y, x) frames in photons (`Camera.to_photons`),
        torch tensor (CPU or GPU: the fit runs there) or numpy array.
    locs: initial positions in nm (origin: corner of pixel (0, 0)); row i is
        fitted on ``frames_photons[locs.frame[i] - first_frame]``.
    pixel_size_nm: camera pixel size (nm).
    camera: the camera the frames came from (QE, EM gain, read noise; the
        default `Camera()` when None).
    window: fitting window (px, odd, >= 3).
    sigma_init_nm: starting PSF sigma (nm); default: the ``locs.sigma`` column
        when present, else 1 camera pixel. Required when ``fit_sigma=False``
        and locs has no sigma (it is then the fixed sigma).
    sigma_bounds_px: bounds of the fitted sigma (camera px).
    max_iter: Levenberg-Marquardt iterations at most.
    max_group: largest group of neighbours (closer than ``window`` px, one
        frame) fitted jointly; 1 fits every detection alone (neighbours'
        light held fixed).
    shared_sigma: one PSF sigma per joint group (the PSF of one frame region
        is one PSF); False: one per emitter.
    min_snr: flag fits whose photons are below ``min_snr`` times their own
        Cramer-Rao standard deviation (0: off; 3 flags nearly all fits on
        pure noise, and some true emitters of < ~300 photons on a high
        background).
    fallback_passes: passes over the groups larger than ``max_group``.
    merge_px: detections of one frame closer than this (camera px) are one
        detection: the strongest (``locs.intensity``, else the first) is
        fitted, the others are flagged `DUPLICATE` (0: off). A joint fit of
        a duplicated detection splits its photons between the copies.
    max_shift_px: a fit that ends farther than this (camera px) from its
        starting position is flagged `MOVED` (None: only when it leaves its
        window): in crowded frames such a fit has usually locked onto a
        neighbour, and the starting position is the better one.
    max_chi2_sigma: flag `BAD_FIT` the fits whose Pearson chi-square of the
        residuals (over the fitted box, variances as in the likelihood, EMCCD
        excess noise included) exceeds its degrees of freedom by more than
        this many standard deviations (sqrt(2 dof)); None: off. Such fits
        usually sit next to an emitter that was not detected, whose light
        pulls them (measured: errors of 3-15x the Cramer-Rao bound); 4 keeps
        ~99% of fits of fully modelled isolated emitters. A PSF that is not
        Gaussian raises the chi-square of bright emitters: the share that
        grows with the light (`_psf_mismatch`, from 30 lone free fits of a
        3x span of brightness) is taken out first. Not applied to the fits
        held by ``isolation_px``.
    tol: convergence when the next step would lower the negative
        log-likelihood by less than ``tol`` (moves of ~sqrt(2 tol) standard
        deviations); default 1e-5 in float64, 1e-3 in float32 (its rounding).
    dtype: computation dtype (default float64 on the CPU, float32 on a GPU).
    batch_elements: fits per batch are capped so that the Jacobian holds
        about this many numbers (memory).

    isolation_px: detections with another valid detection of their frame
        closer than this (camera px) keep their starting position (status
        `CROWDED`, photons, background, sigma and bound fitted there); None:
        every position is fitted.
    crowded_error_px: per-axis error (px) of the starting positions of
        CROWDED rows with 1, 2, 3, ... neighbours closer than
        ``isolation_px`` (the last entry for that many or more), added in
        quadrature to their bound (`LocalizeParams.crowded_error_px`).
    crowded_error_power: that error scales as (bound /
        `localize.CROWDED_BOUND_REF_PX`) ** power (`localize.crowded_extra`).
    pulled_error_px: that error for PULLED rows (None: the first entry of
        ``crowded_error_px``).
    crowded_error_density: both change with the local density of
        detections (per frame and 100 camera px^2 within +-10 px, over all
        the frames of the call: `localize.local_density`, `FitResult.density`) by these
        factors at `localize.CROWDED_DENSITY_KNOTS` (`localize.density_factor`;
        none: the same at every density).
    crowded_error_sigma_power: and scale as (the row's PSF sigma /
        `localize.CROWDED_SIGMA_REF_PX`) ** power (sigma in camera px).
    crowded_error_sigma_min_px: that sigma taken as at least this
        (`LocalizeParams.crowded_error_sigma_min_px`).
    crowded_error_distance_power: and fall as (the distance to the row's
        nearest other detection, in its PSF sigmas, within
        `localize.CROWDED_DISTANCE_RANGE` / `localize.CROWDED_DISTANCE_REF`)
        ** -power (`localize.distance_factor`, `FitResult.nearest`).
    network_binning: the network saw the frames binned this many camera
        px a side (`napari_dsir.psf`): its error model is read in its own
        pixels (bound and sigma / b, density per 100 of its px^2) and the
        error converted back (x b).
    hold_pulled: free fits that would be flagged `MOVED` or `BAD_FIT` keep
        their starting position and are fitted there with the crowded ones
        (status `PULLED`, reported; ``pulled_error_px`` added to their
        bound). With ``max_group=1`` every detection is then
        fitted alone with its neighbours' light held (none joint).

    chi2_scale: the free fits' uncertainty is scaled by the square root of
        their reduced chi-square where it is above 1 (the PSF's share,
        `_psf_mismatch`, taken out first; as least squares scale a covariance
        by the Birge ratio): residuals the model does not explain, below the
        ``max_chi2_sigma`` test, are mostly light of undetected neighbours,
        which also moves the fit.

    background_shape: (y, x) the background's shape over the frames (any
        scale, > 0: an uneven illumination, `napari_dsir.illumination`);
        each fit's background is its box's mean background times this
        shape there (None: flat over each box). A flat background under a
        slope pulls the fits uphill.

    beyond_frame: a free fit whose window touches the frame's edge may place
        its emitter up to half a window outside the frame (False: within
        its window, in the frame); one that ends outside it by more than
        `BEYOND_BOUNDS` times its uncertainty on that axis has status `BEYOND`
        (an emitter beyond the field of view whose light shines in: its
        fitted values are reported, x or y outside the frame).

    threads: torch CPU threads during the call (restored after; None: leave
        torch's setting). The batched operations are small: on a shared
        2-core machine one thread was 5-70x faster than two
        (benchmarks/results/fit.md).

    Returns a `FitResult` (locs, ok, status): x, y refined (nm), photons
    (photons), background (photons/px), sigma (nm), uncertainty (nm, per axis);
    failed fits keep their initial x, y and get NaN in those columns.
    """
    if threads is not None and int(threads) < 1:
        raise DSIRError(f"threads must be >= 1 (or None), got {threads}")
    on_cpu = not (isinstance(frames_photons, torch.Tensor) and frames_photons.device.type != "cpu")
    before = torch.get_num_threads()
    if threads is not None and on_cpu:
        torch.set_num_threads(int(threads))
    try:
        return _refine(
            frames_photons, locs, pixel_size_nm, camera, first_frame=first_frame, window=window,
            sigma_init_nm=sigma_init_nm, fit_sigma=fit_sigma, sigma_bounds_px=sigma_bounds_px, max_iter=max_iter,
            max_group=max_group, shared_sigma=shared_sigma, min_snr=min_snr, fallback_passes=fallback_passes,
            merge_px=merge_px, tol=tol, dtype=dtype, batch_elements=batch_elements, max_shift_px=max_shift_px,
            max_chi2_sigma=max_chi2_sigma, isolation_px=isolation_px, crowded_error_px=crowded_error_px,
            hold_pulled=hold_pulled, crowded_error_power=crowded_error_power, pulled_error_px=pulled_error_px,
            crowded_error_density=crowded_error_density, crowded_error_sigma_power=crowded_error_sigma_power,
            network_binning=network_binning, chi2_scale=chi2_scale,
            crowded_error_sigma_min_px=crowded_error_sigma_min_px, background_shape=background_shape,
            crowded_error_distance_power=crowded_error_distance_power, beyond_frame=beyond_frame,
        )
    finally:
        if threads is not None and on_cpu:
            torch.set_num_threads(before)


def _refine(
    frames_photons, locs, pixel_size_nm, camera, *, first_frame, window, sigma_init_nm, fit_sigma, sigma_bounds_px,
    max_iter, max_group, shared_sigma, min_snr, fallback_passes, merge_px, tol, dtype, batch_elements,
    max_shift_px=None, max_chi2_sigma=None, isolation_px=None, crowded_error_px=(), hold_pulled=False,
    crowded_error_power=0.0, pulled_error_px=None, crowded_error_density=(), crowded_error_sigma_power=0.0,
    network_binning=1, chi2_scale=False, crowded_error_sigma_min_px=0.0, background_shape=None,
    crowded_error_distance_power=0.0, beyond_frame=False,
) -> FitResult:
    camera = (camera or Camera()).validate()
    if not isinstance(locs, Localizations):
        raise DSIRError(f"expected Localizations, got {type(locs).__name__}")
    if isinstance(frames_photons, np.ndarray):
        if frames_photons.dtype.kind not in "uif":
            raise DSIRError(f"frames must be numbers, got {frames_photons.dtype}")
        frames_photons = torch.from_numpy(np.asarray(frames_photons, dtype=np.float32))
    if not isinstance(frames_photons, torch.Tensor):
        raise DSIRError(f"frames must be a torch tensor or numpy array, got {type(frames_photons).__name__}")
    frames = frames_photons
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3:
        raise DSIRError(f"frames must be (frame, y, x), got shape {tuple(frames_photons.shape)}")
    p = check_pixel_size(pixel_size_nm)
    if int(window) != window or window < 3 or window % 2 == 0:
        raise DSIRError(f"fitting window must be an odd number of pixels >= 3, got {window}")
    window = int(window)
    if not (int(network_binning) == network_binning and network_binning >= 1):
        raise DSIRError(f"network_binning must be an integer >= 1, got {network_binning}")
    F, H, W = frames.shape
    if H < window or W < window:
        raise DSIRError(f"frames of {H}x{W} px are smaller than the {window}x{window} px fitting window")
    s_lo, s_hi = (float(v) for v in sigma_bounds_px)
    if not (0 < s_lo < s_hi and math.isfinite(s_hi)):
        raise DSIRError(f"sigma bounds must be 0 < low < high (px), got {sigma_bounds_px}")
    if int(max_iter) < 1 or int(max_group) < 1 or int(fallback_passes) < 1:
        raise DSIRError("max_iter, max_group and fallback_passes must be >= 1")
    if background_shape is not None:
        background_shape = torch.as_tensor(np.asarray(background_shape, dtype=np.float64))
        if tuple(background_shape.shape) != (H, W):
            raise DSIRError(f"background_shape must be the frames' {H}x{W} px, got {tuple(background_shape.shape)}")
        if not bool(torch.isfinite(background_shape).all() and (background_shape > 0).all()):
            raise DSIRError("background_shape must be finite and > 0 everywhere")

    n = len(locs)
    out_cols = dict(locs.columns())
    if n == 0:
        for c in ("photons", "background", "sigma", "uncertainty"):
            out_cols[c] = np.zeros(0)
        return FitResult(Localizations(locs.frame, locs.x, locs.y, **out_cols), np.zeros(0, bool), np.zeros(0, np.int8),
                         np.zeros(0), np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))

    fr = locs.frame - int(first_frame)
    if fr.min() < 0 or fr.max() >= F:
        raise DSIRError(
            f"localizations refer to frames {locs.frame.min()}..{locs.frame.max()}, but the "
            f"{F} frames given start at frame {first_frame}"
        )

    # ---- initial sigma (px) ---------------------------------------------
    if sigma_init_nm is not None:
        s0 = np.full(n, float(sigma_init_nm) / p)
    elif locs.sigma is not None:
        s0 = locs.sigma / p
    elif fit_sigma:
        s0 = np.ones(n)
    else:
        raise DSIRError("fit_sigma=False needs sigma_init_nm (or a sigma column) for the fixed PSF sigma")
    default_s = float(np.clip(np.nanmedian(s0) if np.isfinite(s0).any() else 1.0, s_lo, s_hi))
    s0 = np.where(np.isfinite(s0), s0, default_s)
    if fit_sigma:
        s0 = np.clip(s0, s_lo + 0.05 * (s_hi - s_lo), s_hi - 0.05 * (s_hi - s_lo))
    elif (s0 <= 0).any():
        raise DSIRError("the fixed PSF sigma must be > 0")

    device = frames.device
    if dtype is None:
        dtype = torch.float64 if device.type == "cpu" else torch.float32
    if tol is None:
        tol = 1e-5 if dtype == torch.float64 else 1e-3
    data_e = frames.to(dtype) * camera.qe  # photoelectrons
    v = camera.read_variance_e
    h = window // 2

    xp, yp = locs.x / p, locs.y / p
    valid = inside(xp, yp, H, W)
    xs_ = np.where(valid, xp, 0.0)
    ys_ = np.where(valid, yp, 0.0)
    wx0 = np.clip(np.floor(xs_).astype(np.int64) - h, 0, W - window)
    wy0 = np.clip(np.floor(ys_).astype(np.int64) - h, 0, H - window)

    duplicate = np.zeros(n, bool)
    if merge_px > 0:
        duplicate = duplicates(fr, xp, yp, valid, float(merge_px), H, locs.intensity)
        valid_start = valid
        valid = valid & ~duplicate
    if isolation_px is not None and not (float(isolation_px) >= 0):
        raise DSIRError(f"isolation_px must be >= 0 (px), got {isolation_px}")
    # one search for the pairs of neighbours that the grouping, the
    # isolation test and the deblending ask for
    pair_radius = max(window, DEBLEND_PX, float(isolation_px or 0.0))
    pairs = frame_pairs(fr, xp, yp, valid, pair_radius, H)
    neighbours = np.zeros(n, np.int64)
    if isolation_px is not None:
        neighbours = count_neighbours(fr, xp, yp, valid, float(isolation_px), H, pairs=pairs)
    held = neighbours > 0
    pulled = np.zeros(n, bool)  # free fits pulled away, then held (hold_pulled)
    free_gof = np.full((n, 3), np.nan)  # the lone free fits' chi-square, dof, signal

    # the camera check counts free fits with no other detection within the
    # pair search's radius (the window, 7 px by default): the others'
    # chi-square also grows with the density (undetected neighbours)
    lonely = valid.copy()
    lonely[pairs[0].ravel()] = False

    def record_free(r):
        """Keep the goodness of fit of the converged free fits of lonely rows ``r``."""
        r = r[conv_out[r] & ~held[r] & lonely[r] & np.isfinite(theta_out[r]).all(-1)]
        free_gof[r] = fit_out[r]
    crowded_error = check_crowded_error(crowded_error_px)
    crowded_error_power = check_crowded_error_power(crowded_error_power)
    density_factors = check_density_factors(crowded_error_density)
    sigma_power = check_crowded_error_power(crowded_error_sigma_power, "crowded_error_sigma_power")
    sigma_min = check_sigma_min(crowded_error_sigma_min_px)
    distance_power = check_crowded_error_power(crowded_error_distance_power, "crowded_error_distance_power")
    density = local_density(locs.x / p, locs.y / p, F, (H, W))
    nearest = nearest_distance(fr, xp, yp, valid, pair_radius, H, pairs=pairs)
    if pulled_error_px is not None:
        check_crowded_error((pulled_error_px,))
    if hold_pulled and max_group == 1:  # every fit alone: all in the staged path below, where pulled ones are held
        joint = np.zeros(n, bool)
    else:
        labels = groups(fr, xp, yp, valid, window, H, pairs=pairs)
        # union boxes of the groups
        ng = labels.max() + 1
        gy0 = np.full(ng, H, np.int64)
        gx0 = np.full(ng, W, np.int64)
        gy1 = np.zeros(ng, np.int64)
        gx1 = np.zeros(ng, np.int64)
        np.minimum.at(gy0, labels, wy0)
        np.minimum.at(gx0, labels, wx0)
        np.maximum.at(gy1, labels, wy0 + window)
        np.maximum.at(gx1, labels, wx0 + window)
        joint = (np.bincount(labels) <= max_group) & ((gy1 - gy0) <= 3 * window) & ((gx1 - gx0) <= 3 * window)
        joint = joint[labels]

    theta_out = np.full((n, 4), np.nan)  # x, y (px), N (e-), s (px)
    b_out = np.full(n, np.nan)
    var_out = np.full((n, 3), np.nan)  # var x, var y (px^2), var N
    conv_out = np.zeros(n, bool)
    fit_out = np.full((n, 3), np.nan)  # chi-square of the residuals, degrees of freedom, signal
    sigma_held = np.zeros(n, bool)  # fitted with the free fits' PSF sigma

    fit_kw = dict(
        data_e=data_e, H=H, W=W, window=window, fit_sigma=fit_sigma, s_lo=s_lo, s_hi=s_hi,
        v=v, max_iter=int(max_iter), tol=float(tol), batch_elements=int(batch_elements),
        shared_sigma=bool(shared_sigma), held=held, quartile=None,
        background_shape=None if background_shape is None else background_shape.to(device=device, dtype=dtype),
        beyond=float(h) if beyond_frame else 0.0,
    )
    init_xy = np.column_stack([xs_, ys_])

    # ---- joint groups ------------------------------------------------------
    sel = valid & joint
    if sel.any():
        lab = labels[sel]
        rows = np.flatnonzero(sel)
        order = np.argsort(lab, kind="stable")
        rows, lab = rows[order], lab[order]
        starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
        sizes = np.diff(np.r_[starts, len(lab)])
        for K in np.unique(sizes):
            gs = starts[sizes == K]
            members = rows[gs[:, None] + np.arange(K)]  # (G, K)
            gl = lab[gs]
            box = np.column_stack([gy0[gl], gx0[gl], gy1[gl] - gy0[gl], gx1[gl] - gx0[gl]])
            res = fit_groups(fr[members[:, 0]], box, members, init_xy, s0, wx0, wy0, None, **fit_kw)
            _store(res, members, theta_out, b_out, var_out, conv_out, fit_out)
            record_free(members.ravel())

    # ---- large groups: each emitter with its nearest neighbours free and
    # the rest of its group held fixed at the current estimates -------------
    sel = valid & ~joint
    if sel.any():
        rows = np.flatnonzero(sel)
        pts = np.column_stack([yp[rows] + fr[rows] * (H + 4.0 * window), xp[rows]])
        k = min(int(max_group), len(rows))
        if k == 1:  # each emitter alone: no search
            dist, nb = np.zeros((len(rows), 1)), np.arange(len(rows))[:, None]
        else:
            dist, nb = cKDTree(pts).query(pts, k=k, distance_upper_bound=window * (1 - 1e-9))
            dist, nb = dist.reshape(len(rows), k), nb.reshape(len(rows), k)
        nb_ok = np.isfinite(dist)  # nearest first; column 0 is the emitter itself
        nk = nb_ok.sum(1)
        # first estimates of everyone's light: the start values (photons
        # from the 3x3 pixels around each start), no iterations
        box1 = np.column_stack([wy0[rows], wx0[rows], np.full((len(rows), 2), window)])
        first = fit_groups(fr[rows], box1, rows[:, None], init_xy, s0, wx0, wy0, None, **{**fit_kw, "max_iter": 0})
        estimate = np.full((n, 4), np.nan)
        estimate[rows] = first[0][:, 0]
        b_first = first[1]
        b_at, cap = b_first, None  # each row's background at its emitter, the frame's quartile's scale there
        if background_shape is not None:
            rel, cap, norm = shape_at(fit_kw["background_shape"], rows, xs_, ys_, wx0, wy0, window)
            b_at = b_first * rel
            frame_q = frame_quartiles(data_e / norm)  # where the shape is at its median
        else:
            frame_q = frame_quartiles(data_e)
        deblend(estimate, b_at, rows, fr, data_e, pairs=pairs[0], frame_quartile=frame_q, cap_scale=cap)
        # each window's lower quartile, for the fits of one emitter in its window
        quartile = np.full(n, np.nan)
        quartile[rows] = b_first
        fit_kw["quartile"] = quartile
        start, s_start = init_xy, s0
        # crowded (held) detections are fitted after the free ones, with the
        # PSF sigma of the free fits (one PSF per block of frames): a sigma
        # fitted beside neighbours whose light is only estimated drifted to
        # its bounds in a third of Bundled Tubes HD's crowded fits

        def fit_stage(stage, kw, s_use, fixed, store=True):
            """Fit the rows of ``stage`` (each with its nearest neighbours, K
            of them); store their results or return their sigma and convergence."""
            sig, cv = [], []
            for K in np.unique(nk[stage]):
                which = np.flatnonzero((nk == K) & stage)
                members = rows[nb[which, :K]]  # (G, K), the emitter first
                gy, gx = wy0[members].min(1), wx0[members].min(1)
                box = np.column_stack([gy, gx, wy0[members].max(1) + window - gy,
                                       wx0[members].max(1) + window - gx])
                theta, bb, var, conv, gof = fit_groups(
                    fr[members[:, 0]], box, members, start, s_use, wx0, wy0, fixed, **kw
                )
                if store:
                    own = (theta[:, :1], bb, var[:, :1], conv, gof)
                    _store(own, members[:, :1], theta_out, b_out, var_out, conv_out, fit_out)
                sig.append(theta[:, 0, 3])
                cv.append(conv)
            return np.concatenate(sig), np.concatenate(cv)

        for _ in range(fallback_passes):
            stages = [~held[rows], held[rows]]
            for si in range(2):
                stage = stages[si]
                if not stage.any():
                    continue
                kw, s_use = fit_kw, s_start
                if si == 1 and fit_sigma:
                    s_free = theta_out[:, 3][conv_out & ~held]
                    s_psf = _psf_sigma(s_free, s_lo, s_hi)
                    if s_psf is None:  # too few free fits (a crowded block): the held ones' own sigma,
                        # from the least crowded and brightest few hundred of them
                        cand = np.flatnonzero(stage)
                        cand = cand[np.lexsort((-np.nan_to_num(estimate[rows[cand], 2]), neighbours[rows[cand]]))]
                        sub = np.zeros_like(stage)
                        sub[cand[:PSF_FITS]] = True
                        held_s, held_conv = fit_stage(sub, fit_kw, s_start, FixedLight(
                            estimate, rows, fr, wx0, wy0, window, data_e, rows[np.unique(nb[sub][nb_ok[sub]])]), False)
                        s_psf = _psf_sigma(held_s[held_conv], s_lo, s_hi)
                    if s_psf is None:
                        s_psf = float(np.median(s_start[held]))
                    s_use = np.where(held, s_psf, s_start)
                    kw = {**fit_kw, "fit_sigma": False}
                    sigma_held[rows[stage]] = True
                    # the held neighbours' light too is that PSF's: their
                    # photons shared again with it, the free fits' kept
                    estimate[rows[stage], 3] = s_psf
                    deblend(estimate, b_at, rows, fr, data_e, update=held[rows], pairs=pairs[0],
                             frame_quartile=frame_q, cap_scale=cap)
                # the rows whose fits ask for light: the stage's and their neighbours in its groups
                near = rows[stage] if k == 1 else rows[np.unique(nb[stage][nb_ok[stage]])]
                fit_stage(stage, kw, s_use, FixedLight(estimate, rows, fr, wx0, wy0, window, data_e, near))
                if si == 0:
                    record_free(rows[stage])
                if si == 0 and hold_pulled:
                    # free fits pulled away (by an undetected neighbour,
                    # light from outside the frame): held at their start
                    # with the crowded ones
                    r0 = rows[stage]
                    mm = _psf_mismatch(free_gof, camera.excess_noise)
                    bad = _moved(theta_out[r0], xs_[r0], ys_[r0], wx0[r0], wy0[r0], window, max_shift_px)
                    bad |= _unexplained(fit_out[r0], camera.excess_noise, max_chi2_sigma, mm)
                    bad &= np.isfinite(theta_out[r0]).all(-1)
                    if beyond_frame:  # an emitter outside the frame: status BEYOND, not pulled
                        c2 = _chi2_ratio(fit_out[r0], camera.excess_noise, mm) if chi2_scale else None
                        bad &= ~(conv_out[r0] & _beyond(theta_out[r0], var_out[r0], camera.excess_noise, H, W, c2))
                    held[r0[bad]] = pulled[r0[bad]] = True
                    theta_out[r0[bad]] = np.nan
                    stages[1] = held[rows]
                good = np.isfinite(theta_out[rows]).all(-1)
                estimate[rows[good]] = theta_out[rows[good]]
            start = np.where(np.isfinite(estimate[:, :2]), estimate[:, :2], init_xy)
            s_start = np.where(np.isfinite(estimate[:, 3]), estimate[:, 3], s0)

    # ---- status ------------------------------------------------------------
    status = np.full(n, OK, np.int8)
    finite = np.isfinite(theta_out).all(-1) & np.isfinite(b_out) & np.isfinite(var_out).all(-1) & (var_out >= 0).all(-1)
    moved = _moved(theta_out, xs_, ys_, wx0, wy0, window, max_shift_px)
    s_bound = fit_sigma & ~sigma_held & ((theta_out[:, 3] <= s_lo + 1e-3) | (theta_out[:, 3] >= s_hi - 1e-3))
    excess = camera.excess_noise
    with np.errstate(invalid="ignore"):
        sd_n = np.sqrt(excess * var_out[:, 2])
        unc_px = np.sqrt(excess * 0.5 * (var_out[:, 0] + var_out[:, 1]))
        dim = (theta_out[:, 2] <= N_MIN * (1 + 1e-3)) | (theta_out[:, 2] < min_snr * sd_n)
        # a precision wider than half the window: the data do not locate a spot
        dim |= unc_px > h
    status[~conv_out] = NOT_CONVERGED
    # held (crowded) fits model their neighbours only roughly: the test is for free fits
    mismatch = _psf_mismatch(free_gof, excess)
    status[_unexplained(fit_out, excess, max_chi2_sigma, mismatch) & ~held] = BAD_FIT
    status[dim] = DIM
    status[s_bound] = SIGMA_AT_BOUND
    status[moved & ~held] = MOVED  # held positions are their starts (on the window's edge at the frame's)
    chi2 = _chi2_ratio(fit_out, excess, mismatch)  # each row's own fit (`FitResult.chi2`)
    beyond = np.zeros(n, bool)
    if beyond_frame:
        beyond = ~held & finite & conv_out & _beyond(theta_out, var_out, excess, H, W, chi2 if chi2_scale else None)
    status[beyond] = BEYOND
    status[~finite] = NON_FINITE
    status[~valid] = OUTSIDE
    if merge_px > 0:
        status[duplicate & valid_start] = DUPLICATE
    status[(status == OK) & held] = CROWDED
    status[(status == CROWDED) & pulled] = PULLED
    ok = status == OK
    rep = np.isin(status, REPORTED)
    if chi2_scale:
        unc_px = np.where(ok, unc_px * np.sqrt(np.maximum(chi2, 1.0)), unc_px)
    if len(crowded_error):
        # the network's error model in its own pixels (b camera px a side)
        nb = float(network_binning)
        sg, bound, dens, near = theta_out[:, 3] / nb, unc_px / nb, density * nb**2, nearest / nb
        extra = nb * crowded_extra(crowded_error, crowded_error_power, neighbours, bound, dens, density_factors, sg,
                                   sigma_power, sigma_min, near, distance_power)
        if pulled_error_px is not None:
            pl = status == PULLED
            extra[pl] = nb * crowded_extra((pulled_error_px,), crowded_error_power, 1, bound[pl], dens[pl],
                                           density_factors, sg[pl], sigma_power, sigma_min, near[pl], distance_power)
        extra = np.where(np.isin(status, (CROWDED, PULLED)), extra, 0.0)
        unc_px = np.sqrt(unc_px**2 + extra**2)

    nan = np.full(n, np.nan)
    out_cols.update(
        photons=np.where(rep, theta_out[:, 2] / camera.qe, nan),
        background=np.where(rep, b_out / camera.qe, nan),
        sigma=np.where(rep, theta_out[:, 3] * p, nan),
        uncertainty=np.where(rep, unc_px * p, nan),
    )
    out = Localizations(
        locs.frame.copy(),
        np.where(ok | beyond, theta_out[:, 0] * p, locs.x),
        np.where(ok | beyond, theta_out[:, 1] * p, locs.y),
        **out_cols,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        free_chi2 = free_gof[:, 0] / excess / free_gof[:, 1]
        # the camera check counts the fits that a PSF's mismatch leaves alone
        free_chi2[mismatch * free_gof[:, 2] > 0.5 * np.sqrt(2 * free_gof[:, 1])] = np.nan
    return FitResult(out, ok, status, free_chi2, neighbours, density, nearest, chi2)


def _beyond(theta, var, excess, H, W, chi2=None):
    """Fits (theta: x, y, ... px; var: var x, var y, ...) whose position is
    outside the H x W px frame by more than `BEYOND_BOUNDS` times their bound
    on that axis (an EMCCD's ``excess`` noise included; given their reduced
    chi-square ``chi2`` (`_chi2_ratio`), times its square root above 1, as
    their reported uncertainty with ``chi2_scale``)."""
    with np.errstate(invalid="ignore"):
        scale = 1.0 if chi2 is None else np.sqrt(np.maximum(np.nan_to_num(chi2, nan=1.0), 1.0))
        sx, sy = scale * np.sqrt(excess * var[:, 0]), scale * np.sqrt(excess * var[:, 1])
        x, y = theta[:, 0], theta[:, 1]
        k = BEYOND_BOUNDS
        return (x < -k * sx) | (x > W + k * sx) | (y < -k * sy) | (y > H + k * sy)


def _moved(theta, xs, ys, wx0, wy0, window, max_shift_px):
    """Fits (theta: x, y, ... px) that left their window, ended on its edge
    or farther than ``max_shift_px`` from their start (xs, ys)."""
    h, eps = window // 2, 1e-6
    with np.errstate(invalid="ignore"):
        out = (np.abs(theta[:, 0] - xs) > h - 0.5) | (np.abs(theta[:, 1] - ys) > h - 0.5)
        if max_shift_px is not None:
            out |= np.hypot(theta[:, 0] - xs, theta[:, 1] - ys) > float(max_shift_px)
        out |= ((theta[:, 0] <= wx0 + eps) | (theta[:, 0] >= wx0 + window - eps)
                | (theta[:, 1] <= wy0 + eps) | (theta[:, 1] >= wy0 + window - eps))
    return out


def _unexplained(gof, excess, max_chi2_sigma, mismatch=0.0):
    """Fits whose Pearson chi-square (``gof``: chi-square, degrees of freedom,
    signal), less the PSF's share (``mismatch`` times the signal,
    `_psf_mismatch`), exceeds its degrees of freedom by more than
    ``max_chi2_sigma`` standard deviations (none when it is None)."""
    if max_chi2_sigma is None:
        return np.zeros(len(gof), bool)
    lam = mismatch * gof[:, 2]  # the PSF's share: a non-central chi-square, variance 2 (dof + 2 lam)
    chi2, dof = gof[:, 0] / excess - lam, gof[:, 1]
    with np.errstate(invalid="ignore"):
        return chi2 > dof + float(max_chi2_sigma) * np.sqrt(2.0 * np.maximum(dof, 1.0) + 4.0 * lam)


def _chi2_ratio(gof, excess, mismatch=0.0):
    """Reduced chi-square of fits (``gof``: chi-square, degrees of freedom,
    signal) less the PSF's share (`_unexplained`); NaN where not fitted."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (gof[:, 0] / excess - mismatch * gof[:, 2]) / gof[:, 1]


#: lone free fits `_psf_mismatch` needs, and the span of their signals
#: (median of the brightest third / median of the dimmest third)
MISMATCH_FITS = 30
MISMATCH_SPAN = 3.0


def _psf_mismatch(gof, excess) -> float:
    """How far the PSF is from the model's Gaussian: the growth of the
    chi-square excess with the signal (``gof``: chi-square, degrees of
    freedom, signal per row, NaN where none), >= 0; 0 with fewer than
    `MISMATCH_FITS` fits or where their signals span less than
    `MISMATCH_SPAN`.

    A PSF that is not Gaussian (a real objective's Airy pattern, aberrations)
    leaves residuals in proportion to the light: chi-square excess = mismatch
    x signal (signal: sum of light^2 / variance over the box), about 10x the
    degrees of freedom in fits of 20,000 photons of an Airy PSF. The slope
    between the dimmest and the brightest third of the fits (medians, less
    twice the noise of their difference) measures it; a camera whose
    variance is off (a wrong sensitivity) raises every fit's excess alike,
    and so does an undetected neighbour on average: neither has a slope."""
    g = gof[np.isfinite(gof).all(-1) & (gof[:, 2] > 0) & (gof[:, 1] > 0)]
    if len(g) < MISMATCH_FITS:
        return 0.0
    g = g[np.argsort(g[:, 2])]
    third = len(g) // 3
    dim, bright = g[:third], g[-third:]
    s_dim, s_bright = np.median(dim[:, 2]), np.median(bright[:, 2])
    if s_bright < MISMATCH_SPAN * s_dim:
        return 0.0
    e_dim, e_bright = (t[:, 0] / excess - t[:, 1] for t in (dim, bright))
    # the difference of the medians less twice its noise (the standard error
    # of a median: 1.25 sd / sqrt(n), the sd from the MAD): no slope from noise
    rise = np.median(e_bright) - np.median(e_dim)
    noise = 1.25 * 1.4826 / math.sqrt(third) * math.hypot(_mad(e_dim), _mad(e_bright))
    return max(0.0, float((rise - 2.0 * noise) / (s_bright - s_dim)))


def _mad(x):
    return float(np.median(np.abs(x - np.median(x))))


#: fits whose sigma says what the PSF of a block of frames is
MIN_PSF_FITS = 20
#: crowded detections fitted with a free sigma for a block's PSF when it has
#: fewer than `MIN_PSF_FITS` free fits (the least crowded, brightest first)
PSF_FITS = 200


def _psf_sigma(sigmas, s_lo, s_hi):
    """The PSF sigma (px) of a block of frames: the median of converged fits'
    ``sigmas`` inside their bounds, None when fewer than `MIN_PSF_FITS`."""
    with np.errstate(invalid="ignore"):
        s = sigmas[np.isfinite(sigmas) & (sigmas > s_lo + 1e-3) & (sigmas < s_hi - 1e-3)]
    return float(np.median(s)) if len(s) >= MIN_PSF_FITS else None


def _store(res, members, theta_out, b_out, var_out, conv_out, fit_out):
    theta, b, var, conv, gof = res
    theta_out[members] = theta
    b_out[members] = b[:, None]
    var_out[members] = var
    conv_out[members] = conv[:, None]
    fit_out[members] = gof[:, None, :]

"""Refinement of detections on the raw frames: batched Poisson maximum likelihood.

Each detection (an initial position, e.g. a peak of the network's output) is
fitted on the camera frame it came from, in a ``window`` x ``window`` pixel box
around it, with an integrated Gaussian PSF (erf over each pixel), as
ThunderSTORM, Picasso and Gpufit do (Smith et al. 2010, Nat Methods 7:373):

    mu(pixel) = b + sum_k N_k * PSF(pixel; x_k, y_k, s_k)        (photoelectrons)

The Poisson negative log-likelihood is minimised with Levenberg-Marquardt
(Fisher-scoring Hessian, Laurence & Chromy 2010), vectorised in torch over all
fits of a batch (CPU or GPU; no Python loop per spot). Parameters are bounded:
each position stays in its own window, ``N >= 1`` e-, ``b >= 0``, ``s`` in
``sigma_bounds_px``.

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
share the light of overlapping detections among them (`_deblend`), and
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
}

#: statuses whose photons, background, sigma and uncertainty are reported
#: (the others get NaN); only `OK` fits move the position
REPORTED = (OK, CROWDED, PULLED)

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
_N_MIN = 1.0  # photoelectrons, lower bound of N


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
        "failed": failed,
        "median_photons": median(None if locs is None else locs.photons),
        "median_uncertainty_nm": median(None if locs is None else locs.uncertainty),
    }


def fit_summary(report: dict) -> str:
    """One line of `fit_report`: medians, then the fits per kind."""
    n_failed = sum(report["failed"].values())
    return (f"median {report['median_photons']:.0f} photons, median uncertainty "
            f"{report['median_uncertainty_nm']:.1f} nm; {report['free']} free fits, {report['crowded']} "
            f"at the network's position (crowded), {report.get('pulled', 0)} at the network's position "
            f"(fit pulled away), {n_failed} failed")


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
# the model


def _axis_terms(edges_lo, centre, s, derivatives=True):
    """Per-axis integrated Gaussian: fraction of the PSF in each pixel and its
    derivatives by the centre and by sigma. edges_lo (G, 1, n), centre and s
    (G, K, 1) in px -> three (G, K, n); the fraction alone when not
    ``derivatives``."""
    inv_s = 1.0 / s
    u_lo = (edges_lo - centre) * inv_s
    u_hi = u_lo + inv_s
    if not derivatives:
        return 0.5 * (torch.erf(u_hi / _SQRT2) - torch.erf(u_lo / _SQRT2))
    g_lo = torch.exp(-0.5 * u_lo * u_lo)
    g_hi = torch.exp(-0.5 * u_hi * u_hi)
    a = 0.5 * (torch.erf(u_hi / _SQRT2) - torch.erf(u_lo / _SQRT2))
    c = _INV_SQRT2PI * inv_s
    return a, c * (g_lo - g_hi), c * (u_lo * g_lo - u_hi * g_hi)


def _model(theta, K, ns, s_fixed, ex_lo, ey_lo, extra, jac=True, bshape=None):
    """mu (G, npix) and J (G, P, npix) of K emitters + background.

    theta (G, P) = [x_1..x_K, y_1..y_K, N_1..N_K, sigmas, b], px and e-, with
    ns sigmas: K (one per emitter), 1 (shared) or 0 (fixed: ``s_fixed`` (G, K)).
    ``bshape`` (G, npix): the background's shape over each box (b times it;
    None: flat).
    """
    G = theta.shape[0]
    xs = theta[:, 0:K, None]
    ys = theta[:, K : 2 * K, None]
    nph = theta[:, 2 * K : 3 * K]
    if ns == K:
        ss = theta[:, 3 * K : 4 * K, None]
    elif ns == 1:
        ss = theta[:, 3 * K : 3 * K + 1, None].expand(G, K, 1)
    else:
        ss = s_fixed[:, :, None]
    b = theta[:, -1]
    ax, dax, dasx = _axis_terms(ex_lo, xs, ss)  # (G, K, BW)
    ay, day, dasy = _axis_terms(ey_lo, ys, ss)  # (G, K, BH)
    psf = ay[:, :, :, None] * ax[:, :, None, :]  # (G, K, BH, BW)
    if bshape is None:
        mu = b[:, None, None] + (nph[:, :, None, None] * psf).sum(1)
    else:
        mu = (b[:, None] * bshape).reshape(psf.shape[0], *psf.shape[2:]) + (nph[:, :, None, None] * psf).sum(1)
    if extra is not None:
        mu = mu + extra
    mu = mu.reshape(G, -1)
    if not jac:
        return mu, None
    n4 = nph[:, :, None, None]
    parts = [
        n4 * ay[:, :, :, None] * dax[:, :, None, :],
        n4 * day[:, :, :, None] * ax[:, :, None, :],
        psf,
    ]
    parts = [q.reshape(G, K, -1) for q in parts]
    if ns:
        js = n4 * (dasy[:, :, :, None] * ax[:, :, None, :] + ay[:, :, :, None] * dasx[:, :, None, :])
        js = js.reshape(G, K, -1)
        parts.append(js if ns == K else js.sum(1, keepdim=True))
    J = torch.cat(parts + [(torch.ones_like(mu) if bshape is None else bshape)[:, None, :]], dim=1)
    return mu, J


def _data_log_data(data):
    """``data * log(data)`` (0 where data is 0): the constant part of `_nll`."""
    return torch.where(data > 0, data * torch.log(torch.clamp(data, min=1e-9)), torch.zeros_like(data))


def _nll(mu, data, mask, v, dlogd=None):
    """Poisson negative log-likelihood less its value at mu = data (half the
    deviance: small numbers near the optimum, stable in float32); ``dlogd``:
    `_data_log_data` of ``data``, when the caller has it."""
    m = torch.clamp(mu + v, min=1e-9)
    if dlogd is None:
        dlogd = _data_log_data(data)
    return (mask * (m - data - data * torch.log(m) + dlogd)).sum(-1)


# --------------------------------------------------------------------------
# one batch of groups of K emitters


def _fit_batch(data, mask, ex_lo, ey_lo, extra, init, lo, hi, K, ns, s_fixed, v, max_iter, tol, bshape=None):
    """LM on G groups. data, mask (G, npix) e-; init/lo/hi (G, P); ``bshape``: see `_model`.
    Returns theta (G, P), converged (G,), Fisher information (G, P, P).
    Converged groups leave the working set (it shrinks as they converge)."""
    G, P = init.shape
    dev, dt = init.device, init.dtype
    d_all = torch.clamp(data + v, min=0.0)
    theta_out = init.clone()
    conv = torch.zeros(G, dtype=torch.bool, device=dev)
    eye = torch.eye(P, dtype=dt, device=dev)
    # the working set
    ids = torch.arange(G, device=dev)
    th, d, mk, exl, eyl, lo_, hi_ = init.clone(), d_all, mask, ex_lo, ey_lo, lo, hi
    ext, sf, dld, bs = extra, s_fixed, _data_log_data(d_all), bshape
    mu, J = _model(th, K, ns, sf, exl, eyl, ext, bshape=bs)
    nll = _nll(mu, d, mk, v, dld)
    lam = torch.full((G,), 1e-3, dtype=dt, device=dev)
    fin = torch.zeros(G, dtype=torch.bool, device=dev)  # converged, results stored
    for _ in range(max_iter):
        mv = torch.clamp(mu + v, min=1e-9)
        grad = (J * (mk * (1.0 - d / mv))[:, None, :]).sum(-1)
        Hs = (J * (mk / mv)[:, None, :]) @ J.transpose(1, 2)
        diag = torch.diagonal(Hs, dim1=1, dim2=2)
        A = Hs + (lam[:, None] * diag + 1e-12 * (diag.abs().amax(-1, keepdim=True) + 1.0))[:, :, None] * eye
        step, info = torch.linalg.solve_ex(A, -grad[:, :, None])
        step = torch.where((info == 0)[:, None], step[:, :, 0], torch.zeros_like(grad))
        step = torch.nan_to_num(step, nan=0.0, posinf=0.0, neginf=0.0)
        cand = torch.minimum(torch.maximum(th + step, lo_), hi_)
        # convergence: the (bounded) proposed step would lower the negative
        # log-likelihood by less than tol (Newton decrement; a step of about
        # sqrt(2 tol) standard deviations), at mild damping
        done = (-(grad * (cand - th)).sum(-1) <= tol) & (lam <= 1.0) & ~fin
        mu_c, J_c = _model(cand, K, ns, sf, exl, eyl, ext, bshape=bs)
        nll_c = _nll(mu_c, d, mk, v, dld)
        acc = torch.isfinite(nll_c) & (nll_c <= nll) & torch.isfinite(cand).all(-1) & ~fin
        th = torch.where(acc[:, None], cand, th)
        mu = torch.where(acc[:, None], mu_c, mu)
        J = torch.where(acc[:, None, None], J_c, J)
        nll = torch.where(acc, nll_c, nll)
        lam = torch.where(acc, torch.clamp(lam * 0.1, min=1e-7), torch.clamp(lam * 10.0, max=1e10))
        if done.any():
            theta_out[ids[done]] = th[done]
            conv[ids[done]] = True
            fin |= done
            # finished groups stay (unchanged) until they are a fifth of the
            # working set: each shrink costs as much as an iteration of a few groups
            if int(fin.sum()) >= max(1, len(ids) // 5):
                keep = ~fin
                ids, th, d, mk, exl, eyl, lo_, hi_, dld = (t[keep] for t in (ids, th, d, mk, exl, eyl, lo_, hi_, dld))
                mu, J, nll, lam, fin = mu[keep], J[keep], nll[keep], lam[keep], fin[keep]
                ext = None if ext is None else ext[keep]
                sf = None if sf is None else sf[keep]
                bs = None if bs is None else bs[keep]
                if ids.numel() == 0:
                    break
    ids, th = ids[~fin], th[~fin]
    theta_out[ids] = th
    mu, J = _model(theta_out, K, ns, s_fixed, ex_lo, ey_lo, extra, bshape=bshape)
    mv = torch.clamp(mu + v, min=1e-9)
    fisher = (J * (mask / mv)[:, None, :]) @ J.transpose(1, 2)
    # goodness of fit: Pearson chi-square of the residuals (data and model
    # offset by the read-noise variance, as in the likelihood)
    chi2 = (mask * (d_all - mv) ** 2 / mv).sum(-1)
    return theta_out, conv, fisher, chi2


def _fit_amplitudes(data, mask, ex_lo, ey_lo, extra, init, s_fixed, v, max_iter, tol, bshape=None):
    """Photons and background of G single emitters whose position and sigma
    are held (theta = [x, y, N, b]): the expected counts are linear in N and
    b, so Fisher scoring (iteratively reweighted least squares, a 2x2 solve
    per fit, halving a step that would raise the negative log-likelihood)
    reaches the Poisson MLE in a few iterations, for a fraction of the cost
    of `_fit_batch`; converged fits leave the working set (in steps of a
    fifth of it). Returns what `_fit_batch` returns, the Fisher information
    over all four parameters (for the position's bound). ``bshape``: see `_model`.

    Each iteration passes over the pixels a few times: its sums are dot
    products (einsum) of 1/mu and data/mu with the PSF, its square and the
    background's shape; a step's change of the negative log-likelihood is
    that of sum(mu), linear in N and b, less data . (log mu' - log mu)
    (small terms near the optimum: exact enough in float32, where the
    likelihood's own value is not)."""
    G = init.shape[0]
    unit = init.clone()
    unit[:, 2], unit[:, 3] = 1.0, 0.0
    # (G, npix), sums to <= 1; and the derivatives of mu by x, y, N, b for N = 1 (x and y scale with N)
    psf_all, j_unit = _model(unit, 1, 0, s_fixed, ex_lo, ey_lo, None, bshape=bshape)
    d_all = torch.clamp(data + v, min=0.0)
    n_out, b_out = init[:, 2].clone(), init[:, 3].clone()
    conv_out = torch.zeros(G, dtype=torch.bool, device=init.device)
    mk = None if bool((mask > 0).all()) else mask  # None when every pixel counts (the usual case)
    # the working set; pixels outside the mask count as data 0 and weight 0
    ids, n_ph, b = torch.arange(G, device=init.device), n_out.clone(), b_out.clone()
    psf, bs = psf_all, bshape  # the background's shape (None: flat)
    d = d_all if mk is None else mk * d_all
    psf2 = psf * psf if mk is None else mk * psf * psf
    base = v if extra is None else extra.reshape(G, -1) + v  # light held fixed, with the read-noise offset
    dot = _dot
    s_p = psf.sum(-1) if mk is None else dot(mk, psf)
    if bs is None:
        s_1 = torch.full_like(n_ph, psf.shape[1]) if mk is None else mk.sum(-1)
    else:
        s_1 = bs.sum(-1) if mk is None else dot(mk, bs)
    conv = torch.zeros_like(ids, dtype=torch.bool)

    def expected(n_, b_, i=slice(None)):  # log(mu + v) and mu + v (data's offset; clamped) of working rows i
        bb = b_[:, None] if bs is None else b_[:, None] * bs[i]
        m_ = torch.addcmul(bb + (base if extra is None else base[i]), n_[:, None], psf[i]).clamp_(min=1e-9)
        return m_, torch.log(m_)

    def change(dn, db, lm_new, lm_old, i=slice(None)):  # of `_nll` by a step of dn, db
        return dn * s_p[i] + db * s_1[i] - dot(d[i], lm_new - lm_old)

    m, lm = expected(n_ph, b)
    for it in range(max_iter):
        w = torch.reciprocal(m) if mk is None else mk / m
        r = d * w
        g_n, h_nn = s_p - dot(r, psf), dot(w, psf2)
        if bs is None:
            g_b, h_nb, h_bb = s_1 - r.sum(-1), dot(w, psf), w.sum(-1)
        else:
            g_b, h_nb, h_bb = s_1 - dot(r, bs), dot(w * psf, bs), dot(w * bs, bs)
        det = torch.clamp(h_nn * h_bb - h_nb * h_nb, min=1e-30)
        step_n = -(h_bb * g_n - h_nb * g_b) / det
        step_b = -(h_nn * g_b - h_nb * g_n) / det
        new_n = torch.clamp(n_ph + step_n, min=_N_MIN)
        new_b = torch.clamp(b + step_b, min=0.0)
        m_new, lm_new = expected(new_n, new_b)
        delta = change(new_n - n_ph, new_b - b, lm_new, lm)
        better = torch.isfinite(delta) & (delta <= 0)
        if not bool(better.all()):  # half the step, on those rows only
            i = torch.nonzero(~better)[:, 0]
            half_n = torch.clamp(n_ph[i] + 0.5 * step_n[i], min=_N_MIN)
            half_b = torch.clamp(b[i] + 0.5 * step_b[i], min=0.0)
            m_half, lm_half = expected(half_n, half_b, i)
            ok = change(half_n - n_ph[i], half_b - b[i], lm_half, lm[i], i)
            ok = torch.isfinite(ok) & (ok <= 0)
            new_n[i], new_b[i], better[i] = half_n, half_b, ok
            m_new[i] = torch.where(ok[:, None], m_half, m[i])  # rows that stay keep their mu
            lm_new[i] = torch.where(ok[:, None], lm_half, lm[i])
        decrement = -(g_n * (new_n - n_ph) + g_b * (new_b - b))
        n_ph, b = torch.where(better, new_n, n_ph), torch.where(better, new_b, b)
        m, lm = m_new, lm_new
        conv |= (decrement <= tol) | ~better
        if it + 1 < max_iter and int(conv.sum()) >= max(1, len(ids) // 5):
            n_out[ids[conv]], b_out[ids[conv]] = n_ph[conv], b[conv]
            conv_out[ids[conv]] = True
            keep = ~conv
            ids, n_ph, b, m, lm, s_p, s_1, conv = (t[keep] for t in (ids, n_ph, b, m, lm, s_p, s_1, conv))
            psf, psf2, d = psf[keep], psf2[keep], d[keep]
            bs = None if bs is None else bs[keep]
            mk = None if mk is None else mk[keep]
            base = base if extra is None else base[keep]
            if ids.numel() == 0:
                break
    n_out[ids], b_out[ids] = n_ph, b
    conv_out[ids] = conv
    theta = init.clone()
    theta[:, 2], theta[:, 3] = n_out, b_out
    mu = torch.addcmul(b_out[:, None] * (1.0 if bshape is None else bshape), n_out[:, None], psf_all)
    if extra is not None:
        mu = mu + extra.reshape(G, -1)
    mv = torch.clamp(mu + v, min=1e-9)
    # the information of N = 1, its x and y rows and columns scaled by N after
    fisher = (j_unit * (mask / mv)[:, None, :]) @ j_unit.transpose(1, 2)
    scale = torch.ones_like(init)
    scale[:, :2] = n_out[:, None]
    fisher = fisher * scale[:, :, None] * scale[:, None, :]
    chi2 = (mask * (d_all - mv) ** 2 / mv).sum(-1)
    return theta, conv_out, fisher, chi2


def _dot(a, b):
    """Row-wise dot product of two (G, n) tensors -> (G,) (one pass: a third
    less time than (a * b).sum(-1) on the CPU)."""
    return torch.einsum("gn,gn->g", a, b)


# --------------------------------------------------------------------------
# grouping


def _inside(xp, yp, H, W):
    """Positions (px) that are finite and in the frame; its far edge counts
    as inside (the localizer's sub-pixel offsets reach it from the last pixel)."""
    with np.errstate(invalid="ignore"):
        return np.isfinite(xp) & np.isfinite(yp) & (xp >= 0) & (xp <= W) & (yp >= 0) & (yp <= H)


def frame_pairs(f, xp, yp, valid, radius, H):
    """The pairs of valid detections of one frame at most ``radius`` apart
    (frames ``f``; positions ``xp``, ``yp`` with 0 <= yp <= ``H``, in any one
    unit, camera px here): (m, 2) row indices (first < second) and their
    distances (m,). One tree search for all the frames."""
    ii = np.flatnonzero(valid)
    if len(ii) < 2 or not radius > 0:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    pts = np.column_stack([yp[ii] + f[ii] * (H + 2.0 * radius + 1.0), xp[ii]])
    local = cKDTree(pts).query_pairs(r=radius, output_type="ndarray").reshape(-1, 2)
    dist = np.hypot(*(pts[local[:, 0]] - pts[local[:, 1]]).T)
    return ii[local], dist


def _groups(f, xp, yp, valid, window, H, pairs=None):
    """Group label per detection: connected components of the valid
    detections of one frame closer than ``window`` px (each invalid one
    alone). ``pairs``: `frame_pairs` of these detections at a radius >= window."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(f)
    pairs, dist = frame_pairs(f, xp, yp, valid, window, H) if pairs is None else pairs
    pairs = pairs[dist < window * (1 - 1e-9)]
    if not len(pairs):
        return np.arange(n)
    adj = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    return connected_components(adj, directed=False)[1]


def _duplicates(f, xp, yp, valid, merge_px, H, strength):
    """Detections of one frame closer than ``merge_px`` (chains included) that
    are not the strongest of their chain (``strength``, else the first)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    out = np.zeros(len(f), bool)
    pairs, _ = frame_pairs(f, xp, yp, valid, merge_px, H)
    if not len(pairs):
        return out
    ii = np.flatnonzero(valid)
    adj = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(f), len(f)))
    lab = connected_components(adj, directed=False)[1][ii]
    key = np.zeros(len(ii)) if strength is None else -np.nan_to_num(strength[ii], nan=-np.inf)
    order = np.lexsort((np.arange(len(ii)), key, lab))  # by chain, strongest first
    first = np.r_[True, lab[order][1:] != lab[order][:-1]]
    out[ii[order[~first]]] = True
    return out


def _neighbours(f, xp, yp, valid, radius, H, pairs=None):
    """Number of other valid detections of its frame closer than ``radius``
    px, per detection. ``pairs``: `frame_pairs` of these detections at a radius
    >= ``radius``."""
    out = np.zeros(len(f), np.int64)
    if radius <= 0:
        return out
    pairs, dist = frame_pairs(f, xp, yp, valid, radius, H) if pairs is None else pairs
    np.add.at(out, pairs[dist <= radius].ravel(), 1)
    return out


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
                         np.zeros(0), np.zeros(0, np.int64), np.zeros(0))

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
    valid = _inside(xp, yp, H, W)
    xs_ = np.where(valid, xp, 0.0)
    ys_ = np.where(valid, yp, 0.0)
    wx0 = np.clip(np.floor(xs_).astype(np.int64) - h, 0, W - window)
    wy0 = np.clip(np.floor(ys_).astype(np.int64) - h, 0, H - window)

    duplicate = np.zeros(n, bool)
    if merge_px > 0:
        duplicate = _duplicates(fr, xp, yp, valid, float(merge_px), H, locs.intensity)
        valid_start = valid
        valid = valid & ~duplicate
    if isolation_px is not None and not (float(isolation_px) >= 0):
        raise DSIRError(f"isolation_px must be >= 0 (px), got {isolation_px}")
    # one search for the pairs of neighbours that the grouping, the
    # isolation test and the deblending ask for
    pairs = frame_pairs(fr, xp, yp, valid, max(window, _DEBLEND_PX, float(isolation_px or 0.0)), H)
    neighbours = np.zeros(n, np.int64)
    if isolation_px is not None:
        neighbours = _neighbours(fr, xp, yp, valid, float(isolation_px), H, pairs=pairs)
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
    density = local_density(locs.x / p, locs.y / p, F, (H, W))
    if pulled_error_px is not None:
        check_crowded_error((pulled_error_px,))
    if hold_pulled and max_group == 1:  # every fit alone: all in the staged path below, where pulled ones are held
        joint = np.zeros(n, bool)
    else:
        labels = _groups(fr, xp, yp, valid, window, H, pairs=pairs)
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
            res = _fit_groups(fr[members[:, 0]], box, members, init_xy, s0, wx0, wy0, None, **fit_kw)
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
        first = _fit_groups(fr[rows], box1, rows[:, None], init_xy, s0, wx0, wy0, None, **{**fit_kw, "max_iter": 0})
        estimate = np.full((n, 4), np.nan)
        estimate[rows] = first[0][:, 0]
        b_first = first[1]
        b_at, cap = b_first, None  # each row's background at its emitter, the frame's quartile's scale there
        if background_shape is not None:
            rel, cap, norm = _shape_at(fit_kw["background_shape"], rows, xs_, ys_, wx0, wy0, window)
            b_at = b_first * rel
            frame_q = _frame_quartile(data_e / norm)  # where the shape is at its median
        else:
            frame_q = _frame_quartile(data_e)
        _deblend(estimate, b_at, rows, fr, data_e, pairs=pairs[0], frame_quartile=frame_q, cap_scale=cap)
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
                theta, bb, var, conv, gof = _fit_groups(
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
                        held_s, held_conv = fit_stage(sub, fit_kw, s_start, _Fixed(
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
                    _deblend(estimate, b_at, rows, fr, data_e, update=held[rows], pairs=pairs[0],
                             frame_quartile=frame_q, cap_scale=cap)
                # the rows whose fits ask for light: the stage's and their neighbours in its groups
                near = rows[stage] if k == 1 else rows[np.unique(nb[stage][nb_ok[stage]])]
                fit_stage(stage, kw, s_use, _Fixed(estimate, rows, fr, wx0, wy0, window, data_e, near))
                if si == 0:
                    record_free(rows[stage])
                if si == 0 and hold_pulled:
                    # free fits pulled away (by an undetected neighbour,
                    # light from outside the frame): held at their start
                    # with the crowded ones
                    r0 = rows[stage]
                    bad = _moved(theta_out[r0], xs_[r0], ys_[r0], wx0[r0], wy0[r0], window, max_shift_px)
                    bad |= _unexplained(fit_out[r0], camera.excess_noise, max_chi2_sigma,
                                        _psf_mismatch(free_gof, camera.excess_noise))
                    bad &= np.isfinite(theta_out[r0]).all(-1)
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
        dim = (theta_out[:, 2] <= _N_MIN * (1 + 1e-3)) | (theta_out[:, 2] < min_snr * sd_n)
        # a precision wider than half the window: the data do not locate a spot
        dim |= unc_px > h
    status[~conv_out] = NOT_CONVERGED
    # held (crowded) fits model their neighbours only roughly: the test is for free fits
    mismatch = _psf_mismatch(free_gof, excess)
    status[_unexplained(fit_out, excess, max_chi2_sigma, mismatch) & ~held] = BAD_FIT
    status[dim] = DIM
    status[s_bound] = SIGMA_AT_BOUND
    status[moved & ~held] = MOVED  # held positions are their starts (on the window's edge at the frame's)
    status[~finite] = NON_FINITE
    status[~valid] = OUTSIDE
    if merge_px > 0:
        status[duplicate & valid_start] = DUPLICATE
    status[(status == OK) & held] = CROWDED
    status[(status == CROWDED) & pulled] = PULLED
    ok = status == OK
    rep = np.isin(status, REPORTED)
    if chi2_scale:
        unc_px = np.where(ok, unc_px * np.sqrt(np.maximum(_chi2_ratio(fit_out, excess, mismatch), 1.0)), unc_px)
    if len(crowded_error):
        # the network's error model in its own pixels (b camera px a side)
        nb = float(network_binning)
        sg, bound, dens = theta_out[:, 3] / nb, unc_px / nb, density * nb**2
        extra = nb * crowded_extra(crowded_error, crowded_error_power, neighbours, bound, dens, density_factors, sg,
                                   sigma_power, sigma_min)
        if pulled_error_px is not None:
            pl = status == PULLED
            extra[pl] = nb * crowded_extra((pulled_error_px,), crowded_error_power, 1, bound[pl], dens[pl],
                                           density_factors, sg[pl], sigma_power, sigma_min)
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
        np.where(ok, theta_out[:, 0] * p, locs.x),
        np.where(ok, theta_out[:, 1] * p, locs.y),
        **out_cols,
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        free_chi2 = free_gof[:, 0] / excess / free_gof[:, 1]
        # the camera check counts the fits that a PSF's mismatch leaves alone
        free_chi2[mismatch * free_gof[:, 2] > 0.5 * np.sqrt(2 * free_gof[:, 1])] = np.nan
    return FitResult(out, ok, status, free_chi2, neighbours, density)


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


#: detections closer than this (px) share their light in `_deblend`
_DEBLEND_PX = 6.0


def _shape_at(shape, rows, xs, ys, wx0, wy0, window):
    """For ``rows`` (emitters at xs, ys px; windows at wx0, wy0): the
    background's ``shape`` (H, W, torch) at each emitter over its window's
    mean, and over the shape's median; and the shape over its median (H, W)."""
    norm = shape / shape.median()
    sn = norm.cpu().numpy()
    H, W = sn.shape
    cum = np.pad(sn, ((1, 0), (1, 0))).cumsum(0).cumsum(1)  # window sums from an integral image
    y0, x0 = wy0[rows], wx0[rows]
    mean = (cum[y0 + window, x0 + window] - cum[y0, x0 + window] - cum[y0 + window, x0] + cum[y0, x0]) / window**2
    at = sn[np.clip(ys[rows].astype(np.int64), 0, H - 1), np.clip(xs[rows].astype(np.int64), 0, W - 1)]
    return at / mean, at, norm


def _frame_quartile(data_e):
    """The lower quartile of each frame (e-) -> (F,) numpy."""
    flat = data_e.reshape(data_e.shape[0], -1)
    return _kth_smallest(flat, flat.shape[1] // 4 + 1).cpu().numpy()


def _boxes(stack, f, y0, x0, bh, bw, rows, cols):
    """(G, bh, bw) boxes of a (frame, y, x) tensor: frames ``f``, corners
    ``y0``, ``x0`` (numpy); ``rows`` (G, bh) and ``cols`` (G, bw): their
    pixel indices, clamped into the frame (only read for boxes that cross
    its edge). Boxes inside the frame are read from a strided view of all
    windows (faster than a flat index)."""
    H, W = stack.shape[1:]
    dev = stack.device
    fi = torch.as_tensor(f, device=dev)
    if len(f) and y0.max() + bh <= H and x0.max() + bw <= W:
        windows = stack.unfold(1, bh, 1).unfold(2, bw, 1)  # (frame, y0, x0, bh, bw), a view
        return windows[fi, torch.as_tensor(y0, device=dev), torch.as_tensor(x0, device=dev)]
    return stack.reshape(-1)[(fi[:, None, None] * H + rows[:, :, None]) * W + cols[:, None, :]]


def _kth_smallest(x, k):
    """The ``k``-th smallest (1-based) of each row of a (R, n) tensor: no full
    sort (`torch.kthvalue`; on the CPU numpy's partition, 5-8x faster)."""
    if x.device.type == "cpu":
        return torch.from_numpy(np.partition(x.numpy(), k - 1, axis=1)[:, k - 1])
    return torch.kthvalue(x, k, dim=1).values


def _deblend(estimate, background, rows, fr, data_e, n_iter=3, update=None, pairs=None, frame_quartile=None,
             cap_scale=None):
    """Share the light of overlapping detections among them, in place: each
    start estimate of the photons (``estimate[:, 2]``, e-) counts all the
    light of the 3x3 px around it, its neighbours' included. Multiplicative
    updates (as Richardson-Lucy) bring the light all the estimates put in
    each detection's 3x3 box (integrated Gaussians of their sigma, from every
    detection within `_DEBLEND_PX` px) to the light measured there above its
    ``background`` (e-/px; at most the frame's lower quartile). Only the
    rows where ``update`` is True change (default: all). ``pairs``: (m, 2)
    row indices of the candidate pairs of neighbours (`frame_pairs`; default:
    searched here); those of ``rows`` within `_DEBLEND_PX` at the current
    estimates count. ``frame_quartile``: `_frame_quartile` of ``data_e``
    (default: computed here); ``cap_scale`` (per row of ``rows``): that
    quartile's scale at each row (a background's shape, `_shape_at`)."""
    dev = data_e.device
    H, W = data_e.shape[1:]
    good = np.isfinite(estimate[rows]).all(-1) & np.isfinite(background)
    upd = (np.ones(len(rows), bool) if update is None else np.asarray(update, bool))[good]
    rows, bg = rows[good], background[good]
    cap = 1.0 if cap_scale is None else np.asarray(cap_scale)[good]
    m = len(rows)
    if m < 2:
        return
    x, y, s = estimate[rows, 0], estimate[rows, 1], np.maximum(estimate[rows, 3], 0.1)
    cy = np.clip(np.floor(y).astype(np.int64) - 1, 0, H - 3)
    cx = np.clip(np.floor(x).astype(np.int64) - 1, 0, W - 3)
    # a window's lower quartile overestimates the background under a cluster
    # of detections: at most the lower quartile of the whole frame
    if frame_quartile is None:
        uf, inv = np.unique(fr[rows], return_inverse=True)
        bg = np.minimum(bg, _frame_quartile(data_e[torch.as_tensor(uf, device=dev)])[inv])
    else:
        bg = np.minimum(bg, frame_quartile[fr[rows]] * cap)
    box = _boxes(data_e, fr[rows], cy, cx, 3, 3, None, None).sum((1, 2)).to(torch.float64).cpu().numpy()
    measured = np.maximum(box - 9.0 * bg, 1.0)
    # share[k]: the part of detection j[k]'s light in detection i[k]'s box
    if pairs is None:
        sel = np.zeros(len(estimate), bool)
        sel[rows] = True
        pairs = frame_pairs(fr, estimate[:, 0], estimate[:, 1], sel, _DEBLEND_PX, H)[0]
    local = np.full(len(estimate), -1)
    local[rows] = np.arange(m)
    pairs = local[pairs]
    pairs = pairs[np.minimum(pairs[:, 0], pairs[:, 1]) >= 0]
    dx, dy = x[pairs[:, 0]] - x[pairs[:, 1]], y[pairs[:, 0]] - y[pairs[:, 1]]
    pairs = pairs[dx * dx + dy * dy <= _DEBLEND_PX**2]
    i = np.concatenate([np.arange(m), pairs[:, 0], pairs[:, 1]])
    j = np.concatenate([np.arange(m), pairs[:, 1], pairs[:, 0]])
    # (torch's ndtr: ~9x scipy's on these arrays)
    t = {k: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)) for k, a in
         (("cx", cx[i]), ("cy", cy[i]), ("x", x[j]), ("y", y[j]), ("s", s[j]))}
    ndtr = torch.special.ndtr
    share = ((ndtr((t["cx"] + 3 - t["x"]) / t["s"]) - ndtr((t["cx"] - t["x"]) / t["s"]))
             * (ndtr((t["cy"] + 3 - t["y"]) / t["s"]) - ndtr((t["cy"] - t["y"]) / t["s"]))).numpy()
    n_e = estimate[rows, 2].copy()
    for _ in range(n_iter):
        predicted = np.bincount(i, weights=share * n_e[j], minlength=m)
        ratio = np.clip(measured / np.maximum(predicted, 1e-6), 0.05, 20.0)
        n_e = np.where(upd, np.maximum(n_e * ratio, _N_MIN), n_e)
    estimate[rows, 2] = n_e


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


class _Fixed:
    """Light (e-) of the current estimates of emitters ``rows``, each rendered
    over its own window widened by ``pad`` px on every side (a neighbour's
    light reaches past its own window into the next one: cut at the window,
    the missing part went into the photons of the fits beside it, +10 % in
    a 2x2 cluster 300 nm apart) into one canvas per frame; `light` gives, on
    a batch of boxes, that light minus the light of the boxes' own members."""

    pad = 2

    def __init__(self, estimate, rows, fr, wx0, wy0, window, data_e, near=None):
        """``near``: only the fits of these rows will ask for light (None:
        any row's): the emitters whose widened windows cannot reach their
        windows are left out of the canvas."""
        dev, dt = data_e.device, data_e.dtype
        self.estimate, self.window, self.wx0, self.wy0 = estimate, window, wx0, wy0
        self.H, self.W = data_e.shape[1:]
        good = np.isfinite(estimate[rows]).all(-1)
        rows = rows[good]
        if near is not None and 0 < 2 * len(near) < len(rows):
            # windows overlap when their corners are closer than their sizes
            # on both axes (Chebyshev distance), frames kept apart (when
            # most rows ask, rendering all costs less than the search)
            reach = window + self.pad
            off = 4.0 * (self.H + reach)
            tree = cKDTree(np.column_stack([wy0[near] + fr[near] * off, wx0[near]]))
            d, _ = tree.query(np.column_stack([wy0[rows] + fr[rows] * off, wx0[rows]]), p=np.inf,
                              distance_upper_bound=reach + 0.5)
            rows = rows[np.isfinite(d)]
        self.frames, finv = np.unique(fr[rows], return_inverse=True)
        self.canvas = torch.zeros((len(self.frames),) + tuple(data_e.shape[1:]), dtype=dt, device=dev)
        if len(rows):
            d, size = self.pad, window + 2 * self.pad
            own, yi, xi = self._render(rows, wy0[rows] - d, wx0[rows] - d, size, size, dev, dt, clip=True)
            fi = torch.as_tensor(finv, device=dev)[:, None]
            # by flat index, built per axis (index_add_ on it: a third of the
            # time of index_put_ with accumulate on the CPU)
            flat = ((fi * self.H + yi) * self.W)[:, :, None] + xi[:, None, :]
            self.canvas.view(-1).index_add_(0, flat.reshape(-1), own.reshape(-1))

    def _render(self, rows, y0, x0, bh, bw, dev, dt, clip=False):
        """Light of emitters ``rows`` over boxes (y0, x0, bh, bw) -> (G, bh, bw),
        and the boxes' pixel indices per axis, (G, bh) and (G, bw)
        (``clip``: clamped into the frame); zero
        outside each emitter's widened window and outside the frame (both
        per axis: the window and the frame are boxes)."""
        th = torch.as_tensor(np.nan_to_num(self.estimate[rows]), dtype=dt, device=dev)
        yi = torch.as_tensor(y0, device=dev)[:, None] + torch.arange(bh, device=dev)  # (G, bh)
        xi = torch.as_tensor(x0, device=dev)[:, None] + torch.arange(bw, device=dev)  # (G, bw)
        s = torch.clamp(th[:, 3:4], min=0.1)[:, :, None]
        ax = _axis_terms(xi.to(dt)[:, None, :], th[:, 0:1, None], s, derivatives=False)[:, 0]
        ay = _axis_terms(yi.to(dt)[:, None, :], th[:, 1:2, None], s, derivatives=False)[:, 0]
        d, size = self.pad, self.window + 2 * self.pad
        wy = torch.as_tensor(self.wy0[rows], device=dev)[:, None] - d
        wx = torch.as_tensor(self.wx0[rows], device=dev)[:, None] - d
        in_y = (yi >= torch.clamp(wy, min=0)) & (yi < torch.clamp(wy + size, max=self.H))
        in_x = (xi >= torch.clamp(wx, min=0)) & (xi < torch.clamp(wx + size, max=self.W))
        ay = torch.where(in_y, th[:, 2, None] * ay, torch.zeros_like(ay))
        ax = torch.where(in_x, ax, torch.zeros_like(ax))
        light = ay[:, :, None] * ax[:, None, :]
        if clip:
            yi, xi = torch.clamp(yi, 0, self.H - 1), torch.clamp(xi, 0, self.W - 1)
        return light, yi, xi

    def light(self, frames, members, y0, x0, bh, bw, dev, dt):
        """(G, bh, bw) fixed light on boxes of frames ``frames`` with ``members`` (G, K)."""
        H, W = self.canvas.shape[1:]
        pos = np.searchsorted(self.frames, frames)
        found = (pos < len(self.frames)) & (self.frames[np.minimum(pos, len(self.frames) - 1)] == frames)
        G = len(frames)
        if len(self.frames) == 0:
            return torch.zeros((G, bh, bw), dtype=dt, device=dev)
        yi = torch.clamp(torch.as_tensor(y0, device=dev)[:, None] + torch.arange(bh, device=dev), max=H - 1)
        xi = torch.clamp(torch.as_tensor(x0, device=dev)[:, None] + torch.arange(bw, device=dev), max=W - 1)
        out = _boxes(self.canvas, np.minimum(pos, len(self.frames) - 1), y0, x0, bh, bw, yi, xi)
        if not found.all():
            out = torch.where(torch.as_tensor(found, device=dev)[:, None, None], out, torch.zeros_like(out))
        for k in range(members.shape[1]):
            m = members[:, k]
            good = np.isfinite(self.estimate[m]).all(-1)
            own, _, _ = self._render(m, y0, x0, bh, bw, dev, dt)
            if not good.all():
                own = torch.where(torch.as_tensor(good, device=dev)[:, None, None], own, torch.zeros_like(own))
            out = out - own
        return out


def _fit_groups(
    f, box, members, start_xy, s0, wx0, wy0, extra, *, data_e, H, W, window, fit_sigma, s_lo, s_hi,
    v, max_iter, tol, batch_elements, shared_sigma, held, quartile, background_shape=None,
):
    """Fit G groups of K emitters (members (G, K) row indices) on union boxes
    box (G, 4) = (y0, x0, height, width); ``background_shape`` (H, W): the
    background's shape over the frames (None: flat in each box). Returns per member arrays:
    theta (G, K, 4) = x, y, N, s; b (G,); var (G, K, 3) = var x, var y, var N
    (px^2, e-^2, from the Fisher information); converged (G,)."""
    G, K = members.shape
    ns = (1 if shared_sigma and K > 1 else K) if fit_sigma else 0
    P = 3 * K + ns + 1
    dev, dt = data_e.device, data_e.dtype
    theta_all = np.full((G, K, 4), np.nan)
    b_all = np.full(G, np.nan)
    var_all = np.full((G, K, 3), np.nan)
    conv_all = np.zeros(G, bool)
    fit_all = np.full((G, 3), np.nan)  # chi-square, degrees of freedom, signal (`_psf_mismatch`)
    order = np.lexsort((box[:, 3], box[:, 2]))
    for lo_i in range(0, G, max(1, batch_elements // (P * int((box[:, 2] * box[:, 3]).max())))):
        bi = order[lo_i : lo_i + max(1, batch_elements // (P * int((box[:, 2] * box[:, 3]).max())))]
        mb = members[bi]
        bh, bw = int(box[bi, 2].max()), int(box[bi, 3].max())
        y0 = torch.as_tensor(box[bi, 0], device=dev)
        x0 = torch.as_tensor(box[bi, 1], device=dev)
        ry = torch.arange(bh, device=dev)
        rx = torch.arange(bw, device=dev)
        rows = torch.clamp(y0[:, None] + ry, max=H - 1)
        cols = torch.clamp(x0[:, None] + rx, max=W - 1)
        data = _boxes(data_e, f[bi], box[bi, 0], box[bi, 1], bh, bw, rows, cols)  # (g, bh, bw)
        full = bool((box[bi, 2] == bh).all() and (box[bi, 3] == bw).all())  # every box its batch's size
        mask = (ry[None, :, None] < torch.as_tensor(box[bi, 2], device=dev)[:, None, None]) & (
            rx[None, None, :] < torch.as_tensor(box[bi, 3], device=dev)[:, None, None]
        )
        if not full:
            data = torch.where(mask, data, torch.zeros_like(data))
        mask = mask.to(dt)
        g = len(bi)
        ex_lo = (x0[:, None] + rx).to(dt)[:, None, :]
        ey_lo = (y0[:, None] + ry).to(dt)[:, None, :]
        bs = None
        if background_shape is not None:  # the shape over each box, its mean 1 (b: the box's mean background)
            bs = background_shape.reshape(-1)[rows[:, :, None] * W + cols[:, None, :]] * mask
            bs = (bs / (bs.sum((1, 2)) / mask.sum((1, 2)))[:, None, None]).reshape(len(bi), -1)
        ex_t = None
        if extra is not None:  # a _Fixed: light of neighbours held fixed
            ex_t = extra.light(f[bi], mb, box[bi, 0], box[bi, 1], bh, bw, dev, dt)
            if not full:
                ex_t = ex_t * mask

        # initial values
        xs = torch.as_tensor(start_xy[mb, 0], dtype=dt, device=dev)
        ys = torch.as_tensor(start_xy[mb, 1], dtype=dt, device=dev)
        ss = torch.as_tensor(s0[mb], dtype=dt, device=dev)
        flat = data.reshape(g, -1)
        known = None if quartile is None or K > 1 else quartile[mb[:, 0]]  # one emitter: its own window
        if known is not None and np.isfinite(known).all():
            b0 = torch.as_tensor(known, dtype=dt, device=dev)
        else:
            level = flat if bs is None else flat / bs  # the background's level where its shape is 1
            if full:  # one box size: the quartile with no full sort (3-15x slower)
                b0 = _kth_smallest(level, bh * bw // 4 + 1)
            else:
                big = torch.where(mask.reshape(g, -1) > 0, level, torch.full_like(flat, float("inf")))
                cnt = mask.reshape(g, -1).sum(-1).long()
                if bool((cnt == cnt[0]).all()):
                    b0 = _kth_smallest(big, int(cnt[0]) // 4 + 1)
                else:
                    b0 = torch.sort(big, dim=1).values.gather(1, (cnt // 4)[:, None])[:, 0]
        b0 = torch.clamp(b0, min=0.0)
        if ex_t is not None:
            b0 = torch.clamp(b0 - ex_t.reshape(g, -1).amin(-1), min=0.0)
        # N0: light of a 3x3 box around each emitter over the PSF's share of it
        cy = torch.clamp(torch.floor(ys).long() - y0[:, None] - 1, 0, bh - 3)
        cx = torch.clamp(torch.floor(xs).long() - x0[:, None] - 1, 0, bw - 3)
        off = torch.arange(3, device=dev)
        iy = (cy[:, :, None, None] + off[:, None]).expand(g, K, 3, 3)
        ix = (cx[:, :, None, None] + off[None, :]).expand(g, K, 3, 3)
        gi = torch.arange(g, device=dev)[:, None, None, None].expand(g, K, 3, 3)
        light = data[gi, iy, ix]
        if ex_t is not None:
            light = light - ex_t[gi, iy, ix]
        light = (light - b0[:, None, None, None]).sum((-1, -2))
        ay, _, _ = _axis_terms((y0[:, None, None] + cy[:, :, None] + off).to(dt), ys[:, :, None], ss[:, :, None])
        ax, _, _ = _axis_terms((x0[:, None, None] + cx[:, :, None] + off).to(dt), xs[:, :, None], ss[:, :, None])
        share = torch.clamp(ay.sum(-1) * ax.sum(-1), min=0.05)
        n0 = torch.clamp(light / share, min=10.0)

        s_init = ss if ns == K else ss.mean(1, keepdim=True)
        parts0 = [xs, ys, n0] + ([s_init] if ns else []) + [b0[:, None]]
        init = torch.cat(parts0, dim=1)
        wx = torch.as_tensor(wx0[mb], dtype=dt, device=dev)
        wy = torch.as_tensor(wy0[mb], dtype=dt, device=dev)
        inf = torch.full((g, K), float("inf"), dtype=dt, device=dev)
        lo_p = [wx, wy, torch.full_like(xs, _N_MIN)] + ([torch.full_like(s_init, s_lo)] if ns else [])
        hi_p = [wx + window, wy + window, inf] + ([torch.full_like(s_init, s_hi)] if ns else [])
        hold = torch.as_tensor(held[mb], device=dev)  # positions held at the start
        lo_p[0], hi_p[0] = torch.where(hold, xs, lo_p[0]), torch.where(hold, xs, hi_p[0])
        lo_p[1], hi_p[1] = torch.where(hold, ys, lo_p[1]), torch.where(hold, ys, hi_p[1])
        lo = torch.cat(lo_p + [torch.zeros((g, 1), dtype=dt, device=dev)], dim=1)
        hi = torch.cat(hi_p + [torch.full((g, 1), float("inf"), dtype=dt, device=dev)], dim=1)
        init = torch.minimum(torch.maximum(init, lo), hi)

        if max_iter == 0:  # start values only (first estimates of the neighbours' light)
            th = init.cpu().numpy()
            theta_all[bi, :, 0], theta_all[bi, :, 1] = th[:, 0:K], th[:, K : 2 * K]
            theta_all[bi, :, 2], b_all[bi] = th[:, 2 * K : 3 * K], th[:, -1]
            theta_all[bi, :, 3] = th[:, 3 * K : 3 * K + ns] if ns else s0[mb]
            continue
        if K == 1 and ns == 0 and bool(hold.all()):  # position and sigma held: a linear model
            theta, conv, fisher, chi2 = _fit_amplitudes(flat, mask.reshape(g, -1), ex_lo, ey_lo, ex_t, init, ss,
                                                         v, max_iter, tol, bshape=bs)
        else:
            theta, conv, fisher, chi2 = _fit_batch(
                flat, mask.reshape(g, -1), ex_lo, ey_lo, ex_t, init, lo, hi, K, ns,
                None if ns else ss, v, max_iter, tol, bshape=bs,
            )
        # Cramer-Rao: diagonal of the inverse Fisher information
        eye = torch.eye(P, dtype=dt, device=dev)
        inv, info = torch.linalg.inv_ex(fisher + 1e-12 * eye)
        cr = torch.diagonal(inv, dim1=1, dim2=2)
        cr = torch.where((info == 0)[:, None], cr, torch.full_like(cr, float("nan")))
        th = theta.cpu().numpy()
        crn = cr.cpu().numpy()
        theta_all[bi, :, 0] = th[:, 0:K]
        theta_all[bi, :, 1] = th[:, K : 2 * K]
        theta_all[bi, :, 2] = th[:, 2 * K : 3 * K]
        theta_all[bi, :, 3] = th[:, 3 * K : 3 * K + ns] if ns else s0[mb]
        b_all[bi] = th[:, -1]
        var_all[bi, :, 0] = crn[:, 0:K]
        var_all[bi, :, 1] = crn[:, K : 2 * K]
        var_all[bi, :, 2] = crn[:, 2 * K : 3 * K]
        conv_all[bi] = conv.cpu().numpy()
        dof = mask.reshape(g, -1).sum(-1) - P
        fit_all[bi, 0] = chi2.cpu().numpy()
        fit_all[bi, 1] = dof.cpu().numpy()
        # signal: sum over the box of (the emitters' light)^2 / variance, i.e.
        # N^2 times N's Fisher information, summed over the members
        f_nn = torch.diagonal(fisher, dim1=1, dim2=2)[:, 2 * K : 3 * K]
        fit_all[bi, 2] = (theta[:, 2 * K : 3 * K] ** 2 * f_nn).sum(-1).cpu().numpy()
    return theta_all, b_all, var_all, conv_all, fit_all

"""Split spots: one emitter that the network detected as two or more close
detections. For bright spots the network often puts a second detection
about one of its pixels from the first, with 0.3-1.0 of its intensity; the
fits would then hold both at the network's positions (crowded) and share
the light between them.

A likelihood-ratio test on the raw frame decides. The detections of one
frame closer than `RADIUS_PX` of the network's px form a group; its box
(the fitting window, around the group's centre) is fitted by Poisson
maximum likelihood (`napari_dsir.mle`; a shared free PSF sigma, a flat
background, the other detections whose light reaches the box fitted too)
with one emitter and with the group's K emitters, each within `REACH_PX`
of the network's position. Twice the gain in log-likelihood (divided by
the EMCCD excess noise factor) is chi-square with 3 (K - 1) degrees of
freedom for one emitter, and non-central for K true ones: its
non-centrality is the gain on the expected, noise-free image of K emitters
at the network's positions, the single fit's photons shared as their
intensities. The group is one emitter where the posterior odds say so: the
ratio of these two densities at the gain, times the prior odds of true
emitters against a split.

The prior comes from the movie itself. The network resolves pairs 2-4 of
its px apart and does not split spots that far (`ANNULUS_PX`): the pairs
there, per area, say how many of the close pairs are true, the rest are
splits; the odds grow with the local density of detections. Where there
are no more close pairs than that (crowded frames, whose close pairs the
network rarely resolves) or a split is a priori not the likelier
(`PRIOR_MAX`), nothing is tested. Dim pairs that one emitter explains as
well, for want of light, thus keep their prior.
Positions in camera px, light in photoelectrons; frames (frame, y, x).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.spatial import cKDTree

from .camera import Camera
from .localize import local_density
from .locs import Localizations
from .mle import N_MIN, boxes, fit_batch, kth_smallest, model, poisson_nll
from .neighbours import frame_pairs, groups, inside

#: detections of one frame closer than this (network px) are tested
RADIUS_PX = 1.5
#: the annulus (network px) whose pairs say how many true pairs are closer
#: than the radius; for a wider PSF from its FWHM to twice that (the
#: network resolves fewer pairs closer than a FWHM)
ANNULUS_PX = (2.0, 4.0)
FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
#: the largest group tested (larger ones are kept as they are)
MAX_GROUP = 4
MAX_ITER = 30
#: the group's emitters stay this close (camera px) to the network's
#: positions: the test is of emitters where it put them (free, they would
#: take the light of undetected neighbours beside the box)
REACH_PX = 0.75
#: groups are tested where the prior odds of true emitters against a split
#: are below this
PRIOR_MAX = 1.0
#: other detections up to this far (camera px) outside a group's box are
#: fitted with it (their light reaches into it), the nearest few
NEIGHBOUR_MARGIN_PX = 1.5
MAX_NEIGHBOURS = 4


def split_spots(frames_photons: torch.Tensor, locs: Localizations, pixel_size_nm: float,
                camera: Camera | None = None, *, first_frame: int = 0, window: int = 7,
                sigma_px: float = 1.0, sigma_bounds_px: tuple[float, float] = (0.5, 3.0),
                binning: int = 1) -> tuple[Localizations, int]:
    """``locs`` with each split spot one detection, and how many were left out.

    frames_photons: (frame, y, x) frames in photons (`Camera.to_photons`);
    row i of ``locs`` (nm) is on ``frames_photons[locs.frame[i] - first_frame]``.
    ``window``: the box fitted (camera px, odd); ``sigma_px``: the PSF sigma
    the fits start from and ``sigma_bounds_px`` its bounds (camera px);
    ``binning``: the network saw the frames binned this many camera px a
    side (its px, in which `RADIUS_PX` and `ANNULUS_PX` count). A
    merged group keeps its strongest detection (``intensity``), moved to the
    single emitter's fit, its intensity the group's sum.
    """
    camera = (camera or Camera()).validate()
    n = len(locs)
    if n < 2:
        return locs, 0
    p = float(pixel_size_nm)
    frames = frames_photons if frames_photons.ndim == 3 else frames_photons[None]
    F, H, W = frames.shape
    window = int(min(window, H - (1 - H % 2), W - (1 - W % 2)))
    fr = locs.frame - int(first_frame)
    xp, yp = locs.x / p, locs.y / p
    valid = inside(xp, yp, H, W)
    # the movie's true close pairs: as many per area as its pairs at 2-4 of
    # the network's px, or one to two FWHM of a wider PSF (which it
    # resolves, and does not split), over the disc of the radius; the
    # network's splits: the close pairs beyond them (one search for both)
    radius = RADIUS_PX * int(binning)
    a0 = max(ANNULUS_PX[0] * int(binning), FWHM_PER_SIGMA * float(sigma_px))
    a1 = a0 * ANNULUS_PX[1] / ANNULUS_PX[0]
    pairs, dist = frame_pairs(fr, xp, yp, valid, a1, H)
    close = dist <= radius
    if not close.any():
        return locs, 0
    # (one pair more than counted: none counted is no proof of none)
    true_close = (np.count_nonzero(dist >= a0) + 1) * radius**2 / (a1**2 - a0**2)
    n_split = np.count_nonzero(close) - true_close
    if not n_split > 0:
        return locs, 0
    labels = groups(fr, xp, yp, valid, radius, H, pairs=(pairs[close], dist[close]))
    size = np.bincount(labels)
    strength = locs.intensity if locs.intensity is not None else np.ones(n)
    x, y, keep = xp.copy(), yp.copy(), np.ones(n, bool)
    intensity = None if locs.intensity is None else locs.intensity.copy()
    rows = np.flatnonzero(valid & (size[labels] > 1) & (size[labels] <= MAX_GROUP))
    if not len(rows):
        return locs, 0
    rows = rows[np.argsort(labels[rows], kind="stable")]
    lab = labels[rows]
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    sizes = np.diff(np.r_[starts, len(lab)])
    members_of = [rows[a : a + k] for a, k in zip(starts, sizes)]
    # the odds of true emitters against a split before the test, higher
    # where the detections are denser; tested only where a split is the
    # likelier (crowded frames: none, and no cost)
    density = local_density(xp, yp, F, (H, W))
    label_density = np.bincount(labels[rows], np.nan_to_num(density[rows]), minlength=len(size)) / size
    prior = true_close / n_split * label_density[labels[rows[starts]]] / np.nanmean(density[valid])
    members_of = [m for m, o in zip(members_of, prior) if o < PRIOR_MAX]
    prior = prior[prior < PRIOR_MAX]
    if not members_of:
        return locs, 0
    # float64 on any device: the test compares likelihoods of a few boxes
    # (float32 rounding is about its convergence tolerance)
    data_e = frames.to(torch.float64) * camera.qe
    # every group's box, around its centre (intensities as weights), and
    # the other detections whose light reaches into it (fitted with it)
    h = window // 2
    corner = np.empty((len(members_of), 2), np.int64)
    for i, m in enumerate(members_of):
        w = strength[m] / strength[m].sum()
        corner[i] = (np.clip(np.floor((w * xp[m]).sum()).astype(np.int64) - h, 0, W - window),
                     np.clip(np.floor((w * yp[m]).sum()).astype(np.int64) - h, 0, H - window))
    ii = np.flatnonzero(valid)
    gap = H + 2.0 * window + 2 * NEIGHBOUR_MARGIN_PX
    tree = cKDTree(np.column_stack([yp[ii] + fr[ii] * gap, xp[ii]]))
    first = fr[[m[0] for m in members_of]]
    centre = np.column_stack([corner[:, 1] + window / 2 + first * gap, corner[:, 0] + window / 2])
    near = tree.query_ball_point(centre, window / 2 + NEIGHBOUR_MARGIN_PX, p=np.inf)
    others = []
    for m, c, nb in zip(members_of, centre, near):
        nb = ii[np.asarray(nb, np.int64)]
        nb = nb[~np.isin(nb, m)]
        d = np.hypot(yp[nb] + fr[nb] * gap - c[0], xp[nb] - c[1])
        others.append(nb[np.argsort(d, kind="stable")[:MAX_NEIGHBOURS]])
    kinds = np.array([(len(m), len(o)) for m, o in zip(members_of, others)])
    for K, M in np.unique(kinds, axis=0):
        which = np.flatnonzero((kinds[:, 0] == K) & (kinds[:, 1] == M))
        members = np.array([members_of[i] for i in which]).reshape(len(which), K)
        nbrs = np.array([others[i] for i in which], np.int64).reshape(len(which), M)
        one, fit1 = _test(data_e, fr, xp, yp, strength, members, nbrs, corner[which], window, sigma_px,
                          sigma_bounds_px, camera, prior[which])
        for g in np.flatnonzero(one):
            m = members[g]
            best = m[np.argmax(strength[m])]
            keep[m] = False
            keep[best] = True
            x[best], y[best] = fit1[g]
            if intensity is not None:
                intensity[best] = locs.intensity[m].sum()
    cols = dict(locs.columns())
    if intensity is not None:
        cols["intensity"] = intensity
    out = Localizations(locs.frame, x * p, y * p, **cols)
    return out.select(keep), int((~keep).sum())


def _test(data_e, fr, xp, yp, strength, members, nbrs, corner, window, s0, s_bounds, camera, prior):
    """The groups (rows ``members`` (G, K), their neighbours ``nbrs`` (G, M),
    boxes at ``corner`` (G, 2) = x0, y0 px) that are one emitter, and that
    emitter's fitted position (G, 2) px. ``prior``: the odds of true
    emitters against a split before the test (G,)."""
    G, K = members.shape
    M = nbrs.shape[1]
    dev, dt = data_e.device, data_e.dtype
    w = strength[members] / strength[members].sum(1, keepdims=True)  # (G, K) intensity shares
    cx, cy = (w * xp[members]).sum(1), (w * yp[members]).sum(1)
    x0, y0 = corner[:, 0], corner[:, 1]
    r = torch.arange(window, device=dev)
    box = boxes(data_e, fr[members[:, 0]], y0, x0, window, window,
                torch.as_tensor(y0, device=dev)[:, None] + r, torch.as_tensor(x0, device=dev)[:, None] + r)
    data = box.reshape(G, -1)
    mask = torch.ones_like(data)
    ex_lo = torch.as_tensor(x0, dtype=dt, device=dev)[:, None, None] + r.to(dt)
    ey_lo = torch.as_tensor(y0, dtype=dt, device=dev)[:, None, None] + r.to(dt)
    v = camera.read_variance_e
    excess = camera.excess_noise

    def t(a):
        return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=dt, device=dev)

    def col(value, k=1):
        return torch.full((G, k), value, dtype=dt, device=dev)

    b0 = torch.clamp(kth_smallest(data, window * window // 4 + 1), min=0.0)
    total = torch.clamp(data.sum(-1) - b0 * window * window, min=10.0)[:, None]
    # start photons: the box's light shared as the intensities (the group's
    # members its share, each neighbour its own)
    share = t(strength[nbrs] / strength[members].sum(1, keepdims=True))
    n_group = total / (1.0 + share.sum(1, keepdims=True))
    n_nbrs = n_group * share
    s_lo, s_hi = (float(s) for s in s_bounds)
    s_init = col(float(np.clip(s0, s_lo, s_hi)))
    margin = NEIGHBOUR_MARGIN_PX

    def fit(d, xs, ys, ns, k, reach=None):
        """``reach``: the first K positions bounded to this far (px) from their starts."""
        lo = torch.cat([t(x0)[:, None].expand(G, k) - margin, t(y0)[:, None].expand(G, k) - margin,
                        col(N_MIN, k), col(s_lo), col(0.0)], 1)
        hi = torch.cat([t(x0)[:, None].expand(G, k) + window + margin, t(y0)[:, None].expand(G, k) + window + margin,
                        col(math.inf, k), col(s_hi), col(math.inf)], 1)
        if reach is not None:
            for j, c in ((0, xs[:, :K]), (k, ys[:, :K])):
                lo[:, j : j + K] = torch.maximum(lo[:, j : j + K], c - reach)
                hi[:, j : j + K] = torch.minimum(hi[:, j : j + K], c + reach)
        init = torch.cat([xs, ys, ns, s_init, b0[:, None]], 1)
        init = torch.minimum(torch.maximum(init, lo), hi)
        theta, conv, _, _ = fit_batch(d, mask, ex_lo, ey_lo, None, init, lo, hi, k, 1, None, v, MAX_ITER, 1e-6)
        mu, _ = model(theta, k, 1, None, ex_lo, ey_lo, None, jac=False)
        return theta, conv, poisson_nll(mu, torch.clamp(d + v, min=0.0), mask, v)

    nx, ny = t(xp[nbrs]), t(yp[nbrs])
    th1, c1, nll1 = fit(data, torch.cat([t(cx)[:, None], nx], 1), torch.cat([t(cy)[:, None], ny], 1),
                        torch.cat([n_group, n_nbrs], 1), 1 + M)
    xs, ys, wk = t(xp[members]), t(yp[members]), t(w)
    _, _, nllk = fit(data, torch.cat([xs, nx], 1), torch.cat([ys, ny], 1), torch.cat([n_group * wk, n_nbrs], 1), K + M,
                     REACH_PX)
    gain = 2.0 * (nll1 - torch.minimum(nllk, nll1)) / excess
    # the gain K true emitters at the network's positions would give: the
    # single fit's photons shared as the intensities, its neighbours and
    # background as fitted
    k1 = 1 + M
    fx, fy, fn = th1[:, 1:k1], th1[:, k1 + 1 : 2 * k1], th1[:, 2 * k1 + 1 : 3 * k1]
    truth = torch.cat([xs, fx, ys, fy, th1[:, 2 * k1 : 2 * k1 + 1] * wk, fn, th1[:, -2:]], 1)
    mu_true, _ = model(truth, K + M, 1, None, ex_lo, ey_lo, None, jac=False)
    _, _, nll_true = fit(mu_true, th1[:, :k1], th1[:, k1 : 2 * k1], th1[:, 2 * k1 : 3 * k1], k1)
    power_nc = (2.0 * nll_true / excess).cpu().numpy()
    dof = 3 * (K - 1)
    g = np.maximum(gain.cpu().numpy(), 1e-3)
    log_odds = np.log(prior) * (K - 1) + _ncx2_logpdf(g, dof, np.maximum(power_nc, 1e-6)) - _chi2_logpdf(g, dof)
    one = log_odds < 0
    one &= c1.cpu().numpy()
    return one, np.column_stack([th1[:, 0].cpu().numpy(), th1[:, k1].cpu().numpy()])


def _chi2_logpdf(x, k):
    """log density of the chi-square distribution, ``k`` degrees of freedom."""
    return (0.5 * k - 1.0) * np.log(x) - 0.5 * x - 0.5 * k * math.log(2.0) - math.lgamma(0.5 * k)


def _ncx2_logpdf(x, k, nc):
    """log density of the non-central chi-square distribution (``k``
    degrees of freedom, non-centrality ``nc`` > 0), by the exponentially
    scaled Bessel function (scipy.stats costs 0.3 s to import)."""
    from scipy.special import ive

    z = np.sqrt(nc * x)
    return (math.log(0.5) - 0.5 * (x + nc) + (0.25 * k - 0.5) * np.log(x / nc)
            + np.log(ive(0.5 * k - 1.0, z)) + z)

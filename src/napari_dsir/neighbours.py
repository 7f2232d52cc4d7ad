"""Neighbouring detections of one frame, for the refinement on the raw frames
(`napari_dsir.fit.refine`): the pairs closer than a radius (one tree search
for all frames), groups, duplicates and neighbour counts; first estimates of
each detection's photons that share the light of overlapping ones
(`deblend`); and the light of neighbours held fixed while one emitter is
fitted (`FixedLight`). Positions in camera px, light in photoelectrons;
frames (frame, y, x).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.spatial import cKDTree

from .mle import N_MIN, axis_terms, boxes, kth_smallest


def inside(xp, yp, H, W):
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


def nearest_distance(f, xp, yp, valid, radius, H, pairs=None):
    """Per detection, the distance to the nearest other valid detection of
    its frame (frames ``f``; positions ``xp``, ``yp`` in camera px, 0 <= yp
    <= ``H``), or ``radius`` where none is closer (a lower bound: the pair
    search looks no farther); NaN for invalid rows. ``pairs``: `frame_pairs`
    of these detections at ``radius``."""
    pairs, dist = frame_pairs(f, xp, yp, valid, radius, H) if pairs is None else pairs
    out = np.where(valid, float(radius), np.nan)
    np.minimum.at(out, pairs[:, 0], dist)
    np.minimum.at(out, pairs[:, 1], dist)
    return out


def groups(f, xp, yp, valid, window, H, pairs=None):
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


def duplicates(f, xp, yp, valid, merge_px, H, strength):
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


def count_neighbours(f, xp, yp, valid, radius, H, pairs=None):
    """Number of other valid detections of its frame closer than ``radius``
    px, per detection. ``pairs``: `frame_pairs` of these detections at a radius
    >= ``radius``."""
    out = np.zeros(len(f), np.int64)
    if radius <= 0:
        return out
    pairs, dist = frame_pairs(f, xp, yp, valid, radius, H) if pairs is None else pairs
    np.add.at(out, pairs[dist <= radius].ravel(), 1)
    return out


#: detections closer than this (px) share their light in `deblend`
DEBLEND_PX = 6.0


def shape_at(shape, rows, xs, ys, wx0, wy0, window):
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


def frame_quartiles(data_e):
    """The lower quartile of each frame (e-) -> (F,) numpy."""
    flat = data_e.reshape(data_e.shape[0], -1)
    return kth_smallest(flat, flat.shape[1] // 4 + 1).cpu().numpy()


def deblend(estimate, background, rows, fr, data_e, n_iter=3, update=None, pairs=None, frame_quartile=None,
             cap_scale=None):
    """Share the light of overlapping detections among them, in place: each
    start estimate of the photons (``estimate[:, 2]``, e-) counts all the
    light of the 3x3 px around it, its neighbours' included. Multiplicative
    updates (as Richardson-Lucy) bring the light all the estimates put in
    each detection's 3x3 box (integrated Gaussians of their sigma, from every
    detection within `DEBLEND_PX` px) to the light measured there above its
    ``background`` (e-/px; at most the frame's lower quartile). Only the
    rows where ``update`` is True change (default: all). ``pairs``: (m, 2)
    row indices of the candidate pairs of neighbours (`frame_pairs`; default:
    searched here); those of ``rows`` within `DEBLEND_PX` at the current
    estimates count. ``frame_quartile``: `frame_quartiles` of ``data_e``
    (default: computed here); ``cap_scale`` (per row of ``rows``): that
    quartile's scale at each row (a background's shape, `shape_at`)."""
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
        bg = np.minimum(bg, frame_quartiles(data_e[torch.as_tensor(uf, device=dev)])[inv])
    else:
        bg = np.minimum(bg, frame_quartile[fr[rows]] * cap)
    box = boxes(data_e, fr[rows], cy, cx, 3, 3, None, None).sum((1, 2)).to(torch.float64).cpu().numpy()
    measured = np.maximum(box - 9.0 * bg, 1.0)
    # share[k]: the part of detection j[k]'s light in detection i[k]'s box
    if pairs is None:
        sel = np.zeros(len(estimate), bool)
        sel[rows] = True
        pairs = frame_pairs(fr, estimate[:, 0], estimate[:, 1], sel, DEBLEND_PX, H)[0]
    local = np.full(len(estimate), -1)
    local[rows] = np.arange(m)
    a, b = local[pairs[:, 0]], local[pairs[:, 1]]  # both ends among rows, as row numbers there
    both = (a >= 0) & (b >= 0)
    a, b = a[both], b[both]
    dx, dy = x[a] - x[b], y[a] - y[b]
    near = dx * dx + dy * dy <= DEBLEND_PX**2
    a, b = a[near], b[near]
    i = np.concatenate([np.arange(m), a, b])
    j = np.concatenate([np.arange(m), b, a])
    # (torch's ndtr: ~9x scipy's on these arrays)
    t = {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)) for k, v in
         (("cx", cx[i]), ("cy", cy[i]), ("x", x[j]), ("y", y[j]), ("s", s[j]))}
    ndtr = torch.special.ndtr
    share = ((ndtr((t["cx"] + 3 - t["x"]) / t["s"]) - ndtr((t["cx"] - t["x"]) / t["s"]))
             * (ndtr((t["cy"] + 3 - t["y"]) / t["s"]) - ndtr((t["cy"] - t["y"]) / t["s"]))).numpy()
    n_e = estimate[rows, 2].copy()
    for _ in range(n_iter):
        predicted = np.bincount(i, weights=share * n_e[j], minlength=m)
        ratio = np.clip(measured / np.maximum(predicted, 1e-6), 0.05, 20.0)
        n_e = np.where(upd, np.maximum(n_e * ratio, N_MIN), n_e)
    estimate[rows, 2] = n_e


class FixedLight:
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
        # each row's own rendered light, (rows, size, size), and its slot there per row (-1: none)
        self.own, self.slot = None, np.full(len(estimate), -1)
        if len(rows):
            d, size = self.pad, window + 2 * self.pad
            own, yi, xi = self._render(rows, wy0[rows] - d, wx0[rows] - d, size, size, dev, dt, clip=True)
            self.own, self.slot[rows] = own, np.arange(len(rows))
            fi = torch.as_tensor(finv, device=dev)[:, None]
            if self.canvas.numel() < 2**31:  # int32 indices: half the time of int64 here
                fi, yi, xi = fi.int(), yi.int(), xi.int()
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
        ax = axis_terms(xi.to(dt)[:, None, :], th[:, 0:1, None], s, derivatives=False)[:, 0]
        ay = axis_terms(yi.to(dt)[:, None, :], th[:, 1:2, None], s, derivatives=False)[:, 0]
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
        out = boxes(self.canvas, np.minimum(pos, len(self.frames) - 1), y0, x0, bh, bw, yi, xi)
        if not found.all():
            out = torch.where(torch.as_tensor(found, device=dev)[:, None, None], out, torch.zeros_like(out))
        for k in range(members.shape[1]):
            m = members[:, k]
            good = np.isfinite(self.estimate[m]).all(-1)
            slot = self.slot[m]
            if (members.shape[1] == 1 and bh == bw == self.window and (slot >= 0).all()
                    and np.array_equal(y0, self.wy0[m]) and np.array_equal(x0, self.wx0[m])):
                # each box its member's own window: its light as rendered into the canvas
                d = self.pad
                own = self.own[torch.as_tensor(slot, device=dev), d:d + bh, d:d + bw]
            else:
                own, _, _ = self._render(m, y0, x0, bh, bw, dev, dt)
            if not good.all():
                own = torch.where(torch.as_tensor(good, device=dev)[:, None, None], own, torch.zeros_like(own))
            out = out - own
        return out

"""Neighbouring detections: pairs, groups, shared light (napari_dsir.neighbours)."""

import numpy as np
import torch

from napari_dsir import neighbours
from napari_dsir.simulate import render_emitters

P = 100.0  # nm per camera pixel


def test_one_neighbour_search_serves_grouping_isolation_and_deblending():
    """frame_pairs (one tree search per call of refine) finds the pairs of one
    frame a brute-force search finds; the groups, neighbour counts and the
    deblended photons built from it equal those of their own searches; the
    held light rendered only around the rows that ask for it (``near``)
    equals the full canvas's there."""
    rng = np.random.default_rng(16)
    n, H = 400, 32
    f = rng.integers(0, 5, n)
    xp, yp = rng.uniform(0, H, n), rng.uniform(0, H, n)
    valid = rng.random(n) > 0.05
    pairs, dist = neighbours.frame_pairs(f, xp, yp, valid, 7.0, H)
    d = np.hypot(xp[:, None] - xp, yp[:, None] - yp)
    brute = np.argwhere(np.triu(d <= 7.0, 1) & (f[:, None] == f) & valid[:, None] & valid)
    assert {tuple(p) for p in np.sort(pairs, 1)} == {tuple(p) for p in brute}
    np.testing.assert_allclose(dist, d[pairs[:, 0], pairs[:, 1]])
    np.testing.assert_array_equal(neighbours.count_neighbours(f, xp, yp, valid, 5.0, H),
                                  neighbours.count_neighbours(f, xp, yp, valid, 5.0, H, pairs=(pairs, dist)))
    np.testing.assert_array_equal(neighbours.count_neighbours(f, xp, yp, valid, 5.0, H),
                                  (np.triu(d <= 5.0, 1) & (f[:, None] == f) & valid[:, None] & valid).sum(0)
                                  + (np.triu(d <= 5.0, 1) & (f[:, None] == f) & valid[:, None] & valid).sum(1))
    a, b = neighbours.groups(f, xp, yp, valid, 7, H), neighbours.groups(f, xp, yp, valid, 7, H, pairs=(pairs, dist))
    assert len(np.unique(a)) == len(np.unique(b)) and (np.unique(a[:, None] == a) == np.unique(b[:, None] == b)).all()
    assert ((a[:, None] == a) == (b[:, None] == b)).all()
    # the nearest other valid detection of the frame, as a brute-force search
    # finds it, or the search's radius where none is closer
    same = (f[:, None] == f) & valid[:, None] & valid & ~np.eye(n, dtype=bool)
    want = np.minimum(np.where(same, d, np.inf).min(1), 2.5)
    near = neighbours.nearest_distance(f, xp, yp, valid, 2.5, H, pairs=(pairs, dist))  # pairs searched farther
    np.testing.assert_allclose(near[valid], want[valid])
    assert np.isnan(near[~valid]).all() and (want[valid] < 2.5).any() and (want[valid] == 2.5).any()
    np.testing.assert_allclose(near, neighbours.nearest_distance(f, xp, yp, valid, 2.5, H))
    # deblending with the shared search equals its own search
    frames = torch.as_tensor(rng.poisson(30.0, (5, H, H)).astype(np.float64))
    est = np.column_stack([xp, yp, rng.uniform(100, 2000, n), np.full(n, 1.2)])
    rows = np.flatnonzero(valid)
    e1, e2 = est.copy(), est.copy()
    neighbours.deblend(e1, np.full(len(rows), 20.0), rows, f, frames)
    neighbours.deblend(e2, np.full(len(rows), 20.0), rows, f, frames, pairs=pairs)
    np.testing.assert_allclose(e1, e2)
    # light held fixed: the canvas of the rows near the asking ones suffices
    wx0 = np.clip(np.floor(xp).astype(int) - 3, 0, H - 7)
    wy0 = np.clip(np.floor(yp).astype(int) - 3, 0, H - 7)
    ask = rows[:30]
    full = neighbours.FixedLight(est, rows, f, wx0, wy0, 7, frames)
    near = neighbours.FixedLight(est, rows, f, wx0, wy0, 7, frames, near=ask)
    args = (f[ask], ask[:, None], wy0[ask], wx0[ask], 7, 7, frames.device, frames.dtype)
    torch.testing.assert_close(near.light(*args), full.light(*args))
    assert near.canvas.count_nonzero() < full.canvas.count_nonzero()


def test_held_light_is_each_emitters_psf_within_its_widened_window():
    """The canvas of light held fixed (`FixedLight`) is, pixel by pixel, the
    sum of each emitter's integrated Gaussian cut to its window widened by
    `FixedLight.pad` px and to the frame (emitters on the frame's edges
    included); `light` takes the asking emitters' own light out again, on
    their own windows (their light as rendered into the canvas) and on other
    boxes (rendered there)."""
    rng = np.random.default_rng(21)
    n, H, W, window = 40, 24, 20, 7
    f = rng.integers(0, 3, n)
    xp = np.r_[rng.uniform(0, W, n - 4), 0.2, W - 0.1, 3.0, 10.0]
    yp = np.r_[rng.uniform(0, H, n - 4), 5.0, 12.0, 0.3, H - 0.2]
    est = np.column_stack([xp, yp, rng.uniform(200, 3000, n), rng.uniform(0.8, 1.6, n)])
    wx0 = np.clip(np.floor(xp).astype(int) - window // 2, 0, W - window)
    wy0 = np.clip(np.floor(yp).astype(int) - window // 2, 0, H - window)
    rows = np.arange(n)
    frames = torch.zeros((3, H, W), dtype=torch.float64)
    held = neighbours.FixedLight(est, rows, f, wx0, wy0, window, frames)
    want = np.zeros((3, H, W))
    d = neighbours.FixedLight.pad
    for i in rows:
        own = render_emitters(est[i:i + 1, 0] * P, est[i:i + 1, 1] * P, est[i:i + 1, 2], est[i:i + 1, 3] * P, (H, W), P)
        cut = np.zeros((H, W), bool)
        cut[max(wy0[i] - d, 0):wy0[i] + window + d, max(wx0[i] - d, 0):wx0[i] + window + d] = True
        want[f[i]] += np.where(cut, own, 0.0)
    np.testing.assert_allclose(held.canvas.numpy(), want, rtol=1e-6, atol=1e-6)
    ask = rows[:10]
    light = held.light(f[ask], ask[:, None], wy0[ask], wx0[ask], window, window, frames.device, frames.dtype)
    for k, i in enumerate(ask):
        own = render_emitters(est[i:i + 1, 0] * P, est[i:i + 1, 1] * P, est[i:i + 1, 2], est[i:i + 1, 3] * P, (H, W), P)
        box = np.s_[wy0[i]:wy0[i] + window, wx0[i]:wx0[i] + window]
        np.testing.assert_allclose(light[k].numpy(), want[f[i]][box] - own[box], rtol=1e-6, atol=1e-6)
    # boxes one pixel off the emitters' own windows (inside the frame)
    by, bx = np.clip(wy0[ask] + 1, 0, H - window), np.clip(wx0[ask] - 1, 0, W - window)
    light = held.light(f[ask], ask[:, None], by, bx, window, window, frames.device, frames.dtype)
    for k, i in enumerate(ask):
        own = render_emitters(est[i:i + 1, 0] * P, est[i:i + 1, 1] * P, est[i:i + 1, 2], est[i:i + 1, 3] * P, (H, W), P)
        cut = np.zeros((H, W), bool)
        cut[max(wy0[i] - d, 0):wy0[i] + window + d, max(wx0[i] - d, 0):wx0[i] + window + d] = True
        box = np.s_[by[k]:by[k] + window, bx[k]:bx[k] + window]
        np.testing.assert_allclose(light[k].numpy(), (want[f[i]] - np.where(cut, own, 0.0))[box], rtol=1e-6, atol=1e-6)

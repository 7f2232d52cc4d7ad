"""The batched Poisson MLE of integrated Gaussian spots (napari_dsir.mle)."""

import numpy as np
import torch

from napari_dsir import mle


def test_amplitude_fit_equals_the_general_fit_with_position_and_sigma_held():
    """_fit_amplitudes (photons and background only, a linear model) reaches
    the Poisson MLE that _fit_batch approaches with x and y bounded to the
    start and sigma fixed (neighbours' light included): never a higher
    negative log-likelihood (measured: lower on every fit, where the bounded
    LM stops a little short), the same values and position bound to a few
    %."""
    rng = np.random.default_rng(13)
    G, w = 200, 7
    x0, y0 = rng.uniform(2.5, 4.5, G), rng.uniform(2.5, 4.5, G)
    n_true, b_true, s = rng.uniform(300, 4000, G), rng.uniform(5, 60, G), rng.uniform(0.9, 1.4, G)
    edges = torch.arange(w, dtype=torch.float64)
    ex = edges[None, None, :].expand(G, 1, w)
    th = torch.as_tensor(np.column_stack([x0, y0, n_true, b_true]))
    sf = torch.as_tensor(s)[:, None]
    mu, _ = mle.model(th, 1, 0, sf, ex, ex, None, jac=False)
    extra = torch.as_tensor(rng.uniform(0, 30, (G, w, w)))
    data = torch.as_tensor(rng.poisson((mu.reshape(G, w, w) + extra).numpy()).astype(np.float64)).reshape(G, -1)
    mask = torch.ones_like(data)
    init = th.clone()
    init[:, 2], init[:, 3] = 0.7 * init[:, 2], init[:, 3] + 10
    lo = torch.cat([th[:, :2], torch.full((G, 1), 1.0), torch.zeros(G, 1)], 1)
    hi = torch.cat([th[:, :2], torch.full((G, 2), float("inf"))], 1)
    a = mle.fit_amplitudes(data, mask, ex, ex, extra, init, sf, 0.0, 30, 1e-8)
    b = mle.fit_batch(data, mask, ex, ex, extra, init, lo, hi, 1, 0, sf, 0.0, 100, 1e-8)

    def nll(theta):
        m, _ = mle.model(theta, 1, 0, sf, ex, ex, extra, jac=False)
        return mle.poisson_nll(m, data, mask, 0.0)

    assert a[1].all()
    assert (nll(a[0]) <= nll(b[0]) + 1e-9).all()
    torch.testing.assert_close(a[0], b[0], rtol=0.03, atol=0.0)
    # the position bound from both Fisher informations
    bound = [torch.diagonal(torch.linalg.inv(f), dim1=1, dim2=2)[:, :2] for f in (a[2], b[2])]
    torch.testing.assert_close(bound[0], bound[1], rtol=0.05, atol=0.0)
    # and both near the truth the frames were drawn from
    assert abs(np.median(a[0][:, 2].numpy() / n_true) - 1) < 0.02
    # pixels outside the mask (a box cut by the frame's edge) do not count, in either fit
    cut = mask.clone().reshape(G, w, w)
    cut[: G // 2, :, -2:] = 0.0
    cut = cut.reshape(G, -1)
    ac = mle.fit_amplitudes(data, cut, ex, ex, extra, init, sf, 0.0, 30, 1e-8)
    bc = mle.fit_batch(data, cut, ex, ex, extra, init, lo, hi, 1, 0, sf, 0.0, 100, 1e-8)
    mc, _ = mle.model(ac[0], 1, 0, sf, ex, ex, extra, jac=False)
    mb_, _ = mle.model(bc[0], 1, 0, sf, ex, ex, extra, jac=False)
    assert ac[1].all() and (mle.poisson_nll(mc, data, cut, 0.0) <= mle.poisson_nll(mb_, data, cut, 0.0) + 1e-9).all()
    torch.testing.assert_close(ac[0], bc[0], rtol=0.1, atol=0.0)
    assert not torch.allclose(ac[0][: G // 2], a[0][: G // 2], rtol=1e-3)
    torch.testing.assert_close(ac[0][G // 2 :], a[0][G // 2 :], rtol=1e-3, atol=0.0)


def _amplitude_problem(G, seed, w=7):
    """G single emitters (position and sigma known) with neighbours' light
    held fixed: data, extra light, the true theta and sigma, as float64."""
    rng = np.random.default_rng(seed)
    x0, y0 = rng.uniform(2.5, 4.5, G), rng.uniform(2.5, 4.5, G)
    th = torch.as_tensor(np.column_stack([x0, y0, rng.uniform(200, 5000, G), rng.uniform(5, 200, G)]))
    sf = torch.as_tensor(rng.uniform(0.9, 1.4, G))[:, None]
    ex = torch.arange(w, dtype=torch.float64)[None, None, :].expand(G, 1, w)
    mu, _ = mle.model(th, 1, 0, sf, ex, ex, None, jac=False)
    extra = torch.as_tensor(rng.uniform(0, 50, (G, w, w)))
    data = torch.as_tensor(rng.poisson((mu.reshape(G, w, w) + extra).numpy()).astype(np.float64)).reshape(G, -1)
    return data, extra, th, sf, ex


def test_amplitude_fit_in_float32_reaches_the_float64_optimum():
    """The run fits in float32 (tol 1e-3): the amplitude fit's steps are
    accepted on the change of the likelihood, which float32 keeps (its value,
    a sum of ~1e5, it does not): photons and background within a few
    hundredths of their Cramer-Rao standard deviation of the float64 MLE."""
    data, extra, th, sf, ex = _amplitude_problem(400, 21)
    init = th.clone()
    init[:, 2], init[:, 3] = 0.6 * init[:, 2], init[:, 3] * 1.5 + 10
    mask = torch.ones_like(data)
    ref = mle.fit_amplitudes(data, mask, ex, ex, extra, init, sf, 0.0, 30, 1e-9)
    f32 = [t.float() for t in (data, mask, ex, extra, init, sf)]
    got = mle.fit_amplitudes(f32[0], f32[1], f32[2], f32[2], f32[3], f32[4], f32[5], 0.0, 15, 1e-3)
    assert got[1].all()
    sd = torch.sqrt(torch.diagonal(torch.linalg.inv(ref[2]), dim1=1, dim2=2))[:, 2:]
    off = ((got[0][:, 2:].double() - ref[0][:, 2:]) / sd).abs()
    assert off.max() < 0.1 and off.median() < 0.02


def test_batched_lm_keeps_each_groups_own_result():
    """Groups that converge early wait in the working set (unchanged) while
    the others iterate: every group's result is the one it reaches fitted
    alone."""
    data, extra, th, sf, ex = _amplitude_problem(60, 22)
    G = len(th)
    init = th.clone()
    init[:, :2] += torch.as_tensor(np.random.default_rng(3).uniform(-0.4, 0.4, (G, 2)))
    init[:, 2] *= torch.linspace(0.5, 1.0, G, dtype=torch.float64)  # some converge sooner than others
    lo = torch.cat([torch.zeros(G, 2), torch.full((G, 1), 1.0), torch.zeros(G, 1)], 1).double()
    hi = torch.cat([torch.full((G, 2), 7.0), torch.full((G, 2), float("inf"))], 1).double()
    mask = torch.ones_like(data)
    together = mle.fit_batch(data, mask, ex, ex, extra, init, lo, hi, 1, 0, sf, 0.0, 50, 1e-8)
    for g in range(G):
        s = slice(g, g + 1)
        alone = mle.fit_batch(data[s], mask[s], ex[s], ex[s], extra[s], init[s], lo[s], hi[s], 1, 0, sf[s], 0.0,
                               50, 1e-8)
        torch.testing.assert_close(together[0][s], alone[0], rtol=1e-9, atol=1e-9)
        assert bool(together[1][g]) == bool(alone[1][0])


def test_boxes_read_from_the_strided_windows_equal_the_flat_index():
    """`_boxes`: boxes inside the frame (a strided view) and boxes that cross
    its edge (clamped indices) hold the frames' pixels; `_kth_smallest` is
    torch's kthvalue."""
    rng = np.random.default_rng(5)
    stack = torch.as_tensor(rng.normal(size=(4, 20, 30)))
    f, y0, x0 = rng.integers(0, 4, 50), rng.integers(0, 14, 50), rng.integers(0, 24, 50)

    def by_index(bh, bw):
        rows = torch.clamp(torch.as_tensor(y0)[:, None] + torch.arange(bh), max=19)
        cols = torch.clamp(torch.as_tensor(x0)[:, None] + torch.arange(bw), max=29)
        ref = stack[torch.as_tensor(f)[:, None, None], rows[:, :, None], cols[:, None, :]]
        return mle.boxes(stack, f, y0, x0, bh, bw, rows, cols), ref

    for bh, bw in ((7, 7), (3, 5), (9, 8)):  # the last crosses the frame's edge for some boxes
        got, ref = by_index(bh, bw)
        assert torch.equal(got, ref)
    x = torch.as_tensor(rng.normal(size=(100, 49)))
    assert torch.equal(mle.kth_smallest(x, 13), torch.kthvalue(x, 13, dim=1).values)

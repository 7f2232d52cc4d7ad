"""Batched Poisson maximum likelihood of integrated Gaussian spots (camera
frames in photoelectrons), the estimator behind `napari_dsir.fit.refine`.

The expected counts of K emitters and a background over a box of pixels,

    mu(pixel) = b + sum_k N_k * PSF(pixel; x_k, y_k, s_k) [+ light held fixed]

with an integrated Gaussian PSF (erf over each pixel), and their Jacobian
(`model`); the Poisson negative log-likelihood (`poisson_nll`); Levenberg-Marquardt
with a Fisher-scoring Hessian over a batch of groups (`fit_batch`), and
Fisher scoring of the photons and background alone where position and sigma
are held (`fit_amplitudes`, a linear model); and the bridge from detections
to these solvers (`fit_groups`: boxes gathered from the frames, start values,
the Cramer-Rao bound from the Fisher information). Axes: theta (G, P) per
group, pixels flattened (G, npix); positions in camera px, counts in e-.
"""

from __future__ import annotations

import math

import numpy as np
import torch

_SQRT2 = math.sqrt(2.0)
_INV_SQRT2PI = 1.0 / math.sqrt(2.0 * math.pi)
N_MIN = 1.0  # photoelectrons, lower bound of N



def axis_terms(edges_lo, centre, s, derivatives=True):
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


def model(theta, K, ns, s_fixed, ex_lo, ey_lo, extra, jac=True, bshape=None):
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
    ax, dax, dasx = axis_terms(ex_lo, xs, ss)  # (G, K, BW)
    ay, day, dasy = axis_terms(ey_lo, ys, ss)  # (G, K, BH)
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
    """``data * log(data)`` (0 where data is 0): the constant part of `poisson_nll`."""
    return torch.where(data > 0, data * torch.log(torch.clamp(data, min=1e-9)), torch.zeros_like(data))


def poisson_nll(mu, data, mask, v, dlogd=None):
    """Poisson negative log-likelihood less its value at mu = data (half the
    deviance: small numbers near the optimum, stable in float32); ``dlogd``:
    `_data_log_data` of ``data``, when the caller has it."""
    m = torch.clamp(mu + v, min=1e-9)
    if dlogd is None:
        dlogd = _data_log_data(data)
    return (mask * (m - data - data * torch.log(m) + dlogd)).sum(-1)


# --------------------------------------------------------------------------
# one batch of groups of K emitters


def fit_batch(data, mask, ex_lo, ey_lo, extra, init, lo, hi, K, ns, s_fixed, v, max_iter, tol, bshape=None):
    """LM on G groups. data, mask (G, npix) e-; init/lo/hi (G, P); ``bshape``: see `model`.
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
    mu, J = model(th, K, ns, sf, exl, eyl, ext, bshape=bs)
    nll = poisson_nll(mu, d, mk, v, dld)
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
        mu_c, J_c = model(cand, K, ns, sf, exl, eyl, ext, bshape=bs)
        nll_c = poisson_nll(mu_c, d, mk, v, dld)
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
    mu, J = model(theta_out, K, ns, s_fixed, ex_lo, ey_lo, extra, bshape=bshape)
    mv = torch.clamp(mu + v, min=1e-9)
    fisher = (J * (mask / mv)[:, None, :]) @ J.transpose(1, 2)
    # goodness of fit: Pearson chi-square of the residuals (data and model
    # offset by the read-noise variance, as in the likelihood)
    chi2 = (mask * (d_all - mv) ** 2 / mv).sum(-1)
    return theta_out, conv, fisher, chi2


def fit_amplitudes(data, mask, ex_lo, ey_lo, extra, init, s_fixed, v, max_iter, tol, bshape=None):
    """Photons and background of G single emitters whose position and sigma
    are held (theta = [x, y, N, b]): the expected counts are linear in N and
    b, so Fisher scoring (iteratively reweighted least squares, a 2x2 solve
    per fit, halving a step that would raise the negative log-likelihood)
    reaches the Poisson MLE in a few iterations, for a fraction of the cost
    of `fit_batch`; converged fits leave the working set (in steps of a
    fifth of it). Returns what `fit_batch` returns, the Fisher information
    over all four parameters (for the position's bound). ``bshape``: see `model`.

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
    psf_all, j_unit = model(unit, 1, 0, s_fixed, ex_lo, ey_lo, None, bshape=bshape)
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

    def change(dn, db, lm_new, lm_old, i=slice(None)):  # of `poisson_nll` by a step of dn, db
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
        new_n = torch.clamp(n_ph + step_n, min=N_MIN)
        new_b = torch.clamp(b + step_b, min=0.0)
        m_new, lm_new = expected(new_n, new_b)
        delta = change(new_n - n_ph, new_b - b, lm_new, lm)
        better = torch.isfinite(delta) & (delta <= 0)
        if not bool(better.all()):  # half the step, on those rows only
            i = torch.nonzero(~better)[:, 0]
            half_n = torch.clamp(n_ph[i] + 0.5 * step_n[i], min=N_MIN)
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


def boxes(stack, f, y0, x0, bh, bw, rows, cols):
    """(G, bh, bw) boxes of a (frame, y, x) tensor: frames ``f``, corners
    ``y0``, ``x0`` (numpy); ``rows`` (G, bh) and ``cols`` (G, bw): their
    pixel indices, clamped into the frame (only read when a box crosses its
    edge; None when none can). Boxes inside the frame are read from a
    strided view of all windows (faster than a flat index)."""
    H, W = stack.shape[1:]
    dev = stack.device
    fi = torch.as_tensor(f, device=dev)
    if len(f) and y0.max() + bh <= H and x0.max() + bw <= W:
        windows = stack.unfold(1, bh, 1).unfold(2, bw, 1)  # (frame, y0, x0, bh, bw), a view
        return windows[fi, torch.as_tensor(y0, device=dev), torch.as_tensor(x0, device=dev)]
    return stack.reshape(-1)[(fi[:, None, None] * H + rows[:, :, None]) * W + cols[:, None, :]]


def kth_smallest(x, k):
    """The ``k``-th smallest (1-based) of each row of a (R, n) tensor: no full
    sort (`torch.kthvalue`; on the CPU numpy's partition, 5-8x faster)."""
    if x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64):
        return torch.from_numpy(np.partition(x.numpy(), k - 1, axis=1)[:, k - 1])
    return torch.kthvalue(x, k, dim=1).values


def fit_groups(
    f, box, members, start_xy, s0, wx0, wy0, extra, *, data_e, H, W, window, fit_sigma, s_lo, s_hi,
    v, max_iter, tol, batch_elements, shared_sigma, held, quartile, background_shape=None, beyond=0.0,
):
    """Fit G groups of K emitters (members (G, K) row indices) on union boxes
    box (G, 4) = (y0, x0, height, width); ``background_shape`` (H, W): the
    background's shape over the frames (None: flat in each box). A position
    stays in its member's window, which the frame clips; ``beyond`` (px):
    where that window touches the frame's edge, the position may also go
    this far past it (the box's pixels stay in the frame). Returns per member arrays:
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
        data = boxes(data_e, f[bi], box[bi, 0], box[bi, 1], bh, bw, rows, cols)  # (g, bh, bw)
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
        if extra is not None:  # a FixedLight: light of neighbours held fixed
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
                b0 = kth_smallest(level, bh * bw // 4 + 1)
            else:
                big = torch.where(mask.reshape(g, -1) > 0, level, torch.full_like(flat, float("inf")))
                cnt = mask.reshape(g, -1).sum(-1).long()
                if bool((cnt == cnt[0]).all()):
                    b0 = kth_smallest(big, int(cnt[0]) // 4 + 1)
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
        ay, _, _ = axis_terms((y0[:, None, None] + cy[:, :, None] + off).to(dt), ys[:, :, None], ss[:, :, None])
        ax, _, _ = axis_terms((x0[:, None, None] + cx[:, :, None] + off).to(dt), xs[:, :, None], ss[:, :, None])
        share = torch.clamp(ay.sum(-1) * ax.sum(-1), min=0.05)
        n0 = torch.clamp(light / share, min=10.0)

        s_init = ss if ns == K else ss.mean(1, keepdim=True)
        parts0 = [xs, ys, n0] + ([s_init] if ns else []) + [b0[:, None]]
        init = torch.cat(parts0, dim=1)
        wx = torch.as_tensor(wx0[mb], dtype=dt, device=dev)
        wy = torch.as_tensor(wy0[mb], dtype=dt, device=dev)
        inf = torch.full((g, K), float("inf"), dtype=dt, device=dev)
        lo_p = [wx, wy, torch.full_like(xs, N_MIN)] + ([torch.full_like(s_init, s_lo)] if ns else [])
        hi_p = [wx + window, wy + window, inf] + ([torch.full_like(s_init, s_hi)] if ns else [])
        if beyond > 0:  # windows on the frame's edge: an emitter outside the frame shining in
            lo_p[0], lo_p[1] = torch.where(wx <= 0, wx - beyond, wx), torch.where(wy <= 0, wy - beyond, wy)
            hi_p[0] = torch.where(wx + window >= W, wx + window + beyond, hi_p[0])
            hi_p[1] = torch.where(wy + window >= H, wy + window + beyond, hi_p[1])
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
            theta, conv, fisher, chi2 = fit_amplitudes(flat, mask.reshape(g, -1), ex_lo, ey_lo, ex_t, init, ss,
                                                         v, max_iter, tol, bshape=bs)
        else:
            theta, conv, fisher, chi2 = fit_batch(
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

"""Poisson MLE refinement (fit.refine) on frames simulated with known emitters."""

import numpy as np
import pytest
import torch

from napari_dsir import fit
from napari_dsir.camera import Camera
from napari_dsir.errors import DSIRError
from napari_dsir.localize import CROWDED_SIGMA_REF_PX, crowded_extra, density_factor
from napari_dsir.locs import Localizations
from napari_dsir.simulate import FWHM_TO_SIGMA, render_airy, render_emitters

P = 100.0  # nm per camera pixel


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small batched ops: one torch thread is fastest on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _grid_scene(seed, n_frames=25, size=40, photons=(300, 5000), bg=(10, 50), fwhm=(200, 300)):
    """Isolated emitters: a 3x3 grid per frame, 11 px apart. Returns the
    expected photons per pixel (frame, y, x), truth and a start 30 nm off."""
    rng = np.random.default_rng(seed)
    g = np.arange(3) * 11 + 9.5
    gx, gy = (a.ravel() for a in np.meshgrid(g, g))
    mus, rows = [], []
    for f in range(n_frames):
        x = (gx + rng.uniform(-0.5, 0.5, 9)) * P
        y = (gy + rng.uniform(-0.5, 0.5, 9)) * P
        n = rng.uniform(*photons, 9)
        s = rng.uniform(*fwhm, 9) * FWHM_TO_SIGMA
        b = rng.uniform(*bg)
        mus.append(render_emitters(x, y, n, s, (size, size), P) + b)
        rows.append(np.column_stack([np.full(9, f), x, y, n, s, np.full(9, b)]))
    t = np.concatenate(rows)
    truth = dict(frame=t[:, 0].astype(int), x=t[:, 1], y=t[:, 2], photons=t[:, 3], sigma=t[:, 4], bg=t[:, 5])
    jitter = rng.normal(0, 30, (2, len(t)))
    start = Localizations(truth["frame"], truth["x"] + jitter[0], truth["y"] + jitter[1])
    return np.stack(mus), truth, start, rng


def _errors(res, truth):
    ok = res.ok
    ex, ey = res.locs.x[ok] - truth["x"][ok], res.locs.y[ok] - truth["y"][ok]
    u = res.locs.uncertainty[ok]
    return ex, ey, u


@pytest.fixture(scope="module")
def isolated():
    mu, truth, start, rng = _grid_scene(0)
    frames = rng.poisson(mu).astype(np.float32)
    return frames, truth, start


def test_isolated_emitters_reach_the_cramer_rao_bound(isolated):
    frames, truth, start = isolated
    res = fit.refine(torch.as_tensor(frames), start, P)
    assert len(res.locs) == len(start) and res.ok.mean() > 0.97, res.summary()
    ex, ey, u = _errors(res, truth)
    n = len(ex)
    for e in (ex, ey):  # no bias beyond 3 standard errors
        assert abs(e.mean()) < 3 * e.std() / np.sqrt(n)
    z = np.concatenate([ex / u, ey / u])
    assert 0.8 < z.std() < 1.25
    rmse = np.sqrt(np.mean(np.r_[ex, ey] ** 2))
    assert rmse < 1.25 * np.sqrt(np.mean(u**2))
    ok = res.ok
    assert abs(np.median(res.locs.photons[ok] / truth["photons"][ok]) - 1) < 0.05
    assert abs(np.median(res.locs.background[ok] / truth["bg"][ok]) - 1) < 0.03
    assert abs(np.median(res.locs.sigma[ok] / truth["sigma"][ok]) - 1) < 0.05
    assert set(res.summary()) <= set(fit.STATUS.values())


def test_camera_frames_in_adu(isolated):
    """ADU of a camera with baseline 400 and 0.5 e-/ADU, QE 0.8: the same
    photons after Camera.to_photons; numpy input and a first_frame offset."""
    _, truth, start = isolated
    mu, _, _, rng = _grid_scene(0)
    cam = Camera(baseline=400, sensitivity=0.5, qe=0.8)
    electrons = rng.poisson(mu * cam.qe)
    adu = np.round(cam.baseline + electrons / cam.sensitivity).astype(np.uint16)
    shifted = Localizations(start.frame + 100, start.x, start.y)
    res = fit.refine(cam.to_photons(adu), shifted, P, cam, first_frame=100)
    ok = res.ok
    assert ok.mean() > 0.97
    assert np.array_equal(res.locs.frame, shifted.frame)
    assert abs(np.median(res.locs.photons[ok] / truth["photons"][ok]) - 1) < 0.05
    ex, ey, u = _errors(res, truth)
    # fewer photoelectrons than photons: the bound follows the photoelectrons
    assert 0.8 < np.concatenate([ex / u, ey / u]).std() < 1.25


def test_emccd_excess_noise_doubles_the_variance():
    mu, truth, start, rng = _grid_scene(1, photons=(1000, 3000), bg=(10, 20))
    gain = 100.0
    em = Camera(baseline=100, sensitivity=4.8, em_gain=gain)
    electrons = rng.poisson(mu)
    amplified = rng.gamma(np.maximum(electrons, 1e-9), gain) * (electrons > 0)
    adu = np.round(em.baseline + amplified / em.sensitivity)
    r_em = fit.refine(torch.as_tensor(em.to_photons(adu)), start, P, em)
    r_poisson = fit.refine(torch.as_tensor(rng.poisson(mu).astype(np.float32)), start, P)
    ok = r_em.ok & r_poisson.ok
    assert ok.mean() > 0.95
    ratio = np.median(r_em.locs.uncertainty[ok] / r_poisson.locs.uncertainty[ok])
    assert abs(ratio - np.sqrt(2)) < 0.1
    ex, ey, u = _errors(r_em, truth)
    assert 0.8 < np.concatenate([ex / u, ey / u]).std() < 1.25
    assert abs(np.median(r_em.locs.photons[r_em.ok] / truth["photons"][r_em.ok]) - 1) < 0.05


def test_lone_free_fits_chi_square_checks_the_camera_model(isolated):
    """The reduced chi-square of lone free fits is about 1 with the right
    camera; photons counted 3x too high (a sensitivity set 3x too high) or
    3x too low make it about 3 or 1/3, and `fit_report` / `camera_doubt`
    say so."""
    frames, truth, start = isolated

    def check(scale):
        res = fit.refine(torch.as_tensor(frames * scale), start, P)
        hist = fit.chi2_histogram(res.free_chi2)
        return fit.fit_report(res.summary(), res.locs, hist)

    right = check(1.0)
    assert right["n_free_chi2"] > 200 and 0.85 < right["median_free_chi2"] < 1.15
    assert not right["camera_doubtful"] and fit.camera_doubt(right) is None
    high, low = check(3.0), check(1 / 3)
    assert 2.5 < high["median_free_chi2"] < 3.5 and "overestimated" in fit.camera_doubt(high)
    assert 0.25 < low["median_free_chi2"] < 0.4 and "underestimated" in fit.camera_doubt(low)
    # too few fits to tell: no verdict
    few = fit.fit_report({"ok": 5}, None, fit.chi2_histogram(np.full(fit.CHI2_MIN_FITS - 1, 3.0)))
    assert few["median_free_chi2"] == pytest.approx(3.0, rel=0.06) and fit.camera_doubt(few) is None
    # the histogram adds up over blocks and keeps the median to its bin
    v = np.random.default_rng(2).lognormal(0.2, 0.3, 1000)
    h = fit.chi2_histogram(v[:400]) + fit.chi2_histogram(v[400:]) + fit.chi2_histogram([np.nan, -1.0])
    assert fit.chi2_median(h)[1] == 1000
    assert fit.chi2_median(h)[0] == pytest.approx(np.median(v), rel=0.06)
    assert np.isnan(fit.chi2_median(np.zeros(80))[0])


def test_read_noise_enters_the_bound():
    mu, truth, start, rng = _grid_scene(2, photons=(500, 2000), bg=(2, 4))
    cam = Camera(baseline=100, sensitivity=1.0, read_noise=4.0)
    adu = 100 + rng.poisson(mu) + rng.normal(0, 4.0, mu.shape)
    res = fit.refine(torch.as_tensor(cam.to_photons(adu)), start, P, cam)
    quiet = fit.refine(torch.as_tensor(cam.to_photons(adu)), start, P, Camera(baseline=100))
    ok = res.ok & quiet.ok
    assert ok.mean() > 0.95
    assert np.median(res.locs.uncertainty[ok] / quiet.locs.uncertainty[ok]) > 1.05
    ex, ey, u = _errors(res, truth)
    assert 0.8 < np.concatenate([ex / u, ey / u]).std() < 1.25


def _pairs(seed, n_frames=40, sep=150.0):
    rng = np.random.default_rng(seed)
    frames, xs, ys = [], [], []
    for _ in range(n_frames):
        c = rng.uniform(9, 11, 2) * P
        a = rng.uniform(0, np.pi)
        x = c[0] + np.array([-0.5, 0.5]) * sep * np.cos(a)
        y = c[1] + np.array([-0.5, 0.5]) * sep * np.sin(a)
        mu = render_emitters(x, y, np.array([2000.0, 2000.0]), np.full(2, 250 * FWHM_TO_SIGMA), (20, 20), P) + 20
        frames.append(rng.poisson(mu))
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    fr = np.repeat(np.arange(n_frames), 2)
    start = Localizations(fr, x + rng.normal(0, 30, len(x)), y + rng.normal(0, 30, len(x)))
    return np.stack(frames).astype(np.float32), x, y, start


def _pair_rmse(res, x, y):
    """Per-axis RMSE over frames where both fits are ok, either assignment."""
    fx, fy = res.locs.x.reshape(-1, 2), res.locs.y.reshape(-1, 2)
    tx, ty = x.reshape(-1, 2), y.reshape(-1, 2)
    d1 = (fx - tx) ** 2 + (fy - ty) ** 2
    d2 = (fx[:, ::-1] - tx) ** 2 + (fy[:, ::-1] - ty) ** 2
    d = np.where(d1.sum(1, keepdims=True) <= d2.sum(1, keepdims=True), d1, d2)
    both = res.ok.reshape(-1, 2).all(1)
    return np.sqrt(d[both].mean() / 2), both.mean()


def test_close_pair_joint_fit_beats_single_fits():
    frames, x, y, start = _pairs(3)
    joint = fit.refine(torch.as_tensor(frames), start, P)
    single = fit.refine(torch.as_tensor(frames), start, P, max_group=1)
    rmse_joint, ok_joint = _pair_rmse(joint, x, y)
    rmse_single, _ = _pair_rmse(single, x, y)
    assert ok_joint > 0.9
    # single fits hold the partner's light at its (deblended) first estimate:
    # about twice the joint fit's error on a pair 3 px apart
    assert rmse_joint < 0.6 * rmse_single
    assert rmse_joint < 1.5 * np.nanmedian(joint.locs.uncertainty)
    assert abs(np.median(joint.locs.photons[joint.ok]) / 2000 - 1) < 0.05


def test_large_groups_fit_with_neighbours_held_fixed():
    """A ring of 6 emitters 250 nm from its centre: more than max_group, so
    each is fitted with its nearest neighbours free and the others fixed."""
    rng = np.random.default_rng(4)
    frames, xs, ys = [], [], []
    n_frames = 20
    for _ in range(n_frames):
        a = rng.uniform(0, 2 * np.pi) + np.arange(6) * np.pi / 3
        x, y = 1500 + 250 * np.cos(a), 1500 + 250 * np.sin(a)
        mu = render_emitters(x, y, np.full(6, 3000.0), np.full(6, 110.0), (30, 30), P) + 15
        frames.append(rng.poisson(mu))
        xs.append(x)
        ys.append(y)
    x, y = np.concatenate(xs), np.concatenate(ys)
    jitter = rng.normal(0, 30, (2, len(x)))
    start = Localizations(np.repeat(np.arange(n_frames), 6), x + jitter[0], y + jitter[1])
    frames = torch.as_tensor(np.stack(frames).astype(np.float32))
    res = fit.refine(frames, start, P, max_group=3)
    assert res.ok.mean() > 0.9, res.summary()
    ok = res.ok
    e = np.r_[res.locs.x[ok] - x[ok], res.locs.y[ok] - y[ok]]
    assert np.sqrt(np.mean(e**2)) < 2.0 * np.sqrt(np.mean(res.locs.uncertainty[ok] ** 2))
    single = fit.refine(frames, start, P, max_group=1)
    e1 = np.r_[single.locs.x - x, single.locs.y - y][np.r_[single.ok, single.ok]]
    assert np.sqrt(np.mean(e**2)) < np.sqrt(np.mean(e1**2))


def test_failed_fits_are_flagged_not_dropped():
    rng = np.random.default_rng(5)
    one = render_emitters(np.array([1050.0]), np.array([1050.0]), np.array([2000.0]), np.array([110.0]), (20, 20), P)
    frames = rng.poisson(one + 20, (10, 20, 20)).astype(np.float32)
    far = Localizations(np.arange(10), np.full(10, 1050.0 + 320), np.full(10, 1050.0))
    res = fit.refine(torch.as_tensor(frames), far, P)
    assert len(res.locs) == 10 and not res.ok.any()
    assert (res.status == fit.MOVED).all()
    np.testing.assert_array_equal(res.locs.x, far.x)
    assert np.isnan(res.locs.photons).all() and np.isnan(res.locs.uncertainty).all()
    assert res.n_failed == 10 and res.summary() == {fit.STATUS[fit.MOVED]: 10}

    noise = rng.poisson(20.0, (200, 20, 20)).astype(np.float32)
    starts = Localizations(np.arange(200), rng.uniform(800, 1200, 200), rng.uniform(800, 1200, 200))
    res = fit.refine(torch.as_tensor(noise), starts, P)
    assert len(res.locs) == 200 and (~res.ok).mean() > 0.8
    # a fit kept as OK always locates its spot within its window (regression:
    # noise fits on Bundled Tubes HD reported precisions of 200 um)
    assert np.all(res.locs.uncertainty[res.ok] <= 3 * P)
    strict = fit.refine(torch.as_tensor(noise), starts, P, min_snr=3)
    assert (~strict.ok).mean() > 0.97


def test_outside_and_nonfinite_starts_and_bad_input():
    frames = torch.as_tensor(np.random.default_rng(6).poisson(20.0, (2, 12, 12)).astype(np.float32))
    locs = Localizations([0, 1, 1], [float("nan"), -50.0, 600.0], [600.0, 600.0, 600.0])
    res = fit.refine(frames, locs, P)
    assert list(res.status[:2]) == [fit.OUTSIDE, fit.OUTSIDE]
    # on the far edge (the localizer's offsets reach it) is inside; beyond it is not
    edge = fit.refine(frames, Localizations([0, 0, 0], [1200.0, 1200.5, 600.0], [600.0, 600.0, 1200.0]), P)
    assert list(edge.status == fit.OUTSIDE) == [False, True, False]
    # held there (a neighbour within isolation_px), the position on the edge is no failure
    mu = render_emitters(np.array([1190.0, 1000.0]), np.array([600.0, 600.0]), np.full(2, 3000.0),
                         np.full(2, 110.0), (12, 12), P) + 20
    spots = torch.as_tensor(np.random.default_rng(7).poisson(mu, (3, 12, 12)).astype(np.float32))
    held = fit.refine(spots, Localizations([0, 0, 1, 1, 2, 2], [1200.0, 1000.0] * 3, [600.0] * 6), P,
                      isolation_px=5.0)
    assert (held.status == fit.CROWDED).all(), held.summary()
    empty = fit.refine(frames, Localizations.empty(), P)
    assert len(empty.locs) == 0 and empty.locs.photons is not None
    with pytest.raises(DSIRError, match="frames"):
        fit.refine(frames, Localizations([5], [600.0], [600.0]), P)
    with pytest.raises(DSIRError, match="odd"):
        fit.refine(frames, locs, P, window=6)
    with pytest.raises(DSIRError, match="smaller"):
        fit.refine(frames, locs, P, window=13)
    with pytest.raises(DSIRError, match="pixel size"):
        fit.refine(frames, locs, -1)
    with pytest.raises(DSIRError, match="sigma_init_nm"):
        fit.refine(frames, locs, P, fit_sigma=False)
    with pytest.raises(DSIRError, match="sensitivity"):
        fit.refine(frames, locs, P, Camera(sensitivity=0))
    with pytest.raises(DSIRError, match=r"\(frame, y, x\)"):
        fit.refine(frames[None], locs, P)


def test_fixed_sigma(isolated):
    frames, truth, start = isolated
    sub = start.select(np.arange(45))
    res = fit.refine(frames, sub, P, fit_sigma=False, sigma_init_nm=105.0)
    assert res.ok.mean() > 0.9
    np.testing.assert_allclose(res.locs.sigma[res.ok], 105.0)


def test_float32_as_on_a_gpu(isolated):
    """float32 (the GPU default) gives the same fits; other columns are kept."""
    frames, truth, start = isolated
    start = Localizations(start.frame, start.x, start.y, intensity=np.arange(len(start), dtype=float))
    before = torch.get_num_threads()
    r64 = fit.refine(frames, start, P, threads=2)
    assert torch.get_num_threads() == before
    r32 = fit.refine(frames.astype(np.float64), start, P, dtype=torch.float32)
    assert r32.ok.mean() > 0.97
    both = r32.ok & r64.ok
    assert np.abs(r32.locs.x[both] - r64.locs.x[both]).max() < 0.5  # nm
    np.testing.assert_allclose(r32.locs.uncertainty[both], r64.locs.uncertainty[both], rtol=1e-3)
    np.testing.assert_array_equal(r32.locs.intensity, start.intensity)


def test_duplicate_detections_merge_into_the_strongest():
    rng = np.random.default_rng(7)
    one = render_emitters(np.array([1050.0]), np.array([1030.0]), np.array([2000.0]), np.array([110.0]), (20, 20), P)
    frames = rng.poisson(one + 20, (20, 20, 20)).astype(np.float32)
    x = np.repeat(1050.0, 40) + np.tile([-20.0, 20.0], 20)
    strength = rng.uniform(0, 1, 40)
    locs = Localizations(np.repeat(np.arange(20), 2), x, np.full(40, 1030.0), intensity=strength)
    res = fit.refine(frames, locs, P, merge_px=0.5)
    weaker = strength < np.repeat(np.maximum(strength[0::2], strength[1::2]), 2)
    assert (res.status[weaker] == fit.DUPLICATE).all() and res.ok[~weaker].mean() > 0.9
    assert abs(np.median(res.locs.photons[res.ok]) / 2000 - 1) < 0.05
    np.testing.assert_array_equal(res.locs.x[weaker], x[weaker])
    split = fit.refine(frames, locs, P)  # without merging, the copies share the photons
    assert np.nanmedian(split.locs.photons) < 0.8 * 2000


def _scmos_scene(seed, n_frames=40, photons=(500, 5000)):
    """The calibrated benchmark's sCMOS camera (baseline 400 ADU, 0.5 e-/ADU,
    read noise 1.5 e-), FWHM 250-350 nm, background 35 photons/px; isolated emitters."""
    mu, truth, start, rng = _grid_scene(seed, n_frames=n_frames, photons=photons, bg=(35, 35), fwhm=(250, 350))
    cam = Camera(baseline=400, sensitivity=0.5, read_noise=1.5)
    electrons = rng.poisson(mu) + rng.normal(0, 1.5, mu.shape)
    adu = np.round(cam.baseline + electrons / cam.sensitivity)
    return torch.as_tensor(cam.to_photons(adu).astype(np.float32)), truth, start, cam


def test_calibrated_on_isolated_emitters_with_reconstructs_settings():
    """As reconstruct calls it (float32, its shift, group, iteration and
    isolation settings): few flags, RMSE at the Cramer-Rao bound, err /
    uncertainty of unit spread."""
    from napari_dsir import reconstruct as R

    frames, truth, start, cam = _scmos_scene(8)
    res = fit.refine(frames, start, P, cam, **R.fit_settings())
    assert res.ok.mean() > 0.97, res.summary()
    ex, ey, u = _errors(res, truth)
    z = np.concatenate([ex / u, ey / u])
    assert 0.8 < z.std() < 1.25
    rmse = np.sqrt(np.mean(np.r_[ex, ey] ** 2))
    assert rmse < 1.2 * np.sqrt(np.mean(u**2))
    bright = truth["photons"] > 1000
    assert np.sqrt(np.mean(np.r_[ex, ey][np.r_[bright[res.ok], bright[res.ok]]] ** 2)) < 10.0  # nm per axis
    assert abs(np.median(res.locs.photons[res.ok] / truth["photons"][res.ok]) - 1) < 0.05


def test_cramer_rao_bound_matches_the_scatter_over_noise_realisations():
    """One emitter, many noise draws: the reported uncertainty is the
    observed standard deviation of x and y (and the Mortensen-type bound)."""
    rng = np.random.default_rng(9)
    n, N, b, s = 400, 1500.0, 35.0, 130.0
    mu = render_emitters(np.array([1030.0]), np.array([1070.0]), np.array([N]), np.array([s]), (21, 21), P) + b
    frames = torch.as_tensor(rng.poisson(mu, (n, 21, 21)).astype(np.float32))
    start = Localizations(np.arange(n), 1030.0 + rng.normal(0, 25, n), 1070.0 + rng.normal(0, 25, n))
    res = fit.refine(frames, start, P, dtype=torch.float32, max_shift_px=1.0, max_group=3)
    assert res.ok.mean() > 0.99
    sd = np.sqrt(0.5 * (np.var(res.locs.x[res.ok]) + np.var(res.locs.y[res.ok])))
    unc = np.median(res.locs.uncertainty[res.ok])
    assert abs(sd / unc - 1) < 0.12
    # Mortensen et al. 2010 (MLE, Poisson): sa^2 / N (16/9 + 8 pi sa^2 b / (N a^2)), sa^2 = s^2 + a^2/12;
    # the integrated-Gaussian Fisher bound is a little below it (no 16/9 excess for the fitted sigma)
    sa2 = s**2 + P**2 / 12
    mortensen = np.sqrt(sa2 / N * (16 / 9 + 8 * np.pi * sa2 * b / (N * P**2)))
    assert 0.8 < unc / mortensen < 1.2


@pytest.fixture(scope="module")
def undetected_neighbour():
    """60 frames of an emitter (1,500 photons) with a brighter one 500 nm
    away that was not detected (``pair``), the same emitter alone
    (``alone``), and the detections: the first emitter, 25 nm off."""
    rng = np.random.default_rng(10)
    n = 60
    xs = np.array([1000.0, 1500.0])
    mu = render_emitters(xs, np.array([1000.0, 1000.0]), np.array([1500.0, 3000.0]), np.full(2, 130.0), (20, 20), P)
    lone = render_emitters(xs[:1], np.array([1000.0]), np.array([1500.0]), np.full(1, 130.0), (20, 20), P)
    start = Localizations(np.arange(n), 1000.0 + rng.normal(0, 25, n), 1000.0 + rng.normal(0, 25, n))
    pair = torch.as_tensor(rng.poisson(mu + 35, (n, 20, 20)).astype(np.float32))
    alone = torch.as_tensor(rng.poisson(lone + 35, (n, 20, 20)).astype(np.float32))
    return pair, alone, start


def test_bad_fits_next_to_an_undetected_emitter_can_be_flagged(undetected_neighbour):
    """A bright emitter 500 nm away that was not detected pulls the fit; the
    chi-square of the residuals flags it (max_chi2_sigma) but not lone emitters."""
    pair, alone, start = undetected_neighbour
    assert fit.refine(pair, start, P).ok.mean() > 0.5  # off by default
    flagged = fit.refine(pair, start, P, max_chi2_sigma=4)
    assert (flagged.status == fit.BAD_FIT).mean() > 0.5
    assert fit.refine(alone, start, P, max_chi2_sigma=4).ok.mean() > 0.95


def test_chi2_scale_widens_the_uncertainty_of_fits_the_model_does_not_explain(undetected_neighbour):
    """chi2_scale: a free fit's uncertainty is its bound times the square
    root of its reduced chi-square where that is above 1. Next to an
    undetected neighbour the errors then match the uncertainty better; a
    lone emitter's barely changes; positions are the same."""
    pair, alone, start = undetected_neighbour
    for frames, lone in ((pair, False), (alone, True)):
        plain = fit.refine(frames, start, P, max_group=1)
        scaled = fit.refine(frames, start, P, max_group=1, chi2_scale=True)
        np.testing.assert_array_equal(scaled.status, plain.status)
        np.testing.assert_allclose(scaled.locs.x, plain.locs.x)
        ok = plain.ok & np.isfinite(plain.free_chi2)
        assert ok.mean() > 0.9
        factor = scaled.locs.uncertainty[ok] / plain.locs.uncertainty[ok]
        np.testing.assert_allclose(factor, np.sqrt(np.maximum(plain.free_chi2[ok], 1.0)), rtol=1e-6)
        z = [np.std((r.locs.x[ok] - 1000.0) / r.locs.uncertainty[ok]) for r in (plain, scaled)]
        if lone:
            assert np.median(factor) < 1.06 and abs(z[1] - 1) < 0.25, (np.median(factor), z)
        else:
            assert np.median(factor) > 1.3 and abs(z[1] - 1) < abs(z[0] - 1), (np.median(factor), z)


def test_pulled_fits_are_held_at_the_start_and_reported_with_the_networks_error(undetected_neighbour):
    """hold_pulled: the fits pulled by an undetected neighbour (flagged
    BAD_FIT or MOVED without it) keep their start, with photons fitted there
    and the crowded error in their bound (status PULLED, reported, not
    failed); lone emitters stay free fits; the other rows are placed as
    without the option (to 0.1 nm)."""
    pair, alone, start = undetected_neighbour
    kw = dict(max_group=1, max_chi2_sigma=4, max_shift_px=1.0, crowded_error_px=(0.2,))
    plain = fit.refine(pair, start, P, **kw)
    held = fit.refine(pair, start, P, hold_pulled=True, **kw)
    was = np.isin(plain.status, (fit.BAD_FIT, fit.MOVED))
    assert was.mean() > 0.5
    np.testing.assert_array_equal(held.status == fit.PULLED, was)
    assert held.n_failed == plain.n_failed - was.sum()
    np.testing.assert_array_equal(held.locs.x[was], start.x[was])
    assert np.isfinite(held.locs.photons[was]).all()
    assert (held.locs.uncertainty[was] > 20.0).all()  # the network's 0.2 px, in quadrature
    # held at the start, their photons are those of the emitter there (its neighbour's light is not modelled)
    assert abs(np.median(held.locs.photons[was]) / 1500 - 1) < 0.5
    np.testing.assert_allclose(held.locs.x[plain.ok], plain.locs.x[plain.ok], atol=0.1)
    assert "pulled" in fit.fit_summary(fit.fit_report(held.summary(), held.locs))
    none = fit.fit_report({"bad fit": 3}, Localizations([0, 1, 2], [1.0] * 3, [1.0] * 3,
                                                        photons=[np.nan] * 3, uncertainty=[np.nan] * 3))
    assert fit.fit_summary(none).startswith("no fitted photons or uncertainty; 0 free fits")  # not "median nan"
    assert fit.fit_report(held.summary(), held.locs)["pulled"] == was.sum()
    # their own calibrated error when the model has one (and the power too)
    own = fit.refine(pair, start, P, hold_pulled=True, **kw, pulled_error_px=0.4, crowded_error_power=0.5)
    np.testing.assert_array_equal(own.status, held.status)
    bare = np.sqrt(held.locs.uncertainty[was] ** 2 - 20.0**2)
    np.testing.assert_allclose(own.locs.uncertainty[was], np.hypot(bare, 40.0 * np.sqrt(bare / P / 0.07)), rtol=1e-5)
    with pytest.raises(DSIRError, match="crowded_error_px"):
        fit.refine(pair, start, P, hold_pulled=True, **kw, pulled_error_px=float("inf"))
    lone_fit = fit.refine(alone, start, P, hold_pulled=True, **kw)
    assert lone_fit.ok.mean() > 0.95


def test_every_fit_reports_its_reduced_chi_square(undetected_neighbour):
    """FitResult.chi2: each row's own fit, free or held at its start. A lone
    emitter's is about 1 and the free fits' equals `free_chi2`; held at its
    start beside a brighter undetected neighbour, the light its model
    misses raises it."""
    pair, alone, start = undetected_neighbour
    kw = dict(max_group=1, max_chi2_sigma=4, max_shift_px=1.0, crowded_error_px=(0.2,), hold_pulled=True)
    lone, held = fit.refine(alone, start, P, **kw), fit.refine(pair, start, P, **kw)
    assert lone.ok.mean() > 0.95 and 0.85 < np.median(lone.chi2[lone.ok]) < 1.15
    both = np.isfinite(lone.free_chi2)
    assert both.sum() > 50
    np.testing.assert_allclose(lone.chi2[both], lone.free_chi2[both], rtol=1e-6)
    pulled = held.status == fit.PULLED
    assert pulled.mean() > 0.5 and np.isfinite(held.chi2[pulled]).all()
    assert np.median(held.chi2[pulled]) > 1.5
    assert len(fit.refine(alone, start.select(np.zeros(len(start), bool)), P).chi2) == 0


def _edge_scene(x_nm, n=60, photons=3000.0, seed=12):
    """n frames of 20x20 px with one emitter at (x_nm, 1000 nm) (x < 0:
    outside the frame, its light shining into the first columns) and its
    detection on the edge, 30 nm inside the frame."""
    rng = np.random.default_rng(seed)
    mu = render_emitters(np.array([x_nm]), np.array([1000.0]), np.array([photons]), np.array([120.0]), (20, 20), P)
    frames = torch.as_tensor(rng.poisson(mu + 20, (n, 20, 20)).astype(np.float32))
    start = Localizations(np.arange(n), np.full(n, 30.0), 1000.0 + rng.normal(0, 20, n))
    return frames, start


def test_an_emitter_outside_the_frame_is_placed_there_and_flagged():
    """beyond_frame: the free fit of a detection on the edge may go past it;
    an emitter 150 nm outside the frame is placed there (status BEYOND,
    fitted values reported), where without it the fit stops on the edge
    and the detection is held at the network's position (PULLED). An
    emitter on the edge itself, or inside, stays in the frame."""
    kw = dict(max_group=1, max_chi2_sigma=3, max_shift_px=1.0, hold_pulled=True, crowded_error_px=(0.2,))
    frames, start = _edge_scene(-150.0)
    off, on = fit.refine(frames, start, P, **kw), fit.refine(frames, start, P, beyond_frame=True, **kw)
    beyond = on.status == fit.BEYOND
    assert beyond.mean() > 0.8 and not (off.status == fit.BEYOND).any()
    assert (off.status == fit.PULLED).mean() > 0.8
    assert abs(np.median(on.locs.x[beyond]) + 150.0) < 30.0
    assert np.isfinite(on.locs.photons[beyond]).all() and on.n_failed == off.n_failed
    np.testing.assert_array_equal(on.ok, on.status == fit.OK)  # BEYOND is not an ok fit
    report = fit.fit_report(on.summary(), on.locs)
    assert report["beyond"] == beyond.sum() and report["total"] == len(start) - beyond.sum()
    assert f"{beyond.sum()} emitters outside the frame left out" in fit.fit_summary(report)
    for x_nm in (0.0, 80.0):  # on the edge itself, and inside: two bounds keep ~98 % and all
        frames, start = _edge_scene(x_nm)
        res = fit.refine(frames, start, P, beyond_frame=True, **kw)
        assert (res.status == fit.BEYOND).mean() < (0.1 if x_nm == 0 else 0.02), x_nm


def test_a_run_leaves_emitters_outside_the_frame_out_and_counts_them(monkeypatch):
    """With `reconstruct.FIT_BEYOND_FRAME` on, a run's fits (as
    `reconstruct.fit_settings` says) leave the detections of an emitter
    outside the frame out of the table and count them under their status;
    off (the default) they stay, held at the network's position on the edge."""
    from napari_dsir import reconstruct as R

    frames, start = _edge_scene(-150.0, n=40)
    lone, lone_start = _edge_scene(1000.0, n=40, seed=13)  # inside, 1 um from the edge
    frames = torch.cat([frames, lone])
    start = Localizations.concatenate([start, Localizations(lone_start.frame + 40, lone_start.x + 970.0,
                                                            lone_start.y)])

    def run():
        pending, counts = R._PendingFits(0), {}
        pending.add(frames, start)
        return pending.fit(P, Camera(baseline=0.0), 7, counts, sigma_init_nm=120.0), counts

    monkeypatch.setattr(R, "FIT_BEYOND_FRAME", True)
    out, counts = run()
    n_beyond = counts[fit.STATUS[fit.BEYOND]]
    assert n_beyond > 0.6 * 40 and len(out) == len(start) - n_beyond
    assert (out.x >= 0).all() and (out.frame >= 40).sum() == 40  # the lone emitter's rows all kept
    assert fit.fit_report(counts, out)["beyond"] == n_beyond
    monkeypatch.setattr(R, "FIT_BEYOND_FRAME", False)
    out, counts = run()
    assert len(out) == len(start) and fit.STATUS[fit.BEYOND] not in counts


def _airy_grid(seed, n_frames=30):
    """Isolated emitters of an Airy PSF (FWHM 280 nm), 300-20,000 photons
    (log-uniform), a 3x3 grid per 40x40 frame, background 30; starts 10 nm off."""
    rng = np.random.default_rng(seed)
    g = np.arange(3) * 11 + 9.5
    gx, gy = (a.ravel() for a in np.meshgrid(g, g))
    frames, rows = [], []
    for f in range(n_frames):
        x, y = (gx + rng.uniform(-0.5, 0.5, 9)) * P, (gy + rng.uniform(-0.5, 0.5, 9)) * P
        n = np.exp(rng.uniform(np.log(300), np.log(20000), 9))
        frames.append(rng.poisson(render_airy(x, y, n, np.full(9, 280.0), (40, 40), P) + 30.0))
        rows.append(np.column_stack([np.full(9, f), x, y]))
    t = np.concatenate(rows)
    start = Localizations(t[:, 0].astype(int), t[:, 1] + rng.normal(0, 10, len(t)), t[:, 2] + rng.normal(0, 10, len(t)))
    return torch.as_tensor(np.stack(frames).astype(np.float32)), t, start


def test_a_psf_that_is_not_gaussian_is_not_taken_for_a_neighbour(isolated, monkeypatch):
    """An Airy PSF's residuals grow with the light: without `_psf_mismatch`
    the chi-square test holds many bright isolated fits at their start as
    if a neighbour pulled them; with it, few, and their uncertainty still
    covers their error. Gaussian emitters show no mismatch."""
    frames, t, start = _airy_grid(3)
    kw = dict(max_group=1, max_chi2_sigma=4.0, max_shift_px=1.0, isolation_px=5.0, hold_pulled=True,
              crowded_error_px=(0.15,))
    res = fit.refine(frames, start, P, **kw)
    assert (res.status == fit.PULLED).mean() < 0.05 and res.ok.mean() > 0.9
    ok = res.ok
    z = np.concatenate([(res.locs.x[ok] - t[ok, 1]) / res.locs.uncertainty[ok],
                        (res.locs.y[ok] - t[ok, 2]) / res.locs.uncertainty[ok]])
    assert 0.8 < np.std(z) < 1.3
    # the lone fits the PSF leaves alone still check the camera: no false alarm
    report = fit.fit_report(res.summary(), res.locs, fit.chi2_histogram(res.free_chi2))
    assert fit.camera_doubt(report) is None
    monkeypatch.setattr(fit, "MISMATCH_FITS", 10**9)  # never measured: the test as before
    before = fit.refine(frames, start, P, **kw)
    assert (before.status == fit.PULLED).mean() > 0.15
    # on Gaussian emitters the slope is noise: no mismatch, the same fits
    monkeypatch.undo()
    g_frames, _, g_start = isolated
    gauss = fit.refine(torch.as_tensor(g_frames), g_start, P, **kw)
    monkeypatch.setattr(fit, "MISMATCH_FITS", 10**9)
    plain = fit.refine(torch.as_tensor(g_frames), g_start, P, **kw)
    np.testing.assert_array_equal(gauss.status, plain.status)
    np.testing.assert_array_equal(gauss.locs.x, plain.locs.x)


def test_psf_mismatch_is_the_slope_of_the_excess_with_the_signal():
    """`_psf_mismatch`: excess = mismatch x signal is measured; an excess
    common to all fits (a camera's variance off, neighbours' light) or fits
    all of one brightness give none; too few fits give none."""
    rng = np.random.default_rng(0)
    n, dof = 300, 44.0
    signal = np.exp(rng.uniform(np.log(100), np.log(20000), n))
    noise = rng.normal(0, np.sqrt(2 * dof), n)
    gof = np.column_stack([dof + 1e-3 * signal + noise, np.full(n, dof), signal])
    assert fit._psf_mismatch(gof, 1.0) == pytest.approx(1e-3, rel=0.3)
    common = np.column_stack([3 * dof + noise, np.full(n, dof), signal])
    assert fit._psf_mismatch(common, 1.0) == 0.0
    same = np.column_stack([dof + 1e-3 * 5000 + noise, np.full(n, dof), np.full(n, 5000.0)])
    assert fit._psf_mismatch(same, 1.0) == 0.0
    assert fit._psf_mismatch(gof[: fit.MISMATCH_FITS - 1], 1.0) == 0.0
    assert fit._psf_mismatch(np.full((50, 3), np.nan), 1.0) == 0.0


def test_crowded_fits_use_the_free_fits_psf_and_deblended_starts():
    """A tight cluster of 4 detections 2 px apart (held by isolation_px) next
    to lone emitters: the held fits take the lone fits' PSF sigma (none at
    its bounds) and, starting from photons shared among the overlapping
    detections, recover the photons of each."""
    rng = np.random.default_rng(12)
    n, N, s = 40, 2500.0, 125.0
    cx = np.array([1000.0, 1200.0, 1000.0, 1200.0, 2600.0, 2600.0])
    cy = np.array([1000.0, 1000.0, 1200.0, 1200.0, 1000.0, 2600.0])
    mu = render_emitters(cx, cy, np.full(6, N), np.full(6, s), (36, 36), P) + 25
    frames = torch.as_tensor(rng.poisson(mu, (n, 36, 36)).astype(np.float32))
    j = rng.normal(0, 15, (2, 6 * n))
    start = Localizations(np.repeat(np.arange(n), 6), np.tile(cx, n) + j[0], np.tile(cy, n) + j[1])
    res = fit.refine(frames, start, P, max_group=1, isolation_px=5.0, fallback_passes=1)
    st = res.status.reshape(n, 6)
    assert (st[:, :4] == fit.CROWDED).mean() > 0.95, res.summary()
    lone_sigma = np.median(res.locs.sigma.reshape(n, 6)[:, 4:])
    assert abs(lone_sigma / s - 1) < 0.05
    held = res.status == fit.CROWDED
    assert np.allclose(res.locs.sigma[held], np.median(res.locs.sigma[held]))  # one PSF, the free fits'
    assert abs(np.median(res.locs.sigma[held]) / lone_sigma - 1) < 0.02
    assert abs(np.median(res.locs.photons[held]) / N - 1) < 0.05


def test_crowded_detections_keep_their_start_position_with_photons_fitted_there():
    """isolation_px: a pair 300 nm apart keeps its starting positions (status
    CROWDED) with photons, background and bound fitted there; a lone emitter
    in the same frames is fitted freely."""
    rng = np.random.default_rng(11)
    n = 30
    x = np.array([1000.0, 1300.0, 2500.0])
    y = np.array([1000.0, 1000.0, 2000.0])
    mu = render_emitters(x, y, np.full(3, 2000.0), np.full(3, 120.0), (35, 35), P) + 20
    frames = torch.as_tensor(rng.poisson(mu, (n, 35, 35)).astype(np.float32))
    jitter = rng.normal(0, 20, (2, 3 * n))
    start = Localizations(np.repeat(np.arange(n), 3), np.tile(x, n) + jitter[0], np.tile(y, n) + jitter[1])
    res = fit.refine(frames, start, P, max_group=1, isolation_px=5.0)
    st = res.status.reshape(n, 3)
    assert (st[:, :2] == fit.CROWDED).mean() > 0.9 and (st[:, 2] == fit.OK).mean() > 0.9, res.summary()
    crowded = res.status == fit.CROWDED
    assert np.array_equal(res.locs.x[crowded], start.x[crowded])
    assert np.array_equal(res.locs.y[crowded], start.y[crowded])
    assert np.isfinite(res.locs.uncertainty[crowded]).all()
    assert abs(np.median(res.locs.photons[crowded]) / 2000 - 1) < 0.1  # the neighbour's light is modelled
    assert res.n_failed == int((~np.isin(res.status, fit.REPORTED)).sum()) < 0.1 * len(start)
    lone = res.ok & (np.arange(3 * n) % 3 == 2)
    assert np.sqrt(np.mean((res.locs.x[lone] - 2500) ** 2)) < 0.6 * np.sqrt(np.mean(jitter[0][lone] ** 2))
    # the network's own error in crowds, added in quadrature to the bound of the held rows only
    extra = fit.refine(frames, start, P, max_group=1, isolation_px=5.0, crowded_error_px=(0.2, 0.3))
    assert np.array_equal(extra.status, res.status)
    held = extra.status == fit.CROWDED  # one neighbour each: the first entry
    np.testing.assert_allclose(extra.locs.uncertainty[held], np.hypot(res.locs.uncertainty[held], 20.0), rtol=1e-6)
    np.testing.assert_array_equal(extra.locs.uncertainty[res.ok], res.locs.uncertainty[res.ok])
    # an error that grows with the bound: (bound / 0.07 px) ** power times the entry
    grown = fit.refine(frames, start, P, max_group=1, isolation_px=5.0, crowded_error_px=(0.2, 0.3),
                       crowded_error_power=0.5)
    bound = res.locs.uncertainty[held]
    np.testing.assert_allclose(grown.locs.uncertainty[held],
                               np.hypot(bound, 20.0 * np.sqrt(bound / P / 0.07)), rtol=1e-6)
    np.testing.assert_array_equal(grown.locs.uncertainty[res.ok], res.locs.uncertainty[res.ok])
    # and with the density of detections around (3 per frame within ~1 um of
    # the pair's rows: 2 other per frame in the disc)
    assert np.array_equal(res.neighbours[held], np.ones(held.sum())) and (res.density > 0).all()
    # counted in camera pixels (what the network sees): the same detections
    # on pixels 1.6x as large have the same density per 100 px^2
    coarse = fit.refine(frames, Localizations(start.frame, start.x * 1.6, start.y * 1.6), 1.6 * P, max_group=1,
                        isolation_px=5.0)
    np.testing.assert_allclose(coarse.density, res.density)
    # the pair's two detections in +-10 px (clipped at the edge: 20-21 px a
    # side, by the jitter) in each of the n frames, less the row itself
    pair = (2 * n - 1) / n * 100
    assert (res.density[held] >= pair / 21**2 - 1e-9).all() and (res.density[held] <= pair / 20**2 + 1e-9).all()
    factors = (0.5, 0.7, 1.0, 1.5, 1.2)
    dense = fit.refine(frames, start, P, max_group=1, isolation_px=5.0, crowded_error_px=(0.2, 0.3),
                       crowded_error_power=0.5, crowded_error_density=factors)
    np.testing.assert_allclose(dense.locs.uncertainty[held], np.hypot(
        bound, 20.0 * np.sqrt(bound / P / 0.07) * density_factor(factors, res.density[held])), rtol=1e-6)
    np.testing.assert_array_equal(dense.locs.uncertainty[res.ok], res.locs.uncertainty[res.ok])
    with pytest.raises(DSIRError, match="crowded_error_density"):
        fit.refine(frames, start, P, isolation_px=5.0, crowded_error_px=(0.2,), crowded_error_density=(1.0, -1.0))
    # and with the PSF's width (the rows' fitted sigma, camera px)
    wide = fit.refine(frames, start, P, max_group=1, isolation_px=5.0, crowded_error_px=(0.2, 0.3),
                      crowded_error_sigma_power=1.5)
    sigma_px = res.locs.sigma[held] / P
    np.testing.assert_allclose(wide.locs.uncertainty[held], np.hypot(
        bound, 20.0 * (sigma_px / CROWDED_SIGMA_REF_PX) ** 1.5), rtol=1e-6)
    with pytest.raises(DSIRError, match="crowded_error_sigma_power"):
        fit.refine(frames, start, P, isolation_px=5.0, crowded_error_px=(0.2,), crowded_error_sigma_power=-1)
    # not below a floor (the training's narrowest PSF): these rows' sigma, 1.2 px, held at 1.5
    floor = fit.refine(frames, start, P, max_group=1, isolation_px=5.0, crowded_error_px=(0.2, 0.3),
                       crowded_error_sigma_power=1.5, crowded_error_sigma_min_px=1.5)
    assert (sigma_px < 1.5).all()
    np.testing.assert_allclose(floor.locs.uncertainty[held], np.hypot(
        bound, 20.0 * (1.5 / CROWDED_SIGMA_REF_PX) ** 1.5), rtol=1e-6)
    with pytest.raises(DSIRError, match="crowded_error_sigma_min_px"):
        fit.refine(frames, start, P, isolation_px=5.0, crowded_error_px=(0.2,), crowded_error_sigma_min_px=-1)
    # and with the distance to the nearest other detection, in the rows' PSF
    # sigmas (the pair's partner, at the start positions)
    xy = np.c_[start.x, start.y].reshape(n, 3, 2)
    pair_d = np.hypot(*(xy[:, 0] - xy[:, 1]).T)
    np.testing.assert_allclose(res.nearest.reshape(n, 3)[:, :2], np.c_[pair_d, pair_d] / P)
    near = fit.refine(frames, start, P, max_group=1, isolation_px=5.0, crowded_error_px=(0.2, 0.3),
                      crowded_error_distance_power=0.8)
    r = np.clip(res.nearest[held] / sigma_px, 1.0, 5.0)
    assert (r > 1.0).all() and (r < 5.0).all()  # within the range: none clipped
    np.testing.assert_allclose(near.locs.uncertainty[held], np.hypot(bound, 20.0 * (r / 2.5) ** -0.8), rtol=1e-6)
    np.testing.assert_array_equal(near.locs.uncertainty[res.ok], res.locs.uncertainty[res.ok])
    with pytest.raises(DSIRError, match="crowded_error_distance_power"):
        fit.refine(frames, start, P, isolation_px=5.0, crowded_error_px=(0.2,), crowded_error_distance_power=3)
    # a network that saw the frames binned 2x2: its error model read in its
    # own pixels (bound and sigma halved, density per 100 of its px^2 4x),
    # the error back in camera px
    model = dict(crowded_error_px=(0.2, 0.3), crowded_error_power=0.5, crowded_error_density=factors,
                 crowded_error_sigma_power=1.5)
    binned = fit.refine(frames, start, P, max_group=1, isolation_px=5.0, network_binning=2, **model)
    want = 2 * crowded_extra((0.2, 0.3), 0.5, 1, bound / P / 2, res.density[held] * 4, factors, sigma_px / 2, 1.5)
    np.testing.assert_allclose(binned.locs.uncertainty[held], np.hypot(bound, want * P), rtol=1e-6)
    np.testing.assert_array_equal(binned.locs.uncertainty[res.ok], res.locs.uncertainty[res.ok])
    for bad in (0, 1.5):
        with pytest.raises(DSIRError, match="network_binning"):
            fit.refine(frames, start, P, isolation_px=5.0, network_binning=bad, **model)
    with pytest.raises(DSIRError, match="crowded_error_px"):
        fit.refine(frames, start, P, isolation_px=5.0, crowded_error_px=(-1.0,))
    for bad in (-0.1, 3.0, float("nan")):
        with pytest.raises(DSIRError, match="crowded_error_power"):
            fit.refine(frames, start, P, isolation_px=5.0, crowded_error_px=(0.2,), crowded_error_power=bad)
    # without the option every position is fitted
    assert not (fit.refine(frames, start, P, max_group=1).status == fit.CROWDED).any()
    with pytest.raises(DSIRError, match="isolation_px"):
        fit.refine(frames, start, P, isolation_px=-1)


def test_a_block_with_no_free_fits_takes_its_psf_from_the_crowded_ones():
    """Every detection crowded (pairs 300 nm apart, none alone): the PSF
    sigma comes from sigma-free fits of the crowded detections themselves,
    not from the starting guess (1 px here, the truth 1.4 px)."""
    rng = np.random.default_rng(15)
    n, N, s = 30, 3000.0, 140.0
    cx = np.array([1000.0, 1300.0, 2600.0, 2900.0])
    cy = np.array([1000.0, 1000.0, 2600.0, 2600.0])
    mu = render_emitters(cx, cy, np.full(4, N), np.full(4, s), (36, 36), P) + 20
    frames = torch.as_tensor(rng.poisson(mu, (n, 36, 36)).astype(np.float32))
    j = rng.normal(0, 15, (2, 4 * n))
    start = Localizations(np.repeat(np.arange(n), 4), np.tile(cx, n) + j[0], np.tile(cy, n) + j[1])
    res = fit.refine(frames, start, P, max_group=1, isolation_px=5.0, fallback_passes=1)
    held = res.status == fit.CROWDED
    assert held.mean() > 0.9, res.summary()
    assert abs(np.median(res.locs.sigma[held]) / s - 1) < 0.05
    assert abs(np.median(res.locs.photons[held]) / N - 1) < 0.05

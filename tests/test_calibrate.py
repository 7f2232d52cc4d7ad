"""Calibration of the network's own position error in crowds (calibrate.crowded_error)."""

import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from napari_dsir.calibrate import (
    CROWDED_CLASSES,
    calibrate_crowded_error,
    crowded_error,
    fit_crowded_error,
    fit_movies,
)
from napari_dsir.fit import CROWDED, PULLED
from napari_dsir.localize import (
    CROWDED_BOUND_REF_PX,
    CROWDED_DENSITY_KNOTS,
    CROWDED_DENSITY_REF,
    CROWDED_SIGMA_REF_PX,
    LocalizeParams,
    density_factor,
    distance_factor,
    params_for,
)
from napari_dsir.model import default_model_path, load_model
from napari_dsir.simulate import MovieConfig, simulate_movies


def test_crowded_error_of_the_shipped_model_on_dense_movies():
    """Dense movies: every neighbour class is measured; the network's error
    beyond the bound is a fraction of a camera pixel."""
    model = load_model("default")
    cfg = MovieConfig(frame_size=(32, 32), frames_per_movie=4, density=(4.0, 6.0), sparse_fraction=0.0,
                      empty_fraction=0.0, emccd_fraction=0.0)
    frames, truth, movie, settings = simulate_movies(6, cfg, seed=5)
    fields, report = crowded_error(model, frames, truth, movie, settings, cfg.pixel_size, params_for(model))
    err, power = fields["crowded_error_px"], fields["crowded_error_power"]
    assert len(err) == CROWDED_CLASSES and all(0 < e < 0.6 for e in err), report
    assert 0 <= power <= 1 and report["power"] == power
    f = fields["crowded_error_density"]
    assert len(f) == len(CROWDED_DENSITY_KNOTS) and all(0.05 < v < 20 for v in f)
    assert report["density_factors"] == list(f)
    s_power = fields["crowded_error_sigma_power"]
    assert 0 <= s_power <= 2 and report["sigma_power"] == s_power
    d_power = fields["crowded_error_distance_power"]
    assert 0 <= d_power <= 2 and report["distance_power"] == d_power
    # the pulled rows: their own error (with the same power) or, too few, none
    pulled = fields["pulled_error_px"]
    assert (pulled is None and report["pulled"].get("extra_px") is None) or pulled == report["pulled"]["extra_px"]
    LocalizeParams(**fields).validate()
    for k in range(CROWDED_CLASSES):
        c = report[f"{k + 1}{'+' if k == CROWDED_CLASSES - 1 else ''}"]
        assert c["n"] >= 10 and c["extra_px"] == err[k]


def test_fit_movies_runs_each_movie_with_its_own_truth_and_error_model():
    model = load_model("default")
    params = params_for(model)
    cfg = MovieConfig(frame_size=(32, 32), frames_per_movie=4, density=(4.0, 4.0), sparse_fraction=0.0,
                      empty_fraction=0.0)
    frames, truth, movie, settings = simulate_movies(3, cfg, seed=4)
    bare = list(fit_movies(model, frames, truth, movie, settings, 100.0, params))
    assert len(bare) == 3
    for k, (res, gt) in enumerate(bare):
        assert len(gt) == np.isin(truth.frame, np.flatnonzero(movie == k)).sum() > 0
        assert 0 <= gt.frame.min() and gt.frame.max() < 4 and res.locs.frame.max() < 4
    # with the error model, the held rows carry the network's error beside their bound; the others the same
    for (res, _), (err, _) in zip(bare, fit_movies(model, frames, truth, movie, settings, 100.0, params,
                                                   error_model=params)):
        held = np.isin(res.status, (CROWDED, PULLED))
        assert held.any() and np.array_equal(res.status, err.status)
        assert np.all(err.locs.uncertainty[held] > res.locs.uncertainty[held])
        assert np.allclose(err.locs.uncertainty[~held], res.locs.uncertainty[~held], equal_nan=True)


def _crowded_rows(c, power, n=4000, seed=0, covariate=None):
    """Squared errors per axis of rows whose error is the bound plus
    c[k] * (bound / 0.07) ** power * factor in quadrature, their bound
    squared, their class and their covariate: ``covariate(rng, n)`` draws
    (values, factor) after the bound (None: factor 1, values None)."""
    rng = np.random.default_rng(seed)
    cls = rng.integers(0, len(c), n)
    bound = np.exp(rng.uniform(np.log(0.02), np.log(0.4), n))
    values, factor = covariate(rng, n) if covariate else (None, 1.0)
    sd = np.hypot(bound, np.asarray(c)[cls] * (bound / CROWDED_BOUND_REF_PX) ** power * factor)
    e = rng.normal(0, sd[:, None], (n, 2))
    return 0.5 * (e**2).sum(1), bound**2, cls, values


@pytest.mark.parametrize("power", [0.0, 0.3, 0.6])
def test_fit_crowded_error_finds_how_the_error_grows_with_the_bound(power):
    c = (0.15, 0.2, 0.25, 0.3)
    got, p, f, _, report, _ = fit_crowded_error(*_crowded_rows(c, power)[:3])
    assert abs(p - power) < 0.08 and f == (), (got, p)
    np.testing.assert_allclose(got, c, rtol=0.12)
    assert report["power"] == p and report["1"]["n"] > 500


def test_fit_crowded_error_finds_how_the_error_changes_with_the_density():
    """Rows whose network error also has a factor f(density) that rises and
    falls again (as the shipped model's does): f at the knots, the bound's
    power and c are recovered; held, f is kept."""
    c, power = (0.15, 0.2, 0.25, 0.3), 0.3
    truth_f = (0.6, 0.75, 1.0, 1.3, 1.0)

    def draw(rng, n):
        density = np.exp(rng.uniform(np.log(0.3), np.log(10.0), n))
        return density, density_factor(truth_f, density)

    e2, b2, cls, density = _crowded_rows(c, power, n=20000, seed=7, covariate=draw)
    got, p, f, _, report, _ = fit_crowded_error(e2, b2, cls, density=density)
    assert abs(p - power) < 0.08, (got, p, f)
    np.testing.assert_allclose(f, truth_f, rtol=0.15)
    np.testing.assert_allclose(got, c, rtol=0.15)
    assert report["density_factors"] == list(f) and report["density_knots"] == list(CROWDED_DENSITY_KNOTS)
    assert f[CROWDED_DENSITY_KNOTS.index(CROWDED_DENSITY_REF)] == 1.0
    # without densities: no factors
    assert fit_crowded_error(e2, b2, cls).density_factors == ()
    # held: kept (the pulled rows' fit)
    held = (0.5, 0.7, 1.0, 1.2, 1.1)
    _, p1, f1, _, _, _ = fit_crowded_error(e2, b2, cls, density=density, power=0.3, density_factors=held)
    assert p1 == 0.3 and f1 == held


def test_fit_crowded_error_finds_how_the_error_grows_with_the_psf_width():
    """Rows whose network error also scales as (sigma / 1.1 px) ** s: s is
    recovered with c and the bound's power; without sigmas there is none."""
    c, power, s_power = (0.15, 0.2, 0.25, 0.3), 0.2, 1.2

    def draw(rng, n):
        sigma = rng.uniform(0.7, 1.6, n)
        return sigma, (sigma / CROWDED_SIGMA_REF_PX) ** s_power

    e2, b2, cls, sigma = _crowded_rows(c, power, n=12000, seed=8, covariate=draw)
    got, p, f, s, report, _ = fit_crowded_error(e2, b2, cls, sigma=sigma)
    assert abs(s - s_power) < 0.12 and abs(p - power) < 0.08 and f == (), (got, p, s)
    np.testing.assert_allclose(got, c, rtol=0.15)
    assert report["sigma_power"] == s and len(report["1"]["bins"]) == 18 and len(report["1"]["bins"][0]) == 5
    assert fit_crowded_error(e2, b2, cls).sigma_power == 0.0
    assert fit_crowded_error(e2, b2, cls, sigma=sigma, sigma_power=0.7).sigma_power == 0.7


def test_fit_crowded_error_finds_how_the_error_falls_with_the_nearest_distance():
    """Rows whose network error also scales as (distance in PSF sigmas /
    2.5) ** -d (the nearest other detection): d is recovered with c, the
    bound's power and the sigma's; without distances there is none; held,
    it is kept (the pulled rows' fit)."""
    c, power, s_power, d_power = (0.15, 0.2, 0.25, 0.3), 0.2, 1.0, 0.4

    def draw(rng, n):
        sigma, nearest = rng.uniform(0.8, 1.5, n), rng.uniform(1.0, 7.0, n)
        return (sigma, nearest), (sigma / CROWDED_SIGMA_REF_PX) ** s_power * distance_factor(d_power, nearest, sigma)

    e2, b2, cls, (sigma, nearest) = _crowded_rows(c, power, n=20000, seed=9, covariate=draw)
    got, p, _, s, report, d = fit_crowded_error(e2, b2, cls, sigma=sigma, nearest=nearest)
    assert abs(d - d_power) < 0.1 and abs(s - s_power) < 0.15 and abs(p - power) < 0.08, (got, p, s, d)
    np.testing.assert_allclose(got, c, rtol=0.15)
    assert report["distance_power"] == d and len(report["1"]["bins"]) == 3 * 18
    assert fit_crowded_error(e2, b2, cls, sigma=sigma).distance_power == 0.0
    assert fit_crowded_error(e2, b2, cls, sigma=sigma, nearest=nearest, distance_power=0.7).distance_power == 0.7


def test_fit_crowded_error_with_rows_at_one_density_only():
    """Every row at ~4 /um^2: the other knots take their neighbours' factor
    (tied), the reference stays 1 and c * f(4) is the error there."""
    e2, b2, cls, _ = _crowded_rows((0.2, 0.2, 0.2, 0.2), 0.0, n=4000, seed=2)
    got, _, f, _, _, _ = fit_crowded_error(e2, b2, cls, density=np.full(len(e2), 4.0))
    assert f[2] == 1.0 and abs(f[4] / f[3] - 1) < 0.02 and abs(f[0] / f[1] - 1) < 0.02
    assert abs(got[0] * f[3] / 0.2 - 1) < 0.15


def test_fit_crowded_error_with_a_given_power():
    """The pulled rows' own error, with the crowded rows' power held."""
    e2, b2, _, _ = _crowded_rows((0.25,), 0.4, n=2000, seed=3)
    got, p, _, _, report, _ = fit_crowded_error(e2, b2, np.zeros(len(e2), int), power=0.4)
    assert p == 0.4 and abs(got[0] / 0.25 - 1) < 0.1 and report["1"]["n"] == 2000
    got, p, _, _, _, _ = fit_crowded_error(e2[:10], b2[:10], np.zeros(10, int), power=0.4)  # too few
    assert got[0] == 0.0 and p == 0.4


def test_fit_crowded_error_with_few_rows():
    e2, b2, cls, _ = _crowded_rows((0.2, 0.2, 0.2, 0.2), 0.3, n=60)
    got, p, f, _, report, _ = fit_crowded_error(e2, b2, cls, density=np.full(len(e2), 3.0))  # too few: no power, no f
    assert p == 0.0 and f == () and all(g >= 0 for g in got)
    e2, b2, cls = e2[cls == 1], b2[cls == 1], cls[cls == 1]  # one class only, too few
    got, p, _, _, report, _ = fit_crowded_error(e2, b2, cls)
    assert got == (0.0,) * CROWDED_CLASSES and p == 0.0 and report["2"] == {"n": len(e2)}


def test_calibration_is_stored_in_the_checkpoint(tmp_path):
    path = tmp_path / "m.pt"
    shutil.copy(default_model_path("default"), path)
    out = calibrate_crowded_error(path, n_movies=3, seed=1)
    model = load_model(str(path))
    stored = params_for(model).crowded_error_px
    assert np.allclose(stored, out["crowded_error_px"]) and len(stored) == CROWDED_CLASSES
    assert params_for(model).crowded_error_power == out["crowded_error_power"]
    assert params_for(model).pulled_error_px == out["pulled_error_px"]
    assert params_for(model).crowded_error_density == tuple(out["crowded_error_density"])
    assert params_for(model).crowded_error_sigma_power == out["crowded_error_sigma_power"]
    assert params_for(model).crowded_error_distance_power == out["crowded_error_distance_power"]
    assert model.metadata["calibration"]["crowded_error"]["movies"] == 3
    # the rest of the localizer is kept
    assert params_for(model).threshold == params_for(load_model("default")).threshold


def test_bad_crowded_error_is_refused():
    from napari_dsir.errors import DSIRError

    with pytest.raises(DSIRError, match="crowded_error_px"):
        LocalizeParams(crowded_error_px=(0.1, float("nan"))).validate()
    with pytest.raises(DSIRError, match="crowded_error_px"):
        LocalizeParams(crowded_error_px=(0.1,), pulled_error_px=-0.2).validate()
    for bad in (-0.5, 2.5, float("nan"), "a", None):
        with pytest.raises(DSIRError, match="crowded_error_power"):
            LocalizeParams(crowded_error_px=(0.1,), crowded_error_power=bad).validate()
        with pytest.raises(DSIRError, match="crowded_error_sigma_power"):
            LocalizeParams(crowded_error_px=(0.1,), crowded_error_sigma_power=bad).validate()
        with pytest.raises(DSIRError, match="crowded_error_distance_power"):
            LocalizeParams(crowded_error_px=(0.1,), crowded_error_distance_power=bad).validate()
    for bad in ((1.0, 2.0), (0.5, 0.7, 1.0, -1.0, 1.0), (0.5, 0.7, 1.0, float("nan"), 1.0), ("a",) * 5):
        with pytest.raises(DSIRError, match="crowded_error_density"):
            LocalizeParams(crowded_error_px=(0.1,), crowded_error_density=bad).validate()
    # stored and read back with the checkpoint's localizer settings
    p = LocalizeParams(crowded_error_px=(0.1, 0.2), crowded_error_power=0.25, pulled_error_px=0.3,
                       crowded_error_density=(0.6, 0.8, 1.0, 1.2, 1.0), crowded_error_sigma_power=1.2,
                       crowded_error_sigma_min_px=0.6, crowded_error_distance_power=0.4)
    assert params_for(SimpleNamespace(metadata={"localize": p.to_dict()})) == p
    # a checkpoint from before the power: the error the same at every brightness
    old = {k: v for k, v in p.to_dict().items()
           if k not in ("crowded_error_power", "pulled_error_px", "crowded_error_density", "crowded_error_sigma_power",
                        "crowded_error_distance_power")}
    before = params_for(SimpleNamespace(metadata={"localize": old}))
    assert before.crowded_error_power == 0.0 and before.pulled_error_px is None
    assert before.crowded_error_density == () and before.crowded_error_sigma_power == 0.0
    assert before.crowded_error_distance_power == 0.0
    # a checkpoint whose stored settings are not numbers: a clear error
    for key, bad in (("crowded_error_density", ["a", 1, 1, 1, 1]), ("crowded_error_px", 3.0)):
        with pytest.raises(DSIRError, match=key):
            params_for(SimpleNamespace(metadata={"localize": {**p.to_dict(), key: bad}}))


def test_spot_ceiling_is_the_share_of_training_movies_under_it():
    """The ceiling is the 99th percentile of the training movies' spot
    heights, each movie divided by its own noise level; too few movies
    with spots give none."""
    import torch

    from napari_dsir.calibrate import MIN_CEILING_MOVIES, spot_ceiling
    from napari_dsir.model import SPOT_CEILING_SHARE, movie_scale, movie_spot_height

    cfg = MovieConfig(frame_size=(16, 16), frames_per_movie=4, sparse_fraction=0.0, empty_fraction=0.0,
                      density=(4.0, 8.0))
    frames, _, movie, _ = simulate_movies(40, cfg, seed=3)
    scales = np.array([movie_scale(torch.from_numpy(frames[movie == m])) for m in range(40)])[movie]
    heights = [movie_spot_height(torch.from_numpy(frames[movie == m]), scales[movie == m][0]) for m in range(40)]
    heights = [h for h in heights if h is not None]
    assert len(heights) >= MIN_CEILING_MOVIES
    got = spot_ceiling(frames, movie, scales)
    assert got["height"] == pytest.approx(np.quantile(heights, SPOT_CEILING_SHARE))
    assert got["movies"] == len(heights) and got["share"] == SPOT_CEILING_SHARE
    few = movie < 5
    assert spot_ceiling(frames[few], movie[few], scales[few]) is None


def test_a_silent_network_cannot_be_calibrated_and_says_so():
    """A network whose output is 0 on every validation frame (a too-short
    fine-tuning of the original weights ended so) is refused by name; it
    raised numpy's 'Geometric sequence cannot include zero'."""
    import torch.nn as nn

    from napari_dsir.calibrate import calibrate_localizer
    from napari_dsir.errors import DSIRError
    from napari_dsir.locs import Localizations
    from napari_dsir.model import DSIRModel, ShuffleNet

    model = DSIRModel(ShuffleNet(4, 4), "shuffle")
    for p in model.net.parameters():
        nn.init.zeros_(p)
    frames = np.random.default_rng(0).poisson(100, (2, 16, 16)).astype(np.float32)
    with pytest.raises(DSIRError, match="the network's output is 0 on every validation frame"):
        calibrate_localizer(model, frames, Localizations([0], [500.0], [500.0]), 12.5)

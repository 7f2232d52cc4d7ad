import numpy as np
import pytest

from napari_dsir.errors import DSIRError
from napari_dsir.simulate import DSIR_PRESET, SimulationConfig, render_emitters, simulate


def test_dsir_preset_defaults():
    c = DSIR_PRESET
    assert c.frame_size == (26, 26) and c.pixel_size == 100
    assert c.fwhm == (200, 300) and c.photons == (80, 2050)
    assert c.density == 2.0 and c.background == 20 and c.base_level == 100 and c.gain == 1.0


@pytest.mark.parametrize("density", [2.0, 6.0])
def test_positions_inside_frame_at_intended_density(density):
    cfg = SimulationConfig(frame_size=(32, 32), density=density)
    frames, locs = simulate(200, cfg, seed=3)
    assert frames.shape == (200, 32, 32) and frames.dtype == np.float32
    assert locs.x.min() >= 0 and locs.x.max() < 3200 and locs.y.min() >= 0 and locs.y.max() < 3200
    per_um2 = len(locs) / 200 / (3.2 * 3.2)
    assert per_um2 == pytest.approx(density, rel=0.05)
    assert set(np.unique(locs.frame)) <= set(range(200))
    assert ((80 <= locs.intensity) & (locs.intensity <= 2050)).all()


def test_seeded_and_camera_model():
    cfg = SimulationConfig(frame_size=(16, 16), density=0.0, background=20, base_level=100, gain=2.0)
    a, _ = simulate(50, cfg, seed=7)
    b, _ = simulate(50, cfg, seed=7)
    np.testing.assert_array_equal(a, b)
    # no emitters: ADU = 100 + 2 * Poisson(20): mean 140, variance 4 * 20
    assert a.mean() == pytest.approx(140, abs=0.5)
    assert a.var() == pytest.approx(80, rel=0.1)


def test_integrated_gaussian_conserves_photons_and_centre():
    img = render_emitters(np.array([1650.0]), np.array([1250.0]), np.array([1000.0]), np.array([100.0]),
                          (32, 32), 100.0)
    assert img.sum() == pytest.approx(1000.0, rel=1e-6)
    yy, xx = np.mgrid[:32, :32]
    cx = ((xx + 0.5) * 100 * img).sum() / img.sum()
    cy = ((yy + 0.5) * 100 * img).sum() / img.sum()
    assert cx == pytest.approx(1650.0, abs=0.5) and cy == pytest.approx(1250.0, abs=0.5)


def test_background_range_and_read_noise():
    """Background drawn per frame in [10, 30] photons; variance per frame =
    background (Poisson) + read noise^2 + 1/12 (rounding to whole ADU)."""
    cfg = SimulationConfig(frame_size=(16, 16), density=0.0, background=(10, 30), read_noise=3.0,
                           base_level=100, gain=1.0)
    f, locs = simulate(200, cfg, seed=1)
    assert len(locs) == 0
    bg = f.reshape(200, -1).mean(1) - 100
    assert bg.min() > 9 and bg.max() < 31  # inside the range (+- noise of a 256-px mean)
    assert bg.min() < 12 and bg.max() > 28  # and spread over it
    excess = f.reshape(200, -1).var(1) - bg
    assert excess.mean() == pytest.approx(9 + 1 / 12, abs=0.8)


def test_density_range_is_drawn_per_frame():
    """Density drawn per frame, uniform in [1, 8] /um^2: mean 4.5, and the
    emitters per frame vary far more than a Poisson count of one density."""
    cfg = SimulationConfig(frame_size=(16, 16), density=(1, 8))
    _, locs = simulate(400, cfg, seed=2)
    per_frame = np.bincount(locs.frame, minlength=400)
    area = 1.6 * 1.6
    assert per_frame.mean() / area == pytest.approx(4.5, rel=0.1)
    assert per_frame.var() > 2 * per_frame.mean()  # Poisson alone: var == mean


@pytest.mark.parametrize("bad", [dict(frame_size=(2, 2)), dict(fwhm=(300, 200)), dict(density=-1), dict(gain=0)])
def test_bad_config(bad):
    with pytest.raises(DSIRError):
        simulate(1, SimulationConfig(**bad))


# --------------------------------------------------------------------------- training movies


def test_movies_cover_the_ranges_and_are_reproducible():
    from napari_dsir.simulate import MovieConfig, simulate_movies

    cfg = MovieConfig(frame_size=(16, 16), frames_per_movie=4)
    frames, locs, movie, settings = simulate_movies(60, cfg, seed=5)
    assert frames.shape == (240, 16, 16) and frames.dtype == np.float32
    assert np.array_equal(movie, np.repeat(np.arange(60), 4)) and len(settings) == 60
    again = simulate_movies(60, cfg, seed=5)
    assert np.array_equal(frames, again[0]) and np.array_equal(locs.x, again[1].x)
    dens = np.array([s["density"] for s in settings])
    assert dens.min() >= cfg.sparse_density[0] and dens.max() <= cfg.density[1]
    assert {s["emccd"] for s in settings} == {True, False}
    for s in settings:
        assert cfg.fwhm[0] <= s["fwhm"] <= cfg.fwhm[1] and cfg.background[0] <= s["background"] <= cfg.background[1]
        if s["emccd"]:
            assert s["em_gain"] > 1
    # inside the frame only, photons within the per-movie ranges
    assert (locs.x >= 0).all() and (locs.x < 1600).all() and (locs.intensity <= cfg.photons_max).all()
    counts = np.bincount(locs.frame.astype(int), minlength=len(frames))
    assert (counts == 0).any() and counts.max() > 10  # empty and crowded frames both occur


def test_emccd_movies_are_brighter_per_photon_and_noisier():
    from napari_dsir.simulate import MovieConfig, simulate_movies

    base = dict(frame_size=(24, 24), density=0.0, sparse_fraction=0.0, empty_fraction=1.0, background=(50, 50),
                background_gradient=0.0, background_jitter=0.0,
                base_level=(100, 100))
    scmos = MovieConfig(**base, emccd_fraction=0.0, gain=(1.0, 1.0), read_noise=(0.0, 0.0))
    emccd = MovieConfig(**base, emccd_fraction=1.0, emccd_adu_per_photon=(1.0, 1.0), emccd_read_noise=(0, 0))
    a = simulate_movies(4, scmos, seed=1)[0]
    b = simulate_movies(4, emccd, seed=1)[0]
    assert a.mean() == pytest.approx(150, abs=1) and b.mean() == pytest.approx(150, abs=1)
    assert b.var() / a.var() == pytest.approx(2.0, rel=0.15)  # EM excess noise doubles the variance

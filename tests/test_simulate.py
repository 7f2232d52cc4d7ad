import numpy as np
import pytest

from napari_dsir.errors import DSIRError
from napari_dsir.simulate import (
    DSIR_PRESET,
    FWHM_TO_SIGMA,
    SimulationConfig,
    render_airy,
    render_emitters,
    simulate,
)


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
    # each emitter's PSF sigma (nm) comes with the truth: FWHM 200-300 nm
    assert ((200 * FWHM_TO_SIGMA <= locs.sigma) & (locs.sigma <= 300 * FWHM_TO_SIGMA)).all()


def test_the_truth_lists_the_emitters_outside_the_frame_on_request():
    """Emitters within the margin shine in; the truth leaves them out, or
    lists them with ``outside`` (the same frames, the same emitters inside)."""
    cfg = SimulationConfig(frame_size=(16, 16), density=4.0, margin=200.0)
    frames, inside = simulate(40, cfg, seed=5)
    same, everyone = simulate(40, cfg, seed=5, outside=True)
    np.testing.assert_array_equal(frames, same)
    out = (everyone.x < 0) | (everyone.x >= 1600) | (everyone.y < 0) | (everyone.y >= 1600)
    assert out.sum() > 50 and everyone.x.min() >= -200 and everyone.y.max() <= 1800
    np.testing.assert_array_equal(everyone.select(~out).x, inside.x)
    # about the margin's share of the emitters: (2.0^2 - 1.6^2) / 1.6^2
    assert out.sum() / len(inside) == pytest.approx(0.5625, rel=0.2)


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


def test_airy_psf_half_maximum_centre_and_photons():
    """An Airy pattern of FWHM 300 nm (3 px): half its peak 150 nm from the
    centre, centred where the emitter is, and its photons (less the rings
    beyond 10 px: ~5 %) in the frame; rings where the Gaussian of that FWHM
    has no light left (a dark one, then light again)."""
    x, y = np.array([3250.0]), np.array([3210.0])
    img = render_airy(x, y, np.array([1000.0]), np.array([300.0]), (64, 64), 100.0, radius_px=10)
    assert 0.93 < img.sum() / 1000 < 0.97
    yy, xx = np.mgrid[:64, :64]
    assert ((xx + 0.5) * 100 * img).sum() / img.sum() == pytest.approx(3250.0, abs=1.0)
    assert ((yy + 0.5) * 100 * img).sum() / img.sum() == pytest.approx(3210.0, abs=1.0)
    fine = render_airy(np.array([650.0]), np.array([650.0]), np.array([1e6]), np.array([300.0]), (130, 130), 10.0,
                       oversample=1, radius_px=60)  # 10 nm pixels: the profile itself
    profile = fine[65, 65:]
    core = profile[:30]  # to the first dark ring, falling
    half = np.interp(0.5, core[::-1] / core[0], np.arange(30)[::-1] * 10.0)
    assert half == pytest.approx(150.0, abs=6.0)
    gauss = render_emitters(x, y, np.array([1000.0]), np.array([300.0 * FWHM_TO_SIGMA]), (64, 64), 100.0)
    assert img[32, 38] > 10 * gauss[32, 38]  # the rings: light 600 nm out that the Gaussian has not
    dark = profile[30:42].min()  # the first dark ring 355 nm from the centre, the next bright one 477 nm
    assert dark < 0.001 * profile[0] and profile[44:52].max() > 0.01 * profile[0]


def test_airy_frames_and_bad_psf():
    cfg = SimulationConfig(frame_size=(32, 32), density=2.0, psf="airy")
    frames, locs = simulate(3, cfg, seed=4)
    gauss, locs_g = simulate(3, SimulationConfig(frame_size=(32, 32), density=2.0), seed=4)
    # the first frame's emitters drawn alike (the noise then takes draws in numbers that depend on the light)
    np.testing.assert_array_equal(locs.x[locs.frame == 0], locs_g.x[locs_g.frame == 0])
    assert frames.shape == gauss.shape and not np.array_equal(frames, gauss)
    with pytest.raises(DSIRError, match="psf must be one of"):
        simulate(1, SimulationConfig(psf="astigmatic"))


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
    # a share of the movies has an Airy PSF; without any, the movies are drawn as before Airy ones existed
    # the shipped model's movies have a Gaussian PSF; a share of Airy ones may be asked for, and the
    # Gaussian ones are then drawn as without
    assert {s["psf"] for s in settings} == {"gaussian"} and cfg.airy_fraction == 0.0
    mixed = simulate_movies(60, MovieConfig(frame_size=(16, 16), frames_per_movie=4, airy_fraction=0.3), seed=5)
    airy = np.array([s["psf"] == "airy" for s in mixed[3]])
    assert 0.1 < airy.mean() < 0.5
    assert not np.array_equal(mixed[0][np.repeat(airy, 4)], frames[np.repeat(airy, 4)])


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


def test_camera_info_states_one_camera_or_none():
    """The simulated camera as the Info lines a file states (the names
    `napari_dsir.camera` reads back); none when a setting is drawn from a range."""
    from napari_dsir.camera import Camera

    cfg = SimulationConfig(base_level=100.0, gain=0.1, em_gain=(100.0, 100.0), read_noise=30.0)
    lines = dict(line.split(" = ") for line in cfg.camera_info().splitlines())
    assert Camera.from_metadata(lines) == Camera(100.0, 10.0, 100.0, 1.0, read_noise=30.0)
    assert SimulationConfig(gain=(0.5, 2.0)).camera_info() is None
    assert SimulationConfig(base_level=(100.0, 400.0)).camera_info() is None

import numpy as np
import pytest
import torch

from napari_dsir import fit
from napari_dsir.camera import Camera
from napari_dsir.errors import DSIRError
from napari_dsir.illumination import MIN_FRAMES, measure
from napari_dsir.locs import Localizations
from napari_dsir.simulate import render_emitters


def _beam(size: int, ratio: float) -> np.ndarray:
    """1 in the centre, 1 / ratio in the corners (Gaussian)."""
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    return ratio ** (-((yy - size / 2) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 2) ** 2))


def _movie(n=24, size=40, ratio=3.0, density=1.0, seed=0, background=60.0):
    """Photons (frame, y, x): emitters (also up to 500 nm outside the frame)
    and background both lit by the beam."""
    rng = np.random.default_rng(seed)
    lit = _beam(size, ratio)
    out = np.empty((n, size, size))
    for f in range(n):
        k = rng.poisson(density * (size * 0.1 + 1.0) ** 2)
        x, y = rng.uniform(-500.0, size * 100.0 + 500.0, (2, k))
        ix, iy = (np.clip(v / 100, 0, size - 1).astype(int) for v in (x, y))
        ph = rng.uniform(300, 3000, k) * lit[iy, ix]
        mu = render_emitters(x, y, ph, np.full(k, 120.0), (size, size), 100.0) + background * lit
        out[f] = rng.poisson(mu)
    return out


def test_a_beam_is_measured_and_followed():
    light = measure(_movie(ratio=3.0))
    assert light.shape is not None and light.shape.shape == (40, 40) and (light.shape > 0).all()
    assert light.ratio == pytest.approx(3.0, rel=0.15) and light.r2 > 0.95
    # brightest in the middle, darkest in a corner
    assert light.shape[20, 20] > 2.5 * light.shape[0, 0]
    assert light.to_dict()["background_shaped"] is True


@pytest.mark.parametrize("density, background", [(0.2, 60.0), (6.0, 60.0), (0.2, 3.0)])
def test_an_even_background_stays_flat(density, background):
    light = measure(_movie(ratio=1.0, density=density, background=background, seed=1))
    assert light.shape is None and light.ratio < 1.5
    assert light.to_dict()["background_shaped"] is False


def test_too_few_frames_or_pixels_or_no_light_tell_nothing():
    assert measure(_movie(n=MIN_FRAMES - 1)) is None
    assert measure(np.zeros((MIN_FRAMES, 16, 16))) is None
    assert measure(_movie()[:, :1, :]) is None and measure(_movie()[:, :7, :7]) is None


def test_a_movie_one_pixel_tall_gets_the_runs_own_message():
    """Not a crash in the measurement of the beam: the run's clear refusal."""
    from napari_dsir.run import reconstruct

    frames = (np.random.default_rng(0).poisson(30, (20, 1, 30)) + 100).astype(np.float32)
    with pytest.raises(DSIRError, match="at least 2x2 px"):
        reconstruct(frames, "default", pixel_size=100.0, localize=True, camera=Camera(100.0, 1.0))


def test_fits_on_a_slope_follow_the_background_shape():
    """Emitters on a background rising 4 photons per pixel in x: with a flat
    background per window the fits are pulled uphill by tens of nm; with
    its shape they are not, and their photons and uncertainty hold."""
    rng = np.random.default_rng(0)
    size, n = 32, 120
    yy, xx = np.mgrid[0:size, 0:size]
    slope = 20.0 + 4.0 * xx
    truth = rng.uniform(1400, 1800, (n, 2))
    frames = np.stack([rng.poisson(render_emitters(truth[i:i + 1, 0], truth[i:i + 1, 1], np.array([800.0]),
                                                   np.array([130.0]), (size, size), 100.0) + slope)
                       for i in range(n)]).astype(np.float32)
    start = Localizations(np.arange(n), truth[:, 0] + rng.normal(0, 20, n), truth[:, 1] + rng.normal(0, 20, n))
    bias, z, photons = {}, {}, {}
    for name, shape in (("flat", None), ("shape", slope)):
        r = fit.refine(frames, start, 100.0, window=7, background_shape=shape)
        ok = r.ok
        ex, ey = r.locs.x[ok] - truth[ok, 0], r.locs.y[ok] - truth[ok, 1]
        bias[name] = ex.mean()
        z[name] = np.std(np.r_[ex, ey] / np.r_[r.locs.uncertainty[ok], r.locs.uncertainty[ok]])
        photons[name] = np.median(r.locs.photons[ok])
    assert bias["flat"] > 25 and abs(bias["shape"]) < 4, bias
    assert z["flat"] > 1.8 and 0.8 < z["shape"] < 1.25, z
    assert photons["flat"] > 1000 and photons["shape"] == pytest.approx(800, rel=0.05), photons
    # any scale of the shape is the same shape
    a = fit.refine(frames[:10], start.select(start.frame < 10), 100.0, background_shape=slope)
    b = fit.refine(frames[:10], start.select(start.frame < 10), 100.0, background_shape=slope / 7.0)
    np.testing.assert_allclose(a.locs.x, b.locs.x, rtol=1e-6)
    # a flat shape is a flat background
    c = fit.refine(frames[:10], start.select(start.frame < 10), 100.0, background_shape=np.ones((size, size)))
    d = fit.refine(frames[:10], start.select(start.frame < 10), 100.0)
    np.testing.assert_allclose(c.locs.x, d.locs.x, rtol=1e-6)
    np.testing.assert_allclose(c.locs.uncertainty, d.locs.uncertainty, rtol=1e-5)


def test_crowded_fits_with_a_shape_fit_photons_on_it():
    """Held (crowded) rows go through the photons-and-background fit: its
    background follows the shape too. A glow under a pair of emitters (the
    background's bump): with a flat background its light goes into their
    photons, with its shape it does not (but for a few %: the first
    estimates of the neighbour's light, `neighbours.deblend`, take the window's
    background as flat)."""
    rng = np.random.default_rng(2)
    size, n = 32, 60
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    glow = 20.0 + 80.0 * np.exp(-((xx - 14.5) ** 2 + (yy - 16.0) ** 2) / (2 * 3.0**2))
    xs = np.column_stack([np.full(n, 1300.0), np.full(n, 1600.0)]).ravel() + rng.uniform(-30, 30, 2 * n)
    ys = np.full(2 * n, 1600.0) + rng.uniform(-30, 30, 2 * n)
    light = np.stack([render_emitters(xs[2 * i:2 * i + 2], ys[2 * i:2 * i + 2], np.full(2, 1000.0),
                                      np.full(2, 130.0), (size, size), 100.0) for i in range(n)])
    noise = rng.standard_normal(light.shape)  # the same noise, as a Gaussian of Poisson's variance
    start = Localizations(np.repeat(np.arange(n), 2), xs, ys)
    got = {}
    for name, bg, shape in (("no glow", np.full_like(glow, 20.0), None), ("flat", glow, None),
                            ("shape", glow, glow)):
        frames = (light + bg + np.sqrt(light + bg) * noise).astype(np.float32)
        r = fit.refine(frames, start, 100.0, isolation_px=5.0, max_group=1, hold_pulled=True,
                       background_shape=shape)
        assert (r.status == fit.CROWDED).all()
        got[name] = np.median(r.locs.photons)
    assert got["flat"] > 1.5 * got["no glow"] and got["shape"] == pytest.approx(got["no glow"], rel=0.08), got


def test_bad_background_shapes_are_refused():
    frames = np.full((2, 16, 16), 50.0, np.float32)
    locs = Localizations(np.array([0]), np.array([800.0]), np.array([800.0]))
    with pytest.raises(DSIRError, match="16x16"):
        fit.refine(frames, locs, 100.0, background_shape=np.ones((8, 8)))
    bad = np.ones((16, 16))
    bad[3, 4] = 0.0
    with pytest.raises(DSIRError, match="> 0"):
        fit.refine(frames, locs, 100.0, background_shape=bad)
    bad[3, 4] = np.nan
    with pytest.raises(DSIRError, match="finite"):
        fit.refine(frames, locs, 100.0, background_shape=bad)


def test_a_run_follows_an_uneven_illumination_and_says_so():
    from napari_dsir.run import reconstruct

    cam = Camera(100.0, 1.0)
    for ratio, shaped in ((3.0, True), (1.0, False)):
        frames = (_movie(n=24, size=40, ratio=ratio, seed=5) + 100.0).astype(np.float32)
        said = []
        res = reconstruct(frames, "default", pixel_size=100.0, localize=True, camera=cam, progress=said.append)
        warned = [p.message for p in said if p.kind == "warning"]
        assert res.info["background_shaped"] is shaped
        assert any("uneven illumination" in m for m in warned) is shaped
        if shaped:
            assert res.info["background_ratio"] == pytest.approx(3.0, rel=0.2)
        photons = torch.from_numpy(frames)
        assert photons.shape == (24, 40, 40)
    # without refinement and without a camera nothing is followed, nor said of an even background
    said = []
    res = reconstruct(frames, "default", pixel_size=100.0, localize=True, refine=False, progress=said.append)
    assert "background_shaped" not in res.info
    assert not any("uneven illumination" in p.message for p in said)


@pytest.mark.parametrize("localize", [True, False])
def test_a_camera_given_takes_the_beam_out_for_the_network_without_the_fits(localize):
    """Background alone under a 6x beam: the network, seeing the frames
    divided by one noise level, finds spots and leaves a haze in the bright
    middle of the sum image; given the camera (no fits), it sees the frames
    with the beam taken out: no haze, (almost) no detections, and the run
    says so without claiming fits."""
    from napari_dsir.run import reconstruct

    frames = (_movie(n=24, size=40, ratio=6.0, density=0.0, seed=6) + 100.0).astype(np.float32)
    kw = dict(pixel_size=100.0, localize=localize, refine=False)
    told = []
    plain = reconstruct(frames, "default", progress=told.append, **kw)
    hint = [p.message for p in told if p.kind == "warning"]
    assert len(hint) == 1 and "looks" in hint[0] and "give the camera's settings" in hint[0], hint
    assert "background_shaped" not in plain.info  # told, not followed
    said = []
    taken = reconstruct(frames, "default", camera=Camera(100.0, 1.0), progress=said.append, **kw)
    assert taken.info["background_shaped"] and taken.info["fit"] is None
    warned = [p.message for p in said if p.kind == "warning"]
    assert any(m.endswith("the network sees the frames with it taken out") for m in warned), warned

    def middle_over_corners(img):
        k = img.shape[0] * 3 // 10
        mid = img[img.shape[0] // 2 - k // 2: img.shape[0] // 2 + k // 2, img.shape[1] // 2 - k // 2:
                  img.shape[1] // 2 + k // 2].mean()
        return mid / np.mean([img[:k, :k].mean(), img[-k:, -k:].mean(), img[:k, -k:].mean(), img[-k:, :k].mean()])

    assert middle_over_corners(plain.sum_image) > 10.0
    assert middle_over_corners(taken.sum_image) < 2.0
    if localize:
        assert len(taken.localizations) <= 2 < 10 <= len(plain.localizations)
        assert taken.localizations.photons is None  # the network's positions


def test_flatten_gives_the_network_an_even_background_and_noise():
    """Frames under a 4x beam, flattened for the network: the same level and
    the same noise in the bright middle and the dark corners (Poisson and a
    camera's read noise), the light above the background kept in noise units."""
    from napari_dsir.illumination import flatten

    rng = np.random.default_rng(1)
    size = 48
    lit = _beam(size, 4.0)
    cam = Camera(100.0, 1.0, read_noise=3.0)
    bg = 80.0 * lit
    photons = torch.from_numpy(rng.poisson(np.broadcast_to(bg, (200, size, size))).astype(np.float32)
                               + rng.normal(0, 3.0, (200, size, size)).astype(np.float32))
    out = flatten(photons, torch.from_numpy(lit.astype(np.float32)), cam).numpy()
    def noise_and_level(a):  # over the frames, per pixel
        return a.std(0).mean(), a.mean()

    raw_mid, raw_corner = (noise_and_level(photons.numpy()[:, sl, sl]) for sl in (slice(20, 28), slice(0, 6)))
    mid, corner = (noise_and_level(out[:, sl, sl]) for sl in (slice(20, 28), slice(0, 6)))
    assert raw_mid[0] > 1.4 * raw_corner[0] and raw_mid[1] > 2.5 * raw_corner[1]
    assert mid[0] == pytest.approx(corner[0], rel=0.1) and mid[1] == pytest.approx(corner[1], rel=0.05)

import os

import numpy as np
import pytest

from napari_dsir.errors import DSIRError
from napari_dsir.locs import Localizations
from napari_dsir.render import render, render_extent, resolve_mode


def _locs(x, y, frame=None, **cols):
    x = np.asarray(x, float)
    return Localizations(np.zeros(len(x), int) if frame is None else frame, x, np.asarray(y, float), **cols)


def test_hist_pixel_placement_and_counts():
    p = 10.0
    locs = _locs([0.0, 9.99, 10.0, 25.0, 25.0], [0.0, 0.0, 0.0, 31.0, 31.0])
    img = render(locs, p, shape=(5, 5))
    assert img.dtype == np.float32 and img.shape == (5, 5)
    assert img[0, 0] == 2  # [0, 10) nm
    assert img[0, 1] == 1  # 10 nm starts pixel 1
    assert img[3, 2] == 2  # x 25 -> floor(2.5) = 2, y 31 -> 3
    assert img.sum() == 5


def test_hist_random_positions_land_in_floor_pixel(rng):
    p = 12.5
    x, y = rng.uniform(0, 1000, 500), rng.uniform(0, 800, 500)
    img = render(_locs(x, y), p, shape=(80, 80))
    expect = np.zeros((80, 80))
    np.add.at(expect, (np.floor(y / p).astype(int), np.floor(x / p).astype(int)), 1)
    np.testing.assert_array_equal(img, expect)


def test_default_extent_and_outside_dropped():
    locs = _locs([5.0, 95.0, -3.0], [5.0, 45.0, 10.0])
    img = render(locs, 10.0)
    assert img.shape == (5, 10)  # from 0 to the largest position
    assert img.sum() == 2  # the negative position is outside
    assert render_extent(locs, 10.0, camera_shape=(4, 6), camera_pixel_size_nm=100.0)[1] == (40, 60)
    (y0, x0), shape = render_extent(locs, 10.0, extent=(-10, -10, 50, 100))
    assert (y0, x0, shape) == (-10, -10, (6, 11))
    assert render(locs, 10.0, extent=(-10, -10, 50, 100)).sum() == 3


def test_gauss_total_and_centre(rng):
    n = 200
    x = rng.uniform(200, 800, n)
    y = rng.uniform(200, 800, n)
    img = render(_locs(x, y), 10.0, mode="gauss", sigma_nm=15.0, shape=(100, 100))
    assert img.sum() == pytest.approx(n, rel=1e-5)
    one = render(_locs([505.0], [305.0]), 10.0, mode="gauss", sigma_nm=20.0, shape=(100, 100))
    yy, xx = np.mgrid[:100, :100]
    assert (one * (xx + 0.5)).sum() * 10 == pytest.approx(505.0, abs=0.5)
    assert (one * (yy + 0.5)).sum() * 10 == pytest.approx(305.0, abs=0.5)
    var_x = (one * ((xx + 0.5) * 10 - 505.0) ** 2).sum()
    assert np.sqrt(var_x) == pytest.approx(np.sqrt(20.0**2 + 10.0**2 / 12), rel=0.03)  # pixel-integrated


def test_gauss_uses_uncertainty_and_blur_path_agrees(rng):
    n = 3000
    x, y = rng.uniform(100, 540, n), rng.uniform(100, 540, n)
    unc = rng.uniform(8, 30, n)
    locs = _locs(x, y, uncertainty=unc)
    img = render(locs, 10.0, mode="gauss", shape=(64, 64))
    assert img.sum() == pytest.approx(n, rel=1e-5)
    # large sigma on a small image: the histogram + blur path; same totals and widths as splatting
    one = _locs([323.0], [318.0], uncertainty=[40.0])
    many = _locs(np.full(20000, 323.0), np.full(20000, 318.0), uncertainty=np.full(20000, 40.0))
    a = render(one, 10.0, mode="gauss", shape=(64, 64))
    b = render(many, 10.0, mode="gauss", shape=(64, 64)) / 20000
    np.testing.assert_allclose(b, a, atol=0.02 * a.max())


def test_gauss_needs_sigma_or_uncertainty():
    with pytest.raises(DSIRError, match="uncertainty"):
        render(_locs([1.0], [1.0]), 10.0, mode="gauss")
    with pytest.raises(DSIRError, match="sigma_nm"):
        render(_locs([1.0], [1.0]), 10.0, mode="gauss", sigma_nm=-1)
    with pytest.raises(DSIRError, match="sigma_nm"):
        render(_locs([1.0], [1.0]), 10.0, mode="gauss", sigma_nm="wide")
    with pytest.raises(DSIRError, match="wider than"):
        render(_locs([1.0], [1.0]), 10.0, mode="gauss", sigma_nm=1e6)


def test_by_frame_rgb():
    locs = _locs([5.0, 15.0, 15.0], [5.0, 5.0, 5.0], frame=np.array([0, 10, 10]))
    rgb = render(locs, 10.0, by_frame=True, shape=(1, 2), colormap="viridis")
    assert rgb.shape == (1, 2, 3) and rgb.dtype == np.float32
    assert 0 <= rgb.min() and rgb.max() <= 1
    assert not np.allclose(rgb[0, 0] / rgb[0, 0].max(), rgb[0, 1] / rgb[0, 1].max())  # different hues
    with pytest.raises(DSIRError, match="colormap"):
        render(locs, 10.0, by_frame=True, colormap="no-such-map")


@pytest.mark.parametrize("kw", [{"extent": (0, 0, 0, 10)}, {"shape": (0, 3)}, {"extent": "abc"}])
def test_bad_areas(kw):
    with pytest.raises(DSIRError):
        render(_locs([1.0], [1.0]), 10.0, **kw)


def test_bad_inputs():
    with pytest.raises(DSIRError, match="pixel_size"):
        render(_locs([1.0], [1.0]), 0)
    with pytest.raises(DSIRError, match="mode"):
        render(_locs([1.0], [1.0]), 10.0, mode="splat")
    with pytest.raises(DSIRError, match="no localizations"):
        render(Localizations.empty(), 10.0)
    with pytest.raises(DSIRError, match="too large"):
        render(_locs([1e9], [1e9]), 1.0)
    assert render(Localizations.empty(), 10.0, shape=(3, 3)).sum() == 0


def test_a_render_larger_than_the_free_memory_is_refused(monkeypatch):
    """Refused with the sizes in the message, before any allocation; a
    coloured rendering needs more per pixel than a grey one."""
    import napari_dsir.render as r

    locs = _locs([5.0, 995.0], [5.0, 995.0])  # 100 x 100 px at 10 nm
    grey, coloured = 100 * 100 * r.BYTES_PER_PIXEL[False], 100 * 100 * r.BYTES_PER_PIXEL[True]
    assert coloured > grey
    monkeypatch.setattr(r, "available_memory", lambda: (grey + coloured) / 2 / r.MEMORY_SHARE)
    assert render(locs, 10.0).shape == (100, 100)
    with pytest.raises(DSIRError, match=r"100 x 100 px at 10 nm/px coloured by frame: it needs about 1 MB"):
        render(locs, 10.0, by_frame=True)
    monkeypatch.setattr(r, "available_memory", lambda: None)  # unknown: no check
    assert render(locs, 10.0, by_frame=True).shape == (100, 100, 3)


@pytest.mark.skipif(not os.path.exists("/proc/meminfo"), reason="Linux's /proc/meminfo")
def test_available_memory_is_at_most_the_total():
    from napari_dsir.render import available_memory

    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemTotal:"))
    free = available_memory()
    assert isinstance(free, int) and 0 < free <= total


def test_gauss_draws_localizations_without_uncertainty_with_the_median():
    """Flagged fits (NaN uncertainty) are drawn, not dropped."""
    locs = Localizations([0, 0, 0], [105.0, 305.0, 505.0], [105.0, 105.0, 105.0],
                         uncertainty=[10.0, np.nan, 30.0])
    img = render(locs, 10.0, mode="gauss", shape=(30, 60))
    assert img.sum() == pytest.approx(3.0, rel=1e-3)
    with pytest.raises(DSIRError, match="no localization has an uncertainty"):
        render(locs.select(np.array([1])), 10.0, mode="gauss", shape=(30, 60))


def test_auto_mode_draws_gaussians_where_uncertainties_size_them():
    plain = _locs([105.0, 305.0], [205.0, 105.0])
    sized = _locs([105.0, 305.0], [205.0, 105.0], uncertainty=np.array([15.0, np.nan]))
    unsized = _locs([105.0, 305.0], [205.0, 105.0], uncertainty=np.array([0.0, np.nan]))
    assert resolve_mode(plain) == "hist" and resolve_mode(unsized) == "hist"
    assert resolve_mode(sized) == "gauss" and resolve_mode(plain, sigma_nm=20.0) == "gauss"
    assert resolve_mode(sized, "hist") == "hist" and resolve_mode(plain, "gauss") == "gauss"
    np.testing.assert_array_equal(render(sized, 10.0, shape=(40, 40)),
                                  render(sized, 10.0, mode="gauss", shape=(40, 40)))
    np.testing.assert_array_equal(render(plain, 10.0, shape=(40, 40)),
                                  render(plain, 10.0, mode="hist", shape=(40, 40)))
    with pytest.raises(DSIRError, match="expected 'auto', 'hist' or 'gauss'"):
        resolve_mode(plain, "Gaussian")


def _image_part(x, y, s, shape, p):
    """The share (0..1) of a Gaussian of ``s`` nm at (x, y) nm, truncated at
    TRUNCATE s and normalised, inside a ``shape`` (Y, X) image of ``p`` nm pixels."""
    from scipy.special import erf

    from napari_dsir.render import TRUNCATE

    def axis(c, n):
        lo = np.floor(c / p - TRUNCATE * s / p)
        hi = lo + np.ceil(2 * TRUNCATE * s / p) + 1
        a, b = max(lo, 0.0), min(hi, float(n))
        f = lambda e: erf((e - c / p) / (np.sqrt(2) * s / p))  # noqa: E731
        return (f(b) - f(a)) / (f(hi) - f(lo))

    return axis(x, shape[1]) * axis(y, shape[0])


@pytest.mark.parametrize("big", [3000.0, 1e5])
def test_one_huge_uncertainty_is_drawn_among_normal_ones(rng, big):
    """A bad fit's absurd uncertainty (nm) neither refuses the render nor
    changes the others; its part inside the image is drawn."""
    n, p, shape = 500, 10.0, (80, 120)
    x, y = rng.uniform(100, 1100, n), rng.uniform(100, 700, n)
    unc = np.full(n, 12.0)
    unc[7] = big
    img = render(_locs(x, y, uncertainty=unc), p, shape=shape)
    normal = render(_locs(np.delete(x, 7), np.delete(y, 7), uncertainty=np.delete(unc, 7)), p, shape=shape)
    wide = img.astype(np.float64) - normal
    part = _image_part(x[7], y[7], big, shape, p)
    assert 0 < part < 1 and wide.sum() == pytest.approx(part, rel=1e-4, abs=1e-6)
    assert img.sum() == pytest.approx(n - 1 + part, rel=1e-5)
    assert wide.min() > -1e-6  # a smooth, non-negative wash over the image
    # a single sigma_nm wider than the image is still refused as a units mistake
    with pytest.raises(DSIRError, match="wider than"):
        render(_locs(x, y), p, mode="gauss", sigma_nm=big * 100, shape=shape)


def test_gaussians_choose_a_path_whose_memory_does_not_grow_with_sigma(monkeypatch, rng):
    """Splats go into an image-sized accumulator (no padding by the widest
    patch), patches wider than the image go the separable way in chunks of
    at most _SPLAT_ENTRIES profile entries, and the peak of the numpy
    allocations stays within the memory check's budget per pixel."""
    import tracemalloc

    import napari_dsir.render as r

    assert r._gauss_path(13, 10, (500, 500)) == "splat"
    assert r._gauss_path(13, 10**7, (500, 500)) == "blur"
    assert r._gauss_path(3601, 1, (500, 500)) == "separable"  # k^2 = 13e6 entries: not a patch
    assert r._gauss_path(3601, 10**6, (500, 500)) == "blur"
    seen = []
    splat, separable = r._splat, r._separable
    monkeypatch.setattr(r, "_splat", lambda out, *a: (seen.append(("splat", out.shape)), splat(out, *a)))
    monkeypatch.setattr(r, "_separable", lambda out, u, *a: (seen.append(("separable", len(u))),
                                                              separable(out, u, *a)))
    n, shape = 2000, (500, 500)
    x, y = rng.uniform(100, 4900, n), rng.uniform(100, 4900, n)
    unc = np.full(n, 15.0)
    unc[:3] = 6000.0  # 3601 px patches on a 500 x 500 px image
    tracemalloc.start()
    try:
        img = render(_locs(x, y, uncertainty=unc), 10.0, shape=shape)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ("splat", (1, 500, 500)) in seen and ("separable", 3) in seen
    assert all(s == ("splat", (1, 500, 500)) for s in seen if s[0] == "splat")
    assert peak <= r.BYTES_PER_PIXEL[False] * 500 * 500 + 4 * r._SPLAT_ENTRIES * 8  # the image's, and chunks'
    assert img.sum() == pytest.approx(n - 3 + sum(_image_part(x[i], y[i], 6000.0, shape, 10.0) for i in range(3)),
                                      rel=1e-4)


def test_blur_of_a_sigma_wider_than_the_image_is_cut_there_exactly(monkeypatch, rng):
    """Blurred histograms of very wide Gaussians: the kernel is cut at the
    image (not 4 sigma long) and the result is that of the full kernel."""
    from scipy import ndimage

    import napari_dsir.render as r

    radii = []
    real = ndimage.gaussian_filter
    monkeypatch.setattr(r, "gaussian_filter", lambda *a, **kw: (radii.append(kw.get("radius")), real(*a, **kw))[1])
    hist = np.zeros((40, 60))
    hist[rng.integers(0, 40, 30), rng.integers(0, 60, 30)] = 1.0
    full = real(hist, 250.0, mode="constant", truncate=r.TRUNCATE + 1)
    np.testing.assert_allclose(r._blur(hist, 250.0), full, rtol=1e-9)
    assert radii == [60]
    # many wide Gaussians: the blur path, its total the part inside the image, as drawn exactly
    n = 20000
    locs = _locs(rng.uniform(50, 350, n), rng.uniform(50, 250, n), uncertainty=np.full(n, 2500.0))
    assert r._gauss_path(1501, n, (30, 40)) == "blur"
    blurred = render(locs, 10.0, shape=(30, 40))
    monkeypatch.setattr(r, "_gauss_path", lambda *a: "separable")
    exact = render(locs, 10.0, shape=(30, 40))
    assert blurred.sum() == pytest.approx(exact.sum(), rel=0.01)
    np.testing.assert_allclose(blurred, exact, rtol=0.02)


def test_absurd_uncertainties_render_promptly_with_nothing_of_them_seen(rng):
    """Uncertainties 1e10 px wide or more, one or all: finite images, the
    others' total kept, in bounded time (blurred histograms for many)."""
    n = 300
    x, y = rng.uniform(100, 400, n), rng.uniform(100, 400, n)
    unc = np.full(n, 12.0)
    unc[0] = 1e300
    img = render(_locs(x, y, uncertainty=unc), 10.0, shape=(50, 50))
    assert np.isfinite(img).all() and img.sum() == pytest.approx(n - 1, rel=1e-5)
    import napari_dsir.render as r

    for count, path in ((100, "separable"), (3000, "blur")):
        assert r._gauss_path(4 * 50 + 1, count, (50, 50)) == path
        x, y = rng.uniform(100, 400, count), rng.uniform(100, 400, count)
        for value in (1e11, 1e300):
            wide = render(_locs(x, y, uncertainty=np.full(count, value)), 10.0, shape=(50, 50))
            assert np.isfinite(wide).all() and 0 <= wide.min() and wide.sum() < 1e-6

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

import numpy as np
import pytest
import torch

from napari_dsir.errors import DSIRError
from napari_dsir.localize import (
    CROWDED_DENSITY_KNOTS,
    LocalizeParams,
    crowded_extra,
    density_factor,
    distance_factor,
    local_density,
    localize_image,
    params_for,
)


def test_peaks_with_subpixel_centroid():
    img = np.zeros((2, 64, 64), np.float32)
    # frame 0: symmetric blob centred on SR pixel (10, 20) -> (10.5, 20.5) px
    img[0, 9:12, 19:22] = [[0.1, 0.2, 0.1], [0.2, 1.0, 0.2], [0.1, 0.2, 0.1]]
    # frame 1: blob whose mass sits between pixels (30,40) and (30,41)
    img[1, 30, 40] = 1.0
    img[1, 30, 41] = 0.999
    locs = localize_image(img, 12.5, LocalizeParams(threshold=0.5, blur_fwhm=0))
    assert len(locs) == 2
    order = np.argsort(locs.frame)
    f, x, y = locs.frame[order], locs.x[order], locs.y[order]
    assert list(f) == [0, 1]
    assert x[0] == pytest.approx(20.5 * 12.5) and y[0] == pytest.approx(10.5 * 12.5)
    assert x[1] == pytest.approx((40.5 + 0.999 / 1.999) * 12.5, abs=1e-3)
    assert y[1] == pytest.approx(30.5 * 12.5)
    assert locs.intensity[order][0] == pytest.approx(2.2, rel=1e-5)


def test_threshold_and_merge_radius():
    img = np.zeros((32, 32), np.float32)
    img[5, 5] = 1.0
    img[5, 7] = 0.8  # within radius 2 of a brighter peak: merged
    img[20, 20] = 0.05  # below threshold
    assert len(localize_image(img, 12.5, LocalizeParams(0.1, radius=2, blur_fwhm=0))) == 1
    assert len(localize_image(img, 12.5, LocalizeParams(0.1, radius=1, blur_fwhm=0))) == 2
    assert len(localize_image(img, 12.5, LocalizeParams(0.01, radius=2, blur_fwhm=0))) == 2


def test_first_frame_offset_and_empty():
    img = np.zeros((1, 16, 16), np.float32)
    assert len(localize_image(img, 12.5)) == 0
    img[0, 3, 3] = 1
    assert localize_image(img, 12.5, first_frame=7).frame.tolist() == [7]


def test_params_from_model_metadata():
    class M:
        metadata = {"localize": {"threshold": 0.3, "radius": 3, "window": 1}}

    p = params_for(M(), radius=4)
    assert (p.threshold, p.radius, p.window) == (0.3, 4, 1)


def test_blur_merges_speckle_into_one_peak():
    img = np.zeros((32, 32), np.float32)
    img[14:19:2, 14:19:2] = 1.0  # a speckled blob: 9 separate maxima
    assert len(localize_image(img, 12.5, LocalizeParams(0.05, radius=1, blur_fwhm=0))) == 9
    locs = localize_image(img, 12.5, LocalizeParams(0.05, radius=3, window=3, blur_fwhm=3.0, blur_width=5))
    assert len(locs) == 1
    assert locs.x[0] == pytest.approx(16.5 * 12.5, abs=0.5) and locs.y[0] == pytest.approx(16.5 * 12.5, abs=0.5)
    with pytest.raises(DSIRError):
        LocalizeParams(threshold=-1).validate()


def test_plateau_gives_one_peak():
    img = np.zeros((32, 32), np.float32)
    img[10, 10:12] = 1.0  # two neighbours tie exactly
    img[20:22, 20:22] = 0.5
    locs = localize_image(img, 12.5, LocalizeParams(0.1, radius=2, blur_fwhm=0))
    assert len(locs) == 2
    xs = sorted(locs.x / 12.5)
    assert xs[0] == pytest.approx(11.0) and xs[1] == pytest.approx(21.0)


def test_many_candidates_give_the_same_peaks_as_few():
    """Above `PREFILTER_SHARE` of the pixels over the threshold, non-maxima
    are dropped by a separable box maximum first: the peaks (plateau ties
    included) are those of the direct neighbourhood comparison, which
    sparse frames (few candidates, the frames' edges among them) take."""
    import torch

    from napari_dsir.localize import PREFILTER_SHARE, _box_max, local_maxima

    g = torch.Generator().manual_seed(0)
    dense = torch.rand(3, 40, 50, generator=g).round(decimals=1)  # many exact ties
    sparse = torch.zeros(3, 40, 50)
    idx = torch.randint(0, sparse.numel(), (12,), generator=g)
    sparse.view(-1)[idx] = torch.rand(12, generator=g).round(decimals=1) + 0.1
    sparse[0, 0, :2] = sparse[1, 39, 48:] = 0.7  # ties on the edges
    for x in (dense, sparse):
        many = int((x > 0.05).sum()) > PREFILTER_SHARE * x.numel()
        assert many == (x is dense)  # both paths
        for r in (1, 2, 3):
            b, yy, xx = local_maxima(x, 0.05, r)
            ref = []
            pad = torch.nn.functional.pad(x, (r, r, r, r), value=float("-inf"))
            for i, y0, x0 in torch.nonzero(x > 0.05).tolist():
                win = pad[i, y0 : y0 + 2 * r + 1, x0 : x0 + 2 * r + 1].flatten()
                c = x[i, y0, x0]
                later = win[(2 * r + 1) * r + r + 1 :]
                if (win <= c).all() and not (later == c).any():
                    ref.append((i, y0, x0))
            assert sorted(zip(b.tolist(), yy.tolist(), xx.tolist())) == sorted(ref)
            assert len(ref) > 0
            m = torch.nn.functional.max_pool2d(x[:, None], 2 * r + 1, stride=1, padding=r)[:, 0]
            assert torch.equal(_box_max(x, r), m)


def test_gaussian_subpixel_positions_are_unbiased_where_the_centroid_is_pulled_to_the_pixel_centre():
    import torch

    from napari_dsir.localize import LocalizeParams, find_peaks

    yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    true = [(20.5 + d, 15.5 + d / 2) for d in (0.0, 0.2, 0.35, -0.3)]  # pixel centres at .5
    sig = 3.0 / 2.3548  # the shipped model's output: FWHM 3 px
    imgs = torch.stack([torch.exp(-((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2) / (2 * sig**2)) for x, y in true])
    base = dict(threshold=0.1, radius=2, window=2, blur_fwhm=0.0, blur_width=1)
    gauss = find_peaks(imgs, 1.0, LocalizeParams(**base, subpixel="gauss"))
    cent = find_peaks(imgs, 1.0, LocalizeParams(**base))
    tx = np.array([x for x, _ in true])
    assert np.abs(gauss.x - tx).max() < 1e-3
    assert np.abs(cent.x - tx).max() > 0.03  # truncated 5x5 window: pulled towards the centre
    with pytest.raises(DSIRError, match="subpixel"):
        LocalizeParams(subpixel="fit").validate()


def test_gaussian_subpixel_peaks_on_the_image_edge_stay_inside_it():
    """Regression: a peak on the image's edge pixel got its missing
    neighbour's value from itself, an offset of exactly +-0.5 px: a position
    on the frame's border (x = 0 or the frame's width), outside the frame
    for Picasso and a rendering; now it keeps the pixel's centre there."""
    import torch

    from napari_dsir.localize import LocalizeParams, find_peaks

    yy, xx = torch.meshgrid(torch.arange(40.0), torch.arange(40.0), indexing="ij")
    sig = 3.0 / 2.3548
    true = [(39.7, 20.3), (0.2, 10.5), (25.0, 39.9), (12.3, 0.4)]  # (x, y) px, beyond each edge's pixel centre
    imgs = torch.stack([torch.exp(-((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2) / (2 * sig**2)) for x, y in true])
    locs = find_peaks(imgs, 1.0, LocalizeParams(threshold=0.1, radius=2, window=2, blur_fwhm=0.0, blur_width=1,
                                                subpixel="gauss"))
    np.testing.assert_allclose(locs.x, [39.5, 0.5, 25.0, 12.3], atol=1e-3)
    np.testing.assert_allclose(locs.y, [20.3, 10.5, 39.5, 0.5], atol=1e-3)


def test_local_density_counts_the_other_detections_around_per_frame_and_100_px2():
    """Uniform detections: the density is recovered in the middle and at the
    edges (the square's part inside the frame); a lone one sees none; the
    detection itself is not counted; outside the frame: NaN."""
    rng = np.random.default_rng(3)
    n_frames, size, density = 200, 40, 2.0  # per 100 px^2: 32 per 1600 px^2 frame
    n = rng.poisson(density * 16.0 * n_frames)
    x, y = rng.uniform(0, size, (2, n))
    d = local_density(x, y, n_frames, (size, size))
    middle = (np.abs(x - 20) < 5) & (np.abs(y - 20) < 5)
    corner = (x < 2) & (y < 2)
    assert abs(np.median(d[middle]) / density - 1) < 0.1
    assert abs(np.median(d[corner]) / density - 1) < 0.15  # not halved or quartered by the edges
    lone = local_density(np.array([20.0, 90.0]), np.array([20.0, 5.0]), 1, (40, 40))
    assert lone[0] == 0.0 and np.isnan(lone[1])
    pair = local_density(np.array([20.0, 23.0]), np.array([20.0, 20.0]), 1, (40, 40))
    np.testing.assert_allclose(pair, 100 / (21 * 21))  # one in the square of +-10 px
    narrow = [local_density(np.array([20.0, 23.0]), np.array([20.0, 20.0]), 1, (40, 40), r) for r in (2, 3)]
    np.testing.assert_allclose(narrow, [[0, 0], [100 / 49] * 2])  # 3 px apart: outside +-2 px, inside +-3


def test_crowded_extra_scales_with_bound_and_density():
    factors = (0.5, 0.7, 1.0, 1.5, 1.2)
    e = crowded_extra((0.2, 0.3), 0.5, np.array([1, 2, 5, 1]), np.array([0.07, 0.28, 0.07, 0.07]),
                      np.array([2.0, 4.0, 0.01, np.sqrt(2.0 * 4.0)]), factors)
    # at knots: the factor; below the first: held; between: log-log
    np.testing.assert_allclose(e, [0.2, 0.3 * 2 * 1.5, 0.3 * 0.5, 0.2 * np.sqrt(1.5)])
    assert density_factor(factors, np.nan) == 1.0 and density_factor((), 5.0) == 1.0
    np.testing.assert_allclose(density_factor(factors, CROWDED_DENSITY_KNOTS), factors)
    np.testing.assert_allclose(crowded_extra((0.2,), 0.0, 1, 0.5), [0.2])  # no powers: the entry
    with pytest.raises(DSIRError, match="density"):
        crowded_extra((0.2,), 0.0, 1, 0.5, None, factors)
    # a PSF twice the reference width (camera px): the error 2 ** power as large; NaN: the reference's
    wide = crowded_extra((0.2,), 0.0, np.ones(3, int), 0.07, None, (), np.array([2.2, 1.1, np.nan]), 1.5)
    np.testing.assert_allclose(wide, [0.2 * 2**1.5, 0.2, 0.2])
    with pytest.raises(DSIRError, match="sigma"):
        crowded_extra((0.2,), 0.0, 1, 0.5, sigma_power=1.0)
    # narrower than the floor (the training's narrowest PSF): the error stops shrinking there
    narrow = crowded_extra((0.2,), 0.0, np.ones(3, int), 0.07, None, (), np.array([0.4, 0.55, 2.2]), 1.5, 0.55)
    np.testing.assert_allclose(narrow, [0.2 * 0.5**1.5, 0.2 * 0.5**1.5, 0.2 * 2**1.5])
    # the nearest other detection 1.1, 2.75 (the reference, 2.5 sigmas), 11 px
    # and none away, for a PSF of 1.1 px: within 1-5 sigmas, none as far as 5
    near = crowded_extra((0.2,), 0.0, np.ones(4, int), 0.07, None, (), np.full(4, 1.1), nearest_px=np.array(
        [1.1, 2.75, 11.0, np.inf]), distance_power=0.5)
    np.testing.assert_allclose(near, [0.2 * 0.4**-0.5, 0.2, 0.2 * 2**-0.5, 0.2 * 2**-0.5])
    np.testing.assert_allclose(distance_factor(0.5, 0.55, 1.1), 0.4**-0.5)  # closer than 1 sigma: as at 1
    with pytest.raises(DSIRError, match="distance"):
        crowded_extra((0.2,), 0.0, 1, 0.5, sigma_px=1.1, distance_power=0.5)


def test_the_error_models_sigma_floor_comes_from_the_models_training():
    """Where the checkpoint does not state it, the floor is the sigma of the
    narrowest PSF the model was trained on (its simulation's FWHM range in
    its pixels); a stated one (0: none) is kept; bad values are refused."""

    class M:
        metadata = {"simulation": {"fwhm": [170.0, 370.0], "pixel_size": 100.0}, "localize": {"threshold": 0.3}}

    assert params_for(M()).crowded_error_sigma_min_px == pytest.approx(1.7 / (2 * np.sqrt(2 * np.log(2))))
    M.metadata["localize"]["crowded_error_sigma_min_px"] = 0.0
    assert params_for(M()).crowded_error_sigma_min_px == 0.0
    assert LocalizeParams().to_dict()["crowded_error_sigma_min_px"] is None
    for bad in (-0.1, float("nan"), "wide"):
        with pytest.raises(DSIRError, match="crowded_error_sigma_min_px"):
            LocalizeParams(crowded_error_sigma_min_px=bad).validate()


def test_suppress_echoes_leaves_out_weak_detections_beside_strong_ones():
    from napari_dsir.localize import ECHO_RATIO, suppress_echoes
    from napari_dsir.locs import Localizations

    frame = np.array([0, 0, 0, 0, 1, 2, 2])
    x = np.array([1000.0, 1200.0, 1600.0, 3000.0, 1200.0, 5000.0, 5150.0])
    y = np.full(7, 1000.0)
    inten = np.array([10.0, 1.5, 1.0, 0.5, 1.5, 10.0, 3.0])
    locs = Localizations(frame, x, y, intensity=inten)
    kept = suppress_echoes(locs, 320.0)
    # the echo 200 nm from the strong one goes; one 600 nm away, a lone weak
    # one, the same spot in another frame and a pair of comparable ones stay
    assert list(kept.x) == [1000.0, 1600.0, 3000.0, 1200.0, 5000.0, 5150.0]
    assert len(suppress_echoes(locs, 320.0, ratio=0.1)) == 7 and ECHO_RATIO == 0.2
    bare = Localizations(frame, x, y)
    assert suppress_echoes(bare, 320.0) is bare


@pytest.mark.parametrize("subpixel", ["centroid", "gauss"])
def test_large_outputs_are_searched_in_bands_with_the_same_peaks(monkeypatch, subpixel):
    """A batch bigger than `PEAK_BAND_PIXELS` is searched frame by frame in
    bands of rows with margins: the same peaks, in the same order, as the
    whole batch at once, a plateau across a band's edge included."""
    import napari_dsir.localize as loc

    rng = np.random.default_rng(0)
    sr = torch.from_numpy(rng.gamma(0.3, 1.0, (3, 300, 257)).astype(np.float32))
    sr[1, 148:152, 100:104] = 5.0
    params = LocalizeParams(threshold=0.5, subpixel=subpixel)
    whole = loc.find_peaks(sr, 12.5, params, first_frame=7)
    monkeypatch.setattr(loc, "PEAK_BAND_PIXELS", 257 * 40)
    banded = loc.find_peaks(sr, 12.5, params, first_frame=7)
    assert len(whole) > 1000
    for name in ("frame", "x", "y", "intensity"):
        np.testing.assert_array_equal(getattr(banded, name), getattr(whole, name))


def test_bright_objects_finds_what_is_beyond_the_limit_with_its_peak_and_radius():
    from napari_dsir.localize import bright_objects

    frames = torch.full((3, 40, 40), 100.0)
    frames[1, 10:13, 20:25] = 5000.0  # a saturated plateau, 3x5 px
    frames[1, 30, 5] = 500.0  # a spot within the limit
    frames[2, 2, 2] = 3000.0
    objs = bright_objects(frames, scale=10.0, limit=100.0)  # 1000 ADU above the median
    assert [len(o) for o in objs] == [0, 1, 1]
    y, x, r = objs[1][0]
    assert (y, x) == pytest.approx((11, 22)) and r == pytest.approx(np.hypot(1, 2))  # the plateau's middle
    assert objs[2][0] == pytest.approx([2, 2, 0])


def test_suppress_halos_keeps_each_objects_centre_and_what_lies_beyond_its_reach():
    from napari_dsir.localize import suppress_halos
    from napari_dsir.locs import Localizations

    px = 100.0
    # an object at pixel (y 20, x 20), radius 2 px, in the second frame of the batch (frame 11)
    objects = [np.zeros((0, 3)), np.array([[20.0, 20.0, 2.0]])]
    # positions in nm: pixel centre (20, 20) is at 2050 nm
    x = np.array([2060.0, 2250.0, 2850.0, 2050.0 + 9.0 * px, 2050.0, 2250.0])
    y = np.array([2050.0, 2050.0, 2050.0, 2050.0, 2050.0, 2050.0])
    frame = np.array([11, 11, 11, 11, 10, 12])
    kept, n = suppress_halos(Localizations(frame, x, y), objects, 10, px, reach_px=6.0)
    # frame 11: the centre stays, 2 and 8 px away go, 9 px away (beyond 2 + 6) stays; other frames untouched
    assert n == 2 and list(kept.x) == [2060.0, 2050.0 + 9.0 * px, 2050.0, 2250.0]
    # none within the object's radius of its centre: every one within reach goes
    off = Localizations(frame[1:3], np.array([2350.0, 2750.0]), y[1:3])
    kept, n = suppress_halos(off, objects, 10, px, reach_px=6.0)
    assert n == 2 and len(kept) == 0
    same = Localizations(frame, x, y)
    assert suppress_halos(same, [np.zeros((0, 3))] * 2, 10, px) == (same, 0)


def test_clear_halos_zeroes_the_output_around_each_object_but_the_object():
    from napari_dsir.localize import clear_halos

    sr = torch.ones(2, 80, 80)  # 8x the grid of 10x10 px
    objects = [np.array([[4.0, 5.0, 1.0]]), np.zeros((0, 3))]  # at pixel (y 4, x 5), radius 1 px
    clear_halos(sr, objects, 8, reach_px=2.0)
    yy, xx = np.mgrid[:80, :80] + 0.5
    d = np.hypot(yy - 4.5 * 8, xx - 5.5 * 8) / 8  # px of the objects' grid
    out = sr[0].numpy()
    assert (out[(d > 1.0) & (d <= 3.0)] == 0).all() and (out[d <= 1.0] == 1).all() and (out[d > 3.0] == 1).all()
    assert (sr[1] == 1).all()

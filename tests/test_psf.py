"""The PSF's width measured on a movie, and the network's binning for wide PSFs."""

import numpy as np
import pytest
import torch

from napari_dsir import psf
from napari_dsir.camera import Camera
from napari_dsir.errors import DSIRError
from napari_dsir.evaluate import evaluate
from napari_dsir.model import load_model
from napari_dsir.run import reconstruct
from napari_dsir.simulate import SimulationConfig, simulate

CAM = Camera(100.0, 0.5, 1.0, 1.0, read_noise=1.5)


def _movie(n, px, fwhm, density, size=48, seed=3):
    cfg = SimulationConfig(frame_size=(size, size), density=density, fwhm=fwhm, background=30.0,
                           photons=(500.0, 4000.0), margin=200.0, base_level=100.0, gain=2.0, read_noise=1.5,
                           pixel_size=px)
    return simulate(n, cfg, seed=seed)


@pytest.mark.parametrize("px, fwhm", [(100.0, (270.0, 330.0)), (65.0, (320.0, 380.0)), (100.0, (450.0, 550.0))])
def test_measure_fwhm_recovers_the_simulated_width(px, fwhm):
    frames, _ = _movie(16, px, fwhm, 1.0)
    width = psf.measure_fwhm(frames, px, CAM)
    median, q25 = width.median, width.q25
    assert width.fits >= psf.MIN_FITS
    assert abs(median / np.mean(fwhm) - 1) < 0.06
    assert 0.8 * median < q25 <= width.q40 <= median <= width.q70 < 1.2 * median
    # an assumed camera (the sensitivity 2x off) scales variances, not the width
    assert abs(psf.measure_fwhm(frames, px)[0] / median - 1) < 0.03


def test_measure_fwhm_needs_spots():
    rng = np.random.default_rng(0)
    noise = rng.poisson(30.0, (8, 32, 32)).astype(np.float32) + 100
    assert psf.measure_fwhm(noise, 100.0, Camera(100.0, 1.0)) is None
    assert psf.measure_fwhm(np.full((4, 32, 32), 100.0, np.float32), 100.0) is None


def test_binning_rule_and_training_range():
    assert psf.network_binning(3.5, 3.7) == 1 and psf.network_binning(None, 3.7) == 1
    assert psf.network_binning(float("nan"), 3.7) == 1
    assert [psf.network_binning(w, 3.7) for w in (3.8, 7.4, 7.5, 40.0)] == [2, 2, 3, psf.MAX_BINNING]
    # binned frames as crowded for the network as beyond its training: not binned
    assert psf.network_binning(4.5, 3.7, 2.0, 9.0) == 2 and psf.network_binning(4.5, 3.7, 2.5, 9.0) == 1
    assert psf.network_binning(8.0, 3.7, 0.9, 9.0) == 3 and psf.network_binning(8.0, 3.7, 1.1, 9.0) == 1
    assert psf.training_density(load_model("default")) == pytest.approx(9.0)
    assert psf.training_density(object()) == psf.LEGACY_DENSITY
    assert psf.training_fwhm_range_px(load_model("default"))[1] == pytest.approx(3.7)
    assert psf.training_fwhm_range_px(load_model("dsir"))[1] == pytest.approx(3.0)
    assert psf.training_fwhm_range_px(object()) == psf.LEGACY_FWHM_RANGE_PX
    assert psf.training_fwhm_range_px(load_model("default")) == pytest.approx((1.7, 3.7))


def test_bin_frames_sums_blocks_and_pads_the_far_edges():
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).reshape(2, 4, 6)
    b = psf.bin_frames(x, 2)
    assert b.shape == (2, 2, 3) and float(b.sum()) == float(x.sum())
    assert float(b[0, 0, 0]) == 0 + 1 + 6 + 7
    odd = psf.bin_frames(x[:, :3, :5], 2)  # the last row and column repeated
    assert odd.shape == (2, 2, 3) and float(odd[0, 1, 2]) == 4 * float(x[0, 2, 4])
    assert psf.bin_frames(x, 1) is x


def test_a_wide_psf_is_binned_for_the_network_and_found():
    """65 nm pixels and a 320-380 nm PSF (5.4 px, beyond the training's 3.7):
    the run measures it, warns, and the binned network finds the emitters
    the unbinned one misses; the sum image keeps the camera's x8 grid and
    its total; the positions stay within the frame."""
    frames, gt = _movie(12, 65.0, (320.0, 380.0), 0.7, size=50)
    seen = []
    auto = reconstruct(frames, pixel_size=65.0, localize=True, camera=CAM, progress=seen.append)
    assert auto.info["binning"] == 2 and abs(auto.info["psf_fwhm_nm"] / 350 - 1) < 0.06
    assert any("binned 2x2" in p.message for p in seen if p.kind == "warning")
    seen.clear()
    plain = reconstruct(frames, pixel_size=65.0, localize=True, camera=CAM, binning=1, progress=seen.append)
    # a binning given: the PSF is measured only for the fits to start from
    assert plain.info["binning"] == 1 and plain.info["psf_fwhm_nm"] == auto.info["psf_fwhm_nm"]
    assert not any("binned" in p.message for p in seen) and "network_density" not in plain.info
    unrefined = reconstruct(frames, pixel_size=65.0, localize=True, refine=False, binning=1)
    assert "psf_fwhm_nm" not in unrefined.info
    j_auto, j_plain = evaluate(gt, auto.localizations, 250.0).jaccard, evaluate(gt, plain.localizations, 250.0).jaccard
    assert j_auto > 0.8 and j_auto > j_plain + 0.2, (j_auto, j_plain)
    assert auto.sum_image.shape == plain.sum_image.shape == (400, 400)
    locs = auto.localizations
    assert (locs.x < 50 * 65.0).all() and (locs.y < 50 * 65.0).all()
    # the network's total over the frames is spread over the camera grid, not scaled
    model = load_model("default")
    x = torch.from_numpy(frames.astype(np.float32))
    scale = model.movie_scale(psf.bin_frames(x, 2))
    want = float(model.predict(psf.bin_frames(x, 2), scale=scale).sum())
    assert float(auto.sum_image.sum()) == pytest.approx(want, rel=1e-4)


def test_a_psf_too_sparse_to_measure_is_said_where_the_training_may_be_too_narrow():
    """Regression: on a few sparse frames the PSF could not be measured and
    the run left them unbinned without a word (65 nm pixels: precision 0.81
    where binned gave 1.00); a binning given was warned of with NaN figures."""
    frames, _ = _movie(1, 65.0, (320.0, 380.0), 0.3, size=32)
    seen = []
    r = reconstruct(frames, pixel_size=65.0, localize=True, camera=CAM, progress=seen.append)
    said = [p.message for p in seen if p.kind == "warning" and "PSF" in p.message]
    assert r.info["binning"] == 1 and r.info.get("psf_fwhm_nm") is None
    assert len(said) == 1 and "too few isolated spots in frames 0-0 to measure the PSF" in said[0] \
        and "trained for PSFs up to 240 nm FWHM at 65 nm pixels" in said[0], said
    for kw in ({"binning": 2}, {"pixel_size": 100.0}):  # a binning given; pixels where the training covers the PSF
        seen.clear()
        reconstruct(frames, **{"pixel_size": 65.0, **kw}, localize=True, camera=CAM, progress=seen.append)
        assert not [p for p in seen if p.kind == "warning" and ("PSF" in p.message or "nan" in p.message)], kw


def test_a_psf_straddling_the_trainings_widest_is_binned(monkeypatch):
    """100 nm pixels and a 300-420 nm PSF: the median of the fitted FWHM is
    within the training's widest (370 nm), the widest 30 % beyond it.
    Unbinned, the network splits the widest emitters in two; the run bins
    where the binned frames stay sparse, and its detections are far more
    often true ones (the binning's own effect: without the merge of split
    spots before the fits, which recovers part of it unbinned)."""
    from napari_dsir import reconstruct as R

    monkeypatch.setattr(R, "SPLIT_SPOTS", False)
    frames, gt = _movie(16, 100.0, (300.0, 420.0), 0.7, size=50)
    auto = reconstruct(frames, pixel_size=100.0, localize=True, camera=CAM)
    info = auto.info
    assert info["psf_fwhm_q25_nm"] <= info["psf_fwhm_q40_nm"] <= info["psf_fwhm_nm"] < 370.0 < info["psf_fwhm_q70_nm"]
    assert info["binning"] == 2
    plain = reconstruct(frames, pixel_size=100.0, localize=True, camera=CAM, binning=1)
    a, p = evaluate(gt, auto.localizations, 250.0), evaluate(gt, plain.localizations, 250.0)
    assert a.precision > p.precision + 0.04 and a.jaccard > p.jaccard, (a, p)


def test_a_straddling_psf_in_crowded_frames_is_binned_only_when_most_spots_are_wide():
    """Denser: binned, the frames would hold more than `STRADDLE_DENSITY_SHARE`
    of the training's densest (though less than all of it). With 30 % of
    the spots beyond the training's widest they are kept (the median
    within it: no warning, crowding widens fits too); with 60 % (320-450
    nm) they are binned."""
    most = psf.training_density(load_model("default"))
    frames, _ = _movie(12, 100.0, (280.0, 400.0), 2.0, size=50)
    seen = []
    res = reconstruct(frames, pixel_size=100.0, localize=True, refine=False, camera=CAM, progress=seen.append)
    assert res.info["psf_fwhm_nm"] < 370.0 < res.info["psf_fwhm_q70_nm"] and not res.info["psf_wide"]
    assert psf.STRADDLE_DENSITY_SHARE * most < 4 * res.info["network_density"] <= most
    assert res.info["binning"] == 1
    assert not any("binn" in p.message for p in seen)
    frames, _ = _movie(12, 100.0, (320.0, 450.0), 2.0, size=50)
    res = reconstruct(frames, pixel_size=100.0, localize=True, refine=False, camera=CAM)
    assert 370.0 < res.info["psf_fwhm_q40_nm"] and res.info["psf_wide"]
    assert psf.STRADDLE_DENSITY_SHARE * most < 4 * res.info["network_density"] <= most
    assert res.info["binning"] == 2


def test_the_density_check_runs_the_network_in_the_runs_batches(monkeypatch):
    """The crowding check of a wide PSF sends its sample of frames through
    the network in the run's batches (all 32 frames at once held 1.2 GB for
    the `dsir` model's x8 grid on 64x64 frames), and counts the same
    detections as in one batch."""
    from napari_dsir import reconstruct as rec

    frames, _ = _movie(12, 100.0, (360.0, 400.0), 2.0, size=40)
    model = load_model("default")
    seen = []
    predict = model.predict
    monkeypatch.setattr(model, "predict", lambda x, **k: seen.append(len(x)) or predict(x, **k))
    batched = rec._detection_density(model, frames)
    assert max(seen) == rec.default_batch_size(model.device, model) < len(frames) == sum(seen)
    monkeypatch.setattr(rec, "default_batch_size", lambda *a: len(frames))
    assert rec._detection_density(model, frames) == batched > 0


def test_a_psf_within_the_training_is_not_binned():
    frames, _ = _movie(12, 100.0, (250.0, 330.0), 1.0)
    seen = []
    res = reconstruct(frames, pixel_size=100.0, localize=True, camera=CAM, progress=seen.append)
    assert res.info["binning"] == 1 and 250 < res.info["psf_fwhm_nm"] < 330 and not res.info["psf_wide"]
    assert not any("binn" in p.message for p in seen)


def test_a_wide_psf_in_crowded_frames_is_not_binned():
    """8 /um^2 with a 3.6-4.0 px PSF: binned 2x2 the network would see 32
    emitters per 100 of its px^2 (trained to 9) and find fewer; the run
    keeps the frames and says why."""
    frames, _ = _movie(10, 100.0, (360.0, 400.0), 8.0, size=40)
    seen = []
    res = reconstruct(frames, pixel_size=100.0, localize=True, camera=CAM, progress=seen.append)
    assert res.info["binning"] == 1 and res.info["network_density"] * 4 > 9.0
    assert res.info["psf_fwhm_nm"] > 370.0 and res.info["psf_wide"]  # wide: binning was considered
    assert any("too crowded to bin" in p.message for p in seen if p.kind == "warning")


def test_a_model_with_no_calibrated_localizer_says_so_when_it_counts_the_crowding():
    """A run without localizations of a wide PSF counts the network's
    detections to decide the binning, at the model's threshold: for a model
    whose training stopped before its calibration that is a default, and
    the run says so (it said nothing)."""
    frames, _ = _movie(10, 100.0, (360.0, 400.0), 8.0, size=40)
    model = load_model("default")
    seen = []
    reconstruct(frames, pixel_size=100.0, model=model, camera=CAM, progress=seen.append)
    assert not any("no calibrated localizer" in p.message for p in seen)
    del model.metadata["localize"]
    seen.clear()
    res = reconstruct(frames, pixel_size=100.0, model=model, camera=CAM, progress=seen.append)
    assert res.info["network_density"] > 0
    said = [p.message for p in seen if "no calibrated localizer" in p.message]
    assert len(said) == 1 and "the crowding that decides the binning" in said[0] and "--binning" in said[0]
    for threshold, binning_said in ((None, False), (0.5, True)):  # localizing: said once, by the one that applies
        seen.clear()
        reconstruct(frames, pixel_size=100.0, model=model, camera=CAM, progress=seen.append, localize=True,
                    threshold=threshold, refine=False)
        said = [p.message for p in seen if "no calibrated localizer" in p.message]
        assert len(said) == 1 and ("the crowding that decides the binning" in said[0]) == binning_said, said


def test_a_narrow_psf_loses_the_networks_echoes():
    """160 nm pixels and a 180-240 nm PSF (1.1-1.5 px, narrower than the
    training's 1.7): the network adds weak echoes beside the emitters; the
    run leaves them out and says so; an explicit binning keeps them."""
    frames, gt = _movie(16, 160.0, (180.0, 240.0), 1.0)
    seen = []
    auto = reconstruct(frames, pixel_size=160.0, localize=True, camera=CAM, progress=seen.append)
    kept = reconstruct(frames, pixel_size=160.0, localize=True, camera=CAM, binning=1)
    assert auto.info["psf_narrow"] and auto.info["binning"] == 1
    assert any("narrow for the network" in p.message for p in seen if p.kind == "warning")
    a, k = evaluate(gt, auto.localizations, 250.0), evaluate(gt, kept.localizations, 250.0)
    assert len(auto.localizations) < len(kept.localizations)
    assert a.precision > k.precision + 0.05 and a.recall > k.recall - 0.02, (a, k)


@pytest.mark.parametrize("value", [0, 5, 2.5, "2", True])
def test_bad_binning_is_refused(value):
    frames, _ = _movie(2, 100.0, (250.0, 330.0), 1.0, size=16)
    with pytest.raises(DSIRError, match="binning"):
        reconstruct(frames, pixel_size=100.0, binning=value)


def test_the_widest_share_needs_enough_fits(monkeypatch):
    """Binning by the widest 30 % of the fitted spots needs `psf.MIN_FITS`
    of them; with fewer (background blobs alone: 32 fits spread 166-385
    nm) the median decides, as for the previous rule."""
    from napari_dsir import reconstruct as rec

    sample = np.zeros((4, 16, 16), np.float32)
    info = {"psf_fwhm_nm": 300.0, "psf_fwhm_q25_nm": 200.0, "psf_fwhm_q40_nm": 280.0, "psf_fwhm_q70_nm": 390.0}
    model = load_model("default")
    monkeypatch.setattr(rec, "_detection_density", lambda m, f: 0.5)
    for fits, want in ((32, 1), (int(np.ceil(psf.MIN_FITS / psf.STRADDLE_SHARE)), 2)):
        monkeypatch.setattr(rec, "_measure_psf", lambda *a, n=fits: ({**info, "psf_fits": n}, sample))
        b, got = rec.movie_binning(sample, model, 0, 4, 100.0)
        assert b == want and not got["psf_wide"], (fits, b)
        assert ("network_density" in got) == (want == 2)


def test_the_echoes_follow_the_lower_quartile_as_the_network_sees_it(monkeypatch):
    """The network's echoes are left out where a quarter of the fitted
    widths, in its own pixels, are narrower than its training's narrowest
    (1.7 px): a median within the training but a lower quartile below it
    (crowding widens the fits), or frames binned 2x2 for a widely spread PSF."""
    from napari_dsir import reconstruct as rec

    sample = np.zeros((4, 16, 16), np.float32)
    model = load_model("default")
    monkeypatch.setattr(rec, "_detection_density", lambda m, f: 0.5)
    cases = (((160.0, 190.0, 210.0, 240.0), 1, True),  # q25, median, q40, q70 (nm, 100 nm px)
             ((175.0, 190.0, 210.0, 240.0), 1, False),
             ((300.0, 350.0, 380.0, 420.0), 2, True),  # binned: 1.5 px as the network sees it
             ((350.0, 380.0, 390.0, 420.0), 2, False))
    for (q25, med, q40, q70), binning, narrow in cases:
        info = {"psf_fwhm_nm": med, "psf_fwhm_q25_nm": q25, "psf_fwhm_q40_nm": q40, "psf_fwhm_q70_nm": q70,
                "psf_fits": 200}
        monkeypatch.setattr(rec, "_measure_psf", lambda *a, i=info: (dict(i), sample))
        b, got = rec.movie_binning(sample, model, 0, 4, 100.0)
        assert (b, got["psf_narrow"]) == (binning, narrow), (q25, b, got)


def test_the_echoes_message_says_how_the_network_sees_the_psf():
    from napari_dsir.run import echoes_message

    psf_info = {"psf_fwhm_nm": 296.0, "psf_fwhm_q25_nm": 256.0}
    plain, binned = echoes_message(psf_info, 160.0), echoes_message(psf_info, 80.0, 2)
    assert "lower quartile 256 nm = 1.6 px" in plain and "binned" not in plain
    assert "binned 2x2 for it: lower quartile of the FWHM 256 nm = 1.6 of its px" in binned
    assert all("20% of the intensity" in m for m in (plain, binned))


def test_a_model_of_a_narrow_width_range_is_not_binned_below_it(monkeypatch):
    """A model trained on one camera's narrow range of PSF widths (350-450 nm
    on 160 nm pixels: 2.2-2.8 px) on a movie within that range: its fitted
    widths scatter past the widest (70th percentile 2.9 px), which asked for
    2x2 binning and gave the network 1.4 px PSFs, below anything it saw;
    the median stays unbinned now. The default model's binning of a wide
    PSF is unchanged."""
    from napari_dsir import reconstruct as rec

    sample = np.zeros((4, 16, 16), np.float32)
    monkeypatch.setattr(rec, "_detection_density", lambda m, f: 0.5)
    info = {"psf_fwhm_nm": 460.0, "psf_fwhm_q25_nm": 415.0, "psf_fwhm_q40_nm": 440.0, "psf_fwhm_q70_nm": 500.0,
            "psf_fits": 200}
    monkeypatch.setattr(rec, "_measure_psf", lambda *a: (dict(info), sample))
    own = load_model("default")
    own.metadata["simulation"] = {"fwhm": [350.0, 450.0], "pixel_size": 160.0, "density": [0.0, 9.0]}
    b, got = rec.movie_binning(sample, own, 0, 4, 160.0)
    assert b == 1 and got["binning_floor"] == 2
    # a run says nothing of crowding there (it said the frames were "too crowded to bin")
    from napari_dsir.run import reconstruct as run

    seen = []
    run(np.random.default_rng(0).poisson(100, (4, 16, 16)).astype(np.float32), own, pixel_size=160.0,
        progress=seen.append)
    assert not any("too crowded to bin" in p.message for p in seen)
    wide = {**info, "psf_fwhm_nm": 440.0, "psf_fwhm_q40_nm": 430.0, "psf_fwhm_q70_nm": 480.0}
    monkeypatch.setattr(rec, "_measure_psf", lambda *a: (dict(wide), sample))
    assert rec.movie_binning(sample, load_model("default"), 0, 4, 100.0)[0] == 2  # 4.4 px: binned as before

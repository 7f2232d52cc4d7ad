"""Camera model: ADU -> photons, validation, camera files and metadata."""

import numpy as np
import pytest
import torch

from napari_dsir.camera import PRESETS, Camera, resolve_camera
from napari_dsir.errors import DSIRError


def test_to_photons_numbers_numpy_and_torch():
    cam = Camera(baseline=400, sensitivity=0.5)
    adu = np.array([[[400, 600], [1400, 402]]], dtype=np.uint16)
    ph = cam.to_photons(adu)
    assert ph.dtype == np.float32
    np.testing.assert_allclose(ph, [[[0, 100], [500, 1]]])
    t = cam.to_photons(torch.as_tensor(adu.astype(np.int32)))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), ph)
    # EMCCD with QE: (ADU - baseline) * sensitivity / em_gain / qe
    em = Camera(baseline=100, sensitivity=4.8, em_gain=100, qe=0.8)
    np.testing.assert_allclose(em.to_photons(np.array([1100.0])), [1000 * 4.8 / 100 / 0.8])
    assert em.to_photons(np.array([1100.0])).dtype == np.float64
    assert em.excess_noise == 2.0 and cam.excess_noise == 1.0


@pytest.mark.parametrize(
    "kw, word",
    [
        ({"sensitivity": 0}, "sensitivity"),
        ({"sensitivity": -1}, "sensitivity"),
        ({"em_gain": 0}, "EM gain"),
        ({"qe": 0}, "quantum efficiency"),
        ({"qe": 1.2}, "quantum efficiency"),
        ({"baseline": float("nan")}, "baseline"),
        ({"sensitivity": float("inf")}, "sensitivity"),
        ({"read_noise": -1}, "read noise"),
        ({"baseline": "a lot"}, "baseline"),
    ],
)
def test_validation_errors(kw, word):
    with pytest.raises(DSIRError, match=word):
        Camera(**kw).validate()


def test_baseline_above_the_data_is_refused():
    rng = np.random.default_rng(0)
    frames = (100 + rng.poisson(20, (3, 16, 16))).astype(np.uint16)
    Camera(baseline=100).check_data(frames)
    Camera(baseline=100).check_data(torch.as_tensor(frames.astype(np.float32)))
    with pytest.raises(DSIRError, match="baseline .* probably wrong"):
        Camera(baseline=1000).check_data(frames)


def test_a_baseline_above_the_median_pixel_is_warned_of():
    """Refused only above the 99th percentile; above the median it is warned of
    (the hunt's 500 ADU on data of median 156: 26 photons, a third of the fits failed)."""
    rng = np.random.default_rng(0)
    frames = (100 + rng.poisson(20, (3, 16, 16))).astype(np.uint16)
    frames[:, 8, 8] = 5000  # an emitter: the 99th percentile stays low, the maximum high
    assert Camera(baseline=100).check_data(frames) is None
    msg = Camera(baseline=125).check_data(frames)  # not refused: warned of
    assert msg.startswith("camera baseline 125 ADU is above the median pixel (120 ADU)")


def test_a_negative_baseline_serves_signed_data():
    """Signed data whose offset was taken off and more (int16 reading
    -100 + photons): the baseline given as -100 ADU converts them; it was
    refused (baseline must be >= 0), leaving no way to state it."""
    rng = np.random.default_rng(1)
    frames = (rng.poisson(20, (3, 16, 16)) - 100).astype(np.int16)
    cam = Camera(baseline=-100).validate()
    cam.check_data(frames)
    photons = cam.to_photons(torch.as_tensor(frames.astype(np.float32)))
    assert float(photons.mean()) == pytest.approx(20.0, rel=0.05)


def test_aliases_and_unknown_keys():
    cam = Camera.from_dict(
        {"Offset": 400, "photoelectrons per A/D count": 0.5, "Gain": 100, "Quantum Efficiency": 0.9}
    )
    assert cam == Camera(400, 0.5, 100, 0.9, 0)
    assert Camera.from_dict({"base level [ADU]": 7, "e_per_adu": 2, "QE": 1}) == Camera(7, 2)
    with pytest.raises(DSIRError, match="'pixel_size'"):
        Camera.from_dict({"baseline": 100, "pixel_size": 100})
    with pytest.raises(DSIRError, match="twice"):
        Camera.from_dict({"baseline": 100, "offset": 100})
    with pytest.raises(DSIRError, match="sensitivity"):
        Camera.from_dict({"conversion": 0})


def test_yaml_round_trip_and_bad_files(tmp_path):
    cam = Camera(baseline=414, sensitivity=3.6, em_gain=1, qe=0.9, read_noise=1.5)
    p = tmp_path / "camera.yaml"
    cam.to_yaml(p)
    assert Camera.from_yaml(p) == cam
    assert Camera.from_dict(cam.to_dict()) == cam
    q = tmp_path / "alias.yml"
    q.write_text("Offset: 100\nconversion: 0.46\nEM gain: 1\nquantum_efficiency: 0.72\n")
    assert Camera.from_yaml(q) == Camera(100, 0.46, 1, 0.72)
    bad = tmp_path / "bad.yaml"
    bad.write_text("baseline: 100\nexposure: 20\n")
    with pytest.raises(DSIRError, match="exposure"):
        Camera.from_yaml(bad)
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(DSIRError, match="empty"):
        Camera.from_yaml(tmp_path / "empty.yaml")
    (tmp_path / "broken.yaml").write_text("baseline: [100\n")
    with pytest.raises(DSIRError, match="YAML"):
        Camera.from_yaml(tmp_path / "broken.yaml")
    (tmp_path / "list.yaml").write_text("- 100\n- 2\n")
    with pytest.raises(DSIRError, match="mapping"):
        Camera.from_yaml(tmp_path / "list.yaml")
    with pytest.raises(DSIRError, match="cannot read"):
        Camera.from_yaml(tmp_path / "missing.yaml")


def test_metadata_and_resolve():
    assert Camera.from_metadata({"ImageJ": "1.54", "unit": "um"}) is None
    assert Camera.from_metadata(None) is None
    cam = Camera.from_metadata({"Offset": "100", "AmplificationGain": 300, "Model": "iXon"})
    assert cam == Camera(100, 1, 300, 1)
    explicit = Camera(400, 0.5)
    assert resolve_camera(explicit, {"Offset": 100}) == (explicit, False)
    assert resolve_camera(None, {"Offset": 200}) == (Camera(200), False)
    assert resolve_camera(None, None) == (Camera(), True)
    assert resolve_camera(None, {"unit": "um"}) == (Camera(), True)
    with pytest.raises(DSIRError):
        resolve_camera(Camera(sensitivity=0), None)


def test_presets_are_valid():
    assert Camera().describe() == "baseline 100 ADU, 1 e-/ADU, EM gain 1, QE 1, read noise 0 e-"
    for name, cam in PRESETS.items():
        assert cam.validate() is cam, name
    assert any(c.em_gain > 1 for c in PRESETS.values())


def test_the_assumed_camera_has_no_offset_where_the_data_go_below_it():
    """No camera settings: the defaults (100 ADU) for data that stay above
    them; no offset (0 ADU) for data converted to photons or
    background-subtracted, whose darkest pixels read below 100 ADU (the run
    took 100 off them: 29 % of the fits failed, photons 0.28x the truth)."""
    import numpy as np

    from napari_dsir.camera import Camera, assumed_camera
    from napari_dsir.progress import drive
    from napari_dsir.run import RunRequest, iter_run
    from napari_dsir.simulate import SimulationConfig, simulate

    rng = np.random.default_rng(0)
    assert assumed_camera(rng.normal(130.0, 5.0, (4, 32, 32))) == Camera().validate()
    assert assumed_camera(rng.normal(30.0, 5.0, (4, 32, 32))).baseline == 0.0
    assert assumed_camera(rng.normal(0.0, 5.0, (4, 32, 32))).sensitivity == 1.0
    # signed data below 0 (an offset taken off and more): the darkest 1 % read as no light
    below = assumed_camera(rng.normal(-80.0, 5.0, (4, 32, 32))).baseline
    assert -80.0 - 3.0 * 5.0 < below < -80.0 - 2.0 * 5.0
    cfg = SimulationConfig(frame_size=(32, 32), density=1.0, photons=(300.0, 3000.0), background=30.0,
                           base_level=100.0, gain=2.0, read_noise=1.5)
    raw, gt = simulate(12, cfg, seed=4)
    records = []
    res = drive(iter_run(RunRequest((raw - 100.0) / 2.0, pixel_size=100.0, localize=True)), records.append)  # photons
    assert res.info["camera"]["baseline"] == 0.0
    assert any("assuming baseline 0 ADU (the darkest pixels read below 100 ADU" in r.message for r in records)
    L = res.localizations
    assert np.mean(np.isfinite(L.photons)) > 0.95 and 0.8 < np.nanmedian(L.photons) / np.median(gt.intensity) < 1.25
    # the same movie with 200 ADU too many taken off (signed, mostly negative): the fits hold
    records = []
    res = drive(iter_run(RunRequest(raw - 300.0, pixel_size=100.0, localize=True)), records.append)
    assert -200.0 < res.info["camera"]["baseline"] < -140.0  # between the true offset and the background
    assert any("the data go below 0 ADU" in r.message for r in records)
    L = res.localizations
    assert np.mean(np.isfinite(L.photons)) > 0.95


def test_saturation_finds_clipped_and_blank_movies(rng):
    """Light above a digitiser's full scale (2**bits - 1 ADU) is clipped: a
    movie with 0.1 % or more of its pixels there is saturated; one value in
    every pixel is no signal. A bright pixel below a full scale, or a few
    at it, is neither."""
    from napari_dsir.camera import SATURATED_SHARE, saturation

    frames = rng.normal(300.0, 10.0, (8, 32, 32)).round()
    assert saturation(frames) is None
    clipped = frames.copy()
    clipped[:, 10:14, 10:14] = 4095  # 16 of 1024 pixels of a 12-bit camera
    value, share, bits = saturation(clipped)
    assert (value, bits) == (4095.0, 12) and share == pytest.approx(16 / 1024)
    few = frames.copy()
    few[0, 3, 3] = 65535  # 1 pixel in 8192: below the share
    assert 1 / few.size < SATURATED_SHARE and saturation(few) is None
    bright = frames.copy()
    bright[:, 10:14, 10:14] = 5000  # a plateau below any full scale: light, not clipped
    assert saturation(bright) is None
    assert saturation(np.full((4, 16, 16), 100, np.uint16)) == (100.0, 1.0, None)
    assert saturation(np.full((4, 16, 16), 65535, np.uint16)) == (65535.0, 1.0, 16)
    assert saturation(np.full((2, 8, 8), 255, np.uint8)) == (255.0, 1.0, 8)
    padded = clipped.astype(np.float32)
    padded[:, :, :2] = np.nan  # NaN padding does not count
    assert saturation(padded)[0] == 4095.0
    assert saturation(np.full((2, 8, 8), np.nan)) is None  # refused where the frames are read


def test_runs_warn_of_saturated_and_blank_movies(tiny_checkpoint, rng):
    """A run says once, before it starts, that a movie is clipped at its
    camera's full scale or holds no signal, and goes on."""
    from napari_dsir.model import load_checkpoint
    from napari_dsir.progress import drive
    from napari_dsir.run import RunRequest, iter_run

    m = load_checkpoint(tiny_checkpoint)
    frames = rng.normal(300.0, 10.0, (6, 16, 16)).round().astype(np.uint16)
    frames[:, 4:7, 4:7] = 65535
    said = []
    res = drive(iter_run(RunRequest(frames, model=m, pixel_size=100.0)), said.append)
    warned = [p.message for p in said if p.kind == "warning"]
    assert len(warned) == 1 and warned[0].startswith("3.5% of the pixels of the frames sampled read 65535 ADU, "
                                                     "the top of a 16-bit camera's range: saturated"), warned
    assert res.sum_image.shape == (128, 128) and res.info["saturated"] == {"adu": 65535.0, "share": 9 / 256}
    said = []
    res = drive(iter_run(RunRequest(np.full((3, 16, 16), 100, np.uint16), model=m, pixel_size=100.0)), said.append)
    assert [p.message for p in said if p.kind == "warning"] == [
        "every pixel of the frames sampled reads 100 ADU: the movie holds no signal (a blank recording, or a "
        "camera saturated everywhere); nothing can be localized in it"]
    assert res.info["saturated"] == {"adu": 100.0, "share": 1.0}
    res = drive(iter_run(RunRequest(rng.normal(300.0, 10.0, (3, 16, 16)), model=m, pixel_size=100.0)), said.append)
    assert res.info["saturated"] is None

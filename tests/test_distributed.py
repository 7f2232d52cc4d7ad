import numpy as np
import pytest
import tifffile

from napari_dsir.errors import DSIRError
from napari_dsir.io import open_stack, write_tiff
from napari_dsir.localize import params_for
from napari_dsir.model import load_model
from napari_dsir.run import reconstruct

distributed = pytest.importorskip("dask.distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def _movie(n=24, size=24, seed=11):
    """Blinking emitters (3 /um^2) on a camera with offset 100 ADU: something
    to find (the default model finds nothing in pure noise)."""
    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(n, SimulationConfig(frame_size=(size, size), density=3.0, photons=(500, 3000),
                                             background=35.0), seed=seed)
    return frames.astype(np.uint16)


def test_cluster_subtracts_a_cameras_column_offsets_as_one_process(client):
    """Columns read high (fixed-pattern noise): their offsets, measured once,
    are subtracted on the workers as in one process."""
    model = load_model("default")
    params = params_for(model)
    data = _movie(seed=12)
    data[:, :, 12] += 60
    data[:, :, 13] += 45
    one = reconstruct(data, model, localize=params, refine=False)
    assert one.info["stripes"]["columns"] >= 2
    many = reconstruct(data, model, localize=params, client=client, chunk=8, refine=False)
    assert many.info["stripes"] == one.info["stripes"]
    np.testing.assert_allclose(many.sum_image, one.sum_image, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(many.localizations.frame, one.localizations.frame)
    np.testing.assert_allclose(many.localizations.x, one.localizations.x)


def test_cluster_matches_single_process(client):
    model = load_model("default")
    params = params_for(model)
    data = _movie()
    data[:, 5, 7] += 2000  # hot pixels: repaired on the workers as in one process
    data[:, 17, 3] += 1500
    one = reconstruct(data, model, localize=params, refine=False)
    assert one.info["hot_pixels"] == [[5, 7], [17, 3]]
    seen = []
    many = reconstruct(data, model, localize=params, client=client, chunk=5, progress=seen.append, refine=False)
    assert len(client.scheduler_info()["workers"]) == 2
    np.testing.assert_allclose(many.sum_image, one.sum_image, rtol=1e-5, atol=1e-5)
    assert len(one.localizations) > 50
    np.testing.assert_array_equal(many.localizations.frame, one.localizations.frame)
    np.testing.assert_allclose(many.localizations.x, one.localizations.x)
    np.testing.assert_allclose(many.localizations.y, one.localizations.y)
    progress = [p for p in seen if p.kind == "progress"]
    assert progress[-1].done == progress[-1].total == 24 and len(progress) == 5  # 5 blocks of <= 5 frames
    # refined on the workers too: the same detections, fitted in other batches
    # (float32: batch composition moves a fit by far less than a nm, and may
    # rarely tip one fit's flag)
    one = reconstruct(data, model, localize=params, camera={"baseline": 100.0})
    many = reconstruct(data, model, localize=params, client=client, chunk=5, camera={"baseline": 100.0})
    np.testing.assert_array_equal(many.localizations.frame, one.localizations.frame)
    close = np.abs(many.localizations.x - one.localizations.x) < 0.1
    assert close.mean() > 0.9 and many.localizations.photons is not None
    assert sum(many.info["fit"].values()) == sum(one.info["fit"].values()) == len(one.localizations)
    # the free fits' chi-square histogram (the camera check) adds up over the chunks
    assert many.info["fit_chi2"].shape == one.info["fit_chi2"].shape
    assert abs(int(many.info["fit_chi2"].sum()) - int(one.info["fit_chi2"].sum())) <= 2


def test_cluster_reads_a_stack_by_path_and_frame_range(client, tmp_path):
    model = load_model("default")
    params = params_for(model)
    path = tmp_path / "movie.tif"
    write_tiff(path, _movie(30, 16, seed=2), 100.0)
    stack = open_stack(path)
    one = reconstruct(stack, model, localize=params, start=4, stop=23)
    many = reconstruct(stack, model, localize=params, start=4, stop=23, client=client, chunk=4)
    np.testing.assert_allclose(many.sum_image, one.sum_image, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(many.localizations.frame, one.localizations.frame)
    assert many.localizations.frame.min() >= 4 and many.localizations.frame.max() <= 22
    assert (many.start, many.stop) == (4, 23)


def test_cluster_bad_input_is_a_clear_error(client, tmp_path):
    model = load_model("default")
    with pytest.raises(DSIRError, match="keep_frames"):
        reconstruct(_movie(4), model, client=client, keep_frames=True)
    with pytest.raises(DSIRError, match="chunk"):
        reconstruct(_movie(4), model, client=client, chunk=0)
    bad = _movie(6).astype(np.float32)
    bad[3, 2, 2] = np.nan
    seen = []
    res = reconstruct(bad, model, client=client, chunk=2, progress=seen.append)  # replaced on the worker, said
    assert res.info["non_finite"] == (1, 1, 3)
    assert any("1 NaN or infinite pixel in 1 frame (the first: frame 3" in p.message for p in seen if p.message)
    path = tmp_path / "nan.tif"  # a file: the warning names it, as in one process
    tifffile.imwrite(path, bad)
    seen.clear()
    reconstruct(open_stack(path), model, client=client, chunk=2, progress=seen.append)
    assert any(p.message.startswith(f"{path}: 1 NaN or infinite pixel") for p in seen if p.message)


def test_cluster_fits_follow_an_uneven_illumination(client):
    """The background's shape measured in the run reaches the workers' fits."""
    from unittest import mock

    from napari_dsir import illumination

    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:32, 0:32] + 0.5
    lit = 4.0 ** (-((yy - 16) ** 2 + (xx - 16) ** 2) / 512.0)
    data = _movie(n=16, size=32, seed=12).astype(np.float32) - 100.0
    data = (rng.poisson(data.clip(0) * lit + 40.0 * lit) + 100).astype(np.uint16)
    model = load_model("default")
    cam = {"baseline": 100.0}
    one = reconstruct(data, model, localize=True, camera=cam)
    many = reconstruct(data, model, localize=True, client=client, chunk=8, camera=cam)
    with mock.patch.object(illumination, "MIN_R2", 2.0):  # never followed
        flat = reconstruct(data, model, localize=True, client=client, chunk=8, camera=cam)
    assert one.info["background_shaped"] and many.info["background_shaped"] and not flat.info["background_shaped"]
    np.testing.assert_array_equal(many.localizations.frame, one.localizations.frame)
    assert (np.abs(many.localizations.x - one.localizations.x) < 0.1).mean() > 0.9
    # (the crowded rows' photons are fitted with each block's PSF: blocks of 8 frames here, of 16 in one process)
    assert np.nanmedian(np.abs(many.localizations.photons / one.localizations.photons - 1)) < 0.01
    # not followed, the network sees other frames and the fits other backgrounds
    assert flat.info["noise_scale"] != one.info["noise_scale"]
    assert len(flat.localizations) != len(one.localizations) or not np.allclose(
        flat.localizations.photons, one.localizations.photons, rtol=1e-3, equal_nan=True)
    # without the fits the camera still takes the beam out, on the workers as in one process
    net_one = reconstruct(data, model, localize=True, refine=False, camera=cam)
    net_many = reconstruct(data, model, localize=True, refine=False, client=client, chunk=8, camera=cam)
    assert net_many.info["background_shaped"] and net_many.info["fit"] is None
    assert net_many.info["noise_scale"] == pytest.approx(net_one.info["noise_scale"], rel=1e-6)
    np.testing.assert_allclose(net_many.localizations.x, net_one.localizations.x, atol=1e-3)
    assert net_many.localizations.photons is None


def test_cluster_leaves_out_the_detections_around_a_saturated_bead(client):
    """The workers leave out a saturated bead's echoes as one process does,
    and the run's warning and counts add up over the blocks."""
    from napari_dsir.distributed import iter_reconstruct_distributed
    from napari_dsir.progress import drive
    from napari_dsir.reconstruct import halo_message, iter_reconstruct
    from napari_dsir.simulate import render_emitters

    data = _movie(n=16, size=32, seed=5).astype(np.float32)
    bead = render_emitters(np.array([1600.0]), np.array([1600.0]), np.array([5e6]), np.array([130.0]), (32, 32),
                           100.0)
    data = np.clip(data + bead[None], 0, 65535).round().astype(np.uint16)
    model = load_model("default")
    one = drive(iter_reconstruct(data, model, pixel_size=100.0, localize=params_for(model)))
    records = []
    many = drive(iter_reconstruct_distributed(data, model, client, pixel_size=100.0, chunk=8,
                                              localize=params_for(model)), records.append)
    assert many.info["halos"] == one.info["halos"] and one.info["halos"][0] == 16 and one.info["halos"][1] > 0
    assert [r.message for r in records if r.kind == "warning"] == [halo_message(*one.info["halos"])]
    np.testing.assert_allclose(many.localizations.x, one.localizations.x, atol=1e-3)

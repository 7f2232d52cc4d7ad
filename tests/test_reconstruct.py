import numpy as np
import pytest
import torch

from napari_dsir.errors import DSIRError
from napari_dsir.evaluate import evaluate
from napari_dsir.io import open_stack
from napari_dsir.localize import LocalizeParams, params_for
from napari_dsir.model import load_checkpoint, load_model
from napari_dsir.progress import drive
from napari_dsir.reconstruct import iter_reconstruct, parse_frames
from napari_dsir.run import reconstruct

from .conftest import shared


def test_sum_equals_sum_of_frames_and_progress(tiny_checkpoint, rng):
    m = load_checkpoint(tiny_checkpoint)
    data = rng.integers(90, 300, (7, 8, 12)).astype(np.uint16)
    seen = []
    r = reconstruct(data, m, batch_size=3, keep_frames=True, progress=seen.append)
    assert r.frames.shape == (7, 64, 96) and r.sum_image.shape == (64, 96)
    np.testing.assert_allclose(r.sum_image, r.frames.sum(0), rtol=1e-5, atol=1e-5)
    assert [p.done for p in seen if p.kind == "progress"] == [3, 6, 7] and all(p.total == 7 for p in seen)
    assert seen[0].kind == "start"
    assert r.pixel_size == pytest.approx(12.5)
    # batch size does not change the result
    r1 = reconstruct(data, m, batch_size=1)
    np.testing.assert_allclose(r1.sum_image, r.sum_image, rtol=1e-4, atol=1e-4)


def test_frame_range_and_localizations_numbering(tiny_checkpoint, rng):
    m = load_checkpoint(tiny_checkpoint)
    data = rng.integers(90, 300, (6, 8, 8)).astype(np.float32)
    full = reconstruct(data, m, keep_frames=True)
    r = reconstruct(data, m, start=2, stop=5, localize=LocalizeParams(threshold=0.0, radius=3))
    np.testing.assert_allclose(r.sum_image, full.frames[2:5].sum(0), rtol=1e-4, atol=1e-4)
    assert set(np.unique(r.localizations.frame)) == {2, 3, 4}
    assert parse_frames("2:5", 6) == (2, 5)
    assert parse_frames(":-1", 6) == (0, 5)
    notes = []
    assert parse_frames("0:400", 6, notes) == (0, 6) and parse_frames("-9:", 6, notes) == (0, 6)
    assert parse_frames("1:6", 6, notes) == (1, 6)
    assert notes == ["--frames 0:400 reaches past the movie's 6 frames: frames 0:6 are run",
                     "--frames -9: reaches past the movie's 6 frames: frames 0:6 are run"]
    with pytest.raises(DSIRError):
        parse_frames("5:2", 6)
    with pytest.raises(DSIRError):
        parse_frames("a:b", 6)


def test_a_frame_of_nan_is_replaced_and_counted(tiny_checkpoint):
    m = load_checkpoint(tiny_checkpoint)
    data = np.full((3, 8, 8), 100.0, np.float32)
    data[1] = np.nan  # no finite pixel: flat, whatever the batch
    res = reconstruct(data, m, batch_size=3)
    assert res.info["non_finite"] == (1, 64, 1) and np.isfinite(res.sum_image).all()
    from napari_dsir.reconstruct import finite_frames

    fixed, nf = finite_frames(data, [0, 1, 2])
    assert (fixed[1] == 0.0).all() and nf == (1, 64, 1)
    np.testing.assert_array_equal(finite_frames(data[1:2], [1])[0], fixed[1:2])


def test_cancel_by_closing_generator(tiny_checkpoint, rng):
    m = load_checkpoint(tiny_checkpoint)
    data = rng.integers(90, 300, (20, 8, 8)).astype(np.uint16)
    gen = iter_reconstruct(data, m, pixel_size=100.0, batch_size=2)
    done = [next(gen).done for _ in range(3)]
    gen.close()
    assert done == [0, 2, 4]
    with pytest.raises(StopIteration):
        next(gen)


def test_out_of_memory_halves_batch(tiny_checkpoint, rng, monkeypatch):
    m = load_checkpoint(tiny_checkpoint)
    data = rng.integers(90, 300, (8, 8, 8)).astype(np.uint16)
    expected = reconstruct(data, m, batch_size=8).sum_image
    real = m.predict

    def fake_predict(x, **kw):
        if len(x) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake allocator)")
        return real(x, **kw)

    monkeypatch.setattr(m, "predict", fake_predict)
    seen = []
    r = reconstruct(data, m, batch_size=8, progress=seen.append)
    assert r.info["batch_size"] == 2
    assert any("lowered to 2" in p.message for p in seen)
    np.testing.assert_allclose(r.sum_image, expected, rtol=1e-4, atol=1e-4)


def test_out_of_memory_in_the_network_or_the_fits_changes_nothing(monkeypatch):
    """A batch that runs out of memory runs again whole, and a block of fits
    that does is fitted in halves: the sum, the table and the counts are
    those of a run with memory to spare (before, a batch whose fits ran out
    of memory was added twice)."""
    from napari_dsir import fit
    from napari_dsir.camera import Camera
    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(8, SimulationConfig(frame_size=(32, 32), density=1.0, photons=(500.0, 5000.0)), seed=5)
    cam = Camera(100.0, 1.0)
    model = load_model("default")
    kw = dict(pixel_size=100.0, localize=True, camera=cam, batch_size=4)
    real_refine, real_predict, blocks = fit.refine, model.predict, []

    def small_refine(frames, *a, **k):
        if "first_frame" not in k:  # the PSF's measurement
            return real_refine(frames, *a, **k)
        blocks.append(len(frames))
        if len(frames) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake allocator)")
        return real_refine(frames, *a, **k)

    def small_predict(x, **k):
        if len(x) > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake allocator)")
        return real_predict(x, **k)

    from napari_dsir import reconstruct as rec
    from napari_dsir.fit import SPLIT

    def band_merge(frames, found, *a):  # merges the detections in a band of x (again: none left)
        keep = (found.x % 1000.0) >= 150.0
        return found.select(keep), int((~keep).sum())

    monkeypatch.setattr(rec, "merge_splits", band_merge)
    want = reconstruct(frames, model, **kw)
    assert want.info["fit"][SPLIT] > 0
    monkeypatch.setattr(fit, "refine", small_refine)
    seen = []
    got = reconstruct(frames, model, progress=seen.append, **kw)
    assert blocks == [8, 4, 2, 2, 4, 2, 2]  # the block of 8 frames in halves
    assert [p.message for p in seen if p.kind == "warning" and "fits" in p.message] == [
        "out of memory in the fits: blocks of frames fitted in smaller parts"]
    monkeypatch.setattr(model, "predict", small_predict)
    got2 = reconstruct(frames, model, **kw)
    assert got2.info["batch_size"] == 2
    for r in (got, got2):
        np.testing.assert_allclose(r.sum_image, want.sum_image, rtol=1e-5, atol=1e-5)
        assert r.info["fit"] == want.info["fit"] and len(r.localizations) == len(want.localizations) > 10
        np.testing.assert_allclose(r.localizations.x, want.localizations.x, atol=0.05)  # nm (float32 fits)
        np.testing.assert_array_equal(r.localizations.frame, want.localizations.frame)
    monkeypatch.setattr(model, "predict", real_predict)

    def no_memory(frames, *a, **k):
        if "first_frame" not in k:
            return real_refine(frames, *a, **k)
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (fake allocator)")

    monkeypatch.setattr(fit, "refine", no_memory)
    with pytest.raises(DSIRError, match="fitting the detections of one frame"):
        reconstruct(frames, model, **kw)


def test_memory_stays_bounded_when_streaming(tiny_checkpoint, tmp_path, rng):
    """Frames are read batch by batch: the reader never gets more than a batch."""
    import tifffile

    p = tmp_path / "big.tif"
    tifffile.imwrite(p, rng.integers(90, 300, (40, 8, 8)).astype(np.uint16))
    s = open_stack(p)
    sizes = []
    real = s._read
    s._read = lambda a, b: (sizes.append(b - a), real(a, b))[1]
    from napari_dsir.reconstruct import HOT_SAMPLE_FRAMES, PSF_SAMPLE_FRAMES, SATURATION_SAMPLE_FRAMES

    # the check for saturation reads a sample of frames, one by one
    reconstruct(s, load_checkpoint(tiny_checkpoint), batch_size=4, binning=1, hot_pixels=False)
    assert max(sizes) == 4 and sum(sizes) == 40 + min(40, SATURATION_SAMPLE_FRAMES)
    # so do looking for hot pixels and measuring the PSF for the network's binning
    sizes.clear()
    reconstruct(s, load_checkpoint(tiny_checkpoint), batch_size=4)
    assert max(sizes) == 4 and sum(sizes) == (40 + min(40, SATURATION_SAMPLE_FRAMES) + min(40, HOT_SAMPLE_FRAMES)
                                              + min(40, PSF_SAMPLE_FRAMES))


def test_legacy_on_bundled_tubes_gives_tube_like_sum():
    seq = shared("bundled_tubes_hd", "sequence")
    w = shared("dsir_original", "autoencoder_model.pt")
    s = open_stack(seq)
    m = load_model(f"legacy:{w}")
    r = reconstruct(s, m, pixel_size=100.0, batch_size=16, stop=64)
    img = r.sum_image
    assert img.shape == (512, 512) and np.isfinite(img).all() and img.max() > 0
    # non-degenerate and sparse: a small fraction of pixels carries most signal
    flat = np.sort(img.ravel())[::-1]
    top = flat[: flat.size // 10].sum() / flat.sum()
    assert top > 0.5
    # tube-like: the bright pixels follow the raw data's structures
    mean_raw = s.read(0, 64).astype(float).mean(0)
    up = np.kron(mean_raw, np.ones((8, 8)))
    # inside the outer camera pixel, whose response the original pipeline
    # blends with zeros (reproduced on purpose: dots along the edges)
    inner = (slice(8, -8), slice(8, -8))
    corr = np.corrcoef(img[inner].ravel(), up[inner].ravel())[0, 1]
    assert corr > 0.3


def test_dask_input_is_read_chunk_by_chunk(tiny_checkpoint, rng):
    """A lazy (dask) stack, as napari layers from our reader hold, is computed
    one chunk at a time and each chunk once, whatever the batch size."""
    da = pytest.importorskip("dask.array")
    import dask

    m = load_checkpoint(tiny_checkpoint)
    data = rng.integers(90, 300, (20, 8, 8)).astype(np.uint16)
    reads = []

    def load(b, e):
        reads.append((b, e))
        return data[b:e]

    lazy = da.concatenate([da.from_delayed(dask.delayed(load)(b, min(b + 6, 20)), (min(b + 6, 20) - b, 8, 8),
                                           data.dtype) for b in range(0, 20, 6)])
    r = reconstruct(lazy, m, batch_size=1, start=2)
    assert sorted(reads) == [(0, 6), (6, 12), (12, 18), (18, 20)]
    ref = reconstruct(data, m, batch_size=4, start=2)
    np.testing.assert_allclose(r.sum_image, ref.sum_image, rtol=1e-5, atol=1e-5)


def test_memory_stays_bounded_over_many_frames(tiny_checkpoint, tmp_path, rng, monkeypatch):
    """The numpy memory held at the peak of a 300-frame run is that of a
    128-frame run plus the localization table: frames stream through (keeping
    the 300 output frames would take 20 MB). Both runs refine whole blocks
    of `FIT_EVERY` frames (128 here), whose transient memory does not depend
    on the movie's length. tracemalloc counts numpy's allocations exactly,
    so this does not depend on the machine's load."""
    import tracemalloc

    from napari_dsir import reconstruct as rec

    monkeypatch.setattr(rec, "FIT_EVERY", 128)

    from napari_dsir.io import write_tiff

    path = tmp_path / "long.tif"
    write_tiff(path, rng.integers(90, 400, (300, 16, 16)).astype(np.uint16), 100.0)
    m, stack = load_checkpoint(tiny_checkpoint), open_stack(path)
    params = LocalizeParams(threshold=0.0, blur_fwhm=0)
    peaks, tables = [], []
    for stop in (128, 300):
        tracemalloc.start()
        r = reconstruct(stack, m, stop=stop, localize=params)
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        locs = r.localizations
        tables.append(sum(v.nbytes for v in (locs.frame, locs.x, locs.y, *locs.columns().values())))
    assert tables[1] > 2 * tables[0] > 0  # the table grows with the frames (2.3x the frames)...
    # ...and nothing else does (the blocks and their concatenation: twice the table)
    assert peaks[1] - peaks[0] < 2 * tables[1] + 2**20


def test_heap_is_trimmed_by_time_not_by_every_block(tiny_checkpoint, rng, monkeypatch):
    """The heap goes back to the OS at a block boundary (`TRIM_EVERY`
    frames) only when `TRIM_SECONDS` have passed since the last trim (the
    clock here is a counter: one second per call); the sum image does not
    depend on it."""
    from napari_dsir import reconstruct as rec

    frames = rng.integers(90, 400, (40, 8, 8)).astype(np.float32)
    m = load_checkpoint(tiny_checkpoint)
    clock = iter(range(10**6))
    monkeypatch.setattr(rec.time, "monotonic", lambda: float(next(clock)))
    monkeypatch.setattr(rec, "TRIM_EVERY", 4)
    sums = {}
    n = {}
    for seconds in (0.0, 2.5, 10**9):
        calls = []
        monkeypatch.setattr(rec, "_trim_heap", lambda calls=calls: calls.append(1))
        monkeypatch.setattr(rec, "TRIM_SECONDS", seconds)
        sums[seconds] = reconstruct(frames, m, pixel_size=100.0, batch_size=2).sum_image
        n[seconds] = len(calls)
    assert n[0.0] == 10 and 0 < n[2.5] < 5 and n[10**9] == 0  # 40 frames: 10 boundaries
    np.testing.assert_array_equal(sums[0.0], sums[10**9])


def test_reconstruct_uses_the_stacks_own_pixel_size(tiny_checkpoint, tmp_path, rng):
    """Regression: reconstruct(stack) took 100 nm whatever the file said."""
    from napari_dsir.io import write_tiff

    path = tmp_path / "px160.tif"
    write_tiff(path, rng.integers(90, 300, (2, 8, 8)).astype(np.uint16), 160.0)
    m = load_checkpoint(tiny_checkpoint)
    seen = []
    r = reconstruct(open_stack(path), m, progress=seen.append)
    assert r.pixel_size == pytest.approx(160.0 / 8) and r.info["pixel_size_origin"] == "metadata"
    assert not [p for p in seen if p.kind == "warning"]
    r = reconstruct(path, m, pixel_size=80.0)  # an explicit value comes first
    assert r.pixel_size == pytest.approx(10.0) and r.info["pixel_size_origin"] == "given"
    seen = []
    r = reconstruct(rng.integers(90, 300, (2, 8, 8)), m, progress=seen.append)  # no metadata: 100, warned once
    assert r.pixel_size == pytest.approx(12.5) and r.info["pixel_size_origin"] == "default"
    assert [p.message for p in seen if p.kind == "warning"] == [
        "the input: no pixel size given with the frames; assuming 100 nm (set the camera pixel size to change it)"]
    # a dask array of the file's (Stack.to_dask, as napari's layer holds): the file's pixel size and camera
    write_tiff(path, rng.integers(90, 300, (2, 8, 8)).astype(np.uint16), 160.0, overwrite=True)
    seen = []
    r = reconstruct(open_stack(path).to_dask(), m, progress=seen.append)
    assert r.pixel_size == pytest.approx(160.0 / 8) and r.info["pixel_size_origin"] == "metadata"
    assert not [p for p in seen if p.kind == "warning"]
    # a pixel size that no SMLM camera has (0.1: um taken for nm; a file's calibration in mm) is run, and warned of
    for given, meta, origin in ((0.1, None, "given"), (None, 1e5, "from the metadata of the input")):
        seen = []
        reconstruct(rng.integers(90, 300, (2, 8, 8)), m, pixel_size=given, source_pixel_size=meta,
                    progress=seen.append)
        odd = [p.message for p in seen if p.kind == "warning"]
        assert len(odd) == 1 and f"nm ({origin}) is outside the 20-1000 nm of SMLM cameras" in odd[0], odd


def test_a_model_with_no_calibrated_localizer_is_warned_of(tiny_checkpoint, rng):
    """A checkpoint saved before its calibration (an interrupted training)
    localizes with the default threshold: the run says so, unless the
    threshold is given; a calibrated model is not warned of."""
    m = load_checkpoint(tiny_checkpoint)
    assert "localize" not in m.metadata
    frames = rng.integers(90, 300, (2, 8, 8))
    for threshold, warned in ((None, True), (0.5, False)):
        seen = []
        reconstruct(frames, m, pixel_size=100.0, localize=True, threshold=threshold, progress=seen.append)
        said = [p.message for p in seen if p.kind == "warning" and "no calibrated localizer" in p.message]
        assert bool(said) is warned, said
    m.metadata["localize"] = {"threshold": 0.2}
    seen = []
    reconstruct(frames, m, pixel_size=100.0, localize=True, progress=seen.append)
    assert not [p for p in seen if p.kind == "warning" and "no calibrated localizer" in p.message]


def test_cancel_event_stops_a_run(tiny_checkpoint, rng):
    import threading

    from napari_dsir.errors import Cancelled

    m = load_checkpoint(tiny_checkpoint)
    event = threading.Event()

    def cancel_after_first_batch(p):
        if p.done >= 2:
            event.set()

    from napari_dsir.run import RunRequest, run

    with pytest.raises(Cancelled):
        run(RunRequest(rng.integers(90, 300, (20, 8, 8)), model=m, batch_size=2), cancel_after_first_batch, event)


def test_movie_normalised_model_uses_one_noise_level_for_the_whole_movie(tiny_shuffle_checkpoint):
    """The noise level is measured once, on frames spread over the movie, and
    every batch is divided by it: a frame's output does not depend on the
    batch it is in, nor on which frames are processed with it."""
    from napari_dsir.model import load_model, movie_scale
    from napari_dsir.reconstruct import iter_reconstruct

    model = load_model(str(tiny_shuffle_checkpoint))
    rng = np.random.default_rng(0)
    frames = rng.poisson(40, (20, 24, 24)).astype(np.float32) + 100
    frames[10:, 8:12, 8:12] += 3000  # bright frames in the second half
    res = drive(iter_reconstruct(frames, model, pixel_size=100.0, batch_size=3, keep_frames=True))
    assert res.info["noise_scale"] == pytest.approx(movie_scale(torch.from_numpy(frames)), rel=1e-6)
    one = drive(iter_reconstruct(frames, model, pixel_size=100.0, batch_size=1, keep_frames=True,
                                 start=2, stop=3, noise_scale=res.info["noise_scale"]))
    np.testing.assert_allclose(one.frames[0], res.frames[2], atol=1e-5)


def test_a_movie_brighter_than_the_training_is_scaled_down_with_a_warning(tiny_shuffle_checkpoint, tmp_path,
                                                                          monkeypatch):
    """Spots taller (in noise levels) than the model's ceiling: the whole
    movie is divided by its noise level times their ratio, a warning says so
    (and that the network's echoes beside them are left out, as they are)
    and the result records the factor; the same movie with a ceiling above
    its spots runs as before."""
    from napari_dsir import reconstruct as rec
    from napari_dsir.localize import LocalizeParams
    from napari_dsir.model import load_model, movie_scale, movie_spot_height, save_checkpoint
    from napari_dsir.reconstruct import iter_reconstruct

    echoed = []
    suppress = rec.suppress_echoes
    monkeypatch.setattr(rec, "suppress_echoes", lambda locs, r: echoed.append(r) or suppress(locs, r))

    model = load_model(str(tiny_shuffle_checkpoint))
    rng = np.random.default_rng(0)
    frames = rng.poisson(20, (12, 24, 24)).astype(np.float32) + 100
    frames[:, 6, 6] += 3000
    frames[:, 16, 12] += 2000
    s = movie_scale(torch.from_numpy(frames))
    height = movie_spot_height(torch.from_numpy(frames), s)
    for ceiling, factor in ((height / 4, 4.0), (height * 2, 1.0)):
        model.metadata["spot_ceiling"] = {"height": ceiling}
        path = save_checkpoint(tmp_path / "m.pt", model)
        records = []
        echoed.clear()
        res = drive(iter_reconstruct(frames, load_model(str(path)), pixel_size=100.0, batch_size=4,
                                     localize=LocalizeParams(threshold=0.5)), records.append)
        warned = [r.message for r in records if r.kind == "warning"]
        assert res.info["brightness_factor"] == pytest.approx(factor)
        assert res.info["noise_scale"] == pytest.approx(s * factor, rel=1e-5)
        assert len(warned) == (factor > 1) and all("scaled down 4.0x" in m and "echoes" in m for m in warned)
        assert echoed == ([200.0] * 3 if factor > 1 else [])  # 2 px, each of the 3 batches


def test_refinement_reports_the_models_own_error_in_crowds():
    """The run path gives the refinement the checkpoint's network error
    (per neighbour class, growing with the bound, the density and the PSF's
    width, its own for pulled rows):
    the rows it keeps at the network's position carry what
    `fit.refine` gives them with those settings, started from the PSF the
    run measured, and more than their bound."""
    from dataclasses import replace

    from napari_dsir import fit
    from napari_dsir.camera import Camera
    from napari_dsir.localize import params_for
    from napari_dsir.reconstruct import fit_sigma_init, refine_settings
    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(6, SimulationConfig(frame_size=(32, 32), density=3.0, photons=(500.0, 5000.0)), seed=4)
    cam = Camera(100.0, 1.0)
    model = load_model("default")
    params = replace(params_for(model), crowded_error_power=0.5, pulled_error_px=0.3,
                     crowded_error_density=(0.5, 0.7, 1.0, 1.5, 1.2), crowded_error_sigma_power=1.2)
    model.metadata["localize"] = params.to_dict()
    run = reconstruct(frames, model, pixel_size=100.0, localize=True, camera=cam)
    got = run.localizations
    found = reconstruct(frames, model, pixel_size=100.0, localize=True, refine=False).localizations
    photons = cam.to_photons(torch.from_numpy(frames.astype(np.float32)))
    start = fit_sigma_init(run.info)
    assert 80 < start < 160  # FWHM 200-300 nm simulated
    want = fit.refine(photons, found, 100.0, cam, **refine_settings(100.0, params, start))
    bare = fit.refine(photons, found, 100.0, cam, **refine_settings(100.0, None, start))
    np.testing.assert_allclose(got.uncertainty, want.locs.uncertainty, rtol=1e-6)
    kept = np.isin(want.status, (fit.CROWDED, fit.PULLED))
    assert kept.sum() > 20 and (want.locs.uncertainty[kept] > bare.locs.uncertainty[kept] + 5.0).all()


def test_isolation_is_a_distance_in_nm():
    """A neighbour closer than 500 nm makes a detection crowded, whatever
    the camera's pixel: 5 px of 100 nm, 3.125 px of 160 nm."""
    from napari_dsir.reconstruct import FIT_ISOLATION_NM, fit_settings

    assert FIT_ISOLATION_NM == 500.0
    assert fit_settings()["isolation_px"] == 5.0 and fit_settings(160.0)["isolation_px"] == 3.125


def test_fit_window_is_about_700_nm_whatever_the_pixel():
    """The fitting window is the odd number of camera pixels nearest to
    700 nm, at least 5; reconstruct refines in it unless given one."""
    from napari_dsir import fit
    from napari_dsir.camera import Camera
    from napari_dsir.localize import params_for
    from napari_dsir.reconstruct import FIT_WINDOW_NM, fit_settings, fit_sigma_init, fit_window, refine_settings
    from napari_dsir.simulate import SimulationConfig, simulate

    assert FIT_WINDOW_NM == 700.0
    assert [fit_window(p) for p in (65.0, 80.0, 100.0, 110.0, 130.0, 160.0, 400.0)] == [11, 9, 7, 7, 5, 5, 5]
    assert fit_settings(160.0)["window"] == 5 and fit_settings()["window"] == 7
    # the PSF sigma's bounds are distances in nm too (0.5-3 px of 100 nm)
    assert fit_settings()["sigma_bounds_px"] == (0.5, 3.0) and fit_settings(160.0)["sigma_bounds_px"] == (0.3125, 1.875)
    cfg = SimulationConfig(frame_size=(24, 24), density=1.5, photons=(800.0, 4000.0), pixel_size=160.0)
    frames, _ = simulate(4, cfg, seed=8)
    cam = Camera(100.0, 1.0)
    model = load_model("default")
    run = reconstruct(frames, model, pixel_size=160.0, localize=True, camera=cam)
    got = run.localizations
    found = reconstruct(frames, model, pixel_size=160.0, localize=True, refine=False).localizations
    photons = cam.to_photons(torch.from_numpy(frames.astype(np.float32)))
    settings = refine_settings(160.0, params_for(model), fit_sigma_init(run.info))
    assert settings["window"] == 5
    want = fit.refine(photons, found, 160.0, cam, **settings)
    np.testing.assert_allclose(got.photons, want.locs.photons, rtol=1e-5)
    seven = fit.refine(photons, found, 160.0, cam, **{**settings, "window": 7})
    assert not np.allclose(seven.locs.photons, want.locs.photons, rtol=1e-5, equal_nan=True)
    given = reconstruct(frames, model, pixel_size=160.0, localize=True, camera=cam, fit_window=7).localizations
    np.testing.assert_allclose(given.photons, seven.locs.photons, rtol=1e-5)


def test_window_and_isolation_grow_with_a_wide_psf():
    """Beyond a FWHM of 350 nm the fitting window and the isolation distance
    grow with the PSF measured on the movie (the fits' start); a run refines
    with them, its window no larger than its frames."""
    from napari_dsir import fit
    from napari_dsir.camera import Camera
    from napari_dsir.localize import params_for
    from napari_dsir.reconstruct import FIT_PSF_REF_NM, fit_settings, fit_sigma_init, psf_scale, refine_settings
    from napari_dsir.simulate import FWHM_TO_SIGMA, SimulationConfig, simulate

    assert FIT_PSF_REF_NM == 350.0
    assert psf_scale(None) == psf_scale(float("nan")) == psf_scale(300.0) == 1.0 and psf_scale(525.0) == 1.5
    assert fit_settings(100.0, 300.0) == fit_settings(100.0)
    wide = fit_settings(100.0, 525.0)
    assert wide["window"] == 11 and wide["isolation_px"] == pytest.approx(7.5)
    start = 525.0 * FWHM_TO_SIGMA
    assert refine_settings(100.0, sigma_init_nm=start)["window"] == 11
    assert refine_settings(100.0, sigma_init_nm=start, frame_shape=(10, 12))["window"] == 9
    assert refine_settings(100.0, sigma_init_nm=start, frame_shape=(5, 5))["window"] == 7  # as before: refused
    assert refine_settings(100.0, sigma_init_nm=start, window=5, frame_shape=(10, 12))["window"] == 5

    cfg = SimulationConfig(frame_size=(24, 24), density=1.0, fwhm=(480.0, 520.0), photons=(1500.0, 4000.0))
    frames, _ = simulate(6, cfg, seed=5)
    cam = Camera(100.0, 1.0)
    model = load_model("default")
    run = reconstruct(frames, model, pixel_size=100.0, localize=True, camera=cam, binning=1)
    start = fit_sigma_init(run.info)
    settings = refine_settings(100.0, params_for(model), start, frame_shape=(24, 24))
    assert settings["window"] >= 9 and settings["isolation_px"] > 6
    found = reconstruct(frames, model, pixel_size=100.0, localize=True, refine=False, binning=1).localizations
    photons = cam.to_photons(torch.from_numpy(frames.astype(np.float32)))
    want = fit.refine(photons, found, 100.0, cam, **settings)
    np.testing.assert_allclose(run.localizations.photons, want.locs.photons, rtol=1e-5)
    np.testing.assert_array_equal(run.localizations.x, want.locs.x)
    plain = fit.refine(photons, found, 100.0, cam, **{**settings, **fit_settings(100.0)})
    # more detections count as crowded with the wider isolation distance
    assert (want.status == fit.CROWDED).sum() > (plain.status == fit.CROWDED).sum()


def test_fits_start_from_the_measured_psf():
    """Pairs of emitters 600 nm apart with a 450 nm PSF on 100 nm pixels:
    started at 1 px, each fit's neighbour, held at its first estimate, puts
    too little light in the tails and the fit is pulled toward it; started
    from the PSF measured on the movie (`fit_sigma_init`), far less, and
    fewer fits are held as pulled."""
    from napari_dsir import fit
    from napari_dsir.camera import Camera
    from napari_dsir.locs import Localizations
    from napari_dsir.psf import measure_fwhm
    from napari_dsir.reconstruct import fit_settings, fit_sigma_init
    from napari_dsir.simulate import render_emitters

    assert fit_sigma_init(None) is None and fit_sigma_init({"psf_fwhm_q25_nm": None}) is None
    assert fit_sigma_init({"psf_fwhm_nm": 300.0, "psf_fwhm_q25_nm": 235.48}) == pytest.approx(100.0, rel=1e-4)
    rng = np.random.default_rng(3)
    n, size = 40, 24
    frames = np.empty((n, size, size), np.float32)
    cx, cy = 1200 + rng.uniform(-50, 50, n), 1200 + rng.uniform(-50, 50, n)
    xs, ys = np.column_stack([cx - 300, cx + 300]).ravel(), np.repeat(cy, 2)
    for f in range(n):
        mu = render_emitters(xs[2 * f : 2 * f + 2], ys[2 * f : 2 * f + 2], np.full(2, 3000.0), np.full(2, 190.0),
                             (size, size), 100.0)
        frames[f] = rng.poisson(mu + 30.0) + 100.0
    found = Localizations(np.repeat(np.arange(n), 2), xs + rng.normal(0, 10, 2 * n), ys + rng.normal(0, 10, 2 * n))
    cam = Camera(100.0, 1.0)
    photons = cam.to_photons(torch.from_numpy(frames))
    width = measure_fwhm(frames, 100.0, cam)
    median, q25 = width.median, width.q25
    assert 420 < q25 <= median < 520
    toward = np.tile([1.0, -1.0], n)  # the direction of each emitter's neighbour along x
    pull = {}
    for start in (None, fit_sigma_init({"psf_fwhm_q25_nm": q25})):
        res = fit.refine(photons, found, 100.0, cam, **fit_settings(), sigma_init_nm=start)
        ok = res.status == fit.OK
        pull[start is None] = (float(np.mean(toward[ok] * (res.locs.x[ok] - xs[ok]))), ok.mean())
    (measured, ok_measured), (one_px, ok_one_px) = pull[False], pull[True]
    assert one_px > 20 and abs(measured) < 15 and ok_measured > ok_one_px + 0.1, pull


def test_hot_pixels_are_repaired_for_the_whole_run():
    """A camera's hot pixels, found on the movie, are repaired in every frame
    before the network and the fits: no emitter reported there, a warning
    and the table's metadata say which; ``hot_pixels=False`` keeps them."""
    from napari_dsir.run import RunRequest, iter_run
    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(16, SimulationConfig(frame_size=(32, 32), density=0.5, photons=(500, 3000),
                                              background=30.0), seed=4)
    hot = np.array([[6, 9], [20, 25]])
    frames[:, hot[:, 0], hot[:, 1]] += 1500
    for repair_them in (True, False):
        records = []
        res = drive(iter_run(RunRequest(frames.astype(np.uint16), localize=True, camera={"baseline": 100.0},
                                        hot_pixels=repair_them)), records.append)
        warned = [p.message for p in records if p.kind == "warning"]
        locs = res.localizations
        at_hot = sum(int((np.hypot(locs.x - (x + 0.5) * 100, locs.y - (y + 0.5) * 100) < 100).sum()) for y, x in hot)
        if repair_them:
            assert res.info["hot_pixels"] == hot.tolist()
            assert any(m.startswith("2 hot pixels") and "(x 9, y 6)" in m for m in warned)
            assert at_hot <= 2  # an emitter that happens to be there
        else:
            assert res.info["hot_pixels"] == [] and not any("hot pixel" in m for m in warned)
            assert at_hot >= 24  # one in nearly every frame at each


def test_cpu_batches_shrink_with_the_frames_super_resolved_size():
    """The CPU's default batch of the fast network holds at most 8 frames of
    128x128 camera px on its x8 grid: fewer for larger frames, one above
    256x256 px (a batch of 8 frames of 2048x2048 px was killed by the
    system for want of memory); GPUs keep 32, the DSIR auto-encoder 1."""
    from napari_dsir.reconstruct import CPU_BATCH_SR_PIXELS, check_args, default_batch_size

    model = load_model("default")
    assert [default_batch_size("cpu", model, (s, s)) for s in (64, 128, 181, 256, 257, 2048)] == [8, 8, 4, 2, 1, 1]
    assert default_batch_size("cpu", model) == 8
    assert default_batch_size("cuda", model, (2048, 2048)) == 32
    assert default_batch_size("cpu", load_model("dsir"), (64, 64)) == 1
    for s in (100, 200, 300):
        bs = default_batch_size("cpu", model, (s, s))
        assert bs == 1 or bs * s * s * 64 <= CPU_BATCH_SR_PIXELS
    assert check_args(10, 0, None, None, 100.0, model, (300, 300))[2] == 1
    assert check_args(10, 0, None, 5, 100.0, model, (300, 300))[2] == 5  # given: kept


def test_a_run_on_large_frames_uses_the_smaller_batch():
    frames = np.random.default_rng(0).poisson(20, (2, 264, 264)).astype(np.float32) + 100
    res = reconstruct(frames, "default", pixel_size=100.0)
    assert res.info["batch_size"] == 1 and res.sum_image.shape == (264 * 8, 264 * 8)


def test_a_saturated_bead_keeps_its_centre_and_leaves_the_rest_of_the_movie_alone():
    """A fiducial bead at the camera's maximum in every frame (a real
    movie's drift marker): the network's echoes around it are left out
    with a warning, the bead keeps one detection per frame at its centre,
    and the emitters away from it are found as in the same movie without
    the bead."""
    from napari_dsir.reconstruct import iter_reconstruct
    from napari_dsir.simulate import SimulationConfig, render_emitters, simulate

    cfg = SimulationConfig(frame_size=(48, 48), density=1.0, fwhm=(250.0, 350.0), photons=(300.0, 3000.0),
                           background=30.0, base_level=100.0, gain=2.0, read_noise=1.5)
    clean, _ = simulate(8, cfg, seed=3)
    bead = render_emitters(np.array([2400.0]), np.array([2400.0]), np.array([5e6]), np.array([130.0]), (48, 48),
                           100.0)
    movie = np.clip(clean + 2.0 * bead[None], 0, 65535).round().astype(np.float32)
    model = load_model()
    runs = {}
    for name, frames in (("clean", clean), ("bead", movie)):
        records = []
        res = drive(iter_reconstruct(frames, model, pixel_size=100.0, localize=params_for(model)), records.append)
        runs[name] = (res, [r.message for r in records if r.kind == "warning"])
    (clean_res, clean_warn), (bead_res, bead_warn) = runs["clean"], runs["bead"]
    assert clean_res.info["halos"] == (0, 0) and clean_warn == []
    objects, left_out = bead_res.info["halos"]
    assert objects == 8 and left_out > 8
    assert len(bead_warn) == 1 and f"{left_out} detections around them left out" in bead_warn[0]
    assert bead_res.info["noise_scale"] == pytest.approx(clean_res.info["noise_scale"], rel=0.15)
    assert bead_res.info["brightness_factor"] == 1.0
    L = bead_res.localizations
    d = np.hypot(L.x - 2400.0, L.y - 2400.0)
    at_bead = d < 300.0
    assert np.bincount(L.frame[at_bead], minlength=8).max() <= 1 and at_bead.sum() >= 1
    assert not ((d >= 300.0) & (d < 900.0)).any()  # the halo, 3-9 px out
    # the sum image agrees: nothing 5-9 px out (the bead's radius is under 4 px), as in the clean movie there
    yy, xx = (np.mgrid[:384, :384] + 0.5) * 12.5
    ring = (np.hypot(yy - 2400.0, xx - 2400.0) > 500.0) & (np.hypot(yy - 2400.0, xx - 2400.0) < 900.0)
    assert bead_res.sum_image[ring].max() == 0 and clean_res.sum_image[ring].max() > 0
    far = d > 1500.0
    C = clean_res.localizations
    c_far = np.hypot(C.x - 2400.0, C.y - 2400.0) > 1500.0
    assert abs(int(far.sum()) - int(c_far.sum())) <= 0.1 * c_far.sum()


def test_a_padded_border_is_repaired_with_a_warning_and_no_detection_from_inside_it():
    """Frames padded with zeros on two sides (registered, or cropped to a
    shape): the run finds the dead pixels, says so, repairs them for the
    network and the fits, keeps no detection from inside them, and finds
    the emitters in the live part as in the unpadded movie (before: a
    line of false detections along the step)."""
    from napari_dsir.run import RunRequest, iter_run
    from napari_dsir.simulate import SimulationConfig, simulate

    cfg = SimulationConfig(frame_size=(40, 40), density=1.0, fwhm=(250.0, 350.0), photons=(300.0, 3000.0),
                           background=30.0, base_level=100.0, gain=2.0, read_noise=1.5)
    clean, _ = simulate(20, cfg, seed=8)
    padded = clean.copy()
    padded[:, :, :6] = 0.0
    padded[:, :5, :] = 0.0
    runs = {}
    for name, frames in (("clean", clean), ("padded", padded)):
        records = []
        res = drive(iter_run(RunRequest(frames, pixel_size=100.0, localize=True, camera={"sensitivity": 0.5})),
                    records.append)
        runs[name] = (res, [r.message for r in records if r.kind == "warning"])
    (clean_res, clean_warn), (res, warn) = runs["clean"], runs["padded"]
    assert clean_res.info["dead_pixels"] == 0 and not any("dead pixel" in m for m in clean_warn)
    assert res.info["dead_pixels"] == 40 * 6 + 5 * 34 and sum("410 dead pixels" in m for m in warn) == 1
    L, C = res.localizations, clean_res.localizations
    assert not ((L.x < 500.0) | (L.y < 400.0)).any()  # none more than a pixel inside
    report = res.info["fit_report"]  # its counts hold the detections left out after their fits
    assert report["dead_left_out"] == res.info["dead_left_out"]
    assert report["total"] == len(L) + report["dead_left_out"]
    from napari_dsir.fit import fit_summary

    said = "of these inside dead pixels left out after their fits"
    assert (said in fit_summary(report)) == (report["dead_left_out"] > 0)
    assert f"; 119 {said}" in fit_summary({**report, "dead_left_out": 119})
    live = (L.x > 800.0) & (L.y > 700.0)
    c_live = (C.x > 800.0) & (C.y > 700.0)
    assert abs(int(live.sum()) - int(c_live.sum())) <= 0.05 * c_live.sum()


def test_a_striped_camera_is_corrected_with_a_warning():
    """Frames of a camera whose columns read uncorrected offsets (two
    neighbouring columns 50 and 40 ADU high among others of 15 ADU sd): the
    run measures and subtracts them, says so, and finds the emitters as in
    the clean movie (before: false detections all along the bright
    columns); hot_pixels=False keeps them."""
    from napari_dsir.run import RunRequest, iter_run
    from napari_dsir.simulate import SimulationConfig, simulate

    cfg = SimulationConfig(frame_size=(40, 40), density=1.0, fwhm=(250.0, 350.0), photons=(300.0, 3000.0),
                           background=30.0, base_level=100.0, gain=2.0, read_noise=1.5, margin=200.0)
    clean, gt = simulate(24, cfg, seed=8)
    cols = np.random.default_rng(4).normal(0.0, 15.0, 40)
    cols[[20, 21]] = 50.0, 40.0
    striped = (clean + cols[None, None, :]).astype(np.float32)
    runs = {}
    for name, frames, keep in (("clean", clean, True), ("striped", striped, True), ("kept", striped, False)):
        records = []
        res = drive(iter_run(RunRequest(frames, pixel_size=100.0, localize=True, hot_pixels=keep,
                                        camera={"sensitivity": 0.5, "read_noise": 1.5})), records.append)
        runs[name] = (res, [r.message for r in records if r.kind == "warning"], evaluate(gt, res.localizations))
    clean_res, clean_warn, clean_m = runs["clean"]
    res, warn, m = runs["striped"]
    assert clean_res.info["stripes"]["columns"] == 0 and not any("fixed-pattern" in w for w in clean_warn)
    assert res.info["stripes"]["columns"] >= 2 and res.info["stripes"]["rows"] == 0
    assert sum("columns of the camera read above or below their neighbours" in w for w in warn) == 1
    assert m.precision > clean_m.precision - 0.03 and m.jaccard > clean_m.jaccard - 0.03
    assert runs["kept"][2].precision < m.precision - 0.1  # the columns' false detections
    assert runs["kept"][0].info["stripes"]["columns"] == 0


def test_a_saturated_bead_in_padded_frames_is_light_not_a_dead_pixel():
    """Its clipped top reads the same (the camera's maximum) in every frame,
    as padding does: it is not repaired as dead (which left a ring of
    maxima that made the movie look 10x too bright), the padding is."""
    from napari_dsir.run import RunRequest, iter_run
    from napari_dsir.simulate import SimulationConfig, render_emitters, simulate

    cfg = SimulationConfig(frame_size=(40, 40), density=1.0, fwhm=(250.0, 350.0), photons=(300.0, 3000.0),
                           background=30.0, base_level=100.0, gain=2.0, read_noise=1.5)
    frames, _ = simulate(20, cfg, seed=9)
    bead = render_emitters(np.array([2500.0]), np.array([2000.0]), np.array([5e6]), np.array([130.0]), (40, 40),
                           100.0)
    frames = np.clip(frames + 2.0 * bead[None], 0, 65535).round()
    frames[:, :, :5] = 0.0
    res = drive(iter_run(RunRequest(frames, pixel_size=100.0, localize=True, refine=False)))
    assert res.info["dead_pixels"] == 40 * 5 and res.info["brightness_factor"] == 1.0
    assert res.info["halos"][0] == 20 and res.info["halos"][1] > 0


def test_nan_padding_is_repaired_as_dead_and_nan_elsewhere_is_replaced_and_said():
    """A float image registered and padded with NaN: those pixels are dead
    (NaN in every frame) and the run goes on; NaN and infinite pixels in a
    few frames (late in a long movie: the work before them was lost) are
    replaced by their frame's median, with a warning and a count."""
    from napari_dsir.simulate import SimulationConfig, simulate

    cfg = SimulationConfig(frame_size=(32, 32), density=1.0, background=30.0, base_level=100.0)
    frames, _ = simulate(20, cfg, seed=3)
    frames = frames.astype(np.float32)
    frames[:, :, :4] = np.nan
    res = reconstruct(frames, pixel_size=100.0, localize=True, refine=False)
    assert res.info["dead_pixels"] == 32 * 4 and np.isfinite(res.sum_image).all()
    assert len(res.localizations) and not (res.localizations.x < 300.0).any()
    frames[7, 10, 10] = np.nan  # beside the padding: only this one is counted, and no NaN is left
    res = reconstruct(frames, pixel_size=100.0, localize=True, refine=False)
    assert res.info["non_finite"] == (1, 1, 7) and res.info["dead_pixels"] == 32 * 4
    assert np.isfinite(res.sum_image).all() and len(res.localizations)

    frames, _ = simulate(20, cfg, seed=3)
    frames = frames.astype(np.float32)
    by_hand = frames.copy()
    frames[7, 10, 10] = np.nan
    frames[12, 20, 5:8] = [np.inf, -np.inf, np.nan]
    for f, y, x in ((7, 10, [10]), (12, 20, [5, 6, 7])):
        by_hand[f, y, x] = np.median(frames[f][np.isfinite(frames[f])])
    seen = []
    res = reconstruct(frames, pixel_size=100.0, localize=True, refine=False, progress=seen.append)
    assert res.info["non_finite"] == (2, 4, 7)
    assert [p.message for p in seen if p.kind == "warning" and "NaN" in p.message] == [
        "the input: 4 NaN or infinite pixels in 2 frames (the first: frame 7, 0-based) replaced by their frame's "
        "median: a processed movie? Localizations next to them may be off; the raw camera frames are better"]
    expected = reconstruct(by_hand, pixel_size=100.0, localize=True, refine=False)
    np.testing.assert_array_equal(res.sum_image, expected.sum_image)
    np.testing.assert_array_equal(res.localizations.x, expected.localizations.x)
    assert expected.info["non_finite"] == (0, 0, None)


def test_frames_that_are_not_numbers_are_refused_before_the_defect_search():
    """The pixel type is checked before the sample is read as numbers (the
    dead-pixel search reads it unchecked for NaN padding: strings crashed it),
    and before any warning (a bool movie was warned of an assumed camera
    first)."""
    for bad in (np.full((20, 16, 16), "a", dtype=object), np.zeros((20, 16, 16), complex),
                np.zeros((20, 16, 16), bool)):
        seen = []
        with pytest.raises(DSIRError, match="pixel type .* is not supported"):
            reconstruct(bad, localize=True, progress=seen.append)
        assert [p.kind for p in seen] == []


@pytest.mark.parametrize("start, stop", [(3, 3), (5, None), (2, 1), (-1, None)])
def test_api_refuses_an_empty_or_negative_frame_range_before_reading(tiny_checkpoint, rng, start, stop):
    """The Python API refuses a frame range that selects no frame with the
    message the CLI gives, before any frame is sampled (it raised numpy's
    "need at least one array to stack")."""
    match = "start -1 is negative" if start < 0 else "selects no frames of the 5 in the stack"
    with pytest.raises(DSIRError, match=match):
        reconstruct(rng.normal(300.0, 10.0, (5, 16, 16)), load_checkpoint(tiny_checkpoint), pixel_size=100.0,
                    start=start, stop=stop)


@pytest.mark.parametrize("kw, message", [
    ({"start": 0.5}, "start must be a whole frame number"),
    ({"stop": 2.0}, "stop must be a whole frame number"),
    ({"tile": -5}, "tile must be 'auto', None"),
    ({"tile": 2.5}, "tile must be 'auto', None"),
])
def test_api_refuses_frame_numbers_and_tiles_of_the_wrong_kind(tiny_checkpoint, rng, kw, message):
    """A float frame number raised a TypeError deep in the run, and a
    negative tile size ran silently; both are refused up front."""
    with pytest.raises(DSIRError, match=message):
        reconstruct(rng.normal(300.0, 10.0, (4, 16, 16)), load_checkpoint(tiny_checkpoint), pixel_size=100.0, **kw)
    assert reconstruct(rng.normal(300.0, 10.0, (4, 16, 16)), load_checkpoint(tiny_checkpoint), pixel_size=100.0,
                       start=np.int64(1), tile=0).start == 1


def test_api_refuses_frames_that_are_not_numbers_when_fitting(tiny_checkpoint):
    """Frames of Python objects with the fits on: the camera check read
    them as floats first and raised a ValueError; now a clear refusal."""
    frames = np.full((2, 16, 16), "a", dtype=object)
    with pytest.raises(DSIRError, match="pixel type object"):
        reconstruct(frames, load_checkpoint(tiny_checkpoint), pixel_size=100.0, localize=True)


def test_the_api_takes_a_list_of_frames_and_says_what_a_negative_start_means():
    from napari_dsir.errors import DSIRError
    from napari_dsir.run import reconstruct as run

    rng = np.random.default_rng(0)
    frames = [rng.poisson(100, (16, 16)).astype(np.uint16) for _ in range(3)]
    np.testing.assert_array_equal(run(frames, pixel_size=100.0).sum_image,
                                  run(np.stack(frames), pixel_size=100.0).sum_image)
    with pytest.raises(DSIRError, match="arrays .y, x. of one shape"):
        run([np.zeros((4, 4)), np.zeros((5, 5))], pixel_size=100.0)
    with pytest.raises(DSIRError, match="start -2 is negative: start and stop count frames from 0"):
        run(np.stack(frames), pixel_size=100.0, start=-2)


def test_the_api_warns_of_a_stop_past_the_end_and_without_a_callback_through_python(tiny_checkpoint, rng):
    """A stop past the movie's end is cut with the warning the CLI gives
    (the API cut it silently); with no progress callback a run's warnings
    come as Python warnings (`DSIRWarning`) instead of being dropped."""
    import warnings

    from napari_dsir.errors import DSIRWarning

    frames = rng.normal(300.0, 10.0, (5, 16, 16))
    seen = []
    res = reconstruct(frames, load_checkpoint(tiny_checkpoint), pixel_size=100.0, start=1, stop=100,
                      progress=seen.append)
    assert (res.start, res.stop) == (1, 5)
    said = [p.message for p in seen if p.kind == "warning"]
    assert "the input: frames 1:100 reach past its 5 frames: frames 1:5 are run" in said
    with pytest.warns(DSIRWarning, match="reach past its 5 frames") as caught:
        reconstruct(frames, load_checkpoint(tiny_checkpoint), start=1, stop=100)  # no pixel size: warned too
    assert any("no pixel size" in str(w.message) for w in caught)
    assert {w.filename for w in caught} == {__file__}  # shown where the caller's code called napari_dsir
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a callback takes them all: none through Python
        reconstruct(frames, load_checkpoint(tiny_checkpoint), start=1, stop=100, progress=seen.append)


def test_a_model_with_no_calibrated_network_error_is_warned_of_when_positions_are_kept():
    """A checkpoint trained without --movies carries no calibration of the
    network's error: the crowded detections, which keep the network's
    position, then get the fit's bare bound as their uncertainty (5.5x too
    small in a hunt). The run says so; the shipped model's does not."""
    from napari_dsir.model import load_model
    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(6, SimulationConfig(frame_size=(32, 32), density=4.0, photons=(800.0, 3000.0)), seed=3)
    said = {}
    for name, strip in (("shipped", False), ("stripped", True)):
        model = load_model("default", "cpu")
        if strip:
            model.metadata["localize"] = {k: v for k, v in model.metadata["localize"].items()
                                          if not k.startswith(("crowded_error", "pulled_error"))}
        seen = []
        res = reconstruct(frames, model, pixel_size=100.0, localize=True, progress=seen.append)
        said[name] = [p.message for p in seen if "calibration of the network's error" in p.message]
        assert res.info["fit_report"]["crowded"] > 0
    assert said["shipped"] == [] and len(said["stripped"]) == 1
    assert "keep the network's position" in said["stripped"][0] and "--movies" in said["stripped"][0]

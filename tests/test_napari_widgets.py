"""The "DSIR Reconstruct" and "DSIR Ground Truth" dock widgets, end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_dsir._qt import _widgets  # noqa: E402
from napari_dsir.model import DSIRModel, DSIRNet, save_checkpoint  # noqa: E402

from .conftest import SHARED_DATA, Peaky, one_emitter_stack  # noqa: E402

torch.set_num_threads(1)

LEGACY = SHARED_DATA / "dsir_original" / "autoencoder_model.pt"
P = 100.0  # camera pixel, nm
EMITTER_YX = (1160.0, 1243.0)  # nm, near the centre of camera pixel (11, 12)


@pytest.fixture
def errors(monkeypatch):
    """Capture the widgets' error/warning notifications."""
    got = []
    monkeypatch.setattr(_widgets, "show_error", lambda msg: got.append(msg))
    monkeypatch.setattr(_widgets, "show_warning", lambda msg: got.append(msg))
    return got


def _peaky_loader(delay=0.0):
    def load(spec, device):
        return DSIRModel(Peaky(delay), arch="dsir", upsampling=8, source="test").to(device)
    return load


def _dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget("napari-dsir", name)
    return widget


def _add_stack(viewer, frames, name="spot", nm=True):
    kw = {"scale": (1, P, P), "translate": (0, P / 2, P / 2), "metadata": {"pixel_size": P}} if nm else {}
    return viewer.add_image(frames, name=name, **kw)


def _run(qtbot, widget, timeout=60_000):
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)
    return worker


def _brightest_world(layer):
    img = np.asarray(layer.data)
    idx = np.unravel_index(np.argmax(img), img.shape)
    return np.asarray(layer.data_to_world(idx), dtype=float)


def test_widgets_dock(make_napari_viewer):
    viewer = make_napari_viewer()
    rec = _dock(viewer, "DSIR Reconstruct")
    gt = _dock(viewer, "DSIR Ground Truth")
    assert isinstance(rec, _widgets.ReconstructWidget)
    assert isinstance(gt, _widgets.GroundTruthWidget)
    # device choice: GPU disabled, with a reason, when CUDA is absent
    item = rec.device_combo.model().item(2)
    assert item.isEnabled() == torch.cuda.is_available()
    if not torch.cuda.is_available():
        assert "CUDA" in rec.device_combo.toolTip()
    # the layer choice follows the viewer
    _add_stack(viewer, one_emitter_stack(n=4))
    assert rec.layer_combo.currentText() == "spot"
    assert rec.stop_spin.value() == 4 and rec.pixel_size.value() == P


def test_reconstruct_overlay_nm(make_napari_viewer, qtbot, monkeypatch, errors):
    monkeypatch.setattr(_widgets, "load_model", _peaky_loader())
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=3, noise=False))
    w = _dock(viewer, "DSIR Reconstruct")
    w.device_combo.setCurrentIndex(1)  # CPU
    w.out_frames.setChecked(True)
    w.out_locs.setChecked(True)
    w.model_threshold.setChecked(False)
    w.threshold.setValue(1.0)
    w.batch_spin.setValue(2)
    _run(qtbot, w)
    assert errors == []
    sr = viewer.layers["spot DSIR"]
    assert sr.ndim == 2 and sr.data.shape == (24 * 8, 24 * 8)
    np.testing.assert_allclose(sr.scale, [P / 8, P / 8])
    np.testing.assert_allclose(sr.translate, [P / 16, P / 16])
    lo, hi = sr.contrast_limits
    assert hi > lo
    # the brightest super-resolved pixel lies on the emitter, in world nm
    assert np.hypot(*(_brightest_world(sr) - EMITTER_YX)) < 50
    frames = viewer.layers["spot DSIR frames"]
    assert frames.ndim == 3 and frames.data.shape[0] == 3
    assert np.hypot(*(_brightest_world(frames)[1:] - EMITTER_YX)) < 50
    pts = viewer.layers["spot DSIR localizations"]
    assert len(pts.data) == 3  # one per frame
    world = np.array([pts.data_to_world(d) for d in pts.data])
    np.testing.assert_array_equal(world[:, 0], [0, 1, 2])
    assert np.all(np.hypot(*(world[:, 1:] - EMITTER_YX).T) < 50)
    # a re-run replaces the outputs instead of piling up copies
    n_layers = len(viewer.layers)
    _run(qtbot, w)
    assert len(viewer.layers) == n_layers


def test_reconstruct_big_file_chunk_by_chunk(make_napari_viewer, qtbot, monkeypatch, errors, tmp_path):
    """A file from our reader is a dask layer; the widget reads each of its
    chunks once (not the whole movie at once, nor a chunk per frame)."""
    from napari_dsir import _reader, io
    from napari_dsir.io import write_tiff
    from napari_dsir.run import reconstruct

    frames = one_emitter_stack(n=40, noise=True)
    path = tmp_path / "movie.tif"
    write_tiff(path, frames, P)
    reads = []
    real_read = io.Stack.read

    def counting_read(self, start=0, stop=None):
        reads.append((start, stop))
        return real_read(self, start, stop)

    monkeypatch.setattr(io.Stack, "read", counting_read)
    monkeypatch.setattr(_widgets, "load_model", _peaky_loader())
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-dsir")
    layer = viewer.layers[-1]
    assert type(layer.data).__module__.startswith("dask")
    reads.clear()  # napari reads a chunk to show the first frame
    w = _dock(viewer, "DSIR Reconstruct")
    w.device_combo.setCurrentIndex(1)  # CPU
    w.batch_spin.setValue(1)
    _run(qtbot, w)
    assert errors == []
    chunk = _reader.DASK_CHUNK
    expected = [(b, min(b + chunk, 40)) for b in range(0, 40, chunk)]
    assert sorted(set(reads)) == expected and len(reads) <= len(expected) + 1  # + napari's redraw
    ref = reconstruct(frames, _peaky_loader()("", "cpu"), batch_size=4)
    np.testing.assert_allclose(viewer.layers["movie DSIR"].data, ref.sum_image, rtol=1e-5, atol=1e-5)


def test_reconstruct_overlay_pixel_units(make_napari_viewer, qtbot, monkeypatch, errors):
    """A layer in pixel units (e.g. opened by napari's own reader): the output
    still covers exactly the same area."""
    monkeypatch.setattr(_widgets, "load_model", _peaky_loader())
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=2, noise=False), nm=False)
    w = _dock(viewer, "DSIR Reconstruct")
    w.out_locs.setChecked(True)
    w.model_threshold.setChecked(False)
    w.threshold.setValue(1.0)
    _run(qtbot, w)
    assert errors == []
    sr = viewer.layers["spot DSIR"]
    expected = np.array(EMITTER_YX) / P - 0.5  # world = pixel index of the centre
    assert np.hypot(*(_brightest_world(sr) - expected)) < 0.5
    # the corner of the SR grid is the corner of the camera grid
    np.testing.assert_allclose(sr.data_to_world((-0.5, -0.5)), (-0.5, -0.5))
    pts = viewer.layers["spot DSIR localizations"]
    w0 = np.asarray(pts.data_to_world(pts.data[0]))
    assert np.hypot(*(w0[1:] - expected)) < 0.5


@pytest.mark.parametrize("which", ["legacy", "default"])
def test_reconstruct_trained_model(make_napari_viewer, qtbot, errors, which):
    """With real weights: the brightest SR pixel around an isolated emitter
    lies within 50 nm of its ground-truth position (world coordinates)."""
    from napari_dsir.model import default_model_path

    viewer = make_napari_viewer()
    w = _dock(viewer, "DSIR Reconstruct")
    if which == "legacy":
        if not LEGACY.is_file():
            pytest.skip(f"original DSIR weights not available: {LEGACY}")
        w.model_combo.setCurrentIndex(_widgets.MODEL_LEGACY)
        w.model_path.setText(str(LEGACY))
    elif not default_model_path().is_file():
        pytest.skip("the shipped default model is not there yet")
    _add_stack(viewer, one_emitter_stack(n=4))
    w.device_combo.setCurrentIndex(1)
    _run(qtbot, w)
    assert errors == []
    sr = viewer.layers["spot DSIR"]
    assert np.hypot(*(_brightest_world(sr) - EMITTER_YX)) < 50


def test_reconstruct_checkpoint_file(make_napari_viewer, qtbot, tmp_path, errors):
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, DSIRModel(DSIRNet((4, 4, 4), (4, 4, 4), head_norm=False)))
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=5))
    w = _dock(viewer, "DSIR Reconstruct")
    w.model_combo.setCurrentIndex(_widgets.MODEL_FILE)
    w.model_path.setText(str(ckpt))
    w.start_spin.setValue(1)
    w.stop_spin.setValue(4)
    w.out_frames.setChecked(True)
    w.out_locs.setChecked(True)
    w.model_threshold.setChecked(False)
    w.threshold.setValue(1e5)  # nothing that high: an empty layer and a hint
    _run(qtbot, w)
    assert len(errors) == 1 and "lower the threshold" in errors[0]
    assert len(viewer.layers["spot DSIR localizations"].data) == 0
    frames = viewer.layers["spot DSIR frames"]
    assert frames.data.shape == (3, 192, 192)
    assert frames.translate[0] == 1  # frame 1 of the input is frame 0 of the output
    assert w.last_result.start == 1 and w.last_result.stop == 4


def test_reconstruct_cancel(make_napari_viewer, qtbot, monkeypatch, errors):
    monkeypatch.setattr(_widgets, "load_model", _peaky_loader(delay=0.05))
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=200, size=16, noise=False))
    w = _dock(viewer, "DSIR Reconstruct")
    w.batch_spin.setValue(1)
    w.out_frames.setChecked(True)
    w.out_locs.setChecked(True)
    n_layers = len(viewer.layers)
    returned = []
    worker = w.run()
    worker.returned.connect(returned.append)
    qtbot.waitUntil(lambda: "frames" in w.status.text() and not w.status.text().startswith("0 /"),
                    timeout=30_000)
    assert w.cancel_btn.isEnabled()
    with qtbot.waitSignal(worker.finished, timeout=30_000):
        w.cancel_btn.click()
    qtbot.waitUntil(lambda: w.worker is None, timeout=10_000)
    assert returned == []
    assert len(viewer.layers) == n_layers  # nothing half-added
    assert "cancelled" in w.status.text()
    assert w.run_btn.isEnabled() and not w.cancel_btn.isEnabled()
    assert errors == []


def test_reconstruct_errors_are_notifications(make_napari_viewer, qtbot, tmp_path, errors):
    viewer = make_napari_viewer()
    w = _dock(viewer, "DSIR Reconstruct")
    # no layer
    assert w.run() is None
    assert "no image layer" in errors[-1]
    # RGB image
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="photo", rgb=True)
    assert w.run() is None
    assert "RGB" in errors[-1]
    viewer.layers.clear()
    # a bad model file: reported from the worker, no layer added
    _add_stack(viewer, one_emitter_stack(n=2))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage, not a checkpoint")
    w.model_combo.setCurrentIndex(_widgets.MODEL_FILE)
    w.model_path.setText(str(bad))
    _run(qtbot, w)
    assert "bad.pt" in errors[-1] and "Traceback" not in errors[-1]
    assert [lay.name for lay in viewer.layers] == ["spot"]
    # a model option without a file
    w.model_path.setText("")
    assert w.run() is None
    assert "model file" in errors[-1]


def test_ground_truth_load_and_compare(make_napari_viewer, tmp_path, errors):
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=3))
    truth = tmp_path / "truth.csv"
    # ThunderSTORM style, 1-based frames, nm
    truth.write_text('"id","frame","x [nm]","y [nm]"\n'
                     "1,1,1250,1150\n2,2,1250,1150\n3,3,1250,1150\n4,3,400,300\n")
    w = _dock(viewer, "DSIR Ground Truth")
    w.symbol_combo.setCurrentText("cross")
    w.colour_combo.setCurrentText("magenta")
    gt = w.load(str(truth))
    assert errors == []
    assert gt.name == "spot ground truth"
    np.testing.assert_allclose(gt.data[0], [0, 1150, 1250])
    assert gt.data_to_world(gt.data[0]) == pytest.approx((0, 1150, 1250))
    assert gt.symbol[0].value == "cross"
    # localizations: 2 hits (20 nm off), 1 false positive; 2 misses
    loc = viewer.add_points(np.array([[0, 1170, 1250], [1, 1150, 1230], [2, 3000, 3000]]),
                            name="spot DSIR localizations")
    w.locs_combo.refresh()
    w.locs_combo.setCurrentText(loc.name)
    w.gt_combo.setCurrentText(gt.name)
    m = w.compare()
    assert errors == []
    assert (m.tp, m.fp, m.fn) == (2, 1, 2)
    assert m.jaccard == pytest.approx(2 / 5)
    assert m.rmse == pytest.approx(20.0)
    assert "Jaccard" in w.result_label.text() and "0.400" in w.result_label.text()
    assert list(loc.features["match"]) == ["TP", "TP", "FP"]
    assert list(gt.features["match"]) == ["TP", "TP", "FN", "FN"]
    green = np.array([0, 1, 0, 1.0])
    np.testing.assert_allclose(loc.border_color[0], green)
    np.testing.assert_allclose(loc.border_color[2], [1, 0, 0, 1])
    np.testing.assert_allclose(gt.border_color[3], [1, 0, 1, 1])
    # errors: a missing file is a notification, not a traceback
    assert w.load(str(tmp_path / "missing.csv")) is None
    assert "missing.csv" in errors[-1]

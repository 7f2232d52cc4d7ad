"""The catalogue of bad inputs, napari side (issue 5; the CLI side is
test_cli.py beside this file).

Every case asserts: a napari notification with a clear message (the widgets'
and the reader's ``show_error``/``show_warning`` are captured), no traceback
and no exception out of the reader or the widget, no layer half-added, and the
input file unchanged (hash before and after).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_dsir import run as run_module  # noqa: E402
from napari_dsir._qt.models import MODEL_FILE, MODEL_LEGACY  # noqa: E402
from napari_dsir._reader import napari_get_reader  # noqa: E402
from napari_dsir.model import DSIRModel  # noqa: E402

from ..conftest import SHARED_DATA, Peaky, digest, make_bad_stack, one_emitter_stack  # noqa: E402

LEGACY = SHARED_DATA / "dsir_original" / "autoencoder_model.pt"
P = 100.0
PREFIXES = ("DSIR Reconstruct: ", "DSIR Ground Truth: ", "napari-dsir")


# --------------------------------------------------------------------------- helpers


@pytest.fixture
def notes(notes):
    """conftest's notifications, each of which must start with its widget's
    name (or napari-dsir)."""
    yield notes
    assert all(m.startswith(PREFIXES) for _, m in notes), notes


def _texts(notes, level=None):
    return [m for lv, m in notes if level is None or lv == level]


def _clean(msg: str) -> None:
    assert "Traceback" not in msg and "File \"" not in msg, msg


class _Gate(torch.nn.Module):
    """A network layer that waits (in the worker thread) until the test lets it go."""

    def __init__(self):
        super().__init__()
        self.entered, self.release = threading.Event(), threading.Event()

    def forward(self, x):
        self.entered.set()
        assert self.release.wait(30), "the test never released the gate"
        return x


class _Count(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x


class _GatedNet(torch.nn.Module):
    """Gate, then counting layers: what runs after a cancel can be counted."""

    def __init__(self):
        super().__init__()
        self.gate, self.after = _Gate(), _Count()
        self.w = torch.nn.Parameter(torch.ones(1))

    def forward(self, x):
        return torch.relu(self.after(self.gate(x))) * self.w


def _use_model(monkeypatch, net, metadata=None, wrap_predict=None):
    """Runs load ``net`` (a module, or a factory of modules) instead of a model file."""
    def load(spec, device="auto"):
        m = DSIRModel(net() if callable(net) and not isinstance(net, torch.nn.Module) else net,
                      arch="dsir", upsampling=8, metadata=dict(metadata or {}), source="test").to("cpu")
        if wrap_predict is not None:
            m.predict = wrap_predict(m.predict)
        return m
    monkeypatch.setattr(run_module, "load_request_model", load)


def _dock(viewer, name, synchronous=True):
    _, widget = viewer.window.add_plugin_dock_widget("napari-dsir", name)
    widget.synchronous = synchronous
    if name == "DSIR Reconstruct":
        widget.camera.set_camera.value = True  # no "camera settings not given" warning
    return widget


def _add_stack(viewer, frames, name="spot"):
    return viewer.add_image(frames, name=name, scale=(1, P, P)[-frames.ndim:],
                            translate=(0, P / 2, P / 2)[-frames.ndim:], metadata={"pixel_size": P},
                            units=("pixel", "nm", "nm")[-frames.ndim:])


def _names(viewer):
    return [lay.name for lay in viewer.layers]


# --------------------------------------------------------------------------- reader


READER_CASES = {
    "not_a_tiff": "not a readable TIFF",
    "truncated": "truncated",
    "truncated_imagej": "its ImageJ header states 12 images and 1 can be read",
    "truncated_compressed": "its tifffile description states 20 images and 1 can be read",
    "zero_frames": "zero frames",
    "rgb": "RGB",
    "5d": "5-D",
    "empty_folder": "no .tif",
    "mixed_sizes": "differs",
    "mixed_types": "one pixel type",
    "folder_of_text": "not a readable TIFF",
    "ome_part_missing": "not found beside it",
    "multi_position": "several positions",
}


@pytest.mark.parametrize("case", sorted(READER_CASES))
def test_reader_declines_bad_stacks(tmp_path, notes, case):
    path = make_bad_stack(tmp_path, case)
    before = digest(path)
    assert napari_get_reader(str(path)) is None  # never raises: napari may fall back
    assert napari_get_reader([str(path)]) is None
    warnings = _texts(notes, "warning")
    assert warnings, "no notification"
    assert READER_CASES[case].lower() in warnings[0].lower(), warnings[0]
    assert path.name in warnings[0]
    _clean(warnings[0])
    assert digest(path) == before


def test_reader_bad_stack_in_viewer_adds_nothing(make_napari_viewer, tmp_path, notes):
    """Opening with the plugin chosen explicitly: napari reports that no reader
    could read it; the plugin's own notification says why; no layer."""
    path = make_bad_stack(tmp_path, "truncated")
    viewer = make_napari_viewer()
    with pytest.raises(ValueError, match="refused the file"):  # napari's "no reader" error, not ours
        viewer.open(path, plugin="napari-dsir")
    assert len(viewer.layers) == 0
    assert any("truncated" in m for m in _texts(notes, "warning"))


def test_reader_ignores_what_it_does_not_claim(tmp_path, notes):
    (tmp_path / "notes.md").write_text("hi")
    assert napari_get_reader(str(tmp_path / "notes.md")) is None
    assert napari_get_reader(str(tmp_path / "missing.tif")) is None
    assert notes == []  # not ours, or not there: silent


@pytest.mark.parametrize("text,needle", [
    ("frame,x [nm]\n1,2\n", "missing column"),
    ("frame,x [parsec],y [parsec]\n1,2,3\n", "unknown unit"),
    ("frame,x,y\n1,2,three\n", "non-numeric"),
    ("", "empty"),
])
def test_reader_declines_bad_tables(tmp_path, notes, text, needle):
    p = tmp_path / "bad.csv"
    p.write_text(text)
    before = digest(p)
    assert napari_get_reader(str(p)) is None
    assert needle in _texts(notes, "warning")[0]
    assert digest(p) == before


def test_reader_table_in_pixels_warns_on_read(tmp_path, notes):
    p = tmp_path / "px.csv"
    p.write_text("frame,x [px],y [px]\n1,2,3\n")
    layers = napari_get_reader(str(p))(str(p))
    np.testing.assert_allclose(layers[0][0], [[0, 300, 200]])
    assert "pixels" in _texts(notes, "warning")[0] and "100 nm" in _texts(notes, "warning")[0]


def test_reader_table_in_pixels_takes_its_protocols_pixel_size(tmp_path, notes):
    """ThunderSTORM's protocol beside a table in px states its camera pixel
    size: the layer is scaled by it (it was scaled by an assumed 100 nm while
    its metadata said 160, and saved as Picasso with positions off by 0.625x)."""
    p = tmp_path / "px.csv"
    p.write_text("frame,x [px],y [px]\n1,2,3\n")
    (tmp_path / "px-protocol.txt").write_text('{"cameraSettings": {"pixelSize": 160.0}}')
    layers = napari_get_reader(str(p))(str(p))
    np.testing.assert_allclose(layers[0][0], [[0, 480, 320]])
    assert layers[0][1]["metadata"]["camera_pixel_size"] == 160.0 and "pixel_size" not in layers[0][1]["metadata"]
    assert "converted at 160 nm per pixel" in _texts(notes, "warning")[0]


def test_reader_unitless_table_like_pixels_warns_on_read(tmp_path, notes):
    p = tmp_path / "unitless.csv"
    p.write_text("frame,x,y\n1,2.5,3\n2,60,41\n")
    layers = napari_get_reader(str(p))(str(p))
    np.testing.assert_allclose(layers[0][0], [[0, 3, 2.5], [1, 41, 60]])  # read as nm, as documented
    assert "x [px]" in _texts(notes, "warning")[0]


# --------------------------------------------------------------------------- reconstruct: inputs


def test_reconstruct_no_layer_and_rgb(make_napari_viewer, notes):
    viewer = make_napari_viewer()
    w = _dock(viewer, "DSIR Reconstruct")
    assert w.run() is None
    assert _texts(notes, "error")[-1].startswith("DSIR Reconstruct: no image layer")
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="photo", rgb=True)
    assert w.run() is None
    assert "RGB" in _texts(notes, "error")[-1] and "photo" in _texts(notes, "error")[-1]
    assert _names(viewer) == ["photo"] and w.worker is None and w.run_button.enabled


def test_reconstruct_impossible_camera_in_the_file(make_napari_viewer, tmp_path, notes):
    """A file whose metadata states an impossible camera: a notification that
    names it and the way past it, no layer added; the widget's settings get past it."""
    path = tmp_path / "stated.tif"
    rng = np.random.default_rng(0)
    tifffile.imwrite(path, (rng.poisson(20, (3, 16, 16)) + 400).astype(np.uint16), photometric="minisblack",
                     metadata={"offset": 400, "QE": 1.7})
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-dsir")
    w = _dock(viewer, "DSIR Reconstruct")
    w.camera.set_camera.value = False
    w.out_locs.value = True
    w.run()
    err = _texts(notes, "error")[-1]
    _clean(err)
    assert "stated" in err and "quantum efficiency" in err and "set the camera to override" in err, err
    assert _names(viewer) == ["stated"] and w.run_button.enabled
    w.camera.set_camera.value = True
    w.camera.baseline.value = 400.0
    w.run()
    assert "stated DSIR localizations" in _names(viewer)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_reconstruct_nan_inf(make_napari_viewer, monkeypatch, notes, bad):
    _use_model(monkeypatch, Peaky)
    viewer = make_napari_viewer()
    frames = one_emitter_stack(n=4).astype(np.float32)
    frames[2, 5, 5] = bad
    _add_stack(viewer, frames)
    w = _dock(viewer, "DSIR Reconstruct")
    w.out_frames.value = w.out_locs.value = True
    w.camera.refine.value = False
    w.batch.value = 1
    w.run()
    assert _texts(notes, "error") == [], notes
    warns = [m for m in _texts(notes, "warning") if "NaN or infinite" in m]
    assert len(warns) == 1 and "1 NaN or infinite pixel in 1 frame (the first: frame 2, 0-based)" in warns[0]
    _clean(warns[0])
    assert len(_names(viewer)) > 1 and "done" in w.status.value  # the run's layers, added


# --------------------------------------------------------------------------- reconstruct: models


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_model(tmp_path, case, tiny_checkpoint, marker) -> Path:
    p = tmp_path / f"{case}.pt"
    if case == "not_a_checkpoint":
        p.write_text("hello, not a checkpoint")
    elif case == "code":
        torch.save({"state_dict": _Evil(marker)}, p)
    elif case == "other_shape":
        ck = torch.load(tiny_checkpoint, weights_only=True)
        ck["arch_params"]["decoder"] = [2, 2, 2]
        torch.save(ck, p)
    elif case == "truncated":
        data = Path(tiny_checkpoint).read_bytes()
        p.write_bytes(data[: len(data) * 2 // 3])
    elif case == "missing":
        pass
    return p


MODEL_CASES = {
    "not_a_checkpoint": "not a PyTorch checkpoint (.pt): a text file",
    "code": "refused",
    "other_shape": "do not fit",
    "truncated": "truncated",
    "missing": "no such model file",
}


@pytest.mark.parametrize("option", [MODEL_FILE, MODEL_LEGACY])
@pytest.mark.parametrize("case", sorted(MODEL_CASES))
def test_reconstruct_bad_model(make_napari_viewer, tmp_path, tiny_checkpoint, notes, case, option):
    marker = tmp_path / "pwned"
    model = _bad_model(tmp_path, case, tiny_checkpoint, marker)
    before = digest(model) if model.exists() else None
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=2))
    w = _dock(viewer, "DSIR Reconstruct")
    w.model.value = option
    w.model_file.value = model
    w.out_locs.value = True
    w.run()
    errs = _texts(notes, "error")
    assert len(errs) == 1, notes
    needle = MODEL_CASES[case]
    if option == MODEL_LEGACY and case == "other_shape":
        needle = "without the legacy: prefix"  # a napari-dsir file given as original weights
    assert errs[0].startswith("DSIR Reconstruct: ") and needle in errs[0] and model.name in errs[0], errs[0]
    _clean(errs[0])
    assert not marker.exists()  # the pickle's code never ran
    assert _names(viewer) == ["spot"]
    if before is not None:
        assert digest(model) == before
    assert w.run_button.enabled and not w.cancel_button.enabled


# --------------------------------------------------------------------------- reconstruct: devices


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_gpu_without_cuda(make_napari_viewer, notes):
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=2))
    w = _dock(viewer, "DSIR Reconstruct")
    assert not w.device.native.model().item(2).isEnabled() and "CUDA" in w.device.tooltip
    w.device.value = "cuda"  # forced programmatically
    assert w.run() is None  # refused before any thread starts
    errs = _texts(notes, "error")
    assert len(errs) == 1 and "no CUDA GPU" in errs[0] and "Auto or CPU" in errs[0]
    assert _names(viewer) == ["spot"]


def test_cuda_out_of_memory_halves_the_batch(make_napari_viewer, monkeypatch, notes):
    calls = []

    def wrap(predict):
        def fake(x, **kw):
            calls.append(int(x.shape[0]))
            if x.shape[0] > 2:
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB "
                                             "(GPU 0; 7.79 GiB total capacity)")
            return predict(x, **kw)
        return fake

    _use_model(monkeypatch, Peaky, wrap_predict=wrap)
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=6))
    w = _dock(viewer, "DSIR Reconstruct")
    w.batch.value = 8
    w.out_frames.value = True
    w.run()
    assert _texts(notes, "error") == []
    warns = _texts(notes, "warning")
    assert "DSIR Reconstruct: out of memory: batch size lowered to 4" in warns, warns
    assert "DSIR Reconstruct: out of memory: batch size lowered to 2" in warns, warns
    assert calls[:2] == [6, 4] and set(calls[2:]) == {2}
    # the run finished, with all frames
    assert viewer.layers["spot DSIR frames"].data.shape[0] == 6
    assert w.last_result.info["batch_size"] == 2
    assert "batch 2" in w.status.value and "done" in w.status.value


def _check_cancelled(w, viewer, n_layers, returned, notes):
    assert returned == []
    assert "DSIR Reconstruct: cancelled; no layer added" in _texts(notes, "info")
    assert len(viewer.layers) == n_layers  # no half-added layer
    assert "cancelled" in w.status.value
    assert w.run_button.enabled and not w.cancel_button.enabled and w.worker is None
    assert _texts(notes, "error") == []


def test_cancel_between_batches(make_napari_viewer, qtbot, monkeypatch, notes):
    # 20 ms a frame: the status is polled while it still reads "1-3 / 200"
    # (without a delay the 200 frames could finish between two polls)
    _use_model(monkeypatch, lambda: Peaky(delay=0.02))
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=200, size=16))
    w = _dock(viewer, "DSIR Reconstruct", synchronous=False)
    w.batch.value = 1
    w.out_frames.value = w.out_locs.value = True
    n_layers, returned = len(viewer.layers), []
    worker = w.run()
    worker.returned.connect(returned.append)
    qtbot.waitUntil(lambda: w.status.value.startswith(("1 /", "2 /", "3 /")), timeout=30_000)
    with qtbot.waitSignal(w.finished, timeout=30_000):
        w.cancel_button.native.click()
    _check_cancelled(w, viewer, n_layers, returned, notes)
    assert w.last_result is None


def test_cancel_inside_a_batch(make_napari_viewer, qtbot, monkeypatch, notes):
    """A cancel in the middle of a batch stops it at the next network layer:
    the layers after the one running never run."""
    net = _GatedNet()
    _use_model(monkeypatch, net)
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=8, size=16))
    w = _dock(viewer, "DSIR Reconstruct", synchronous=False)
    w.batch.value = 8
    w.out_frames.value = True
    n_layers, returned = len(viewer.layers), []
    worker = w.run()
    worker.returned.connect(returned.append)
    qtbot.waitUntil(net.gate.entered.is_set, timeout=30_000)  # inside the first batch
    with qtbot.waitSignal(w.finished, timeout=30_000):
        w.cancel_button.native.click()
        net.gate.release.set()
    assert net.after.calls == 0  # the batch stopped at the next layer
    _check_cancelled(w, viewer, n_layers, returned, notes)


# --------------------------------------------------------------------------- reconstruct: threshold


def test_threshold_defaults_to_the_models(make_napari_viewer, monkeypatch, notes):
    """Unticked nothing, set nothing: the model's calibrated threshold is used."""
    _use_model(monkeypatch, Peaky, metadata={"localize": {"threshold": 3.0}})
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=3))
    w = _dock(viewer, "DSIR Reconstruct")
    assert w.use_model_threshold.value and not w.threshold.enabled
    assert w.request().threshold is None
    w.out_locs.value = True
    w.run()
    assert _texts(notes) == []
    assert w.last_result.info["localize"]["threshold"] == 3.0
    assert w.threshold.value == pytest.approx(3.0)  # shown after the run
    assert len(viewer.layers["spot DSIR localizations"].data) == 3
    # a hand-set threshold overrides it
    w.use_model_threshold.value = False
    assert w.threshold.enabled
    w.threshold.value = 1e5
    w.run()
    assert w.last_result.info["localize"]["threshold"] == 1e5
    assert len(viewer.layers["spot DSIR localizations"].data) == 0
    assert "no localizations above the threshold" in _texts(notes, "warning")[-1]


def test_original_weights_localize_without_touching_the_threshold(make_napari_viewer, notes):
    if not LEGACY.is_file():
        pytest.skip(f"original DSIR weights not available: {LEGACY}")
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=3))
    w = _dock(viewer, "DSIR Reconstruct")
    w.model.value = MODEL_LEGACY
    w.model_file.value = LEGACY
    assert 0 < w.threshold.value < 0.01  # the calibrated value, before any run
    w.device.value = "cpu"
    w.out_locs.value = True
    w.run()
    # (the original network's many weak detections on this noise fail their fits, which the run says, and its
    # localizer carries no calibration of the network's error, which it says too)
    assert _texts(notes, "error") == [] and all(
        "fits failed and keep" in m or "no calibration of the network's error" in m for m in _texts(notes, "warning"))
    thr = w.last_result.info["localize"]["threshold"]
    assert 0 < thr < 0.01  # the calibrated value (~0.0024), not the 0.1 default
    pts = viewer.layers["spot DSIR localizations"]
    assert len(pts.data) >= 3
    near = np.hypot(pts.data[:, 1] - 1160.0, pts.data[:, 2] - 1243.0) < 100
    assert set(pts.data[near, 0].astype(int)) == {0, 1, 2}  # the emitter, in every frame


# --------------------------------------------------------------------------- ground truth


GT_CASES = {
    "missing_columns": ("frame,x [nm]\n1,2\n", "missing column"),
    "unknown_units": ("frame,x [parsec],y [parsec]\n1,2,3\n", "unknown unit"),
    "non_numeric": ("frame,x,y\n1,2,three\n", "non-numeric"),
    "empty": ("", "empty"),
    "header_only": ("frame,x,y\n", "no rows"),
    "binary": ("\x00\x01\x02", "binary"),
    "all_outside": ("frame,x,y\n7,2,3\n9,2,3\n", "outside frames 1..3"),
}


@pytest.mark.parametrize("case", sorted(GT_CASES))
def test_ground_truth_bad_tables(make_napari_viewer, tmp_path, notes, case):
    text, needle = GT_CASES[case]
    p = tmp_path / f"{case}.csv"
    p.write_text(text)
    before = digest(p)
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=3))
    w = _dock(viewer, "DSIR Ground Truth")
    assert w.load(str(p)) is None
    errs = _texts(notes, "error")
    assert len(errs) == 1 and needle in errs[0] and p.name in errs[0], errs
    _clean(errs[0])
    assert _names(viewer) == ["spot"]
    assert digest(p) == before


def test_ground_truth_no_image(make_napari_viewer, tmp_path, notes):
    p = tmp_path / "gt.csv"
    p.write_text("frame,x,y\n1,2,3\n")
    viewer = make_napari_viewer()
    w = _dock(viewer, "DSIR Ground Truth")
    assert w.load(str(p)) is None
    assert "no image layer" in _texts(notes, "error")[0]
    assert len(viewer.layers) == 0


def test_ground_truth_px_converted_with_the_layers_pixel_size(make_napari_viewer, tmp_path, notes):
    p = tmp_path / "px.csv"
    p.write_text('"frame","x [px]","y [px]"\n1,12.43,11.6\n2,3,4\n')
    before = digest(p)
    viewer = make_napari_viewer()
    img = viewer.add_image(one_emitter_stack(n=3), name="spot", scale=(1, 160, 160),
                           translate=(0, 80, 80), metadata={"pixel_size": 160.0})
    w = _dock(viewer, "DSIR Ground Truth")
    layer = w.load(str(p))
    assert layer is not None and _texts(notes, "error") == []
    warns = _texts(notes, "warning")
    assert len(warns) == 1 and "pixels" in warns[0] and "160 nm" in warns[0] and img.name in warns[0]
    np.testing.assert_allclose(layer.data, [[0, 11.6 * 160, 12.43 * 160], [1, 640, 480]])
    assert digest(p) == before


def test_ground_truth_bom_crlf_semicolons(make_napari_viewer, tmp_path, notes):
    p = tmp_path / "excel.csv"
    p.write_bytes("\ufeffframe;x [nm];y [nm]\r\n1;1250;1150\r\n3;400;300\r\n".encode())
    before = digest(p)
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=3))
    w = _dock(viewer, "DSIR Ground Truth")
    layer = w.load(str(p))
    assert notes == []
    np.testing.assert_allclose(layer.data, [[0, 1150, 1250], [2, 300, 400]])
    assert digest(p) == before


def test_ground_truth_frames_out_of_range_are_dropped(make_napari_viewer, tmp_path, notes):
    """Rows whose frame lies outside 1..N are left out, with a warning that
    says how many (frames < 1 are refused by the parser)."""
    p = tmp_path / "gt.csv"
    p.write_text("frame,x,y\n1,1250,1150\n3,400,300\n4,500,500\n10,600,600\n")
    before = digest(p)
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=3))
    w = _dock(viewer, "DSIR Ground Truth")
    layer = w.load(str(p))
    warns = _texts(notes, "warning")
    assert len(warns) == 1 and "2 of 4 rows" in warns[0] and "frames 1..3" in warns[0], warns
    assert "left out" in warns[0]
    np.testing.assert_allclose(layer.data[:, 0], [0, 2])
    assert viewer.dims.range[0].stop <= 2 + 1e-9  # the slider still spans the stack only
    assert digest(p) == before


def test_reader_says_when_the_pixel_size_is_assumed(tmp_path, notes):
    p = tmp_path / "plain.tif"
    tifffile.imwrite(p, np.ones((2, 16, 16), np.uint16), photometric="minisblack")
    (layer,) = napari_get_reader(str(p))(str(p))
    assert layer[1]["metadata"]["pixel_size_from_file"] is False
    infos = _texts(notes, "info")
    assert len(infos) == 1 and "no pixel size" in infos[0] and "100 nm" in infos[0]

"""The "DSIR Reconstruct" and "DSIR Ground Truth" dock widgets, end to end.

Most runs are synchronous (``widget.synchronous = True``: the run's
generator is driven in the test's thread, through the same handlers); the
threaded path is tested by waiting on the widget's ``finished`` signal.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_dsir import run as run_module  # noqa: E402
from napari_dsir._qt.ground_truth import GroundTruthWidget  # noqa: E402
from napari_dsir._qt.models import (  # noqa: E402
    MODEL_DEFAULT,
    MODEL_FILE,
    MODEL_LEGACY,
    SHIPPED,
    model_spec,
    model_threshold,
)
from napari_dsir._qt.reconstruct import ReconstructWidget  # noqa: E402
from napari_dsir.model import DSIRModel, DSIRNet, save_checkpoint  # noqa: E402

from .conftest import SHARED_DATA, Peaky, one_emitter_stack  # noqa: E402

LEGACY = SHARED_DATA / "dsir_original" / "autoencoder_model.pt"
P = 100.0  # camera pixel, nm
EMITTER_YX = (1160.0, 1243.0)  # nm, near the centre of camera pixel (11, 12)


def _texts(notes, level=None):
    return [m for lv, m in notes if level is None or lv == level]


@pytest.fixture
def peaky(monkeypatch):
    """Runs load a stand-in network (no trained weights needed)."""
    def load(spec, device="auto"):
        return DSIRModel(Peaky(), arch="dsir", upsampling=8, source="test",
                         metadata={"localize": {"threshold": 1.0}}).to("cpu")
    monkeypatch.setattr(run_module, "load_request_model", load)


def _dock(viewer, name, synchronous=True):
    _, widget = viewer.window.add_plugin_dock_widget("napari-dsir", name)
    widget.synchronous = synchronous
    if name == "DSIR Reconstruct":  # a known camera: no "camera settings not given" warning
        widget.camera.set_camera.value = True
    return widget


def _add_stack(viewer, frames, name="spot", nm=True):
    kw = {"scale": (1, P, P), "translate": (0, P / 2, P / 2), "metadata": {"pixel_size": P},
          "units": ("pixel", "nm", "nm")} if nm else {}
    return viewer.add_image(frames, name=name, **kw)


def _brightest_world(layer):
    img = np.asarray(layer.data)
    idx = np.unravel_index(np.argmax(img), img.shape)
    return np.asarray(layer.data_to_world(idx), dtype=float)


def test_widgets_dock(make_napari_viewer):
    viewer = make_napari_viewer()
    rec = _dock(viewer, "DSIR Reconstruct")
    gt = _dock(viewer, "DSIR Ground Truth")
    assert isinstance(rec, ReconstructWidget) and isinstance(gt, GroundTruthWidget)
    # device choice: GPU disabled, with a reason, when CUDA is absent
    assert rec.device.native.model().item(2).isEnabled() == torch.cuda.is_available()
    if not torch.cuda.is_available():
        assert "CUDA" in rec.device.tooltip
    # the layer choosers follow the viewer (napari calls reset_choices)
    _add_stack(viewer, one_emitter_stack(n=4))
    assert rec.image.value.name == "spot" and gt.image.value.name == "spot"
    assert rec.stop.value == 4 and rec.stop.max == 4
    assert "100 nm" in rec.pixel_note.value
    viewer.layers.remove("spot")
    assert rec.image.value is None and rec.image.choices == ()


def test_threshold_shows_the_models_before_a_run(make_napari_viewer, tmp_path):
    """Regression: the box showed a greyed, clipped "0.0000C" before the first run."""
    from napari_dsir.localize import params_for
    from napari_dsir.model import load_model

    viewer = make_napari_viewer()
    w = _dock(viewer, "DSIR Reconstruct")
    shipped = params_for(load_model(None)).threshold
    assert w.use_model_threshold.value and not w.threshold.enabled
    assert w.threshold.value == pytest.approx(shipped, abs=1e-6)
    assert w.threshold.native.text() == f"{shipped:.6f}"
    metrics = w.threshold.native.fontMetrics()
    assert w.threshold.native.minimumWidth() > metrics.horizontalAdvance(w.threshold.native.text()) + 20
    # another checkpoint: its own calibrated threshold
    ckpt = tmp_path / "mine.pt"
    save_checkpoint(ckpt, DSIRModel(DSIRNet((4, 4, 4), (4, 4, 4)), metadata={"localize": {"threshold": 0.25}}))
    w.model.value = MODEL_FILE
    w.model_file.value = ckpt
    assert model_threshold(str(ckpt)) == 0.25 and w.threshold.value == pytest.approx(0.25)
    # a hand-set value stays when the box is unticked
    w.use_model_threshold.value = False
    assert w.threshold.enabled
    w.threshold.value = 0.5
    w.model.value = MODEL_DEFAULT
    assert w.threshold.value == 0.5


def test_model_choices(make_napari_viewer):
    """The shipped models are offered by name, each with its own threshold;
    the original weights are chosen as such (model spec legacy:PATH)."""
    from napari_dsir.localize import params_for
    from napari_dsir.model import SHIPPED_MODELS, load_model

    assert [c.split(":")[0] for c in SHIPPED] == list(SHIPPED_MODELS) and SHIPPED[0] == MODEL_DEFAULT
    choice = {c.split(":")[0]: c for c in SHIPPED}
    assert all(model_spec(c, None) == name for name, c in choice.items()) and "wide" in choice
    viewer = make_napari_viewer()
    w = _dock(viewer, "DSIR Reconstruct")
    assert list(w.model.choices)[: len(SHIPPED)] == list(SHIPPED)
    for name in ("dsir", "wide"):  # each its own calibrated threshold
        w.model.value = choice[name]
        assert not w.model_file.enabled
        assert w.threshold.value == pytest.approx(params_for(load_model(name)).threshold, abs=1e-6)
    w.model.value = MODEL_DEFAULT
    assert w.threshold.value == pytest.approx(params_for(load_model("default")).threshold, abs=1e-6)
    assert model_spec(MODEL_LEGACY, "/w/autoencoder_model.pt") == "legacy:/w/autoencoder_model.pt"
    assert model_spec(MODEL_FILE, "/w/mine.pt") == "/w/mine.pt"


def test_reconstruct_overlay_nm(make_napari_viewer, peaky, notes):
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=3, noise=False))
    w = _dock(viewer, "DSIR Reconstruct")
    w.device.value = "cpu"
    w.out_frames.value = w.out_locs.value = True
    w.batch.value = 2
    w.run()
    assert _texts(notes) == []
    sr = viewer.layers["spot DSIR"]
    assert sr.ndim == 2 and sr.data.shape == (24 * 8, 24 * 8)
    np.testing.assert_allclose(sr.scale, [P / 8, P / 8])
    np.testing.assert_allclose(sr.translate, [P / 16, P / 16])
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
    # a feature per column of the localizations (frame, intensity, and the fit's)
    assert set(pts.features.columns) == {"frame", *w.last_result.localizations.columns()}
    assert "intensity" in pts.features.columns
    assert pts.metadata["kind"] == "localizations" and pts.metadata["units"] == "nm"
    assert w.threshold.value == pytest.approx(1.0)  # the model's, shown after the run
    assert w.last_result.info["pixel_size_origin"] == "metadata"
    # the fit summary: medians, then fits per kind
    assert "median" in w.status.value and "photons" in w.status.value and "free fits" in w.status.value
    # a re-run replaces the outputs instead of piling up copies
    n_layers = len(viewer.layers)
    w.run()
    assert len(viewer.layers) == n_layers


def test_pixel_size_is_resolved_by_the_run(make_napari_viewer, peaky, notes):
    """A layer that states no pixel size: the run assumes 100 nm and says so
    (a warning); a value typed in the widget wins over the layer's."""
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=2, noise=False), nm=False)
    w = _dock(viewer, "DSIR Reconstruct")
    assert "100 nm will be assumed" in w.pixel_note.value
    w.run()
    warns = _texts(notes, "warning")
    assert len(warns) == 1 and warns[0].startswith("DSIR Reconstruct: spot: no pixel size"), warns
    assert w.last_result.info["pixel_size_origin"] == "default"
    viewer.add_image(one_emitter_stack(n=2), name="read", metadata={"pixel_size": 100.0,
                                                                    "pixel_size_from_file": False})
    w.image.value = viewer.layers["read"]  # as the reader opens a file that states none
    assert w.pixel_note.value == "'read' states no pixel size: 100 nm assumed (set it here)"
    viewer.add_image(one_emitter_stack(n=2), name="um?", scale=(1, 0.16, 0.16))  # meant as um, no units
    w.image.value = viewer.layers["um?"]  # (it said only "states no pixel size")
    assert w.pixel_note.value.startswith("'um?' has a scale of 0.16 in no unit (napari's pixels): 100 nm will be "
                                         "assumed; type the pixel size here, or give the layer its units")
    w.image.value = viewer.layers["read"]
    viewer.layers["read"].scale = (1, 160, 160)  # the user sets it on the layer (its world in nm)
    viewer.layers["read"].units = ("pixel", "nm", "nm")
    w.image.value = viewer.layers["spot"]
    w.image.value = viewer.layers["read"]
    assert w.pixel_note.value == "'read' states 160 nm"
    w.run()
    assert w.last_result.info["camera_pixel_size"] == 160.0  # before: 100, the reader's default
    assert w.last_result.info["pixel_size_origin"] == "metadata"
    viewer.add_image(one_emitter_stack(n=2), name="nm", scale=(1, 160, 160), translate=(0, 80, 80),
                     metadata={"pixel_size": 160.0})
    w.image.value = viewer.layers["nm"]
    w.pixel_size.value = 107.0
    w.run()
    assert w.last_result.info["camera_pixel_size"] == 107.0
    assert w.last_result.info["pixel_size_origin"] == "given"


def test_reconstruct_a_file_layer_reads_it_as_a_run_on_the_file(make_napari_viewer, peaky, notes, monkeypatch,
                                                               tmp_path):
    """A file from our reader is a dask layer; the widget's run reads the
    file as a run on the file does (`io.stack_of`): the same reads in the
    same order (frames sampled for the PSF, the hot pixels and the noise
    level spread over the movie, not within its first chunk; then batch by
    batch, never the whole movie at once) and the same result. A slice of
    the layer's data is another array, read as an array."""
    from napari_dsir import io
    from napari_dsir.io import write_tiff
    from napari_dsir.reconstruct import frame_source

    frames = one_emitter_stack(n=40, noise=True)
    path = tmp_path / "movie.tif"
    write_tiff(path, frames, P)
    reads = []
    real_read = io.Stack.read

    def counting_read(self, start=0, stop=None):
        reads.append((start, stop))
        return real_read(self, start, stop)

    monkeypatch.setattr(io.Stack, "read", counting_read)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-dsir")
    layer = viewer.layers[-1]
    assert type(layer.data).__module__.startswith("dask")
    w = _dock(viewer, "DSIR Reconstruct")
    w.batch.value = 4
    # napari read a chunk to show the first frame, and the widget the first
    # 4 frames for the camera a run would assume (shown in its greyed fields)
    assert reads[-1] == (0, 4)
    reads.clear()
    w.run()
    assert _texts(notes, "error") == []
    from_layer = list(reads)
    reads.clear()
    ref = run_module.reconstruct(path, run_module.load_request_model(None), batch_size=4, camera=w.camera.camera())
    assert from_layer == reads and max(b - a for a, b in reads) == 4
    assert {a for a, b in reads if b - a == 1} - set(range(16))  # samples beyond the first chunk of 16
    np.testing.assert_allclose(viewer.layers["movie DSIR"].data, ref.sum_image, rtol=1e-6, atol=1e-6)
    assert frame_source(layer.data).file is not None and frame_source(layer.data[1:]).file is None
    layer.scale = (1, 160, 160)  # a scale the user sets on the file's layer is what the run uses
    w.stop.value = 4
    w.run()
    assert w.last_result.info["camera_pixel_size"] == 160.0


def test_reconstruct_never_takes_its_own_results_as_a_movie(make_napari_viewer, peaky, notes):
    """With the movie deleted, the chooser does not fall back on the DSIR
    image (before: it did, and Run reconstructed the 12.5 nm sum image)."""
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=2, noise=False))
    w = _dock(viewer, "DSIR Reconstruct")
    w.out_frames.value = True
    w.run()
    assert {"spot DSIR", "spot DSIR frames"} <= {layer.name for layer in viewer.layers}
    del viewer.layers["spot"]
    w.reset_choices()
    assert w.image.value is None and list(w.image.choices) == []
    n_layers = len(viewer.layers)
    w.run()
    assert "no image layer selected" in _texts(notes, "error")[-1] and len(viewer.layers) == n_layers


def test_reconstruct_overlay_pixel_units(make_napari_viewer, peaky):
    """A layer in pixel units (e.g. opened by napari's own reader): the output
    still covers exactly the same area."""
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=2, noise=False), nm=False)
    w = _dock(viewer, "DSIR Reconstruct")
    w.out_locs.value = True
    w.run()
    sr = viewer.layers["spot DSIR"]
    expected = np.array(EMITTER_YX) / P - 0.5  # world = pixel index of the centre
    assert np.hypot(*(_brightest_world(sr) - expected)) < 0.5
    # the corner of the SR grid is the corner of the camera grid
    np.testing.assert_allclose(sr.data_to_world((-0.5, -0.5)), (-0.5, -0.5))
    pts = viewer.layers["spot DSIR localizations"]
    w0 = np.asarray(pts.data_to_world(pts.data[0]))
    assert np.hypot(*(w0[1:] - expected)) < 0.5


@pytest.mark.parametrize("which", ["legacy", "default"])
def test_reconstruct_trained_model(make_napari_viewer, notes, which):
    """With real weights: the brightest SR pixel around an isolated emitter
    lies within 50 nm of its ground-truth position (world coordinates)."""
    viewer = make_napari_viewer()
    w = _dock(viewer, "DSIR Reconstruct")
    if which == "legacy":
        if not LEGACY.is_file():
            pytest.skip(f"original DSIR weights not available: {LEGACY}")
        w.model.value = MODEL_LEGACY
        w.model_file.value = LEGACY
    _add_stack(viewer, one_emitter_stack(n=4))
    w.device.value = "cpu"
    w.out_locs.value = True
    # the overlay of the network's own positions (the trained models put 2-4
    # detections on this synthetic spot, whose joint fits may move by ~50 nm)
    w.camera.refine.value = False
    w.run()
    assert _texts(notes) == []
    sr = viewer.layers["spot DSIR"]
    assert np.hypot(*(_brightest_world(sr) - EMITTER_YX)) < 50
    pts = viewer.layers["spot DSIR localizations"]
    # found in every frame within a camera pixel (the models' own scatter on
    # this synthetic spot reaches 50-60 nm; the brightest-pixel check above
    # is the 50 nm overlay test)
    near = np.hypot(pts.data[:, 1] - EMITTER_YX[0], pts.data[:, 2] - EMITTER_YX[1]) < 100
    assert set(pts.data[near, 0].astype(int)) == {0, 1, 2, 3}


def test_a_wide_psf_is_binned_and_said(make_napari_viewer, notes):
    """65 nm pixels with a 300-380 nm PSF: the run bins the frames for the
    network, a warning says so, the status names it, the sum image stays on
    the layer's x8 grid."""
    from napari_dsir.simulate import SimulationConfig, simulate

    cfg = SimulationConfig(frame_size=(40, 40), density=1.0, fwhm=(300.0, 380.0), photons=(800.0, 4000.0),
                           background=30.0, base_level=100.0, gain=1.0, pixel_size=65.0)
    frames, _ = simulate(12, cfg, seed=2)
    viewer = make_napari_viewer()
    viewer.add_image(frames, name="wide", scale=(1, 65.0, 65.0), translate=(0, 32.5, 32.5),
                     metadata={"pixel_size": 65.0}, units=("pixel", "nm", "nm"))
    w = _dock(viewer, "DSIR Reconstruct")
    w.device.value = "cpu"
    w.out_locs.value = True
    w.run()
    assert _texts(notes, "error") == []
    assert any("binned 2x2" in m for m in _texts(notes, "warning")), notes
    assert w.last_result.info["binning"] == 2 and "network binning 2x2" in w.status.value
    assert viewer.layers["wide DSIR"].data.shape == (320, 320)


def test_reconstruct_checkpoint_file(make_napari_viewer, tmp_path, notes):
    torch.manual_seed(0)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, DSIRModel(DSIRNet((4, 4, 4), (4, 4, 4), head_norm=False)))
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=5))
    w = _dock(viewer, "DSIR Reconstruct")
    w.model.value = MODEL_FILE
    w.model_file.value = ckpt
    w.start.value, w.stop.value = 1, 4
    w.out_frames.value = w.out_locs.value = True
    w.use_model_threshold.value = False
    w.threshold.value = 1e5  # nothing that high: an empty layer and a hint
    w.run()
    warns = _texts(notes, "warning")
    assert len(warns) == 1 and warns[0].startswith("DSIR Reconstruct: no localizations above the threshold")
    assert "lower the threshold (--threshold; widget: untick \"use the model's threshold\"" in warns[0]
    assert len(viewer.layers["spot DSIR localizations"].data) == 0
    frames = viewer.layers["spot DSIR frames"]
    assert frames.data.shape == (3, 192, 192)
    assert frames.translate[0] == 1  # frame 1 of the input is frame 0 of the output
    assert w.last_result.start == 1 and w.last_result.stop == 4


def test_the_slider_moves_to_the_runs_frames_when_it_stands_outside_them(make_napari_viewer, peaky, notes):
    """The localizations layer shows the slider's frame only: after a run on
    frames 1-3 with the slider at frame 5 it looked empty. The slider moves
    to the run's first frame, and stays where it is inside the run's."""
    viewer = make_napari_viewer()
    layer = _add_stack(viewer, one_emitter_stack(n=6, noise=False))
    layer.scale, layer.translate = (2.0, *layer.scale[1:]), (10.0, *layer.translate[1:])  # frames in world units
    w = _dock(viewer, "DSIR Reconstruct")
    w.out_locs.value = True
    w.start.value, w.stop.value = 1, 4
    viewer.dims.set_point(0, 10.0 + 2.0 * 5)
    w.run()
    assert viewer.dims.point[0] == pytest.approx(10.0 + 2.0 * 1)
    viewer.dims.set_point(0, 10.0 + 2.0 * 2)
    w.run()
    assert viewer.dims.point[0] == pytest.approx(10.0 + 2.0 * 2)
    viewer.add_image(np.zeros((2, 6, 8, 8)), name="channels, frames")  # the frames become the viewer's axis 1
    viewer.dims.set_point(1, 5.0)
    w.run()
    assert viewer.dims.point[1] == pytest.approx(10.0 + 2.0 * 1) and viewer.dims.point[0] == 0


def test_threaded_run_reports_through_finished(make_napari_viewer, qtbot, peaky, notes):
    """The real (threaded) path: a worker, a progress bar, the same layers."""
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=6, noise=False))
    w = _dock(viewer, "DSIR Reconstruct", synchronous=False)
    with qtbot.waitSignal(w.finished, timeout=60_000):
        worker = w.run()
        assert worker is not None and not w.run_button.enabled and w.cancel_button.enabled
    assert w.worker is None and w.run_button.enabled and not w.cancel_button.enabled
    assert "spot DSIR" in viewer.layers and "done" in w.status.value
    assert _texts(notes) == []


def test_closing_the_dock_cancels_the_run(make_napari_viewer, qtbot, peaky, notes):
    """Regression: a run went on after its dock was closed (the 'x') and
    added its layers to the viewer; now it is cancelled, and adds none.
    Hiding the dock is not closing it."""
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=6, noise=False))
    w = _dock(viewer, "DSIR Reconstruct", synchronous=False)
    dock = w.native.parent()
    dock.hide()  # (napari's hide button)
    with qtbot.waitSignal(w.finished, timeout=60_000):
        w.run()
    assert "spot DSIR" in viewer.layers and "done" in w.status.value
    viewer.layers.remove("spot DSIR")
    dock.show()
    with qtbot.waitSignal(w.finished, timeout=60_000):
        assert w.run() is not None
        viewer.window.remove_dock_widget(dock)  # what the dock's 'x' does
    assert [lay.name for lay in viewer.layers] == ["spot"]
    assert _texts(notes) == ["DSIR Reconstruct: cancelled (its dock was closed); no layer added"]


def test_reconstruct_errors_are_notifications(make_napari_viewer, tmp_path, notes):
    viewer = make_napari_viewer()
    w = _dock(viewer, "DSIR Reconstruct")
    w.run()  # no layer
    assert _texts(notes, "error")[-1].startswith("DSIR Reconstruct: no image layer")
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="photo", rgb=True)
    w.run()
    assert "RGB" in _texts(notes, "error")[-1]
    viewer.layers.clear()
    # a bad model file: reported from the run, no layer added
    _add_stack(viewer, one_emitter_stack(n=2))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage, not a checkpoint")
    w.model.value = MODEL_FILE
    w.model_file.value = bad
    w.run()
    err = _texts(notes, "error")[-1]
    assert err.startswith("DSIR Reconstruct: ") and "bad.pt" in err and "Traceback" not in err
    assert [lay.name for lay in viewer.layers] == ["spot"]
    assert "failed" in w.status.value and w.run_button.enabled
    # a model option without a file
    w.model_file.value = ""
    w.run()
    assert "model file" in _texts(notes, "error")[-1]
    assert w.status.value.startswith("not started: ") and "model file" in w.status.value  # not the last run's
    assert all(m.startswith(("DSIR Reconstruct: ", "DSIR Ground Truth: ")) for m in _texts(notes))


def _truth_csv(tmp_path):
    truth = tmp_path / "truth.csv"
    # ThunderSTORM style, 1-based frames, nm
    truth.write_text('"id","frame","x [nm]","y [nm]"\n'
                     "1,1,1250,1150\n2,2,1250,1150\n3,3,1250,1150\n4,3,400,300\n")
    return truth


def test_ground_truth_load_and_compare(make_napari_viewer, tmp_path, notes, monkeypatch):
    import napari_dsir.evaluate as ev

    matched = []
    monkeypatch.setattr(ev, "match", lambda *a, _match=ev.match: matched.append(1) or _match(*a))
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=3))
    w = _dock(viewer, "DSIR Ground Truth")
    w.symbol.value, w.colour.value = "cross", "magenta"
    gt = w.load(str(_truth_csv(tmp_path)))
    assert _texts(notes) == []
    assert gt.name == "spot ground truth" and gt.metadata["kind"] == "ground_truth"
    np.testing.assert_allclose(gt.data[0], [0, 1150, 1250])
    assert gt.data_to_world(gt.data[0]) == pytest.approx((0, 1150, 1250))
    assert gt.symbol[0].value == "cross"
    # localizations: 2 hits (20 nm off), 1 false positive; 2 misses
    loc = viewer.add_points(np.array([[0, 1170, 1250], [1, 1150, 1230], [2, 3000, 3000]]), units=("pixel", "nm", "nm"),
                            name="spot DSIR localizations", metadata={"kind": "localizations", "units": "nm"})
    # the choosers default to a layer of their own role
    assert w.localizations.value.name == loc.name and w.ground_truth.value.name == gt.name
    m = w.compare()
    assert _texts(notes) == []
    assert matched == [1]  # matched once (it matched again to score: 24 s frozen for 10^6 points)
    assert (m.tp, m.fp, m.fn) == (2, 1, 2)
    assert m.jaccard == pytest.approx(2 / 5) and m.rmse == pytest.approx(20.0)
    assert "Jaccard" in w.result.value and "0.400" in w.result.value
    assert list(loc.features["match"]) == ["TP", "TP", "FP"]
    assert list(gt.features["match"]) == ["TP", "TP", "FN", "FN"]
    np.testing.assert_allclose(loc.border_color[0], [0, 1, 0, 1.0])
    np.testing.assert_allclose(loc.border_color[2], [1, 0, 0, 1])
    np.testing.assert_allclose(gt.border_color[3], [1, 0, 1, 1])
    # another image chosen (another pixel size) sets the size the next load draws with: Compare's colours stay
    viewer.add_image(one_emitter_stack(n=3), name="wide px", scale=(1, 160, 160), units=("pixel", "nm", "nm"))
    w.reset_choices()
    w.image.value = viewer.layers["wide px"]
    assert w.size.value == pytest.approx(128.0)
    np.testing.assert_allclose(gt.border_color[0], [0, 1, 0, 1])  # (before: all the colour field's magenta)
    assert gt.size[0] == pytest.approx(80.0)
    assert list(gt.features["match"]) == ["TP", "TP", "FN", "FN"]
    # another file loaded over the same image goes beside the first; the same file again replaces its layer
    w.image.value = viewer.layers["spot"]
    other = tmp_path / "other.csv"
    other.write_text(_truth_csv(tmp_path).read_text())
    n_layers = len(viewer.layers)
    assert w.load(str(other)).name == "spot ground truth (other)" and len(viewer.layers) == n_layers + 1
    assert w.load(str(other)).name == "spot ground truth (other)" and len(viewer.layers) == n_layers + 1
    assert "spot ground truth" in viewer.layers
    # errors: a missing file is a notification, not a traceback
    assert w.load(str(tmp_path / "missing.csv")) is None
    assert _texts(notes, "error")[-1].startswith("DSIR Ground Truth: ") and "missing.csv" in _texts(notes)[-1]


def test_a_run_stops_quietly_when_the_viewer_is_closed(make_napari_viewer, monkeypatch):
    """Regression: closing the viewer mid-run printed a traceback from the
    progress handler (a deleted QLabel); now the run is cancelled quietly."""
    from napari_dsir.reconstruct import Progress

    viewer = make_napari_viewer()
    w = _dock(viewer, "DSIR Reconstruct")
    w._job = {"cancelled": False}

    class Deleted:
        def __setattr__(self, name, value):
            raise RuntimeError("wrapped C/C++ object of type QLabel has been deleted")

    monkeypatch.setattr(w, "status", Deleted())
    w._on_progress(Progress(0, 10, 8, "loading the model", kind="start"))
    assert w._job["cancelled"] and w._cancel.is_set()


def test_load_and_compare_run_in_a_worker_thread(make_napari_viewer, tmp_path, qtbot, notes):
    """Load reads and Compare matches in a worker (10^6 points held the
    window for seconds); the buttons wait, and the results are the
    synchronous ones."""
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=3))
    w = _dock(viewer, "DSIR Ground Truth", synchronous=False)
    truth = _truth_csv(tmp_path)
    assert w.load(str(truth)) is None and w.worker is not None
    assert not w.load_button.enabled and not w.compare_button.enabled
    assert w.load(str(truth)) is None  # one job at a time
    assert _texts(notes, "error") == ["DSIR Ground Truth: still loading or comparing: wait for it to end"]
    notes.clear()
    qtbot.waitUntil(lambda: w.worker is None, timeout=30_000)
    assert w.load_button.enabled and "spot ground truth" in viewer.layers
    assert len(viewer.layers["spot ground truth"].data) == 4 and w.ground_truth.value.name == "spot ground truth"
    # the image removed while the file is read: said, no layer
    viewer.add_image(one_emitter_stack(n=3), name="gone", scale=(1, P, P), metadata={"pixel_size": P})
    w.reset_choices()
    w.image.value = viewer.layers["gone"]
    w.load(str(truth))
    viewer.layers.remove("gone")
    qtbot.waitUntil(lambda: w.worker is None, timeout=30_000)
    assert _texts(notes, "error") == ["DSIR Ground Truth: 'gone' was removed while truth.csv was read"]
    assert "gone ground truth" not in viewer.layers
    notes.clear()
    viewer.add_points(np.array([[0, 1170, 1250], [1, 1150, 1230], [2, 3000, 3000]]), units=("pixel", "nm", "nm"),
                      name="spot DSIR localizations", metadata={"kind": "localizations", "units": "nm"})
    w.reset_choices()
    w.localizations.value = viewer.layers["spot DSIR localizations"]
    assert w.compare() is None and w.worker is not None and not w.compare_button.enabled
    qtbot.waitUntil(lambda: w.worker is None, timeout=30_000)
    assert w.compare_button.enabled and (w.metrics.tp, w.metrics.fp, w.metrics.fn) == (2, 1, 2)
    assert "0.400" in w.result.value and list(viewer.layers["spot DSIR localizations"].features["match"]) == \
        ["TP", "TP", "FP"]
    assert _texts(notes) == []
    # the dock closed while the file is read: no layer added
    viewer.layers.remove("spot ground truth")
    w.reset_choices()
    w.image.value = viewer.layers["spot"]
    n_layers = len(viewer.layers)
    assert w.load(str(truth)) is None and w.worker is not None
    viewer.window.remove_dock_widget(w.native.parent())
    qtbot.waitUntil(lambda: w.worker is None, timeout=30_000)
    assert len(viewer.layers) == n_layers and "spot ground truth" not in viewer.layers and _texts(notes) == []


def test_ground_truth_of_a_single_frame_keeps_its_frame(make_napari_viewer, tmp_path, notes):
    """Regression: on a 2-D image every row of a multi-frame positions file
    landed in its one frame (Compare then counted them all as missed). Now
    only the file's frame 1 is kept, with a warning."""
    viewer = make_napari_viewer()
    viewer.add_image(one_emitter_stack(n=1)[0], name="spot", scale=(P, P), translate=(P / 2, P / 2),
                     metadata={"pixel_size": P}, units=("nm", "nm"))
    w = _dock(viewer, "DSIR Ground Truth")
    gt = w.load(str(_truth_csv(tmp_path)))
    assert len(gt.data) == 1 and gt.data.shape[1] == 2
    np.testing.assert_allclose(gt.data[0], [1150, 1250])
    warn = _texts(notes, "warning")
    assert len(warn) == 1 and "3 of 4 rows of truth.csv lie outside frame 1 (the image is one frame)" in warn[0]
    other = tmp_path / "later.csv"
    other.write_text('"id","frame","x [nm]","y [nm]"\n1,2,1250,1150\n')
    assert w.load(str(other)) is None and "all 1 rows lie outside frame 1" in _texts(notes, "error")[-1]


def test_compare_never_scores_a_layer_against_itself(make_napari_viewer, tmp_path, notes):
    """Regression: with only the ground truth loaded both choosers showed it,
    and Compare scored it against itself (Jaccard 1.000, RMSE 0.0): napari
    hands widgets proxies, so an ``is`` check never fired."""
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=3))
    w = _dock(viewer, "DSIR Ground Truth")
    gt = w.load(str(_truth_csv(tmp_path)))
    assert w.ground_truth.value.name == gt.name
    assert w.localizations.value.name == gt.name  # the only points layer
    assert w.compare() is None and w.metrics is None
    err = _texts(notes, "error")
    assert len(err) == 1 and err[0].startswith("DSIR Ground Truth: 'spot ground truth' is chosen as both")
    assert "match" not in gt.features
    # a localizations layer arriving later becomes the localizations choice
    viewer.add_points(np.array([[0, 1150, 1250]]), name="spot DSIR localizations", units=("pixel", "nm", "nm"),
                      metadata={"kind": "localizations", "units": "nm"})
    assert w.localizations.value.name == "spot DSIR localizations"
    assert w.ground_truth.value.name == gt.name
    assert w.compare().tp == 1
    # a layer of no known kind that the user chose stays chosen
    other = viewer.add_points(np.array([[0, 1150, 1250]]), name="mine", units=("pixel", "nm", "nm"))
    w.localizations.value = other
    viewer.add_points(np.zeros((0, 3)), name="later", units=("pixel", "nm", "nm"))
    assert w.localizations.value.name == "mine"


def test_compare_scores_an_empty_run_and_ground_truth_at_the_runs_pixel_size(make_napari_viewer, tmp_path, notes):
    """An empty localizations layer scores recall 0 (before: a ValueError).
    Ground truth in pixels converted at the image's 100 nm, against a run
    given 160 nm: the two overlay, and are scored at the run's pixel size."""
    from napari_dsir.layers import Geometry, points_layer_data
    from napari_dsir.locs import Localizations

    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=3))
    w = _dock(viewer, "DSIR Ground Truth")
    truth = tmp_path / "px.csv"
    truth.write_text("frame,x [px],y [px]\n1,10.5,12.5\n2,20.5,5.5\n")
    (tmp_path / "px-protocol.txt").write_text('{"cameraSettings": {"pixelSize": 160.0}}')  # another camera's
    gt = w.load(str(truth))  # the image's pixels, at its pixel size (not at the protocol's 160 nm)
    np.testing.assert_allclose(gt.data[0], [0, 12.5 * 100, 10.5 * 100])
    assert "px.csv gives positions in pixels; converted with the pixel size of 'spot', 100 nm (px-protocol.txt " \
           "states 160 nm: check the image's pixel size)" in _texts(notes, "warning")[-1]
    data, kw, _ = points_layer_data(Localizations.empty(), "spot DSIR localizations",
                                    metadata={"kind": "localizations", "pixel_size": 160.0})
    viewer.add_points(data, **kw)
    w.localizations.value, w.ground_truth.value = viewer.layers["spot DSIR localizations"], gt
    m = w.compare()
    assert m is not None and (m.tp, m.fn, m.recall) == (0, 2, 0.0)
    found = Localizations([0, 1], [10.5 * 160 + 20, 20.5 * 160], [12.5 * 160, 5.5 * 160])
    data, kw, _ = points_layer_data(found, "run 160", geometry=Geometry.for_pixel_size(160.0),
                                    metadata={"kind": "localizations", "pixel_size": 160.0})
    viewer.add_points(data, **kw)
    w.localizations.value = viewer.layers["run 160"]
    m = w.compare()
    assert m.tp == 2 and m.rmse == pytest.approx(np.sqrt(20.0 ** 2 / 2), abs=0.01)
    assert any("converted from pixels of 100 nm and 'run 160' made with 160 nm pixels: scored at 160 nm" in t
               for t in _texts(notes, "warning"))
    # points with no frame axis against ground truth of several frames: said
    viewer.add_points(np.array([[12.5 * 100, 10.5 * 100]]), name="flat", metadata={"units": "nm"})
    w.localizations.value = viewer.layers["flat"]
    assert w.compare().tp == 1
    assert "'flat' has no frame axis: its points are taken as frame 1" in _texts(notes, "warning")[-1]


def test_compare_converts_layers_in_pixels(make_napari_viewer, notes):
    """Regression: points layers in pixels were scored as nm ("TP 20 within
    250 nm, RMSE 2.5 nm"). Now they go through the image's pixel size, or
    are refused when no image says what a pixel is."""
    viewer = make_napari_viewer()
    w = _dock(viewer, "DSIR Ground Truth")
    truth = np.array([[0, 11.0, 12.0], [1, 11.0, 12.0], [2, 4.0, 4.0]])  # pixel-centre coordinates
    found = truth + [0, 0.2, 0]  # 0.2 px = 20 nm off at 100 nm per pixel
    viewer.add_points(truth, name="truth px")
    viewer.add_points(found, name="found px")
    w.localizations.value = viewer.layers["found px"]
    w.ground_truth.value = viewer.layers["truth px"]
    assert w.compare() is None
    err = _texts(notes, "error")[-1]
    assert err.startswith("DSIR Ground Truth: 'found px' is in pixels") or "'truth px' is in pixels" in err
    # with the image the points belong to (pixel world, 100 nm per pixel)
    viewer.add_image(one_emitter_stack(n=3), name="camera", metadata={"pixel_size": P})
    w.image.value = viewer.layers["camera"]
    m = w.compare()
    assert (m.tp, m.fp, m.fn) == (3, 0, 0)
    assert m.rmse == pytest.approx(20.0)
    # a radius of 10 nm is 10 nm, not 10 pixels
    w.radius.value = 10.0
    assert w.compare().tp == 0


def test_reader_then_reconstruct_then_compare(make_napari_viewer, peaky, tmp_path, notes):
    """The whole flow on files: open a stack, reconstruct with localizations,
    load its ground truth, Compare picks the right layers by itself."""
    frames = one_emitter_stack(n=3, noise=False)
    path = tmp_path / "spot.tif"
    tifffile.imwrite(path, frames, imagej=True, resolution=(10, 10), metadata={"unit": "um", "axes": "TYX"})
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-dsir")
    rec = _dock(viewer, "DSIR Reconstruct")
    rec.out_locs.value = True
    rec.run()
    gtw = _dock(viewer, "DSIR Ground Truth")
    gtw.load(str(_truth_csv(tmp_path)))
    assert gtw.localizations.value.name == "spot DSIR localizations"
    assert gtw.ground_truth.value.name == "spot ground truth"
    m = gtw.compare()
    assert (m.tp, m.fn) == (3, 1) and m.rmse < 20
    assert _texts(notes, "error") == []


def _localize_movie(viewer, frames, notes):
    """DSIR Reconstruct run on ``frames`` (100 nm px) with localizations, on
    the CPU, without an error; the widget."""
    viewer.add_image(frames, name="movie", metadata={"pixel_size": 100.0})
    w = _dock(viewer, "DSIR Reconstruct")
    w.device.value = "cpu"
    w.out_locs.value = True
    w.run()
    assert _texts(notes, "error") == []
    return w


def test_saturated_movie_is_said(make_napari_viewer, notes):
    """Emitters clipped at a 16-bit camera's full scale: a warning says so
    and the status line counts the share of pixels there."""
    from napari_dsir.simulate import SimulationConfig, simulate

    cfg = SimulationConfig(frame_size=(32, 32), density=1.0, photons=(3000.0, 5000.0), background=30.0,
                           base_level=100.0, gain=0.4, em_gain=300.0)  # an EMCCD at a high gain
    frames, _ = simulate(12, cfg, seed=3)
    assert 0.002 < np.mean(frames == 65535) < 0.05
    w = _localize_movie(make_napari_viewer(), frames, notes)
    assert any("of the pixels of the frames sampled read 65535 ADU, the top of a 16-bit camera's range: saturated"
               in m for m in _texts(notes, "warning")), notes
    assert "saturated: " in w.status.value and "of the pixels at 65535 ADU" in w.status.value


def test_hot_pixels_are_repaired_and_said(make_napari_viewer, notes):
    """A movie with a hot pixel: a warning names it, the status counts it,
    and no emitter is reported there; unticked, it is kept."""
    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(12, SimulationConfig(frame_size=(32, 32), density=1.0, background=30.0), seed=3)
    frames[:, 8, 20] += 2000
    w = _localize_movie(make_napari_viewer(), frames, notes)
    assert any("1 hot pixel (bright in most frames" in m for m in _texts(notes, "warning")), notes
    assert w.last_result.info["hot_pixels"] == [[8, 20]] and "hot pixels repaired: 1" in w.status.value
    locs = w.last_result.localizations
    assert (np.hypot(locs.x - 2050.0, locs.y - 850.0) < 100).sum() <= 1
    w.hot_pixels.value = False  # kept: the network reports it in nearly every frame
    w.run()
    locs = w.last_result.localizations
    assert w.last_result.info["hot_pixels"] == [] and (np.hypot(locs.x - 2050.0, locs.y - 850.0) < 100).sum() >= 8


def test_column_offsets_are_subtracted_and_said(make_napari_viewer, notes):
    """A camera column reading 60 ADU high in every frame: a warning says its
    offset is subtracted and the status counts it."""
    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(20, SimulationConfig(frame_size=(32, 32), density=1.0, background=30.0), seed=3)
    frames[:, :, 11] += 60
    w = _localize_movie(make_napari_viewer(), frames, notes)
    assert any("1 column of the camera reads above or below its neighbours" in m
               for m in _texts(notes, "warning")), notes
    assert w.last_result.info["stripes"]["columns"] == 1 and "column/row offsets subtracted: 1/0" in w.status.value


def test_an_uneven_illumination_is_followed_and_said(make_napari_viewer, notes):
    """A movie under a beam 4x brighter in its middle: a warning says the
    run follows it and the status names it."""
    rng = np.random.default_rng(5)
    yy, xx = np.mgrid[0:40, 0:40] + 0.5
    lit = 4.0 ** (-((yy - 20) ** 2 + (xx - 20) ** 2) / 800.0)
    frames = (rng.poisson(np.broadcast_to(60.0 * lit, (16, 40, 40))) + 100).astype(np.float32)
    w = _localize_movie(make_napari_viewer(), frames, notes)
    assert any("uneven illumination: the background is" in m for m in _texts(notes, "warning")), notes
    assert w.last_result.info["background_shaped"] and "uneven background followed" in w.status.value
    # without the fit, the camera set here still takes the beam out for the network; unset, nothing is measured
    w.camera.refine.value = False
    assert w.camera.set_camera.enabled and w.camera.baseline.enabled
    w.run()
    assert w.last_result.info["background_shaped"] and w.last_result.info["fit"] is None
    assert "uneven background followed" in w.status.value and w.last_result.localizations.photons is None
    w.camera.set_camera.value = False
    assert not w.camera.baseline.enabled
    w.run()
    assert "background_shaped" not in w.last_result.info and "uneven background" not in w.status.value
    assert any("the background looks" in m and "camera fields" in m for m in _texts(notes, "warning")), notes


def test_a_run_on_a_file_uses_the_camera_it_states(make_napari_viewer, tmp_path, notes):
    """A TIFF that states its camera, opened with the reader: the layer keeps
    the settings, a run with "Camera settings as set here" unticked fits
    with them and says so, its layers record them and where they came
    from, and its photons are those of the same run on the file (CLI, API)."""
    from napari_dsir.run import reconstruct
    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(6, SimulationConfig(frame_size=(32, 32), density=1.0, photons=(800.0, 3000.0),
                                             base_level=400.0, gain=2.0), seed=5)
    path = tmp_path / "stated.tif"
    tifffile.imwrite(path, frames.astype(np.uint16), photometric="minisblack",
                     metadata={"offset": 400, "sensitivity": 0.5})
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-dsir")
    assert viewer.layers["stated"].metadata["camera"] == {"offset": 400, "sensitivity": 0.5}
    w = _dock(viewer, "DSIR Reconstruct")
    w.camera.set_camera.value = False
    assert w.camera.note.value.startswith("'stated' states its camera: baseline 400 ADU, 0.5 e-/ADU")
    assert (w.camera.baseline.value, w.camera.sensitivity.value) == (400.0, 0.5)  # shown, greyed
    w.device.value = "cpu"
    w.out_locs.value = True
    w.run()
    assert _texts(notes, "error") == []
    assert any("camera settings from the metadata of" in m and "baseline 400 ADU, 0.5 e-/ADU" in m
               for m in _texts(notes, "warning")), notes
    assert not any("camera settings not given" in m for m in _texts(notes)), notes
    meta = viewer.layers["stated DSIR localizations"].metadata
    assert meta["camera_origin"] == "metadata" and meta["camera"]["baseline"] == 400
    assert meta["camera"]["sensitivity"] == 0.5
    on_file = reconstruct(path, pixel_size=100.0, localize=True, device="cpu").localizations
    got = w.last_result.localizations
    assert len(got) == len(on_file) > 5
    np.testing.assert_allclose(np.sort(got.photons), np.sort(on_file.photons), rtol=1e-4)
    viewer.add_image(frames, name="bare", metadata={"pixel_size": 100.0})
    w.image.value = viewer.layers["bare"]
    assert "'bare' states no camera settings" in w.camera.note.value and w.camera.baseline.value == 100.0
    w.camera.set_camera.value = True
    assert w.camera.note.value == ""


def test_the_greyed_camera_fields_show_the_camera_a_run_assumes(make_napari_viewer, notes):
    """Data with no camera offset (the darkest pixels below 100 ADU) and no
    camera stated: the greyed fields show the baseline 0 a run assumes, not
    the default 100; ticked as they are, a run fits with what they showed,
    the same photons as a run left to assume."""
    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(6, SimulationConfig(frame_size=(32, 32), density=1.0, photons=(800.0, 3000.0),
                                             base_level=400.0, gain=2.0), seed=5)
    viewer = make_napari_viewer()
    viewer.add_image(frames - 400.0, name="no offset", metadata={"pixel_size": 100.0})
    w = _dock(viewer, "DSIR Reconstruct")
    w.image.value = viewer.layers["no offset"]
    w.camera.set_camera.value = False
    assert w.camera.baseline.value == 0.0
    assert "baseline 0 ADU (the darkest pixels read below 100 ADU" in w.camera.note.value
    w.device.value = "cpu"
    w.out_locs.value = True
    w.run()
    assert any("camera settings not given: assuming baseline 0 ADU" in m for m in _texts(notes, "warning"))
    assumed = w.last_result.localizations.photons
    w.camera.set_camera.value = True  # the settings shown, now given
    w.run()
    assert w.last_result.info["camera"]["baseline"] == 0.0
    np.testing.assert_allclose(w.last_result.localizations.photons, assumed, rtol=1e-6)
    viewer.add_image(frames, name="offset", metadata={"pixel_size": 100.0})
    w.camera.set_camera.value = False
    w.image.value = viewer.layers["offset"]
    assert w.camera.baseline.value == 100.0 and w.camera.note.value.endswith("defaults will be assumed")


def test_camera_presets_fill_the_fields_and_reach_the_run(make_napari_viewer, notes):
    """A preset fills every camera field (read noise included) and ticks
    "Camera settings as set here"; the run fits with it and records it; a
    field typed in afterwards makes the settings custom again."""
    from napari_dsir._qt.camera import CUSTOM
    from napari_dsir.camera import PRESETS, Camera
    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(6, SimulationConfig(frame_size=(32, 32), density=1.0, photons=(800.0, 3000.0)), seed=5)
    viewer = make_napari_viewer()
    w = _localize_movie(viewer, frames, notes)  # the test's own camera first
    name = next(k for k, c in PRESETS.items() if c.read_noise > 0)
    w.camera.set_camera.value = False
    w.camera.preset.value = name
    assert w.camera.set_camera.value and Camera.from_dict(w.camera.camera()) == PRESETS[name]
    w.run()
    assert _texts(notes, "error") == []
    assert w.last_result.info["camera"] == PRESETS[name].to_dict()
    assert w.last_result.info["camera_origin"] == "given"
    w.camera.qe.value = 0.5
    assert w.camera.preset.value == CUSTOM and w.camera.camera()["qe"] == 0.5


def test_a_picasso_camera_file_fills_the_fields_by_the_image_metadata(make_napari_viewer, tmp_path, notes):
    """Picasso's camera config.yaml chosen in the camera file box: the
    camera and sensitivity the image's Micro-Manager metadata names fill
    the fields and reach the run; an image whose metadata cannot pick one
    gets a note saying why."""
    import json

    import yaml

    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(6, SimulationConfig(frame_size=(32, 32), density=1.0, photons=(800.0, 3000.0),
                                             base_level=400.0, gain=2.0), seed=5)
    path = tmp_path / "mm.tif"
    props = {"Camera": "Andor", "Andor-Output_Amplifier": "Conventional", "Andor-Pre-Amp-Gain": "Gain 2",
             "Andor-Gain": "4"}
    tifffile.imwrite(path, frames.astype(np.uint16), photometric="minisblack",
                     extratags=[(51123, "s", 0, json.dumps(props), False)])
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"Cameras": {
        "Zyla": {"Baseline": 100, "Sensitivity": 2.0},
        "Andor": {"Baseline": 400, "Gain Property Name": "Gain",
                  "EM Switch Property": {"Name": "Output_Amplifier", True: "Electron Multiplying"},
                  "Sensitivity Categories": ["Output_Amplifier", "Pre-Amp-Gain"],
                  "Sensitivity": {"Conventional": {"Gain 1": 1.0, "Gain 2": 0.5}}}}}))
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-dsir")
    w = _dock(viewer, "DSIR Reconstruct")
    w.camera.set_camera.value = False
    assert w.camera.note.value == ("'mm' states no camera settings (camera 'Andor'; a camera file can map it): "
                                   "defaults will be assumed")
    w.camera.camera_file.value = config
    assert w.camera.set_camera.value and w.camera.note.value == ""
    assert w.camera.camera() == {"baseline": 400.0, "sensitivity": 0.5, "em_gain": 1.0, "qe": 1.0, "read_noise": 0.0}
    w.device.value = "cpu"
    w.out_locs.value = True
    w.run()
    assert _texts(notes, "error") == []
    assert w.last_result.info["camera"]["sensitivity"] == 0.5 and w.last_result.info["camera_origin"] == "given"
    viewer.add_image(frames, name="bare", metadata={"pixel_size": 100.0})
    w.image.value = viewer.layers["bare"]
    assert "lists 2 cameras" in w.camera.note.value and "names no camera" in w.camera.note.value
    assert not w.camera.set_camera.value and w.camera.camera() is None  # not the other image's camera
    # regression: a binary file (the Picasso .hdf5 beside its YAML) raised in the signal handler and
    # aborted napari; now the note says what it is
    w.image.value = viewer.layers["mm"]
    binary = tmp_path / "locs.hdf5"
    binary.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    w.camera.camera_file.value = binary
    assert "not a text (YAML) file" in w.camera.note.value and not w.camera.set_camera.value
    # the greyed fields show what the run now uses (not the config's 400 ADU, 0.5 e-/ADU), and say so
    assert (w.camera.baseline.value, w.camera.sensitivity.value) == (100.0, 1.0)
    assert w.camera.note.value.splitlines()[1].startswith("'mm' states no camera settings")
    w.camera.camera_file.value = tmp_path / "no_such_camera.yaml"  # a path typed wrong: said, not ignored
    assert w.camera.note.value.startswith(f"camera file {tmp_path / 'no_such_camera.yaml'}: no such file")


def test_a_movie_with_no_signal_is_said_so_not_saturated(make_napari_viewer, notes):
    """A blank recording (every pixel one value) summed without
    localizations: the warning and the status say it holds no signal."""
    viewer = make_napari_viewer()
    viewer.add_image(np.full((3, 24, 24), 1000, np.uint16), name="blank", metadata={"pixel_size": 100.0})
    w = _dock(viewer, "DSIR Reconstruct")
    w.device.value = "cpu"
    w.run()
    assert _texts(notes, "error") == [], notes
    assert any("the movie holds no signal" in m for m in _texts(notes, "warning")), notes
    assert "saturated" not in w.status.value
    assert "no signal: every pixel at 1000 ADU" in w.status.value


def test_a_rename_keeps_the_frames_and_a_run_keeps_the_users_own_layers(make_napari_viewer, peaky, notes):
    """Renaming the image keeps the frame range typed (before: reset to all
    frames, and Run ran the whole movie); a layer of the user's own that
    bears an output's name stays, the output beside it (before: removed);
    the plugin's own outputs are still replaced by a re-run."""
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=6, noise=False))
    w = _dock(viewer, "DSIR Reconstruct")
    w.start.value, w.stop.value = 2, 4
    viewer.layers["spot"].name = "cell"
    assert (w.start.value, w.stop.value) == (2, 4)
    viewer.add_image(np.zeros((8, 8)), name="cell DSIR")  # the user's own
    viewer.add_points(np.array([[1.0, 2.0]]), name="cell DSIR localizations")
    w.image.value = viewer.layers["cell"]
    assert (w.start.value, w.stop.value) == (2, 4)
    w.out_locs.value = True
    w.run()
    assert _texts(notes, "error") == [] and (w.last_result.start, w.last_result.stop) == (2, 4)
    assert viewer.layers["cell DSIR"].data.shape == (8, 8) and len(viewer.layers["cell DSIR localizations"].data) == 1
    outputs = [layer for layer in viewer.layers if layer.metadata.get("kind") in ("dsir_sum", "localizations")]
    assert [layer.name for layer in outputs] == ["cell DSIR [1]", "cell DSIR localizations [1]"]
    n_layers = len(viewer.layers)
    w.run()  # the plugin's own outputs replaced in place, the user's left alone
    assert len(viewer.layers) == n_layers and viewer.layers["cell DSIR"].data.shape == (8, 8)
    assert viewer.layers[-1].name == "cell DSIR localizations [1]"
    viewer.layers.remove("cell DSIR")
    w.run()  # the name free again: the output takes it
    assert len(viewer.layers) == n_layers - 1 and viewer.layers["cell DSIR"].metadata["kind"] == "dsir_sum"
    viewer.layers["cell DSIR"].name = "run 1"  # renamed to keep it: the next run leaves it
    w.run()
    assert "run 1" in viewer.layers and viewer.layers["cell DSIR"].metadata["kind"] == "dsir_sum"
    # a table opened under an output's name (a saved run, read back) is the user's too
    from napari_dsir.layers import points_layer_data
    from napari_dsir.locs import Localizations

    viewer.layers.remove("cell DSIR localizations")
    viewer.layers.remove("cell DSIR localizations [1]")
    data, kwargs, _ = points_layer_data(Localizations([0], [50.0], [50.0]), "cell DSIR localizations",
                                        metadata={"kind": "localizations", "source": "saved.csv"})
    viewer.add_points(data, **kwargs)
    w.run()
    assert len(viewer.layers["cell DSIR localizations"].data) == 1 and "cell DSIR localizations [1]" in viewer.layers


def test_camera_fields_keep_a_files_decimals_and_the_users_edits(make_napari_viewer, tmp_path, notes):
    """A camera file's 0.0435 e-/ADU is kept (before: 0.04, Qt's 2 decimals);
    a baseline typed after it, or a preset chosen, survives a new pixel size
    and another image (before: the file was read again over it); a file
    value no field can hold is said, the box left unticked (before: the
    field kept its last value, silently)."""
    import yaml

    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=2))
    _add_stack(viewer, one_emitter_stack(n=2), name="other")
    w = _dock(viewer, "DSIR Reconstruct")
    w.image.value = viewer.layers["spot"]
    cam = tmp_path / "cam.yaml"
    cam.write_text(yaml.safe_dump({"baseline": 98.7, "sensitivity": 0.0435, "em_gain": 1, "qe": 0.905,
                                   "read_noise": 0.125}))
    w.camera.camera_file.value = cam
    assert w.camera.set_camera.value
    assert w.camera.camera() == {"baseline": 98.7, "sensitivity": 0.0435, "em_gain": 1.0, "qe": 0.905,
                                 "read_noise": 0.125}
    fine = tmp_path / "fine.yaml"  # more decimals than the fields show: the run takes the file's own
    fine.write_text(yaml.safe_dump({"baseline": 99.87654, "sensitivity": 0.123456}))
    w.camera.camera_file.value = fine
    assert w.camera.sensitivity.value == 0.1235
    assert (w.camera.camera()["baseline"], w.camera.camera()["sensitivity"]) == (99.87654, 0.123456)
    w.pixel_size.value = 106.667
    assert w.pixel_size.value == 106.667
    w.camera.set_camera.value = False  # the greyed fields show the image's camera again ...
    w.camera.set_camera.value = True  # ... and ticked, the run takes what they show, not the file's
    fields = [f.value for f in w.camera.fields]
    assert list(w.camera.camera().values()) == fields and fields[1] != 0.123456
    w.camera.camera_file.value = cam
    w.camera.baseline.value = 250.0
    w.pixel_size.value = 110.0
    w.image.value = viewer.layers["other"]
    assert w.camera.camera()["baseline"] == 250.0 and w.camera.camera()["sensitivity"] == 0.0435
    from napari_dsir.camera import PRESETS

    name = next(iter(PRESETS))
    w.camera.preset.value = name
    w.image.value = viewer.layers["spot"]
    assert w.camera.preset.value == name and w.camera.camera()["baseline"] == PRESETS[name].baseline
    huge = tmp_path / "huge.yaml"
    huge.write_text(yaml.safe_dump({"baseline": 321, "sensitivity": 1, "em_gain": 3e5}))
    w.camera.camera_file.value = huge
    assert not w.camera.set_camera.value and w.camera.baseline.value != 321  # none filled, not a mix
    assert w.camera.note.value.startswith(f"camera file {huge}: EM gain 300000 is beyond this field's")


def test_the_threshold_shown_is_the_chosen_models(make_napari_viewer, peaky, tmp_path):
    """Another model chosen during a run keeps its own threshold in the box
    (before: the finished run's); a checkpoint not yet chosen shows 0, not
    the last model's."""
    from napari_dsir.localize import params_for
    from napari_dsir.model import load_model

    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=2, noise=False))
    w = _dock(viewer, "DSIR Reconstruct")
    w.out_locs.value = True
    wide = next(c for c in SHIPPED if c.startswith("wide"))
    real = w._on_result

    def switch_then_show(result):  # the user picks "wide" while the run goes on
        w.model.value = wide
        real(result)

    w._on_result = switch_then_show
    w.run()
    assert w.last_result.info["localize"]["threshold"] == 1.0  # the stand-in's
    assert w.threshold.value == pytest.approx(params_for(load_model("wide")).threshold, abs=1e-6)
    w.model.value = MODEL_FILE
    assert w.threshold.value == 0.0 and w.threshold.native.text() == "none"
    # an interrupted training's checkpoint carries no calibrated localizer: "none", not the default 0.1
    from napari_dsir.model import DSIRModel, DSIRNet, save_checkpoint

    bare = tmp_path / "interrupted.pt"
    save_checkpoint(bare, DSIRModel(DSIRNet((4, 4, 4), (4, 4, 4), head_norm=False)))
    w.model_file.value = bare
    assert w.threshold.native.text() == "none" and "no calibrated localizer" in w.threshold.tooltip
    w.model.value = wide
    w.use_model_threshold.value = False
    w.threshold.value = 0.0  # not a threshold: refused before the run
    from napari_dsir.errors import DSIRError

    with pytest.raises(DSIRError, match="set a threshold above 0"):
        w.request()


def test_ground_truth_is_placed_on_the_movie_not_on_a_frame_range_or_a_rendering(make_napari_viewer, peaky):
    """The per-frame stack of a frame range counts its frames from its start,
    and a rendering and the sum image have their own pixel size (the sum
    image one frame): none is offered as the image positions belong to
    (before: ground truth on frames 10-19 was drawn on frames 0-9 of the
    range; one in camera px on the sum image at 1/8 of its place, with
    every frame but the first left out, scoring Jaccard 0.05 for 0.86)."""
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=4, noise=False))
    w = _dock(viewer, "DSIR Reconstruct")
    w.start.value, w.out_frames.value = 1, True
    w.run()
    assert "spot DSIR frames" in viewer.layers
    viewer.add_image(np.zeros((8, 8)), name="r", metadata={"kind": "render", "pixel_size": 10.0})
    gt = _dock(viewer, "DSIR Ground Truth")
    gt.reset_choices()
    assert [c.name for c in gt.image.choices] == ["spot"]


def test_compare_widens_a_stated_range_to_every_localization_and_names_files_apart(make_napari_viewer, tmp_path,
                                                                                   notes, monkeypatch):
    """A table whose stated frames miss some of its localizations (a stale
    protocol, points drawn beyond the run): those frames are scored too, with
    a warning (before: its localizations there counted as false positives).
    The same positions file typed another way replaces its layer; another
    file of the same name elsewhere goes beside; the sample's ground truth
    loaded again replaces the sample's layer."""
    viewer = make_napari_viewer()
    _add_stack(viewer, one_emitter_stack(n=3))
    w = _dock(viewer, "DSIR Ground Truth")
    gt = w.load(str(_truth_csv(tmp_path)))
    loc = viewer.add_points(np.array([[0, 1150, 1250], [1, 1150, 1250], [2, 1150, 1250]]), name="stale",
                            units=("pixel", "nm", "nm"), metadata={"kind": "localizations", "units": "nm",
                                                                   "frames": (0, 1)})
    w.reset_choices()
    w.localizations.value, w.ground_truth.value = loc, gt
    m = w.compare()
    assert (m.tp, m.fp, m.fn) == (3, 0, 1)
    assert "'stale' states frames 0-0, but has localizations in frames 0-2: frames 0-2 are scored" in \
        _texts(notes, "warning")[-1]
    monkeypatch.chdir(tmp_path)
    assert w.load("truth.csv").name == "spot ground truth"  # the same file, typed relative
    (tmp_path / "elsewhere").mkdir()
    other = tmp_path / "elsewhere" / "truth.csv"
    other.write_text(_truth_csv(tmp_path).read_text())
    assert w.load(str(other)).name == "spot ground truth (truth)"
    viewer.open_sample("napari-dsir", "sample_stack")
    from napari_dsir._sample_data import SAMPLE_POSITIONS, sample_path

    w.reset_choices()
    w.image.value = viewer.layers["DSIR sample"]
    n_layers = len(viewer.layers)
    assert w.load(str(sample_path(SAMPLE_POSITIONS))).name == "DSIR sample ground truth"
    assert len(viewer.layers) == n_layers


def test_the_docks_fit_beside_the_canvas(make_napari_viewer):
    """The model and camera-preset choices are long: the combo boxes were as
    wide as their longest, and the dock needed 704 px (the canvas kept 279 px
    of a 1280 px screen). They are sized for a few words (the open list
    widens to the whole text), so the dock is narrower than the longest choice."""
    viewer = make_napari_viewer(show=True)  # (shown: Qt updates a hidden form's size when it shows)
    viewer.add_image(np.zeros((2, 16, 16)), name="a movie with a rather long file name from the microscope")
    w = _dock(viewer, "DSIR Reconstruct")
    metrics = w.model.native.fontMetrics()
    longest = max(metrics.horizontalAdvance(str(c)) for c in (*w.model.choices, *w.camera.preset.choices))
    assert w.native.minimumSizeHint().width() < longest
    # the form scrolls inside the dock: the three docks needed ~1,600 px of height (off a laptop's screen)
    from qtpy.QtWidgets import QApplication, QScrollArea

    for name in ("DSIR Reconstruct", "DSIR Render & Drift", "DSIR Ground Truth", "DSIR Filter"):
        widget = w if name == "DSIR Reconstruct" else _dock(viewer, name)
        scroll = widget.native.findChild(QScrollArea)
        assert scroll is not None and scroll.widget().isAncestorOf(widget[0].native), name
        assert widget.native.minimumSizeHint().height() < scroll.widget().minimumSizeHint().height() / 2, name
        # a long status or note wraps, and the dock keeps its width (after a run on the sample, Reconstruct's
        # two-line status took the form from 385 to 594 px: magicgui fixes a label's width at its text's)
        QApplication.processEvents()
        before = widget.native.minimumSizeHint().width()
        labels = [w.status, w.pixel_note, w.camera.note] if widget is w else [widget[-1]]  # (the status, last)
        for label in labels:
            label.value = ("done: frames 0-119 on cpu, batch 8, 100 nm pixels, 10609 localizations (threshold 9.0769)"
                           "\nmedian 2146 photons, median uncertainty 17.0 nm; 694 free fits, 9698 at the network's "
                           "position (crowded), 206 at the network's position (fit pulled away), 11 failed")
        QApplication.processEvents()
        assert widget.native.minimumSizeHint().width() == before, name

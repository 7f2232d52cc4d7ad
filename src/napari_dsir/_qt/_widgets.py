"""The plugin's dock widgets: "DSIR Reconstruct" and "DSIR Ground Truth".

The work is done by the Qt-free core (`napari_dsir.reconstruct`,
`napari_dsir.evaluate`); these widgets collect options, run the core in a
napari ``thread_worker`` and turn results into layers that overlay their
input (geometry from `napari_dsir.layers`). Every failure is shown as a
napari notification, never as a traceback.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Image, Points
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from ..errors import DSIRError
from ..io import DEFAULT_PIXEL_SIZE_NM, Localizations, read_localizations
from ..layers import Geometry, contrast_limits

if TYPE_CHECKING:  # pragma: no cover
    import napari


# --------------------------------------------------------------------------- helpers


def load_model(spec, device):
    """Indirection so tests can swap the model loader."""
    from ..model import default_model_path
    from ..model import load_model as _load

    if spec is None and not default_model_path().is_file():
        raise DSIRError(
            f"the shipped default model is missing ({default_model_path()}); "
            "choose an original DSIR or a checkpoint file"
        )
    return _load(spec, device=device)


def cuda_available() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # pragma: no cover
        return False


def layer_pixel_size(layer) -> float:
    """Camera pixel size (nm) of an image layer: its metadata, else its
    scale when that is not 1 (assumed nm), else the 100 nm default."""
    px = (layer.metadata or {}).get("pixel_size")
    if px:
        return float(px)
    s = float(layer.scale[-1])
    return s if s != 1.0 and s > 0 else DEFAULT_PIXEL_SIZE_NM


def layer_geometry(layer, pixel_size: float | None = None) -> Geometry:
    p = layer_pixel_size(layer) if pixel_size is None else float(pixel_size)
    return Geometry.from_layer(layer.scale, layer.translate, p)


def put_layer(viewer, layer_type: str, data, kwargs: dict):
    """Add a layer, replacing one of the same name (a re-run updates in place)."""
    name = kwargs["name"]
    if name in viewer.layers:
        old = viewer.layers[name]
        idx = viewer.layers.index(old)
        viewer.layers.remove(old)
        layer = getattr(viewer, f"add_{layer_type}")(data, **kwargs)
        viewer.layers.move(viewer.layers.index(layer), idx)
        return layer
    return getattr(viewer, f"add_{layer_type}")(data, **kwargs)


def _message(exc: BaseException) -> str:
    if isinstance(exc, DSIRError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


class LayerCombo(QComboBox):
    """A combo box listing the viewer's layers of one type, kept up to date."""

    def __init__(self, viewer, layer_type, parent=None, include=None):
        super().__init__(parent)
        self._viewer = viewer
        self._type = layer_type
        self._include = include
        viewer.layers.events.inserted.connect(self.refresh)
        viewer.layers.events.removed.connect(self.refresh)
        viewer.layers.events.reordered.connect(self.refresh)
        self.refresh()

    def refresh(self, event=None):
        try:
            current = self.currentText()
            names = [
                lay.name for lay in self._viewer.layers
                if isinstance(lay, self._type) and (self._include is None or self._include(lay))
            ]
            if names == [self.itemText(i) for i in range(self.count())]:
                return
            self.blockSignals(True)
            self.clear()
            self.addItems(names)
            if current in names:
                self.setCurrentText(current)
            elif event is not None and getattr(event, "type", "") == "inserted" and names:
                new = getattr(event, "value", None)
                if new is not None and new.name in names:
                    self.setCurrentText(new.name)
            self.blockSignals(False)
            self.currentIndexChanged.emit(self.currentIndex())
        except RuntimeError:  # the Qt side was deleted with the viewer
            pass

    def showPopup(self):
        self.refresh()
        super().showPopup()

    def layer(self):
        name = self.currentText()
        if name and name in self._viewer.layers:
            lay = self._viewer.layers[name]
            if isinstance(lay, self._type):
                return lay
        return None


def _browse_row(parent, caption: str, filt: str, directory: bool = False):
    edit = QLineEdit(parent)
    btn = QPushButton("Browse…", parent)

    def browse():
        if directory:
            path = QFileDialog.getExistingDirectory(parent, caption)
        else:
            path, _ = QFileDialog.getOpenFileName(parent, caption, "", filt)
        if path:
            edit.setText(path)

    btn.clicked.connect(browse)
    row = QHBoxLayout()
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(edit)
    row.addWidget(btn)
    return edit, btn, row


# --------------------------------------------------------------------------- reconstruct

MODEL_DEFAULT, MODEL_LEGACY, MODEL_FILE = range(3)
DEVICES = (("Auto", "auto"), ("CPU", "cpu"), ("GPU (CUDA)", "cuda"))
NO_CUDA_TIP = "No CUDA GPU is available to PyTorch on this machine (torch.cuda.is_available() is False)."


class ReconstructWidget(QWidget):
    """Run the DSIR auto-encoder on an image layer (Plugins > DSIR Reconstruct)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.worker = None
        self._pbar = None
        self._job: dict = {}
        self._cancelled = False
        self._ended = False
        self._oom_note = ""
        self._cancel_event = threading.Event()
        self.last_result = None

        form = QFormLayout()
        self.layer_combo = LayerCombo(self.viewer, Image, self)
        self.layer_combo.setToolTip("The camera stack (frame, y, x) to reconstruct")
        self.layer_combo.currentIndexChanged.connect(self._on_layer_changed)
        form.addRow("Image", self.layer_combo)

        self.pixel_size = QDoubleSpinBox(self)
        self.pixel_size.setRange(1.0, 100000.0)
        self.pixel_size.setDecimals(2)
        self.pixel_size.setSuffix(" nm")
        self.pixel_size.setValue(DEFAULT_PIXEL_SIZE_NM)
        self.pixel_size.setToolTip("Camera pixel size (from the layer's metadata or scale when known)")
        form.addRow("Pixel size", self.pixel_size)

        self.model_combo = QComboBox(self)
        self.model_combo.addItems(
            ["Default (shipped)", "Original DSIR weights (.pt)", "napari-dsir checkpoint (.pt)"]
        )
        self.model_combo.setToolTip(
            "Default: the model shipped with napari-dsir. Original DSIR: the 2018 "
            "autoencoder_model.pt. Checkpoint: any model saved by `dsir train`."
        )
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        form.addRow("Model", self.model_combo)
        self.model_path, self.model_browse, row = _browse_row(
            self, "Choose a model file", "PyTorch model (*.pt *.pth);;All files (*)"
        )
        self.model_path.setPlaceholderText("model file (.pt)")
        form.addRow("Model file", row)

        self.device_combo = QComboBox(self)
        for label, _ in DEVICES:
            self.device_combo.addItem(label)
        if not cuda_available():
            item = self.device_combo.model().item(2)
            item.setEnabled(False)
            self.device_combo.setItemData(2, NO_CUDA_TIP, Qt.ItemDataRole.ToolTipRole)
            self.device_combo.setToolTip("GPU disabled: " + NO_CUDA_TIP)
        else:
            self.device_combo.setToolTip("Auto uses the CUDA GPU when there is one")
        form.addRow("Device", self.device_combo)

        self.start_spin = QSpinBox(self)
        self.stop_spin = QSpinBox(self)
        self.start_spin.setToolTip("First frame (0-based)")
        self.stop_spin.setToolTip("Stop before this frame (0-based, exclusive)")
        frames = QHBoxLayout()
        frames.addWidget(self.start_spin)
        frames.addWidget(QLabel("to"))
        frames.addWidget(self.stop_spin)
        form.addRow("Frames", frames)

        self.batch_spin = QSpinBox(self)
        self.batch_spin.setRange(0, 4096)
        self.batch_spin.setSpecialValueText("auto")  # 0: 1 frame on the CPU, 32 on a GPU
        self.batch_spin.setValue(0)
        self.batch_spin.setToolTip("Frames per batch; auto: 1 on the CPU (fastest there), 32 on a GPU "
                                   "(halved automatically on GPU out-of-memory)")
        form.addRow("Batch size", self.batch_spin)

        outs = QGroupBox("Outputs", self)
        ol = QVBoxLayout(outs)
        self.out_sum = QCheckBox("Sum image", outs)
        self.out_sum.setChecked(True)
        self.out_frames = QCheckBox("Per-frame stack", outs)
        self.out_locs = QCheckBox("Localizations (points)", outs)
        self.model_threshold = QCheckBox("use the model's threshold", outs)
        self.model_threshold.setChecked(True)
        self.model_threshold.setToolTip(
            "Use the localization threshold calibrated for the model (stored with its "
            "weights). Untick to set your own."
        )
        self.threshold = QDoubleSpinBox(outs)
        self.threshold.setRange(0.0, 1e6)
        self.threshold.setDecimals(5)
        self.threshold.setSingleStep(0.001)
        self.threshold.setValue(0.0)
        self.threshold.setMinimumWidth(self.threshold.fontMetrics().horizontalAdvance("0.000000") + 40)
        self.threshold.setToolTip(
            "Peak threshold for localizations (network output units); shows the "
            "model's calibrated value after a run"
        )
        self.model_threshold.toggled.connect(self._on_threshold_mode)
        thr = QHBoxLayout()
        thr.addWidget(self.model_threshold)
        thr.addWidget(self.threshold)
        for w in (self.out_sum, self.out_frames, self.out_locs):
            ol.addWidget(w)
        ol.addLayout(thr)

        self.run_btn = QPushButton("Run", self)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn = QPushButton("Cancel", self)
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.cancel_btn)
        self.status = QLabel("", self)
        self.status.setWordWrap(True)

        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(outs)
        lay.addLayout(buttons)
        lay.addWidget(self.status)
        lay.addStretch(1)

        self._on_model_changed()
        self._on_layer_changed()
        self._on_threshold_mode()

    # -- UI state

    def _on_threshold_mode(self, *_):
        self.threshold.setEnabled(not self.model_threshold.isChecked())

    def threshold_value(self) -> float | None:
        """The threshold to use: None for the model's calibrated one."""
        if self.model_threshold.isChecked():
            return None
        return float(self.threshold.value())

    def _on_model_changed(self, *_):
        custom = self.model_combo.currentIndex() != MODEL_DEFAULT
        self.model_path.setEnabled(custom)
        self.model_browse.setEnabled(custom)

    def _on_layer_changed(self, *_):
        layer = self.layer_combo.layer()
        if layer is None:
            return
        self.pixel_size.setValue(layer_pixel_size(layer))
        n = int(layer.data.shape[0]) if layer.ndim == 3 and not layer.rgb else 1
        for s in (self.start_spin, self.stop_spin):
            s.setRange(0, n)
        self.start_spin.setMaximum(max(0, n - 1))
        self.start_spin.setValue(0)
        self.stop_spin.setValue(n)

    def model_spec(self) -> str | None:
        idx = self.model_combo.currentIndex()
        if idx == MODEL_DEFAULT:
            return None
        path = self.model_path.text().strip()
        if not path:
            raise DSIRError("choose a model file (.pt) for this model option")
        return f"legacy:{path}" if idx == MODEL_LEGACY else path

    def device_name(self) -> str:
        return DEVICES[self.device_combo.currentIndex()][1]

    @property
    def running(self) -> bool:
        return self.worker is not None

    # -- running

    def _check_input(self):
        layer = self.layer_combo.layer()
        if layer is None:
            raise DSIRError("no image layer selected: open a stack first (File > Open, or drop a TIFF)")
        if layer.rgb:
            raise DSIRError(f"'{layer.name}' is an RGB image; DSIR needs single-channel camera frames")
        if layer.multiscale:
            raise DSIRError(f"'{layer.name}' is a multiscale image; DSIR needs the camera frames")
        if layer.ndim not in (2, 3):
            raise DSIRError(f"'{layer.name}' has {layer.ndim} dimensions; expected (frame, y, x) or (y, x)")
        if not (self.out_sum.isChecked() or self.out_frames.isChecked() or self.out_locs.isChecked()):
            raise DSIRError("choose at least one output")
        return layer

    def run(self):
        """Start a reconstruction of the selected layer in a worker thread."""
        if self.running:
            show_warning("DSIR Reconstruct is already running")
            return None
        try:
            layer = self._check_input()
            spec = self.model_spec()
            device = self.device_name()
            if device == "cuda" and not cuda_available():
                raise DSIRError(
                    "GPU (CUDA) was chosen but PyTorch sees no CUDA GPU on this machine; "
                    "choose Auto or CPU"
                )
            data = layer.data if layer.ndim == 3 else layer.data[None]
            n = int(data.shape[0])
            start, stop = int(self.start_spin.value()), int(self.stop_spin.value())
            stop = min(stop, n)
            if not 0 <= start < stop:
                raise DSIRError(f"frame range {start} to {stop} selects no frames of the {n} in '{layer.name}'")
        except DSIRError as e:
            show_error(str(e))
            return None
        job = {
            "layer": layer,
            "name": layer.name,
            "pixel_size": float(self.pixel_size.value()),
            "geometry": layer_geometry(layer, self.pixel_size.value()),
            "ndim": layer.ndim,
            "sum": self.out_sum.isChecked(),
            "frames": self.out_frames.isChecked(),
            "locs": self.out_locs.isChecked(),
        }
        self._job = job
        self._cancelled = False
        self._oom_note = ""
        self._ended = False
        self._cancel_event = threading.Event()
        worker = create_worker(
            _reconstruct_job,
            data,
            spec,
            device,
            pixel_size=job["pixel_size"],
            batch_size=int(self.batch_spin.value()) or None,
            start=start,
            stop=stop,
            keep_frames=job["frames"],
            localize=job["locs"],
            threshold=self.threshold_value(),
            cancel_event=self._cancel_event,
            _start_thread=False,
            _ignore_errors=True,
        )
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._pbar = progress(total=stop - start, desc=f"DSIR {layer.name}")
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.status.setText(f"loading the model ({device})…")
        worker.start()
        return worker

    def cancel(self):
        """Stop the run: between batches, and inside a batch between network layers."""
        if self.worker is not None:
            self._cancelled = True
            self._cancel_event.set()
            self.status.setText("cancelling…")
            self.worker.quit()

    def _on_yielded(self, p):
        if self.worker is None or self._ended:
            return  # a late progress report (delivered after the run ended)
        if self._pbar is not None:
            delta = p.done - self._pbar.n
            if delta > 0:
                self._pbar.update(delta)  # may process events: the run may end here
        if self._ended:
            return
        if p.message and "out of memory" in p.message:
            self._oom_note = p.message
            show_warning(f"DSIR Reconstruct: {p.message} (the run goes on)")
        if not self._cancelled:
            note = f"; {self._oom_note}" if self._oom_note else ""
            batch = f" (batch {p.batch_size})" if p.batch_size else ""
            self.status.setText(f"{p.done} / {p.total} frames{batch}{note}")

    def _on_returned(self, result):
        self._ended = True
        if result is None or self._cancelled:  # cancelled inside a batch
            return
        try:
            loc = result.info.get("localize")
            if loc and self.model_threshold.isChecked():
                # show the model's calibrated value (the box stays "model's")
                self.threshold.setValue(float(loc["threshold"]))
            self.add_result_layers(result, self._job)
            self.status.setText(
                f"done: frames {result.start}-{result.stop - 1} on {result.info.get('device', '?')}"
                + (f", batch {result.info.get('batch_size')}" if self._oom_note else "")
                + (f", {len(result.localizations)} localizations" if result.localizations is not None else "")
                + (f" (threshold {loc['threshold']:.5g})" if loc else "")
            )
        except Exception as e:  # never a traceback in the viewer
            show_error(f"DSIR Reconstruct: cannot show the result ({_message(e)})")

    def _on_errored(self, exc):
        self._ended = True
        if isinstance(exc, _Cancelled) or self._cancelled:
            return
        show_error(f"DSIR Reconstruct: {_message(exc)}")
        self.status.setText(f"failed: {_message(exc)}")

    def _on_aborted(self):
        self._ended = True

    def _on_finished(self):
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.worker = None
        try:
            if self._cancelled:
                self.status.setText("cancelled; no layer added")
                show_info("DSIR Reconstruct cancelled")
            self.run_btn.setEnabled(True)
            self.cancel_btn.setEnabled(False)
        except RuntimeError:  # widget already deleted
            pass

    def add_result_layers(self, result, job: dict) -> list:
        """Turn a `reconstruct.Result` into layers overlaying the input: all
        of them or, on a failure, none (the layers added are removed again)."""
        added: list = []
        try:
            return self._add_result_layers(result, job, added)
        except Exception:
            for layer in added:
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)
            raise

    def _add_result_layers(self, result, job: dict, added: list) -> list:
        from .._reader import points_layer_data

        self.last_result = result
        geo: Geometry = job["geometry"]
        u = result.upsampling
        name = job["name"]
        meta = {
            "pixel_size": result.pixel_size,
            "camera_pixel_size": job["pixel_size"],
            "upsampling": u,
            "frames": (result.start, result.stop),
            "source": name,
            "model": result.info.get("model"),
        }
        from .._reader import _axes_kwargs

        nm = geo.scale[-1] == geo.pixel_size  # the input's world is nm
        if job["frames"] and result.frames is not None:
            frames = result.frames
            if job["ndim"] == 3:
                scale, translate = geo.sr_scale(u, 3), list(geo.sr_translate(u, 3))
                translate[0] = geo.frame_translate + result.start * geo.frame_scale
            else:
                frames = frames[0]
                scale, translate = geo.sr_scale(u, 2), geo.sr_translate(u, 2)
            added.append(put_layer(self.viewer, "image", frames, dict(
                name=f"{name} DSIR frames", scale=scale, translate=tuple(translate),
                contrast_limits=contrast_limits(frames), colormap="inferno",
                blending="additive", metadata=dict(meta, kind="dsir_frames"),
                **_axes_kwargs(frames.ndim, nm),
            )))
        if job["sum"]:
            img = result.sum_image
            added.append(put_layer(self.viewer, "image", img, dict(
                name=f"{name} DSIR", scale=geo.sr_scale(u, 2), translate=geo.sr_translate(u, 2),
                contrast_limits=contrast_limits(img), colormap="inferno",
                blending="additive", metadata=dict(meta, kind="dsir_sum"),
                **_axes_kwargs(2, nm),
            )))
        if job["locs"] and result.localizations is not None:
            if len(result.localizations) == 0:
                thr = (result.info.get("localize") or {}).get("threshold")
                show_warning(
                    "DSIR: no localizations above the threshold"
                    + (f" {thr:.5g}" if thr is not None else "")
                    + "; untick \"use the model's threshold\" and lower the threshold"
                )
            ndim = 3 if job["ndim"] == 3 else 2
            data, kwargs, _ = points_layer_data(
                result.localizations, f"{name} DSIR localizations", geometry=geo, ndim=ndim,
                metadata=dict(meta, kind="localizations", pixel_size=job["pixel_size"]),
                size=0.5 * job["pixel_size"], symbol="ring", color="yellow",
            )
            added.append(put_layer(self.viewer, "points", data, kwargs))
        return added


class _Cancelled(Exception):
    """Raised inside the network when the user cancels in the middle of a batch."""


def _cancel_hooks(net, event: threading.Event | None) -> list:
    """Forward pre-hooks on every module of ``net`` that abort the batch as
    soon as ``event`` is set, so a cancel never waits for a whole batch."""
    if event is None or not hasattr(net, "modules"):
        return []

    def check(_module, _inputs):
        if event.is_set():
            raise _Cancelled()

    return [m.register_forward_pre_hook(check) for m in net.modules()]


def _reconstruct_job(data, spec, device, *, pixel_size, batch_size, start, stop, keep_frames,
                     localize, threshold, cancel_event=None):
    """Generator run in the worker thread: load the model, then reconstruct.

    ``threshold`` None: the model's calibrated localizer
    (`napari_dsir.localize.params_for`). Returns the `Result` (its
    ``info["localize"]`` holds the localizer used), or None when cancelled.
    Any failure becomes a `DSIRError` (superqt swallows RuntimeError from a
    generator worker, so torch errors must not escape as such).
    """
    from ..localize import params_for
    from ..model import resolve_device
    from ..reconstruct import Progress, iter_reconstruct

    hooks: list = []
    try:
        yield Progress(0, stop - start, batch_size or 0, "loading the model")
        dev = resolve_device(device)
        model = load_model(spec, dev)
        params = params_for(model, threshold=threshold) if localize else None
        hooks = _cancel_hooks(getattr(model, "net", None), cancel_event)
        result = yield from iter_reconstruct(
            data, model, pixel_size=pixel_size, batch_size=batch_size, start=start, stop=stop,
            keep_frames=keep_frames, localize=params,
        )
        if params is not None:
            result.info["localize"] = params.to_dict()
        return result
    except _Cancelled:
        return None
    except DSIRError:
        raise
    except MemoryError as e:
        raise DSIRError("out of memory: use a smaller frame range or fewer outputs") from e
    except Exception as e:
        raise DSIRError(f"reconstruction failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
    finally:
        for h in hooks:
            h.remove()


# --------------------------------------------------------------------------- ground truth

SYMBOLS = ("ring", "disc", "cross", "x", "square", "diamond", "triangle_up", "star")
COLOURS = ("cyan", "magenta", "yellow", "lime", "red", "orange", "white", "dodgerblue")
TP_COLOUR, FP_COLOUR, FN_COLOUR = "lime", "red", "magenta"


def _points_to_nm(points, ref) -> np.ndarray:
    """Data of ``points`` (frame, y, x) expressed in the data coordinates of
    ``ref`` (a points layer in nm), through world coordinates."""
    d = np.asarray(points.data, dtype=float)
    if len(d) == 0:
        return np.zeros((0, 3))
    world = d * np.asarray(points.scale) + np.asarray(points.translate)
    if world.shape[1] == 2:
        world = np.column_stack([np.zeros(len(world)), world])
    rs, rt = np.asarray(ref.scale, float), np.asarray(ref.translate, float)
    if len(rs) == 2:
        rs, rt = np.r_[1.0, rs], np.r_[0.0, rt]
    return (world - rt) / rs


def _subset(locs: Localizations, keep: np.ndarray) -> Localizations:
    inten = None if locs.intensity is None else np.asarray(locs.intensity)[keep]
    return Localizations(np.asarray(locs.frame)[keep], np.asarray(locs.x)[keep],
                         np.asarray(locs.y)[keep], inten)


def _as_locs(arr) -> Localizations:
    return Localizations(np.rint(arr[:, 0]).astype(int), arr[:, 2], arr[:, 1])


class GroundTruthWidget(QWidget):
    """Overlay ground-truth positions and compare localizations (Plugins > DSIR Ground Truth)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.metrics = None

        load = QGroupBox("Ground truth", self)
        form = QFormLayout(load)
        self.image_combo = LayerCombo(self.viewer, Image, load)
        self.image_combo.setToolTip("The image the positions belong to (gives pixel size and placement)")
        form.addRow("Image", self.image_combo)
        self.path_edit, _, row = _browse_row(
            self, "Choose a positions file", "Positions (*.csv *.txt *.tsv);;All files (*)"
        )
        self.path_edit.setPlaceholderText("ThunderSTORM / EPFL / frame,x,y CSV")
        form.addRow("Positions", row)
        self.symbol_combo = QComboBox(load)
        self.symbol_combo.addItems(SYMBOLS)
        form.addRow("Symbol", self.symbol_combo)
        self.size_spin = QDoubleSpinBox(load)
        self.size_spin.setRange(1.0, 100000.0)
        self.size_spin.setValue(80.0)
        self.size_spin.setSuffix(" nm")
        form.addRow("Size", self.size_spin)
        self.colour_combo = QComboBox(load)
        self.colour_combo.addItems(COLOURS)
        form.addRow("Colour", self.colour_combo)
        self.load_btn = QPushButton("Load ground truth", load)
        self.load_btn.clicked.connect(self.load)
        form.addRow(self.load_btn)

        comp = QGroupBox("Compare", self)
        cform = QFormLayout(comp)
        self.locs_combo = LayerCombo(self.viewer, Points, comp)
        self.locs_combo.setToolTip("Localizations to evaluate, e.g. '<image> DSIR localizations'")
        cform.addRow("Localizations", self.locs_combo)
        self.gt_combo = LayerCombo(self.viewer, Points, comp)
        cform.addRow("Ground truth", self.gt_combo)
        self.radius_spin = QDoubleSpinBox(comp)
        self.radius_spin.setRange(1.0, 10000.0)
        self.radius_spin.setValue(250.0)
        self.radius_spin.setSuffix(" nm")
        self.radius_spin.setToolTip("Matching radius (one-to-one per frame, Hungarian)")
        cform.addRow("Radius", self.radius_spin)
        self.compare_btn = QPushButton("Compare", comp)
        self.compare_btn.clicked.connect(self.compare)
        cform.addRow(self.compare_btn)
        self.result_label = QLabel("", comp)
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        cform.addRow(self.result_label)

        for w in (self.symbol_combo, self.colour_combo):
            w.currentIndexChanged.connect(self._restyle)
        self.size_spin.valueChanged.connect(self._restyle)
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)

        lay = QVBoxLayout(self)
        lay.addWidget(load)
        lay.addWidget(comp)
        lay.addStretch(1)
        self._on_image_changed()

    def _on_image_changed(self, *_):
        layer = self.image_combo.layer()
        if layer is not None:
            self.size_spin.blockSignals(True)
            self.size_spin.setValue(0.8 * layer_pixel_size(layer))
            self.size_spin.blockSignals(False)

    def _style(self) -> dict:
        symbol = self.symbol_combo.currentText()
        colour = self.colour_combo.currentText()
        return {"symbol": symbol, "color": colour, "size": float(self.size_spin.value())}

    def _restyle(self, *_):
        """Apply symbol/size/colour to the ground-truth layer in the Compare box."""
        layer = self.gt_combo.layer()
        if layer is None or (layer.metadata or {}).get("kind") != "ground_truth":
            return
        st = self._style()
        layer.symbol = "disc" if st["symbol"] == "ring" else st["symbol"]
        if len(layer.data):
            layer.size = st["size"]
            layer.border_color = st["color"]
            layer.face_color = "transparent" if st["symbol"] == "ring" else st["color"]
        layer.current_size = st["size"]

    def load(self, path: str | None = None):
        """Add the positions file as a points layer over the chosen image."""
        from .._reader import points_layer_data

        try:
            image = self.image_combo.layer()
            if image is None:
                raise DSIRError("no image layer: open the stack the positions belong to first")
            path = str(path or self.path_edit.text()).strip()
            if not path:
                raise DSIRError("choose a positions file")
            if image.rgb:
                raise DSIRError(f"'{image.name}' is an RGB image; choose the camera stack")
            geo = layer_geometry(image)
            name = Path(path).name
            try:
                locs = read_localizations(path)
            except DSIRError as e:
                if "in pixels" not in str(e):
                    raise
                locs = read_localizations(path, pixel_size=geo.pixel_size)
                show_warning(
                    f"DSIR Ground Truth: {name} gives positions in pixels; converted with "
                    f"the pixel size of '{image.name}', {geo.pixel_size:g} nm"
                )
            ndim = 3 if image.ndim == 3 else 2
            if ndim == 3 and len(locs):
                n = int(image.data.shape[0])
                outside = locs.frame >= n  # frames < 1 are refused by the parser
                if outside.any():
                    k = int(outside.sum())
                    if k == len(locs):
                        raise DSIRError(
                            f"{name}: all {k} rows lie outside frames 1..{n} of '{image.name}'; "
                            "is it the right file?"
                        )
                    locs = _subset(locs, ~outside)
                    show_warning(
                        f"DSIR Ground Truth: {k} of {k + len(locs)} rows of {name} lie outside "
                        f"frames 1..{n} of '{image.name}' and were left out"
                    )
            st = self._style()
            data, kwargs, _ = points_layer_data(
                locs, f"{image.name} ground truth", geometry=geo, ndim=ndim,
                metadata={"source": str(path), "kind": "ground_truth", "pixel_size": geo.pixel_size},
                size=st["size"], symbol=st["symbol"], color=st["color"],
            )
            layer = put_layer(self.viewer, "points", data, kwargs)
        except (DSIRError, OSError) as e:
            show_error(f"DSIR Ground Truth: {e}")
            return None
        except Exception as e:  # never a traceback
            show_error(f"DSIR Ground Truth: {_message(e)}")
            return None
        self.gt_combo.refresh()
        self.gt_combo.setCurrentText(layer.name)
        self.path_edit.setText(path)
        return layer

    def compare(self):
        """Match the localizations to the ground truth, colour both, show metrics."""
        from ..evaluate import evaluate, match

        try:
            pred_layer, gt_layer = self.locs_combo.layer(), self.gt_combo.layer()
            if pred_layer is None or gt_layer is None:
                raise DSIRError("choose a localizations layer and a ground-truth layer")
            if pred_layer is gt_layer:
                raise DSIRError("the localizations and the ground truth are the same layer")
            gt_nm = _points_to_nm(gt_layer, gt_layer)
            pred_nm = _points_to_nm(pred_layer, gt_layer)
            gt, pred = _as_locs(gt_nm), _as_locs(pred_nm)
            radius = float(self.radius_spin.value())
            gi, pi, _ = match(gt, pred, radius)
            m = evaluate(gt, pred, radius)
        except DSIRError as e:
            show_error(f"DSIR Compare: {e}")
            return None
        except Exception as e:
            show_error(f"DSIR Compare: {_message(e)}")
            return None
        self.metrics = m
        pred_tp = np.zeros(len(pred), bool)
        pred_tp[pi] = True
        gt_tp = np.zeros(len(gt), bool)
        gt_tp[gi] = True
        _colour_points(pred_layer, np.where(pred_tp, "TP", "FP"), {"TP": TP_COLOUR, "FP": FP_COLOUR})
        _colour_points(gt_layer, np.where(gt_tp, "TP", "FN"), {"TP": TP_COLOUR, "FN": FN_COLOUR})
        rmse = "n/a" if math.isnan(m.rmse) else f"{m.rmse:.1f} nm"
        self.result_label.setText(
            f"<b>Jaccard</b> {m.jaccard:.3f} &nbsp; <b>recall</b> {m.recall:.3f} &nbsp; "
            f"<b>precision</b> {m.precision:.3f} &nbsp; <b>RMSE</b> {rmse}<br>"
            f"TP {m.tp} (<span style='color:{TP_COLOUR}'>green</span>), "
            f"FP {m.fp} (<span style='color:{FP_COLOUR}'>red</span>), "
            f"FN {m.fn} (<span style='color:{FN_COLOUR}'>magenta</span>) within {m.radius:g} nm"
        )
        return m


def _colour_points(layer, labels: np.ndarray, colours: dict) -> None:
    if len(layer.data) == 0:
        return
    from napari.utils.colormaps.standardize_color import transform_color

    rgba = np.array([transform_color(colours[k])[0] for k in labels])
    if len(layer.features) == len(labels) and len(layer.features.columns):
        feats = layer.features.copy()
        feats["match"] = labels
        layer.features = feats
    else:
        layer.features = {"match": labels}
    layer.border_color = rgba
    face = np.asarray(layer.face_color)
    if face.size and np.all(face[:, 3] == 0):
        return  # outlined style: keep the face transparent
    layer.face_color = rgba

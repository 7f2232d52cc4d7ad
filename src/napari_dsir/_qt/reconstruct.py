"""Plugins > DSIR Reconstruct: fields -> `RunRequest` -> worker over `iter_run` -> layers.

The widget only translates: its fields become one `napari_dsir.run.RunRequest`
(the pixel size resolved by `run.resolve_pixel_size`, never here), a napari
``thread_worker`` drives `run.iter_run` with a progress bar and a Cancel
button, and the `Result` becomes layers from `napari_dsir.layers.result_layers`.
``synchronous = True`` (tests) drives the same generator in the calling thread.
"""

from __future__ import annotations

import threading

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from napari.layers import Image
from napari.utils import progress
from psygnal import Signal
from qtpy.QtCore import Qt

from ..errors import Cancelled, DSIRError
from ..layers import Geometry, result_layers
from ..run import RunRequest, iter_run
from .camera import CameraFields
from .common import (
    OUTPUT_KINDS,
    cuda_available,
    layer_choices,
    layer_id,
    layer_units,
    message_of,
    narrow,
    notify,
    pixel_note,
    put_layers,
    scroll_in_dock,
    show_run_frames,
    stated_pixel_size,
    when_closed,
    wrap,
)
from .done_status import done_status
from .models import MODEL_DEFAULT, MODELS, SHIPPED, model_spec, model_threshold

WIDGET = "DSIR Reconstruct"
DEVICES = (("Auto", "auto"), ("CPU", "cpu"), ("GPU (CUDA)", "cuda"))
NO_CUDA_TIP = "No CUDA GPU is available to PyTorch on this machine (torch.cuda.is_available() is False)."


def _work(req: RunRequest, cancel: threading.Event):
    """`iter_run` with every failure as a `DSIRError` (a RuntimeError out of a
    generator worker would be swallowed by superqt) or `Cancelled`."""
    try:
        return (yield from iter_run(req, cancel))
    except (DSIRError, Cancelled):
        raise
    except MemoryError as e:
        raise DSIRError("out of memory: choose fewer frames or fewer outputs") from e
    except Exception as e:
        raise DSIRError(f"reconstruction failed ({message_of(e)})") from e


class ReconstructWidget(Container):
    """Run DSIR on an image layer; outputs overlay it exactly."""

    finished = Signal()  # a run ended (done, failed or cancelled)

    def __init__(self, napari_viewer):
        self.viewer = napari_viewer
        self.synchronous = False
        self.worker = None
        self.last_result = None
        self._cancel = threading.Event()
        self._pbar = None
        self._job: dict = {}
        self._frames_for = None  # the layer whose frames start and stop count (`layer_id`)
        self.image = ComboBox(label="Image", choices=lambda _w: layer_choices(self.viewer, Image, exclude=OUTPUT_KINDS),
                              tooltip="The camera frames (frame, y, x) to reconstruct")
        self.pixel_size = FloatSpinBox(label="Pixel size (nm)", min=0.0, max=1e5, step=1.0, value=0.0,
                                       tooltip="Camera pixel size; 0: the layer's own (its nm scale, else metadata)")
        self.pixel_size.native.setSpecialValueText("from the layer")
        self.pixel_size.native.setDecimals(3)  # 106.667 nm kept (Qt's 2: 106.67)
        self.pixel_note = Label(value="")
        self.model = ComboBox(label="Model", choices=MODELS, value=MODEL_DEFAULT,
                              tooltip="Default: shipped with napari-dsir. Original DSIR weights: the 2018 "
                                      "autoencoder_model.pt. Checkpoint: a model saved by `dsir train`.")
        self.model_file = FileEdit(label="Model file", mode="r", filter="PyTorch model (*.pt *.pth)")
        self.device = ComboBox(label="Device", choices=DEVICES, value="auto")
        self.start = SpinBox(label="First frame", min=0, max=0, tooltip="0-based")
        self.stop = SpinBox(label="Stop frame", min=0, max=0, tooltip="0-based, excluded")
        self.batch = SpinBox(label="Batch (0 = auto)", min=0, max=4096, value=0,
                             tooltip="Frames per batch; 0, auto: on the CPU 8 for the fast network (fewer for "
                                     "large frames) and 1 for the DSIR auto-encoder, 32 on a GPU (halved on "
                                     "out-of-memory)")
        self.out_sum = CheckBox(text="Sum image", value=True)
        self.out_frames = CheckBox(text="Per-frame stack", value=False)
        self.out_locs = CheckBox(text="Localizations (points)", value=False)
        self.hot_pixels = CheckBox(text="Repair camera defects", value=True,
                                   tooltip="Pixels bright in most frames and not their neighbours (a camera's hot "
                                           "pixels), and those with the same value in every frame (dead, padding), "
                                           "are found on the movie and replaced by their neighbours' median; "
                                           "columns and rows that read above or below their neighbours in every "
                                           "frame (fixed-pattern noise) have their offsets subtracted")
        self.use_model_threshold = CheckBox(text="use the model's threshold", value=True,
                                            tooltip="The threshold calibrated for the model (in its checkpoint)")
        self.threshold = FloatSpinBox(label="Threshold", min=0.0, max=1e6, step=0.0001, value=0.0,
                                      tooltip="Peak threshold for localizations (network output units)")
        self.threshold.native.setDecimals(6)
        self.threshold.native.setSpecialValueText("none")  # 0: no model threshold to show (none is usable)
        self.threshold.native.setMinimumWidth(self.threshold.native.fontMetrics().horizontalAdvance("0.000000") + 48)
        self.camera = CameraFields()
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.status = Label(value="")
        narrow(self.image, self.model, self.camera.preset)
        super().__init__(widgets=[
            self.image, self.pixel_size, self.pixel_note, self.model, self.model_file, self.device,
            self.start, self.stop, self.batch, self.hot_pixels, self.out_sum, self.out_frames, self.out_locs,
            self.use_model_threshold, self.threshold, self.camera,
            Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
            self.status,
        ])
        wrap(self.status, self.pixel_note)
        scroll_in_dock(self)
        when_closed(self, lambda: self._gone(" (its dock was closed)"))
        self._disable_gpu_without_cuda()
        self.image.changed.connect(self._on_image)
        self.start.changed.connect(self._show_camera)
        self.pixel_size.changed.connect(self._show_pixel_size)
        self.model.changed.connect(self._on_model)
        self.model_file.changed.connect(self._on_model)
        self.use_model_threshold.changed.connect(self._on_model)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.reset_choices()
        self._on_image()
        self._on_model()

    # -- fields

    def _disable_gpu_without_cuda(self) -> None:
        if cuda_available():
            self.device.tooltip = "Auto uses the CUDA GPU when there is one"
            return
        combo = self.device.native
        combo.model().item(2).setEnabled(False)
        combo.setItemData(2, NO_CUDA_TIP, Qt.ItemDataRole.ToolTipRole)
        self.device.tooltip = "GPU disabled: " + NO_CUDA_TIP

    def _on_image(self, *_):
        layer = self.image.value
        if layer is None:
            self.pixel_note.value = ""
            self.camera.show_stated(None, "")
            return
        n = int(layer.data.shape[0]) if layer.ndim == 3 and not layer.rgb else 1
        self.start.max, self.stop.max = max(0, n - 1), n
        if self._frames_for != layer_id(layer):  # another layer (not this one renamed): all its frames
            self.start.value, self.stop.value = 0, n
            self._frames_for = layer_id(layer)
        self._show_camera()
        self._show_pixel_size()

    def _show_camera(self, *_):
        if (layer := self.image.value) is not None:
            self.camera.show_layer(layer, int(self.start.value))

    def _show_pixel_size(self, *_):
        if (layer := self.image.value) is not None:
            self.pixel_note.value = pixel_note(layer, float(self.pixel_size.value))

    def _on_model(self, *_):
        self.model_file.enabled = self.model.value not in SHIPPED
        own = self.use_model_threshold.value
        self.threshold.enabled = not own
        if own:
            try:
                thr = model_threshold(model_spec(self.model.value, self.model_file.value))
            except DSIRError:
                thr = None
            # a model file not chosen or not readable, or no calibrated threshold: "none", not the last model's
            self.threshold.value = thr if thr is not None else 0.0
            self.threshold.tooltip = ("the model's calibrated threshold" if thr is not None
                                      else "no calibrated threshold to show (a model file not readable, or one "
                                           "with no calibrated localizer: an interrupted training's): untick and "
                                           "set one")

    def _model_choice(self) -> tuple:
        return (self.model.value, str(self.model_file.value) if self.model.value not in SHIPPED else None)

    def request(self) -> RunRequest:
        """The `RunRequest` the fields describe; `DSIRError` when they are not usable."""
        layer = self.image.value
        if layer is None:
            raise DSIRError("no image layer selected: open a stack first (File > Open, or drop a TIFF)")
        if layer.rgb:
            raise DSIRError(f"'{layer.name}' is an RGB image; DSIR needs single-channel camera frames")
        if layer.multiscale:
            raise DSIRError(f"'{layer.name}' is a multiscale image; DSIR needs the camera frames")
        if layer.ndim not in (2, 3):
            raise DSIRError(f"'{layer.name}' has {layer.ndim} dimensions; expected (frame, y, x) or (y, x)")
        if not (self.out_sum.value or self.out_frames.value or self.out_locs.value):
            raise DSIRError("choose at least one output")
        if self.out_locs.value and not self.use_model_threshold.value and not self.threshold.value > 0:
            raise DSIRError("set a threshold above 0 (at 0 every peak of the network's output is a localization)")
        if self.device.value == "cuda" and not cuda_available():
            raise DSIRError("GPU (CUDA) was chosen but PyTorch sees no CUDA GPU on this machine; choose Auto or CPU")
        n = int(layer.data.shape[0]) if layer.ndim == 3 else 1
        start, stop = int(self.start.value), min(int(self.stop.value), n)
        if not 0 <= start < stop:
            raise DSIRError(f"frames {start} to {stop} select none of the {n} frames of '{layer.name}'")
        return RunRequest(
            source=layer.data, pixel_size=self.pixel_size.value or None,
            source_pixel_size=stated_pixel_size(layer), source_camera=(layer.metadata or {}).get("camera"),
            model=model_spec(self.model.value, self.model_file.value), device=self.device.value,
            start=start, stop=stop, batch_size=int(self.batch.value) or None,
            keep_frames=bool(self.out_frames.value), localize=bool(self.out_locs.value),
            threshold=None if self.use_model_threshold.value else float(self.threshold.value),
            refine=bool(self.camera.refine.value), camera=self.camera.camera(), name=layer.name,
            hot_pixels=bool(self.hot_pixels.value),
        )

    # -- running

    def run(self, *_):
        """Start a run of the chosen layer; the worker (None when refused or synchronous)."""
        if self.worker is not None:
            notify("warning", WIDGET, "already running")
            return None
        try:
            req = self.request()
        except DSIRError as e:
            notify("error", WIDGET, str(e))
            self.status.value = f"not started: {e}"  # not the last run's "done"
            return None
        layer = self.image.value
        self._job = {"name": layer.name, "ndim": layer.ndim, "scale": tuple(layer.scale),
                     "translate": tuple(layer.translate), "units": layer_units(layer) or None,
                     "sum": bool(self.out_sum.value),
                     "frames": req.keep_frames, "locs": bool(req.localize), "cancelled": False,
                     "model": self._model_choice()}
        self._cancel = threading.Event()
        self._pbar = progress(total=req.stop - req.start, desc=f"DSIR {layer.name}")
        self.run_button.enabled, self.cancel_button.enabled = False, True
        self.status.value = "loading the model…"
        if self.synchronous:
            self._drive(_work(req, self._cancel))
            return None
        from napari.qt.threading import create_worker

        worker = create_worker(_work, req, self._cancel, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_result)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()
        return worker

    def _drive(self, gen) -> None:
        """The worker's loop in this thread, with the same handlers."""
        try:
            while True:
                self._on_progress(next(gen))
        except StopIteration as stop:
            self._on_result(stop.value)
        except Exception as e:
            self._on_error(e)
        finally:
            self._on_finished()

    def cancel(self, *_):
        """Stop the run: between batches, and inside a batch between network layers."""
        if self.worker is not None:
            self._job["cancelled"] = True
            self._cancel.set()
            self.status.value = "cancelling…"

    def _on_progress(self, p):
        try:
            self._show_progress(p)
        except RuntimeError:  # the Qt side was deleted with the viewer (closed mid-run): stop quietly
            self._gone()

    def _on_result(self, result):
        try:
            self._show_result(result)
        except RuntimeError:
            self._gone()

    def _gone(self, why: str = "") -> None:
        """The viewer, or the dock (its 'x': ``why`` says so), was closed during a run: cancel it, add nothing."""
        if not self._job.get("cancelled"):
            self._job.update(cancelled=True, why=why)
        if self._cancel is not None:
            self._cancel.set()

    def _show_progress(self, p):
        if p.kind == "warning":
            notify("warning", WIDGET, p.message)
        elif p.kind == "start":
            self.status.value = f"{p.message}…"
        elif not self._job.get("cancelled") and self._pbar is not None:
            batch = f" (batch {p.batch_size})" if p.batch_size else ""
            self.status.value = f"{p.done} / {p.total} frames{batch}"
            if p.done > self._pbar.n:  # last: napari's progress may process events (and end the run)
                self._pbar.update(p.done - self._pbar.n)

    def _show_result(self, result):
        if self._job.get("cancelled"):
            return
        job = self._job
        self.last_result = result
        info = result.info
        loc = info.get("localize")
        geometry = Geometry.from_layer(job["scale"], job["translate"], info["camera_pixel_size"])
        try:
            added = put_layers(self.viewer, result_layers(
                result, geometry, job["name"], ndim=job["ndim"], sum_image=job["sum"], units=job["units"],
                frames=job["frames"], localizations=job["locs"]))
        except Exception as e:  # never a traceback in the viewer
            notify("error", WIDGET, f"cannot show the result ({message_of(e)})")
            return
        show_run_frames(self.viewer, added)
        if loc and self.use_model_threshold.value and self._job.get("model") == self._model_choice():
            self.threshold.value = float(loc["threshold"])  # (another model chosen during the run: its own)
        self.status.value = done_status(result)

    def _on_error(self, exc):
        if isinstance(exc, Cancelled) or self._job.get("cancelled"):
            self._job["cancelled"] = True
            return
        notify("error", WIDGET, message_of(exc))
        self.status.value = f"failed: {message_of(exc)}"

    def _on_finished(self):
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        self.worker = None
        try:
            if self._job.get("cancelled"):
                self.status.value = f"cancelled{self._job.get('why', '')}; no layer added"
                notify("info", WIDGET, self.status.value)
            self.run_button.enabled, self.cancel_button.enabled = True, False
        except RuntimeError:  # the Qt side was deleted with the viewer
            pass
        self.finished.emit()

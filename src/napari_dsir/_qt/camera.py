"""The camera fields of DSIR Reconstruct (names as Picasso and ThunderSTORM use).

Unticked, a run with the fit takes the camera from the file's metadata,
else assumes the defaults and says so (a warning from
`napari_dsir.run.iter_run`); the greyed fields show which. Ticked (or a
preset chosen, which ticks it), the fields are the camera; a run without
the fit uses them too: an uneven illumination is taken out of the
network's input. A camera file (ours, Picasso's camera ``config.yaml``,
read against the image's Micro-Manager metadata, or a ThunderSTORM
protocol) fills the fields and ticks it.
"""

from __future__ import annotations

from pathlib import Path

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label

from ..camera import MICRO_MANAGER_CAMERA, PRESETS, Camera
from ..errors import DSIRError
from .common import message_of, wrap

#: the preset box's entry for settings typed in (or taken from the file)
CUSTOM = "custom"
#: decimals of the baseline, sensitivity, EM gain, QE and read noise fields
FIELD_DECIMALS = (3, 4, 3, 4, 3)


class CameraFields(Container):
    """Fit on/off and the camera settings the fit converts ADU to photons with."""

    def __init__(self):
        self.refine = CheckBox(text="Fit photons, background and precision (MLE)", value=True,
                               tooltip="Fit each localization on its raw frame (Poisson MLE with CRLB)")
        self.set_camera = CheckBox(text="Camera settings as set here", value=False,
                                   tooltip="Unticked: the file's camera metadata, else assumed defaults (a warning); "
                                           "without the fit, none. Given, an uneven illumination is taken out of "
                                           "the network's input")
        self.preset = ComboBox(label="Preset", choices=[CUSTOM, *PRESETS], value=CUSTOM,
                               tooltip="Fill the fields with a typical camera's settings (check your camera's "
                                       "test sheet); choosing one ticks 'Camera settings as set here'")
        self.camera_file = FileEdit(label="Camera file", mode="r", filter="Camera files (*.yaml *.yml *.txt *.json)",
                                    tooltip="A YAML camera file (baseline, sensitivity, em_gain, qe, read_noise) or "
                                            "Picasso's camera config.yaml (~/.picasso), whose camera and "
                                            "sensitivity the image's Micro-Manager metadata picks, or a "
                                            "ThunderSTORM protocol (-protocol.txt); fills the fields and ticks "
                                            "'Camera settings as set here'")
        self.baseline = FloatSpinBox(label="Baseline (ADU)", min=-1e9, max=1e9, value=100.0,
                                     tooltip="Counts with no light (offset, base level)")
        self.sensitivity = FloatSpinBox(label="Sensitivity (e-/ADU)", min=1e-4, max=1e6, step=0.01, value=1.0,
                                        tooltip="Photoelectrons per A/D count")
        self.em_gain = FloatSpinBox(label="EM gain", min=1e-3, max=1e5, value=1.0, tooltip="1 for sCMOS or CCD")
        self.qe = FloatSpinBox(label="QE", min=1e-4, max=1.0, step=0.01, value=1.0, tooltip="Quantum efficiency")
        self.read_noise = FloatSpinBox(label="Read noise (e-)", min=0.0, max=1e5, step=0.1, value=0.0,
                                       tooltip="Read noise, e- rms (0 when unknown)")
        self.note = Label(value="")
        self.fields = (self.baseline, self.sensitivity, self.em_gain, self.qe, self.read_noise)
        for w, decimals in zip(self.fields, FIELD_DECIMALS):  # a camera file's 0.0435 e-/ADU kept (Qt's 2: 0.04)
            w.native.setDecimals(decimals)
        super().__init__(widgets=[self.refine, self.set_camera, self.note, self.preset, self.camera_file,
                                  *self.fields], labels=True)
        wrap(self.note)
        self.margins = (0, 0, 0, 0)
        self._stated: tuple = (None, "")  # the image's stated camera (its metadata) and its name
        self._assumed: Camera | None = None  # the camera a run of that image assumes when none is stated
        self._filling = False  # the fields are being filled (from a preset or the file): not an edit
        self._file_error = ""  # why the camera file chosen could not be read
        self._from_file = False  # the fields hold the camera file's settings (not edited since)
        self._file_camera: Camera | None = None  # those settings as the file gives them (the fields round)
        self.refine.changed.connect(self._update)
        self.set_camera.changed.connect(self._update)
        self.preset.changed.connect(self._on_preset)
        self.camera_file.changed.connect(self._on_file)
        for w in self.fields:
            w.changed.connect(self._on_edit)
        self._update()

    def _fill(self, cam: Camera) -> str:
        """Fill the fields with ``cam``'s settings; "" or what a field could
        not hold (then none is filled)."""
        values = (cam.baseline, cam.sensitivity, cam.em_gain, cam.qe, cam.read_noise)
        for w, v in zip(self.fields, values):  # all or none: never a mix of two cameras
            if not w.min <= v <= w.max:
                return f"{w.label} {v:g} is beyond this field's {w.min:g} to {w.max:g}"
        self._filling = True
        try:
            for w, v in zip(self.fields, values):
                w.value = v
            return ""
        finally:
            self._filling = False

    def _on_preset(self, *_):
        if self.preset.value == CUSTOM:
            return
        self._fill(PRESETS[self.preset.value])
        self._from_file = False
        self.set_camera.value = True

    def _on_file(self, *_) -> None:
        """Fill the fields from the camera file chosen, read against the image's metadata."""
        path = self.camera_file.value
        self._file_error = ""
        self._from_file = False
        if path and not Path(path).exists():
            self._file_error = f"camera file {path}: no such file"
            self.set_camera.value = False
        elif path and Path(path).is_file():  # (an empty box reads as a folder)
            try:
                cam = Camera.from_yaml(path, self._stated[0])
            except Exception as e:  # not this image's camera, or not a camera file: the fields no longer hold
                # (a signal handler: never a traceback); a parser's message, its first line
                self._file_error = message_of(e).strip().splitlines()[0]
                self.set_camera.value = False
            else:
                beyond = self._fill(cam)
                self.preset.value = CUSTOM
                if beyond:  # not all of the file's settings are in the fields
                    self._file_error = f"camera file {path}: {beyond}"
                    self.set_camera.value = False
                else:
                    self._from_file, self._file_camera = True, cam
                    self.set_camera.value = True
        self._update()

    def _on_edit(self, *_):
        if not self._filling:  # typed in: no longer the preset's, nor the file's
            self.preset.value = CUSTOM
            self._from_file = False

    def show_layer(self, layer, start: int = 0) -> None:
        """`show_stated` for an image layer: its metadata's camera, or the one
        a run from frame ``start`` assumes (`run.assumed_camera_of`: 4 frames
        read, only where the layer states no camera)."""
        from ..run import assumed_camera_of

        stated = (layer.metadata or {}).get("camera")
        assumed = None
        if not stated:
            try:
                assumed = assumed_camera_of(layer.data, start)
            except Exception:  # (a signal handler: never a traceback) not frames a run takes: the run says why
                assumed = None
        self.show_stated(stated, layer.name, assumed)

    def show_stated(self, stated, name: str, assumed: Camera | None = None) -> None:
        """The camera settings the image ``name`` states (its metadata's
        ``camera``): unticked, the fields show them (what a run then uses),
        or the camera a run would assume (``assumed``, `run.assumed_camera_of`;
        None: the defaults), and the note says which. A
        camera file whose settings the fields hold is read again when the
        image states another camera (a Picasso camera file picks its
        settings by the image's metadata), as is one that did not fit the
        last image's; settings typed or a preset stay."""
        again = (self._from_file or bool(self._file_error)) and stated != self._stated[0]
        self._stated, self._assumed = (stated, name), assumed
        if again:
            self._on_file()
        else:
            self._update()

    def _update(self, *_):
        for w in self.fields:
            w.enabled = self.set_camera.value
        self.note.value = self._note()
        self.note.visible = bool(self.note.value)

    def _note(self) -> str:
        """What the greyed fields show (filled here), or "" when they are the
        camera; after a camera file that could not be used, its error first."""
        note = self._stated_note()
        return "\n".join(m for m in (self._file_error, note) if m)

    def _stated_note(self) -> str:
        stated, name = self._stated
        if self.set_camera.value or not name or not self.refine.value:  # settings given, or no fits to use them
            return ""
        try:
            cam = Camera.from_metadata(stated)
        except DSIRError as e:
            return f"'{name}' states impossible camera settings ({e}): set them here"
        assumed = self._assumed or Camera()
        beyond = self._fill(cam or assumed)
        self.preset.value = CUSTOM
        self._from_file, self._file_camera = False, None  # the fields no longer hold the camera file's
        if beyond:
            return f"'{name}' states its camera: {cam.describe()} ({beyond}: the fields show the last settings)"
        if cam is not None:
            return f"'{name}' states its camera: {cam.describe()}"
        device = (stated or {}).get(MICRO_MANAGER_CAMERA)  # named, but no settings
        default = Camera()
        why = ("" if assumed.baseline == default.baseline else
               f" (the darkest pixels read below {default.baseline:g} ADU: no camera offset in these data)"
               if assumed.baseline == 0 else " (the data go below 0 ADU: the darkest 1 % of the pixels as no light)")
        return (f"'{name}' states no camera settings" + (f" (camera '{device}'; a camera file can map it)"
                                                         if isinstance(device, str) else "")
                + (": defaults will be assumed" if not why else f": baseline {assumed.baseline:g} ADU{why} and "
                   "the other defaults will be assumed"))

    def camera(self) -> dict | None:
        """The camera for `RunRequest.camera`: the settings, or None (from the
        file, else defaults); a camera file's as it gives them until edited
        (the fields show them rounded: 0.123456 e-/ADU as 0.1235)."""
        if not self.set_camera.value:
            return None
        if self._from_file and self._file_camera is not None:
            return self._file_camera.to_dict()
        return {"baseline": self.baseline.value, "sensitivity": self.sensitivity.value,
                "em_gain": self.em_gain.value, "qe": self.qe.value, "read_noise": self.read_noise.value}

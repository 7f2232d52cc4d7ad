"""The camera fields of DSIR Reconstruct (names as Picasso and ThunderSTORM use).

Unticked, a run with the fit takes the camera from the file's metadata,
else assumes the defaults and says so (a warning from
`napari_dsir.run.iter_run`). Ticked, a run without the fit uses the
settings too: an uneven illumination is taken out of the network's input.
"""

from __future__ import annotations

from magicgui.widgets import CheckBox, Container, FloatSpinBox, Label

from ..camera import Camera
from ..errors import DSIRError


class CameraFields(Container):
    """Fit on/off and the camera settings the fit converts ADU to photons with."""

    def __init__(self):
        self.refine = CheckBox(text="Fit photons, background and precision (MLE)", value=True,
                               tooltip="Fit each localization on its raw frame (Poisson MLE with CRLB)")
        self.set_camera = CheckBox(text="Camera settings as set here", value=False,
                                   tooltip="Unticked: the file's camera metadata, else assumed defaults (a warning); "
                                           "without the fit, none. Given, an uneven illumination is taken out of "
                                           "the network's input")
        self.baseline = FloatSpinBox(label="Baseline (ADU)", min=0.0, max=1e5, value=100.0,
                                     tooltip="Counts with no light (offset, base level)")
        self.sensitivity = FloatSpinBox(label="Sensitivity (e-/ADU)", min=0.0001, max=1e4, step=0.01, value=1.0,
                                        tooltip="Photoelectrons per A/D count")
        self.em_gain = FloatSpinBox(label="EM gain", min=1.0, max=1e4, value=1.0, tooltip="1 for sCMOS or CCD")
        self.qe = FloatSpinBox(label="QE", min=0.01, max=1.0, step=0.01, value=1.0, tooltip="Quantum efficiency")
        self.note = Label(value="")
        super().__init__(widgets=[self.refine, self.set_camera, self.note, self.baseline, self.sensitivity,
                                  self.em_gain, self.qe], labels=True)
        self.note.native.setWordWrap(True)
        self.margins = (0, 0, 0, 0)
        self._stated: tuple = (None, "")  # the image's stated camera (its metadata) and its name
        self.refine.changed.connect(self._update)
        self.set_camera.changed.connect(self._update)
        self._update()

    def show_stated(self, stated, name: str) -> None:
        """The camera settings the image ``name`` states (its metadata's
        ``camera``): unticked, the fields show them (what a run then uses),
        or the defaults a run would assume, and the note says which."""
        self._stated = (stated, name)
        self._update()

    def _update(self, *_):
        fields = (self.baseline, self.sensitivity, self.em_gain, self.qe)
        for w in fields:
            w.enabled = self.set_camera.value
        stated, name = self._stated
        if self.set_camera.value or not name or not self.refine.value:  # settings given, or no fits to use them
            self.note.value = ""
            return
        try:
            cam = Camera.from_metadata(stated)
        except DSIRError as e:
            self.note.value = f"'{name}' states impossible camera settings ({e}): set them here"
            return
        shown = cam or Camera()
        for w, v in zip(fields, (shown.baseline, shown.sensitivity, shown.em_gain, shown.qe)):
            try:
                w.value = v
            except ValueError:  # beyond the field's range: the note still says it
                pass
        self.note.value = (f"'{name}' states its camera: {shown.describe()}" if cam is not None
                           else f"'{name}' states no camera settings: defaults will be assumed")

    def camera(self) -> dict | None:
        """The camera for `RunRequest.camera`: the settings, or None (from the file, else defaults)."""
        if not self.set_camera.value:
            return None
        return {"baseline": self.baseline.value, "sensitivity": self.sensitivity.value,
                "em_gain": self.em_gain.value, "qe": self.qe.value}

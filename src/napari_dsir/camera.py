"""Camera model: ADU -> photoelectrons -> photons (README, "Coordinates and files").

The names are those Picasso and ThunderSTORM users know:

===========  ============  =========================================================
field        unit          meaning
===========  ============  =========================================================
baseline     ADU           counts the camera adds with no light ("offset",
                           "base level")
sensitivity  e-/ADU        photoelectrons per A/D count (ThunderSTORM), "conversion"
em_gain      x             electron-multiplication gain (1 for sCMOS / CCD)
qe           (0, 1]        quantum efficiency (1 when unknown: photons =
                           photoelectrons)
read_noise   e- rms        read noise at the sensor output (0 when unknown); an
                           EMCCD's is divided by ``em_gain`` when referred to the
                           input
===========  ============  =========================================================

    photoelectrons = (ADU - baseline) * sensitivity / em_gain
    photons        = photoelectrons / qe

An EMCCD (``em_gain > 1``) doubles the variance of the amplified signal
(excess noise factor 2, `Camera.excess_noise`); fits and their Cramer-Rao
bounds account for it.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, fields

import numpy as np

from .errors import DSIRError, StatedCameraError

#: accepted key spellings (after lower-casing; spaces, dashes and dots become
#: underscores, a trailing unit in brackets is dropped) -> field name
ALIASES: dict[str, str] = {
    "baseline": "baseline",
    "offset": "baseline",
    "base_level": "baseline",
    "baselevel": "baseline",
    "camera_offset": "baseline",
    "sensitivity": "sensitivity",
    "photoelectrons_per_a/d_count": "sensitivity",
    "photoelectrons_per_ad_count": "sensitivity",
    "photoelectrons_per_adu": "sensitivity",
    "conversion": "sensitivity",
    "conversion_factor": "sensitivity",
    "e_per_adu": "sensitivity",
    "electrons_per_adu": "sensitivity",
    "em_gain": "em_gain",
    "emgain": "em_gain",
    "gain": "em_gain",
    "amplification_gain": "em_gain",
    "amplificationgain": "em_gain",
    "qe": "qe",
    "quantum_efficiency": "qe",
    "read_noise": "read_noise",
    "readout_noise": "read_noise",
    "readnoise": "read_noise",
}


#: Micro-Manager's image metadata: the key naming the camera device, whose
#: properties are ``<camera>-<property>``
MICRO_MANAGER_CAMERA = "Camera"
#: camera properties (Micro-Manager's ``<camera>-<property>``) that state a
#: setting: the conversion factor the Hamamatsu DCAM API reports
#: (photoelectrons per count, and the count with no light)
MICRO_MANAGER_PROPERTIES: dict[str, str] = {
    "CONVERSION FACTOR COEFF": "sensitivity",
    "CONVERSION FACTOR OFFSET": "baseline",
}


def micro_manager_entries(meta) -> dict:
    """The settings (field -> value as written) that the camera properties of
    Micro-Manager's image metadata ``meta`` state (`MICRO_MANAGER_PROPERTIES`
    of the device its ``Camera`` names); {} when none."""
    if not isinstance(meta, dict) or not isinstance(meta.get(MICRO_MANAGER_CAMERA), str):
        return {}
    camera = meta[MICRO_MANAGER_CAMERA]
    return {field: meta[f"{camera}-{prop}"] for prop, field in MICRO_MANAGER_PROPERTIES.items()
            if f"{camera}-{prop}" in meta}


def setting_number(value, what: str) -> float:
    """A camera setting ``value`` as a finite float, else a `DSIRError`
    naming it (``what``); a bool is not a number here."""
    if isinstance(value, bool):
        raise DSIRError(f"{what}: expected a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DSIRError(f"{what}: expected a number, got {value!r}") from None
    if not math.isfinite(v):
        raise DSIRError(f"{what} must be a finite number, got {v}")
    return v


def _norm_key(key) -> str:
    k = str(key).strip().lower()
    k = re.sub(r"\s*[\[(][^\])]*[\])]\s*$", "", k)  # "offset [ADU]" -> "offset"
    return re.sub(r"[\s\-.]+", "_", k)


def camera_entries(meta, skip: tuple[str, ...] = ()) -> dict:
    """The entries of a flat metadata dict (key -> number or text) that name a
    camera setting (`ALIASES`; not those spelled as in ``skip``), as they
    are; the rest left out."""
    if not isinstance(meta, dict):
        return {}
    return {str(k): v for k, v in meta.items()
            if _norm_key(k) in ALIASES and _norm_key(k) not in skip
            and isinstance(v, (int, float, str)) and not isinstance(v, bool)}


#: camera files are a few lines of YAML; anything larger is not one
CAMERA_FILE_MAX_BYTES = 1 << 20


@dataclass
class Camera:
    """Camera settings: ``baseline`` (ADU), ``sensitivity`` (photoelectrons per
    ADU), ``em_gain`` (1 for sCMOS/CCD), ``qe`` (in (0, 1]), ``read_noise``
    (e- rms, 0 when unknown). Defaults: baseline 100 ADU, 1 e-/ADU."""

    baseline: float = 100.0
    sensitivity: float = 1.0
    em_gain: float = 1.0
    qe: float = 1.0
    read_noise: float = 0.0

    def validate(self) -> Camera:
        """Check the settings; raise `DSIRError` naming the bad one. Returns self."""
        for f in fields(self):
            setattr(self, f.name, setting_number(getattr(self, f.name), f"camera {f.name}"))
        if self.sensitivity <= 0:
            raise DSIRError(f"camera sensitivity must be > 0 photoelectrons per ADU, got {self.sensitivity}")
        if self.em_gain <= 0:
            raise DSIRError(f"camera EM gain must be > 0 (1 for sCMOS/CCD), got {self.em_gain}")
        if not 0 < self.qe <= 1:
            raise DSIRError(f"camera quantum efficiency must be in (0, 1], got {self.qe}")
        if self.read_noise < 0:
            raise DSIRError(f"camera read noise must be >= 0 e- rms, got {self.read_noise}")
        # a baseline may be negative: signed data whose offset was taken off and more
        return self

    def describe(self) -> str:
        """One line for logs and warnings: 'baseline 100 ADU, 1 e-/ADU, EM gain 1, QE 1, read noise 0 e-'."""
        return (
            f"baseline {self.baseline:g} ADU, {self.sensitivity:g} e-/ADU, EM gain {self.em_gain:g}, "
            f"QE {self.qe:g}, read noise {self.read_noise:g} e-"
        )

    # ---- derived quantities -------------------------------------------------
    @property
    def excess_noise(self) -> float:
        """Variance factor of the amplified signal: 2 for an EMCCD (em_gain > 1), else 1."""
        return 2.0 if self.em_gain > 1 else 1.0

    @property
    def photons_per_adu(self) -> float:
        """Photons per ADU above the baseline: sensitivity / em_gain / qe."""
        return self.sensitivity / self.em_gain / self.qe

    @property
    def read_variance_e(self) -> float:
        """Read-noise variance referred to the input, in photoelectrons^2:
        (read_noise / em_gain)^2."""
        return (self.read_noise / self.em_gain) ** 2

    def to_photons(self, frames_adu):
        """Frames (frame, y, x) in ADU -> photons, as numpy or torch (same kind
        as the input; float32 unless the input is float64)."""
        scale = self.photons_per_adu
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            torch = None
        if torch is not None and isinstance(frames_adu, torch.Tensor):
            t = frames_adu if frames_adu.dtype in (torch.float32, torch.float64) else frames_adu.float()
            return (t - self.baseline) * scale
        a = np.asarray(frames_adu)
        if a.dtype.kind not in "uif":
            raise DSIRError(f"frames must be numbers, got an array of {a.dtype}")
        a = a.astype(np.float64 if a.dtype == np.float64 else np.float32, copy=False)
        return (a - a.dtype.type(self.baseline)) * a.dtype.type(scale)

    def check_data(self, frames_adu) -> str | None:
        """Refuse a baseline above the data: when more than 99 % of the pixels
        (sampled, up to ~1e6) are below it, the baseline is almost surely wrong.
        Returns a warning when it is above the median pixel: most pixels then
        read less than no light, which even a dark background does not do;
        else None."""
        a = _pixel_sample(frames_adu)
        p99, median = (float(v) for v in np.percentile(a, [99, 50]))
        if self.baseline > p99:
            raise DSIRError(
                f"camera baseline {self.baseline:g} ADU is above 99% of the pixel values "
                f"(99th percentile {p99:g}, max {a.max():g} ADU): the baseline (offset) is "
                "probably wrong; check the camera settings"
            )
        if self.baseline <= median:
            return None
        return (f"camera baseline {self.baseline:g} ADU is above the median pixel ({median:g} ADU): most pixels "
                "read less than no light, and photons, background and fits suffer; check the camera's offset")

    # ---- (de)serialisation ---------------------------------------------------
    def to_dict(self) -> dict:
        """Plain dict of the five fields (YAML/JSON friendly)."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Camera:
        """From a dict with the field names or their aliases (`ALIASES`,
        case-insensitive); missing keys keep their defaults, unknown keys are
        refused (`DSIRError` naming them)."""
        if not isinstance(d, dict):
            raise DSIRError(f"camera settings must be a mapping of names to numbers, got {type(d).__name__}")
        out: dict[str, object] = {}
        unknown = []
        for k, v in d.items():
            name = ALIASES.get(_norm_key(k))
            if name is None:
                unknown.append(str(k))
                continue
            if name in out:
                raise DSIRError(f"camera setting {name!r} is given twice (as {k!r} and another alias)")
            out[name] = v
        if unknown:
            raise DSIRError(
                f"unknown camera setting(s): {', '.join(repr(u) for u in unknown)}; expected "
                "baseline (offset), sensitivity (e- per ADU), em_gain (gain), qe, read_noise"
            )
        return cls(**out).validate()

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, stated: dict | None = None, given=()) -> Camera:
        """Read a small YAML camera file, e.g.::

            baseline: 100      # ADU
            sensitivity: 0.46  # e- per ADU
            em_gain: 1
            qe: 0.72

        or Picasso's camera configuration (``Cameras:``), whose entry and
        settings the movie's metadata ``stated`` picks (settings named in
        ``given`` need not be found there), a ThunderSTORM protocol
        (``cameraSettings``), or the YAML of a Picasso localizations file
        (its localize step's Baseline, Sensitivity, Gain, Qe)
        (`napari_dsir.camera_files.camera_from_file`).
        """
        import yaml

        from .camera_files import camera_from_file

        try:
            with open(path, "rb") as fh:
                head = fh.read(CAMERA_FILE_MAX_BYTES + 1)
            if b"\x00" in head[:4096] or len(head) > CAMERA_FILE_MAX_BYTES:
                raise DSIRError(f"camera file {path} is not a text (YAML) file: a movie, an image or a Picasso "
                                ".hdf5? Give the camera's YAML (for a Picasso file, the .yaml beside it)")
            docs = [d for d in yaml.safe_load_all(head.decode("utf-8-sig")) if d is not None]
        except OSError as e:
            raise DSIRError(f"cannot read camera file {path}: {e.strerror or e}") from None
        except UnicodeDecodeError:
            raise DSIRError(f"camera file {path} is not a UTF-8 text (YAML) file") from None
        except yaml.YAMLError as e:
            raise DSIRError(f"camera file {path} is not valid YAML: {e}") from None
        if not docs:
            raise DSIRError(f"camera file {path} is empty")
        d = docs[0] if len(docs) == 1 else tuple(docs)  # several documents: a tuple
        try:
            return camera_from_file(d, stated, given)
        except DSIRError as e:
            raise DSIRError(f"camera file {path}: {e}") from None

    def to_yaml(self, path: str | os.PathLike) -> None:
        """Write the settings as a YAML camera file (`from_yaml` reads it back)."""
        import yaml

        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(self.to_dict(), fh, sort_keys=False)

    @classmethod
    def from_metadata(cls, meta: dict | None) -> Camera | None:
        """Camera settings stated in file metadata (a flat dict, e.g. ImageJ
        info or OME Detector attributes such as ``Offset``/``AmplificationGain``;
        the conversion factor of Micro-Manager's camera properties,
        `micro_manager_entries`), or None when it states none. Keys other
        than the camera's are ignored; missing settings keep their defaults."""
        out = stated_settings(meta)
        if not out:
            return None
        try:
            return cls(**out).validate()
        except DSIRError as e:
            raise StatedCameraError(f"camera settings in the file metadata: {e}") from None


def stated_settings(meta: dict | None) -> dict[str, float]:
    """The camera settings file metadata states (`Camera.from_metadata`), by
    field name; those it does not state are left out."""
    if not meta or not isinstance(meta, dict):
        return {}
    out: dict[str, float] = {}
    for k, v in [*meta.items(), *micro_manager_entries(meta).items()]:
        name = ALIASES.get(_norm_key(k))
        if name is None or name in out:
            continue
        try:
            out[name] = float(v)
        except (TypeError, ValueError):
            continue
    return out


def given_over_stated(given: dict, meta: dict | None) -> tuple[Camera, list[str]]:
    """The camera of settings ``given`` (a dict by names or aliases, some of
    them) over those the movie's metadata ``meta`` states, over the
    defaults; and the names taken from the metadata (a run given only the
    sensitivity keeps the baseline its movie states)."""
    mine = Camera.from_dict(given)  # names checked, aliases resolved, the values given validated
    names = {ALIASES[_norm_key(k)] for k in given}
    stated = {k: v for k, v in stated_settings(meta).items() if k not in names}
    if not stated:
        return mine, []
    try:  # what fails now is the metadata's
        camera = Camera(**{**stated, **{k: getattr(mine, k) for k in names}}).validate()
    except DSIRError as e:
        raise StatedCameraError(f"camera settings in the file metadata: {e}") from None
    return camera, sorted(stated)


#: example settings (typical values; check your camera's test sheet)
PRESETS: dict[str, Camera] = {
    "default (baseline 100 ADU, 1 e-/ADU)": Camera(100.0, 1.0, 1.0, 1.0),
    "ThunderSTORM defaults (baseline 414 ADU, 3.6 e-/ADU)": Camera(414.0, 3.6, 1.0, 1.0),
    "sCMOS (Hamamatsu ORCA-Flash4.0: baseline 100 ADU, 0.46 e-/ADU, QE 0.72)": Camera(
        100.0, 0.46, 1.0, 0.72, read_noise=1.6
    ),
    "EMCCD (Andor iXon Ultra 897: baseline 100 ADU, 4.8 e-/ADU, EM gain 100, QE 0.95)": Camera(
        100.0, 4.8, 100.0, 0.95
    ),
}


def assumed_camera(frames_adu) -> Camera:
    """The camera assumed when none is given: the defaults, but with no
    offset (baseline 0) where the darkest 1 % of the pixels (sampled) read
    below their 100 ADU: data converted to photons or background-subtracted
    (with 100 ADU taken off, the background went negative and a quarter of
    the fits failed); where they read below 0 (signed data whose offset was
    taken off and more), the darkest 1 % are taken as no light (with 0, the
    background was negative and a third of the fits failed)."""
    cam = Camera().validate()
    p1 = float(np.percentile(_pixel_sample(frames_adu), 1))
    if p1 < cam.baseline:
        cam.baseline = min(0.0, p1)
    return cam


#: bits of the digitisers whose full scale, 2**bits - 1 ADU, `saturation` recognises
FULL_SCALE_BITS = (8, 10, 11, 12, 14, 15, 16)
#: share of the sampled pixels at a full scale above which a movie counts as saturated
SATURATED_SHARE = 1e-3


def saturation(frames_adu) -> tuple[float, float, int | None] | None:
    """(value ADU, share of the pixels at it, bits) when camera frames
    ``frames_adu`` (frame, y, x; sampled, up to ~1e6 pixels) hold no signal
    (every pixel one value; ``bits`` None unless that value is a full
    scale) or when at least `SATURATED_SHARE` of the pixels read their
    maximum and it is a digitiser's full scale, 2**bits - 1 ADU (8-16 bits):
    light above it was clipped. None otherwise."""
    try:
        a = _pixel_sample(frames_adu)
    except DSIRError:  # no finite value: refused where the frames are read
        return None
    top = float(a.max())
    bits = next((b for b in FULL_SCALE_BITS if top == 2**b - 1), None)
    share = float(np.mean(a == top))
    if share == 1.0 or (bits is not None and share >= SATURATED_SHARE):
        return top, share, bits
    return None


def _pixel_sample(frames_adu) -> np.ndarray:
    """The finite values of up to ~1e6 pixels spread over ``frames_adu``
    (an array or a tensor), float64; none is an error."""
    try:
        import torch

        if isinstance(frames_adu, torch.Tensor):
            frames_adu = frames_adu.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    a = np.asarray(frames_adu).ravel()
    if a.dtype.kind not in "biuf":
        raise DSIRError(f"frames must be numbers, got pixel type {a.dtype}")
    if a.size == 0:
        raise DSIRError("no frames to check the camera baseline against")
    a = a[:: max(1, a.size // 1_000_000)].astype(np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        raise DSIRError("the frames hold no finite values")
    return a


def resolve_camera(explicit: Camera | None, file_meta: dict | None = None) -> tuple[Camera, bool]:
    """The camera to use and whether it was *assumed*: an explicit camera wins,
    then settings stated in the file metadata, else the defaults (assumed=True;
    the caller warns once that photons rest on assumed settings)."""
    if explicit is not None:
        if not isinstance(explicit, Camera):
            raise DSIRError(f"expected a Camera, got {type(explicit).__name__}")
        return Camera(**asdict(explicit)).validate(), False
    cam = Camera.from_metadata(file_meta)
    if cam is not None:
        return cam, False
    return Camera().validate(), True

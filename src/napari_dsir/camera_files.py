"""Camera files: ours, Picasso's camera configuration (read against the
camera properties Micro-Manager writes into each image) and ThunderSTORM's
protocol.

Ours: ``baseline``, ``sensitivity``, ``em_gain``, ``qe``, ``read_noise`` (or
their aliases, `napari_dsir.camera.ALIASES`).

Picasso's localizations YAML (the steps beside an HDF5 file, ``Baseline``,
``Sensitivity``, ``Gain``, ``Qe`` of its localize step, as napari-dsir
writes them too).

ThunderSTORM's protocol (the ``-protocol.txt`` it writes beside a table,
as napari-dsir does): its ``cameraSettings`` (``offset`` ADU,
``photons2ADU`` photoelectrons per count, ``isEmGain`` with ``gainEM`` or
``gain``, ``quantumEfficiency``, ``readoutNoise`` e-).

Picasso users keep their cameras in ``~/.picasso/config.yaml`` (Picasso's
documentation, "Camera config"); ``--camera`` takes that file as it is::

    Cameras:
      HamamatsuHam_DCAM:            # Micro-Manager's name for the camera device
        Baseline: 100               # ADU
        Sensitivity: 0.46           # e- per ADU
        Quantum Efficiency: 0.72
      Andor:
        Baseline: 100
        Gain Property Name: Gain    # the EM gain: Micro-Manager's Andor-Gain
        EM Switch Property:         # EM gain 1 unless Andor-Output_Amplifier reads True's value
          Name: Output_Amplifier
          True: Electron Multiplying
          False: Conventional
        Sensitivity Categories:     # Andor-Output_Amplifier, then Andor-Pre-Amp-Gain
          - Output_Amplifier
          - Pre-Amp-Gain
        Sensitivity:
          Electron Multiplying: {Gain 1: 15.9, Gain 2: 9.34, Gain 3: 5.32}
          Conventional: {Gain 1: 3.8, Gain 2: 2.1, Gain 3: 1.1}

As in Picasso, the entry is the one the movie's Micro-Manager metadata names
(its ``Camera``), or the only one; a sensitivity per category is looked up
under the values the metadata gives ``<camera>-<category>``. Unlike Picasso,
nothing is picked silently: a file of several cameras none of which the
movie names, or a category the movie does not state, is an error that says
which. Keys other than these (``Pixelsize``, ``Channel Device``, ...) are not
read, nor a quantum efficiency given per wavelength (which Picasso has not
used since 0.6): QE 1 then, photons = photoelectrons, as Picasso reports.
"""

from __future__ import annotations

from .camera import MICRO_MANAGER_CAMERA, Camera, setting_number
from .errors import DSIRError
from .io.picasso import PICASSO_CAMERA
from .io.tables import THUNDERSTORM_CAMERA

#: the Picasso config's key that marks it as one (a camera file of ours has none)
CAMERAS = "Cameras"
#: the ThunderSTORM protocol's camera section
CAMERA_SETTINGS = "cameraSettings"


def camera_from_file(d, stated: dict | None = None, given=()) -> Camera:
    """The `Camera` a camera file's parsed contents ``d`` give (a tuple: its
    YAML documents, where there are several): Picasso's configuration
    (`picasso_camera`, against the movie's metadata ``stated``), a Picasso
    localizations YAML (`picasso_locs_camera`), a ThunderSTORM protocol
    (`thunderstorm_camera`), else ours (`Camera.from_dict`)."""
    if isinstance(d, tuple):  # several YAML documents: Picasso's processing steps
        return picasso_locs_camera(d)
    if is_picasso_config(d):
        return picasso_camera(d, stated, given)
    if isinstance(d, dict) and isinstance(d.get(CAMERA_SETTINGS), dict):
        return thunderstorm_camera(d[CAMERA_SETTINGS])
    return Camera.from_dict(d)


def picasso_locs_camera(steps) -> Camera:
    """The `Camera` of the last of a Picasso localizations YAML's ``steps``
    that states Baseline and Sensitivity (Picasso's localize step, or
    napari-dsir's): with its Gain (EM gain) and Qe where given."""
    for step in reversed(steps):
        if isinstance(step, dict) and "Baseline" in step and "Sensitivity" in step:
            return Camera.from_dict({field: setting_number(step[name], name) for field, name in PICASSO_CAMERA.items()
                                     if step.get(name) is not None})
    raise DSIRError("its YAML documents (a Picasso localizations file's steps?) state no Baseline and Sensitivity")


def thunderstorm_camera(settings: dict) -> Camera:
    """The `Camera` of a ThunderSTORM protocol's ``cameraSettings``; its offset
    and photons2ADU are needed (ThunderSTORM writes them), the rest default."""
    missing = [k for k in ("offset", "photons2ADU") if settings.get(k) is None]
    if missing:
        raise DSIRError(f"its cameraSettings have no {' or '.join(missing)}")
    out = {field: setting_number(settings[name], f"cameraSettings {name}")
           for field, name in THUNDERSTORM_CAMERA.items() if field != "em_gain" and settings.get(name) is not None}
    em = settings.get("isEmGain", False)
    gain = settings.get("gainEM", settings.get(THUNDERSTORM_CAMERA["em_gain"], 1.0))  # gainEM: ThunderSTORM 1.3
    out["em_gain"] = setting_number(gain, "cameraSettings gainEM") if em is True or str(em).lower() == "true" else 1.0
    return Camera.from_dict(out)


def is_picasso_config(d) -> bool:
    """Whether a camera file's contents are Picasso's camera configuration."""
    return isinstance(d, dict) and CAMERAS in d


def _names(keys) -> str:
    return ", ".join(repr(str(k)) for k in keys)


def _match(choices: dict, value):
    """The key of ``choices`` that the metadata's ``value`` names (as text,
    or as the same number: "17.000 MHz" is not 17, but "17.000" is 17), or None."""
    text = str(value).strip()
    for k in choices:
        if str(k).strip() == text:
            return k
    try:
        number = float(text)
    except ValueError:
        return None
    for k in choices:
        try:
            if float(str(k)) == number:
                return k
        except ValueError:
            continue
    return None


def _pick_camera(cameras: dict, stated: dict) -> str:
    named = stated.get(MICRO_MANAGER_CAMERA)
    match = None if named is None else _match(cameras, named)
    if match is not None:
        return match
    if len(cameras) == 1:
        return next(iter(cameras))
    said = f"names camera {str(named)!r}" if named is not None else "names no camera (Micro-Manager's 'Camera')"
    raise DSIRError(f"it lists {len(cameras)} cameras ({_names(cameras)}) and the movie's metadata {said}: "
                    "keep only this movie's camera in the file, or give the camera settings themselves")


def _sensitivity(entry: dict, name: str, stated: dict) -> tuple[float | None, str]:
    """The sensitivity of the ``entry`` of camera ``name`` and, where it cannot be told, why."""
    if "Sensitivity" not in entry:
        return None, f"camera {name!r} has no Sensitivity"
    value = entry["Sensitivity"]
    categories = entry.get("Sensitivity Categories") or []
    if isinstance(categories, str):
        categories = [categories]
    for category in categories:
        if not isinstance(value, dict):
            break
        key = f"{name}-{category}"
        if key not in stated:
            return None, (f"the Sensitivity of camera {name!r} depends on {key}, which the movie's metadata does not "
                          f"state (the file's choices: {_names(value)})")
        k = _match(value, stated[key])
        if k is None:
            return None, (f"the movie's metadata gives {key} = {stated[key]!r}, not one of the file's "
                          f"choices ({_names(value)})")
        value = value[k]
    if isinstance(value, dict):
        return None, (f"the Sensitivity of camera {name!r} is a choice ({_names(value)}) that its "
                      "Sensitivity Categories do not settle")
    return setting_number(value, f"camera {name!r} Sensitivity"), ""


def _em_gain(entry: dict, name: str, stated: dict) -> tuple[float | None, str]:
    """The EM gain of camera ``name`` the movie's metadata gives (1 when the
    entry names no gain property or its EM switch is off) and, where it
    cannot be told, why."""
    prop = entry.get("Gain Property Name")
    if prop is None:
        return 1.0, ""
    switch = entry.get("EM Switch Property")
    if isinstance(switch, dict) and "Name" in switch:
        key = f"{name}-{switch['Name']}"
        on = switch.get(True, switch.get("True", switch.get("true")))
        if key not in stated:
            return None, f"the movie's metadata does not state {key}, the EM switch of camera {name!r}"
        if str(stated[key]).strip() != str(on).strip():
            return 1.0, ""
    key = f"{name}-{prop}"
    if key not in stated:
        return None, f"the movie's metadata does not state {key}, the EM gain of camera {name!r}"
    return setting_number(stated[key], key), ""


def picasso_camera(config: dict, stated: dict | None = None, given=()) -> Camera:
    """The `Camera` that Picasso's camera configuration ``config`` (a parsed
    ``config.yaml``) gives for a movie whose metadata is ``stated`` (its
    camera metadata: Micro-Manager's ``Camera`` and ``<camera>-<property>``
    entries, `napari_dsir.io.Stack.camera_metadata`). Settings named in
    ``given`` (field names) need not be found: the caller sets them."""
    stated = stated if isinstance(stated, dict) else {}
    cameras = config.get(CAMERAS)
    if not isinstance(cameras, dict) or not cameras:
        raise DSIRError("its Cameras list no camera")
    name = _pick_camera(cameras, stated)
    entry = cameras[name]
    if not isinstance(entry, dict):
        raise DSIRError(f"camera {name!r} has no settings")
    found = {"baseline": (setting_number(entry["Baseline"], f"camera {name!r} Baseline"), "") if "Baseline" in entry
             else (None, f"camera {name!r} has no Baseline"),
             "sensitivity": _sensitivity(entry, name, stated), "em_gain": _em_gain(entry, name, stated)}
    missing = {field: why for field, (value, why) in found.items() if value is None and field not in given}
    if missing:
        options = ", ".join("--" + field.replace("_", "-") for field in missing)
        raise DSIRError("; ".join(missing.values()) + f" (give {options} on the command line, or the camera "
                        "settings themselves)")
    out = {field: value for field, (value, _) in found.items() if value is not None}
    qe = entry.get("Quantum Efficiency")
    if qe is not None and not isinstance(qe, dict):
        out["qe"] = setting_number(qe, f"camera {name!r} Quantum Efficiency")
    return Camera.from_dict(out)

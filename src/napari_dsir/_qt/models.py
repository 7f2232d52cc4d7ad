"""The model choices of DSIR Reconstruct and the threshold each is calibrated with."""

from __future__ import annotations

from pathlib import Path

from ..errors import DSIRError

MODELS = ("Default (shipped)", "Original DSIR weights (.pt)", "Checkpoint (.pt)")
MODEL_DEFAULT, MODEL_LEGACY, MODEL_FILE = MODELS


def model_spec(choice: str, path) -> str | None:
    """The `RunRequest.model` for a model choice and file: None (shipped),
    ``"legacy:PATH"`` (original DSIR weights) or the checkpoint path."""
    if choice == MODEL_DEFAULT:
        return None
    path = str(path or "").strip()
    if not path or path == ".":
        raise DSIRError(f"choose a model file (.pt) for \"{choice}\"")
    return f"legacy:{path}" if choice == MODEL_LEGACY else path


_THRESHOLDS: dict = {}


def model_threshold(spec: str | None) -> float | None:
    """The localization threshold calibrated for a model (its checkpoint
    metadata, via `localize.params_for`), None when the file cannot be read
    (the run then says why). Cached per file and modification time."""
    from ..localize import params_for
    from ..model import default_model_path, load_model

    path = Path(spec[len("legacy:"):] if spec and spec.startswith("legacy:") else spec or default_model_path())
    try:
        key = (spec, path.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _THRESHOLDS:
        try:
            _THRESHOLDS[key] = float(params_for(load_model(spec, "cpu")).threshold)
        except (DSIRError, OSError):
            _THRESHOLDS[key] = None
    return _THRESHOLDS[key]

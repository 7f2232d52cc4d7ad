"""The model choices of DSIR Reconstruct and the threshold each is calibrated with."""

from __future__ import annotations

from pathlib import Path

from ..errors import DSIRError
from ..model import SHIPPED_MODELS

# the shipped models by name, then the two that need a file
SHIPPED = tuple(f"{name}: {text}" for name, (_, text) in SHIPPED_MODELS.items())
MODEL_LEGACY, MODEL_FILE = "Original DSIR weights (.pt)", "Checkpoint (.pt)"
MODELS = SHIPPED + (MODEL_LEGACY, MODEL_FILE)
MODEL_DEFAULT = SHIPPED[0]


def model_spec(choice: str, path) -> str | None:
    """The `RunRequest.model` for a model choice and file: a shipped model's
    name, ``"legacy:PATH"`` (original DSIR weights) or the checkpoint path."""
    if choice in SHIPPED:
        return choice.split(":", 1)[0]
    path = str(path or "").strip()
    if not path or path == "." or Path(path).is_dir():  # (an empty file box reads as the working folder)
        raise DSIRError(f"choose a model file (.pt) for \"{choice}\"")
    return f"legacy:{path}" if choice == MODEL_LEGACY else path


_THRESHOLDS: dict = {}


def model_threshold(spec: str | None) -> float | None:
    """The localization threshold calibrated for a model (its checkpoint
    metadata, via `localize.params_for`), None when the file cannot be read
    (the run then says why) or carries no calibrated localizer (an
    interrupted training's: a run warns that its threshold is a default).
    Cached per file and modification time."""
    from ..localize import params_for
    from ..model import default_model_path, load_model

    if spec is None or spec in SHIPPED_MODELS:
        path = default_model_path(spec or "default")
    else:
        path = Path(spec[len("legacy:"):] if spec.startswith("legacy:") else spec)
    try:
        key = (spec, path.stat().st_mtime_ns)
    except OSError:
        return None
    if key not in _THRESHOLDS:
        try:
            model = load_model(spec, "cpu")
            _THRESHOLDS[key] = float(params_for(model).threshold) if "localize" in model.metadata else None
        except (DSIRError, OSError):
            _THRESHOLDS[key] = None
    return _THRESHOLDS[key]

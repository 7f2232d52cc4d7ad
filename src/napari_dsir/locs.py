"""`Localizations`: the project's data model, a table of single-molecule positions.

Every row is one localization: a 0-based ``frame`` and a position ``x``, ``y``
in nm (origin: the top-left corner of camera pixel (0, 0); README, "Coordinates and files").
Optional per-localization columns, each an array of the same length or None:

==============  ===========  ====================================================
column          unit         meaning
==============  ===========  ====================================================
intensity       a.u./photon  network output around the peak (DSIR), or photons
                             (ground truth)
photons         photon       fitted photon count of the emitter
background      photon/px    fitted background per camera pixel
sigma           nm           fitted PSF standard deviation
uncertainty     nm           lateral precision, one standard deviation per axis
                             (Cramer-Rao bound)
==============  ===========  ====================================================
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

#: the optional columns, in table order, with their units
OPTIONAL_COLUMNS = {
    "intensity": "a.u.",
    "photons": "photon",
    "background": "photon",
    "sigma": "nm",
    "uncertainty": "nm",
}


@dataclass
class Localizations:
    """A table of positions: 0-based ``frame``, ``x`` and ``y`` in nm, and
    the optional columns of `OPTIONAL_COLUMNS` (None when absent)."""

    frame: np.ndarray
    x: np.ndarray
    y: np.ndarray
    intensity: np.ndarray | None = None
    photons: np.ndarray | None = None
    background: np.ndarray | None = None
    sigma: np.ndarray | None = None
    uncertainty: np.ndarray | None = None

    def __post_init__(self):
        self.frame = np.asarray(self.frame, dtype=np.int64).ravel()
        self.x = np.asarray(self.x, dtype=np.float64).ravel()
        self.y = np.asarray(self.y, dtype=np.float64).ravel()
        n = len(self.frame)
        if len(self.x) != n or len(self.y) != n:
            raise ValueError("frame, x and y must have the same length")
        for name in OPTIONAL_COLUMNS:
            v = getattr(self, name)
            if v is not None:
                v = np.asarray(v, dtype=np.float64).ravel()
                if len(v) != n:
                    raise ValueError(f"column {name!r} has {len(v)} values for {n} localizations")
                setattr(self, name, v)

    def __len__(self) -> int:
        return len(self.frame)

    def columns(self) -> dict[str, np.ndarray]:
        """The optional columns present, in table order."""
        return {k: getattr(self, k) for k in OPTIONAL_COLUMNS if getattr(self, k) is not None}

    @classmethod
    def empty(cls, columns=("intensity",)) -> Localizations:
        z = np.zeros(0)
        return cls(np.zeros(0, np.int64), z, z, **{c: z for c in columns})

    @classmethod
    def concatenate(cls, parts: list[Localizations]) -> Localizations:
        """One table from several; an optional column is kept when every part has it."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        cols = {
            name: np.concatenate([getattr(p, name) for p in parts])
            for name in OPTIONAL_COLUMNS
            if all(getattr(p, name) is not None for p in parts)
        }
        return cls(
            np.concatenate([p.frame for p in parts]),
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.y for p in parts]),
            **cols,
        )

    def select(self, mask) -> Localizations:
        """The rows picked by a boolean mask or an index array."""
        return Localizations(**{
            f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[mask]
            for f in fields(self)
        })

    def frames_yx(self) -> np.ndarray:
        """(n, 3) array of (frame, y, x): napari points data in nm world units."""
        return np.column_stack([self.frame.astype(float), self.y, self.x])

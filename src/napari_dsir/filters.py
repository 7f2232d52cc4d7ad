"""Filtering localizations by their columns: the first thing users do after
localizing (README, "Filtering"). Pure numpy; the CLI (`dsir filter`) and
the napari widget (DSIR Render & Drift) go through `keep`.

A range is inclusive at both ends; a row whose value is NaN (a failed fit
has no photons, sigma or uncertainty) fails every range on that column.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import DSIRError
from .locs import Localizations

#: the columns a table may be filtered on, with their units
COLUMNS = {"photons": "photons", "uncertainty": "nm", "sigma": "nm", "background": "photons/px",
           "intensity": "a.u."}

Range = tuple[float, float]


def parse_range(text: str, name: str = "") -> Range:
    """``"LO:HI"``, ``"LO:"`` or ``":HI"`` (or one number: LO = HI) as
    (lo, hi), an open end infinite; refused (`DSIRError`, naming ``name``)
    unless numbers with lo <= hi."""
    where = f"{name}: " if name else ""
    parts = str(text).strip().split(":")
    if len(parts) > 2 or not any(p.strip() for p in parts):
        raise DSIRError(f"{where}give LO:HI, LO: or :HI (numbers), got {text!r}")
    try:
        values = [float(p) if p.strip() else None for p in parts]
    except ValueError:
        raise DSIRError(f"{where}give LO:HI, LO: or :HI (numbers), got {text!r}") from None
    lo, hi = (values[0], values[0]) if len(values) == 1 else values
    lo = -math.inf if lo is None else lo
    hi = math.inf if hi is None else hi
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise DSIRError(f"{where}the lower end {lo:g} is above the upper end {hi:g}")
    return lo, hi


def keep(locs: Localizations, ranges: dict[str, Range], where: str = "the table") -> tuple[np.ndarray, dict]:
    """The rows of ``locs`` whose columns lie in ``ranges`` (column -> (lo,
    hi), inclusive; `COLUMNS`), as a boolean mask, and for each column the
    rows it takes out (each counted by every range it fails). A column the
    table does not have is refused (`DSIRError`, naming ``where``)."""
    mask = np.ones(len(locs), bool)
    out: dict[str, int] = {}
    for name, (lo, hi) in ranges.items():
        if name not in COLUMNS:
            raise DSIRError(f"cannot filter on {name!r} (use {', '.join(COLUMNS)})")
        values = getattr(locs, name)
        if values is None:
            have = ", ".join(locs.columns()) or "none"
            raise DSIRError(f"{where} has no {name} column to filter on (its columns beyond frame, x, y: {have})")
        with np.errstate(invalid="ignore"):
            ok = (values >= lo) & (values <= hi)  # (NaN: out)
        out[name] = int(np.count_nonzero(~ok))
        mask &= ok
    return mask, out


def describe(ranges: dict[str, Range]) -> str:
    """The ranges as text, e.g. "photons >= 500, uncertainty <= 30 nm"."""
    parts = []
    for name, (lo, hi) in ranges.items():
        unit = "" if COLUMNS[name] in ("photons", "a.u.") else f" {COLUMNS[name]}"
        if math.isinf(lo) and math.isinf(hi):
            parts.append(f"{name} any number")
        elif math.isinf(lo):
            parts.append(f"{name} <= {hi:g}{unit}")
        elif math.isinf(hi):
            parts.append(f"{name} >= {lo:g}{unit}")
        else:
            parts.append(f"{name} {lo:g}-{hi:g}{unit}")
    return ", ".join(parts)


def summary(mask: np.ndarray, out: dict[str, int], ranges: dict[str, Range]) -> str:
    """One line: how many rows were kept of how many, and what each range took out."""
    taken = "; ".join(f"{describe({k: ranges[k]})}: {n} out" for k, n in out.items())
    return f"{int(mask.sum())} of {len(mask)} localizations kept ({taken})"

"""Localization tables: ThunderSTORM, EPFL 2016, plain ``frame,x,y`` and DSIR label CSVs.

Positions are nm with the origin at the top-left corner of pixel (0, 0); frames
are 0-based in Python and 1-based in the files (CONVENTIONS.md).
"""

from __future__ import annotations

import csv
import io as _io
import os
import re
from pathlib import Path

import numpy as np

from ..errors import DSIRError, PixelSizeRequired
from ..locs import Localizations
from .files import atomic_output
from .stacks import UNIT_TO_NM

_HEADER_RE = re.compile(r"^\s*([^\[\(]*?)\s*(?:[\[\(]\s*([^\]\)]*)\s*[\]\)])?\s*$")
_X_NAMES = {"x", "xnano", "x_nm", "xnm", "x_px", "xpix", "pos_x", "position_x", "x0"}
_Y_NAMES = {"y", "ynano", "y_nm", "ynm", "y_px", "ypix", "pos_y", "position_y", "y0"}
_FRAME_NAMES = {"frame", "frames", "frame_number", "t", "time_point", "frame_id"}
_INT_NAMES = {"intensity", "photons", "photon", "intensity_photon", "i", "amplitude"}


def _parse_header_name(cell: str) -> tuple[str, str | None]:
    cell = cell.strip().strip('"').strip("'").strip()
    m = _HEADER_RE.match(cell)
    name, unit = (m.group(1), m.group(2)) if m else (cell, None)
    name = name.strip().lower().replace(" ", "_")
    # suffix units such as x_nm, xnano, x_px
    if unit is None:
        if name in ("xnano", "ynano", "x_nm", "y_nm", "xnm", "ynm"):
            unit = "nm"
        elif name in ("x_px", "y_px", "xpix", "ypix"):
            unit = "px"
    return name, (unit.strip().lower() if unit else None)


def _sniff_delimiter(line: str) -> str | None:
    for d in (",", ";", "\t"):
        if d in line:
            return d
    return None  # whitespace


def read_localizations(
    path: str | os.PathLike, pixel_size: float | None = None
) -> Localizations:
    """Read a ThunderSTORM, EPFL 2016, plain ``frame,x,y`` or DSIR label CSV.

    Frames become 0-based, positions nm. Columns in px are converted with
    ``pixel_size`` (nm), which is then required. Raises `DSIRError`.
    """
    path = Path(path)
    if not path.is_file():
        raise DSIRError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DSIRError(f"{path}: cannot read ({e.strerror or e})") from e
    if b"\x00" in raw[:4096]:
        raise DSIRError(f"{path}: binary data, not a text table")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise DSIRError(f"{path}: the table is empty")
    delim = _sniff_delimiter(lines[0])

    def split(line: str) -> list[str]:
        if delim is None:
            return line.split()
        return [c.strip() for c in next(csv.reader([line], delimiter=delim))]

    first = split(lines[0])

    def is_number(s: str) -> bool:
        try:
            float(s)
            return True
        except ValueError:
            return False

    has_header = not all(is_number(c) for c in first if c != "")
    if has_header:
        cols = [_parse_header_name(c) for c in first]
        names = [c[0] for c in cols]
        body = lines[1:]

        def find(cands: set[str]) -> int | None:
            for i, n in enumerate(names):
                if n in cands:
                    return i
            return None

        ifr, ix, iy = find(_FRAME_NAMES), find(_X_NAMES), find(_Y_NAMES)
        iint = find(_INT_NAMES)
        missing = [n for n, i in (("frame", ifr), ("x", ix), ("y", iy)) if i is None]
        if missing:
            raise DSIRError(
                f"{path}: missing column(s) {', '.join(missing)} "
                f"(found: {', '.join(c.strip() for c in first)})"
            )
        factors = []
        for i in (ix, iy):
            unit = cols[i][1]
            if unit is None or unit == "nm":
                factors.append(1.0)
            elif unit in ("px", "pix", "pixel", "pixels"):
                if pixel_size is None:
                    raise PixelSizeRequired(
                        f"{path}: column '{first[i].strip()}' is in pixels; "
                        "give the pixel size (nm) to convert it"
                    )
                factors.append(float(pixel_size))
            elif unit.replace("\u03bc", "\u00b5") in UNIT_TO_NM:
                factors.append(UNIT_TO_NM[unit.replace("\u03bc", "\u00b5")])
            else:
                raise DSIRError(
                    f"{path}: unknown unit '{unit}' in column '{first[i].strip()}' "
                    "(use nm, um or px)"
                )
    else:
        if len(first) < 3:
            raise DSIRError(
                f"{path}: no header and {len(first)} column(s); expected frame, x, y (nm)"
            )
        ifr, ix, iy, iint = 0, 1, 2, None
        factors = [1.0, 1.0]
        body = lines

    need = max(i for i in (ifr, ix, iy, iint) if i is not None)
    frames, xs, ys, ints = [], [], [], []
    for lineno, line in enumerate(body, start=2 if has_header else 1):
        cells = split(line)
        if len(cells) <= need:
            raise DSIRError(f"{path}: line {lineno} has {len(cells)} column(s), expected {need + 1}")
        try:
            fr = float(cells[ifr])
            x = float(cells[ix])
            y = float(cells[iy])
            it = float(cells[iint]) if iint is not None and cells[iint] != "" else np.nan
        except ValueError:
            raise DSIRError(f"{path}: line {lineno}: non-numeric value in {line.strip()!r}") from None
        if not (np.isfinite(fr) and np.isfinite(x) and np.isfinite(y)):
            raise DSIRError(f"{path}: line {lineno}: NaN or infinite value")
        if fr != int(fr) or fr < 1:
            raise DSIRError(f"{path}: line {lineno}: frame {cells[ifr]} is not a 1-based frame number")
        frames.append(int(fr) - 1)
        xs.append(x * factors[0])
        ys.append(y * factors[1])
        ints.append(it)
    if not frames:
        raise DSIRError(f"{path}: the table has a header but no rows")
    return Localizations(
        np.array(frames), np.array(xs), np.array(ys),
        np.array(ints) if iint is not None else None,
    )


def _csv_lines(locs: Localizations, intensity_unit: str, chunk: int = 100_000):
    """ThunderSTORM-style CSV text (1-based frames, nm) in pieces of ``chunk`` rows."""
    yield f'"id","frame","x [nm]","y [nm]","intensity [{intensity_unit}]"\n'
    inten = locs.intensity if locs.intensity is not None else np.full(len(locs), np.nan)
    for j in range(0, len(locs), chunk):
        buf = _io.StringIO()
        for i in range(j, min(j + chunk, len(locs))):
            buf.write(f"{i + 1},{locs.frame[i] + 1},{locs.x[i]:.3f},{locs.y[i]:.3f},{inten[i]:.6g}\n")
        yield buf.getvalue()


def write_localizations(
    path: str | os.PathLike, locs: Localizations, overwrite: bool = False,
    intensity_unit: str = "a.u.",
) -> Path:
    """Write a ThunderSTORM CSV (quoted header, 1-based frames, nm), atomically
    and in pieces (a table of millions of rows needs little extra memory).

    ``intensity_unit`` is "photon" for ground truth, "a.u." for network output."""
    with atomic_output(path, overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            for piece in _csv_lines(locs, intensity_unit):
                fh.write(piece)
    return Path(path)

"""Localization tables: ThunderSTORM, EPFL 2016, plain ``frame,x,y`` and DSIR
label CSVs, and Picasso HDF5 (by extension, see `picasso`).

Positions are nm with the origin at the top-left corner of pixel (0, 0); frames
are 0-based in Python and 1-based in the CSV files (README, "Coordinates and files"). Columns
are parsed and written with numpy, a column at a time (no loop over rows).
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import re
from itertools import repeat
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import DSIRError, PixelSizeRequired
from ..locs import Localizations
from .files import atomic_output
from .stacks import UNIT_TO_NM

_HEADER_RE = re.compile(r"^\s*([^\[\(]*?)\s*(?:[\[\(]\s*([^\]\)]*)\s*[\]\)])?\s*$")
_X_NAMES = {"x", "xnano", "x_nm", "xnm", "x_px", "xpix", "pos_x", "position_x", "x0"}
_Y_NAMES = {"y", "ynano", "y_nm", "ynm", "y_px", "ypix", "pos_y", "position_y", "y0"}
_FRAME_NAMES = {"frame", "frames", "frame_number", "t", "time_point", "frame_id"}
# optional columns: accepted names (lower case, spaces as "_"), matched in header order
_PHOTON_NAMES = {"photons", "photon", "intensity_photon", "n_photons", "nphotons", "photon_count"}
_INT_NAMES = {"intensity", "i", "amplitude", "network_intensity"}
_BG_NAMES = {"offset", "bg", "background", "bkg", "background_photon", "bg_photons"}
_SIGMA_NAMES = {"sigma", "sigma_nm", "psf_sigma", "sigma_xy"}
_UNC_NAMES = {"uncertainty", "uncertainty_xy", "precision", "lateral_precision", "loc_precision",
              "localization_precision", "crlb"}
_PHOTON_UNITS = {"photon", "photons", "ph"}
_PX_UNITS = {"px", "pix", "pixel", "pixels"}

#: extensions of Picasso files; any other is a CSV text table (``.tsv``: tab-separated)
HDF5_SUFFIXES = (".hdf5", ".h5")
#: positions with no unit (read as nm) that all lie below this many nm look
#: like camera pixels (a field under half a micrometre): `read_localizations` warns
PIXEL_LIKE_NM = 512.0


def _parse_header_name(cell: str) -> tuple[str, str | None]:
    cell = cell.strip().strip('"').strip("'").strip()
    m = _HEADER_RE.match(cell)
    name, unit = (m.group(1), m.group(2)) if m else (cell, None)
    name = name.strip().lower().replace(" ", "_")
    # suffix units such as x_nm, xnano, x_px
    if unit is None:
        if name in ("xnano", "ynano", "x_nm", "y_nm", "xnm", "ynm", "sigma_nm"):
            unit = "nm"
        elif name in ("x_px", "y_px", "xpix", "ypix"):
            unit = "px"
    return name, (unit.strip().lower() if unit else None)


def _sniff_delimiter(line: str, nxt: str | None = None, prefer: str | None = None) -> str | None:
    """The delimiter of a table whose first line is ``line`` and second
    ``nxt``: of comma, semicolon and tab (``prefer`` first, a .tsv's tab),
    outside quotes, the most frequent in ``line`` among those found as
    often in ``nxt`` (a comma in a tab file's column name, a decimal comma in
    its numbers), else in ``line`` alone; None for whitespace."""
    order = ((prefer,) if prefer else ()) + (",", ";", "\t")
    count = {d: re.sub(r'"[^"]*"', "", line).count(d) for d in order}
    found = [d for d in order if count[d]]
    if nxt is not None:
        bare = re.sub(r'"[^"]*"', "", nxt)
        found = [d for d in found if bare.count(d) == count[d]] or found
    return max(found, key=lambda d: count[d], default=None)  # ties: the first in order


def _split_header(line: str, delim: str | None) -> list[str]:
    """A header line's cells; split on whitespace (``delim`` None), a unit
    spaced off its name ("x [nm]") stays with it."""
    if delim is not None:
        return next(csv.reader([line], delimiter=delim), [])
    cells: list[str] = []
    for tok in line.split():
        if cells and tok[:1] in "[(" and not _is_number(cells[-1]):
            cells[-1] += " " + tok
        else:
            cells.append(tok)
    return cells


def _commented_header(lines: list[str], stripped: list[str]) -> int | None:
    """Index of a header written as a comment (numpy's ``savetxt(header=...)``:
    ``# frame,x,y``): the last comment line before the first data line, when
    that line holds numbers only and the comment names its x and y columns in
    as many cells; else None."""
    first = next((k for k, c in enumerate(stripped) if c and c[0] != "#"), None)
    if not first:
        return None
    k = next((j for j in range(first - 1, -1, -1) if stripped[j]), None)
    if k is None or not stripped[k].startswith("#"):
        return None
    delim = _sniff_delimiter(lines[first])
    data = lines[first].split() if delim is None else next(csv.reader([lines[first]], delimiter=delim))
    while data and not data[-1].strip():  # a trailing delimiter
        data.pop()
    cells = _split_header(stripped[k].lstrip("#").strip(), delim)
    if not all(_is_number(c.strip()) for c in data if c.strip()) or len(cells) != len(data):
        return None
    names = {_parse_header_name(c)[0] for c in cells}
    return k if names & _X_NAMES and names & _Y_NAMES else None


#: what a table written by Picasso's ThunderSTORM export is told
PICASSO_EXPORT = ("Picasso's ThunderSTORM export writes them, with frames from 0 and positions half a camera "
                  "pixel off ThunderSTORM's: open Picasso's .hdf5 file instead")


def _is_number(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _length_factor(path: Path, unit: str | None, cell: str, pixel_size: float | None) -> float:
    """nm per unit of a length column (x, y, sigma, uncertainty); no unit is nm."""
    if unit is None or unit == "nm":
        return 1.0
    if unit in _PX_UNITS:
        if pixel_size is None:
            raise PixelSizeRequired(
                f"{path}: column '{cell.strip()}' is in pixels; give the pixel size (nm) to convert it"
            )
        return float(pixel_size)
    u = unit.replace("\u03bc", "\u00b5")
    if u in UNIT_TO_NM:
        return UNIT_TO_NM[u]
    raise DSIRError(f"{path}: unknown unit '{unit}' in column '{cell.strip()}' (use nm, um or px)")


def _optional_columns(path, cols, first, pixel_size, used) -> dict[str, tuple[int, float]]:
    """{Localizations column: (index in the row, factor to its unit)} for the
    optional columns the header names. ThunderSTORM's "intensity [photon]"
    is the photon count; "offset [photon]" the background per pixel."""
    found: dict[str, tuple[int, float]] = {}

    def take(key, i, factor=1.0):
        if key not in found and i not in used:
            found[key] = (i, factor)
            used.add(i)

    for i, (name, unit) in enumerate(cols):
        if name in _PHOTON_NAMES or (name == "intensity" and unit in _PHOTON_UNITS):
            take("photons", i)
        elif name in _INT_NAMES:
            take("intensity", i)
        elif name in _BG_NAMES and (unit is None or unit in _PHOTON_UNITS):
            take("background", i)
        elif name in _SIGMA_NAMES and "sigma" not in found:
            take("sigma", i, _length_factor(path, unit, first[i], pixel_size))
        elif name in _UNC_NAMES and "uncertainty" not in found:
            take("uncertainty", i, _length_factor(path, unit, first[i], pixel_size))
    return found


def _to_float(values: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(floats, ok, blank) of a column of strings: ``ok`` is False where a
    cell is not a number, ``blank`` True where it is empty (then NaN).
    Vectorised; cell by cell only when some cell is not a number."""
    n = len(values)
    try:
        return np.fromiter(map(float, values), np.float64, count=n), np.ones(n, bool), np.zeros(n, bool)
    except ValueError:
        pass
    out = np.full(n, np.nan)
    ok = np.zeros(n, bool)
    blank = np.zeros(n, bool)
    for k, v in enumerate(values):
        try:
            out[k] = float(v)
            ok[k] = True
        except ValueError:
            blank[k] = not v.strip()
    return out, ok, blank


def _cells(body: list[str], delim: str | None, split):
    """(column(i, n) -> the i-th cells of the first n rows, cells per row).

    Fast path for the common delimited table without quotes and with one
    number of cells per row: the whole body is split once and each column is
    a slice of that flat list; otherwise row by row (csv module, or
    whitespace)."""
    if delim is not None:
        counts = np.fromiter(map(str.count, body, repeat(delim)), dtype=np.int64, count=len(body))
        if counts.min() == counts.max():
            joined = delim.join(body)
            if '"' not in joined:
                flat = joined.split(delim)
                ncol = int(counts[0]) + 1

                def column(i: int, n: int) -> list[str]:
                    return flat[i:n * ncol:ncol]

                return column, counts + 1
    rows = split(body)

    def column(i: int, n: int) -> list[str]:
        return [r[i] for r in rows[:n]]

    return column, np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))


def read_localizations(
    path: str | os.PathLike, pixel_size: float | None = None, *, warn=None, protocol: bool = True
) -> Localizations:
    """Read a ThunderSTORM, EPFL 2016, plain ``frame,x,y`` or DSIR label CSV,
    or a Picasso HDF5 file (``.hdf5``/``.h5``, see `picasso.read_picasso`).

    Frames become 0-based, positions and sigma/uncertainty nm. Columns in px
    are converted with ``pixel_size`` (nm), or with none given the camera
    pixel size that the protocol beside a CSV states (ThunderSTORM's,
    `read_table`; not with ``protocol=False``); one of them is then required. Optional
    columns (matched case-insensitively, units from the header): photons
    (also ThunderSTORM "intensity [photon]"), intensity (a.u.; the photons
    when the table has no other intensity), background ("offset [photon]",
    bg; an optional column in another unit, e.g. "offset [ADU]", is left
    out), sigma, uncertainty (uncertainty_xy). Raises `DSIRError`.
    """
    path = Path(path)
    if path.suffix.lower() in HDF5_SUFFIXES:
        from .picasso import read_picasso

        return read_picasso(path, pixel_size=pixel_size, warn=warn)[0]
    return read_table(path, pixel_size, warn=warn, protocol=protocol)[0]


def read_positions(path: str, pixel_size: float, image_name: str):
    """(positions in nm, whether they were in pixels, warnings) of a positions
    file over the image ``image_name`` (DSIR Ground Truth's): pixels converted
    at ``pixel_size`` (nm), the image's, not at one a protocol beside
    states; warnings returned, not emitted (a worker thread's job)."""
    said = []
    try:
        return read_localizations(path, warn=said.append, protocol=False), False, said
    except PixelSizeRequired:
        said.clear()  # (the reading again says it all)
        locs = read_localizations(path, pixel_size=pixel_size, warn=said.append)
    stated = protocol_pixel_size(path)
    other = (f" ({protocol_path(path).name} states {stated:g} nm: check the image's pixel size)"
             if stated and abs(stated - pixel_size) > 1e-3 * stated else "")
    said.append(f"{Path(path).name} gives positions in pixels; converted with the pixel size "
                f"of '{image_name}', {pixel_size:g} nm{other}")
    return locs, True, said


class TableLayout(NamedTuple):
    """Where a text table's positions are: the 1-based line of each row read
    (in order), the delimiter (None: whitespace), the columns of x and y
    (0-based) and their nm per unit."""

    linenos: np.ndarray
    delimiter: str | None
    x_column: int
    y_column: int
    x_nm_per_unit: float
    y_nm_per_unit: float


def table_text(path: Path) -> str:
    """A text table's text: UTF-8 (with or without its BOM), UTF-16 with its
    BOM, else Latin-1; refused (DSIRError) when missing, a folder or binary."""
    if path.is_dir():
        raise DSIRError(f"{path}: a folder, not a table")
    if not path.is_file():
        raise DSIRError(f"{path}: no such file")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DSIRError(f"{path}: cannot read ({e.strerror or e})") from e
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):  # UTF-16 with its byte-order mark (Excel's "Unicode text")
        try:
            raw = raw.decode("utf-16").encode("utf-8")
        except UnicodeDecodeError:
            raise DSIRError(f"{path}: not a readable UTF-16 text table") from None
    if b"\x00" in raw[:4096]:
        raise DSIRError(f"{path}: binary data, not a text table")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


_NEWLINE = re.compile(r"\r\n|\r|\n")
_OTHER_BREAKS = "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"  # where str.splitlines splits too


def text_lines(text: str) -> list[str]:
    """A text's lines, split at \\n, \\r\\n or \\r only (str.splitlines also
    splits at form feeds, \\x1c-\\x1e and a Latin-1 ellipsis, \\x85)."""
    if not any(c in text for c in _OTHER_BREAKS):
        return text.splitlines()  # the same, faster
    lines = _NEWLINE.split(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def read_table(path: Path, pixel_size: float | None = None, *, warn=None,
               text: str | None = None, protocol: bool = True) -> tuple[Localizations, TableLayout]:
    """`read_localizations` of a text table (``text``: its `table_text`, when
    read already), with its `TableLayout`. Columns in px with no
    ``pixel_size`` given take the camera pixel size that the protocol
    beside the table states (`protocol_pixel_size`: ThunderSTORM's; with
    ``protocol``), and ``warn`` says so."""
    text = table_text(path) if text is None else text
    try:
        return _read_table(path, pixel_size, warn, text)
    except PixelSizeRequired:
        stated = protocol_pixel_size(path) if pixel_size is None and protocol else None
        if stated is None:
            raise
    if warn is not None:
        warn(f"{path.name}: columns in pixels, converted at {stated:g} nm per pixel, the camera pixel size "
             f"that {protocol_path(path).name} states")
    return _read_table(path, stated, warn, text)


def _read_table(path: Path, pixel_size: float | None, warn, text: str) -> tuple[Localizations, TableLayout]:
    lines = text_lines(text)
    stripped = list(map(str.strip, lines))
    if "" in stripped or "#" in text:  # blank lines and comments are skipped
        header = _commented_header(lines, stripped) if "#" in text else None
        if header is not None:  # "# frame,x,y" over numbers: the header, not a comment
            lines[header] = stripped[header].lstrip("#").strip()
        keep = [k for k, c in enumerate(stripped) if c and (c[0] != "#" or k == header)]
        lines = [lines[k] for k in keep]
        linenos = np.asarray(keep, dtype=np.int64) + 1
    else:
        linenos = np.arange(1, len(lines) + 1)
    del text, stripped
    if not lines:
        raise DSIRError(f"{path}: the table is empty")
    delim = _sniff_delimiter(lines[0], lines[1] if len(lines) > 1 else None,
                             prefer="\t" if path.suffix.lower() == ".tsv" else None)

    def split(rows: list[str]) -> list[list[str]]:
        if delim is None:
            return [ln.split() for ln in rows]
        return list(csv.reader(rows, delimiter=delim))

    first = [c.strip() for c in _split_header(lines[0], delim)]
    has_header = not all(_is_number(c) for c in first if c != "")
    optional: dict[str, tuple[int, float]] = {}
    if has_header:
        cols = [_parse_header_name(c) for c in first]
        names = [c[0] for c in cols]
        body, linenos = lines[1:], linenos[1:]

        def find(cands: set[str]) -> int | None:
            for i, n in enumerate(names):
                if n in cands:
                    return i
            return None

        ifr, ix, iy = find(_FRAME_NAMES), find(_X_NAMES), find(_Y_NAMES)
        missing = [n for n, i in (("frame", ifr), ("x", ix), ("y", iy)) if i is None]
        if missing and {"axis-0", "axis-1"} <= set(first):
            raise DSIRError(f"{path}: napari's own points CSV (axis-0, axis-1, ...: layer coordinates in no stated "
                            "units), not a localization table; in napari, save localizations with File > Save "
                            "Selected Layers and the file type 'napari-dsir localizations', a ThunderSTORM CSV")
        if missing:
            raise DSIRError(
                f"{path}: missing column(s) {', '.join(missing)} "
                f"(found: {', '.join(c.strip() for c in first)})"
            )
        fx = _length_factor(path, cols[ix][1], first[ix], pixel_size)
        fy = _length_factor(path, cols[iy][1], first[iy], pixel_size)
        unitless = cols[ix][1] is None and cols[iy][1] is None
        optional = _optional_columns(path, cols, first, pixel_size, {ifr, ix, iy})
    else:
        if len(first) < 3:
            raise DSIRError(
                f"{path}: no header and {len(first)} column(s); expected frame, x, y (nm)"
            )
        ifr, ix, iy = 0, 1, 2
        fx = fy = 1.0
        unitless = True
        body = lines
    del lines
    layout = TableLayout(linenos, delim, ix, iy, fx, fy)
    if not body:  # an empty result (a run that found nothing): no rows, its columns
        empty = np.zeros(0)
        opt = {k: empty for k in optional}
        if "photons" in opt and "intensity" not in opt:
            opt["intensity"] = empty
        return Localizations(np.zeros(0, np.int64), empty, empty, **opt), layout
    need = max([ifr, ix, iy] + [i for i, _ in optional.values()])
    column, lens = _cells(body, delim, split)
    # rows too short: check (and report) only the rows before the first one
    short = np.flatnonzero(lens <= need)
    n_ok = int(short[0]) if len(short) else len(body)

    def values(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _to_float(column(i, n_ok))

    (fr, ok_f, _), (x, ok_x, _), (y, ok_y, _) = values(ifr), values(ix), values(iy)
    # Picasso's "export ThunderSTORM" (picasso.io.export_thunderstorm): ids and frames from 0, x and y its
    # pixel centres at integers, bkgstd 0 (ThunderSTORM's own ids start at 1)
    picasso_export = (has_header and {"id", "bkgstd", "uncertainty_xy"} <= set(names) and n_ok > 0
                      and lens[0] > names.index("id") and column(names.index("id"), 1)[0].strip() in ("0", "0.0"))
    opt = {}
    non_numeric = ~(ok_f & ok_x & ok_y)
    with np.errstate(over="ignore", invalid="ignore"):
        for key, (i, factor) in optional.items():
            v, ok, blank = values(i)
            non_numeric |= ~(ok | blank)  # an empty optional cell is NaN
            opt[key] = v * factor
        x, y = x * fx, y * fy
        not_finite = ~(np.isfinite(fr) & np.isfinite(x) & np.isfinite(y))
        bad_frame = (fr != np.floor(fr)) | (fr < 1) | (fr > 2.0**53)
    bad = np.flatnonzero(non_numeric | not_finite | bad_frame)
    if len(bad):
        k = int(bad[0])
        lineno, line = int(linenos[k]), body[k]
        if non_numeric[k]:
            raise DSIRError(f"{path}: line {lineno}: non-numeric value in {line.strip()!r}")
        if not_finite[k]:
            raise DSIRError(f"{path}: line {lineno}: NaN or infinite value")
        cell = column(ifr, n_ok)[k].strip()
        hint = f" ({PICASSO_EXPORT})" if picasso_export and fr[k] == 0 else ""
        raise DSIRError(f"{path}: line {lineno}: frame {cell} is not a 1-based frame number{hint}")
    if n_ok < len(body):
        raise DSIRError(
            f"{path}: line {int(linenos[n_ok])} has {int(lens[n_ok])} column(s), expected {need + 1}"
        )
    if "photons" in opt and "intensity" not in opt:
        opt["intensity"] = opt["photons"].copy()
    if warn is not None and has_header and "z" in names:
        warn(f"{path.name}: its z column is not used (napari-dsir localizes, renders and scores in 2-D: x, y)")
    if warn is not None and picasso_export:
        warn(f"{path}: ids from 0, as {PICASSO_EXPORT}; its frames are read as 1-based (each is one frame early "
             "if they are not)")
    if warn is not None and unitless and max(np.abs(x).max(), np.abs(y).max()) < PIXEL_LIKE_NM:
        warn(f"{path}: x and y name no unit, so they are read as nm, and all lie within "
             f"{max(np.abs(x).max(), np.abs(y).max()):.4g} nm (a field under {PIXEL_LIKE_NM / 1000:g} um); "
             "if they are camera pixels, write the unit in the header (x [px], y [px]) and give the pixel size")
    return Localizations(fr.astype(np.int64) - 1, x, y, **opt), layout


# ------------------------------------------------------------------ writing

def _background_noise(background: np.ndarray, camera: dict | None) -> np.ndarray:
    """ThunderSTORM's "bkgstd [photon]" of a background of ``background``
    photons per pixel: its noise in photons, sqrt(F * b * qe + read
    variance) / qe, with the camera (`napari_dsir.camera.Camera.to_dict`)
    the fits used: F = 2 for an EMCCD's excess noise, the read noise
    referred to the input (e-); Poisson's sqrt(b) without one."""
    from ..camera import Camera

    try:
        cam = Camera.from_dict(camera) if isinstance(camera, dict) else None
    except DSIRError:
        cam = None
    excess, qe, read = (cam.excess_noise, cam.qe, cam.read_variance_e) if cam is not None else (1.0, 1.0, 0.0)
    with np.errstate(invalid="ignore"):
        return np.sqrt(excess * np.maximum(background, 0.0) * qe + read) / qe


def _csv_columns(locs: Localizations, intensity_unit: str,
                 camera: dict | None = None) -> list[tuple[str, np.ndarray, str]]:
    """(quoted header cell, values, %-format) of each written column, in
    ThunderSTORM's order; the uncertainty under both its names (ThunderSTORM
    1.3's "uncertainty_xy [nm]", which its rendering, Picasso's import and
    locan read, and the older "uncertainty [nm]")."""
    cols: list[tuple[str, np.ndarray, str]] = [
        ('"id"', np.arange(1, len(locs) + 1), "%d"),
        ('"frame"', locs.frame + 1, "%d"),
        ('"x [nm]"', locs.x, "%.3f"),
        ('"y [nm]"', locs.y, "%.3f"),
    ]
    if locs.sigma is not None:
        cols.append(('"sigma [nm]"', locs.sigma, "%.3f"))
    if locs.photons is not None:
        cols.append(('"intensity [photon]"', locs.photons, "%.6g"))
    elif locs.intensity is not None:
        cols.append((f'"intensity [{intensity_unit}]"', locs.intensity, "%.6g"))
    if locs.background is not None:
        cols.append(('"offset [photon]"', locs.background, "%.6g"))
        cols.append(('"bkgstd [photon]"', _background_noise(locs.background, camera), "%.6g"))
    if locs.uncertainty is not None:
        cols.append(('"uncertainty [nm]"', locs.uncertainty, "%.3f"))
        cols.append(('"uncertainty_xy [nm]"', locs.uncertainty, "%.3f"))
    if (locs.photons is not None and locs.intensity is not None
            and not np.array_equal(locs.intensity, locs.photons, equal_nan=True)):
        cols.append((f'"network intensity [{intensity_unit}]"', locs.intensity, "%.6g"))
    return cols


def _csv_pieces(locs: Localizations, intensity_unit: str, delimiter: str = ",", chunk: int = 100_000,
                camera: dict | None = None):
    """ThunderSTORM CSV text (1-based frames, nm) in pieces of ``chunk`` rows,
    each formatted by one %-operation over the block."""
    cols = _csv_columns(locs, intensity_unit, camera)
    yield delimiter.join(c[0] for c in cols) + "\n"
    row = delimiter.join(c[2] for c in cols) + "\n"
    for j in range(0, len(locs), chunk):
        k = min(j + chunk, len(locs))
        block = np.empty((k - j, len(cols)), dtype=object)
        for c, (_, v, fmt) in enumerate(cols):
            part = v[j:k]
            block[:, c] = part.astype(np.int64).tolist() if fmt == "%d" else part.astype(np.float64).tolist()
        text = (row * (k - j)) % tuple(block.ravel().tolist())
        if "nan" in text or "inf" in text:  # as Java writes them: ThunderSTORM's import parses NaN, not nan
            for py, java in (("nan", "NaN"), ("inf", "Infinity"), ("-inf", "-Infinity")):  # (a cell is a number)
                text = text.replace(delimiter + py, delimiter + java)
        yield text


def write_localizations(
    path: str | os.PathLike, locs: Localizations, overwrite: bool = False,
    intensity_unit: str = "a.u.", *, pixel_size: float | None = None,
    frame_shape: tuple[int, int] | None = None, n_frames: int | None = None,
    metadata: dict | list[dict] | None = None, warn=None,
) -> Path:
    """Write a localization table, atomically; the format follows the extension.

    ``.csv`` (and any other but HDF5; ``.tsv`` tab-separated): ThunderSTORM CSV (quoted header,
    1-based frames, nm): "id","frame","x [nm]","y [nm]", then those present
    of "sigma [nm]", "intensity [photon]" (photons), "offset [photon]"
    (background) with "bkgstd [photon]" (its noise, `_background_noise`: with
    the camera of ``metadata``, else Poisson's sqrt), and "uncertainty [nm]"
    with "uncertainty_xy [nm]" (the same, ThunderSTORM 1.3's name, which
    its rendering and Picasso's import read). Without photons the network's intensity is written
    as "intensity [<intensity_unit>]" ("photon" for ground truth, "a.u." for
    network output); with photons as "network intensity [...]" (unless it
    equals them: reading gives the photons as intensity too). Written in
    pieces (a table of millions of rows needs little extra memory).

    A ``metadata`` dict goes beside it, as ThunderSTORM's measurement
    protocol does (`protocol_path`: ``<name>-protocol.txt``, JSON): the
    camera under ThunderSTORM's ``cameraSettings`` names where it holds one
    (`camera_settings`), and the whole dict under ``napari-dsir``.

    ``.hdf5``/``.h5``: Picasso localizations + YAML (`picasso.write_picasso`),
    which needs ``pixel_size`` (nm) and ``frame_shape`` (Height, Width in
    camera px); ``n_frames`` and ``metadata`` go into the YAML; ``warn`` is
    told of the rows Picasso will leave out (`picasso.edge_message`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in HDF5_SUFFIXES:
        from .picasso import write_picasso

        return write_picasso(path, locs, pixel_size=pixel_size, frame_shape=frame_shape,
                             n_frames=n_frames, metadata=metadata, overwrite=overwrite,
                             intensity_unit=intensity_unit, warn=warn)
    delimiter = "\t" if suffix == ".tsv" else ","
    protocol = None
    if isinstance(metadata, dict):
        protocol = _protocol_text(metadata, pixel_size, path)
    with contextlib.ExitStack() as outputs:
        tmp = outputs.enter_context(atomic_output(path, overwrite))
        if protocol is not None:  # both files, or neither
            tmp_protocol = outputs.enter_context(atomic_output(protocol_path(path), overwrite))
            tmp_protocol.write_text(protocol, encoding="utf-8")
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            camera = metadata.get("camera") if isinstance(metadata, dict) else None
            for piece in _csv_pieces(locs, intensity_unit, delimiter, camera=camera):
                fh.write(piece)
    return path


def stated_metadata(path: str | os.PathLike, info: list | None = None) -> dict:
    """What napari-dsir stated of a table it wrote: its metadata dict (the
    napari-dsir step of a Picasso file's ``info``, `picasso.read_picasso`,
    else the protocol beside a CSV, `protocol_path`); {} where none."""
    import json

    if info is not None:  # every napari-dsir step, the later ones' keys winning (dsir drift adds one)
        steps = [d for d in info if isinstance(d, dict) and str(d.get("Generated by", "")).startswith("napari-dsir")]
        return {k: v for step in steps for k, v in step.items()}
    try:
        body = json.loads(protocol_path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    own = body.get("napari-dsir") if isinstance(body, dict) else None
    return dict(own) if isinstance(own, dict) else {}


def protocol_pixel_size(path: str | os.PathLike) -> float | None:
    """The camera pixel size (nm) the protocol beside a CSV states
    (`protocol_path`; ThunderSTORM's and ours: ``cameraSettings.pixelSize``),
    or None."""
    import json

    try:
        body = json.loads(protocol_path(path).read_text(encoding="utf-8"))
        value = float(body["cameraSettings"]["pixelSize"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def stated_frames(path: str | os.PathLike, info: list | None = None) -> tuple[int, int] | None:
    """The frames (start, stop; 0-based, stop excluded) a table's run
    covered, as napari-dsir states them (`stated_metadata`, `frames_of`);
    None where none is stated."""
    return frames_of(stated_metadata(path, info))


#: what a run states of itself beside its table (`run_protocol`), napari's
#: localizations layer carries and File > Save writes again
PROTOCOL_KEYS = ("model", "camera", "camera_origin", "localize", "camera_pixel_size", "pixel_size_origin",
                 "frame_shape", "movie_frames", "network_binning",
                 "psf_fwhm_nm", "hot_pixels", "bright_objects", "dead_pixels", "stripes", "saturated", "frames",
                 "background_shaped", "background_ratio")


def run_protocol(result) -> dict:
    """What a run (a `napari_dsir.reconstruct.Result`) states of itself
    beside its table (the CSV's protocol, the Picasso YAML's step; the
    napari layer's metadata): the program, the model, the camera the fits
    used and where it came from (given, metadata, assumed), the localizer,
    the camera pixel size (nm) and where it came from, the camera frame
    (height, width px), the movie's length (frames), the network's binning, the PSF
    measured, the defects found and the frames run (start, stop: 0-based,
    stop excluded; the table's own frames are 1-based). One dict for the
    CLI, the API (`napari_dsir.run.save_localizations`) and napari."""
    from .. import __version__

    info = result.info or {}
    return {"generator": f"napari-dsir {__version__}", "model": info.get("model"), "camera": info.get("camera"),
           "camera_origin": info.get("camera_origin"), "localize": info.get("localize"),
           "camera_pixel_size": info.get("camera_pixel_size"), "pixel_size_origin": info.get("pixel_size_origin"),
           "frame_shape": [int(v) // int(result.upsampling) for v in np.shape(result.sum_image)],
           "movie_frames": info.get("movie_frames"),
           "network_binning": info.get("binning"),
           "psf_fwhm_nm": info.get("psf_fwhm_nm"), "hot_pixels": info.get("hot_pixels"),
           "bright_objects": dict(zip(("objects", "detections_left_out"), info.get("halos", (0, 0)))),
           "dead_pixels": info.get("dead_pixels", 0), "stripes": info.get("stripes"),
           "saturated": info.get("saturated"), "frames": [int(result.start), int(result.stop)],
           **{k: info[k] for k in ("background_shaped", "background_ratio") if k in info}}


def frames_of(stated: dict) -> tuple[int, int] | None:
    """The frames (start, stop) in what napari-dsir stated of a table
    (`stated_metadata`: its "frames"), None where they are not there."""
    try:
        start, stop = (int(v) for v in stated.get("frames"))
    except (TypeError, ValueError, OverflowError):  # none, or not two whole numbers
        return None
    return (start, stop) if 0 <= start < stop else None


def protocol_path(path: str | os.PathLike) -> Path:
    """The protocol beside a CSV table, as ThunderSTORM names it: ``<name>-protocol.txt``."""
    p = Path(path)
    return p.with_name(f"{p.stem}-protocol.txt")


def output_paths(path: str | os.PathLike, metadata: bool = True) -> list[Path]:
    """Every file `write_localizations` writes for ``path``: the table, and the
    YAML beside a Picasso HDF5 file or (with ``metadata``) the protocol
    beside a CSV; for refusing existing ones before any work is done."""
    from .picasso import yaml_path

    p = Path(path)
    if p.suffix.lower() in HDF5_SUFFIXES:
        return [p, yaml_path(p)]
    return [p, protocol_path(p)] if metadata else [p]


#: camera settings (`napari_dsir.camera.Camera` fields) -> the names of
#: ThunderSTORM's protocol ``cameraSettings`` (photons2ADU: photoelectrons
#: per A/D count; gain: the EM gain, with ``isEmGain``)
THUNDERSTORM_CAMERA = {"baseline": "offset", "sensitivity": "photons2ADU", "em_gain": "gain",
                       "qe": "quantumEfficiency", "read_noise": "readoutNoise"}


def camera_settings(camera: dict | None, pixel_size: float | None = None) -> dict | None:
    """A camera dict (`napari_dsir.camera.Camera.to_dict`) under the names of
    ThunderSTORM's protocol ``cameraSettings`` (photons2ADU: photoelectrons
    per A/D count; gain: the EM gain), or None without one."""
    if not camera:
        return None
    absent = {"baseline": 0.0, "sensitivity": 1.0, "em_gain": 1.0, "qe": 1.0, "read_noise": 0.0}
    out = {name: float(camera.get(field, absent[field])) for field, name in THUNDERSTORM_CAMERA.items()}
    out["isEmGain"] = out[THUNDERSTORM_CAMERA["em_gain"]] > 1.0
    if pixel_size is not None:
        out["pixelSize"] = float(pixel_size)
    return out


def _protocol_text(metadata: dict, pixel_size: float | None, where: Path) -> str:
    import json

    from .. import __version__
    from .picasso import _plain

    body = {"version": f"napari-dsir {__version__}"}
    settings = camera_settings(metadata.get("camera"), pixel_size)
    if settings is not None:
        body["cameraSettings"] = settings
    body["napari-dsir"] = _finite(_plain(metadata, where))
    return json.dumps(body, indent=2, allow_nan=False) + "\n"


def _finite(obj):
    """NaN and infinities as null (JSON has no such numbers)."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj

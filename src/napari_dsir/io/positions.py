"""A localization table with new positions (a drift correction,
`with_positions`) or some of its rows (a filter, `with_rows`), written in
its own format with everything else kept: a text table's other cells,
header, comments and units (x and y to 0.001 nm in their unit; UTF-8; one
space between the cells of a table separated by spaces); a Picasso file's
other fields (z, group, sx/sy, lpx/lpy, ...), datasets and YAML steps, with
a step of ours added.

Positions are nm, one per row of `read_localizations` of the input, in its
order (README, "Coordinates and files").
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from ..errors import DSIRError
from ..locs import Localizations
from .files import atomic_output
from .tables import HDF5_SUFFIXES, protocol_path, read_table, table_text, text_lines


def same_format(src: str | os.PathLike, dst: str | os.PathLike) -> bool:
    """Whether ``dst`` is written in ``src``'s format (both Picasso HDF5, or
    both text tables of the same extension), so `with_positions` keeps every
    column."""
    a, b = Path(src).suffix.lower(), Path(dst).suffix.lower()
    return (a in HDF5_SUFFIXES) == (b in HDF5_SUFFIXES) and (a in HDF5_SUFFIXES or a == b)


def with_positions(src: str | os.PathLike, dst: str | os.PathLike, locs: Localizations, *,
                   pixel_size: float | None = None, step: dict | None = None, overwrite: bool = False,
                   source: tuple | None = None, warn=None) -> Path:
    """Write ``src`` as ``dst`` (the same format, see `same_format`) with the
    x and y of ``locs`` (nm; its rows those of ``src``, in order). ``step``:
    a dict added as the last of a Picasso file's YAML steps; ``pixel_size``
    (nm) for a file in pixels that does not state it; ``source``: a text
    table's (`table_text`, `TableLayout` of `read_table`) when read already;
    ``warn``: told of the rows Picasso will leave out of a Picasso ``dst``.
    Atomic."""
    src, dst = Path(src), Path(dst)
    if not same_format(src, dst):
        raise DSIRError(f"{dst}: not the format of {src}")
    if src.suffix.lower() in HDF5_SUFFIXES:
        return _picasso(src, dst, locs, pixel_size, step, overwrite, warn)
    return _text(src, dst, locs, pixel_size, overwrite, source)


def with_rows(src: str | os.PathLike, dst: str | os.PathLike, mask, *, pixel_size: float | None = None,
              step: dict | None = None, overwrite: bool = False, source: tuple | None = None, warn=None) -> Path:
    """Write ``src`` as ``dst`` (the same format, `same_format`) with the rows
    of ``mask`` only (a boolean per row of `read_localizations` of ``src``,
    in order): a text table's other lines (header, comments) and its
    protocol as they are, a Picasso file's other datasets and YAML steps with
    ``step`` added. ``pixel_size``, ``source``, ``warn``: as `with_positions`.
    Atomic."""
    import numpy as np

    src, dst = Path(src), Path(dst)
    if not same_format(src, dst):
        raise DSIRError(f"{dst}: not the format of {src}")
    mask = np.asarray(mask, bool)
    if src.suffix.lower() in HDF5_SUFFIXES:
        return _picasso(src, dst, None, pixel_size, step, overwrite, warn, rows=mask)
    lines, newline, lay = _source_lines(src, pixel_size, source)
    if len(mask) != len(lay.linenos):
        raise DSIRError(f"{src}: {len(mask)} rows chosen of its {len(lay.linenos)}")
    dropped = set((lay.linenos[~mask] - 1).tolist())
    return _write_lines(src, dst, [line for k, line in enumerate(lines) if k not in dropped], newline, overwrite)


def _source_lines(src: Path, pixel_size, source=None) -> tuple[list[str], str, object]:
    """A text table's lines, its line ending and its `TableLayout`
    (``source``: its text and layout, when read already)."""
    if source is None:
        text = table_text(src)
        lay = read_table(src, pixel_size, text=text)[1]
    else:
        text, lay = source
    return text_lines(text), "\r\n" if "\r\n" in text[:65536] else "\n", lay


def _write_lines(src: Path, dst: Path, lines: list[str], newline: str, overwrite) -> Path:
    """Write ``lines`` at ``dst`` (UTF-8, each ended by ``newline``) and
    copy the protocol beside ``src`` beside it (the run's camera and frames
    go with the table); atomic."""
    with atomic_output(dst, overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as fh:
            fh.write("".join(line + newline for line in lines))
    protocol = protocol_path(src)
    if protocol.is_file() and protocol_path(dst) != protocol:
        with atomic_output(protocol_path(dst), overwrite) as tmp:
            tmp.write_bytes(protocol.read_bytes())
    return dst


def _check_rows(src: Path, n: int, locs: Localizations) -> None:
    if len(locs) != n:
        raise DSIRError(f"{src}: {len(locs)} positions for its {n} rows")


def _decimals(nm_per_unit: float) -> int:
    """Decimals that keep 0.001 nm in a column of ``nm_per_unit``."""
    return 3 + max(0, math.ceil(math.log10(nm_per_unit)))


def _text(src: Path, dst: Path, locs: Localizations, pixel_size, overwrite, source=None) -> Path:
    lines, newline, lay = _source_lines(src, pixel_size, source)
    _check_rows(src, len(lay.linenos), locs)
    d = lay.delimiter
    xs = [f"{v:.{_decimals(lay.x_nm_per_unit)}f}" for v in locs.x / lay.x_nm_per_unit]
    ys = [f"{v:.{_decimals(lay.y_nm_per_unit)}f}" for v in locs.y / lay.y_nm_per_unit]
    for i, k in enumerate(lay.linenos - 1):
        line = lines[k]
        if d is None:
            cells = line.split()
        elif '"' in line:
            cells = next(csv.reader([line], delimiter=d))
        else:
            cells = line.split(d)
        cells[lay.x_column], cells[lay.y_column] = xs[i], ys[i]
        if d is None:
            lines[k] = " ".join(cells)
        elif '"' in line:
            out = io.StringIO()
            csv.writer(out, delimiter=d, lineterminator="").writerow(cells)
            lines[k] = out.getvalue()
        else:
            lines[k] = d.join(cells)
    return _write_lines(src, dst, lines, newline, overwrite)


def outputs_beside(src: str | os.PathLike, dst: str | os.PathLike) -> list[Path]:
    """The files `with_positions` writes beside ``dst`` (a Picasso file's
    YAML; the protocol of a CSV whose source has one): for refusing them."""
    from .picasso import yaml_path

    src, dst = Path(src), Path(dst)
    if dst.suffix.lower() in HDF5_SUFFIXES:
        return [yaml_path(dst)]
    return [protocol_path(dst)] if protocol_path(src).is_file() else []


def _picasso(src: Path, dst: Path, locs: Localizations | None, pixel_size, step, overwrite, warn=None,
             rows=None) -> Path:
    """``src`` as ``dst``: with the positions of ``locs``, or (``locs`` None)
    the ``rows`` of a boolean mask only."""
    import h5py
    import yaml

    from .picasso import _from_info, _plain, edge_message, movie_info, read_picasso, yaml_path

    old, info = read_picasso(src, pixel_size=pixel_size)
    if locs is not None:
        _check_rows(src, len(old), locs)
    elif len(rows) != len(old):
        raise DSIRError(f"{src}: {len(rows)} rows chosen of its {len(old)}")
    p = float(_from_info(info, "Pixelsize") or pixel_size)
    steps = _plain([*info, *([step] if step else [])], dst)
    ypath = yaml_path(dst)
    with atomic_output(dst, overwrite) as tmp_h5, atomic_output(ypath, overwrite) as tmp_yaml:
        with h5py.File(src, "r") as fi, h5py.File(tmp_h5, "w") as fo:
            for key in fi:  # every dataset and group, "locs" and "metadata" replaced
                if key not in ("locs", "metadata"):
                    fi.copy(key, fo)
            rec = fi["locs"][()]
            if locs is None:
                rec = rec[rows]
            else:
                rec["x"] = (locs.x / p - 0.5).astype(rec.dtype["x"])
                rec["y"] = (locs.y / p - 0.5).astype(rec.dtype["y"])
            edge = edge_message(rec, dst, movie_info(info)["frame_shape"])
            fo.create_dataset("locs", data=rec)
            if "metadata" in fi:
                fo.create_dataset("metadata", data=json.dumps(steps))
        with open(tmp_yaml, "w", encoding="utf-8") as fh:
            yaml.safe_dump_all(steps, fh, default_flow_style=False, sort_keys=False)
    if edge and warn is not None:  # (once written)
        warn(edge)
    return dst

"""Reading SMLM stacks and localization tables, writing results.

Arrays are (frame, y, x). Positions are in nm with the origin at the top-left
corner of pixel (0, 0); frames are 0-based in Python and 1-based in CSV files
(see CONVENTIONS.md of the project).
"""

from __future__ import annotations

import contextlib
import csv
import io as _io
import os
import re
import tempfile
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import tifffile

from .errors import DSIRError

DEFAULT_PIXEL_SIZE_NM = 100.0
TIFF_SUFFIXES = (".tif", ".tiff")

_UNIT_TO_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "um": 1e3,
    "µm": 1e3,
    "\u00b5m": 1e3,
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometre": 1e3,
    "mm": 1e6,
    "cm": 1e7,
    "m": 1e9,
}


# --------------------------------------------------------------------------- stacks


@dataclass
class Stack:
    """A lazily read movie of camera frames, axes (frame, y, x).

    ``pixel_size`` is the camera pixel size in nm, or ``None`` when the file
    does not say. Indexing with an int or a slice reads only those frames.
    """

    path: Path
    shape: tuple[int, int, int]
    dtype: np.dtype
    pixel_size: float | None
    _read: Callable[[int, int], np.ndarray] = field(repr=False)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def name(self) -> str:
        p = self.path
        return p.name if p.is_dir() else p.stem

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames ``start:stop`` as an array (frame, y, x) in the file's dtype."""
        n = len(self)
        stop = n if stop is None else min(stop, n)
        start = max(0, start)
        if stop <= start:
            return np.empty((0,) + self.shape[1:], dtype=self.dtype)
        return self._read(start, stop)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            k = int(key)
            if k < 0:
                k += len(self)
            if not 0 <= k < len(self):
                raise IndexError(f"frame {key} out of range for {len(self)} frames")
            return self.read(k, k + 1)[0]
        if isinstance(key, slice):
            frames = range(*key.indices(len(self)))
            if not frames:
                return self.read(0, 0)
            lo, hi = min(frames), max(frames) + 1
            return self.read(lo, hi)[[f - lo for f in frames]]
        if isinstance(key, tuple) and key:
            head, rest = self[key[0]], tuple(key[1:])
            return head[(slice(None),) + rest] if isinstance(key[0], slice) else head[rest]
        raise TypeError(f"cannot index a Stack with {key!r}")

    def iter_batches(
        self, batch_size: int, start: int = 0, stop: int | None = None
    ) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_frame, frames)`` in batches; memory stays bounded."""
        stop = len(self) if stop is None else min(stop, len(self))
        for b in range(start, stop, batch_size):
            yield b, self.read(b, min(b + batch_size, stop))

    def to_dask(self, chunk: int = 64):
        """A dask array (frame, y, x) over the file, one chunk per ``chunk`` frames."""
        import dask
        import dask.array as da

        blocks = []
        for b in range(0, len(self), chunk):
            e = min(b + chunk, len(self))
            d = dask.delayed(self.read)(b, e)
            blocks.append(da.from_delayed(d, (e - b,) + self.shape[1:], self.dtype))
        return da.concatenate(blocks, axis=0)


def _check_frame_array(shape, dtype, path, photometric=None) -> tuple[int, int, int]:
    """Validate frame axes and return the (frame, y, x) shape."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise DSIRError(f"{path}: pixel type {dtype} is not supported (need integer or float)")
    shape = tuple(int(s) for s in shape)
    if photometric is not None and "RGB" in str(photometric).upper():
        raise DSIRError(f"{path}: RGB image; SMLM stacks must be single-channel grey frames")
    while len(shape) > 3 and shape[0] == 1:
        shape = shape[1:]
    # squeeze singleton axes between frame and y (e.g. ImageJ TZCYX with Z=C=1)
    if len(shape) > 3 and all(s == 1 for s in shape[1:-2]):
        shape = (shape[0],) + shape[-2:]
    if len(shape) == 2:
        shape = (1,) + shape
    if len(shape) != 3:
        raise DSIRError(
            f"{path}: {len(shape)}-D data of shape {shape}; expected frames of (y, x) "
            "(a 2-D image or a 3-D stack)"
        )
    if shape[0] == 0:
        raise DSIRError(f"{path}: the stack has zero frames")
    if shape[1] < 4 or shape[2] < 4:
        raise DSIRError(f"{path}: frames of {shape[1]}x{shape[2]} pixels are too small")
    return shape  # type: ignore[return-value]


def _pixel_size_from_tiff(tif: tifffile.TiffFile) -> float | None:
    """Pixel size in nm from OME, ImageJ or resolution tags, or None."""
    # OME-XML
    try:
        ome = tif.ome_metadata
    except Exception:
        ome = None
    if ome:
        try:
            root = ET.fromstring(ome)
            for el in root.iter():
                if el.tag.endswith("Pixels") and "PhysicalSizeX" in el.attrib:
                    val = float(el.attrib["PhysicalSizeX"])
                    unit = el.attrib.get("PhysicalSizeXUnit", "µm")
                    factor = _UNIT_TO_NM.get(unit.strip().lower().replace("\u03bc", "\u00b5"))
                    if factor and val > 0:
                        return val * factor
        except (ET.ParseError, ValueError):
            pass
    page = tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]
    tags = page.tags
    xres = tags.get("XResolution")
    if xres is None:
        return None
    try:
        num, den = xres.value
        px_per_unit = num / den
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not px_per_unit or px_per_unit <= 0:
        return None
    ij = tif.imagej_metadata or {}
    unit = ij.get("unit")
    if unit is not None:
        unit = str(unit).strip().lower().replace("\\u00b5", "\u00b5").replace("\u03bc", "\u00b5")
        factor = _UNIT_TO_NM.get(unit)
        return factor / px_per_unit if factor else None
    runit = tags.get("ResolutionUnit")
    runit = int(runit.value) if runit is not None else 2
    if runit == 3:  # centimetre
        return 1e7 / px_per_unit
    return None  # inch or none: not a microscope calibration


def _is_folder_tiff(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")


def _natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _open_tiff(path: Path) -> Stack:
    try:
        tif = tifffile.TiffFile(path)
    except PermissionError as e:
        raise DSIRError(f"{path}: permission denied") from e
    except Exception as e:  # tifffile raises many types on garbage
        raise DSIRError(f"{path}: not a readable TIFF file ({type(e).__name__}: {e})") from e
    with tif:
        try:
            series = tif.series[0]
            raw_shape, dtype = series.shape, series.dtype
            photometric = getattr(tif.pages[0], "photometric", None)
            if photometric is not None:
                photometric = getattr(photometric, "name", photometric)
            pixel_size = _pixel_size_from_tiff(tif)
            npages = len(series.pages) if hasattr(series, "pages") else None
        except DSIRError:
            raise
        except Exception as e:
            raise DSIRError(f"{path}: corrupt or truncated TIFF ({type(e).__name__}: {e})") from e
    shape = _check_frame_array(raw_shape, dtype, path, photometric)
    frame_shape = shape[1:]

    # When the data is contiguous and uncompressed (tifffile can memory-map
    # it), read a slice straight from its offset in the file: only those
    # bytes are touched, and nothing stays mapped into this process (a
    # mapping would count every frame read in its resident memory).
    # Otherwise read page by page.
    contiguous = None
    try:
        mm = tifffile.memmap(path, mode="r")
        if int(np.prod(mm.shape)) == int(np.prod(shape)):
            contiguous = (int(mm.offset), mm.dtype)
        del mm
    except Exception:
        contiguous = None

    if contiguous is not None:
        frame_px = int(np.prod(frame_shape))

        def read(start: int, stop: int, _offset=contiguous[0], _dtype=contiguous[1]) -> np.ndarray:
            try:
                with open(path, "rb") as fh:
                    fh.seek(_offset + start * frame_px * _dtype.itemsize)
                    data = np.fromfile(fh, dtype=_dtype, count=(stop - start) * frame_px)
            except OSError as e:
                raise DSIRError(f"{path}: cannot read frames {start}-{stop - 1} ({e})") from e
            if data.size != (stop - start) * frame_px:
                raise DSIRError(f"{path}: truncated: frames {start}-{stop - 1} are missing")
            return data.reshape((stop - start,) + frame_shape)

    else:

        def read(start: int, stop: int) -> np.ndarray:
            out = np.empty((stop - start,) + frame_shape, dtype=dtype)
            try:
                with tifffile.TiffFile(path) as t:
                    pages = t.series[0].pages if hasattr(t.series[0], "pages") else t.pages
                    if npages is not None and len(pages) == shape[0]:
                        for i in range(start, stop):
                            out[i - start] = np.asarray(pages[i].asarray()).reshape(frame_shape)
                    else:  # unusual layout (e.g. one page holding all frames)
                        data = t.series[0].asarray().reshape(shape)
                        out[:] = data[start:stop]
            except Exception as e:
                raise DSIRError(f"{path}: corrupt or truncated TIFF ({type(e).__name__}: {e})") from e
            return out

    return Stack(Path(path), shape, np.dtype(dtype), pixel_size, read)


def _open_folder(path: Path) -> Stack:
    files = sorted((p for p in path.iterdir() if _is_folder_tiff(p)), key=_natural_key)
    if not files:
        raise DSIRError(f"{path}: the folder contains no .tif/.tiff files")
    first = _open_tiff(files[0])
    if len(first) != 1:
        raise DSIRError(
            f"{files[0]}: holds {len(first)} frames; a folder stack needs one frame per file"
        )
    frame_shape, dtype = first.shape[1:], first.dtype

    def read(start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start,) + frame_shape, dtype=dtype)
        for i in range(start, stop):
            f = files[i]
            try:
                img = tifffile.imread(f)
            except Exception as e:
                raise DSIRError(f"{f}: not a readable TIFF file ({type(e).__name__}: {e})") from e
            img = np.squeeze(img)
            if img.shape != frame_shape:
                raise DSIRError(
                    f"{f}: frame of shape {img.shape} differs from {files[0].name} "
                    f"{frame_shape}; all frames in a folder must have one size"
                )
            out[i - start] = img
        return out

    return Stack(Path(path), (len(files),) + frame_shape, dtype, first.pixel_size, read)


def open_stack(path: str | os.PathLike, pixel_size: float | None = None) -> Stack:
    """Open a multi-page TIFF or a folder of single-frame TIFFs, lazily.

    ``pixel_size`` (nm) overrides the file's metadata. Raises `DSIRError`
    with a message naming the file when it cannot be read.
    """
    p = Path(path)
    if not p.exists():
        raise DSIRError(f"{p}: no such file or folder")
    if p.is_dir():
        stack = _open_folder(p)
    else:
        if not os.access(p, os.R_OK):
            raise DSIRError(f"{p}: permission denied")
        stack = _open_tiff(p)
    if pixel_size is not None:
        if not (np.isfinite(pixel_size) and pixel_size > 0):
            raise DSIRError(f"pixel size must be a positive number of nm, got {pixel_size}")
        stack.pixel_size = float(pixel_size)
    return stack


def resolve_pixel_size(stack: Stack, warn: bool = True) -> float:
    """The stack's pixel size in nm, or the 100 nm default with a warning."""
    if stack.pixel_size is None:
        if warn:
            warnings.warn(
                f"{stack.path}: no pixel size in the file; assuming "
                f"{DEFAULT_PIXEL_SIZE_NM:g} nm (set it with --pixel-size)",
                stacklevel=2,
            )
        return DEFAULT_PIXEL_SIZE_NM
    return float(stack.pixel_size)


def read_stack(path: str | os.PathLike) -> np.ndarray:
    """Read a whole stack into memory as (frame, y, x)."""
    s = open_stack(path)
    return s.read()


# --------------------------------------------------------------------------- outputs


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False):
    """Yield a temporary path beside ``path``; rename it into place on success.

    An existing ``path`` is refused unless ``overwrite``. On any error the
    temporary file is removed, so no partial output is ever left behind.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise DSIRError(f"{path}: already exists (use --overwrite to replace it)")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise DSIRError(f"{path}: the folder {parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=parent)
    os.close(fd)
    tmp = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual mode
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.errno == 28:
            raise DSIRError(f"{path}: no space left on the device") from e
        raise DSIRError(f"{path}: cannot write ({e.strerror or e})") from e
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_tiff(
    path: str | os.PathLike, image: np.ndarray, pixel_size: float, overwrite: bool = False,
    dtype="float32",
) -> Path:
    """Write an image (y, x) or stack (frame, y, x) as an ImageJ TIFF that
    carries its pixel size (nm), atomically."""
    data = np.asarray(image, dtype=dtype)
    px_um = pixel_size / 1000.0
    with atomic_output(path, overwrite) as tmp:
        tifffile.imwrite(
            tmp,
            data,
            imagej=True,
            resolution=(1.0 / px_um, 1.0 / px_um),
            metadata={"unit": "um", "axes": "YX" if data.ndim == 2 else "TYX"},
        )
    return Path(path)


# --------------------------------------------------------------------------- tables


@dataclass
class Localizations:
    """A table of positions: 0-based ``frame``, ``x`` and ``y`` in nm.

    ``intensity`` is optional (photons for ground truth, network output for
    DSIR localizations).
    """

    frame: np.ndarray
    x: np.ndarray
    y: np.ndarray
    intensity: np.ndarray | None = None

    def __post_init__(self):
        self.frame = np.asarray(self.frame, dtype=np.int64).ravel()
        self.x = np.asarray(self.x, dtype=np.float64).ravel()
        self.y = np.asarray(self.y, dtype=np.float64).ravel()
        if self.intensity is not None:
            self.intensity = np.asarray(self.intensity, dtype=np.float64).ravel()
        n = len(self.frame)
        if len(self.x) != n or len(self.y) != n or (
            self.intensity is not None and len(self.intensity) != n
        ):
            raise ValueError("frame, x, y (and intensity) must have the same length")

    def __len__(self) -> int:
        return len(self.frame)

    @classmethod
    def empty(cls) -> "Localizations":
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))

    @classmethod
    def concatenate(cls, parts: list["Localizations"]) -> "Localizations":
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        inten = None
        if all(p.intensity is not None for p in parts):
            inten = np.concatenate([p.intensity for p in parts])
        return cls(
            np.concatenate([p.frame for p in parts]),
            np.concatenate([p.x for p in parts]),
            np.concatenate([p.y for p in parts]),
            inten,
        )

    def select(self, mask) -> "Localizations":
        return Localizations(
            self.frame[mask], self.x[mask], self.y[mask],
            None if self.intensity is None else self.intensity[mask],
        )

    def frames_yx(self) -> np.ndarray:
        """(n, 3) array of (frame, y, x): napari points data in nm world units."""
        return np.column_stack([self.frame.astype(float), self.y, self.x])


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
                    raise DSIRError(
                        f"{path}: column '{first[i].strip()}' is in pixels; "
                        "give the pixel size (nm) to convert it"
                    )
                factors.append(float(pixel_size))
            elif unit.replace("\u03bc", "\u00b5") in _UNIT_TO_NM:
                factors.append(_UNIT_TO_NM[unit.replace("\u03bc", "\u00b5")])
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


def localizations_to_csv_text(locs: Localizations, intensity_unit: str = "a.u.") -> str:
    """ThunderSTORM-style CSV text (1-based frames, nm)."""
    return "".join(_csv_lines(locs, intensity_unit))


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

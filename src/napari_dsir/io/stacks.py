"""Camera stacks: multi-page TIFFs and folders of single-frame TIFFs, read lazily.

Arrays are (frame, y, x); the pixel size is in nm (README, "Coordinates and files").
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import threading
import weakref
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile

from ..camera import MICRO_MANAGER_CAMERA, camera_entries
from ..errors import DSIRError

DEFAULT_PIXEL_SIZE_NM = 100.0
TIFF_SUFFIXES = (".tif", ".tiff")


def check_pixel_size(value, name: str | None = None) -> float:
    """``value`` as a pixel size in nm: a finite number > 0, else a
    `DSIRError` that says so, after ``name`` (the argument's) when given
    (the one check of the CLI, the run path, the reader, the fitter,
    rendering, drift and FRC)."""
    where = f"{name}: " if name else ""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DSIRError(f"{where}pixel size must be a number of nm, got {value!r}") from None
    if not (np.isfinite(v) and v > 0):
        raise DSIRError(f"{where}pixel size must be a positive number of nm, got {value}")
    return v

UNIT_TO_NM =  {
    "pm": 1e-3,
    "picometer": 1e-3,
    "picometre": 1e-3,
    "\u00e5": 0.1,  # angstrom (the letter and the sign, U+212B, lower-cased)
    "angstrom": 0.1,
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometre": 1.0,
    "um": 1e3,
    "µm": 1e3,
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
    A compressed TIFF stays open between reads: `close` it (or use the stack
    as a context manager) to release the file; a finalizer closes it too.
    Stacks pickle (by path): each process opens its own file.
    """

    path: Path
    shape: tuple[int, int, int]
    dtype: np.dtype
    pixel_size: float | None
    _read: Callable[[int, int], np.ndarray] = field(repr=False)
    #: camera settings the file's metadata states, as written there (key ->
    #: value; `_camera_metadata`): `napari_dsir.camera.Camera.from_metadata`
    #: reads them; empty when it states none
    camera_metadata: dict = field(default_factory=dict, repr=False)
    #: what the user should know of how the file was read (a warning each;
    #: the run path and the napari reader show them)
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        """Close the file kept open for reading (a later read reopens it)."""
        close = getattr(self._read, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def name(self) -> str:
        """The file's name without its suffix (``.ome.tif`` as one), or the folder's."""
        p = self.path
        if p.is_dir():
            return p.name
        ome = next((e for e in (".ome.tif", ".ome.tiff") if p.name.lower().endswith(e)), None)
        return p.name[: -len(ome)] if ome else p.stem

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
        """A dask array (frame, y, x) over the file, one chunk per ``chunk``
        frames; `stack_of` finds this stack again from it."""
        import dask
        import dask.array as da

        blocks = []
        for b in range(0, len(self), chunk):
            e = min(b + chunk, len(self))
            d = dask.delayed(self.read)(b, e)
            blocks.append(da.from_delayed(d, (e - b,) + self.shape[1:], self.dtype))
        out = da.concatenate(blocks, axis=0)
        _DASK_STACKS[out.name] = self  # the array's graph holds the stack: the entry lives as long as it
        return out


#: dask array name -> the `Stack` it reads (`Stack.to_dask`, `stack_of`)
_DASK_STACKS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def stack_of(data) -> Stack | None:
    """The `Stack` whose file a dask array from `Stack.to_dask` reads (a
    napari layer from this plugin's reader), else None. Dask arrays are
    immutable: any other array, a slice or a computation on it included, has
    another name."""
    name = getattr(data, "name", None)
    if not isinstance(name, str) or not hasattr(data, "dask"):
        return None
    stack = _DASK_STACKS.get(name)
    if stack is None or tuple(data.shape) != tuple(stack.shape) or np.dtype(data.dtype) != stack.dtype:
        return None
    return stack


def _check_frame_array(shape, dtype, path, photometric=None, axes: str | None = None) -> tuple[int, int, int]:
    """Validate frame axes and return the (frame, y, x) shape; ``axes``
    (tifffile's letters, given for an OME-TIFF whose channels are an
    acquisition's, `_acquired_channels`) refuses several channels taken for
    frames."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "uif" or dtype.itemsize > 8:
        raise DSIRError(f"{path}: pixel type {dtype} is not supported (need integer or float)")
    shape = tuple(int(s) for s in shape)
    if photometric is not None and "RGB" in str(photometric).upper():
        raise DSIRError(f"{path}: RGB image; SMLM stacks must be single-channel grey frames")
    if axes and len(axes) == len(shape) and "C" in axes and shape[axes.index("C")] > 1:
        raise DSIRError(f"{path}: {shape[axes.index('C')]} channels (axes {axes}, shape {shape}); SMLM stacks are "
                        "one channel: save one channel as a (frame, y, x) stack (e.g. Fiji's Split Channels)")
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


def _ome_root(tif: tifffile.TiffFile):
    """The parsed OME-XML of a TIFF, or None (none, or not readable XML)."""
    try:
        ome = tif.ome_metadata
    except Exception:
        return None
    if not ome:
        return None
    try:
        return ET.fromstring(ome)
    except ET.ParseError:
        return None


_CHANNEL_KEYS = ("Name", "Fluor", "EmissionWavelength", "ExcitationWavelength")


def _acquired_channels(root) -> bool:
    """Whether an OME-XML (``root``, `_ome_root`; None: not OME) describes its
    channels (a name, a fluorophore, a wavelength), as microscopes write them:
    tifffile labels any 3-D stack it writes without axes as bare channels, and
    those are a movie's frames."""
    if root is None:
        return False
    return any(el.tag.endswith("Channel") and any(k in el.attrib for k in _CHANNEL_KEYS) for el in root.iter())


def _ome_pixels(root, image: int = 0, shape: tuple[int, ...] | None = None):
    """The OME-XML ``Pixels`` element of a TIFF's ``image``-th series, of
    ``shape`` (its frames', y and x last; None: not checked), or None.
    tifffile leaves out the Images it cannot read (no planes in the file,
    discontiguous), so its series are not always the OME Images in order:
    an Image of another shape is passed over for the first of this one."""
    pixels = [el for el in root.iter() if el.tag.endswith("Pixels")]
    if shape is None or len(shape) < 2:
        return (pixels[image:image + 1] or pixels[:1] or [None])[0]

    def size(el, ax):
        try:
            return int(el.attrib.get(f"Size{ax}", 1))
        except ValueError:
            return -1

    frames = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    same = [el for el in pixels if (size(el, "Y"), size(el, "X")) == tuple(shape[-2:])
            and size(el, "T") * size(el, "Z") * size(el, "C") in (frames, frames * size(el, "C"))]
    if image < len(pixels) and pixels[image] in same:
        return pixels[image]
    return same[0] if same else (pixels[image:image + 1] or pixels[:1] or [None])[0]


def _pixel_sizes_from_tiff(tif: tifffile.TiffFile, root=None, mm: dict | None = None, page=None, image: int = 0,
                           shape: tuple[int, ...] | None = None) -> tuple[float | None, float | None]:
    """Pixel size in nm along x and along y (each None where not stated) from
    OME (``root``: its parsed XML, `_ome_root`; the Pixels of the
    ``image``-th series, of ``shape``, `_ome_pixels`), Micro-Manager's
    ``PixelSizeUm`` (``mm``: its image metadata; 0 when uncalibrated; one
    size for both axes), ImageJ or the resolution tags of ``page`` (None:
    the first)."""
    el = _ome_pixels(root, image, shape) if root is not None else None
    return tuple(_pixel_size_along(tif, el, mm, axis, page) for axis in ("X", "Y"))


def _pixel_size_along(tif: tifffile.TiffFile, el, mm: dict | None, axis: str, page) -> float | None:
    """`_pixel_sizes_from_tiff` along ``axis`` ("X" or "Y"); ``el``: the OME Pixels or None."""
    if el is not None and f"PhysicalSize{axis}" in el.attrib:
        try:
            val = float(el.attrib[f"PhysicalSize{axis}"])
        except ValueError:
            val = 0.0
        unit = el.attrib.get(f"PhysicalSize{axis}Unit", "µm")
        factor = UNIT_TO_NM.get(unit.strip().lower().replace("\u03bc", "\u00b5"))
        if factor and val > 0:
            return val * factor
    try:
        um = float((mm or {}).get("PixelSizeUm", 0) or 0)
    except (TypeError, ValueError):
        um = 0.0
    if math.isfinite(um) and um > 0:
        return um * 1000.0
    tags = (page if page is not None else _first_page(tif)).tags
    xres = tags.get(f"{axis}Resolution")
    if xres is None:
        return None
    try:
        num, den = xres.value
        px_per_unit = num / den
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not px_per_unit or px_per_unit <= 0:
        return None
    unit = (tif.imagej_metadata or {}).get("unit")
    if unit is None:  # tifffile's own description, as written by imwrite(..., metadata={"unit": "um"})
        with contextlib.suppress(Exception):
            unit = next((m["unit"] for m in tif.shaped_metadata or () if isinstance(m, dict) and "unit" in m), None)
    if unit is not None:
        unit = str(unit).strip().lower().replace("\\u00b5", "\u00b5").replace("\u03bc", "\u00b5")
        factor = UNIT_TO_NM.get(unit)
        return factor / px_per_unit if factor else None
    runit = tags.get("ResolutionUnit")
    runit = int(runit.value) if runit is not None else 2
    # centimetre (TIFF's), millimetre and micrometre (tifffile's resolutionunit 4 and 5)
    factor = {3: 1e7, 4: 1e6, 5: 1e3}.get(runit)
    return factor / px_per_unit if factor else None  # inch or none: not a microscope calibration


_INFO_LINE = re.compile(r"^\s*([^=:]+?)\s*[=:]\s*(.+?)\s*$")


def _camera_metadata(tif: tifffile.TiffFile, root=None, mm: dict | None = None) -> dict:
    """Camera settings a TIFF's metadata states (`napari_dsir.camera.ALIASES`
    names: offset, baseline, sensitivity, EM gain, QE, read noise, ...), as
    written: OME-XML (``root``, `_ome_root`: DetectorSettings and Detector ``Offset``, Detector
    ``AmplificationGain``, and key-value annotations), ImageJ's description
    keys, its image properties and its "Info" text ("key = value" or "key:
    value" lines), and tifffile's JSON description
    (``tifffile.imwrite(..., metadata={...})``). The first source that names
    a setting wins. A bare "Gain" is not read (vendors write an sCMOS's
    analog gain under that name, Picasso an EM gain), nor is OME's ``Gain``.
    Micro-Manager's image metadata (``mm``, `_micro_manager_image`) adds
    its ``Camera`` and that device's properties: a Picasso camera configuration picks its
    settings by them, and a Hamamatsu camera's conversion factor is read
    (`napari_dsir.camera.micro_manager_entries`)."""
    found: dict = {}

    def take(entries) -> None:
        for k, v in camera_entries(entries, skip=("gain",)).items():
            found.setdefault(k, v)

    if root is not None:  # OME-XML (`_ome_root`)
        for suffix in ("DetectorSettings", "Detector"):  # the acquisition's before the instrument's
            for el in root.iter():
                if el.tag.endswith("}" + suffix) or el.tag == suffix:
                    take({k: el.attrib[k] for k in ("Offset", "AmplificationGain") if k in el.attrib})
        take({el.attrib["K"]: el.text or "" for el in root.iter()
              if (el.tag.endswith("}M") or el.tag == "M") and "K" in el.attrib})
    try:
        ij = tif.imagej_metadata or {}
    except Exception:
        ij = {}
    take(ij)
    if isinstance(ij.get("Properties"), dict):
        take(ij["Properties"])
    if isinstance(ij.get("Info"), str):
        lines = (_INFO_LINE.match(line) for line in ij["Info"].splitlines())
        take({m.group(1): m.group(2) for m in lines if m})
    try:
        shaped = tif.shaped_metadata or ()
    except Exception:
        shaped = ()
    for entry in shaped:
        take(entry)
    for k, v in _micro_manager_camera(mm or {}).items():
        found.setdefault(k, v)
    return found


def _micro_manager_image(tif: tifffile.TiffFile) -> dict:
    """Micro-Manager's metadata of the first image (TIFF tag 51123: 1.4's
    flat values, or 2.0's ``{"PropVal": value}``, flattened), {} when there
    is none or it cannot be read."""
    try:
        tag = tif.pages[0].tags.get(51123)
        meta = tag.value if tag is not None else None
        if isinstance(meta, (bytes, str)):
            meta = json.loads(meta.strip(b"\0" if isinstance(meta, bytes) else "\0"))
    except Exception:  # unreadable metadata is no metadata
        return {}
    if not isinstance(meta, dict):
        return {}
    return {k: v.get("PropVal") if isinstance(v, dict) else v for k, v in meta.items() if isinstance(k, str)}


def _micro_manager_camera(mm: dict) -> dict:
    """Micro-Manager's ``Camera`` and the properties of that device
    (``<camera>-<property>``: value, as text or a number) in its image
    metadata ``mm`` (`_micro_manager_image`); {} without a camera."""
    camera = mm.get(MICRO_MANAGER_CAMERA) or mm.get("Core-Camera")
    if not isinstance(camera, str) or not camera:
        return {}
    out = {MICRO_MANAGER_CAMERA: camera}
    out.update({k: v for k, v in mm.items() if k.startswith(camera + "-") and isinstance(v, (str, int, float))
                and not isinstance(v, bool)})
    return out


def is_folder_tiff(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in TIFF_SUFFIXES and not p.name.startswith(".")


def natural_key(p: Path):
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


class _ContiguousReader:
    """Frames of a contiguous, uncompressed TIFF, read straight from their
    offset in the file: only those bytes are touched, and nothing stays
    mapped into this process (a mapping would count every frame read in its
    resident memory). Picklable; holds no open file between reads."""

    def __init__(self, path: Path, offset: int, dtype: np.dtype, frame_shape: tuple[int, int]):
        self.path, self.offset, self.dtype, self.frame_shape = path, offset, dtype, frame_shape

    def __call__(self, start: int, stop: int) -> np.ndarray:
        path, frame_shape, _dtype = self.path, self.frame_shape, self.dtype
        frame_px = int(np.prod(frame_shape))
        try:
            with open(path, "rb") as fh:
                fh.seek(self.offset + start * frame_px * _dtype.itemsize)
                data = np.fromfile(fh, dtype=_dtype, count=(stop - start) * frame_px)
        except OSError as e:
            raise DSIRError(f"{path}: cannot read frames {start}-{stop - 1} ({e})") from e
        if data.size != (stop - start) * frame_px:
            raise DSIRError(f"{path}: truncated: frames {start}-{stop - 1} are missing")
        return data.reshape((stop - start,) + frame_shape)

    def close(self) -> None:
        pass


def _close_quietly(tif) -> None:
    try:
        tif.close()
    except Exception:
        pass


def _close_all_quietly(tifs) -> None:
    for tif in tifs:
        _close_quietly(tif)


class _PageReader:
    """Frames of a compressed (or otherwise non-contiguous) TIFF, page by page.

    One `tifffile.TiffFile` is opened on the first read and kept, with its
    pages indexed once, so reading frame k costs the same for every k (the
    file used to be reopened and all its pages parsed on every read: O(n^2)
    over a movie). A lock serialises reads from several threads (a napari
    worker and the viewer). Pickling drops the handle: each dask worker (or
    forked process) opens its own. A finalizer closes the file when the
    reader is garbage collected; `close` closes it now (a later read reopens).
    """

    def __init__(self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, paged: bool,
                 series: int | None = 0):  # None: every page of the file is a frame (`_movie_series`)
        self.path, self.shape, self.dtype, self.paged, self.series = path, shape, dtype, paged, series
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._reset_handle()

    def __getstate__(self):
        return {k: self.__dict__[k] for k in ("path", "shape", "dtype", "paged", "series")}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset()

    def _open(self) -> None:
        if self._tif is not None and self._pid == os.getpid():
            return
        self._tif = self._pages = None  # a forked child never shares its parent's file offset
        tif = tifffile.TiffFile(self.path)
        series = tif.series[self.series] if self.series is not None else None
        pages = series.pages if hasattr(series, "pages") else tif.pages
        # a series over several files (Micro-Manager's OME-TIFF split at 4 GB:
        # NAME_1.ome.tif, ...): tifffile closes the others once parsed; kept
        # open here, or every frame read would reopen its file (and warn)
        others = {} if not getattr(series, "is_multifile", False) else {
            id(t): t for t in (getattr(pg, "parent", tif) for pg in pages if pg is not None) if t is not tif}
        for other in others.values():
            other.filehandle.open()
        self._finalizer = weakref.finalize(self, _close_all_quietly, [tif, *others.values()])
        self._pages = pages if self.paged and len(pages) == self.shape[0] else None
        self._tif, self._pid = tif, os.getpid()

    def __call__(self, start: int, stop: int) -> np.ndarray:
        frame_shape = self.shape[1:]
        out = np.empty((stop - start,) + frame_shape, dtype=self.dtype)
        with self._lock:
            try:
                self._open()
                pages = self._pages
                if pages is not None:
                    for i in range(start, stop):
                        out[i - start] = np.asarray(pages[i].asarray()).reshape(frame_shape)
                else:  # unusual layout (e.g. one page holding all frames)
                    out[:] = self._tif.series[self.series].asarray().reshape(self.shape)[start:stop]
            except Exception as e:
                _need_codec(self.path, e)
                raise DSIRError(f"{self.path}: corrupt or truncated TIFF ({type(e).__name__}: {e})") from e
        return out

    def close(self) -> None:
        with self._lock:
            if self._finalizer is not None:
                self._finalizer()
            self._reset_handle()

    def _reset_handle(self) -> None:
        self._tif = self._pages = self._pid = self._finalizer = None


def _open_tiff(path: Path) -> Stack:
    try:
        tif = tifffile.TiffFile(path)
    except PermissionError as e:
        raise DSIRError(f"{path}: permission denied") from e
    except Exception as e:  # tifffile raises many types on garbage
        raise DSIRError(f"{path}: not a readable TIFF file ({type(e).__name__}: {e})") from e
    with tif:
        try:
            index, series_note = _movie_series(path, tif.series)
            if index is None:  # single images of one shape, one a series (written a frame at a time)
                series, keyframe = None, _first_page(tif)
                raw_shape, dtype, axes = (len(tif.pages),) + tuple(keyframe.shape), keyframe.dtype, None
                npages = len(tif.pages)
            else:
                series = tif.series[index]
                keyframe = _keyframe(series, tif)
                raw_shape, dtype, axes = series.shape, series.dtype, getattr(series, "axes", None)
                npages = len(series.pages) if hasattr(series, "pages") else None
            photometric = getattr(keyframe, "photometric", None)
            if photometric is not None:
                photometric = getattr(photometric, "name", photometric)
            ome = _ome_root(tif)  # parsed once, read by both
            mm = _micro_manager_image(tif)
            image = index or 0  # the movie's OME Image and tags: its own, not the first series'
            pixel_size, pixel_y = _pixel_sizes_from_tiff(tif, ome, mm, page=keyframe, image=image, shape=raw_shape)
            notes = _anisotropy_notes(pixel_size, pixel_y) + series_note
            camera = _camera_metadata(tif, ome, mm)
            if series is not None:
                _check_parts(path, series, ome)
        except DSIRError:
            raise
        except Exception as e:
            raise DSIRError(f"{path}: corrupt or truncated TIFF ({type(e).__name__}: {e})") from e
        contiguous = _contiguous_data(tif, series, path) if series is not None else None
        stated = _stated_images(tif, index or 0)  # (a cut-off file has fewer)
    shape = _check_frame_array(raw_shape, dtype, path, photometric, axes if _acquired_channels(ome) else None)
    frame = int(np.prod(shape[1:]))
    if stated and stated[0] > shape[0] * frame:  # (tifffile falls back to the pages it can read)
        n = f"{stated[0] // frame}" if stated[0] % frame == 0 else f"{stated[0] / frame:.1f} frames' worth of"
        raise DSIRError(f"{path}: corrupt or truncated TIFF: its {stated[1]} states {n} images and "
                        f"{shape[0]} can be read (a cut-off copy?): export or copy the file again")

    # Contiguous, uncompressed data (what tifffile could memory-map) is read
    # straight from its offset in the file; anything else page by page.
    if contiguous is not None and contiguous[2] == int(np.prod(shape)):
        reader = _ContiguousReader(Path(path), contiguous[0], contiguous[1], shape[1:])
    else:
        reader = _PageReader(Path(path), shape, np.dtype(dtype), npages is not None, index)
    return Stack(Path(path), shape, np.dtype(dtype), pixel_size, reader, camera, notes=notes)


def _stated_images(tif: tifffile.TiffFile, series: int) -> tuple[int, str] | None:
    """(the pixels the file states its movie holds, whose header states it):
    an ImageJ header's images times their pixels, or tifffile's shaped
    description of the series; None where neither says."""
    try:
        images = (tif.imagej_metadata or {}).get("images")
        if isinstance(images, int) and images > 0:
            page = _first_page(tif)
            return images * int(np.prod(page.shape[-2:])), "ImageJ header"
        shaped = tif.shaped_metadata or ()
        stated = shaped[series].get("shape") if series < len(shaped) else None
        if stated and all(isinstance(n, int) and n > 0 for n in stated):
            return int(np.prod(stated)), "tifffile description"
    except Exception:  # metadata that cannot be read states nothing
        pass
    return None


def _anisotropy_notes(x_nm: float | None, y_nm: float | None) -> tuple[str, ...]:
    """A note when the file states pixels that are not square (x and y sizes
    in nm more than 1 % apart): positions are computed with square pixels."""
    if not x_nm or not y_nm or abs(y_nm / x_nm - 1.0) <= 0.01:
        return ()
    return (
        f"the file states pixels of {x_nm:g} nm (x) by {y_nm:g} nm (y); napari-dsir treats camera "
        f"pixels as square and uses {x_nm:g} nm (x) for both axes (or the pixel size you give): "
        "re-sampled data should be given at the camera's own pixels",
    )


def _first_page(tif: tifffile.TiffFile):
    """The file's first page (tifffile's ``pages.first`` where it has it)."""
    return tif.pages.first if hasattr(tif.pages, "first") else tif.pages[0]


def _keyframe(series, tif):
    """The page that describes a series (its tags, its photometric)."""
    page = getattr(series, "keyframe", None)
    if page is None:
        pages = getattr(series, "pages", None)
        page = pages[0] if pages else _first_page(tif)
    return page


def _is_colour(series) -> bool:
    """A series of colour images (a preview): samples last, or RGB pages."""
    axes = getattr(series, "axes", "") or ""
    photometric = str(getattr(getattr(series, "keyframe", None), "photometric", "")).upper()
    return axes.endswith("S") or "RGB" in photometric


def _need_codec(path: Path, e: Exception) -> None:
    """Refuse by name frames whose compression tifffile decodes through the
    imagecodecs package (LZW, JPEG, ...) when it is missing."""
    if "imagecodecs" in str(e):
        raise DSIRError(f"{path}: its frames are compressed in a way that needs the imagecodecs package ({e}): "
                        "pip install imagecodecs") from e


def _frames_one_by_one(series, shapes, colour) -> bool:
    """Whether a TIFF's ``series`` are a movie's frames written one at a time
    (tifffile's shaped or generic series: one grey 2-D page each, of one
    shape and type, in this file). Never an OME, ImageJ or Micro-Manager
    file's series: those are positions, or a movie split over files."""
    kinds = {str(getattr(s, "kind", "")).lower() for s in series}
    return (kinds <= {"shaped", "generic"} and not any(colour) and len(set(shapes)) == 1 and len(shapes[0]) == 2
            and len({str(s.dtype) for s in series}) == 1
            and all(len(getattr(s, "pages", ())) == 1 and s.pages[0] is not None for s in series)
            and len(series[0].parent.pages) == len(series))


def _movie_series(path: Path, series) -> tuple[int | None, tuple[str, ...]]:
    """The index of the movie among a TIFF's ``series`` (tifffile's) and a
    note when the file holds others: one grey series with several frames
    beside single or colour images (a preview, a mean image) is the movie;
    single grey images of one shape and type, each a series (a movie written
    a frame at a time), are its frames: None (every page); several movies
    (a multi-position acquisition) are refused, as is a file of single
    images of different shapes."""
    if len(series) <= 1:
        return 0, ()
    shapes = [tuple(int(v) for v in s.shape) for s in series]
    listed = ", ".join(f"{i}: {'x'.join(map(str, sh))}" for i, sh in enumerate(shapes[:6]))
    listed += ", ..." if len(shapes) > 6 else ""
    colour = [_is_colour(s) for s in series]
    movies = [i for i, sh in enumerate(shapes) if not colour[i] and len(sh) >= 3 and sh[0] > 1]
    if _frames_one_by_one(series, shapes, colour):
        return None, (f"the file holds {len(shapes)} single images of {shapes[0][0]}x{shapes[0][1]} px, each a "
                      f"series (frames written one at a time): read as {len(shapes)} frames",)
    if len(movies) == 1:
        i = movies[0]
        return i, (f"the file holds {len(shapes)} image series ({listed}); series {i}, the only one with several "
                   "frames, is read as the movie and the others are left out",)
    raise DSIRError(f"{path}: holds {len(shapes)} image series ({listed}): several positions or acquisitions in "
                    "one file; napari-dsir reads one movie per file: save each series as its own TIFF (e.g. in Fiji: "
                    "File > Import > Bio-Formats, then save each)")


def _check_parts(path: Path, series, ome) -> None:
    """Refuse a series whose frames lie partly in files that are not there:
    an OME-TIFF split into parts (Micro-Manager's NAME_1.ome.tif, ... beyond
    4 GB) opened without them (tifffile would zero those frames)."""
    pages = getattr(series, "pages", None)
    if ome is None or pages is None:  # parts are named only by OME-XML (whose series lists its pages)
        return
    absent = [i for i, pg in enumerate(pages) if pg is None]
    if not absent:
        return
    named = sorted({el.attrib["FileName"] for el in ome.iter()
                    if el.tag.rsplit("}", 1)[-1] == "UUID" and "FileName" in el.attrib})
    gone = [n for n in named if not (Path(path).parent / n).exists()]
    where = f" in {', '.join(gone)}, not found beside it" if gone else ", which its parts do not hold"
    raise DSIRError(f"{path}: {len(absent)} of its {len(pages)} frames (from {absent[0]}) are{where}: "
                    "keep every part of the acquisition (NAME.ome.tif, NAME_1.ome.tif, ...) in one folder")


def _contiguous_data(tif: tifffile.TiffFile, series, path: Path) -> tuple[int, np.dtype, int] | None:
    """(offset, dtype, number of values) of the series when it lies in one
    uncompressed block that the file holds entirely (what `tifffile.memmap`
    accepts), else None."""
    try:
        offset = series.dataoffset
        if offset is None or series.dtype is None:
            return None
        dt = np.dtype(tif.byteorder + series.dtype.char)
        count = int(np.prod(series.shape))
        if int(offset) + count * dt.itemsize > os.path.getsize(path):
            return None  # truncated: read page by page, which says so
        return int(offset), dt, count
    except Exception:
        return None


class _FolderReader:
    """Frames of a folder of single-frame TIFFs, one file per frame (each
    opened and closed on its read). Picklable."""

    def __init__(self, files: list[Path], frame_shape: tuple[int, int], dtype: np.dtype):
        self.files, self.frame_shape, self.dtype = files, frame_shape, dtype

    def __call__(self, start: int, stop: int) -> np.ndarray:
        files, frame_shape = self.files, self.frame_shape
        out = np.empty((stop - start,) + frame_shape, dtype=self.dtype)
        for i in range(start, stop):
            f = files[i]
            try:
                img = tifffile.imread(f)
            except Exception as e:
                _need_codec(f, e)
                raise DSIRError(f"{f}: not a readable TIFF file ({type(e).__name__}: {e})") from e
            img = np.squeeze(img)
            if img.shape != frame_shape:
                raise DSIRError(
                    f"{f}: frame of shape {img.shape} differs from {files[0].name} "
                    f"{frame_shape}; all frames in a folder must have one size"
                )
            check_folder_dtype(f, img.dtype, files[0].name, self.dtype)
            out[i - start] = img
        return out

    def close(self) -> None:
        pass


def check_folder_dtype(f: Path, dtype, first_name: str, first_dtype) -> None:
    """Refuse a frame file whose pixels the first file's type cannot hold
    exactly (a uint16 frame after a uint8 one, a float after an integer)."""
    if not np.can_cast(np.dtype(dtype), np.dtype(first_dtype), "safe"):
        raise DSIRError(f"{f}: pixels of type {np.dtype(dtype)} where {first_name} has {np.dtype(first_dtype)}; "
                        "all frames in a folder must have one pixel type (export them again together)")


def numbering_gaps(files: list[Path]) -> str | None:
    """A note when the frame files are numbered (the last number of each
    name, one prefix) with numbers missing, else None (also when more are
    missing than there are files: timestamps or a stride, not gaps): frames
    are numbered by position, so after a gap they are not the file numbers."""
    parts = [re.fullmatch(r"(.*?)(\d+)(\D*)", f.stem) for f in files]
    if len(files) < 2 or not all(parts) or len({(m[1], m[3]) for m in parts}) != 1:
        return None
    numbers = sorted({int(m[2]) for m in parts})
    lo, hi = numbers[0], numbers[-1]
    n_missing = hi - lo + 1 - len(numbers)
    if n_missing == 0 or n_missing > len(numbers):  # more gaps than files: timestamps or a stride, not frames
        return None
    missing = []
    for a, b in zip(numbers, numbers[1:]):
        missing.extend(range(a + 1, min(b, a + 6)))
        if len(missing) >= 5:
            break
    shown = ", ".join(str(v) for v in missing[:5]) + (", ..." if n_missing > 5 else "")
    return (f"{files[0].parent}: the frame files are numbered {lo}..{hi} with {n_missing} missing ({shown}); "
            f"frames are counted in order, 1 to {len(files)}, so those after a gap are not the file numbers "
            "(a ground truth by file number will not match)")


def odd_names(files: list[Path]) -> list[Path]:
    """The files whose names do not follow most others' (each run of digits
    taken as a number: ``f001``, ``f12`` and ``f0100`` follow each other,
    ``MAX_f`` or ``AVG_f001`` do not): a projection or a copy saved beside
    the frames, not a frame. None (an empty list) where fewer than 3 files
    or no name is shared by most of them."""
    if len(files) < 3:
        return []
    shapes = [re.sub(r"\d+", "#", f.stem) for f in files]
    [(common, n)] = Counter(shapes).most_common(1)
    if n * 2 <= len(files):
        return []
    # the first frame unnumbered beside img_1, img_2 (or "frame (2)", "frame (3)"): a frame
    bare = re.sub(r"[\s_.(-]*#\)?", "", common)
    return [f for f, sh in zip(files, shapes) if sh not in (common, bare)]


def _open_folder(path: Path) -> Stack:
    files = sorted((p for p in path.iterdir() if is_folder_tiff(p)), key=natural_key)
    if not files:
        raise DSIRError(f"{path}: the folder contains no .tif/.tiff files")
    odd = odd_names(files)
    if odd:  # (read as frames, one sorted first shifted every frame's number by one)
        files = [f for f in files if f not in odd]
        shown = ", ".join(f.name for f in odd[:3]) + (", ..." if len(odd) > 3 else "")
        left_out = (f"{path}: {len(odd)} file{'s' if len(odd) > 1 else ''} whose name does not follow the "
                    f"frames' ({files[0].name}, ...) left out: {shown}; move {'them' if len(odd) > 1 else 'it'} "
                    "out of the folder, or rename, to silence this",)
    else:
        left_out = ()
    first = _open_tiff(files[0])
    first.close()
    if len(first) != 1:
        raise DSIRError(
            f"{files[0]}: holds {len(first)} frames; a folder stack needs one frame per file"
        )
    frame_shape, dtype = first.shape[1:], first.dtype
    reader = _FolderReader(files, frame_shape, dtype)
    gaps = numbering_gaps(files)
    return Stack(Path(path), (len(files),) + frame_shape, dtype, first.pixel_size, reader, first.camera_metadata,
                 notes=first.notes + left_out + ((gaps,) if gaps else ()))


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
        stack.pixel_size = check_pixel_size(pixel_size)
    return stack

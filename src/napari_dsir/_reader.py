"""napari reader: SMLM TIFF stacks, folders of single-frame TIFFs, localization tables.

`napari_get_reader` returns None for anything it cannot read (it never raises),
so napari can fall back to another reader; for a TIFF, a folder or a table it
was meant for it also shows a napari warning saying why. Everything that can
fail (headers, the frames sampled for contrast, the frame sizes of a folder)
is checked before the reader is returned, so reading never fails half-way.
Stacks open lazily as dask arrays.
Image layers have scale = pixel size (nm) and translate = half a pixel, so that
positions in nm (origin at the corner of pixel 0, CONVENTIONS.md) overlay them;
points layers hold (frame, y, x) in nm.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import DSIRError
from .io import DEFAULT_PIXEL_SIZE_NM, TIFF_SUFFIXES, Localizations, open_stack, read_localizations
from .layers import Geometry, stack_contrast_limits


def show_warning(message: str) -> None:
    """napari's warning notification (imported late: this module has no Qt)."""
    from napari.utils.notifications import show_warning as _show

    _show(message)


def show_info(message: str) -> None:
    """napari's info notification (imported late)."""
    from napari.utils.notifications import show_info as _show

    _show(message)

TABLE_SUFFIXES = (".csv", ".txt", ".tsv")
DASK_CHUNK = 16  # frames per dask chunk: showing one frame reads at most this many


def _layer_supports(kw: str) -> bool:
    """Whether napari's layers accept ``kw`` (``units``, ``axis_labels``: napari >= 0.5)."""
    try:
        import inspect

        from napari.layers import Layer

        return kw in inspect.signature(Layer.__init__).parameters
    except Exception:  # pragma: no cover
        return False


def _axes_kwargs(ndim: int, nm: bool = True) -> dict:
    """Axis labels and units (world in nm; the frame axis is a plain index)."""
    out = {}
    if _layer_supports("axis_labels"):
        out["axis_labels"] = ("frame", "y", "x")[-ndim:]
    if nm and _layer_supports("units"):
        out["units"] = ("pixel", "nm", "nm")[-ndim:]
    return out


def _is_stack_path(p: Path) -> bool:
    return p.is_dir() or p.suffix.lower() in TIFF_SUFFIXES


def _is_table_path(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in TABLE_SUFFIXES


GENERIC_FOLDER_NAMES = ("sequence", "frames", "images", "tiffs", "tif", "data")


def layer_name(stack) -> str:
    """The file's name; for a folder with a generic name (EPFL ``sequence/``)
    the name of the folder above it."""
    p = Path(stack.path)
    if p.is_dir() and p.name.lower() in GENERIC_FOLDER_NAMES and p.resolve().parent.name:
        return p.resolve().parent.name
    return stack.name


def stack_layer_data(stack) -> tuple:
    """A napari image LayerData tuple for a `Stack` (lazy, nm world units)."""
    from_file = stack.pixel_size is not None
    p = float(stack.pixel_size) if from_file else DEFAULT_PIXEL_SIZE_NM
    geo = Geometry.for_pixel_size(p)
    n = len(stack)
    # contrast from a few frames only: a big stack is never read whole here
    idx = sorted({0, n // 2, n - 1})
    sample = np.stack([stack[i] for i in idx])
    if n == 1:
        data = stack.read(0, 1)[0]
        ndim = 2
    else:
        data = stack.to_dask(chunk=DASK_CHUNK)
        ndim = 3
    meta = {
        "pixel_size": p,
        "pixel_size_from_file": from_file,
        "source": str(stack.path),
    }
    kwargs = {
        "name": layer_name(stack),
        "scale": geo.camera_scale(ndim),
        "translate": geo.camera_translate(ndim),
        "contrast_limits": stack_contrast_limits(sample),
        "metadata": meta,
        "colormap": "gray",
    }
    kwargs.update(_axes_kwargs(ndim))
    return (data, kwargs, "image")


def points_layer_data(
    locs: Localizations,
    name: str,
    *,
    geometry: Geometry | None = None,
    ndim: int = 3,
    metadata: dict | None = None,
    size: float | None = None,
    symbol: str = "ring",
    color: str = "yellow",
) -> tuple:
    """A napari points LayerData tuple: data (frame, y, x) in nm.

    With ``geometry`` the layer transform maps nm to that image's world
    units (identity when the image is in nm, as from this plugin's reader).
    """
    if ndim == 3:
        data = locs.frames_yx()
    else:
        data = np.column_stack([locs.y, locs.x]) if len(locs) else np.zeros((0, 2))
    if len(locs) == 0:
        data = np.zeros((0, ndim))
    kwargs: dict = {"name": name, "metadata": dict(metadata or {})}
    kwargs["metadata"].setdefault("units", "nm")
    if geometry is not None:
        kwargs["scale"] = geometry.points_scale(ndim)
        kwargs["translate"] = geometry.points_translate(ndim)
        px = geometry.pixel_size
    else:
        px = kwargs["metadata"].get("pixel_size") or DEFAULT_PIXEL_SIZE_NM
    kwargs["size"] = float(size) if size else float(px) * 0.8
    # "ring": an outlined disc, so the image under it stays visible
    kwargs["symbol"] = "disc" if symbol == "ring" else symbol
    kwargs["face_color"] = "transparent" if symbol == "ring" else color
    kwargs["border_color"] = color
    kwargs["border_width"] = 0.15
    kwargs["border_width_is_relative"] = True
    # world units are nm unless an image in other units is given
    kwargs.update(_axes_kwargs(ndim, nm=geometry is None or geometry.scale[-1] == geometry.pixel_size))
    if ndim == 3:
        # a frame shows its own emitters; the summed (2-D) image shows all
        kwargs["out_of_slice_display"] = False
    if locs.intensity is not None and len(locs):
        kwargs["features"] = {"intensity": np.asarray(locs.intensity, dtype=float)}
    return (data, kwargs, "points")


def _check_folder_frames(folder: Path, stack) -> None:
    """All files of a folder stack have the first frame's size (else DSIRError).

    Only TIFF headers are read, and only one per distinct file size, so
    uncompressed frames (all the same number of bytes) cost one header.
    """
    import tifffile

    from .io import is_folder_tiff, natural_key

    files = sorted((f for f in folder.iterdir() if is_folder_tiff(f)), key=natural_key)
    want = tuple(stack.shape[1:])
    seen_sizes: set[int] = set()
    for f in files:
        size = f.stat().st_size
        if size in seen_sizes:
            continue
        seen_sizes.add(size)
        try:
            with tifffile.TiffFile(f) as tif:
                shape = tuple(s for s in tif.series[0].shape if s != 1)
        except Exception as e:
            raise DSIRError(f"{f}: not a readable TIFF file ({type(e).__name__}: {e})") from e
        if shape != want:
            raise DSIRError(
                f"{f}: frame of shape {shape} differs from {files[0].name} {want}; "
                "all frames in a folder must have one size"
            )


def _read_stack(path: Path):
    stack = open_stack(path)
    if path.is_dir():
        _check_folder_frames(path, stack)
    layer = stack_layer_data(stack)  # reads the first, middle and last frames

    def reader(_path=None):
        if stack.pixel_size is None:
            show_info(
                f"napari-dsir: {path.name} has no pixel size in its metadata; assuming "
                f"{DEFAULT_PIXEL_SIZE_NM:g} nm per pixel (set the right value in DSIR Reconstruct, "
                "or save the stack with ImageJ/OME calibration)"
            )
        return [layer]

    return reader


def _read_table(path: Path):
    note = None
    try:
        locs = read_localizations(path)
        px = None
    except DSIRError as e:
        if "in pixels" not in str(e):
            raise
        px = DEFAULT_PIXEL_SIZE_NM
        locs = read_localizations(path, pixel_size=px)
        note = (f"napari-dsir: {path.name} gives positions in pixels; assumed {px:g} nm "
                "per pixel (load it with DSIR Ground Truth to use an image's pixel size)")
    meta = {"source": str(path), "kind": "localizations"}
    if px is not None:
        meta["pixel_size"] = px
    layer = points_layer_data(locs, path.stem, metadata=meta)

    def reader(_path=None):
        if note:
            show_warning(note)
        return [layer]

    return reader


def _cannot_open(path: Path, err: BaseException) -> None:
    """A warning notification saying why napari-dsir declines ``path``."""
    msg = str(err) if isinstance(err, DSIRError) else f"{type(err).__name__}: {err}"
    try:
        show_warning(f"napari-dsir cannot open {path.name}: {msg}")
    except Exception:  # pragma: no cover - never raise from the reader
        pass


def napari_get_reader(path):
    """Return a reader for ``path`` (file, folder or list of them), or None."""
    try:
        paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
        if not paths:
            return None
        readers = []
        for p in paths:
            p = Path(p)
            if not p.exists():
                return None
            if _is_table_path(p):
                kind = _read_table
            elif _is_stack_path(p):
                kind = _read_stack
            else:
                return None
            try:
                readers.append(kind(p))
            except Exception as e:  # a file meant for us that we cannot read
                _cannot_open(p, e)
                return None
    except Exception:  # never raise: let napari try its other readers
        return None

    def read_all(_path):
        out = []
        for r in readers:
            out.extend(r())
        return out

    return read_all

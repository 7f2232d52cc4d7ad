"""napari reader: SMLM TIFF stacks, folders of single-frame TIFFs, localization tables.

`napari_get_reader` returns None for anything it cannot read (it never raises),
so napari can fall back to another reader; for a TIFF, a folder or a table it
was meant for it also shows a napari warning saying why. Everything that can
fail (headers, the frames sampled for contrast, the frame sizes of a folder)
is checked before the reader is returned, so reading never fails half-way.
Stacks open lazily as dask arrays. The layers themselves (scale = pixel size
in nm, translate = half a pixel, points (frame, y, x) in nm) come from
`napari_dsir.layers`, as the widgets' do.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import DSIRError, PixelSizeRequired
from .io import DEFAULT_PIXEL_SIZE_NM, TIFF_SUFFIXES, open_stack, read_localizations, read_picasso
from .io.picasso import movie_info
from .io.tables import HDF5_SUFFIXES, PROTOCOL_KEYS, frames_of, protocol_pixel_size, stated_metadata
from .layers import layer_name, points_layer_data, stack_layer_data


def show_warning(message: str) -> None:
    """napari's warning notification (imported late: this module has no Qt)."""
    from napari.utils.notifications import show_warning as _show

    _show(message)


def show_info(message: str) -> None:
    """napari's info notification (imported late)."""
    from napari.utils.notifications import show_info as _show

    _show(message)


TABLE_SUFFIXES = (".csv", ".txt", ".tsv", ".hdf5", ".h5")  # .hdf5: Picasso (YAML beside it)


def _is_stack_path(p: Path) -> bool:
    return p.is_dir() or p.suffix.lower() in TIFF_SUFFIXES


def _is_table_path(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in TABLE_SUFFIXES


def _check_folder_frames(folder: Path, stack) -> None:
    """All files of a folder stack have the first frame's size and a pixel
    type it holds (else DSIRError).

    Only TIFF headers are read, and only one per distinct file size, so
    uncompressed frames (all the same number of bytes) cost one header.
    """
    import tifffile

    from .io.stacks import check_folder_dtype

    files = stack._read.files  # (the frames: files whose names do not follow theirs are left out)
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
                dtype = tif.series[0].dtype
        except Exception as e:
            raise DSIRError(f"{f}: not a readable TIFF file ({type(e).__name__}: {e})") from e
        if shape != want:
            raise DSIRError(
                f"{f}: frame of shape {shape} differs from {files[0].name} {want}; "
                "all frames in a folder must have one size"
            )
        check_folder_dtype(f, dtype, files[0].name, stack.dtype)


def _read_stack(path: Path):
    stack = open_stack(path)
    if path.is_dir():
        _check_folder_frames(path, stack)
    layer = stack_layer_data(stack)  # reads the first, middle and last frames

    def reader(_path=None):
        for note in stack.notes:
            show_warning(f"napari-dsir: {note}")
        if stack.pixel_size is None:
            show_info(
                f"napari-dsir: {layer_name(stack)} has no pixel size in its metadata; assuming "
                f"{DEFAULT_PIXEL_SIZE_NM:g} nm per pixel (set the right value in DSIR Reconstruct, "
                "or save the stack with ImageJ/OME calibration)"
            )
        return [layer]

    return reader


def _read_table(path: Path):
    notes = []
    picasso = path.suffix.lower() in HDF5_SUFFIXES

    def read(px):
        if picasso:  # with its movie (pixel size, frame), for saving it back as a Picasso file
            locs, steps = read_picasso(path, pixel_size=px, warn=lambda m: notes.append(f"napari-dsir: {m}"))
            return locs, steps
        return read_localizations(path, pixel_size=px, warn=lambda m: notes.append(f"napari-dsir: {m}")), None

    try:
        (locs, steps), px = read(None), None
    except PixelSizeRequired:
        px = DEFAULT_PIXEL_SIZE_NM
        locs, steps = read(px)
        notes.append(f"napari-dsir: {path.name} gives positions in pixels; assumed {px:g} nm "
                     "per pixel (load it with DSIR Ground Truth to use an image's pixel size)")
    own = stated_metadata(path, steps)  # what napari-dsir stated, where it wrote the table
    movie = movie_info(steps) if picasso else {}
    # ground truth saved from DSIR Ground Truth reads back as such
    kind = own.get("kind") if own.get("kind") in ("localizations", "ground_truth") else "localizations"
    # what its run stated (the camera, the model, ...): saved again with it
    meta = {**{k: own[k] for k in PROTOCOL_KEYS if k in own and k != "frames"}, "source": str(path), "kind": kind}
    if px is not None:
        meta["pixel_size"] = px
    # the frames its run covered (scored by DSIR Ground Truth); a Picasso file of Picasso's own: its movie's
    # (napari-dsir's own state theirs: its older files' Frames was the run's stop, or the last frame + 1)
    n_frames = movie.get("n_frames")
    frames = frames_of(own) if own else ((0, n_frames) if n_frames else None)
    if not picasso and "camera_pixel_size" not in meta:  # a protocol beside it (ThunderSTORM's, our older ones)
        camera_px = protocol_pixel_size(path)
        if camera_px is not None:
            meta["camera_pixel_size"] = camera_px
    meta.update({k: v for k, v in (("camera_pixel_size", movie.get("pixel_size")),
                                   ("frame_shape", movie.get("frame_shape")), ("frames", frames),
                                   # Picasso's own Frames is its movie's length; napari-dsir's own files
                                   # state it as movie_frames (their older ones' Frames: the run's stop)
                                   ("movie_frames", None if own else n_frames)) if v is not None})
    camera_px = meta.get("camera_pixel_size")  # markers of 0.8 camera px, as a run's
    layer = points_layer_data(locs, path.stem, metadata=meta, size=0.8 * camera_px if camera_px else None)

    def reader(_path=None):
        for note in notes:
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

"""napari's File > Save for a localizations points layer: a ThunderSTORM CSV
(``.csv``, ``.tsv``, ``.txt``) or a Picasso HDF5 + YAML (``.hdf5``, ``.h5``),
as `dsir localize -o` writes them (`napari_dsir.io.write_localizations`),
with every feature the layer carries (photons, uncertainty, ...). napari's
own points CSV (axis-0, axis-1, ...) states no units and is not a table
that ThunderSTORM, Picasso or napari-dsir read. A file beside the table
(the protocol beside a CSV, the YAML beside a Picasso file) that is there
while the table is not belongs to something else, and is never replaced.

A Picasso file is in camera pixels: their size is the layer's camera pixel
size (a DSIR Reconstruct run's, or the pixel size a table in pixels was read
at), and its frame (Width, Height) the run's camera frame, else the smallest
that holds the positions.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import __version__
from .errors import DSIRError
from .io import write_localizations
from .io.files import outputs_together
from .io.picasso import smallest_frame
from .io.tables import HDF5_SUFFIXES, PROTOCOL_KEYS, output_paths
from .layers import locs_from_layer


class CannotSave(OSError):
    """Why napari-dsir cannot save a layer (an OSError: napari takes a
    writer's ValueError, as `DSIRError` is, for "no writer" and drops it)."""


def write_points(path: str, data, attributes: dict) -> list[str]:
    """Write a points layer (napari's ``data`` and layer ``attributes``) as a
    localization table at ``path``; returns ``[path]``. Replaces an existing
    file (napari's save dialog asks first). `CannotSave` says why not."""
    try:
        return _write_points(path, data, attributes)
    except (DSIRError, ValueError) as e:  # (a message that names the path already: once)
        text = str(e)
        text = text[len(str(path)) + 2:] if text.startswith(f"{path}: ") else text
        raise CannotSave(f"napari-dsir cannot save {Path(path).name}: {text}") from e


def write_points_layers(path: str, layer_data: list[tuple]) -> list[str]:
    """Write several points layers (napari's ``(data, attributes, type)``
    tuples), each as its own table beside ``path``: ``<stem>_<layer
    name><suffix>`` (characters a file name cannot hold become "_"), all or
    none (`io.files.outputs_together`); returns their paths. `CannotSave`
    says why not."""
    target = Path(path)
    paths = [target.with_name(f"{target.stem}_{_file_name(a.get('name', 'layer'))}{target.suffix}")
             for _, a, _ in layer_data]
    twice = sorted({q.name for q in paths if paths.count(q) > 1})
    if twice:
        raise CannotSave(f"napari-dsir cannot save the layers: more than one would be saved as {twice[0]}; "
                         "rename one")
    with outputs_together():  # every table, or none
        return [write_points(str(q), data, attributes)[0] for q, (data, attributes, _) in zip(paths, layer_data)]


def _file_name(name: str) -> str:
    """A layer's name as part of a file name."""
    return re.sub(r'[\\/:*?"<>|\x00-\x1f]', "_", str(name)).strip(" .") or "layer"


def _write_points(path: str, data, attributes: dict) -> list[str]:
    meta = attributes.get("metadata") or {}
    name = attributes.get("name", "the layer")
    table, *beside = output_paths(path)
    for side in beside:  # napari's dialog asked about the table only
        if side.exists() and not table.exists():
            raise DSIRError(f"{side} is there already and is not {table.name}'s (another table's, or a file of "
                            f"yours); save under another name")
    locs = locs_from_layer(data, features=attributes.get("features"), metadata=meta,
                           scale=attributes.get("scale"), translate=attributes.get("translate"),
                           units=attributes.get("units"), name=name)
    frames = meta.get("frames")
    # what the run stated of itself (`io.tables.run_protocol`), as `dsir localize` writes it
    stated = {k: meta[k] for k in PROTOCOL_KEYS if k in meta}
    kw: dict = {"metadata": {"generator": f"napari-dsir {__version__}", **stated, "layer": name,
                             **{k: meta[k] for k in ("kind", "source") if meta.get(k) is not None}}}
    if frames:  # the frames the run covered: read back, DSIR Ground Truth scores those
        kw["metadata"]["frames"] = [int(frames[0]), int(frames[1])]
    pixel = meta.get("camera_pixel_size") or meta.get("pixel_size")
    if pixel:  # a CSV's protocol states it (ThunderSTORM's cameraSettings.pixelSize)
        kw["pixel_size"] = float(pixel)
    if Path(path).suffix.lower() in HDF5_SUFFIXES:
        if not pixel:
            raise DSIRError(f"{path}: a Picasso file is in camera pixels and '{name}' states no camera pixel "
                            "size; save it as a .csv (nm)")
        shape = meta.get("frame_shape")
        if not shape:
            shape = smallest_frame(locs, pixel)
        last = int(locs.frame.max()) + 1 if len(locs) else 0  # a point drawn by hand may lie beyond the run
        ran = max(int(frames[1]), last) if frames else None  # Picasso's Frames: the movie's length where known
        kw.update(frame_shape=tuple(shape or (1, 1)),
                  n_frames=max(int(meta["movie_frames"]), last) if meta.get("movie_frames") else ran)
    unit = "photon" if meta.get("kind") == "ground_truth" else "a.u."  # a simulation's truth: photons
    write_localizations(path, locs, overwrite=True, intensity_unit=unit, warn=_notify, **kw)
    return [str(path)]


def _notify(message: str) -> None:
    """A warning in napari (what Picasso will leave out of a saved file)."""
    from napari.utils.notifications import show_warning

    show_warning(f"napari-dsir: {message}")

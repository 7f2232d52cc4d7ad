"""Layers for showing DSIR data in a viewer: data + kwargs, pure numpy, no Qt.

The one place that turns stacks, `Localizations` and reconstruction results
into napari LayerData tuples ``(data, kwargs, layer_type)``: the reader, the
sample data and the widgets all use it, so every layer has the same scale,
translate, colormap, axis labels, units and metadata. napari is not imported
at module level (only to ask whether its layers take ``units``).

Positions are nm with the origin at the top-left CORNER of camera pixel (0, 0)
(README, "Coordinates and files"). A viewer such as napari puts the CENTRE of pixel k at
``translate + k * scale``, so

* a camera layer of pixel size p nm has scale p and translate p / 2: the
  centre of pixel k sits at (k + 0.5) p, as the convention wants;
* a super-resolved layer (pixel p / u) has scale p / u and translate p / (2u);
* points layers keep their data in nm (frame, y, x), with scale 1, translate 0.

When the camera layer was opened in other world units (scale s, translate t,
e.g. pixels from napari's own TIFF reader), the same geometry is expressed in
those units: a position of ``n`` nm lies at ``t - s/2 + n * s / p`` in world
coordinates. `Geometry` carries that mapping so every output overlays its
input exactly, whatever the input's units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from .errors import DSIRError
from .io import DEFAULT_PIXEL_SIZE_NM
from .locs import OPTIONAL_COLUMNS, Localizations

DASK_CHUNK = 16  # frames per dask chunk: showing one frame reads at most this many
GENERIC_FOLDER_NAMES = ("sequence", "frames", "images", "tiffs", "tif", "data")


@dataclass(frozen=True)
class Geometry:
    """World placement of a camera image layer.

    ``scale`` and ``translate`` are the layer's (y, x) values in world units;
    ``pixel_size`` is the camera pixel size in nm; ``frame_scale`` and
    ``frame_translate`` place the frame axis (3-D stacks).
    """

    pixel_size: float
    scale: tuple[float, float]
    translate: tuple[float, float]
    frame_scale: float = 1.0
    frame_translate: float = 0.0

    @classmethod
    def for_pixel_size(cls, pixel_size: float) -> Geometry:
        """The geometry of a camera layer in nm (the plugin's own reader)."""
        p = float(pixel_size)
        return cls(p, (p, p), (p / 2, p / 2))

    @classmethod
    def from_layer(cls, scale, translate, pixel_size: float) -> Geometry:
        """From a layer's ``scale`` and ``translate`` (2 or 3 values, the last two y, x)."""
        scale = [float(v) for v in scale]
        translate = [float(v) for v in translate]
        fs = scale[-3] if len(scale) >= 3 else 1.0
        ft = translate[-3] if len(translate) >= 3 else 0.0
        return cls(float(pixel_size), (scale[-2], scale[-1]), (translate[-2], translate[-1]), fs, ft)

    @property
    def world_is_nm(self) -> bool:
        """Whether the layer's world units are nm (its scale is the pixel size)."""
        return math.isclose(self.scale[-1], self.pixel_size)

    def nm_from_world(self, world_yx) -> np.ndarray:
        """Positions (..., 2) in this layer's world coordinates as nm (corner origin)."""
        w = np.asarray(world_yx, dtype=float)
        s, t = np.asarray(self.scale, float), np.asarray(self.translate, float)
        return (w - t + s / 2) * self.pixel_size / s

    # -- camera layer

    def camera_scale(self, ndim: int = 2) -> tuple[float, ...]:
        return ((self.frame_scale,) if ndim == 3 else ()) + tuple(self.scale)

    def camera_translate(self, ndim: int = 2) -> tuple[float, ...]:
        return ((self.frame_translate,) if ndim == 3 else ()) + tuple(self.translate)

    # -- super-resolved layer, upsampling u

    def sr_scale(self, upsampling: int, ndim: int = 2) -> tuple[float, ...]:
        u = float(upsampling)
        yx = (self.scale[0] / u, self.scale[1] / u)
        return ((self.frame_scale,) if ndim == 3 else ()) + yx

    def sr_translate(self, upsampling: int, ndim: int = 2) -> tuple[float, ...]:
        """Same area as the camera layer: SR pixel j's centre at the corner
        of camera pixel 0 plus (j + 0.5) camera pixels / u."""
        u = float(upsampling)
        yx = tuple(t - s / 2 + s / (2 * u) for s, t in zip(self.scale, self.translate))
        return ((self.frame_translate,) if ndim == 3 else ()) + yx

    # -- points whose data are nm (frame, y, x)

    def points_scale(self, ndim: int = 3) -> tuple[float, ...]:
        """Scale that maps nm data to world units (1 when the world is nm)."""
        yx = (self.scale[0] / self.pixel_size, self.scale[1] / self.pixel_size)
        return ((self.frame_scale,) if ndim == 3 else ()) + yx

    def points_translate(self, ndim: int = 3) -> tuple[float, ...]:
        yx = tuple(t - s / 2 for s, t in zip(self.scale, self.translate))
        return ((self.frame_translate,) if ndim == 3 else ()) + yx


def contrast_limits(image, low: float = 1.0, high: float = 99.8, max_values: int = 2_000_000):
    """Percentile contrast limits ``(lo, hi)`` of an image, with ``hi > lo``.

    Large images are subsampled. For sparse super-resolved images (mostly
    zeros) the upper limit is taken over the non-zero pixels, so the
    structures are visible rather than saturated or black.
    """
    a = np.asarray(image, dtype=np.float64).ravel()
    a = a[np.isfinite(a)]
    if a.size == 0:
        return 0.0, 1.0
    if a.size > max_values:
        a = a[:: int(np.ceil(a.size / max_values))]
    lo = float(np.percentile(a, low))
    nz = a[a > lo]
    hi = float(np.percentile(nz, high)) if nz.size >= 10 else float(a.max())
    if not hi > lo:
        hi = lo + (abs(lo) * 1e-3 if lo else 1.0)
    return lo, hi


def stack_contrast_limits(frames, low: float = 0.5, high: float = 99.9):
    """Limits for a camera stack from a few sample frames (not the whole stack)."""
    a = np.asarray(frames, dtype=np.float64)
    lo = float(np.percentile(a, low))
    hi = float(np.percentile(a, high))
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


# --------------------------------------------------------------------------- pixel size and units

_NM_PER_UNIT = {"nm": 1.0, "nanometer": 1.0, "nanometre": 1.0,
                "um": 1000.0, "µm": 1000.0, "micrometer": 1000.0, "micrometre": 1000.0, "micron": 1000.0}


def nm_per_world_unit(units) -> float | None:
    """nm in one world unit of a layer whose (frame, y, x) or (y, x) axes
    have ``units`` (strings or pint units; the last one is x's): 1 for nm,
    1000 for um, None for pixels or anything unknown."""
    if units is None:
        return None
    units = list(units)
    if not units:
        return None
    return _NM_PER_UNIT.get(str(units[-1]).strip().lower())


def layer_pixel_size(metadata, scale, units=None) -> float | None:
    """The camera pixel size (nm) an image layer states, or None.

    Its x scale when its ``units`` say the world is nm (or um): what the
    layer shows, a scale the user set included (this plugin's reader and
    sample data set it to the pixel size); else its
    ``metadata["pixel_size"]``. A scale in pixels or unknown units is never
    taken as nm: None then, and `napari_dsir.run.resolve_pixel_size`
    decides (the default, with a warning). Feeds `RunRequest.source_pixel_size`.
    """
    per = nm_per_world_unit(units)
    if per is not None and scale is not None and len(scale):
        s = float(scale[-1]) * per
        if math.isfinite(s) and s > 0:
            return s
    value = (metadata or {}).get("pixel_size")
    if value is not None:
        try:
            v = float(value)
        except (TypeError, ValueError):
            v = math.nan
        if math.isfinite(v) and v > 0:
            return v
    return None


# --------------------------------------------------------------------------- layer kwargs


@cache
def layers_support(kw: str) -> bool:
    """Whether napari's layers accept ``kw`` (``units``, ``axis_labels``:
    napari >= 0.5). True when napari is not installed (plain data)."""
    try:
        import inspect

        from napari.layers import Layer
    except ImportError:
        return True
    return kw in inspect.signature(Layer.__init__).parameters


def axes_kwargs(ndim: int, nm: bool = True, units=None) -> dict:
    """Axis labels and units: y, x in ``units`` (another layer's, to overlay
    it with one set of units) or nm when ``nm`` (else napari's pixels); the
    frame axis is a plain index."""
    out = {}
    if layers_support("axis_labels"):
        out["axis_labels"] = ("frame", "y", "x")[-ndim:]
    if layers_support("units") and (units is not None or nm):
        yx = tuple(str(u) for u in units)[-2:] if units is not None else ("nm", "nm")
        out["units"] = (("pixel",) + yx)[-ndim:]
    return out


def layer_name(stack) -> str:
    """The file's name; for a folder with a generic name (EPFL ``sequence/``)
    the name of the folder above it."""
    p = Path(stack.path)
    if p.is_dir() and p.name.lower() in GENERIC_FOLDER_NAMES and p.resolve().parent.name:
        return p.resolve().parent.name
    return stack.name


def stack_layer_data(stack) -> tuple:
    """An image LayerData tuple for a `Stack`: lazy (dask) when it has
    several frames, world in nm, metadata ``pixel_size`` (the file's, else
    the default, with ``pixel_size_from_file`` False), ``source`` and, where
    the file states camera settings, ``camera`` (`Stack.camera_metadata`:
    runs on the layer use them, as on the file)."""
    from_file = stack.pixel_size is not None
    p = float(stack.pixel_size) if from_file else DEFAULT_PIXEL_SIZE_NM
    geo = Geometry.for_pixel_size(p)
    n = len(stack)
    # contrast from a few frames only: a big stack is never read whole here
    sample = np.stack([stack[i] for i in sorted({0, n // 2, n - 1})])
    if n == 1:
        data, ndim = stack.read(0, 1)[0], 2
    else:
        data, ndim = stack.to_dask(chunk=DASK_CHUNK), 3
    kwargs = {
        "name": layer_name(stack),
        "scale": geo.camera_scale(ndim),
        "translate": geo.camera_translate(ndim),
        "contrast_limits": stack_contrast_limits(sample),
        "metadata": {"pixel_size": p, "pixel_size_from_file": from_file, "source": str(stack.path),
                     **({"camera": dict(stack.camera_metadata)} if stack.camera_metadata else {})},
        "colormap": "gray",
    }
    kwargs.update(axes_kwargs(ndim))
    return (data, kwargs, "image")


def points_features(locs: Localizations) -> dict[str, np.ndarray]:
    """One feature per column of ``locs``: ``frame`` and every optional
    column present (intensity, photons, background, sigma, uncertainty), so
    the layer can be coloured or filtered by any of them."""
    out = {"frame": np.asarray(locs.frame, dtype=np.int64)}
    for name, values in locs.columns().items():
        out[name] = np.asarray(values, dtype=float)
    return out


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
    units=None,
) -> tuple:
    """A points LayerData tuple whose data are (frame, y, x) in nm
    (metadata ``units`` "nm"), features from `points_features`.

    With ``geometry`` the layer transform maps nm to that image's world
    units (identity when the image is in nm, as from this plugin's reader).
    ``symbol`` "ring" is an outlined disc, so the image under it stays
    visible. ``units``: that image's world units (see `axes_kwargs`).
    """
    if len(locs) == 0:
        data = np.zeros((0, ndim))
    elif ndim == 3:
        data = locs.frames_yx()
    else:
        data = np.column_stack([locs.y, locs.x])
    meta = dict(metadata or {})
    meta["units"] = "nm"
    kwargs: dict = {"name": name, "metadata": meta}
    if geometry is not None:
        kwargs["scale"] = geometry.points_scale(ndim)
        kwargs["translate"] = geometry.points_translate(ndim)
        px = geometry.pixel_size
    else:
        px = meta.get("pixel_size") or DEFAULT_PIXEL_SIZE_NM
    kwargs["size"] = float(size) if size else float(px) * 0.8
    kwargs["symbol"] = "disc" if symbol == "ring" else symbol
    kwargs["face_color"] = "transparent" if symbol == "ring" else color
    kwargs["border_color"] = color
    kwargs["border_width"] = 0.15
    kwargs["border_width_is_relative"] = True
    # world units are nm unless an image in other units is given
    kwargs.update(axes_kwargs(ndim, nm=geometry is None or geometry.world_is_nm, units=units))
    if ndim == 3:
        # a frame shows its own emitters; the summed (2-D) image shows all
        kwargs["out_of_slice_display"] = False
    kwargs["features"] = points_features(locs)
    # a point added by hand has no measured values (NaN: grey when coloured,
    # the median uncertainty when rendered; frame -1: its frame is its data's),
    # not a copy of another point's
    kwargs["feature_defaults"] = {k: (np.nan if v.dtype.kind == "f" else -1) for k, v in kwargs["features"].items()}
    return (data, kwargs, "points")


def result_layers(result, geometry: Geometry, name: str, *, ndim: int = 3, sum_image: bool = True,
                  frames: bool = False, localizations: bool = False, units=None) -> list[tuple]:
    """LayerData tuples for a reconstruction `Result` of the image ``name``
    placed by ``geometry``: "<name> DSIR" (sum image), "<name> DSIR frames"
    (per-frame stack, frame axis aligned with the input's) and "<name> DSIR
    localizations" (points, metadata kind "localizations"), each when asked
    for and present. ``ndim``: the input layer's (2 or 3); ``units``: the
    input layer's world units (None: nm when its scale is the pixel size),
    so that napari sees one set of units."""
    from .io.tables import run_protocol

    u = int(result.upsampling)
    protocol = {k: v for k, v in run_protocol(result).items() if k != "generator"}  # saved with the table
    meta = {
        **protocol,
        "pixel_size": float(result.pixel_size),
        "camera_pixel_size": geometry.pixel_size,
        "upsampling": u,
        "frames": tuple(protocol["frames"]),
        "source": name,
        "frame_shape": tuple(protocol["frame_shape"]),  # camera px (y, x)
    }

    def axes(n):
        return axes_kwargs(n, geometry.world_is_nm, units)

    out = []
    if frames and result.frames is not None:
        data = result.frames
        if ndim == 3:
            scale, translate = geometry.sr_scale(u, 3), list(geometry.sr_translate(u, 3))
            translate[0] = geometry.frame_translate + result.start * geometry.frame_scale
        else:
            data = data[0]
            scale, translate = geometry.sr_scale(u, 2), list(geometry.sr_translate(u, 2))
        out.append((data, dict(
            name=f"{name} DSIR frames", scale=scale, translate=tuple(translate),
            contrast_limits=contrast_limits(data), colormap="inferno", blending="additive",
            metadata=dict(meta, kind="dsir_frames"), **axes(data.ndim)), "image"))
    if sum_image:
        img = result.sum_image
        out.append((img, dict(
            name=f"{name} DSIR", scale=geometry.sr_scale(u, 2), translate=geometry.sr_translate(u, 2),
            contrast_limits=contrast_limits(img), colormap="inferno", blending="additive",
            metadata=dict(meta, kind="dsir_sum"), **axes(2)), "image"))
    if localizations and result.localizations is not None:
        pts = points_layer_data(
            result.localizations, f"{name} DSIR localizations", geometry=geometry,
            ndim=3 if ndim == 3 else 2, size=0.5 * geometry.pixel_size, symbol="ring", color="yellow",
            metadata=dict(meta, kind="localizations", pixel_size=geometry.pixel_size), units=units,
        )
        out.append(pts)
    return out


def points_array(data) -> np.ndarray:
    """Points data as a float (n, ndim) array; an empty layer as (0, 3)."""
    d = np.asarray(data, dtype=float)
    if d.size == 0:
        return np.zeros((0, d.shape[-1] if d.ndim == 2 and d.shape[-1] in (2, 3) else 3))
    return d.reshape(len(d), -1)


def locs_from_points(data, features=None) -> Localizations:
    """A `Localizations` from points data (frame, y, x) or (y, x) in nm (frame
    0 for 2-D data) and their features (a mapping or DataFrame; columns named
    as `Localizations`' optional ones are kept)."""
    d = points_array(data)
    if d.shape[1] == 2:
        d = np.column_stack([np.zeros(len(d)), d])
    cols = {}
    if features is not None and len(d):
        for name in OPTIONAL_COLUMNS:
            if name in features:
                cols[name] = np.asarray(features[name], dtype=float)
    return Localizations(np.rint(d[:, 0]).astype(np.int64), d[:, 2], d[:, 1], **cols)


def locs_from_layer(data, *, features=None, metadata=None, scale=None, translate=None, units=None,
                    name: str = "the layer", geometry: Geometry | None = None) -> Localizations:
    """The localizations (nm) of a points layer given by its parts (napari's
    layer attributes): a napari-dsir layer's data (metadata ``units`` "nm"),
    or the world positions of a layer whose world ``units`` are a length
    (one drawn over a napari-dsir image), or, given the ``geometry`` of the
    image they belong to, of a layer in pixels. A 2-D layer's frames are its
    ``frame`` feature's where it has one (a point added by hand: 0).
    Positions in pixels with no geometry (a layer from elsewhere) are
    refused (`DSIRError`)."""
    d = points_array(data)
    if (metadata or {}).get("units") != "nm":
        per = nm_per_world_unit(units)
        if per is None and geometry is None:
            unit = str(list(units)[-1]) if units is not None and len(units) else "pixel"
            held = "in pixels, not nm" if unit == "pixel" else f"in {unit}, which napari-dsir does not convert"
            raise DSIRError(f"'{name}' holds positions {held}; use a layer made by napari-dsir "
                            "(DSIR Reconstruct, or a table opened with napari-dsir), or one drawn over its image")
        n = d.shape[1]
        s = np.ones(n) if scale is None else np.asarray(scale, float)[-n:]
        t = np.zeros(n) if translate is None else np.asarray(translate, float)[-n:]
        d = d * s + t
        d[:, -2:] = d[:, -2:] * per if per is not None else geometry.nm_from_world(d[:, -2:])
    locs = locs_from_points(d, features)
    if d.shape[1] == 2 and features is not None and "frame" in features and len(d):
        frame = np.asarray(features["frame"], dtype=float)
        locs.frame = np.where(frame >= 0, np.rint(frame), 0).astype(np.int64)
    return locs


def nm_placement(metadata, scale, translate, units, ndim: int) -> tuple[tuple, tuple]:
    """(scale, translate) that place positions in nm (frame, y, x or y, x,
    as `locs_from_layer` gives them) where the points of that layer are."""
    if (metadata or {}).get("units") == "nm":
        return tuple(scale), tuple(translate)
    per = nm_per_world_unit(units)
    return (1.0,) * (ndim - 2) + (1.0 / per,) * 2, (0.0,) * ndim


def render_layer_data(image, pixel_size_nm: float, name: str, *, points_scale=(1.0, 1.0),
                      points_translate=(0.0, 0.0), metadata: dict | None = None, units=None) -> tuple:
    """An image LayerData tuple for a rendering (`napari_dsir.render.render`:
    (Y, X), or RGB (Y, X, 3)) whose pixel j spans [j p, (j+1) p) nm, placed
    like the points layer it came from (that layer's y/x ``points_scale`` and
    ``points_translate`` map nm to world units), so the two overlay."""
    p = float(pixel_size_nm)
    s = tuple(float(v) for v in points_scale[-2:])
    t = tuple(float(v) for v in points_translate[-2:])
    rgb = np.ndim(image) == 3
    kwargs = dict(
        name=name, scale=(p * s[0], p * s[1]), translate=(t[0] + p * s[0] / 2, t[1] + p * s[1] / 2),
        rgb=rgb, blending="additive", metadata=dict(metadata or {}, kind="render", pixel_size=p),
        **axes_kwargs(2, nm=s == (1.0, 1.0), units=units),
    )
    if not rgb:
        kwargs.update(colormap="magma", contrast_limits=contrast_limits(image))
    return (image, kwargs, "image")

"""Layer geometry for showing DSIR data in a viewer: pure numpy, no Qt, no napari.

Positions are nm with the origin at the top-left CORNER of camera pixel (0, 0)
(CONVENTIONS.md). A viewer such as napari puts the CENTRE of pixel k at
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

from dataclasses import dataclass

import numpy as np


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

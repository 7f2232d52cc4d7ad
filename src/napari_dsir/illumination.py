"""The background's shape over the field: an uneven illumination.

A laser beam lights the field unevenly (a Gaussian profile, several times
brighter in the middle than at the corners of a large field), and the
background under the emitters slopes with it. A fit that models the
background as flat over its window is pulled uphill, by several times its
Cramer-Rao bound on a steep slope (`benchmarks/results/illumination.md`).

The shape is measured once per run on a sample of frames in photons: each
frame smoothed over `PRE_SMOOTH_PX`, per pixel a low quantile over the
frames (an emitter lights a pixel in a minority of the frames), and a
Gaussian beam fitted to that map (a quadratic in x and y fitted to its
logarithm: 6 numbers over the whole field, so the map's noise and the
light of emitters average out). The fits use it
(`napari_dsir.fit.refine`'s ``background_shape``: each window's background
is its mean level times the shape there) where the beam explains the map
(`MIN_R2`: not the structures of a sample, whose haze of emitters that
blink most of the time also lifts the quantile) and slopes by at least
`UNEVEN_SLOPE`, and the network then sees the frames with the beam taken
out (`flatten`); elsewhere nothing changes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.ndimage import gaussian_filter

#: Gaussian smoothing (camera px) of each frame before the quantile: the
#: quantile of a few photons per pixel is otherwise mostly counting noise
PRE_SMOOTH_PX = 2.0
#: the quantile over the sample frames taken per pixel as its background
BACKGROUND_QUANTILE = 0.1
#: frames the map needs
MIN_FRAMES = 8
#: pixels a side the map needs (a beam is not measured on a few pixels)
MIN_SIZE = 8
#: smoothing (camera px) of the map that the beam is compared with (`MIN_R2`)
COMPARE_SMOOTH_PX = 4.0
#: share of the map's variance (of its logarithm, smoothed by
#: `COMPARE_SMOOTH_PX`) the beam must explain: simulated beams 1.5-6x, 0.97-0.99;
#: flat movies 0.2-0.6, filaments 0.25-0.3, Bundled Tubes HD 0.80
MIN_R2 = 0.9
#: relative slope (per camera px, the 95th percentile over the field) from
#: which the fits follow the beam: 1 % per px is +-3 % over a 7 px window
UNEVEN_SLOPE = 0.01
#: share of the map's median below which it is held (dark corners, masked
#: rows of a camera): a logarithm needs light
FLOOR = 0.02


class Illumination(NamedTuple):
    """What `measure` found: the background's ``shape`` (y, x; any scale) where
    the fits follow it, else None; the beam's ``slope`` (per px, 95th
    percentile) and brightest / darkest ``ratio`` over the field, and ``r2``,
    the share of the map it explains."""

    shape: np.ndarray | None
    slope: float
    ratio: float
    r2: float

    def to_dict(self) -> dict:
        return {"background_slope": self.slope, "background_ratio": self.ratio, "background_r2": self.r2,
                "background_shaped": self.shape is not None}


def background_map(frames_photons) -> np.ndarray | None:
    """(y, x) background (photons/px) of (frame, y, x) frames in photons:
    each frame smoothed by `PRE_SMOOTH_PX`, per pixel the
    `BACKGROUND_QUANTILE` over the frames, at least `FLOOR` x its median;
    None with fewer than `MIN_FRAMES` frames, fewer than `MIN_SIZE` px a
    side, or no light."""
    frames = np.asarray(frames_photons, dtype=np.float32)
    if frames.ndim != 3 or len(frames) < MIN_FRAMES or min(frames.shape[1:]) < MIN_SIZE:
        return None
    smooth = gaussian_filter(frames, (0, PRE_SMOOTH_PX, PRE_SMOOTH_PX), mode="nearest")
    low = np.quantile(smooth, BACKGROUND_QUANTILE, axis=0).astype(np.float64)
    level = float(np.median(low))
    if not np.isfinite(level) or level <= 0:
        return None
    return np.maximum(low, FLOOR * level)


def fit_beam(bg: np.ndarray) -> tuple[np.ndarray, float]:
    """A Gaussian beam fitted to the map ``bg`` (y, x): (the logarithm of the
    beam (y, x), the share of the variance of log(``bg`` smoothed by
    `COMPARE_SMOOTH_PX`) it explains)."""
    h, w = bg.shape
    yy, xx = np.mgrid[0:h, 0:w]
    u, v = (xx - (w - 1) / 2) / max(h, w), (yy - (h - 1) / 2) / max(h, w)
    terms = np.column_stack([np.ones(h * w), u.ravel(), v.ravel(), (u * u).ravel(), (u * v).ravel(),
                             (v * v).ravel()])
    coef, *_ = np.linalg.lstsq(terms, np.log(bg).ravel(), rcond=None)
    log_beam = (terms @ coef).reshape(h, w)
    seen = np.log(gaussian_filter(bg, COMPARE_SMOOTH_PX, mode="nearest"))
    total = float(np.var(seen))
    r2 = 1.0 - float(np.var(seen - log_beam)) / total if total > 0 else 0.0
    return log_beam, r2


def measure(frames_photons) -> Illumination | None:
    """The illumination of (frame, y, x) frames in photons (a sample of a
    movie, at least `MIN_FRAMES` of at least `MIN_SIZE` px a side); None
    where they tell none."""
    bg = background_map(frames_photons)
    if bg is None:
        return None
    log_beam, r2 = fit_beam(bg)
    gy, gx = np.gradient(log_beam)
    slope = float(np.quantile(np.hypot(gx, gy), 0.95))
    ratio = float(np.exp(log_beam.max() - log_beam.min()))
    shaped = r2 >= MIN_R2 and slope >= UNEVEN_SLOPE
    shape = np.exp(log_beam - log_beam.mean()) if shaped else None
    return Illumination(shape, slope, ratio, r2)


def flatten(photons, shape, camera):
    """(frame, y, x) frames in photons (torch) with the beam taken out, for
    the network: each frame's background level (the median of photons /
    shape, the shape scaled to median 1) times the shape subtracted, the
    rest divided by the relative noise there (the background's shot noise
    with the camera's excess and read noise) and the level added back. A
    flat background with even noise, as the network was trained on: it
    divides a movie by one noise level, which under a beam is too low for
    the bright middle (false detections, a haze in the sum image) and too
    high for the dark corners. The fits use the frames as they are."""
    import torch

    s = shape / shape.median()
    level = torch.clamp((photons / s).flatten(1).median(1).values, min=0.0)[:, None, None]

    def variance(light):  # photons^2
        return (camera.excess_noise * camera.qe * light + camera.read_variance_e) / camera.qe**2

    relative = torch.sqrt(variance(level * s).clamp(min=1e-6) / variance(level).clamp(min=1e-6))
    return (photons - level * s) / relative + level

"""Coordinates from super-resolved DSIR output.

Local maxima above a threshold in each frame's localization image, refined by
a weighted centroid; positions in nm (origin: top-left corner of camera pixel
(0, 0)), with the frame and the summed output around the peak as intensity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DSIRError
from .locs import Localizations

#: the bound (per axis, camera px) at which a crowded row's extra error is
#: ``crowded_error_px`` itself; it scales as (bound / this) ** ``crowded_error_power``
CROWDED_BOUND_REF_PX = 0.07
#: the PSF sigma (camera px) at which that error is ``crowded_error_px``
#: itself; it scales as (sigma / this) ** ``crowded_error_sigma_power`` (the
#: network's error is a share of the PSF's width: a wider PSF in pixels, a
#: larger error in pixels)
CROWDED_SIGMA_REF_PX = 1.1
#: the local densities of detections (per frame and 100 camera px^2, within
#: `DENSITY_RADIUS_PX`: `local_density`) at which ``crowded_error_density``
#: gives the factor of the network's error; the factor is 1 at the
#: reference, `CROWDED_DENSITY_REF`, and interpolated linearly in log-log
#: between them (the end values held beyond). Counted in the camera pixels
#: the network sees, not in um^2: with 160 nm pixels 4 /um^2 is 10 per
#: 100 px^2, as crowded for the network as 10 /um^2 on its 100 nm training
#: pixels (at 100 nm the two are the same number)
CROWDED_DENSITY_KNOTS = (0.5, 1.0, 2.0, 4.0, 8.0)
CROWDED_DENSITY_REF = 2.0
#: radius (camera px) of `local_density`
DENSITY_RADIUS_PX = 10
#: the distance to the nearest other detection of the frame, in PSF sigmas,
#: at which that error is ``crowded_error_px`` itself; it scales as
#: (distance / this) ** -``crowded_error_distance_power``, the distance
#: taken within `CROWDED_DISTANCE_RANGE` (a neighbour's light overlaps less
#: the farther it is; the factor is held beyond the range, where the
#: calibration movies have few rows)
CROWDED_DISTANCE_REF = 2.5
CROWDED_DISTANCE_RANGE = (1.0, 5.0)


def density_or_ref(density) -> np.ndarray:
    """``density`` (per frame and 100 camera px^2) as the network's error
    model reads it: at least 1e-3, and `CROWDED_DENSITY_REF` where not
    finite (a detection outside the frame)."""
    d = np.asarray(density, float)
    return np.where(np.isfinite(d), np.maximum(d, 1e-3), CROWDED_DENSITY_REF)


def sigma_or_ref(sigma_px) -> np.ndarray:
    """PSF ``sigma_px`` (camera px) as the network's error model reads it:
    `CROWDED_SIGMA_REF_PX` where not finite or not > 0 (a failed fit)."""
    sg = np.asarray(sigma_px, float)
    return np.where(np.isfinite(sg) & (sg > 0), sg, CROWDED_SIGMA_REF_PX)


def distance_factor(power: float, nearest_px, sigma_px) -> np.ndarray:
    """The factor of the network's error for a detection whose nearest other
    detection (in its frame) is ``nearest_px`` away (camera px; inf or NaN:
    none), with a PSF of ``sigma_px`` (camera px): (distance in sigmas,
    within `CROWDED_DISTANCE_RANGE`, / `CROWDED_DISTANCE_REF`) ** -power."""
    lo, hi = CROWDED_DISTANCE_RANGE
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.asarray(nearest_px, float) / sigma_or_ref(sigma_px)
    r = np.clip(np.where(np.isnan(r), hi, r), lo, hi)
    return (r / CROWDED_DISTANCE_REF) ** -float(power)


def density_factor(factors, density) -> np.ndarray:
    """The factor of the network's error at local ``density`` (detections per
    frame and 100 camera px^2; NaN: the reference's): ``factors`` at
    `CROWDED_DENSITY_KNOTS`, interpolated in log-log, held beyond the ends;
    no factors: 1."""
    d = np.asarray(density, float)
    f = check_density_factors(factors)
    if not len(f):
        return np.ones(d.shape)
    d = density_or_ref(d)
    return np.exp(np.interp(np.log(d), np.log(CROWDED_DENSITY_KNOTS), np.log(np.maximum(f, 1e-6))))


def crowded_extra(errors, power: float, neighbours, bound_px, density=None, density_factors=(), sigma_px=None,
                  sigma_power: float = 0.0, sigma_min_px: float = 0.0, nearest_px=None,
                  distance_power: float = 0.0) -> np.ndarray:
    """The network's own error (per axis, camera px) of detections with
    ``neighbours`` (>= 1) neighbours, a bare Cramer-Rao bound of
    ``bound_px``, a `local_density` of ``density`` (detections per frame
    and 100 camera px^2), a PSF sigma of ``sigma_px`` (camera px; NaN: the
    reference's) and the nearest other detection ``nearest_px`` away (camera
    px): ``errors[class] * (bound / CROWDED_BOUND_REF_PX) ** power *
    density_factor(density_factors, density) * (sigma /
    CROWDED_SIGMA_REF_PX) ** sigma_power * distance_factor(distance_power,
    nearest, sigma)`` (`LocalizeParams`), sigma taken as at least
    ``sigma_min_px``."""
    errors = check_crowded_error(errors)
    k = np.clip(np.asarray(neighbours), 1, len(errors)) - 1
    out = errors[k]
    if sigma_power and sigma_px is None:
        raise DSIRError("crowded_error_sigma_power needs the PSF sigma of the detections")
    if distance_power and (nearest_px is None or sigma_px is None):
        raise DSIRError("crowded_error_distance_power needs the nearest detection and the PSF sigma")
    with np.errstate(invalid="ignore", divide="ignore"):
        if power:
            out = out * (np.maximum(np.asarray(bound_px, float), 1e-6) / CROWDED_BOUND_REF_PX) ** float(power)
        if sigma_power or distance_power:
            sg = np.maximum(sigma_or_ref(sigma_px), float(sigma_min_px))
        if sigma_power:
            out = out * (sg / CROWDED_SIGMA_REF_PX) ** float(sigma_power)
        if distance_power:
            out = out * distance_factor(distance_power, nearest_px, sg)
    if len(density_factors):
        if density is None:
            raise DSIRError("crowded_error_density needs the local density of the detections")
        out = out * density_factor(density_factors, density)
    return out


def local_density(x_px, y_px, n_frames: int, shape: tuple[int, int], radius_px: int = DENSITY_RADIUS_PX
                  ) -> np.ndarray:
    """Detections per frame and 100 camera px^2 around each detection at
    (``x_px``, ``y_px``) camera px (origin: the corner of pixel (0, 0)): the
    other detections of the ``n_frames`` frames (of ``shape`` (y, x) px) in
    the square of pixels within ``radius_px`` of its own pixel, over the part
    of that square inside the frame (per um^2 at 100 nm pixels). Counted per
    pixel over all frames and summed by an integral image: the cost does not
    grow with the density or the radius. Positions outside the frame (its far
    edges count as inside, as in the refinement) get NaN."""
    H, W = (int(v) for v in shape)
    out = np.full(len(np.asarray(x_px)), np.nan)
    with np.errstate(invalid="ignore"):
        xf, yf = np.asarray(x_px, float), np.asarray(y_px, float)
        inside = np.isfinite(xf) & np.isfinite(yf) & (xf >= 0) & (xf <= W) & (yf >= 0) & (yf <= H)
    if not inside.any() or n_frames < 1:
        return out
    xi = np.minimum(np.floor(xf[inside]), W - 1).astype(np.int64)
    yi = np.minimum(np.floor(yf[inside]), H - 1).astype(np.int64)
    integral = np.zeros((H + 1, W + 1), np.int32)  # counts, then their sums (in place)
    np.add.at(integral, (yi + 1, xi + 1), 1)
    np.cumsum(integral, 0, out=integral)
    np.cumsum(integral, 1, out=integral)
    r = max(1, int(radius_px))
    y0, y1 = np.maximum(yi - r, 0), np.minimum(yi + r + 1, H)
    x0, x1 = np.maximum(xi - r, 0), np.minimum(xi + r + 1, W)
    near = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0] - 1  # not itself
    area = (y1 - y0) * (x1 - x0) / 100.0
    out[inside] = near / (int(n_frames) * area)
    return out


def check_density_factors(values) -> np.ndarray:
    """``crowded_error_density``: none, or one factor > 0 per
    `CROWDED_DENSITY_KNOTS`, else a `DSIRError`."""
    try:
        f = np.asarray(values, dtype=float).ravel() if len(values) else np.zeros(0)
    except (TypeError, ValueError):
        f = np.array([np.nan])
    if len(f) and (len(f) != len(CROWDED_DENSITY_KNOTS) or not (np.isfinite(f).all() and (f > 0).all())):
        raise DSIRError(f"crowded_error_density must be {len(CROWDED_DENSITY_KNOTS)} factors > 0 (at "
                        f"{', '.join(f'{k:g}' for k in CROWDED_DENSITY_KNOTS)} per 100 px^2) or none, got {values}")
    return f


def _as_float(value) -> float:
    """``value`` as a float, NaN where it is not a number."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def check_sigma_min(value) -> float:
    """``crowded_error_sigma_min_px`` as a float >= 0 (px), else a `DSIRError`."""
    v = _as_float(value)
    if not (math.isfinite(v) and v >= 0):
        raise DSIRError(f"crowded_error_sigma_min_px must be a number >= 0 (px), got {value}")
    return v


def check_crowded_error_power(power, name: str = "crowded_error_power") -> float:
    """A power of the network's error model (``name``) as a float within
    0..2, else a `DSIRError`."""
    value = _as_float(power)
    if not (0.0 <= value <= 2.0):
        raise DSIRError(f"{name} must be a number within 0..2, got {power}")
    return value


def check_crowded_error(values) -> np.ndarray:
    """``crowded_error_px`` (camera px per neighbour class) as an array of
    numbers >= 0, else a `DSIRError` that says so."""
    try:
        err = np.asarray(values, dtype=float).ravel() if len(values) else np.zeros(0)
    except (TypeError, ValueError):
        err = np.array([np.nan])
    if not (np.isfinite(err).all() and (err >= 0).all()):
        raise DSIRError(f"crowded_error_px must be numbers >= 0 (px), got {values}")
    return err


@dataclass
class LocalizeParams:
    """``threshold``: minimum peak value of the network output (its units);
    ``radius``: local-maximum radius in super-resolved pixels (peaks closer
    than this merge); ``window``: half-width of the centroid window (SR px);
    ``blur_fwhm``/``blur_width``: the Gaussian the training loss compares
    outputs through (peaks are found in the output blurred by it);
    ``subpixel``: how a peak's position within its pixel is estimated
    (`centroids`); ``crowded_error_px``: the network's own position error
    (per axis, camera px) for detections with 1, 2, 3 and >= 4 neighbours
    closer than the refinement's isolation distance, beyond their
    Cramer-Rao bound, measured on validation movies
    (`napari_dsir.calibrate.crowded_error`): the refinement adds it in
    quadrature to the bound of the detections it keeps at the network's
    position (empty: the bound alone); ``crowded_error_power``: that error
    grows with the bound itself (a dim emitter's position is found less well
    by the network too), as (bound / `CROWDED_BOUND_REF_PX`) ** power (0:
    the same for every brightness, as checkpoints before it);
    ``pulled_error_px``: the same error for isolated detections whose free
    fit was pulled away (status "pulled"; None: the first entry of
    ``crowded_error_px``, as checkpoints before it);
    ``crowded_error_density``: both change with the density of detections
    around (`local_density`: where more emitters go undetected, they pull
    the network's positions): the factors at `CROWDED_DENSITY_KNOTS`
    (`density_factor`; empty: the same at every density, as checkpoints
    before it); ``crowded_error_sigma_power``: both grow with the PSF's
    width in camera pixels, as (sigma / `CROWDED_SIGMA_REF_PX`) ** power
    (0: as checkpoints before it); ``crowded_error_sigma_min_px``: but not
    below the sigma (camera px of the network) of the narrowest PSF of the
    model's training, on which that power law was measured: for a PSF
    narrower than any it was trained on, the network places emitters no
    better (None: `params_for` reads it from the model's training
    simulation; 0: no floor); ``crowded_error_distance_power``: both fall
    as the nearest other detection is farther, in PSF sigmas
    (`distance_factor`: a neighbour's light pulls the network's peak the
    more, the more it overlaps; 0: as checkpoints before it)."""

    threshold: float = 0.1
    radius: int = 2
    window: int = 2
    blur_fwhm: float = 3.0  # SR px; 0: no blur
    blur_width: int = 5  # SR px
    subpixel: str = "centroid"  # or "gauss": log-parabola through the peak and its 4 neighbours
    crowded_error_px: tuple = ()
    crowded_error_power: float = 0.0
    pulled_error_px: float | None = None
    crowded_error_density: tuple = ()
    crowded_error_sigma_power: float = 0.0
    crowded_error_sigma_min_px: float | None = None
    crowded_error_distance_power: float = 0.0

    def validate(self) -> LocalizeParams:
        if not np.isfinite(self.threshold) or self.threshold < 0:
            raise DSIRError(f"threshold must be a number >= 0, got {self.threshold}")
        if int(self.radius) < 1 or int(self.window) < 1:
            raise DSIRError("radius and window must be >= 1 super-resolved pixel")
        if self.blur_fwhm < 0 or int(self.blur_width) < 1 or int(self.blur_width) % 2 == 0:
            raise DSIRError("blur_fwhm must be >= 0 and blur_width an odd number of pixels")
        check_crowded_error(self.crowded_error_px)
        check_crowded_error_power(self.crowded_error_power)
        check_density_factors(self.crowded_error_density)
        check_crowded_error_power(self.crowded_error_sigma_power, "crowded_error_sigma_power")
        check_crowded_error_power(self.crowded_error_distance_power, "crowded_error_distance_power")
        if self.crowded_error_sigma_min_px is not None:
            check_sigma_min(self.crowded_error_sigma_min_px)
        if self.pulled_error_px is not None:
            check_crowded_error((self.pulled_error_px,))
        if self.subpixel not in SUBPIXEL:
            raise DSIRError(f"subpixel must be one of {', '.join(SUBPIXEL)}, got {self.subpixel!r}")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["crowded_error_px"] = [float(v) for v in self.crowded_error_px]
        d["crowded_error_power"] = float(self.crowded_error_power)
        d["crowded_error_density"] = [float(v) for v in self.crowded_error_density]
        d["crowded_error_sigma_power"] = float(self.crowded_error_sigma_power)
        d["crowded_error_distance_power"] = float(self.crowded_error_distance_power)
        m = self.crowded_error_sigma_min_px
        d["crowded_error_sigma_min_px"] = None if m is None else float(m)
        d["pulled_error_px"] = None if self.pulled_error_px is None else float(self.pulled_error_px)
        return d


def params_for(model, **overrides) -> LocalizeParams:
    """The model's calibrated parameters (checkpoint metadata) with overrides;
    ``crowded_error_sigma_min_px``, where the checkpoint does not state it,
    from its training's narrowest PSF (`napari_dsir.psf.training_fwhm_range_px`)."""
    from .psf import training_fwhm_range_px
    from .simulate import FWHM_TO_SIGMA

    base = dict(getattr(model, "metadata", {}).get("localize", {}))
    if base.get("crowded_error_sigma_min_px") is None:
        base["crowded_error_sigma_min_px"] = training_fwhm_range_px(model)[0] * FWHM_TO_SIGMA
    base.update({k: v for k, v in overrides.items() if v is not None})
    known = LocalizeParams.__dataclass_fields__
    for key in ("crowded_error_px", "crowded_error_density"):
        if key in base:
            try:
                base[key] = tuple(float(v) for v in base[key])
            except (TypeError, ValueError):
                raise DSIRError(f"{key} of the model's localizer settings must be numbers, got {base[key]!r}") from None
    return LocalizeParams(**{k: v for k, v in base.items() if k in known}).validate()


def gauss_kernel(width: int, fwhm: float) -> torch.Tensor:
    """Square Gaussian kernel (1, 1, width, width) with peak 1 (the DSIR loss's)."""
    r = torch.arange(width, dtype=torch.float32) - width // 2
    g = torch.exp(-4 * math.log(2) * (r[None, :] ** 2 + r[:, None] ** 2) / fwhm**2)
    return g.view(1, 1, width, width)


def blur(sr: torch.Tensor, width: int, fwhm: float) -> torch.Tensor:
    """(batch, Y, X) images blurred by the Gaussian (width, fwhm) SR px,
    normalised to sum 1; unchanged for fwhm 0."""
    if fwhm <= 0:
        return sr
    k = gauss_kernel(int(width), float(fwhm)).to(sr.device, sr.dtype)
    return F.conv2d(sr.unsqueeze(1), k / k.sum(), padding=int(width) // 2)[:, 0]


#: super-resolved pixels `find_peaks` works on at once on the CPU: a larger
#: batch is taken frame by frame, and a larger frame in bands of rows, each
#: with the rows around it that its peaks' neighbourhoods need (the same
#: peaks; a 16384x16384 px frame, a 2048x2048 px camera's x8 grid, held
#: about 1 GB in each of the blurred, padded and box-maximum copies at
#: once). A GPU takes the batch whole (there an out-of-memory error halves
#: the batch, `napari_dsir.reconstruct.iter_reconstruct`)
PEAK_BAND_PIXELS = 1 << 24


def find_peaks(
    sr: torch.Tensor, sr_pixel_size: float, params: LocalizeParams, first_frame: int = 0
) -> Localizations:
    """Localize in a batch of localization images ``sr`` (batch, Y, X).

    ``sr_pixel_size`` is the super-resolved pixel size in nm. Returns
    positions in nm and frames ``first_frame + batch index``.
    """
    if sr.ndim == 2:
        sr = sr[None]
    if sr.numel() <= PEAK_BAND_PIXELS or sr.device.type != "cpu":
        return _find_peaks(sr, sr_pixel_size, params, first_frame)
    n, Y, X = sr.shape
    # rows each band's core needs around it: the neighbourhoods (radius,
    # centroid window) of the blurred image, and the blur's own reach
    margin = max(int(params.radius), int(params.window)) + int(params.blur_width) // 2 + 1
    rows = max(1, PEAK_BAND_PIXELS // X - 2 * margin)
    parts = []
    for i in range(n):
        for y0 in range(0, Y, rows):
            y1 = min(Y, y0 + rows)
            a, b = max(0, y0 - margin), min(Y, y1 + margin)
            parts.append(_find_peaks(sr[i : i + 1, a:b], sr_pixel_size, params, first_frame + i, (y0 - a, y1 - a), a))
    return Localizations.concatenate(parts)


def _find_peaks(sr, sr_pixel_size, params, first_frame, rows=None, offset=0):
    """`find_peaks` on ``sr`` at once; ``rows``: only the peaks on these
    rows (start, stop) of it, placed ``offset`` rows further down."""
    x = blur(sr.to(torch.float32), params.blur_width, params.blur_fwhm)  # (batch, Y, X)
    r, w = int(params.radius), int(params.window)
    b, yy, xx = local_maxima(x, params.threshold, r)
    if rows is not None:
        core = (yy >= rows[0]) & (yy < rows[1])
        b, yy, xx = b[core], yy[core], xx[core]
    if b.numel() == 0:
        return Localizations.empty()
    return centroids(x, b, yy, xx, w, sr_pixel_size, first_frame, params.subpixel, offset)


def _box_max(x: torch.Tensor, r: int) -> torch.Tensor:
    """Maximum over each pixel's (2r+1)^2 neighbourhood of (batch, Y, X),
    separably (a stride-1 max-pool is several times slower on the CPU)."""
    p = F.pad(x, (r, r, 0, 0), value=float("-inf"))
    m = p[:, :, : x.shape[2]].clone()
    for k in range(1, 2 * r + 1):
        torch.maximum(m, p[:, :, k : k + x.shape[2]], out=m)
    p = F.pad(m, (0, 0, r, r), value=float("-inf"))
    out = p[:, : x.shape[1]].clone()
    for k in range(1, 2 * r + 1):
        torch.maximum(out, p[:, k : k + x.shape[1]], out=out)
    return out


#: `local_maxima` drops the non-maxima by a separable box maximum first
#: when more than this share of the pixels is over the threshold: comparing
#: each candidate with its neighbours costs ~50x a box maximum per pixel
#: (Bundled Tubes HD, default model: 1.6 % of the pixels, 1.2 against 0.5
#: ms per frame on 2 CPU cores, a one-off check)
PREFILTER_SHARE = 0.005


def local_maxima(x: torch.Tensor, threshold: float, r: int):
    """(batch, y, x) indices of the pixels of ``x`` (batch, Y, X) above
    ``threshold`` that are the maximum of their (2r+1)^2 neighbourhood;
    of exactly equal neighbours (plateaus, e.g. noise-free images) only the
    one last in raster order."""
    mask = x > threshold
    if int(mask.sum()) > PREFILTER_SHARE * mask.numel():  # many candidates: drop non-maxima first
        mask &= x >= _box_max(x, r)
    b, yy, xx = torch.nonzero(mask, as_tuple=True)
    if b.numel() == 0:
        return b, yy, xx
    off = torch.arange(-r, r + 1, device=x.device)
    dy, dx = (o.reshape(-1) for o in torch.meshgrid(off, off, indexing="ij"))
    padded = F.pad(x, (r, r, r, r), value=float("-inf"))
    ph, pw = padded.shape[1:]
    flat, step = padded.reshape(-1), dy * pw + dx  # neighbours gathered by flat index
    centre = x[b, yy, xx]
    keep = torch.ones_like(centre, dtype=torch.bool)
    # exact ties (plateaus, e.g. noise-free images) give one peak: the
    # pixel that comes last in raster order
    later = (dy > 0) | ((dy == 0) & (dx > 0))
    for j in range(0, len(b), 1 << 18):  # bounded memory for dense outputs
        sl = slice(j, j + (1 << 18))
        neigh = flat[((b[sl] * ph + yy[sl] + r) * pw + xx[sl] + r)[:, None] + step]
        c = centre[sl, None]
        keep[sl] = (neigh <= c).all(1) & ~((neigh == c) & later).any(1)
    return b[keep], yy[keep], xx[keep]


def centroids(x: torch.Tensor, b, yy, xx, w: int, sr_pixel_size: float, first_frame: int = 0,
              subpixel: str = "centroid", row_offset: int = 0) -> Localizations:
    """Positions of the peaks (b, yy, xx) of ``x`` (batch, Y, X) in nm, with
    the sums over (2w+1)^2 windows as intensity. ``subpixel``: the weighted
    centroid of the window, or ``"gauss"``: per axis the vertex of the
    parabola through the logarithms of the peak and its two neighbours
    (exact for a Gaussian peak; a centroid of a truncated window pulls
    positions towards the pixel centres, which shows as a 12.5 nm grid in
    renderings and their FRC). ``row_offset``: rows of the image above
    ``x`` (a band of it), added to the positions."""
    if b.numel() == 0:
        return Localizations.empty()
    # weighted centroid over a (2w+1)^2 window (zero outside the image),
    # gathered at the peaks only
    off = torch.arange(-w, w + 1, device=x.device)
    padded = F.pad(x, (w, w, w, w))
    win = padded[b[:, None, None], (yy[:, None, None] + w + off[None, :, None]),
                 (xx[:, None, None] + w + off[None, None, :])]  # (n, 2w+1, 2w+1)
    s = win.sum(dim=(1, 2))
    offf = off.to(torch.float32)
    dx = (win * offf[None, None, :]).sum(dim=(1, 2)) / s
    dy = (win * offf[None, :, None]).sum(dim=(1, 2)) / s
    if subpixel == "gauss":
        dx, dy = _log_parabola(x, b, yy, xx)
    xs = (xx.to(torch.float64) + 0.5 + dx.to(torch.float64)) * sr_pixel_size
    ys = ((yy + int(row_offset)).to(torch.float64) + 0.5 + dy.to(torch.float64)) * sr_pixel_size
    return Localizations(
        (b + first_frame).cpu().numpy(), xs.cpu().numpy(), ys.cpu().numpy(), s.cpu().numpy()
    )


SUBPIXEL = ("centroid", "gauss")


def _log_parabola(x: torch.Tensor, b, yy, xx):
    """Sub-pixel offsets (dx, dy) in pixels, within +-0.5, of peaks of ``x``
    from the logarithms of each peak and its 4 neighbours; 0 along an axis
    where the peak lies on the image's edge (a neighbour missing: the
    clamped one gave +-0.5 always, a position exactly on the frame's border)."""
    h, w = x.shape[1:]

    def log_at(oy: int, ox: int):
        return x[b, (yy + oy).clamp(0, h - 1), (xx + ox).clamp(0, w - 1)].clamp(min=1e-12).log()

    c = log_at(0, 0)
    out = []
    for (lo, hi), pos, n in (((log_at(0, -1), log_at(0, 1)), xx, w), ((log_at(-1, 0), log_at(1, 0)), yy, h)):
        curv = lo - 2 * c + hi
        inside = (pos > 0) & (pos < n - 1)
        off = torch.where((curv < 0) & inside, 0.5 * (lo - hi) / curv.clamp(max=-1e-12), torch.zeros_like(c))
        out.append(off.clamp(-0.5, 0.5))
    return out[0], out[1]


def localize_image(sr: np.ndarray, sr_pixel_size: float, params: LocalizeParams | None = None,
                   first_frame: int = 0) -> Localizations:
    """Numpy front end of `find_peaks` for (Y, X) or (frame, Y, X) arrays."""
    t = torch.as_tensor(np.asarray(sr, dtype=np.float32))
    return find_peaks(t, sr_pixel_size, (params or LocalizeParams()).validate(), first_frame)


#: `suppress_echoes`: a detection weaker than this share of another one of
#: its frame within `ECHO_RADIUS_PX` camera px is an echo of it
ECHO_RATIO = 0.2
ECHO_RADIUS_PX = 2.0


def suppress_echoes(locs: Localizations, radius_nm: float, ratio: float = ECHO_RATIO) -> Localizations:
    """``locs`` without the echoes a network makes beside the emitters of a
    PSF narrower (in camera px) than its training's: detections whose
    ``intensity`` is below ``ratio`` times that of another detection of
    the same frame within ``radius_nm`` (on 130-160 nm pixels with a FWHM of
    1.2-1.5 px: precision 0.83-0.84 -> 0.95-0.96,
    `benchmarks/results/psf_width.md`)."""
    if len(locs) < 2 or locs.intensity is None:
        return locs
    from .neighbours import frame_pairs  # scipy's tree: only for narrow PSFs

    valid = np.isfinite(locs.x) & np.isfinite(locs.y)
    if not valid.any():
        return locs
    pairs, _ = frame_pairs(locs.frame, locs.x, locs.y, valid, float(radius_nm), float(locs.y[valid].max()))
    if not len(pairs):
        return locs
    a, b = pairs[:, 0], pairs[:, 1]
    ia, ib = locs.intensity[a], locs.intensity[b]
    echo = np.zeros(len(locs), bool)
    echo[a[ia < ratio * ib]] = True
    echo[b[ib < ratio * ia]] = True
    return locs.select(~echo)


#: how far (network-input px) past an object brighter than the network's
#: training the detections it makes around it reach (`suppress_halos`)
HALO_REACH_PX = 8.0


def bright_objects(frames: torch.Tensor, scale: float, limit: float) -> list[np.ndarray]:
    """Objects of the network's input (frame, y, x; ADU, binned as it sees
    them) more than ``limit`` noise levels ``scale`` above their frame's
    median: beyond anything in its training (a saturated bead, a dust grain;
    `DSIRModel.raw` holds its input there). Per frame, one row (y, x,
    radius) per 8-connected object, px: the centre of its light above the
    limit and the distance of its farthest pixel from that."""
    from scipy import ndimage

    out = [np.zeros((0, 3))] * len(frames)
    x = frames.to(torch.float32)
    flat = x.flatten(1)
    cut = float(limit) * float(scale)
    maybe = torch.nonzero(flat.amax(1) - flat.amin(1) > cut)[:, 0]  # no median unless needed
    for i in maybe.tolist():
        level = (x[i] - flat[i].median()).cpu().numpy()
        lab, n = ndimage.label(level > cut, structure=np.ones((3, 3)))
        if not n:
            continue
        # the centre of its light above the cut (a plateau's middle)
        centres = ndimage.center_of_mass(level - cut, lab, range(1, n + 1))
        yy, xx = np.nonzero(lab)
        rows = []
        for k, (py, px) in enumerate(centres, start=1):
            m = lab[yy, xx] == k
            rows.append((py, px, float(np.hypot(yy[m] - py, xx[m] - px).max())))
        out[i] = np.array(rows, float)
    return out


def suppress_halos(locs: Localizations, objects: list[np.ndarray], first_frame: int, pixel_nm: float,
                   reach_px: float = HALO_REACH_PX) -> tuple[Localizations, int]:
    """``locs`` without the detections a network makes around `bright_objects`
    (``objects`` of frames ``first_frame``.., on a grid of ``pixel_nm``):
    within an object's radius plus ``reach_px`` of its centre, all
    but the detection nearest to the centre (the object itself, a fiducial
    bead's position), if that one is within the object's radius or 1.5 px.
    Returns them and how many were left out."""
    drop = np.zeros(len(locs), bool)
    for i, obj in enumerate(objects):
        if not len(obj):
            continue
        rows = np.flatnonzero(locs.frame == first_frame + i)
        if not len(rows):
            continue
        x, y = locs.x[rows] / pixel_nm - 0.5, locs.y[rows] / pixel_nm - 0.5  # pixel centres at integers
        for py, px, r in obj:
            d = np.hypot(x - px, y - py)
            near = d <= r + reach_px
            centre = np.argmin(np.where(near, d, np.inf))
            near[centre] &= not d[centre] <= max(1.5, r)
            drop[rows[near]] = True
    return (locs.select(~drop) if drop.any() else locs), int(drop.sum())


def clear_halos(sr: torch.Tensor, objects: list[np.ndarray], upsampling: int,
                reach_px: float = HALO_REACH_PX) -> torch.Tensor:
    """The network's output ``sr`` (frame, Y, X; ``upsampling`` x the grid
    of `bright_objects`) with its echoes of ``objects`` cleared, in place:
    zero beyond each object's radius out to ``reach_px`` more, as
    `suppress_halos` leaves out the detections there (the object's own
    output stays)."""
    u = float(upsampling)
    H, W = sr.shape[-2:]
    for i, obj in enumerate(objects):
        for py, px, r in obj:
            cy, cx, out = (py + 0.5) * u, (px + 0.5) * u, (r + reach_px) * u  # output px
            y0, y1 = max(0, int(cy - out)), min(H, int(math.ceil(cy + out)) + 1)
            x0, x1 = max(0, int(cx - out)), min(W, int(math.ceil(cx + out)) + 1)
            if y0 >= y1 or x0 >= x1:
                continue
            yy = torch.arange(y0, y1, device=sr.device, dtype=torch.float32)[:, None] + 0.5
            xx = torch.arange(x0, x1, device=sr.device, dtype=torch.float32)[None, :] + 0.5
            d = torch.hypot(yy - cy, xx - cx)
            box = sr[i, y0:y1, x0:x1]
            box[(d > r * u) & (d <= out)] = 0
    return sr

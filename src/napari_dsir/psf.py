"""The PSF's width in a movie, and the binning that brings it to the network.

A network sees the PSF in camera pixels: trained on 100 nm pixels with a
FWHM of 170-370 nm (the default model), it finds few emitters where the PSF
is wider in pixels (small camera pixels, or a wide PSF: on 65 nm pixels
with a FWHM of 300-380 nm, Jaccard 0.45 against 0.88 on the same frames
binned 2x2; `benchmarks/results/psf_width.md`). The width is measured on
the movie's own bright, isolated spots (a Poisson fit of each,
`napari_dsir.fit.refine`), and frames whose PSF is wider than the
training's widest are binned for the network only (`network_binning`,
unless the binned frames would be more crowded than its training): the
fits still use the camera's own pixels. Where the PSF is narrower than the
training's narrowest, the run leaves out the weak echoes the network adds
beside the emitters (`napari_dsir.localize.suppress_echoes`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .camera import Camera
from .locs import Localizations
from .simulate import FWHM_TO_SIGMA

#: the PSFs (FWHM, camera px) a model without a recorded training
#: simulation was trained on (the original DSIR: 200-300 nm at 100 nm)
LEGACY_FWHM_RANGE_PX = (2.0, 3.0)
#: spots per frame and in all that `measure_fwhm` fits at most, and the
#: free fits it needs
SPOTS_PER_FRAME = 64
MAX_SPOTS = 4000
MIN_FITS = 20
#: the spots whose fits measure the width: this many times the noise high
#: (`find_spots`; the dimmer ones count as neighbours)
BRIGHT_SNR = 8.0
#: the largest binning `network_binning` gives
MAX_BINNING = 4
#: the densest frames (detections per 100 network px^2) a model without a
#: recorded training simulation was trained on (the original DSIR: 2 /um^2
#: on 100 nm pixels)
LEGACY_DENSITY = 2.0
# A movie is binned for the network when its PSFs straddle the training's
# widest: 60 % of the fitted spots wider (their 40th percentile, `PSFWidth`;
# the binned frames up to the training's densest), or 30 % of them (the
# 70th percentile; the binned frames up to `STRADDLE_DENSITY_SHARE` of its
# densest; `reconstruct.movie_binning`).
# Unbinned, the network splits the widest emitters in two: with 30-45 % of
# the spots beyond its widest, at 0.5-1 /um^2 on 65-120 nm pixels, its
# precision was 0.84-0.94 unbinned and 0.95-0.97 binned 2x2 (Jaccard +0.005
# to +0.13). Where the binned frames are crowded, the coarser grid costs
# more than the splits: at 10-15 of the network's detections per 100 px^2
# binned, Jaccard -0.02 to -0.20 and RMSE +5 to +26 nm (validation movies,
# seeds 81001+: 65, 80, 100 and 120 nm pixels, PSFs of 3.3-4.3 px +-10 %
# and +-25 %, 0.5-3 /um^2). Over those 128 movies this rule gives a mean
# SMLM efficiency (Jaccard and RMSE at 250 nm) of 61.6, the better binning
# of each movie 61.9, the previous rule (the median beyond the widest, or
# the lower quartile) 61.2 (61.5, 61.8 and 60.8 before split spots were
# merged before the fits: benchmarks/results/binning_rule.md).
STRADDLE_DENSITY_SHARE = 0.8
#: the share of wide spots that bins a movie where its binned frames stay
#: sparse (their 70th percentile, `PSFWidth.q70`); with fewer than
#: `MIN_FITS` fits in that share, the median's half instead
STRADDLE_SHARE = 0.3


class PSFWidth(NamedTuple):
    """The FWHM (nm) of a movie's fitted spots (`measure_fwhm`): median,
    lower quartile, number of fits, and the widths that 40 % and 70 % of
    the fits are narrower than (60 % and 30 % wider)."""

    median: float
    q25: float
    fits: int
    q40: float
    q70: float


def training_fwhm_range_px(model) -> tuple[float, float]:
    """The narrowest and the widest PSF (FWHM, camera px) in ``model``'s
    training simulation (its ``metadata["simulation"]``: FWHM range in nm
    over its pixel size); `LEGACY_FWHM_RANGE_PX` when not recorded."""
    sim = (getattr(model, "metadata", None) or {}).get("simulation") or {}
    try:
        fwhm = sim["fwhm"]
        lo, hi = (float(fwhm[0]), float(fwhm[1])) if isinstance(fwhm, (list, tuple)) else (float(fwhm),) * 2
        p = float(sim.get("pixel_size", 100.0))
        return lo / p, hi / p
    except (KeyError, TypeError, ValueError, IndexError):
        return LEGACY_FWHM_RANGE_PX


def training_density(model) -> float:
    """The densest frames in ``model``'s training simulation, in emitters
    per frame and 100 of its pixels^2 (`LEGACY_DENSITY` when not recorded)."""
    sim = (getattr(model, "metadata", None) or {}).get("simulation") or {}
    try:
        dens = sim["density"]
        hi = float(dens[1] if isinstance(dens, (list, tuple)) else dens)
        return hi * (float(sim.get("pixel_size", 100.0)) / 100.0) ** 2
    except (KeyError, TypeError, ValueError, IndexError):
        return LEGACY_DENSITY


def network_binning(fwhm_px: float | None, max_fwhm_px: float, density: float | None = None,
                    max_density: float = math.inf) -> int:
    """The smallest binning b (1..`MAX_BINNING`) that brings a PSF of
    ``fwhm_px`` camera px (the lower quartile or the median of
    `measure_fwhm`: `reconstruct.movie_binning`) within
    ``max_fwhm_px`` network px (`training_fwhm_range_px`); 1 when the width is not
    known, or when the binned frames would be denser than ``max_density``
    (per 100 network px^2, `training_density`) at ``density`` detections
    per frame and 100 camera px^2: binning 2x2 quadruples the crowding the
    network sees, and beyond its training it finds fewer emitters than
    in the unbinned frames."""
    if fwhm_px is None or not math.isfinite(fwhm_px) or fwhm_px <= max_fwhm_px:
        return 1
    b = int(min(MAX_BINNING, math.ceil(fwhm_px / max_fwhm_px)))
    if density is not None and density * b**2 > max_density:
        return 1
    return b


def bin_frames(frames: torch.Tensor, b: int) -> torch.Tensor:
    """Sum (frame, y, x) frames over ``b`` x ``b`` pixel blocks (the far
    edges padded by replicating their last row and column first)."""
    if b == 1:
        return frames
    h, w = frames.shape[-2:]
    ph, pw = (-h) % b, (-w) % b
    x = frames.to(torch.float32)
    if ph or pw:
        x = F.pad(x[:, None], (0, pw, 0, ph), mode="replicate")[:, 0]
    n, hh, ww = x.shape
    return x.reshape(n, hh // b, b, ww // b, b).sum((2, 4))


def find_spots(photons: torch.Tensor, per_frame: int = SPOTS_PER_FRAME
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Spots of (frame, y, x) frames in photons: local maxima (+-2 px) of
    the 3x3 mean more than 3 times its Poisson noise above the frame's median
    (at most ``per_frame`` per frame, the brightest). Returns (frame, y, x)
    of their pixels and their height over that noise."""
    x = photons.to(torch.float32)
    med = x.flatten(1).median(1).values[:, None, None]
    s = F.avg_pool2d((x - med)[:, None], 3, 1, 1, count_include_pad=False)[:, 0]
    noise = med.clamp(min=1.0).sqrt() / 3.0  # of a 3x3 mean of the background
    snr = s / noise
    peak = (s == F.max_pool2d(s[:, None], 5, 1, 2)[:, 0]) & (snr > 3.0)
    f, y, xx = (t.cpu().numpy() for t in torch.nonzero(peak, as_tuple=True))
    v = snr[peak].cpu().numpy()
    order = np.lexsort((-v, f))  # by frame, brightest first
    f, y, xx, v = f[order], y[order], xx[order], v[order]
    keep = np.arange(len(f)) - np.searchsorted(f, f) < per_frame
    return f[keep], y[keep], xx[keep], v[keep]


def measure_fwhm(frames_adu, pixel_size_nm: float, camera: Camera | None = None, background_shape=None,
                 photons: torch.Tensor | None = None) -> PSFWidth | None:
    """The PSF's FWHM (nm) in (frame, y, x) camera frames (ADU), from the
    free Poisson fits (`napari_dsir.fit.refine`, reconstruct's settings
    without the chi-square test) of their bright spots (`BRIGHT_SNR`) that
    have no other spot within 500 nm: a `PSFWidth` (median, lower quartile,
    number of fits, 40th and 70th percentiles); None with fewer than
    `MIN_FITS` or on frames smaller than a fit's window. Undetected neighbours widen
    some fits in crowded frames: the lower quartile is the steadier figure
    (`benchmarks/results/psf_width.md`: 0.87-1.02x the middle of the
    simulated FWHM range from 0.5 to 8 emitters/um^2, the median
    0.97-1.21x). ``background_shape``: see `napari_dsir.fit.refine`;
    ``photons``: the frames already converted with ``camera`` (the
    defaults where None), where the caller has them."""
    from .fit import OK, refine
    from .reconstruct import fit_settings

    cam = camera or Camera()
    p = float(pixel_size_nm)
    settings = {**fit_settings(p), "max_chi2_sigma": None, "hold_pulled": False}
    if min(np.shape(frames_adu)[-2:]) < settings["window"]:  # frames smaller than a fit: not measured
        return None
    if photons is None:
        photons = cam.to_photons(torch.as_tensor(np.asarray(frames_adu, np.float32)))
    f, y, x, snr = find_spots(photons)
    if len(f) > MAX_SPOTS:  # the first frames' spots
        f, y, x, snr = f[:MAX_SPOTS], y[:MAX_SPOTS], x[:MAX_SPOTS], snr[:MAX_SPOTS]
    if (snr > BRIGHT_SNR).sum() < MIN_FITS:
        return None
    spots = Localizations(f.astype(np.int64), (x + 0.5) * p, (y + 0.5) * p)
    # the chi-square test is left out (``settings``): a camera whose
    # sensitivity is not known (assumed) scales the variances, not the PSF
    res = refine(photons, spots, p, cam, threads=1, background_shape=background_shape, **settings)
    sigma = res.locs.sigma[(res.status == OK) & (snr > BRIGHT_SNR)]
    fwhm = sigma[np.isfinite(sigma)] / FWHM_TO_SIGMA
    if len(fwhm) < MIN_FITS:
        return None
    q25, median, q40, q70 = (float(v) for v in np.quantile(fwhm, (0.25, 0.5, 0.4, 0.7)))
    return PSFWidth(median, q25, len(fwhm), q40, q70)

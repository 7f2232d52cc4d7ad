"""ThunderSTORM-equivalent simulation of SMLM camera frames.

Frames are (frame, y, x) in ADU; positions are in nm from the top-left corner
of pixel (0, 0). The PSF is an integrated (erf) Gaussian; photons, background
and shot noise are Poisson, the camera adds a base level, a gain (ADU per
photoelectron) and optional Gaussian read noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Union

import numpy as np
from scipy.special import erf

from .errors import DSIRError
from .locs import Localizations

Range = Union[float, tuple[float, float]]

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def as_range(name: str, value: Range) -> tuple[float, float]:
    """A number or a (min, max) pair as (lo, hi), finite and >= 0; DSIRError naming ``name`` otherwise."""
    if isinstance(value, (int, float, np.floating, np.integer)):
        lo = hi = float(value)
    else:
        try:
            lo, hi = (float(v) for v in value)
        except (TypeError, ValueError):
            raise DSIRError(f"{name}: expected a number or a (min, max) pair, got {value!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi or lo < 0:
        raise DSIRError(f"{name}: invalid range ({lo}, {hi})")
    return lo, hi


@dataclass
class SimulationConfig:
    """Simulation settings; each ``Range`` is a number or a (min, max) pair.

    Defaults are the original DSIR preset: 26x26 px of 100 nm, FWHM 200-300
    nm, 80-2050 photons, 2 emitters/um^2, background 20 photons/px, base level
    100 ADU, 1 ADU per photoelectron, no read noise.
    """

    frame_size: tuple[int, int] = (26, 26)  # (y, x) px
    pixel_size: float = 100.0  # nm
    fwhm: Range = (200.0, 300.0)  # nm, drawn per emitter
    photons: Range = (80.0, 2050.0)  # photons per emitter
    density: Range = 2.0  # emitters per um^2, drawn per frame
    background: Range = 20.0  # photons per pixel, drawn per frame
    base_level: Range = 100.0  # ADU, drawn per frame
    gain: Range = 1.0  # ADU per photoelectron, drawn per frame
    read_noise: float = 0.0  # e- rms
    em_gain: Range = 1.0  # electron multiplication (EMCCD; 1: sCMOS/CCD), with its excess noise
    margin: float = 0.0  # nm outside the frame where emitters may also sit

    def validate(self) -> SimulationConfig:
        h, w = self.frame_size
        if int(h) < 4 or int(w) < 4:
            raise DSIRError(f"frame_size must be at least 4x4 px, got {self.frame_size}")
        if not self.pixel_size > 0:
            raise DSIRError(f"pixel_size must be > 0 nm, got {self.pixel_size}")
        for name in ("fwhm", "photons", "density", "background", "base_level", "gain", "em_gain"):
            as_range(name, getattr(self, name))
        if as_range("fwhm", self.fwhm)[0] <= 0 or as_range("gain", self.gain)[0] <= 0:
            raise DSIRError("fwhm and gain must be > 0")
        if as_range("em_gain", self.em_gain)[0] < 1:
            raise DSIRError("em_gain must be >= 1 (1: no electron multiplication)")
        if self.read_noise < 0:
            raise DSIRError("read_noise must be >= 0")
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


DSIR_PRESET = SimulationConfig()


def draw(rng: np.random.Generator, r: Range, size=None):
    """A uniform draw from a number or (min, max) range: one value, or ``size`` of them."""
    lo, hi = as_range("range", r)
    return rng.uniform(lo, hi, size) if hi > lo else (lo if size is None else np.full(size, lo))


def render_emitters(
    x_nm: np.ndarray,
    y_nm: np.ndarray,
    photons: np.ndarray,
    sigma_nm: np.ndarray,
    frame_size: tuple[int, int],
    pixel_size: float,
) -> np.ndarray:
    """Expected photons per pixel (y, x) of integrated Gaussian emitters."""
    h, w = frame_size
    if len(x_nm) == 0:
        return np.zeros((h, w))
    s = np.sqrt(2.0) * sigma_nm[:, None]
    ex = np.arange(w + 1) * pixel_size
    ey = np.arange(h + 1) * pixel_size
    cx = erf((ex[None, :] - x_nm[:, None]) / s)
    cy = erf((ey[None, :] - y_nm[:, None]) / s)
    px = 0.5 * np.diff(cx, axis=1)  # (n, w)
    py = 0.5 * np.diff(cy, axis=1)  # (n, h)
    return py.T @ (px * photons[:, None])


def camera_electrons(rng: np.random.Generator, expected: np.ndarray, em_gain: float = 1.0,
                     read_noise: float = 0.0) -> np.ndarray:
    """Electrons a camera reads for ``expected`` photoelectrons per pixel:
    Poisson, then (EMCCD, ``em_gain`` > 1) a gamma-distributed multiplication
    whose excess noise doubles the variance, then Gaussian read noise (e- rms)."""
    electrons = rng.poisson(expected).astype(np.float64)
    if em_gain > 1:
        electrons = rng.gamma(np.maximum(electrons, 1e-12), em_gain) * (electrons > 0)
    if read_noise > 0:
        electrons += rng.normal(0.0, read_noise, electrons.shape)
    return electrons


def simulate(
    n_frames: int,
    config: SimulationConfig | None = None,
    seed: int | None = 0,
) -> tuple[np.ndarray, Localizations]:
    """Simulate ``n_frames`` camera frames and their ground truth.

    Returns frames as float32 ADU (frame, y, x), rounded like a camera, and
    the positions (0-based frames, nm, intensity in photons).
    """
    cfg = (config or SimulationConfig()).validate()
    if int(n_frames) < 1:
        raise DSIRError(f"n_frames must be >= 1, got {n_frames}")
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in cfg.frame_size)
    p = float(cfg.pixel_size)
    m = float(cfg.margin)
    area_um2 = (h * p + 2 * m) * (w * p + 2 * m) / 1e6
    frames = np.empty((n_frames, h, w), dtype=np.float32)
    parts = []
    for f in range(n_frames):
        dens = draw(rng, cfg.density)
        n = rng.poisson(dens * area_um2)
        x = rng.uniform(-m, w * p + m, n)
        y = rng.uniform(-m, h * p + m, n)
        ph = draw(rng, cfg.photons, n)
        sig = draw(rng, cfg.fwhm, n) * FWHM_TO_SIGMA
        expected = render_emitters(x, y, ph, sig, (h, w), p) + draw(rng, cfg.background)
        electrons = camera_electrons(rng, expected, draw(rng, cfg.em_gain), cfg.read_noise)
        adu = draw(rng, cfg.base_level) + draw(rng, cfg.gain) * electrons
        frames[f] = np.clip(np.round(adu), 0, 65535)
        inside = (x >= 0) & (x < w * p) & (y >= 0) & (y < h * p)
        parts.append(Localizations(np.full(inside.sum(), f), x[inside], y[inside], ph[inside]))
    return frames, Localizations.concatenate(parts) if parts else Localizations.empty()

"""ThunderSTORM-equivalent simulation of SMLM camera frames.

Frames are (frame, y, x) in ADU; positions are in nm from the top-left corner
of pixel (0, 0). The PSF is an integrated (erf) Gaussian (or, to test what
the Gaussian model misses, an Airy pattern); photons, background
and shot noise are Poisson, the camera adds a base level, a gain (ADU per
photoelectron) and optional Gaussian read noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Union

import numpy as np
from scipy.special import erf, j1

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
    psf: str = "gaussian"  # or "airy": an in-focus objective's PSF of that FWHM (`render_airy`)

    def validate(self) -> SimulationConfig:
        h, w = self.frame_size
        if int(h) < 4 or int(w) < 4:
            raise DSIRError(f"frame_size must be at least 4x4 px, got {self.frame_size}")
        if not self.pixel_size > 0:
            raise DSIRError(f"pixel_size must be > 0 nm, got {self.pixel_size}")
        if self.pixel_size < MIN_PIXEL_NM:  # (in um, with a FWHM in um too: the ratio looks right)
            raise DSIRError(f"pixels of {self.pixel_size:g} nm: a camera's are tens to hundreds of nm, and "
                            f"{int(h)}x{int(w)} of them hold no emitter; the pixel size and the FWHM are in nm "
                            "(e.g. pixel size 100-160, FWHM 250-350)")
        for name in ("fwhm", "photons", "density", "background", "base_level", "gain", "em_gain"):
            as_range(name, getattr(self, name))
        if as_range("fwhm", self.fwhm)[0] <= 0:
            raise DSIRError(f"fwhm must be > 0 nm, got {self.fwhm}")
        lo, hi = (v / self.pixel_size for v in as_range("fwhm", self.fwhm))
        if hi < MIN_FWHM_PX or lo > MAX_FWHM_PX:  # one of them in um, the other in nm?
            raise DSIRError(f"a PSF of FWHM {_text(self.fwhm)} nm on pixels of {self.pixel_size:g} nm is "
                            f"{lo:.3g}-{hi:.3g} px wide: no emitter a camera sees; both are in nm (e.g. FWHM "
                            "250-350, pixel size 100-160)")
        p_lo, p_hi = as_range("photons", self.photons)
        if p_lo <= 0:
            raise DSIRError(f"photons must be > 0 per emitter, got {_text(self.photons)}")
        if as_range("gain", self.gain)[0] <= 0:
            raise DSIRError(f"gain must be > 0 ADU per photoelectron, got {self.gain}")
        if as_range("em_gain", self.em_gain)[0] < 1:
            raise DSIRError("em_gain must be >= 1 (1: no electron multiplication)")
        if self.read_noise < 0:
            raise DSIRError("read_noise must be >= 0")
        if self.psf not in PSF_SHAPES:
            raise DSIRError(f"psf must be one of {', '.join(PSF_SHAPES)}, got {self.psf!r}")
        return self

    def camera_info(self) -> str | None:
        """The simulated camera as ImageJ "Info" lines under the names
        `napari_dsir.camera` reads from files (offset ADU, photoelectrons
        per ADU, EM gain, QE 1, read noise e-), or None when a setting is
        drawn from a range (no one camera)."""
        values = (self.base_level, self.gain, self.em_gain)
        if any(isinstance(v, (tuple, list)) and v[0] != v[-1] for v in values):
            return None
        base, gain, em = (float(v[0] if isinstance(v, (tuple, list)) else v) for v in values)
        return (f"Offset = {base:g}\nSensitivity = {1.0 / gain:g}\nEM gain = {em:g}\nQE = 1\n"
                f"Read noise = {float(self.read_noise):g}")

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _text(r) -> str:
    lo, hi = as_range("range", r)
    return f"{lo:g}" if lo == hi else f"{lo:g}-{hi:g}"


#: the PSF widths (FWHM, camera px) a simulation accepts: narrower, or wider,
#: is no emitter a camera sees (a value in um beside one in nm)
MIN_FWHM_PX, MAX_FWHM_PX = 0.3, 50.0
#: the smallest pixel size (nm) a simulation accepts: below, a value in um
MIN_PIXEL_NM = 1.0

DSIR_PRESET = SimulationConfig()
PSF_SHAPES = ("gaussian", "airy")


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


#: Airy pattern: v = AIRY_V * r / FWHM, (2 J1(v) / v)^2 at half maximum for v = 1.6163
AIRY_V = 2 * 1.6163


# (2 J1(v) / v)^2 tabulated: v from 0 to 200 in steps of 0.005 (linear
# interpolation: < 1e-5 of the peak off)
_AIRY_STEP = 0.005
_AIRY_V = np.arange(0.0, 200.0 + _AIRY_STEP, _AIRY_STEP)
_AIRY_I = np.ones_like(_AIRY_V)
_AIRY_I[1:] = (2 * j1(_AIRY_V[1:]) / _AIRY_V[1:]) ** 2


def render_airy(
    x_nm: np.ndarray,
    y_nm: np.ndarray,
    photons: np.ndarray,
    fwhm_nm: np.ndarray,
    frame_size: tuple[int, int],
    pixel_size: float,
    oversample: int = 5,
    radius_px: int = 10,
) -> np.ndarray:
    """Expected photons per pixel (y, x) of emitters whose PSF is an Airy
    pattern, (2 J1(v) / v)^2 with v = `AIRY_V` r / FWHM (an aberration-free
    objective in focus: FWHM ~ 0.51 wavelength / NA), integrated over each
    pixel at ``oversample``^2 points, within ``radius_px`` pixels of each
    emitter (the rings beyond, not rendered, hold ~4-6 % of the light at 10
    px of 100 nm for a FWHM of 250-300 nm)."""
    h, w = frame_size
    out = np.zeros((h, w))
    if len(x_nm) == 0:
        return out
    xp, yp = np.asarray(x_nm) / pixel_size, np.asarray(y_nm) / pixel_size
    k = AIRY_V * pixel_size / np.asarray(fwhm_nm, float)  # v per pixel
    off = np.arange(-radius_px, radius_px + 1)
    n = len(off)
    sub = (np.arange(oversample) + 0.5) / oversample
    grid = (off[:, None] + sub).ravel()
    for i in range(len(xp)):
        cx, cy = int(np.floor(xp[i])), int(np.floor(yp[i]))
        gx, gy = grid + (cx - xp[i]), grid + (cy - yp[i])
        r = np.sqrt(gy[:, None] ** 2 + gx[None, :] ** 2)
        # photons per px^2 (the pattern integrates to 4 pi / k^2), within a
        # circle: cut alike on every side, the light stays centred
        dens = np.interp(k[i] * r, _AIRY_V, _AIRY_I, right=0.0) * (r <= radius_px)
        pix = dens.reshape(n, oversample, n, oversample).mean((1, 3)) * (photons[i] * k[i] ** 2 / (4 * np.pi))
        ys, xs = cy + off, cx + off
        my, mx = (ys >= 0) & (ys < h), (xs >= 0) & (xs < w)
        if my.any() and mx.any():
            out[np.ix_(ys[my], xs[mx])] += pix[np.ix_(my, mx)]
    return out


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
    outside: bool = False,
) -> tuple[np.ndarray, Localizations]:
    """Simulate ``n_frames`` camera frames and their ground truth.

    Returns frames as float32 ADU (frame, y, x), rounded like a camera, and
    the emitters inside the frames (0-based frames, nm, intensity in photons,
    PSF sigma in nm); with ``outside``, also those in the margin outside
    them (``config.margin``), whose light shines in (the same frames).
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
        light = (render_emitters(x, y, ph, sig, (h, w), p) if cfg.psf == "gaussian"
                 else render_airy(x, y, ph, sig / FWHM_TO_SIGMA, (h, w), p))
        expected = light + draw(rng, cfg.background)
        electrons = camera_electrons(rng, expected, draw(rng, cfg.em_gain), cfg.read_noise)
        adu = draw(rng, cfg.base_level) + draw(rng, cfg.gain) * electrons
        frames[f] = np.clip(np.round(adu), 0, 65535)
        inside = ((x >= 0) & (x < w * p) & (y >= 0) & (y < h * p)) | bool(outside)
        parts.append(Localizations(np.full(inside.sum(), f), x[inside], y[inside], ph[inside], sigma=sig[inside]))
    return frames, Localizations.concatenate(parts) if parts else Localizations.empty()


@dataclass
class MovieConfig:
    """The training distribution of the shipped model: short movies whose
    settings are drawn per movie, so that one network and one threshold hold
    from empty frames to crowded ones, on any camera.

    Per movie: density (emitters/um^2; a fraction ``sparse_fraction`` drawn
    log-uniform in ``sparse_density``, the rest uniform in ``density``),
    PSF FWHM (nm, each emitter within +-``fwhm_jitter`` of it), photons
    (each emitter log-uniform between a low level drawn log-uniform in
    ``photons_low`` and ``photon_spread`` times it, capped at ``photons_max``),
    background (photons/px, log-uniform, +-``background_jitter`` per frame,
    a linear gradient up to +-``background_gradient`` across the frame), and
    the camera: EMCCD-like with probability ``emccd_fraction`` (EM gain,
    ``emccd_adu_per_photon`` ADU per photoelectron overall, read noise in
    electrons after it), otherwise sCMOS/CCD-like (``gain`` ADU per photoelectron, read noise
    ``read_noise`` e- rms). Per frame: the density varies by
    +-``density_jitter``, and a fraction ``empty_fraction`` of frames has no
    emitter at all. Emitters within ``margin`` nm outside the frame shine in.
    A fraction ``airy_fraction`` of the movies has an Airy PSF (rings), the
    rest an integrated Gaussian.
    """

    frame_size: tuple[int, int] = (32, 32)  # (y, x) px
    pixel_size: float = 100.0  # nm
    frames_per_movie: int = 8
    density: Range = (0.5, 9.0)
    sparse_density: Range = (0.02, 1.0)
    sparse_fraction: float = 0.2
    density_jitter: float = 0.4
    empty_fraction: float = 0.08
    fwhm: Range = (170.0, 370.0)
    fwhm_jitter: float = 0.1
    photons_low: Range = (120.0, 2000.0)
    photon_spread: Range = (1.5, 12.0)
    photons_max: float = 10000.0
    background: Range = (3.0, 130.0)
    background_jitter: float = 0.15
    background_gradient: float = 0.3
    base_level: Range = (0.0, 600.0)  # ADU
    gain: Range = (0.3, 5.0)  # ADU per photoelectron (sCMOS/CCD)
    read_noise: Range = (0.0, 8.0)  # e- rms (sCMOS/CCD)
    emccd_fraction: float = 0.35
    emccd_em_gain: Range = (20.0, 300.0)
    emccd_adu_per_photon: Range = (1.0, 20.0)  # EM gain x ADU per electron after it
    emccd_read_noise: Range = (5.0, 80.0)  # e- rms after multiplication
    margin: float = 400.0  # nm
    airy_fraction: float = 0.0  # movies whose PSF is an Airy pattern (`render_airy`) of their FWHM

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


def _log_draw(rng: np.random.Generator, r: Range, size=None):
    lo, hi = as_range("range", r)
    if hi <= lo or lo <= 0:
        return draw(rng, r, size)
    return np.exp(rng.uniform(np.log(lo), np.log(hi), size))


def simulate_movies(n_movies: int, config: MovieConfig | None = None,
                    seed: int | None = 0) -> tuple[np.ndarray, Localizations, np.ndarray, list[dict]]:
    """Simulate ``n_movies`` short movies drawn from ``config``'s ranges.

    Returns frames (frame, y, x) float32 ADU (``frames_per_movie`` per movie,
    movie after movie), the ground truth (nm, photons), the movie index of
    each frame, and each movie's drawn settings (plain types).
    """
    cfg = config or MovieConfig()
    if int(n_movies) < 1:
        raise DSIRError(f"n_movies must be >= 1, got {n_movies}")
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in cfg.frame_size)
    p, m, k = float(cfg.pixel_size), float(cfg.margin), int(cfg.frames_per_movie)
    area_um2 = (h * p + 2 * m) * (w * p + 2 * m) / 1e6
    frames = np.empty((n_movies * k, h, w), dtype=np.float32)
    movie = np.repeat(np.arange(n_movies), k)
    parts, settings = [], []
    yy = (np.arange(h)[:, None] + 0.5) / h - 0.5
    xx = (np.arange(w)[None, :] + 0.5) / w - 0.5
    for mv in range(n_movies):
        sparse = rng.random() < cfg.sparse_fraction
        dens = float(_log_draw(rng, cfg.sparse_density) if sparse else draw(rng, cfg.density))
        fwhm = float(draw(rng, cfg.fwhm))
        lo = float(_log_draw(rng, cfg.photons_low))
        hi = min(lo * float(_log_draw(rng, cfg.photon_spread)), cfg.photons_max)
        bg = float(_log_draw(rng, cfg.background))
        gy, gx = rng.uniform(-cfg.background_gradient, cfg.background_gradient, 2)
        emccd = rng.random() < cfg.emccd_fraction
        if emccd:
            em = float(_log_draw(rng, cfg.emccd_em_gain))
            gain = float(_log_draw(rng, cfg.emccd_adu_per_photon)) / em
            rn = float(draw(rng, cfg.emccd_read_noise))
        else:
            em, gain, rn = 1.0, float(_log_draw(rng, cfg.gain)), float(draw(rng, cfg.read_noise))
        base = float(draw(rng, cfg.base_level))
        # drawn only when asked for: the movies of a config without Airy ones stay as they were
        airy = cfg.airy_fraction > 0 and rng.random() < cfg.airy_fraction
        settings.append({"density": dens, "fwhm": fwhm, "photons": [lo, hi], "background": bg,
                         "emccd": bool(emccd), "em_gain": em, "gain": gain, "read_noise": rn, "base_level": base,
                         "psf": "airy" if airy else "gaussian"})
        for j in range(k):
            f = mv * k + j
            lam = 0.0 if rng.random() < cfg.empty_fraction else dens * area_um2 * rng.uniform(
                1 - cfg.density_jitter, 1 + cfg.density_jitter)
            n = rng.poisson(lam)
            x = rng.uniform(-m, w * p + m, n)
            y = rng.uniform(-m, h * p + m, n)
            ph = np.exp(rng.uniform(np.log(lo), np.log(max(hi, lo)), n)) if hi > lo else np.full(n, lo)
            sig = fwhm * rng.uniform(1 - cfg.fwhm_jitter, 1 + cfg.fwhm_jitter, n) * FWHM_TO_SIGMA
            b = bg * rng.uniform(1 - cfg.background_jitter, 1 + cfg.background_jitter)
            light = (render_airy(x, y, ph, sig / FWHM_TO_SIGMA, (h, w), p, oversample=3, radius_px=8) if airy
                     else render_emitters(x, y, ph, sig, (h, w), p))
            expected = light + b * (1 + gy * yy + gx * xx)
            electrons = camera_electrons(rng, expected, em, rn)
            frames[f] = np.clip(np.round(base + gain * electrons), 0, 65535)
            inside = (x >= 0) & (x < w * p) & (y >= 0) & (y < h * p)
            parts.append(Localizations(np.full(inside.sum(), f), x[inside], y[inside], ph[inside], sigma=sig[inside]))
    return frames, Localizations.concatenate(parts), movie, settings

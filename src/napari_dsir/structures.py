"""Structured SMLM movies: blinking fluorophores on filaments or rings, with drift.

Fluorophores are placed along structures (random smooth filaments, or rings
of a given radius) at ``labels_per_nm`` per nm of contour. Each blinks: it is
ON in bursts of on average ``mean_on_frames`` frames, so that on average
``density`` fluorophores per um^2 are ON in a frame, with ``photons`` per ON
frame. The stage drifts linearly plus a random walk (nm per frame).

`simulate_structure` renders camera frames (frame, y, x) with the camera and
PSF model of `napari_dsir.simulate`; `simulate_structure_locs` skips the camera
and returns localizations with Gaussian localization noise instead (cheap:
10,000 frames in about a second). Positions are nm from the top-left corner
of pixel (0, 0); a drift is what is SUBTRACTED to correct positions
(README, "Coordinates and files"), so an emitter at p appears at p + drift(frame).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .drift import Drift
from .errors import DSIRError
from .locs import Localizations
from .simulate import FWHM_TO_SIGMA, SimulationConfig, as_range, camera_electrons, draw, render_emitters


@dataclass
class StructureConfig:
    """Settings of a structured, blinking, drifting movie (nm, frames).

    ``field_nm`` (height, width) is the area holding the structures; with
    `simulate_structure` the camera frame (``SimulationConfig.frame_size`` x
    ``pixel_size``) is used instead. ``photons`` is a number or a (min, max)
    range drawn per ON frame.
    """

    field_nm: tuple[float, float] = (6400.0, 6400.0)
    structure: str = "filaments"  # or "rings"
    n_structures: int = 12
    filament_persistence_nm: float = 2000.0  # persistence length of the random filaments
    ring_radius_nm: float = 100.0
    labels_per_nm: float = 0.2  # fluorophores per nm of contour
    label_jitter_nm: float = 0.0  # offset of a fluorophore from the structure (linker), per axis
    density: float = 1.0  # mean ON fluorophores per um^2 per frame
    mean_on_frames: float = 1.5  # mean length of an ON burst (frames)
    photons: float | tuple[float, float] = (500.0, 3000.0)  # per ON frame
    drift_velocity_nm: tuple[float, float] = (0.0, 0.0)  # (x, y) nm per frame
    drift_walk_nm: float = 0.0  # random-walk step (one standard deviation per axis), nm per frame

    def validate(self) -> StructureConfig:
        try:
            return self._validate()
        except TypeError:
            raise DSIRError(f"structure settings: a setting is not a number ({self})") from None

    def _validate(self) -> StructureConfig:
        try:
            h, w = (float(v) for v in self.field_nm)
        except (TypeError, ValueError):
            raise DSIRError(f"field_nm: expected (height, width) in nm, got {self.field_nm!r}") from None
        if not (h > 0 and w > 0 and math.isfinite(h) and math.isfinite(w)):
            raise DSIRError(f"field_nm must be positive, got {self.field_nm}")
        if self.structure not in ("filaments", "rings"):
            raise DSIRError(f"structure: expected 'filaments' or 'rings', got {self.structure!r}")
        if int(self.n_structures) < 1 or not self.labels_per_nm > 0:
            raise DSIRError("n_structures must be >= 1 and labels_per_nm > 0")
        if self.structure == "rings" and not (0 < 2 * self.ring_radius_nm < min(h, w)):
            raise DSIRError(f"ring_radius_nm={self.ring_radius_nm} does not fit the {h} x {w} nm field")
        if not (self.density > 0 and self.mean_on_frames >= 1):
            raise DSIRError("density must be > 0 and mean_on_frames >= 1")
        if self.drift_walk_nm < 0 or self.label_jitter_nm < 0 or self.filament_persistence_nm <= 0:
            raise DSIRError("drift_walk_nm, label_jitter_nm must be >= 0, filament_persistence_nm > 0")
        if as_range("photons", self.photons)[0] <= 0:
            raise DSIRError(f"photons must be > 0, got {self.photons}")
        return self


@dataclass
class StructureTruth:
    """The truth of a structured movie: the fluorophores' positions (nm, no drift)
    and the true `Drift` per frame."""

    label_x: np.ndarray
    label_y: np.ndarray
    drift: Drift
    extra: dict = field(default_factory=dict)


def filaments(n: int, field_nm, rng, persistence_nm=2000.0, step_nm=2.0) -> list[np.ndarray]:
    """``n`` smooth random curves (worm-like chains) crossing the field: each an
    (m, 2) array of (x, y) nm points ``step_nm`` apart, inside the field."""
    h, w = field_nm
    out = []
    length = 2.0 * math.hypot(h, w)
    m = int(length / step_nm)
    for _ in range(int(n)):
        start = rng.uniform([0, 0], [w, h])
        theta0 = rng.uniform(0, 2 * np.pi)
        turns = rng.normal(0.0, math.sqrt(step_nm / persistence_nm), m)
        theta = theta0 + np.cumsum(turns)
        steps = step_nm * np.column_stack([np.cos(theta), np.sin(theta)])
        # grow from the start point both ways so it crosses the field
        fwd = start + np.cumsum(steps[: m // 2], axis=0)
        bwd = start - np.cumsum(steps[m // 2:], axis=0)
        pts = np.vstack([bwd[::-1], start[None], fwd])
        inside = (pts[:, 0] >= 0) & (pts[:, 0] < w) & (pts[:, 1] >= 0) & (pts[:, 1] < h)
        out.append(pts[inside])
    return out


def place_labels(cfg: StructureConfig, rng) -> tuple[np.ndarray, np.ndarray]:
    """Fluorophore positions (x, y) nm on the structures of ``cfg``."""
    h, w = cfg.field_nm
    xs, ys = [], []
    if cfg.structure == "filaments":
        for pts in filaments(cfg.n_structures, (h, w), rng, cfg.filament_persistence_nm):
            if len(pts) < 2:
                continue
            seg = np.hypot(*np.diff(pts, axis=0).T)
            seg[seg > 10.0] = 0.0  # a filament leaving and re-entering the field: no labels on the jump
            arc = np.concatenate([[0.0], np.cumsum(seg)])
            n = rng.poisson(cfg.labels_per_nm * arc[-1])
            s = rng.uniform(0, arc[-1], n)
            xs.append(np.interp(s, arc, pts[:, 0]))
            ys.append(np.interp(s, arc, pts[:, 1]))
    else:
        r = cfg.ring_radius_nm
        centres = rng.uniform([r, r], [w - r, h - r], (int(cfg.n_structures), 2))
        for cx, cy in centres:
            n = rng.poisson(cfg.labels_per_nm * 2 * np.pi * r)
            a = rng.uniform(0, 2 * np.pi, n)
            xs.append(cx + r * np.cos(a))
            ys.append(cy + r * np.sin(a))
    x = np.concatenate(xs) if xs else np.zeros(0)
    y = np.concatenate(ys) if ys else np.zeros(0)
    if cfg.label_jitter_nm > 0:
        x = x + rng.normal(0, cfg.label_jitter_nm, len(x))
        y = y + rng.normal(0, cfg.label_jitter_nm, len(y))
    return x, y


def drift_trajectory(n_frames: int, velocity_nm=(0.0, 0.0), walk_nm: float = 0.0, rng=None) -> Drift:
    """Linear drift (``velocity_nm`` (x, y) nm/frame) plus a Gaussian random walk
    (``walk_nm`` per frame), 0 at frame 0."""
    rng = np.random.default_rng(rng)
    t = np.arange(n_frames, dtype=np.float64)
    dx = velocity_nm[0] * t
    dy = velocity_nm[1] * t
    if walk_nm > 0 and n_frames > 1:
        steps = rng.normal(0.0, walk_nm, (n_frames - 1, 2))
        walk = np.vstack([[0.0, 0.0], np.cumsum(steps, axis=0)])
        dx, dy = dx + walk[:, 0], dy + walk[:, 1]
    return Drift(np.arange(n_frames), dx, dy)


def blink(n_labels: int, n_frames: int, duty: float, mean_on_frames: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """ON (label, frame) pairs: bursts of geometric length (mean ``mean_on_frames``)
    starting at random, so that a label is ON a fraction ``duty`` of the frames."""
    n_bursts = rng.poisson(n_labels * n_frames * duty / mean_on_frames)
    label = rng.integers(0, n_labels, n_bursts)
    start = rng.integers(0, n_frames, n_bursts)
    length = rng.geometric(1.0 / mean_on_frames, n_bursts)
    rep = np.repeat(np.arange(n_bursts), length)
    offset = np.arange(len(rep)) - np.repeat(np.cumsum(length) - length, length)
    frame = start[rep] + offset
    lab = label[rep]
    keep = frame < n_frames
    key = np.unique(frame[keep].astype(np.int64) * n_labels + lab[keep])  # one emission per label and frame
    return key % n_labels, key // n_labels


def _events(cfg: StructureConfig, n_frames: int, seed, labels=None) -> tuple[Localizations, StructureTruth]:
    """ON emitters (true positions + drift, photons) and the truth."""
    cfg = cfg.validate()
    if int(n_frames) < 1:
        raise DSIRError(f"n_frames must be >= 1, got {n_frames}")
    rng = np.random.default_rng(seed)
    if labels is None:
        lx, ly = place_labels(cfg, rng)
    else:
        try:
            lx, ly = (np.asarray(v, dtype=np.float64).ravel() for v in labels)
        except (TypeError, ValueError):
            raise DSIRError("labels: expected (x, y) arrays of fluorophore positions in nm") from None
        if len(lx) != len(ly):
            raise DSIRError(f"labels: {len(lx)} x but {len(ly)} y positions")
    if len(lx) == 0:
        raise DSIRError("no fluorophores were placed: more structures or labels_per_nm, please")
    h, w = cfg.field_nm
    duty = cfg.density * h * w / 1e6 / len(lx)
    if duty > 0.5:
        raise DSIRError(
            f"density {cfg.density}/um^2 needs {duty:.0%} of the {len(lx)} fluorophores ON per frame: "
            "more labels or a lower density"
        )
    label, frame = blink(len(lx), int(n_frames), duty, cfg.mean_on_frames, rng)
    drift = drift_trajectory(int(n_frames), cfg.drift_velocity_nm, cfg.drift_walk_nm, rng)
    photons = draw(rng, cfg.photons, len(label))
    on = Localizations(frame, lx[label] + drift.x[frame], ly[label] + drift.y[frame], photons=photons)
    return on, StructureTruth(lx, ly, drift, {"label": label, "duty": duty})


def localization_precision(photons, sigma_nm: float, pixel_nm: float, background: float) -> np.ndarray:
    """Mortensen et al. (2010) precision (nm, per axis) of a Gaussian-PSF MLE fit:
    sa^2/N (16/9 + 8 pi sa^2 b / (N a^2)), sa^2 = sigma^2 + a^2/12."""
    n = np.asarray(photons, dtype=np.float64)
    sa2 = sigma_nm**2 + pixel_nm**2 / 12.0
    return np.sqrt(sa2 / n * (16.0 / 9.0 + 8.0 * np.pi * sa2 * background / (n * pixel_nm**2)))


def simulate_structure_locs(
    n_frames: int,
    config: StructureConfig | None = None,
    *,
    precision_nm: float | None = None,
    psf_sigma_nm: float = 110.0,
    pixel_size_nm: float = 100.0,
    background: float = 20.0,
    seed: int | None = 0,
    labels: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[Localizations, Localizations, StructureTruth]:
    """Localizations of a structured, blinking, drifting movie without camera frames.

    Each ON emitter is localized with Gaussian noise of ``precision_nm`` (per
    axis), or, when None, of its Mortensen precision from its photons, the PSF
    ``psf_sigma_nm``, camera ``pixel_size_nm`` and ``background`` photons/px.
    ``labels`` (x, y) nm replaces the structures of ``config`` by given
    fluorophores (e.g. two independent acquisitions of one sample).
    Returns (noisy localizations with ``photons`` and ``uncertainty``, the true
    ON positions (drift included), the truth: labels and true `Drift`).
    """
    on, truth = _events(config or StructureConfig(), n_frames, seed, labels)
    rng = np.random.default_rng(None if seed is None else seed + 1)
    if precision_nm is None:
        sd = localization_precision(on.photons, psf_sigma_nm, pixel_size_nm, background)
    else:
        if not precision_nm > 0:
            raise DSIRError(f"precision_nm must be > 0 nm, got {precision_nm}")
        sd = np.full(len(on), float(precision_nm))
    noisy = Localizations(
        on.frame, on.x + rng.normal(0, 1, len(on)) * sd, on.y + rng.normal(0, 1, len(on)) * sd,
        photons=on.photons, uncertainty=sd,
    )
    return noisy, on, truth


def simulate_structure(
    n_frames: int,
    config: StructureConfig | None = None,
    camera: SimulationConfig | None = None,
    seed: int | None = 0,
) -> tuple[np.ndarray, Localizations, Drift]:
    """Camera frames (frame, y, x) float32 ADU of a structured movie.

    The field is the camera frame (``camera.frame_size`` px of
    ``camera.pixel_size`` nm, `napari_dsir.simulate.SimulationConfig`: PSF
    FWHM, background, base level, gain, read noise; its density and photons
    are replaced by ``config``'s). Returns the frames, the ground truth of the
    ON emitters (positions with drift, nm; ``photons``; ``intensity`` =
    photons as in `napari_dsir.simulate.simulate`) and the true `Drift`.
    """
    cam = (camera or SimulationConfig()).validate()
    cfg = config or StructureConfig()
    h, w = (int(v) for v in cam.frame_size)
    p = float(cam.pixel_size)
    cfg = StructureConfig(**{**cfg.__dict__, "field_nm": (h * p, w * p)})
    on, truth = _events(cfg, n_frames, seed)
    rng = np.random.default_rng(None if seed is None else seed + 1)
    sig = draw(rng, cam.fwhm, len(on)) * FWHM_TO_SIGMA
    frames = np.empty((int(n_frames), h, w), dtype=np.float32)
    bounds = np.searchsorted(on.frame, np.arange(int(n_frames) + 1))
    for f in range(int(n_frames)):
        a, b = bounds[f], bounds[f + 1]
        expected = render_emitters(on.x[a:b], on.y[a:b], on.photons[a:b], sig[a:b], (h, w), p)
        expected += draw(rng, cam.background)
        electrons = camera_electrons(rng, expected, draw(rng, cam.em_gain), cam.read_noise)
        adu = draw(rng, cam.base_level) + draw(rng, cam.gain) * electrons
        frames[f] = np.clip(np.round(adu), 0, 65535)
    inside = (on.x >= 0) & (on.x < w * p) & (on.y >= 0) & (on.y < h * p)
    gt = on.select(inside)
    gt.intensity = gt.photons.copy()
    return frames, gt, truth.drift

"""Drift correction by redundant cross-correlation (RCC; Wang et al. 2014,
Opt Express 22:15982).

The frames that hold localizations are cut into N time segments of equal
numbers of such frames (or into runs of a given number of movie frames):
frames without any (a gap with the laser off, frames filtered out) are
skipped, so no segment is empty, though one may hold frames from both sides
of a gap. Each segment is rendered as a histogram
(``pixel_size_nm`` pixels, a small Gaussian blur) and every pair of segments is
cross-correlated (FFT). The sub-pixel peak of pair (i, j) measures
d_j - d_i, the drift of segment j relative to segment i; the N(N-1)/2
measurements are solved for the N-1 unknown drifts by least squares, pairs
whose residual exceeds a threshold are dropped and the system is solved again.
The segment drifts (at the segments' mean frames) are interpolated to every
frame that holds localizations, linearly between those across a gap, and
held constant before the first and after the last.

A drift (README, "From a table to a publishable image") is the stage displacement at a frame: positions
are corrected by SUBTRACTING it. It is relative to the first frame. A drift
table file has columns ``frame`` (1-based), ``x [nm]``, ``y [nm]``.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field

import numpy as np
from scipy import fft
from scipy.interpolate import CubicSpline
from scipy.ndimage import gaussian_filter

from .errors import DSIRError
from .io import atomic_output, check_pixel_size
from .locs import Localizations


@dataclass
class Drift:
    """Drift per frame: ``frames`` 0-based, ``x``, ``y`` in nm (subtract to correct).

    From `estimate_drift` also the segments: ``segment_frames`` (mean frame of
    each segment), ``segment_x``, ``segment_y`` (nm), and ``pairs_used`` /
    ``pairs_total`` of the cross-correlations kept by the outlier rejection.
    """

    frames: np.ndarray
    x: np.ndarray
    y: np.ndarray
    segment_frames: np.ndarray = field(default_factory=lambda: np.zeros(0))
    segment_x: np.ndarray = field(default_factory=lambda: np.zeros(0))
    segment_y: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pairs_used: int = 0
    pairs_total: int = 0

    def __post_init__(self):
        self.frames = np.asarray(self.frames, dtype=np.int64).ravel()
        self.x = np.asarray(self.x, dtype=np.float64).ravel()
        self.y = np.asarray(self.y, dtype=np.float64).ravel()
        n = len(self.frames)
        if n == 0 or len(self.x) != n or len(self.y) != n:
            raise DSIRError("a drift needs frames, x and y of the same, non-zero length")
        if np.any(np.diff(self.frames) <= 0):
            raise DSIRError("drift frames must be strictly increasing")
        if not (np.isfinite(self.x).all() and np.isfinite(self.y).all()):
            raise DSIRError("the drift holds non-finite values")

    def at(self, frame) -> tuple[np.ndarray, np.ndarray]:
        """Drift (x, y) nm at 0-based ``frame`` (linear between the frames of
        the table); frames outside the table are refused."""
        frame = np.asarray(frame)
        if len(frame) and (frame.min() < self.frames[0] or frame.max() > self.frames[-1]):
            raise DSIRError(
                f"the drift covers frames {self.frames[0] + 1}-{self.frames[-1] + 1} (1-based) but the "
                f"localizations are in frames {int(frame.min()) + 1}-{int(frame.max()) + 1}: wrong drift table?"
            )
        return np.interp(frame, self.frames, self.x), np.interp(frame, self.frames, self.y)

    def apply(self, locs: Localizations) -> Localizations:
        """A drift-corrected copy of ``locs`` (drift subtracted)."""
        return correct(locs, self)


def correct(locs: Localizations, drift: Drift) -> Localizations:
    """A copy of ``locs`` with the drift at each localization's frame subtracted."""
    dx, dy = drift.at(locs.frame)
    out = locs.select(np.arange(len(locs)))
    out.x = locs.x - dx
    out.y = locs.y - dy
    return out


# ----------------------------------------------------------------------------- RCC


def estimate_drift(
    locs: Localizations,
    *,
    segments: int | None = 10,
    segment_frames: int | None = None,
    pixel_size_nm: float = 20.0,
    blur_px: float = 1.0,
    max_drift_nm: float = 1000.0,
    residual_nm: float | None = None,
    min_locs: int = 100,
    interpolation: str = "cubic",
    n_frames: int | None = None,
    min_peak_z: float = 6.0,
) -> Drift:
    """Estimate the drift of a table by redundant cross-correlation.

    segments: number of time segments, cut from the frames that hold
    localizations, or ``segment_frames`` movie frames each (which takes
    precedence); a gap of frames without any is no segment; each needs
    ``min_locs`` localizations.
    pixel_size_nm, blur_px: the segment histograms (nm per pixel; Gaussian
    blur in pixels). max_drift_nm: largest displacement searched between two
    segments. residual_nm: pairs whose residual exceeds it are discarded and
    the system solved again (default: one pixel). interpolation: ``"cubic"``
    or ``"linear"`` through the segments' mean frames, extrapolated linearly
    over the half segments at the ends, linear across frames without
    localizations, constant before the first and after the last frame with
    localizations. n_frames: frames of the movie (default:
    the last frame of the table + 1). min_peak_z: a pair's correlation peak
    counts when it stands this many standard deviations above the mean of the
    search window.

    Raises DSIRError when the movie is too short or sparse for the segments,
    when no peak links the segments, or when the peaks disagree (by more than
    ``residual_nm`` even after dropping outliers, or fewer than half of the
    pairs agree), rather than return a wild estimate.

    Returns a `Drift` for frames 0 .. n_frames-1, relative to frame 0.
    """
    p = check_pixel_size(pixel_size_nm, "pixel_size_nm")
    if not (blur_px >= 0 and max_drift_nm > 0):
        raise DSIRError("blur_px must be >= 0 and max_drift_nm > 0")
    if interpolation not in ("cubic", "linear"):
        raise DSIRError(f"interpolation: expected 'cubic' or 'linear', got {interpolation!r}")
    ok = np.isfinite(locs.x) & np.isfinite(locs.y)
    locs = locs.select(ok)
    if len(locs) == 0:
        raise DSIRError("drift: no localizations")
    last = int(locs.frame.max())
    n_frames = last + 1 if n_frames is None else int(n_frames)
    if n_frames <= last or locs.frame.min() < 0:
        raise DSIRError(f"drift: n_frames={n_frames} but the table reaches frame {last + 1} (1-based)")
    seg = _segment_index(locs.frame, segments, segment_frames)
    nseg = int(seg.max()) + 1
    counts = np.bincount(seg, minlength=nseg)
    if counts.min() < min_locs:
        raise DSIRError(_too_sparse(locs.frame, seg, counts, segments, segment_frames, min_locs))
    centres = np.array([locs.frame[seg == k].mean() for k in range(nseg)])

    # segment images on one grid around the localizations, padded by the largest drift searched
    pad = int(math.ceil(max_drift_nm / p)) + int(math.ceil(3 * blur_px)) + 2
    x0, y0 = locs.x.min(), locs.y.min()
    nx = int((locs.x.max() - x0) // p) + 1
    ny = int((locs.y.max() - y0) // p) + 1
    shape = (_fft_size(ny + 2 * pad), _fft_size(nx + 2 * pad))
    if shape[0] * shape[1] > 1 << 25:
        raise DSIRError(f"drift: {shape[0]} x {shape[1]} px segment images are too large; use a larger pixel size")
    ix = ((locs.x - x0) // p).astype(np.int64) + pad
    iy = ((locs.y - y0) // p).astype(np.int64) + pad
    spectra = []
    for k in range(nseg):
        m = seg == k
        img = np.bincount(iy[m] * shape[1] + ix[m], minlength=shape[0] * shape[1]).reshape(shape).astype(np.float32)
        if blur_px > 0:
            img = gaussian_filter(img, blur_px, mode="constant")
        spectra.append(fft.rfft2(img))  # single precision: half the memory of 20 spectra
    search = min(int(math.ceil(max_drift_nm / p)), min(shape) // 2 - 2)

    rows, shifts = [], []
    for i in range(nseg):
        for j in range(i + 1, nseg):
            peak = _correlation_peak(spectra[i], spectra[j], shape, search, min_peak_z)
            if peak is not None:
                rows.append((i, j))
                shifts.append(peak * p)
    pairs_total = nseg * (nseg - 1) // 2
    if not rows:
        raise DSIRError(
            "drift: no correlation peak between any two segments (too sparse, or a drift larger than "
            f"max_drift_nm={max_drift_nm:g} nm)"
        )
    threshold = p if residual_nm is None else float(residual_nm)
    d, used, worst = _solve(np.array(rows), np.array(shifts), nseg, threshold)
    if d is None:
        raise DSIRError(
            f"drift: the correlation peaks found ({len(rows)} of {pairs_total} segment pairs) do not link "
            "every segment; the movie is too sparse for this many segments"
        )
    if worst > threshold or (nseg >= 3 and used < max(nseg, (pairs_total + 1) // 2)):
        raise DSIRError(
            f"drift: the segment cross-correlations disagree ({used} of {pairs_total} pairs consistent within "
            f"{threshold:g} nm): the movie is too sparse for {nseg} segments, or its drift is not a shift"
        )
    frames = np.arange(n_frames)
    held = np.unique(locs.frame)
    dx = _interpolate(centres, d[:, 1], frames, interpolation, held)
    dy = _interpolate(centres, d[:, 0], frames, interpolation, held)
    dx -= dx[0]
    dy -= dy[0]
    return Drift(
        frames, dx, dy, centres, d[:, 1] - d[0, 1], d[:, 0] - d[0, 0], pairs_used=used, pairs_total=pairs_total
    )


def _whole(name, value) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DSIRError(f"{name}: expected a whole number, got {value!r}") from None


def _segment_index(frame, segments, segment_frames) -> np.ndarray:
    """Segment of each localization: ``segment_frames`` movie frames each,
    a run with no localization (a gap) no segment; else ``segments`` equal
    runs of the frames that hold localizations (frames without any are
    skipped, so a gap in the movie is no segment)."""
    segments, segment_frames = _whole("segments", segments), _whole("segment_frames", segment_frames)
    held, rank = np.unique(frame, return_inverse=True)  # rank: index of a localization's frame among those held
    nf = len(held)
    if segment_frames is not None:
        if segment_frames < 1:
            raise DSIRError(f"segment_frames must be >= 1, got {segment_frames}")
        # runs of ``segment_frames`` movie frames; a run with no localization (a gap) is no segment
        seg = np.unique((frame - int(frame.min())) // segment_frames, return_inverse=True)[1].reshape(-1)
        if seg.max() < 1:
            span = int(frame.max() - frame.min()) + 1
            raise DSIRError(f"drift: the table's localizations span {span} frame{'s' * (span != 1)}, not enough "
                            f"for two segments of {segment_frames} frames")
        return seg
    if segments is None or segments < 2:
        raise DSIRError(f"drift needs at least 2 segments, got {segments}")
    if nf < segments:
        raise DSIRError(f"drift: the table has {nf} frame{'s' * (nf != 1)} with localizations, fewer than "
                        f"{segments} segments")
    return rank * segments // nf


def _too_sparse(frame, seg, counts, segments, segment_frames, min_locs) -> str:
    """Why the segments are refused: the emptiest one (its frames, 1-based)
    and how many segments (of equal runs of frames) would each hold
    ``min_locs``."""
    k = int(np.argmin(counts))
    nseg = len(counts)
    a, b = int(frame[seg == k].min()) + 1, int(frame[seg == k].max()) + 1
    span = f"frame {a}" if a == b else f"frames {a}-{b}"
    msg = (f"drift: segment {k + 1} of {nseg} ({span}) has {int(counts[k])} localizations (need {min_locs}): "
           f"the table ({len(frame)} localizations) is too sparse for {nseg} segments")
    if segment_frames is not None:
        return msg + "; use more frames per segment"
    per_frame = np.bincount(np.unique(frame, return_inverse=True)[1])
    cum = np.concatenate([[0], np.cumsum(per_frame)])
    nf = len(per_frame)
    for n in range(int(segments) - 1, 1, -1):
        edges = cum[-(-np.arange(n + 1) * nf // n)]  # first rank of each segment: ceil(i nf / n)
        if np.diff(edges).min() >= min_locs:
            return msg + f"; {n} segments would each hold {min_locs}"
    return msg + f"; even 2 segments (equal runs of its frames) would not hold {min_locs} each"


def _fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n."""
    best = 1 << (n - 1).bit_length()
    p2 = 1
    while p2 < best:
        p3 = p2
        while p3 < best:
            p5 = p3
            while p5 < best:
                if p5 >= n:
                    best = p5
                p5 *= 5
            p3 *= 3
        p2 *= 2
    return best


def _correlation_peak(fa, fb, shape, search, min_z) -> np.ndarray | None:
    """Sub-pixel (dy, dx) px of segment b relative to a, or None when the
    correlation has no clear peak inside the search window (its maximum less
    than ``min_z`` standard deviations above the window's mean, or on its edge)."""
    cc = fft.irfft2(np.conj(fa) * fb, s=shape).astype(np.float64)
    win = np.fft.fftshift(cc)[shape[0] // 2 - search - 1: shape[0] // 2 + search + 2,
                              shape[1] // 2 - search - 1: shape[1] // 2 + search + 2]
    sd = win.std()
    if not np.isfinite(win).all() or win.max() <= 0 or not sd > 0 or (win.max() - win.mean()) / sd < min_z:
        return None
    iy, ix = np.unravel_index(np.argmax(win), win.shape)
    if iy in (0, win.shape[0] - 1) or ix in (0, win.shape[1] - 1):
        return None  # on the edge of the search window: a displacement larger than searched, or noise
    ry = _subpixel(win[iy - 1, ix], win[iy, ix], win[iy + 1, ix])
    rx = _subpixel(win[iy, ix - 1], win[iy, ix], win[iy, ix + 1])
    c = search + 1
    return np.array([iy - c + ry, ix - c + rx])


def _subpixel(a, b, c) -> float:
    """Offset (px, within +-0.5) of a peak from three samples: a Gaussian fit
    (parabola of the logs), or a parabola when a sample is not positive."""
    if a > 0 and b > 0 and c > 0:
        a, b, c = math.log(a), math.log(b), math.log(c)
    den = a - 2 * b + c
    if den >= 0:
        return 0.0
    return float(np.clip(0.5 * (a - c) / den, -0.5, 0.5))


def _solve(pairs, shifts, nseg, threshold):
    """Least-squares segment drifts (nseg, 2) with d[0] = 0 from d[j] - d[i] =
    shift, dropping the worst pair while its residual exceeds ``threshold`` and
    the rest still links every segment. Returns (drifts, pairs used, largest
    residual) or (None, 0, inf) when the pairs do not link every segment."""
    keep = np.ones(len(pairs), bool)
    while True:
        a = np.zeros((int(keep.sum()), nseg - 1))
        rows = np.arange(len(a))
        pi, pj = pairs[keep, 0], pairs[keep, 1]
        a[rows[pj > 0], pj[pj > 0] - 1] += 1.0
        a[rows[pi > 0], pi[pi > 0] - 1] -= 1.0
        if np.linalg.matrix_rank(a) < nseg - 1:
            return None, 0, math.inf
        sol, *_ = np.linalg.lstsq(a, shifts[keep], rcond=None)
        resid = np.hypot(*(a @ sol - shifts[keep]).T)
        worst = int(np.argmax(resid))
        if resid[worst] <= threshold:
            break
        trial = keep.copy()
        trial[np.flatnonzero(keep)[worst]] = False
        b = np.zeros((int(trial.sum()), nseg - 1))
        r2 = np.arange(len(b))
        ti, tj = pairs[trial, 0], pairs[trial, 1]
        b[r2[tj > 0], tj[tj > 0] - 1] += 1.0
        b[r2[ti > 0], ti[ti > 0] - 1] -= 1.0
        if len(b) == 0 or np.linalg.matrix_rank(b) < nseg - 1:
            break
        keep = trial
    return np.vstack([[0.0, 0.0], sol]), int(keep.sum()), float(resid[worst])


def _interpolate(centres, values, frames, kind, held) -> np.ndarray:
    """Values at ``centres`` interpolated to ``frames``: at the frames that hold
    localizations (``held``, sorted) through the centres, extrapolated linearly
    over the half segments at the ends; between them (a gap) linearly from the
    frames on either side; constant before the first and after the last."""
    t = held.astype(np.float64)
    if len(centres) == 2 or kind == "linear":
        at = np.interp(t, centres, values)
    else:
        at = CubicSpline(centres, values, bc_type="natural")(np.clip(t, centres[0], centres[-1]))
    lo, hi = t < centres[0], t > centres[-1]
    s0 = (values[1] - values[0]) / (centres[1] - centres[0])
    s1 = (values[-1] - values[-2]) / (centres[-1] - centres[-2])
    at[lo] = values[0] + s0 * (t[lo] - centres[0])
    at[hi] = values[-1] + s1 * (t[hi] - centres[-1])
    return np.interp(frames, t, at)


# ----------------------------------------------------------------------------- files


def write_drift_table(path: str | os.PathLike, drift: Drift, overwrite: bool = False):
    """Write a drift table CSV: ``frame`` (1-based), ``x [nm]``, ``y [nm]``, atomically."""
    with atomic_output(path, overwrite) as tmp, open(tmp, "w", newline="") as fh:
        fh.write("frame,x [nm],y [nm]\n")
        for f, x, y in zip(drift.frames, drift.x, drift.y):
            fh.write(f"{int(f) + 1},{x:.4f},{y:.4f}\n")


def read_drift_table(path: str | os.PathLike) -> Drift:
    """Read a drift table written by `write_drift_table` (frames 1-based in the
    file, 0-based in the returned `Drift`; x, y in nm)."""
    try:
        with open(path, newline="") as fh:
            rows = list(csv.reader(line for line in fh if line.strip()))
    except (OSError, UnicodeDecodeError) as e:
        raise DSIRError(f"{path}: cannot read the drift table ({e})") from None
    if len(rows) < 2:
        raise DSIRError(f"{path}: a drift table needs a header and at least one row")
    header = [h.strip().strip('"').lower() for h in rows[0]]
    want = {"frame": None, "x": None, "y": None}
    for k, h in enumerate(header):
        name, _, unit = h.partition("[")
        name, unit = name.strip(), unit.strip(" ]")
        if name in want:
            if name != "frame" and unit not in ("", "nm"):
                raise DSIRError(f"{path}: column {h!r}: drift tables are in nm")
            want[name] = k
    if any(v is None for v in want.values()):
        raise DSIRError(f"{path}: a drift table needs the columns frame, x [nm], y [nm]; found {rows[0]}")
    try:
        data = np.array([[float(r[want[c]]) for c in ("frame", "x", "y")] for r in rows[1:]])
    except (ValueError, IndexError):
        raise DSIRError(f"{path}: the drift table holds a row that is not three numbers") from None
    frames = data[:, 0]
    if np.any(frames != np.round(frames)) or frames.min() < 1:
        raise DSIRError(f"{path}: drift-table frames must be whole numbers from 1")
    return Drift(frames.astype(np.int64) - 1, data[:, 1], data[:, 2])

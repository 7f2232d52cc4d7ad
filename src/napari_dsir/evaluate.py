"""Matching localizations to ground truth and the SMLM challenge metrics.

Per frame, one-to-one, within a radius (nm), minimising the total distance
(Hungarian). Jaccard = TP / (TP + FP + FN); RMSE is lateral, in nm;
efficiency E = 100 - sqrt((100 (1 - Jaccard))^2 + RMSE^2) (SMLM 2016).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from .errors import DSIRError, DSIRWarning
from .locs import Localizations


@dataclass
class Metrics:
    radius: float
    tp: int
    fp: int
    fn: int
    jaccard: float
    recall: float
    precision: float
    rmse: float  # nm, NaN when nothing matched
    efficiency: float

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}

    def summary(self) -> str:
        rmse = "n/a" if math.isnan(self.rmse) else f"{self.rmse:.1f} nm"
        return (
            f"radius {self.radius:g} nm: Jaccard {self.jaccard:.3f}, recall {self.recall:.3f}, "
            f"precision {self.precision:.3f}, RMSE {rmse}, efficiency {self.efficiency:.1f} "
            f"(TP {self.tp}, FP {self.fp}, FN {self.fn})"
        )


def match_frame(gt_xy: np.ndarray, pred_xy: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (gt_idx, pred_idx) of one-to-one matches within ``radius``,
    maximising the number of matches, then minimising the total distance."""
    if len(gt_xy) == 0 or len(pred_xy) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    d = np.sqrt(((gt_xy[:, None, :] - pred_xy[None, :, :]) ** 2).sum(-1))
    ok = d <= radius
    if not ok.any():
        return np.zeros(0, int), np.zeros(0, int)
    # only rows/cols with a candidate take part; forbidden pairs cost more
    # than any set of allowed ones, so the number of matches is maximal
    rows = np.flatnonzero(ok.any(1))
    cols = np.flatnonzero(ok.any(0))
    sub, subok = d[np.ix_(rows, cols)], ok[np.ix_(rows, cols)]
    big = radius * (min(sub.shape) + 1) + 1.0
    cost = np.where(subok, sub, big)
    r, c = linear_sum_assignment(cost)
    keep = subok[r, c]
    return rows[r[keep]], cols[c[keep]]


def scored_frames(stated, pred: Localizations, gt: Localizations, name: str = "the table",
                  base: int = 0) -> tuple[tuple[int, int] | None, str | None]:
    """The frames (start, stop; 0-based, stop excluded) to score ``pred``
    against ``gt`` over, and a note to show or None: the frames the
    localizations' run covered (``stated``: their table's or layer's
    "frames"), widened to every localization (a table edited, points drawn
    beyond the run: said); None, every frame (a table from elsewhere: said
    where the ground truth reaches beyond its localizations). A run on part
    of a movie is scored on that part, not against the truth of every frame.
    The notes count frames from ``base`` (0 as napari's slider, 1 as files)."""
    span = (int(stated[0]), int(stated[1])) if stated else None
    if not len(pred):
        return span, None
    lo, hi = int(pred.frame.min()), int(pred.frame.max())
    k = int(base)
    if span and (lo < span[0] or hi >= span[1]):
        wide = min(lo, span[0]), max(hi + 1, span[1])
        return wide, (f"{name} states frames {span[0] + k}-{span[1] - 1 + k}, but has localizations in frames "
                      f"{lo + k}-{hi + k}: frames {wide[0] + k}-{wide[1] - 1 + k} are scored")
    if not span and len(gt) and (gt.frame.min() < lo or gt.frame.max() > hi):
        return None, (f"{name} states no frame range (a table from elsewhere): the ground truth of every frame "
                      f"is scored, frames {int(gt.frame.min()) + k}-{int(gt.frame.max()) + k}, while its "
                      f"localizations lie in frames {lo + k}-{hi + k}")
    return span, None


def match(gt: Localizations, pred: Localizations, radius: float = 250.0):
    """Match frame by frame; returns (gt_idx, pred_idx, distances_nm)."""
    if not radius > 0:
        raise DSIRError(f"radius must be > 0 nm, got {radius}")
    gi, pi = [], []
    # rows grouped by frame once (stable sorts: rows keep their order within
    # a frame), not one pass over the tables per frame
    gorder = np.argsort(gt.frame, kind="stable")
    porder = np.argsort(pred.frame, kind="stable")
    gf, pf = gt.frame[gorder], pred.frame[porder]
    frames = np.intersect1d(gf, pf)
    g0, g1 = np.searchsorted(gf, frames), np.searchsorted(gf, frames, side="right")
    p0, p1 = np.searchsorted(pf, frames), np.searchsorted(pf, frames, side="right")
    for ga, gb, pa, pb in zip(g0, g1, p0, p1):
        g, p = gorder[ga:gb], porder[pa:pb]
        a, b = match_frame(np.column_stack([gt.x[g], gt.y[g]]), np.column_stack([pred.x[p], pred.y[p]]), radius)
        gi.append(g[a])
        pi.append(p[b])
    gi = np.concatenate(gi) if gi else np.zeros(0, int)
    pi = np.concatenate(pi) if pi else np.zeros(0, int)
    dist = np.hypot(gt.x[gi] - pred.x[pi], gt.y[gi] - pred.y[pi])
    return gi, pi, dist


def evaluate(gt: Localizations, pred: Localizations, radius: float = 250.0,
             frames: tuple[int, int] | None = None) -> Metrics:
    """SMLM challenge metrics of ``pred`` against ``gt`` at ``radius`` nm;
    ``frames`` (start, stop; 0-based, stop excluded): only those frames
    scored, e.g. ``(result.start, result.stop)`` of a run on part of a movie
    (else the truth of the frames it did not run counts as missed)."""
    if frames is not None:
        try:
            start, stop = (int(f) for f in frames)
            whole = all(float(f) == int(f) for f in frames)
        except (TypeError, ValueError):
            raise DSIRError(f"frames: expected (start, stop), got {frames!r}") from None
        if not (whole and 0 <= start < stop):
            raise DSIRError(f"frames: expected whole numbers 0 <= start < stop, got {frames!r}")
        # widened to every localization, and said, as dsir evaluate does (none of their false positives dropped)
        (start, stop), note = scored_frames((start, stop), pred, gt, "the localizations")
        if note:
            warnings.warn(note, DSIRWarning, stacklevel=2)
        gt = gt.select((gt.frame >= start) & (gt.frame < stop))
    return metrics_of(len(gt), len(pred), radius, match(gt, pred, radius)[2])


def metrics_of(n_gt: int, n_pred: int, radius: float, dist: np.ndarray) -> Metrics:
    """SMLM challenge metrics of ``n_pred`` localizations against ``n_gt``
    true positions, matched (`match`) at ``radius`` nm with distances
    ``dist`` (nm, one per match)."""
    tp = len(dist)
    fp = n_pred - tp
    fn = n_gt - tp
    denom = tp + fp + fn
    jac = tp / denom if denom else 1.0
    recall = tp / n_gt if n_gt else (1.0 if n_pred == 0 else 0.0)
    precision = tp / n_pred if n_pred else (1.0 if n_gt == 0 else 0.0)
    rmse = float(np.sqrt(np.mean(dist**2))) if tp else float("nan")
    eff = 100.0 - math.sqrt((100.0 * (1.0 - jac)) ** 2 + (rmse if tp else 0.0) ** 2)
    return Metrics(float(radius), tp, fp, fn, jac, recall, precision, rmse, eff)

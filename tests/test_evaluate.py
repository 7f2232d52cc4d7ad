import math

import numpy as np
import pytest

from napari_dsir.evaluate import evaluate, match, match_frame
from napari_dsir.locs import Localizations


def L(frames, xs, ys):
    return Localizations(frames, xs, ys)


def test_perfect_prediction():
    gt = L([0, 0, 1], [100, 900, 500], [100, 900, 500])
    m = evaluate(gt, gt, 250)
    assert (m.tp, m.fp, m.fn) == (3, 0, 0)
    assert m.jaccard == 1 and m.recall == 1 and m.precision == 1
    assert m.rmse == 0 and m.efficiency == 100


def test_constructed_case_known_numbers():
    # frame 0: two GT, one prediction 30 nm off (x) and one 40 nm off (y)
    # frame 1: one GT missed; one FP 300 nm away from any GT
    gt = L([0, 0, 1], [1000, 3000, 500], [1000, 3000, 500])
    pred = L([0, 0, 1], [1030, 3000, 800], [1000, 3040, 500])
    m = evaluate(gt, pred, 250)
    assert (m.tp, m.fp, m.fn) == (2, 1, 1)
    assert m.jaccard == pytest.approx(0.5)
    assert m.recall == pytest.approx(2 / 3) and m.precision == pytest.approx(2 / 3)
    assert m.rmse == pytest.approx(math.sqrt((30**2 + 40**2) / 2))
    assert m.efficiency == pytest.approx(100 - math.sqrt(50**2 + (30**2 + 40**2) / 2))
    m100 = evaluate(gt, pred, 100)
    assert (m100.tp, m100.fp, m100.fn) == (2, 1, 1)
    m35 = evaluate(gt, pred, 35)
    assert (m35.tp, m35.fp, m35.fn) == (1, 2, 2) and m35.rmse == pytest.approx(30)


def test_a_run_on_part_of_a_movie_is_scored_on_its_frames():
    """Regression (API): a run on frames 5-10 was scored against the truth of
    every frame (recall 0.22 where dsir evaluate, which scores the run's
    frames, gave 0.88); ``frames`` scores those only."""
    gt = L(np.arange(20), np.full(20, 1000.0), np.full(20, 1000.0))
    pred = L(np.arange(5, 11), np.full(6, 1010.0), np.full(6, 1000.0))
    assert evaluate(gt, pred).recall == pytest.approx(6 / 20)
    m = evaluate(gt, pred, frames=(5, 11))
    assert (m.tp, m.fp, m.fn) == (6, 0, 0) and m.rmse == pytest.approx(10.0)
    from napari_dsir.errors import DSIRError

    for bad in ((11, 5), "5:11", (5,), (5.5, 11)):
        with pytest.raises(DSIRError, match="frames: expected"):
            evaluate(gt, pred, frames=bad)
    # localizations beyond the frames: scored too (their false positives kept), and said, as by dsir evaluate
    from napari_dsir.errors import DSIRWarning

    extra = Localizations.concatenate([pred, L([15], [3000.0], [3000.0])])
    with pytest.warns(DSIRWarning, match="frames 5-15 are scored"):
        m = evaluate(gt, extra, frames=(np.int64(5), np.int64(11)))
    assert (m.tp, m.fp, m.fn) == (6, 1, 5)  # frames 5-15: the truth of 11-15 missed


def test_matching_is_per_frame():
    gt = L([0], [100], [100])
    pred = L([1], [100], [100])
    m = evaluate(gt, pred)
    assert (m.tp, m.fp, m.fn) == (0, 1, 1) and m.jaccard == 0 and math.isnan(m.rmse)
    assert m.to_dict()["rmse"] is None


def test_hungarian_maximises_matches_then_minimises_distance():
    # greedy nearest would pair gt0-pred0 (10 nm) and leave gt1 unmatched
    gt = np.array([[0.0, 0.0], [200.0, 0.0]])
    pred = np.array([[100.0, 0.0], [-90.0, 0.0]])
    a, b = match_frame(gt, pred, 150)
    assert len(a) == 2
    assert dict(zip(a, b)) == {0: 1, 1: 0}


def test_one_to_one():
    gt = L([0], [0], [0])
    pred = L([0, 0], [10, 20], [0, 0])
    gi, pi, d = match(gt, pred, 250)
    assert list(pi) == [0] and d[0] == pytest.approx(10)


def test_empty_inputs():
    e = Localizations.empty()
    assert evaluate(e, e).jaccard == 1.0
    gt = L([0], [0], [0])
    assert evaluate(gt, e).recall == 0 and evaluate(e, gt).precision == 0


def test_match_groups_unsorted_frames_as_frame_by_frame_matching():
    """`match` groups both tables by frame once (no pass per frame): on
    unsorted tables with frames found in only one of them, it returns the
    pairs that matching each frame's rows on their own returns, in frame
    order and in the tables' row order within a frame."""
    rng = np.random.default_rng(5)
    gt = L(rng.integers(0, 40, 600), rng.uniform(0, 2000, 600), rng.uniform(0, 2000, 600))
    pred = L(rng.integers(-3, 45, 500), rng.uniform(0, 2000, 500), rng.uniform(0, 2000, 500))
    gi, pi, d = match(gt, pred, 250)
    want_g, want_p = [], []
    for f in np.unique(pred.frame):
        g, p = np.flatnonzero(gt.frame == f), np.flatnonzero(pred.frame == f)
        if len(g):
            a, b = match_frame(np.column_stack([gt.x[g], gt.y[g]]), np.column_stack([pred.x[p], pred.y[p]]), 250)
            want_g.append(g[a])
            want_p.append(p[b])
    assert len(gi) > 100
    np.testing.assert_array_equal(gi, np.concatenate(want_g))
    np.testing.assert_array_equal(pi, np.concatenate(want_p))
    np.testing.assert_allclose(d, np.hypot(gt.x[gi] - pred.x[pi], gt.y[gi] - pred.y[pi]))
    assert (gt.frame[gi] == pred.frame[pi]).all()

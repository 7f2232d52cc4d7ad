import numpy as np
import pytest

from napari_dsir.drift import Drift, correct, estimate_drift, read_drift_table, write_drift_table
from napari_dsir.errors import DSIRError
from napari_dsir.locs import Localizations
from napari_dsir.structures import StructureConfig, simulate_structure_locs

CFG = StructureConfig(
    field_nm=(3000.0, 3000.0), n_structures=8, density=2.0,
    drift_velocity_nm=(0.1, -0.05), drift_walk_nm=0.2,
)


def _rms(est: Drift, true: Drift) -> float:
    ex, ey = est.x - true.x, est.y - true.y
    return float(np.sqrt(np.mean((ex - ex.mean()) ** 2 + (ey - ey.mean()) ** 2)))


def test_recovers_linear_plus_random_walk_drift():
    locs, _, truth = simulate_structure_locs(2000, CFG, precision_nm=10.0, seed=1)
    d = estimate_drift(locs, segments=10)
    assert len(d.frames) == 2000 and d.frames[0] == 0
    assert d.x[0] == 0 and d.y[0] == 0
    assert abs(truth.drift.x[-1]) > 150  # a drift worth correcting
    assert _rms(d, truth.drift) < 8.0
    assert d.pairs_used <= d.pairs_total == 45
    # correcting removes it: positions back near the drift-free ones
    fixed = d.apply(locs)
    moved = np.hypot(fixed.x - locs.x, fixed.y - locs.y)
    assert moved.max() > 100


def test_segment_frames_and_linear_interpolation():
    locs, _, truth = simulate_structure_locs(1000, CFG, precision_nm=10.0, seed=2)
    d = estimate_drift(locs, segment_frames=200, interpolation="linear")
    assert len(d.segment_frames) == 5
    assert _rms(d, truth.drift) < 10.0


def test_frames_before_the_first_localization_keep_the_first_drift():
    locs, _, truth = simulate_structure_locs(1000, CFG, precision_nm=10.0, seed=2)
    late = locs.select(locs.frame >= 300)
    d = estimate_drift(late, segments=5, n_frames=1200)
    assert len(d.frames) == 1200
    assert np.all(d.x[:300] == 0) and np.all(d.y[:300] == 0)  # constant before the first localization
    assert np.all(d.x[1000:] == d.x[999])
    ex = d.x[300:1000] - (truth.drift.x[300:1000] - truth.drift.x[300])
    assert np.sqrt(np.mean(ex**2)) < 10


@pytest.mark.parametrize("how, n", [({"segments": 10}, 10), ({"segments": 3}, 3), ({"segment_frames": 30}, 14)])
def test_a_gap_without_localizations_is_no_segment(how, n):
    """A linear drift over 600 frames whose frames 200-399 hold nothing (laser
    off, frames filtered out): the segments are cut from the frames that hold
    localizations, the drift found on both sides of the gap and, in it,
    linear between them (nm; errors less their mean over the frames with
    localizations, as the drift is relative to frame 0)."""
    cfg = StructureConfig(field_nm=(3000.0, 3000.0), n_structures=8, density=2.0, drift_velocity_nm=(0.2, -0.1))
    locs, _, truth = simulate_structure_locs(600, cfg, precision_nm=10.0, seed=4)
    held = locs.select((locs.frame < 200) | (locs.frame >= 400))
    d = estimate_drift(held, **how)
    assert len(d.frames) == 600 and len(d.segment_frames) == n
    ex, ey = d.x - truth.drift.x, d.y - truth.drift.y
    with_locs = np.unique(held.frame)
    err = np.hypot(ex - ex[with_locs].mean(), ey - ey[with_locs].mean())
    for side in (slice(0, 200), slice(400, 600)):
        assert np.sqrt(np.mean(err[side] ** 2)) < 3.0
    np.testing.assert_allclose(d.x[199:401], np.linspace(d.x[199], d.x[400], 202))  # linear across the gap
    np.testing.assert_allclose(d.y[199:401], np.linspace(d.y[199], d.y[400], 202))


def test_segment_frames_counts_movie_frames_on_a_sparse_table():
    """Review: with every other frame empty, segment_frames=100 halved the
    segments' number (it counted only the frames that hold localizations)."""
    locs, _, _ = simulate_structure_locs(1000, CFG, precision_nm=10.0, seed=3)
    d = estimate_drift(locs.select(locs.frame % 2 == 0), segment_frames=100)
    assert len(d.segment_frames) == 10


def test_too_short_or_sparse_movies_are_refused():
    locs, _, _ = simulate_structure_locs(5, CFG, precision_nm=10.0, seed=3)
    with pytest.raises(DSIRError, match="fewer than 10 segments"):
        estimate_drift(locs, segments=10)
    with pytest.raises(DSIRError, match="two segments"):
        estimate_drift(locs, segment_frames=10)
    with pytest.raises(DSIRError, match="at least 2 segments"):
        estimate_drift(locs, segments=1)
    with pytest.raises(DSIRError, match="whole number"):
        estimate_drift(locs, segments="ten")
    sparse, _, _ = simulate_structure_locs(40, CFG, precision_nm=10.0, seed=3)
    with pytest.raises(DSIRError, match=r"segment 1 of 10 \(frames 1-4\) has 53 .* too sparse for 10 segments; "
                                        "6 segments would each hold 100"):
        estimate_drift(sparse, segments=10)
    estimate_drift(sparse, segments=6)  # as said
    with pytest.raises(DSIRError, match="even 2 segments"):
        estimate_drift(sparse.select(sparse.frame < 2), segments=2)


def test_uncorrelated_segments_are_refused(rng):
    # pure noise: each segment's points are unrelated, no correlation peak links them
    n = 4000
    locs = Localizations(rng.integers(0, 100, n), rng.uniform(0, 20000, n), rng.uniform(0, 20000, n))
    with pytest.raises(DSIRError, match="no correlation peak|disagree"):
        estimate_drift(locs, segments=4)


def test_correct_subtracts_and_checks_frames():
    drift = Drift([0, 1, 2], [0.0, 10.0, 20.0], [0.0, -5.0, -10.0])
    locs = Localizations([0, 2, 1], [100.0, 100.0, 100.0], [50.0, 50.0, 50.0], photons=[1.0, 2.0, 3.0])
    out = correct(locs, drift)
    np.testing.assert_allclose(out.x, [100.0, 80.0, 90.0])
    np.testing.assert_allclose(out.y, [50.0, 60.0, 55.0])
    np.testing.assert_allclose(out.photons, locs.photons)
    assert locs.x[1] == 100.0  # the input is untouched
    with pytest.raises(DSIRError, match="wrong drift table"):
        correct(Localizations([5], [0.0], [0.0]), drift)


def test_drift_table_round_trip(tmp_path):
    drift = Drift(np.arange(4), [0.0, 1.5, 3.25, -2.0], [0.0, -1.0, 0.5, 7.0])
    path = tmp_path / "drift.csv"
    write_drift_table(path, drift)
    lines = path.read_text().splitlines()
    assert lines[0] == "frame,x [nm],y [nm]"
    assert lines[1].startswith("1,") and lines[-1].startswith("4,")  # 1-based in the file
    back = read_drift_table(path)
    np.testing.assert_array_equal(back.frames, drift.frames)
    np.testing.assert_allclose(back.x, drift.x)
    np.testing.assert_allclose(back.y, drift.y)
    with pytest.raises(DSIRError, match="exists"):
        write_drift_table(path, drift)
    write_drift_table(path, drift, overwrite=True)


@pytest.mark.parametrize("text, match", [
    ("frame,x [px],y [px]\n1,0,0\n", "in nm"),
    ("frame,x [nm]\n1,0\n", "columns"),
    ("frame,x [nm],y [nm]\n0,0,0\n", "from 1"),
    ("frame,x [nm],y [nm]\n1,a,0\n", "not three numbers"),
    ("frame,x [nm],y [nm]\n", "at least one row"),
    ("frame,x [nm],y [nm]\n2,0,0\n1,0,0\n", "increasing"),
])
def test_bad_drift_tables(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(DSIRError, match=match):
        read_drift_table(path)

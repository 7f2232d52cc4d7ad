"""Property-based tests of the table parser and `evaluate`, and a bounded
fuzz run of the TIFF and table readers: any input either parses or raises the
project's own `DSIRError`. A longer fuzz run:
``DSIR_FUZZ_EXAMPLES=20000 python -m pytest tests/test_properties.py -k fuzz``.
"""

import math
import os

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_dsir.errors import DSIRError
from napari_dsir.evaluate import evaluate
from napari_dsir.io import open_stack, read_localizations, write_localizations
from napari_dsir.locs import Localizations

FUZZ = int(os.environ.get("DSIR_FUZZ_EXAMPLES", "150"))
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

coord = st.floats(0, 6400, allow_nan=False, allow_infinity=False)


@st.composite
def tables(draw, min_size=0, max_size=30):
    n = draw(st.integers(min_size, max_size))
    frames = draw(st.lists(st.integers(0, 4), min_size=n, max_size=n))
    xs = draw(st.lists(coord, min_size=n, max_size=n))
    ys = draw(st.lists(coord, min_size=n, max_size=n))
    return Localizations(frames, xs, ys)


@fast
@given(tables(), tables(), st.randoms(use_true_random=False))
def test_metrics_invariant_to_order(gt, pred, rnd):
    m1 = evaluate(gt, pred, 250)
    pg = np.array(rnd.sample(range(len(gt)), len(gt)), dtype=int)
    pp = np.array(rnd.sample(range(len(pred)), len(pred)), dtype=int)
    m2 = evaluate(gt.select(pg), pred.select(pp), 250)
    assert (m1.tp, m1.fp, m1.fn) == (m2.tp, m2.fp, m2.fn)
    assert 0.0 <= m1.jaccard <= 1.0 and 0 <= m1.recall <= 1 and 0 <= m1.precision <= 1
    if m1.tp:
        assert m1.rmse == pytest.approx(m2.rmse, rel=1e-6, abs=1e-6) or math.isclose(m1.rmse, m2.rmse, abs_tol=1e-6)
        assert m1.rmse <= 250 + 1e-9


@fast
@given(tables(min_size=1))
def test_perfect_prediction_scores_one(gt):
    m = evaluate(gt, gt, 100)
    assert m.jaccard == 1 and m.rmse == 0 and m.efficiency == 100


@fast
@given(tables(min_size=1), st.integers(0, 29), st.floats(1, 90))
def test_one_shifted_point_changes_rmse_as_expected(gt, k, shift):
    # emitters far apart so that the shifted one keeps its partner
    n = len(gt)
    frames = np.arange(n)  # one emitter per frame
    gt = Localizations(frames, gt.x, gt.y)
    i = k % n
    x = gt.x.copy()
    x[i] += shift
    m = evaluate(gt, Localizations(frames, x, gt.y), 100)
    assert m.tp == n
    assert m.rmse == pytest.approx(math.sqrt(shift**2 / n), rel=1e-6)


@fast
@given(tables(min_size=0))
def test_csv_round_trip(tmp_path_factory, locs):
    p = tmp_path_factory.mktemp("rt") / "l.csv"
    write_localizations(p, locs)
    back = read_localizations(p)
    np.testing.assert_array_equal(back.frame, locs.frame)
    np.testing.assert_allclose(back.x, locs.x, atol=1e-3)
    np.testing.assert_allclose(back.y, locs.y, atol=1e-3)


# ------------------------------------------------------------------ fuzz

fuzz = settings(max_examples=FUZZ, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                           HealthCheck.too_slow])


def _valid_tiff_bytes(tmp_path) -> bytes:
    p = tmp_path / "seed.tif"
    tifffile.imwrite(p, (np.arange(3 * 16 * 16) % 251).reshape(3, 16, 16).astype(np.uint16),
                     photometric="minisblack", imagej=True, resolution=(10, 10), metadata={"unit": "um"})
    return p.read_bytes()


@fuzz
@given(data=st.data())
def test_fuzz_tiff_reader(tmp_path_factory, data):
    d = tmp_path_factory.mktemp("fz")
    seed = _valid_tiff_bytes(d)
    kind = data.draw(st.sampled_from(["random", "mutate", "truncate"]))
    if kind == "random":
        blob = data.draw(st.binary(max_size=2048))
        if data.draw(st.booleans()):
            blob = b"II*\x00" + blob
    elif kind == "truncate":
        blob = seed[: data.draw(st.integers(0, len(seed)))]
    else:
        arr = bytearray(seed)
        for _ in range(data.draw(st.integers(1, 8))):
            pos = data.draw(st.integers(0, min(len(arr) - 1, 600)))  # headers and tags
            arr[pos] = data.draw(st.integers(0, 255))
        blob = bytes(arr)
    p = d / "f.tif"
    p.write_bytes(blob)
    try:
        s = open_stack(p)
        if s.shape[0] * s.shape[1] * s.shape[2] <= 10_000_000:
            s.read(0, min(len(s), 4))
    except DSIRError:
        pass


@fuzz
@given(text=st.one_of(
    st.text(max_size=400),
    st.lists(st.lists(st.one_of(st.sampled_from(["frame", "x [nm]", "y [nm]", "x [px]", "intensity", "", "nan",
                                                  "inf", "-1", "1", "2.5", "1e308", "x", "y", '"frame"']),
                                st.text(max_size=5)), max_size=6), max_size=8)
    .map(lambda rows: "\n".join(st_join(r) for r in rows)),
))
def test_fuzz_table_reader(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("fzt") / "t.csv"
    p.write_text(text, encoding="utf-8", errors="surrogatepass") if _encodable(text) else p.write_bytes(b"\xff\xfe")
    try:
        locs = read_localizations(p, pixel_size=100)
        assert np.isfinite(locs.x).all() and np.isfinite(locs.y).all() and (locs.frame >= 0).all()
    except DSIRError:
        pass


def st_join(row):
    return ",".join(row)


def _encodable(text):
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False

import math

import numpy as np
import pytest

from napari_dsir.errors import DSIRError, FRCError
from napari_dsir.locs import Localizations
from napari_dsir.resolution import FRC_THRESHOLD, frc, frc_images, nearest_next_frame, nena, split_halves
from napari_dsir.structures import StructureConfig, simulate_structure_locs

CFG = StructureConfig(field_nm=(3000.0, 3000.0), n_structures=6, density=1.0, mean_on_frames=2.0)


def test_frc_identical_images_is_one(rng):
    img = rng.poisson(2.0, (64, 64)).astype(float)
    r = frc_images(img, img, 10.0)
    np.testing.assert_allclose(r.raw[1:], 1.0, atol=1e-9)
    assert math.isnan(r.resolution_nm) and "pixel size" in r.note
    assert r.threshold == pytest.approx(1 / 7)
    assert r.frequencies[1] == pytest.approx(1 / 640.0)


@pytest.mark.parametrize("noise_var", [0.01, 0.001])
def test_frc_matches_the_analytic_crossing(rng, noise_var):
    """Signal: white noise blurred by a Gaussian of 2 px (power exp(-4 pi^2 s^2 q^2)),
    plus independent white noise of variance v in each image: FRC = 1/7 where the
    signal power is v/6, at q = sqrt(ln(6/v)) / (2 pi s) cycles per pixel."""
    from scipy.ndimage import gaussian_filter

    signal = gaussian_filter(rng.normal(0, 1, (128, 128)), 2.0, mode="wrap")
    a = signal + rng.normal(0, np.sqrt(noise_var), signal.shape)
    b = signal + rng.normal(0, np.sqrt(noise_var), signal.shape)
    expected = 10.0 * 2 * np.pi * 2.0 / np.sqrt(np.log(6 / noise_var))  # nm at 10 nm/px
    assert frc_images(a, b, 10.0).resolution_nm == pytest.approx(expected, rel=0.03)


def test_frc_of_one_frame_says_why_its_halves_are_uneven():
    rng = np.random.default_rng(0)
    locs = Localizations(np.zeros(500, int), rng.uniform(0, 3000, 500), rng.uniform(0, 3000, 500))
    with pytest.raises(DSIRError, match="a half has only 0 localizations .need 100.: the localizations lie in 1 "
                                        "frame, .* --split random"):
        frc(locs)


@pytest.mark.parametrize("n, field_nm", [(3000, 6300.0), (20000, 20000.0)])
def test_frc_of_points_with_no_structure_is_refused(n, field_nm):
    """Uniform random points, whose halves are independent: a curve
    smoothed ring by ring crossed the threshold at rings 4-19 (a 'resolution'
    of 1-3 um) in 21 of 100 such seeds; smoothed as a band, none."""
    for seed in range(12):
        rng = np.random.default_rng(seed)
        locs = Localizations(rng.integers(0, 200, n), rng.uniform(0, field_nm, n), rng.uniform(0, field_nm, n))
        with pytest.raises(DSIRError, match="first 8 rings"):
            frc(locs)


def test_frc_independent_noise_does_not_correlate(rng):
    a = rng.poisson(2.0, (64, 64)).astype(float)
    b = rng.poisson(2.0, (64, 64)).astype(float)
    r = frc_images(a, b, 10.0)
    assert math.isnan(r.resolution_nm) and "do not correlate" in r.note
    with pytest.raises(DSIRError, match="same shape"):
        frc_images(a, b[:10], 10.0)


def test_frc_of_simulated_structure_tracks_precision():
    res = []
    for precision in (8.0, 20.0):
        locs, _, _ = simulate_structure_locs(2000, CFG, precision_nm=precision, seed=3)
        r = frc(locs, 4.0, split="blocks", block_frames=50)
        assert r.curve[1] > 0.5 and r.curve.min() < FRC_THRESHOLD
        res.append(r.resolution_nm)
    # FRC resolution is a few times the precision (about 2.35 sigma for dense labelling)
    assert 15 < res[0] < 60 and 35 < res[1] < 120
    assert res[1] > 1.5 * res[0]


def test_frc_halves_and_errors():
    locs, _, _ = simulate_structure_locs(200, CFG, precision_nm=10.0, seed=4)
    a, b = split_halves(locs, "odd_even")
    assert np.all(a.frame % 2 == 0) and np.all(b.frame % 2 == 1) and len(a) + len(b) == len(locs)
    a, b = split_halves(locs, "blocks", block_frames=20)
    assert not set(a.frame // 20) & set(b.frame // 20)
    with pytest.raises(FRCError, match=r"single block of 500 frames; use shorter blocks \(dsir resolution "
                                       r"--block-frames N\) or --split odd_even"):
        split_halves(locs, "blocks", block_frames=500)
    with pytest.raises(FRCError, match="blocks of 150 frames split them unevenly; use shorter blocks"):
        frc(locs, 5.0, split="blocks", block_frames=150, min_locs=len(locs) // 3)
    with pytest.raises(DSIRError, match="split"):
        split_halves(locs, "halves")
    with pytest.raises(DSIRError, match="at least"):
        frc(locs.select(slice(0, 50)), 5.0)


def test_frc_that_never_crosses_raises_or_returns_its_curve():
    """Positions that repeat exactly in every frame (a grid-locked output):
    the halves are the same image, the curve stays at 1; strict, a clear
    error; not strict, the curve with a NaN resolution and the reason."""
    rng = np.random.default_rng(5)
    x, y = rng.uniform(0, 2000, 150), rng.uniform(0, 2000, 150)
    locs = Localizations(np.repeat(np.arange(4), 150), np.tile(x, 4), np.tile(y, 4))
    with pytest.raises(DSIRError, match="pixel size"):
        frc(locs, 5.0)
    r = frc(locs, 5.0, strict=False)
    assert math.isnan(r.resolution_nm) and "pixel size" in r.note and r.curve.min() > 0.99


def _blinking_pairs(n, precision, rng):
    """Emitters ON in two consecutive frames, far apart from each other."""
    cx, cy = rng.uniform(0, 50_000, n), rng.uniform(0, 50_000, n)
    f = rng.integers(0, 1000, n) * 2
    noise = rng.normal(0, precision, (4, n))
    return Localizations(
        np.concatenate([f, f + 1]), np.concatenate([cx + noise[0], cx + noise[1]]),
        np.concatenate([cy + noise[2], cy + noise[3]]),
    )


def test_nena_recovers_precision(rng):
    locs = _blinking_pairs(4000, 12.0, rng)
    r = nena(locs)
    assert r.precision_nm == pytest.approx(12.0, rel=0.1)
    assert r.n_pairs == pytest.approx(4000, rel=0.01)
    assert len(r.histogram) == len(r.fit) == len(r.bin_centers)


def test_nena_on_structure_with_random_neighbours():
    locs, _, _ = simulate_structure_locs(3000, CFG, precision_nm=10.0, seed=5)
    assert nena(locs).precision_nm == pytest.approx(10.0, rel=0.1)


def test_nearest_next_frame_only_looks_at_next_frame():
    locs = Localizations([0, 0, 1, 2], [0.0, 100.0, 3.0, 0.0], [0.0, 0.0, 4.0, 0.0])
    np.testing.assert_allclose(np.sort(nearest_next_frame(locs, 150.0)), [5.0, np.hypot(3, 4), np.hypot(97, 4)])


def test_nena_errors(rng):
    with pytest.raises(DSIRError, match="two frames"):
        nena(Localizations([0, 0], [0.0, 1.0], [0.0, 1.0]))
    with pytest.raises(DSIRError, match="neighbour"):
        nena(_blinking_pairs(20, 10.0, rng))
    with pytest.raises(DSIRError, match="bin_nm"):
        nena(_blinking_pairs(20, 10.0, rng), bin_nm=500)


def test_frc_of_field_chooses_what_the_widget_cannot_be_told():
    """A whole camera chip (51 um: 10,000 px a side at 5 nm, refused by
    `frc`) is measured at coarser pixels, said in a note; a table of one
    frame is split at random; exact positions (the curve never crosses) get
    one halved pixel size, then a message with no command-line advice."""
    from napari_dsir.resolution import FRC_MAX_SIDE, frc_of_field

    locs, _, _ = simulate_structure_locs(2000, CFG, precision_nm=10.0, seed=3)
    wide = Localizations(locs.frame, locs.x * 16, locs.y * 16)  # the structure spread over a chip
    span = max(np.ptp(wide.x), np.ptp(wide.y))
    assert span / 5.0 > FRC_MAX_SIDE
    with pytest.raises(DSIRError, match="too large"):
        frc(wide)
    r, notes = frc_of_field(wide)
    assert r.pixel_size_nm == np.ceil(2 * span / FRC_MAX_SIDE) / 2 and "um wide" in notes[0]
    r, notes = frc_of_field(locs)
    assert r.pixel_size_nm == 5.0 and notes == [] and np.isfinite(r.resolution_nm)
    one = Localizations(np.zeros(len(locs), int), locs.x, locs.y)
    r, notes = frc_of_field(one)
    assert notes == ["halves at random (odd and even frames split the localizations unevenly)"]
    rng = np.random.default_rng(5)
    x, y = rng.uniform(0, 2000, 150), rng.uniform(0, 2000, 150)
    exact = Localizations(np.repeat(np.arange(4), 150), np.tile(x, 4), np.tile(y, 4))
    with pytest.raises(DSIRError) as err:
        frc_of_field(exact)
    assert "at 2.5 nm pixels" in str(err.value) and "pixel size" not in str(err.value)


def test_frc_errors_say_their_reason_apart_from_the_command_line_advice():
    """The two failures a caller can mend (uneven odd/even halves, a curve
    that never crosses) carry a reason code and their advice apart; the
    message is the text then the advice, as the CLI prints it."""
    from napari_dsir.errors import FRCError
    from napari_dsir.resolution import FINER_THAN_2_PX, UNEVEN_HALVES

    locs, _, _ = simulate_structure_locs(2000, CFG, precision_nm=10.0, seed=3)
    with pytest.raises(FRCError) as err:
        frc(Localizations(np.zeros(len(locs), int), locs.x, locs.y))
    e = err.value
    assert e.reason == UNEVEN_HALVES and "--split random" in e.advice and "--split" not in e.text
    assert str(e) == f"{e.text}; {e.advice}"
    rng = np.random.default_rng(5)
    x, y = rng.uniform(0, 2000, 150), rng.uniform(0, 2000, 150)
    with pytest.raises(FRCError) as err:
        frc(Localizations(np.repeat(np.arange(4), 150), np.tile(x, 4), np.tile(y, 4)))
    assert err.value.reason == FINER_THAN_2_PX and str(err.value).endswith("; use a smaller pixel size")
    with pytest.raises(FRCError) as err:  # a curve that crosses too early: no reason, no advice
        frc(Localizations(np.arange(400) % 2, rng.uniform(0, 50_000, 400), rng.uniform(0, 50_000, 400)), 50.0)
    assert err.value.reason is None and err.value.advice == "" and "first 8 rings" in str(err.value)

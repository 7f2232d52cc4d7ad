import numpy as np
import pytest

from napari_dsir.errors import DSIRError
from napari_dsir.simulate import SimulationConfig
from napari_dsir.structures import (
    StructureConfig,
    blink,
    drift_trajectory,
    place_labels,
    simulate_structure,
    simulate_structure_locs,
)


def test_labels_on_rings_and_filaments():
    rng = np.random.default_rng(0)
    cfg = StructureConfig(field_nm=(2000.0, 2000.0), structure="rings", n_structures=3, ring_radius_nm=150.0)
    x, y = place_labels(cfg, rng)
    assert len(x) == pytest.approx(3 * 2 * np.pi * 150 * 0.2, rel=0.2)
    cfg = StructureConfig(field_nm=(2000.0, 3000.0), n_structures=4)
    x, y = place_labels(cfg, rng)
    assert len(x) > 500 and x.min() >= 0 and x.max() < 3000 and y.min() >= 0 and y.max() < 2000


def test_blinking_duty_cycle():
    rng = np.random.default_rng(1)
    label, frame = blink(1000, 2000, 0.01, 2.0, rng)
    assert len(label) / (1000 * 2000) == pytest.approx(0.01, rel=0.1)
    assert len(np.unique(frame * 1000 + label)) == len(label)
    assert np.all(np.diff(frame) >= 0)


def test_drift_trajectory_linear_plus_walk():
    d = drift_trajectory(1001, (0.3, -0.1), 0.0)
    assert d.x[0] == 0 and d.x[-1] == pytest.approx(300) and d.y[-1] == pytest.approx(-100)
    w = drift_trajectory(1001, (0.0, 0.0), 1.0, rng=2)
    assert np.std(np.diff(w.x)) == pytest.approx(1.0, rel=0.1)


def test_cheap_path_density_noise_and_drift():
    cfg = StructureConfig(field_nm=(3000.0, 3000.0), density=2.0, drift_velocity_nm=(0.5, 0.0))
    noisy, on, truth = simulate_structure_locs(500, cfg, precision_nm=10.0, seed=3)
    assert len(on) / 500 / 9.0 == pytest.approx(2.0, rel=0.15)  # ON per um^2 per frame
    assert np.std(noisy.x - on.x) == pytest.approx(10.0, rel=0.1)
    np.testing.assert_allclose(noisy.uncertainty, 10.0)
    # the ON positions carry the drift of their frame
    label = truth.extra["label"]
    np.testing.assert_allclose(on.x - truth.label_x[label], truth.drift.x[on.frame])
    again, _, _ = simulate_structure_locs(500, cfg, precision_nm=10.0, seed=3)
    np.testing.assert_array_equal(again.x, noisy.x)
    auto, _, _ = simulate_structure_locs(50, cfg, seed=3)
    assert 2 < np.median(auto.uncertainty) < 20  # Mortensen precision from the photons


def test_given_labels_are_imaged_again():
    cfg = StructureConfig(field_nm=(3000.0, 3000.0))
    labels = place_labels(cfg, np.random.default_rng(7))
    a, _, ta = simulate_structure_locs(100, cfg, precision_nm=5.0, seed=1, labels=labels)
    b, _, tb = simulate_structure_locs(100, cfg, precision_nm=5.0, seed=2, labels=labels)
    np.testing.assert_array_equal(ta.label_x, tb.label_x)
    assert not np.array_equal(a.frame[:50], b.frame[:50]) or not np.array_equal(a.x[:50], b.x[:50])
    with pytest.raises(DSIRError, match="labels"):
        simulate_structure_locs(10, cfg, labels=(np.zeros(3), np.zeros(2)))


def test_camera_frames():
    cam = SimulationConfig(frame_size=(16, 20), pixel_size=100.0, background=10.0)
    cfg = StructureConfig(density=3.0, photons=2000.0, drift_velocity_nm=(1.0, 0.0))
    frames, gt, drift = simulate_structure(20, cfg, cam, seed=4)
    assert frames.shape == (20, 16, 20) and frames.dtype == np.float32
    assert len(drift.x) == 20 and drift.x[-1] == pytest.approx(19.0)
    assert gt.x.max() < 2000 and gt.y.max() < 1600 and np.all(gt.photons == 2000.0)
    assert np.all(gt.intensity == gt.photons)
    # every ON emitter adds its photons to its frame (base level 100 ADU, gain 1)
    signal = frames.sum(axis=(1, 2)) - 16 * 20 * (100 + 10.0)
    per_frame = np.bincount(gt.frame, weights=gt.photons, minlength=20)
    assert np.corrcoef(signal, per_frame)[0, 1] > 0.9


@pytest.mark.parametrize("kw", [
    {"structure": "stars"}, {"density": 0}, {"ring_radius_nm": 5000.0, "structure": "rings"},
    {"photons": 0}, {"mean_on_frames": 0.5}, {"density": 500.0}, {"field_nm": "ab"}, {"field_nm": (-1.0, 5.0)},
    {"density": "high"},
])
def test_bad_configs(kw):
    with pytest.raises(DSIRError):
        simulate_structure_locs(10, StructureConfig(**{"field_nm": (3000.0, 3000.0), **kw}))

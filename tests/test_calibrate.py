"""Calibration of the network's own position error in crowds (calibrate.crowded_error)."""

import shutil

import numpy as np
import pytest

from napari_dsir.calibrate import CROWDED_CLASSES, calibrate_crowded_error, crowded_error
from napari_dsir.localize import LocalizeParams, params_for
from napari_dsir.model import default_model_path, load_model
from napari_dsir.simulate import MovieConfig, simulate_movies


def test_crowded_error_of_the_shipped_model_on_dense_movies():
    """Dense movies: every neighbour class is measured; the network's error
    beyond the bound is a fraction of a camera pixel."""
    model = load_model("default")
    cfg = MovieConfig(frame_size=(32, 32), frames_per_movie=4, density=(4.0, 6.0), sparse_fraction=0.0,
                      empty_fraction=0.0, emccd_fraction=0.0)
    frames, truth, movie, settings = simulate_movies(6, cfg, seed=5)
    err, report = crowded_error(model, frames, truth, movie, settings, cfg.pixel_size, params_for(model))
    assert len(err) == CROWDED_CLASSES and all(0 < e < 0.6 for e in err), report
    for c in report.values():
        assert c["n"] >= 10 and c["rmse_px"] >= c["extra_px"]


def test_calibration_is_stored_in_the_checkpoint(tmp_path):
    path = tmp_path / "m.pt"
    shutil.copy(default_model_path("default"), path)
    out = calibrate_crowded_error(path, n_movies=3, seed=1)
    model = load_model(str(path))
    stored = params_for(model).crowded_error_px
    assert np.allclose(stored, out["crowded_error_px"]) and len(stored) == CROWDED_CLASSES
    assert model.metadata["calibration"]["crowded_error"]["movies"] == 3
    # the rest of the localizer is kept
    assert params_for(model).threshold == params_for(load_model("default")).threshold


def test_bad_crowded_error_is_refused():
    from napari_dsir.errors import DSIRError

    with pytest.raises(DSIRError, match="crowded_error_px"):
        LocalizeParams(crowded_error_px=(0.1, float("nan"))).validate()

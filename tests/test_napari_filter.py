"""DSIR Filter: a localizations layer's rows within limits, as a new layer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_dsir.layers import Geometry, points_layer_data  # noqa: E402
from napari_dsir.locs import Localizations  # noqa: E402


def _add(viewer, locs, name="run DSIR localizations"):
    data, kwargs, _ = points_layer_data(locs, name, geometry=Geometry.for_pixel_size(100.0),
                                        metadata={"kind": "localizations", "frames": [0, 5]})
    return viewer.add_points(data, **kwargs)


def _widget(viewer):
    _, w = viewer.window.add_plugin_dock_widget("napari-dsir", "DSIR Filter")
    return w


def test_filter_adds_the_rows_within_the_limits(make_napari_viewer, notes):
    """Photons at least 500 and uncertainty at most 30 nm: the rows within
    both, with their features, markers and placement; a failed fit (NaN) is
    out; the status says what each limit took out."""
    viewer = make_napari_viewer()
    locs = Localizations(np.arange(5), np.arange(5) * 100.0 + 50, np.full(5, 300.0),
                         photons=np.array([100.0, 600.0, 2000.0, np.nan, 900.0]),
                         uncertainty=np.array([40.0, 20.0, 8.0, np.nan, 31.0]))
    layer = _add(viewer, locs)
    w = _widget(viewer)
    assert w.points.value is layer
    w.fields["min_photons"].value, w.fields["max_uncertainty"].value = 500.0, 30.0
    out = w.filter()
    assert out.name == "run DSIR localizations filtered" and out.metadata["kind"] == "localizations"
    np.testing.assert_array_equal(out.data, layer.data[[1, 2]])
    assert out.features["photons"].tolist() == [600.0, 2000.0] and out.features["frame"].tolist() == [1, 2]
    assert tuple(out.scale) == tuple(layer.scale) and tuple(out.translate) == tuple(layer.translate)
    assert out.metadata["filter"] == "photons >= 500, uncertainty <= 30 nm" and out.metadata["frames"] == [0, 5]
    assert w.status.value == "2 of 5 localizations kept (photons >= 500: 2 out; uncertainty <= 30 nm: 3 out)"
    w.fields["max_photons"].value = 700.0  # a range on one column; filtering again replaces the layer
    w.points.value = layer
    again = w.filter()
    assert again.features["photons"].tolist() == [600.0]
    assert [lay.name for lay in viewer.layers].count("run DSIR localizations filtered") == 1
    assert [m for lv, m in notes if lv == "error"] == []


def test_filter_says_what_it_cannot_do(make_napari_viewer, notes):
    viewer = make_napari_viewer()
    layer = _add(viewer, Localizations([0, 1], [50.0, 150.0], [50.0, 150.0], intensity=[1.0, 2.0]))
    w = _widget(viewer)
    assert w.filter() is None and "set a limit" in w.status.value
    w.fields["min_photons"].value = 500.0
    assert w.filter() is None
    assert "'run DSIR localizations' has no photons column to filter on" in w.status.value
    w.fields["min_photons"].value, w.fields["max_photons"].value = 800.0, 700.0
    assert w.filter() is None and "the photons limits cross" in w.status.value
    assert len(viewer.layers) == 1 and viewer.layers[0] is layer
    assert all("DSIR Filter: " in m for lv, m in notes if lv == "error")

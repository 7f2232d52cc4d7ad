"""The "DSIR Render & Drift" dock widget, end to end on simulated structures."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_dsir.layers import locs_from_points, points_layer_data  # noqa: E402
from napari_dsir.locs import Localizations  # noqa: E402
from napari_dsir.structures import StructureConfig, simulate_structure_locs  # noqa: E402


@pytest.fixture(scope="module")
def drifting():
    cfg = StructureConfig(field_nm=(3200.0, 3200.0), n_structures=6, density=1.0, drift_velocity_nm=(0.1, 0.05))
    noisy, _, truth = simulate_structure_locs(1500, cfg, precision_nm=10.0, seed=5)
    return noisy, truth


def _widget(viewer, locs, name="sim DSIR localizations"):
    data, kwargs, _ = points_layer_data(locs, name, metadata={"kind": "localizations"})
    viewer.add_points(data, **kwargs)
    _, w = viewer.window.add_plugin_dock_widget("napari-dsir", "DSIR Render & Drift")
    w.synchronous = True
    w.reset_choices()
    return w


def test_points_layer_round_trip_keeps_columns(drifting):
    locs, _ = drifting
    data, kwargs, _ = points_layer_data(locs, "x")
    back = locs_from_points(data, kwargs["features"])
    np.testing.assert_array_equal(back.frame, locs.frame)
    np.testing.assert_allclose(back.x, locs.x)
    np.testing.assert_allclose(back.uncertainty, locs.uncertainty)


def test_render_overlays_the_points(make_napari_viewer, drifting, notes):
    locs, _ = drifting
    viewer = make_napari_viewer()
    w = _widget(viewer, locs)
    w.pixel_size.value = 20.0
    w.mode.value = "hist"
    w.render()
    img = viewer.layers["sim DSIR localizations render"]
    drawn = int(np.sum((locs.x >= 0) & (locs.y >= 0)))
    assert img.data.sum() == pytest.approx(drawn, abs=1)
    assert w.status.value.startswith(f"rendered {drawn} localizations")
    assert 0 < len(locs) - drawn and [m for lv, m in notes if lv == "warning"] == [
        f"DSIR Render & Drift: {len(locs) - drawn} of {len(locs)} localizations of 'sim DSIR localizations' lie "
        "at negative positions (left of or above the image's 0 nm) and are not drawn"]
    # the brightest pixel's centre in world coordinates lies where localizations are densest
    j = np.unravel_index(np.argmax(img.data), img.data.shape)
    world = np.asarray(img.data_to_world(j))
    near = np.hypot(locs.y - world[0], locs.x - world[1]) < 20.0
    assert near.sum() >= img.data.max() * 0.9
    w.mode.value, w.by_frame.value = "gauss", True
    w.render()
    assert viewer.layers["sim DSIR localizations render"].rgb
    w.mode.value, w.by_frame.value = "auto", False  # the default: Gaussians, as the layer has uncertainties
    w.render()
    assert "localizations (Gaussians)" in w.status.value
    assert viewer.layers["sim DSIR localizations render"].metadata["mode"] == "gauss"
    assert not [m for lv, m in notes if lv == "error"]


def test_render_beyond_the_free_memory_is_a_note_not_a_crash(make_napari_viewer, drifting, notes, monkeypatch):
    import napari_dsir.render as r

    locs, _ = drifting
    viewer = make_napari_viewer()
    w = _widget(viewer, locs)
    monkeypatch.setattr(r, "available_memory", lambda: 1_000_000)
    w.pixel_size.value = 1.0
    w.render()
    assert "sim DSIR localizations render" not in [layer.name for layer in viewer.layers]
    assert any(lv == "error" and "of memory and 1 MB is free" in m for lv, m in notes), notes


def test_drift_layer_and_plot(make_napari_viewer, drifting, notes):
    locs, truth = drifting
    viewer = make_napari_viewer()
    w = _widget(viewer, locs)
    w.segments.value = 6
    w.correct_drift()
    corrected = viewer.layers["sim DSIR localizations drift-corrected"]
    drift, _ = w.last
    err = (drift.x - drift.x[0]) - (truth.drift.x[drift.frames] - truth.drift.x[0])
    assert np.sqrt(np.mean(err**2)) < 15.0  # nm, of a 150 nm drift
    assert len(corrected.data) == len(locs)
    assert corrected.metadata["drift"]["frame"][0] == 1  # 1-based, as in drift tables
    axes = w._canvas.figure.axes[0]
    assert axes.get_xlabel() == "frame (from 0, as napari's)"  # the slider's numbers, not the drift table's
    assert axes.lines[0].get_xdata()[0] == drift.frames[0]
    assert "drift spans" in w.status.value


def test_resolution_and_bad_layers(make_napari_viewer, drifting, notes):
    locs, _ = drifting
    viewer = make_napari_viewer()
    w = _widget(viewer, locs)
    w.resolution()
    assert "FRC resolution" in w.status.value and "NeNA precision" in w.status.value
    nena = float(w.status.value.split("NeNA precision ")[1].split()[0])
    assert nena == pytest.approx(10.0, rel=0.25)
    # a points layer in pixels from elsewhere is refused with a message, not a traceback
    viewer.add_points(np.array([[0, 1.0, 2.0]]), name="foreign")
    w.reset_choices()
    w.points.value = viewer.layers["foreign"]
    w.render()
    assert any(lv == "error" and m.startswith("DSIR Render & Drift: 'foreign' holds positions in pixels, not nm")
               for lv, m in notes)
    # too few localizations for the drift segments: a clear message
    few = locs.select(locs.frame < 20)
    data, kwargs, _ = points_layer_data(few, "few", metadata={"kind": "localizations"})
    viewer.add_points(data, **kwargs)
    w.reset_choices()
    w.points.value = viewer.layers["few"]
    w.correct_drift()
    assert "few drift-corrected" not in viewer.layers
    assert w.status.value.startswith("failed:")
    # Gaussians of each uncertainty where every fit failed: asks for the widget's sigma
    failed = Localizations(few.frame, few.x, few.y, uncertainty=np.full(len(few), np.nan))
    data, kwargs, _ = points_layer_data(failed, "failed", metadata={"kind": "localizations"})
    viewer.add_points(data, **kwargs)
    w.reset_choices()
    w.points.value = viewer.layers["failed"]
    w.mode.value, w.sigma.value = "gauss", 0.0
    w.render()
    assert "failed render" not in viewer.layers
    assert any(lv == "error" and "no uncertainty to size the Gaussians; set a sigma (nm)" in m for lv, m in notes)


def test_an_empty_layer_gets_a_message_from_every_action(make_napari_viewer, notes):
    """An empty localizations layer (a run that found nothing): before, a
    ValueError from reshape escaped every action as a traceback."""
    viewer = make_napari_viewer()
    w = _widget(viewer, Localizations.empty(), name="nothing")
    for action in (w.render, w.correct_drift, w.resolution, w.colour):
        action()
    errors = [m for lv, m in notes if lv == "error"]
    assert errors.count("DSIR Render & Drift: 'nothing' has no localizations") == 3, errors


def test_threaded_render(make_napari_viewer, drifting, qtbot):
    locs, _ = drifting
    viewer = make_napari_viewer()
    w = _widget(viewer, locs)
    w.synchronous = False
    with qtbot.waitSignal(w.finished, timeout=60_000):
        assert w.render() is not None
    assert "sim DSIR localizations render" in viewer.layers and w.worker is None


def test_chooser_follows_new_localizations_until_the_user_picks(make_napari_viewer, drifting):
    """Regression (new-user session): docked before DSIR Reconstruct ran, the
    widget stayed on the ground-truth layer it first saw."""
    locs, _ = drifting
    viewer = make_napari_viewer()
    data, kwargs, _ = points_layer_data(locs, "truth", metadata={"kind": "ground_truth"})
    viewer.add_points(data, **kwargs)
    _, w = viewer.window.add_plugin_dock_widget("napari-dsir", "DSIR Render & Drift")
    assert w.points.value.name == "truth"
    data, kwargs, _ = points_layer_data(locs, "run DSIR localizations", metadata={"kind": "localizations"})
    viewer.add_points(data, **kwargs)
    w.reset_choices()
    assert w.points.value.name == "run DSIR localizations"
    w.points.value = viewer.layers["truth"]  # the user's own choice stays
    data, kwargs, _ = points_layer_data(locs, "run2 DSIR localizations", metadata={"kind": "localizations"})
    viewer.add_points(data, **kwargs)
    w.reset_choices()
    assert w.points.value.name == "truth"


def test_chooser_follows_a_rerun_not_the_previous_runs_drift_corrected_copy(make_napari_viewer, drifting):
    """After Correct drift the chooser is on the corrected copy; a re-run of
    DSIR Reconstruct puts its new localizations back in their place, below
    that copy: the chooser follows them (it stayed on the copy of the
    previous run's, and Render and FRC used the old data)."""
    from napari_dsir._qt.common import put_layers

    locs, _ = drifting
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-dsir", "DSIR Render & Drift")
    w.synchronous = True
    name = "sim DSIR localizations"
    put_layers(viewer, [points_layer_data(locs, name, metadata={"kind": "localizations"})])
    assert w.points.value.name == name
    w.segments.value = 6
    w.correct_drift()
    assert w.points.value.name == f"{name} drift-corrected"
    rerun = Localizations(locs.frame[::2], locs.x[::2], locs.y[::2])
    put_layers(viewer, [points_layer_data(rerun, name, metadata={"kind": "localizations"})])
    assert [lay.name for lay in viewer.layers] == [name, f"{name} drift-corrected"]  # its place kept
    assert w.points.value is viewer.layers[name] and len(w.points.value.data) == len(rerun)


def test_colour_points_by_a_feature(make_napari_viewer, notes):
    """The chosen layer's numeric features are offered; colouring by one
    maps its 2-98 % range onto viridis (the outline of ring markers), a
    missing value (a failed fit's photons) is grey, and one colour comes
    back on request; a layer without features offers one colour only."""
    from napari.utils.colormaps import ensure_colormap

    from napari_dsir.locs import Localizations

    photons = np.array([100.0, 400.0, 1600.0, np.nan, 6400.0])
    locs = Localizations(np.arange(5), np.full(5, 500.0), np.arange(5) * 300.0 + 200, photons=photons,
                         uncertainty=np.array([30.0, 15.0, 8.0, np.nan, 4.0]))
    viewer = make_napari_viewer()
    w = _widget(viewer, locs)
    assert list(w.colour_by.choices) == ["one colour", "frame", "photons", "uncertainty"]
    w.colour_by.value = "photons"
    w.colour()
    layer = viewer.layers["sim DSIR localizations"]
    border = np.asarray(layer.border_color)
    viridis = ensure_colormap("viridis")
    np.testing.assert_allclose(border[4], viridis.map(np.array([1.0]))[0], atol=1e-6)  # the brightest: yellow
    np.testing.assert_allclose(border[3], (0.5, 0.5, 0.5, 1.0))  # no value: grey
    assert (np.asarray(layer.face_color)[:, 3] == 0).all()  # rings stay open
    assert "coloured by photons" in w.status.value and "1 without a value" in w.status.value
    w.colour_by.value = "one colour"
    w.colour()
    assert np.allclose(np.asarray(layer.border_color), np.asarray(layer.border_color)[0])
    viewer.add_points(np.array([[0.0, 1.0, 1.0]]), name="bare", metadata={"units": "nm"})
    w.points.value = viewer.layers["bare"]
    assert list(w.colour_by.choices) == ["one colour"]
    assert not [m for lv, m in notes if lv == "error"]


def test_a_points_layer_drawn_in_nm_world_units_is_rendered_and_corrected_where_it_lies(make_napari_viewer, drifting,
                                                                                        notes):
    """A points layer the user made over a napari-dsir image (napari gives it
    the image's units, nm; before, refused as "not nm"): its world positions
    are the localizations, and the render and the corrected layer overlay it."""
    locs, _ = drifting
    viewer = make_napari_viewer()
    w = _widget(viewer, locs.select(locs.frame < 5), "dummy")
    # drawn at world (y, x) nm, in a layer with its own scale and translate, units um
    world = np.column_stack([locs.frame, locs.y, locs.x]).astype(float)
    scale, translate = np.array([1.0, 0.002, 0.002]), np.array([0.0, 0.1, -0.2])
    viewer.add_points((world * [1, 1e-3, 1e-3] - translate) / scale, name="drawn", scale=scale,
                      translate=translate, units=("pixel", "um", "um"))
    w.reset_choices()
    w.points.value = viewer.layers["drawn"]
    w.pixel_size.value, w.mode.value = 20.0, "hist"
    w.render()
    assert not [m for lv, m in notes if lv == "error"], notes
    img = viewer.layers["drawn render"]
    j = np.unravel_index(np.argmax(img.data), img.data.shape)
    at = np.asarray(img.data_to_world(j)) * 1e3  # um -> nm
    assert (np.hypot(locs.y - at[0], locs.x - at[1]) < 20.0).sum() >= img.data.max() * 0.9
    w.segments.value = 6
    w.correct_drift()
    corrected = viewer.layers["drawn drift-corrected"]
    drift, _ = w.last
    moved = np.asarray([corrected.data_to_world(p) for p in corrected.data[:50]]) * [1, 1e3, 1e3]
    expected = np.column_stack([locs.frame, locs.y - np.interp(locs.frame, drift.frames, drift.y),
                                locs.x - np.interp(locs.frame, drift.frames, drift.x)])[:50]
    np.testing.assert_allclose(moved, expected, atol=0.5)
    # the outputs in the drawn layer's units (one set of units in the viewer: napari renders by them)
    assert [str(u) for u in img.units] == ["micrometer"] * 2
    assert [str(u) for u in corrected.units] == ["pixel", "micrometer", "micrometer"]

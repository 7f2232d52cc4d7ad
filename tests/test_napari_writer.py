"""napari's File > Save for localizations: napari-dsir's writer (ThunderSTORM
CSV, Picasso HDF5), chosen as the save dialog's file type does."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_dsir.errors import DSIRError  # noqa: E402
from napari_dsir.io import read_localizations, read_picasso  # noqa: E402
from napari_dsir.layers import Geometry, points_layer_data, result_layers  # noqa: E402
from napari_dsir.locs import Localizations  # noqa: E402


def _locs():
    return Localizations(np.array([0, 1, 4]), np.array([150.0, 250.0, 350.0]), np.array([120.0, 220.0, 320.0]),
                         intensity=np.array([3.0, 4.0, 5.0]), photons=np.array([100.0, 200.0, np.nan]),
                         background=np.array([10.0, 11.0, np.nan]), sigma=np.array([110.0, 120.0, np.nan]),
                         uncertainty=np.array([10.0, 12.0, np.nan]))


def test_a_run_of_dsir_reconstruct_saves_as_thunderstorm_and_picasso(make_napari_viewer, tmp_path):
    """The localizations of a run (a layer whose world is in um: its data
    nm) saved with napari-dsir's writer read back with every column; the
    Picasso file in the run's camera pixels and frame."""
    from napari_dsir.reconstruct import Result

    locs = _locs()
    res = Result(sum_image=np.zeros((8 * 16, 8 * 20), np.float32), pixel_size=12.5, upsampling=8, start=1, stop=5,
                 localizations=locs, info={"camera": {"baseline": 100.0, "sensitivity": 0.5}})
    geometry = Geometry.from_layer((1.0, 0.1, 0.1), (0.0, 0.05, 0.05), 100.0)  # an image in um
    viewer = make_napari_viewer()
    for data, kwargs, kind in result_layers(res, geometry, "movie", localizations=True, units=("pixel", "um", "um")):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    layer = viewer.layers["movie DSIR localizations"]
    assert layer.metadata["frame_shape"] == (16, 20)
    viewer.layers.selection = {layer}
    csv = tmp_path / "locs.csv"
    assert viewer.layers.save(str(csv), selected=True, plugin="napari-dsir") == [str(csv)]
    back = read_localizations(csv)
    for col in ("frame", "x", "y", "photons", "background", "sigma", "uncertainty", "intensity"):
        np.testing.assert_allclose(getattr(back, col), getattr(locs, col), rtol=1e-6, equal_nan=True, err_msg=col)
    assert (tmp_path / "locs-protocol.txt").is_file()  # the camera beside it, as ThunderSTORM writes it
    # read back, it states the run's frames (DSIR Ground Truth scores those, not every frame)
    viewer.open(str(csv), plugin="napari-dsir")
    assert tuple(viewer.layers[-1].metadata["frames"]) == (1, 5)
    viewer.layers.remove(viewer.layers[-1])
    viewer.layers.selection = {layer}
    h5 = tmp_path / "locs.hdf5"
    assert viewer.layers.save(str(h5), selected=True, plugin="napari-dsir") == [str(h5)]
    back, steps = read_picasso(h5)
    np.testing.assert_allclose(back.x, locs.x, rtol=1e-6)
    np.testing.assert_allclose(back.uncertainty, locs.uncertainty, rtol=1e-5, equal_nan=True)
    assert (steps[0]["Width"], steps[0]["Height"], steps[0]["Pixelsize"], steps[0]["Frames"]) == (20, 16, 100.0, 5)
    # opened with the reader and saved back as a Picasso file: the same movie (camera pixels, frame)
    viewer.open(str(h5), plugin="napari-dsir")
    viewer.layers.selection = {viewer.layers["locs"]}
    again = tmp_path / "again.hdf5"
    assert viewer.layers.save(str(again), selected=True, plugin="napari-dsir") == [str(again)]
    assert tuple(viewer.layers["locs"].metadata["frames"]) == (1, 5)
    back, steps = read_picasso(again)
    from napari_dsir.io.tables import stated_frames

    assert stated_frames(again, steps) == (1, 5)  # the file just written states them too
    assert (steps[0]["Width"], steps[0]["Height"], steps[0]["Pixelsize"], steps[0]["Frames"]) == (20, 16, 100.0, 5)
    np.testing.assert_allclose(back.x, locs.x, rtol=1e-6)


def test_a_saved_layer_states_its_run_as_dsir_localize_does(make_napari_viewer, tmp_path):
    """A run's localizations layer saved with File > Save states the run as
    `dsir localize` (`run.save_localizations`) does: the same protocol
    (camera, camera pixel size, defects, binning, frames...) plus the layer's
    name and kind; reopened and saved again (as a Picasso file: the camera
    pixel size and frame from what the CSV's protocol states) it still
    states them."""
    import json

    import tifffile

    from napari_dsir.run import reconstruct, save_localizations
    from napari_dsir.simulate import SimulationConfig, simulate

    frames, _ = simulate(5, SimulationConfig(frame_size=(32, 32), density=1.0, photons=(800.0, 3000.0),
                                             base_level=400.0, gain=2.0, pixel_size=120.0), seed=5)
    movie = tmp_path / "movie.tif"
    tifffile.imwrite(movie, frames.astype(np.uint16), photometric="minisblack", metadata={"offset": 400})
    res = reconstruct(movie, localize=True, pixel_size=120.0, start=1, stop=4)
    save_localizations(res, tmp_path / "api.csv")
    viewer = make_napari_viewer()
    geometry = Geometry.from_layer((1.0, 120.0, 120.0), (0.0, 0.0, 0.0), 120.0)
    for data, kwargs, kind in result_layers(res, geometry, "movie", localizations=True):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    viewer.layers.selection = {viewer.layers["movie DSIR localizations"]}
    assert viewer.layers.save(str(tmp_path / "gui.csv"), selected=True, plugin="napari-dsir")
    api, gui = (json.loads((tmp_path / f"{n}-protocol.txt").read_text()) for n in ("api", "gui"))
    assert gui["cameraSettings"] == api["cameraSettings"] and api["cameraSettings"]["pixelSize"] == 120.0
    extra = {k: gui["napari-dsir"].pop(k) for k in ("layer", "kind", "source")}
    assert gui["napari-dsir"] == api["napari-dsir"] and extra["kind"] == "localizations"
    assert api["napari-dsir"]["frames"] == [1, 4] and api["napari-dsir"]["camera_origin"] == "metadata"
    viewer.open(str(tmp_path / "gui.csv"), plugin="napari-dsir")
    viewer.layers.selection = {viewer.layers["gui"]}
    h5 = tmp_path / "again.hdf5"
    assert viewer.layers.save(str(h5), selected=True, plugin="napari-dsir") == [str(h5)]
    step = read_picasso(h5)[1][0]
    # Picasso's Frames: the movie's length (5), not the run's stop (4)
    assert (step["Pixelsize"], step["Width"], step["Height"], step["Frames"]) == (120.0, 32, 32, 5)
    text = h5.with_suffix(".yaml").read_text()
    assert "camera_origin: metadata" in text and "network_binning" in text


def test_a_layer_drawn_in_um_saves_in_nm_and_one_in_pixels_is_refused(make_napari_viewer, tmp_path, rng):
    viewer = make_napari_viewer()
    yx_um = rng.uniform(0.1, 3.0, (5, 2))
    drawn = viewer.add_points(np.column_stack([np.arange(5), yx_um]), name="drawn", units=("pixel", "um", "um"))
    viewer.layers.selection = {drawn}
    out = tmp_path / "drawn.csv"
    assert viewer.layers.save(str(out), selected=True, plugin="napari-dsir") == [str(out)]
    back = read_localizations(out)
    np.testing.assert_allclose(np.column_stack([back.y, back.x]), yx_um * 1000, rtol=1e-6)
    np.testing.assert_array_equal(back.frame, np.arange(5))
    pixels = viewer.add_points(np.column_stack([np.arange(3), rng.uniform(0, 30, (3, 2))]), name="pixels")
    viewer.layers.selection = {pixels}
    from napari_dsir._writer import CannotSave, write_points

    with pytest.raises(CannotSave, match="napari-dsir cannot save p.csv: 'pixels' holds positions in pixels, not nm"):
        write_points(str(tmp_path / "p.csv"), pixels.data, pixels._get_state())
    with pytest.raises(CannotSave, match="holds positions in pixels"):  # from napari too: the reason, not
        viewer.layers.save(str(tmp_path / "p.csv"), selected=True, plugin="napari-dsir")  # "no writer"
    assert not (tmp_path / "p.csv").exists()
    # a file beside the table that is not the table's (the user's own YAML, another table's protocol) stays
    (tmp_path / "mine.yaml").write_text("my: settings\n")
    (tmp_path / "other-protocol.txt").write_text("{}")
    (tmp_path / "other.csv").write_text("frame,x,y\n1,2,3\n")
    for target, side in (("mine.h5", "mine.yaml"), ("other.tsv", "other-protocol.txt")):
        with pytest.raises(CannotSave, match=f"{side} is there already and is not"):
            write_points(str(tmp_path / target), drawn.data, drawn._get_state())
        assert not (tmp_path / target).exists()
    assert (tmp_path / "mine.yaml").read_text() == "my: settings\n"
    # a Picasso file needs a camera pixel size: a layer drawn in um has none
    with pytest.raises(CannotSave, match="states no camera pixel size; save it as a .csv"):
        write_points(str(tmp_path / "d.hdf5"), drawn.data, drawn._get_state())


def test_saved_ground_truth_reads_back_as_ground_truth(make_napari_viewer, tmp_path):
    """Ground truth saved with the writer opens as ground truth (DSIR Ground
    Truth offers it as such; before: as localizations)."""
    viewer = make_napari_viewer()
    data, kwargs, _ = points_layer_data(_locs(), "truth", metadata={"kind": "ground_truth"})
    viewer.layers.selection = {viewer.add_points(data, **kwargs)}
    path = tmp_path / "truth.csv"
    assert viewer.layers.save(str(path), selected=True, plugin="napari-dsir") == [str(path)]
    viewer.open(str(path), plugin="napari-dsir")
    assert viewer.layers[-1].metadata["kind"] == "ground_truth"


def test_napari_own_points_csv_is_named_as_such(make_napari_viewer, tmp_path):
    """napari's builtin points CSV (axis-0, axis-1, ...) is refused with a
    message that says how to save a table instead (before: "missing
    column(s) x, y")."""
    viewer = make_napari_viewer()
    data, kwargs, _ = points_layer_data(_locs(), "L", metadata={"kind": "localizations"})
    layer = viewer.add_points(data, **kwargs)
    viewer.layers.selection = {layer}
    path = tmp_path / "napari.csv"
    assert viewer.layers.save(str(path), selected=True, plugin="napari") == [str(path)]
    with pytest.raises(DSIRError, match="napari's own points CSV .* 'napari-dsir localizations'"):
        read_localizations(path)


def test_several_layers_save_as_one_table_each_all_or_none(make_napari_viewer, tmp_path):
    """Save Selected Layers with several localization layers: napari-dsir's
    writer (before: napari's own only) writes one table per layer, named
    after the path and the layer, with its columns; none when one of them
    cannot be saved, and two names that would clash are refused."""
    from napari_dsir.errors import DSIRError

    viewer = make_napari_viewer()
    for name in ("movie 1: DSIR localizations", "movie 2 DSIR localizations"):
        data, kwargs, _ = points_layer_data(_locs(), name, metadata={"kind": "localizations"})
        viewer.add_points(data, **kwargs)
    viewer.layers.selection = set(viewer.layers)
    saved = viewer.layers.save(str(tmp_path / "runs.csv"), selected=True, plugin="napari-dsir")
    assert sorted(saved) == [str(tmp_path / "runs_movie 1_ DSIR localizations.csv"),
                             str(tmp_path / "runs_movie 2 DSIR localizations.csv")]
    for path in saved:
        np.testing.assert_allclose(read_localizations(path).photons, _locs().photons, equal_nan=True)
    # a Picasso file needs the camera pixel size, which these layers do not state: neither is written
    with pytest.raises((OSError, DSIRError), match="states no camera pixel size"):
        viewer.layers.save(str(tmp_path / "runs.hdf5"), selected=True, plugin="napari-dsir")
    assert not list(tmp_path.glob("*.hdf5")) and not list(tmp_path.glob("*.yaml"))
    viewer.layers["movie 2 DSIR localizations"].name = "movie 1? DSIR localizations"
    with pytest.raises(OSError, match="more than one would be saved as runs_movie 1_ DSIR localizations.csv"):
        viewer.layers.save(str(tmp_path / "runs.csv"), selected=True, plugin="napari-dsir")


def test_older_tables_reopen_and_save_with_what_they_state(make_napari_viewer, tmp_path):
    """A CSV whose protocol states the camera pixel size only as
    ThunderSTORM's cameraSettings.pixelSize (ThunderSTORM's own, napari-dsir's
    before it stated camera_pixel_size) saves as a Picasso file in those
    pixels (before: refused, no camera pixel size); an older napari-dsir
    Picasso file, whose Frames was the run's stop, is not read as stating the
    movie's length."""
    import json

    from napari_dsir.io import write_localizations

    csv = tmp_path / "ts.csv"
    write_localizations(csv, _locs())
    (tmp_path / "ts-protocol.txt").write_text(json.dumps({"cameraSettings": {"offset": 100, "pixelSize": 160.0}}))
    viewer = make_napari_viewer()
    viewer.open(str(csv), plugin="napari-dsir")
    assert viewer.layers["ts"].metadata["camera_pixel_size"] == 160.0
    viewer.layers.selection = {viewer.layers["ts"]}
    h5 = tmp_path / "ts.hdf5"
    assert viewer.layers.save(str(h5), selected=True, plugin="napari-dsir") == [str(h5)]
    assert read_picasso(h5)[1][0]["Pixelsize"] == 160.0
    old = tmp_path / "old.hdf5"  # as napari-dsir wrote it before: Frames 4 for a run on frames 1-3
    write_localizations(old, _locs(), pixel_size=100.0, frame_shape=(8, 8), n_frames=5,
                        metadata={"generator": "napari-dsir 0.1.0", "frames": [1, 5]})
    viewer.open(str(old), plugin="napari-dsir")
    assert "movie_frames" not in viewer.layers["old"].metadata
    assert tuple(viewer.layers["old"].metadata["frames"]) == (1, 5)

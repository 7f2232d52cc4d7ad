"""The napari reader contribution: TIFF stacks, folders of TIFFs, localization tables."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_dsir._reader import napari_get_reader  # noqa: E402


def _stack(n=5, h=16, w=20, seed=0):
    rng = np.random.default_rng(seed)
    return rng.poisson(100, size=(n, h, w)).astype(np.uint16)


@pytest.fixture
def tiff_stack(tmp_path):
    data = _stack()
    path = tmp_path / "movie.tif"
    # ImageJ calibration: 0.16 um per pixel -> 160 nm
    tifffile.imwrite(path, data, imagej=True, resolution=(1 / 0.16, 1 / 0.16),
                     metadata={"unit": "um", "axes": "TYX"})
    return path, data


def test_reader_tiff_stack(make_napari_viewer, tiff_stack):
    path, data = tiff_stack
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin="napari-dsir")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.name == "movie"
    assert layer.data.shape == data.shape
    assert type(layer.data).__module__.startswith("dask")  # lazy
    np.testing.assert_array_equal(np.asarray(layer.data[2]), data[2])
    np.testing.assert_allclose(layer.scale, [1, 160, 160])
    # pixel k's centre at (k + 0.5) p: positions in nm (corner origin) overlay
    np.testing.assert_allclose(layer.translate, [0, 80, 80])
    assert layer.metadata["pixel_size"] == pytest.approx(160.0)
    assert layer.metadata["source"] == str(path)
    assert layer.data_to_world((0, 3, 4)) == pytest.approx((0, 3.5 * 160, 4.5 * 160))


def test_reader_folder(make_napari_viewer, tmp_path):
    data = _stack(n=3)
    folder = tmp_path / "run7"
    folder.mkdir()
    for i, frame in enumerate(data):
        tifffile.imwrite(folder / f"{i + 1:05d}.tif", frame)
    viewer = make_napari_viewer()
    layers = viewer.open(folder, plugin="napari-dsir")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.name == "run7"
    np.testing.assert_array_equal(np.asarray(layer.data), data)
    np.testing.assert_allclose(layer.scale, [1, 100, 100])  # default pixel size
    assert layer.metadata["pixel_size"] == 100.0
    assert layer.metadata["pixel_size_from_file"] is False


def test_reader_epfl_sequence_named_after_parent(tmp_path):
    folder = tmp_path / "tubes" / "sequence"
    folder.mkdir(parents=True)
    for i, frame in enumerate(_stack(n=2)):
        tifffile.imwrite(folder / f"{i + 1:05d}.tif", frame)
    layers = napari_get_reader(str(folder))(str(folder))
    assert layers[0][1]["name"] == "tubes"


def test_reader_epfl_sequence_message_names_the_layer(tmp_path):
    """Regression: the "no pixel size" message named the folder "sequence"
    while the layer is called after its parent, "bundled_tubes_hd"."""
    from napari.utils.notifications import notification_manager

    folder = tmp_path / "bundled_tubes_hd" / "sequence"
    folder.mkdir(parents=True)
    for i, frame in enumerate(_stack(n=2)):
        tifffile.imwrite(folder / f"{i + 1:05d}.tif", frame)
    got = []

    def on(event):
        got.append(str(event.message))

    notification_manager.notification_ready.connect(on)
    try:
        layers = napari_get_reader(str(folder))(str(folder))
    finally:
        notification_manager.notification_ready.disconnect(on)
    assert layers[0][1]["name"] == "bundled_tubes_hd"
    assert len(got) == 1 and got[0].startswith("napari-dsir: bundled_tubes_hd has no pixel size"), got
    assert "sequence" not in got[0]


def test_reader_csv_points(make_napari_viewer, tmp_path):
    path = tmp_path / "truth.csv"
    path.write_text('"id","frame","x [nm]","y [nm]","intensity [photon]"\n'
                    "1,1,150.0,250.0,1000\n2,3,1000.5,20.25,800\n")
    viewer = make_napari_viewer()
    layers = viewer.open(path, plugin="napari-dsir")
    assert len(layers) == 1
    pts = layers[0]
    assert pts.name == "truth"
    assert pts._type_string == "points"
    # (frame 0-based, y nm, x nm)
    np.testing.assert_allclose(pts.data, [[0, 250.0, 150.0], [2, 20.25, 1000.5]])
    np.testing.assert_allclose(pts.features["intensity"], [1000, 800])
    np.testing.assert_array_equal(pts.features["frame"], [0, 2])  # every column is a feature
    assert pts.metadata["kind"] == "localizations" and pts.metadata["units"] == "nm"


def test_reader_picasso_hdf5(make_napari_viewer, tmp_path):
    from napari_dsir.io import write_picasso
    from napari_dsir.locs import Localizations

    locs = Localizations([0, 2], [150.0, 1000.5], [250.0, 20.25], photons=[1000.0, 800.0])
    path = write_picasso(tmp_path / "run.hdf5", locs, pixel_size=160.0, frame_shape=(32, 32), n_frames=3)
    viewer = make_napari_viewer()
    (pts,) = viewer.open(path, plugin="napari-dsir")
    np.testing.assert_allclose(pts.data, [[0, 250.0, 150.0], [2, 20.25, 1000.5]], atol=1e-3)
    np.testing.assert_allclose(pts.features["photons"], [1000, 800])
    assert pts.name == "run"
    # napari-dsir's own file states no run range here: none is made up from its Frames
    assert "frames" not in pts.metadata and pts.metadata["camera_pixel_size"] == 160.0
    # a file of Picasso's own: its movie's frames, all localized
    import yaml

    other = tmp_path / "picasso.hdf5"
    other.write_bytes(path.read_bytes())
    other.with_suffix(".yaml").write_text(yaml.safe_dump_all(
        [{"Frames": 7, "Height": 32, "Width": 32}, {"Generated by": "Picasso Localize", "Pixelsize": 130}]))
    (theirs,) = viewer.open(other, plugin="napari-dsir")
    assert tuple(theirs.metadata["frames"]) == (0, 7) and theirs.metadata["camera_pixel_size"] == 130.0


@pytest.mark.parametrize("kind", ["text_as_tif", "empty_dir", "bad_csv", "missing", "other_ext",
                                  "rgb_tif"])
def test_reader_returns_none(tmp_path, kind):
    if kind == "text_as_tif":
        p = tmp_path / "x.tif"
        p.write_text("not a tiff")
    elif kind == "empty_dir":
        p = tmp_path / "empty"
        p.mkdir()
    elif kind == "bad_csv":
        p = tmp_path / "x.csv"
        p.write_text("a,b\n1,2\n")
    elif kind == "missing":
        p = tmp_path / "nope.tif"
    elif kind == "other_ext":
        p = tmp_path / "x.png"
        p.write_bytes(b"\x89PNG")
    else:
        p = tmp_path / "rgb.tif"
        tifffile.imwrite(p, np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    assert napari_get_reader(str(p)) is None
    assert napari_get_reader([str(p)]) is None


def test_manifest_contributions():
    from npe2 import PluginManager

    pm = PluginManager()
    pm.discover()
    mf = pm.get_manifest("napari-dsir")
    assert mf.display_name == "napari-dsir"  # menus read "Plugins > napari-dsir > DSIR Reconstruct"
    mf.validate_imports()  # every python_name imports (npe2 validate --imports)
    widgets = {w.display_name for w in mf.contributions.widgets}
    assert widgets == {"DSIR Reconstruct", "DSIR Ground Truth", "DSIR Render & Drift", "DSIR Filter"}
    assert [s.key for s in mf.contributions.sample_data] == ["sample_stack"]
    reader = mf.contributions.readers[0]
    assert reader.accepts_directories
    assert "*.tif" in reader.filename_patterns and "*.csv" in reader.filename_patterns

"""napari_dsir.layers without napari: geometry, pixel sizes, layer data."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_dsir.io import open_stack
from napari_dsir.layers import (
    DASK_CHUNK,
    Geometry,
    layer_name,
    layer_pixel_size,
    locs_from_points,
    points_features,
    points_layer_data,
    result_layers,
    stack_layer_data,
)
from napari_dsir.locs import Localizations
from napari_dsir.reconstruct import Result


def _world(scale, translate, index):
    """napari's data -> world: the centre of pixel k at translate + k * scale."""
    return np.asarray(translate, float) + np.asarray(index, float) * np.asarray(scale, float)


@pytest.mark.parametrize("scale,translate", [((100, 100), (50, 50)), ((1, 1), (0, 0)), ((0.16, 0.16), (3, -2))])
def test_geometry_overlays_whatever_the_world_units(scale, translate):
    """Camera pixel k's centre is at (k + 0.5) p nm; the SR grid covers the
    same area; a point at n nm lands where the camera image shows n nm."""
    p, u = 100.0, 8
    geo = Geometry.from_layer(scale, translate, p)
    # the corner of the camera grid (pixel -0.5) and of the SR grid coincide
    cam_corner = _world(geo.camera_scale(), geo.camera_translate(), (-0.5, -0.5))
    sr_corner = _world(geo.sr_scale(u), geo.sr_translate(u), (-0.5, -0.5))
    np.testing.assert_allclose(sr_corner, cam_corner)
    # SR pixel 8k + 4 straddles the centre of camera pixel k
    cam_centre = _world(geo.camera_scale(), geo.camera_translate(), (3, 7))
    sr_edge = _world(geo.sr_scale(u), geo.sr_translate(u), (3 * u + 3.5, 7 * u + 3.5))
    np.testing.assert_allclose(sr_edge, cam_centre)
    # points in nm: (k + 0.5) p nm is the centre of camera pixel k
    nm = np.array([3.5 * p, 7.5 * p])
    np.testing.assert_allclose(_world(geo.points_scale(2), geo.points_translate(2), nm), cam_centre)
    # and back
    np.testing.assert_allclose(geo.nm_from_world(cam_centre), nm)
    assert geo.world_is_nm == (scale[0] == p)


def test_geometry_for_pixel_size_is_nm():
    geo = Geometry.for_pixel_size(160)
    assert geo.camera_scale(3) == (1.0, 160, 160) and geo.camera_translate(3) == (0.0, 80, 80)
    assert geo.points_scale(3) == (1.0, 1.0, 1.0) and geo.points_translate(3) == (0.0, 0.0, 0.0)
    assert geo.world_is_nm


@pytest.mark.parametrize("metadata,scale,units,expected", [
    ({"pixel_size": 160}, (1, 1, 1), None, 160.0),  # metadata, where the scale is not a length
    ({"pixel_size": 160}, (1, 100, 100), ("pixel", "nm", "nm"), 100.0),  # the scale shown (one the user set)
    ({}, (1, 107, 107), ("pixel", "nanometer", "nanometer"), 107.0),  # scale, when in nm
    ({}, (1, 0.107, 0.107), ("pixel", "micrometer", "micrometer"), 107.0),
    ({}, (1, 107, 107), ("pixel", "pixel", "pixel"), None),  # a scale in pixels is not nm
    ({}, (1, 1, 1), None, None),
    ({"pixel_size": "bad"}, (1, 1), None, None),
    ({"pixel_size": -3}, (1, 1), None, None),
    (None, (1, 1), None, None),
])
def test_layer_pixel_size(metadata, scale, units, expected):
    assert layer_pixel_size(metadata, scale, units) == expected


def test_points_layer_data_has_a_feature_per_column():
    locs = Localizations([0, 2], [150.0, 1000.5], [250.0, 20.25], intensity=[3, 4],
                         photons=[1000, 800], uncertainty=[10, 12])
    data, kw, kind = points_layer_data(locs, "locs", geometry=Geometry.for_pixel_size(100))
    assert kind == "points"
    np.testing.assert_allclose(data, [[0, 250, 150], [2, 20.25, 1000.5]])
    assert set(kw["features"]) == {"frame", "intensity", "photons", "uncertainty"}
    np.testing.assert_array_equal(kw["features"]["frame"], [0, 2])
    np.testing.assert_allclose(kw["features"]["photons"], [1000, 800])
    assert kw["metadata"]["units"] == "nm"
    assert kw["units"][-1] == "nm"
    assert list(points_features(Localizations([1], [2.0], [3.0]))) == ["frame"]
    empty, kw, _ = points_layer_data(Localizations.empty(), "none", ndim=2)
    assert empty.shape == (0, 2) and len(kw["features"]["frame"]) == 0
    back = locs_from_points(empty, kw["features"])  # an empty layer reads back (it raised in reshape)
    assert len(back) == 0 and len(locs_from_points(np.zeros((0, 3)))) == 0


def test_points_added_by_hand_get_no_copied_measurements():
    _, kw, _ = points_layer_data(Localizations([0, 119], [1.0, 2.0], [1.0, 2.0], photons=[10, 20]), "l")
    assert kw["feature_defaults"]["frame"] == -1 and np.isnan(kw["feature_defaults"]["photons"])


def test_points_layer_data_on_a_pixel_image_maps_nm_to_its_world():
    geo = Geometry.from_layer((1, 1, 1), (0, 0, 0), 100.0)
    data, kw, _ = points_layer_data(Localizations([1], [1250.0], [1150.0]), "gt", geometry=geo)
    world = _world(kw["scale"], kw["translate"], data[0])
    np.testing.assert_allclose(world, [1, 11.0, 12.0])  # the centre of pixel (11, 12)
    assert "units" not in kw  # the world is pixels: napari's default


def _result(n=3, start=1):
    locs = Localizations([1, 2], [1250.0, 300.0], [1150.0, 400.0], intensity=[1.0, 2.0])
    return Result(np.arange(16 * 16, dtype=np.float32).reshape(16, 16), 12.5, 8, start, start + n,
                  frames=np.ones((n, 16, 16), np.float32), localizations=locs,
                  info={"model": "test", "pixel_size_origin": "metadata", "localize": {"threshold": 0.5}})


def test_result_layers():
    geo = Geometry.for_pixel_size(100)
    layers = result_layers(_result(), geo, "spot", ndim=3, frames=True, localizations=True)
    names = [kw["name"] for _, kw, _ in layers]
    assert names == ["spot DSIR frames", "spot DSIR", "spot DSIR localizations"]
    (frames, fkw, _), (img, skw, stype), (pts, pkw, ptype) = layers
    assert stype == "image" and ptype == "points"
    np.testing.assert_allclose(skw["scale"], [12.5, 12.5])
    np.testing.assert_allclose(skw["translate"], [6.25, 6.25])
    assert fkw["translate"][0] == 1  # frame 1 of the input is frame 0 of the stack
    assert skw["metadata"]["kind"] == "dsir_sum" and pkw["metadata"]["kind"] == "localizations"
    assert pkw["metadata"]["frames"] == (1, 4) and pkw["metadata"]["pixel_size"] == 100
    assert set(pkw["features"]) == {"frame", "intensity"}
    lo, hi = skw["contrast_limits"]
    assert hi > lo
    only_sum = result_layers(_result(), geo, "spot", ndim=3)
    assert [kw["name"] for _, kw, _ in only_sum] == ["spot DSIR"]
    two_d = result_layers(_result(n=1, start=0), geo, "one", ndim=2, frames=True, localizations=True)
    assert two_d[0][0].ndim == 2 and two_d[2][0].shape == (2, 2)


def test_stack_layer_data_and_names(tmp_path):
    folder = tmp_path / "bundled_tubes_hd" / "sequence"
    folder.mkdir(parents=True)
    for i in range(DASK_CHUNK + 4):
        tifffile.imwrite(folder / f"{i + 1:05d}.tif", np.full((8, 10), i, np.uint16))
    stack = open_stack(folder)
    assert layer_name(stack) == "bundled_tubes_hd"
    data, kw, kind = stack_layer_data(stack)
    assert kind == "image" and kw["name"] == "bundled_tubes_hd"
    assert type(data).__module__.startswith("dask") and data.chunks[0][0] == DASK_CHUNK
    assert kw["scale"] == (1.0, 100.0, 100.0) and kw["translate"] == (0.0, 50.0, 50.0)
    assert kw["metadata"]["pixel_size_from_file"] is False
    single = tmp_path / "one.tif"
    tifffile.imwrite(single, np.ones((8, 10), np.uint16))
    data, kw, _ = stack_layer_data(open_stack(single, pixel_size=160))
    assert data.shape == (8, 10) and kw["scale"] == (160.0, 160.0) and kw["name"] == "one"

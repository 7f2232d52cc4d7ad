"""File > Open Sample > napari-dsir."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")


def test_open_sample(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-dsir", "sample_stack")
    assert [lay.name for lay in layers] == ["DSIR sample", "DSIR sample ground truth"]
    img, pts = layers
    n = img.data.shape[0]
    assert img.data.shape == (n, 64, 64) and n >= 20
    np.testing.assert_allclose(img.scale, [1, 100, 100])
    np.testing.assert_allclose(img.translate, [0, 50, 50])
    assert pts.ndim == 3 and len(pts.data) > n * 10
    assert pts.metadata["kind"] == "ground_truth" and pts.metadata["units"] == "nm"
    assert "frame" in pts.features.columns
    # ground truth in nm, inside the 6.4 um field, frames 0..n-1
    assert pts.data[:, 0].min() >= 0 and pts.data[:, 0].max() <= n - 1
    assert np.all((pts.data[:, 1:] >= 0) & (pts.data[:, 1:] <= 6400))
    # the emitters are where the camera is bright: a ground-truth point's
    # pixel is above the frame's median much more often than not
    frame = np.asarray(img.data[0], dtype=float)
    p0 = pts.data[pts.data[:, 0] == 0]
    k = np.floor(p0[:, 1:] / 100).astype(int)
    assert np.mean(frame[k[:, 0], k[:, 1]] > np.median(frame)) > 0.8

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from napari_dsir.figures import (
    colorize,
    curves_figure,
    images_figure,
    loss_figure,
    plot_curves,
    plot_loss_curves,
    to_uint8,
    write_png,
)


def _read(path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im)


def test_grey_and_rgb_pngs_round_trip(tmp_path):
    grey = (np.arange(12 * 7) % 256).astype(np.uint8).reshape(12, 7)
    np.testing.assert_array_equal(_read(write_png(tmp_path / "g.png", grey)), grey)
    rgb = np.stack([grey, 255 - grey, grey // 2], -1)
    np.testing.assert_array_equal(_read(write_png(tmp_path / "c.png", rgb)), rgb)
    # float images are scaled between percentiles: 0 and 99.9 by default
    ramp = np.linspace(0, 1, 100).reshape(10, 10)
    back = _read(write_png(tmp_path / "f.png", ramp, lo_pct=0, hi_pct=100))
    assert back.shape == (10, 10) and back.dtype == np.uint8
    assert back[0, 0] == 0 and back[-1, -1] == 255 and (np.diff(back.ravel().astype(int)) >= 0).all()


def test_colormap_png_is_rgb_through_the_named_colormap(tmp_path):
    from matplotlib import colormaps

    img = np.array([[0.0, 0.5], [1.0, np.nan]])
    back = _read(write_png(tmp_path / "i.png", img, cmap="inferno", lo_pct=0, hi_pct=100))
    assert back.shape == (2, 2, 3)
    expect = (np.asarray(colormaps["inferno"]([0.0, 1.0]))[:, :3] * 255).round()
    np.testing.assert_array_equal(back[0, 0], expect[0])  # lowest value: the colormap's first colour
    np.testing.assert_array_equal(back[1, 0], expect[1])  # highest: its last
    np.testing.assert_array_equal(back[1, 1], expect[0])  # NaN shown as the lowest
    np.testing.assert_array_equal(colorize(img, "inferno", 0, 100), back)


def test_write_png_is_atomic_and_refuses_bad_shapes(tmp_path):
    from napari_dsir.errors import DSIRError

    p = write_png(tmp_path / "a.png", np.zeros((4, 5), np.uint8))
    with pytest.raises(DSIRError, match="already exists"):
        write_png(p, np.ones((4, 5), np.uint8), overwrite=False)
    assert _read(p).max() == 0  # unchanged
    with pytest.raises(ValueError, match="expected an image"):
        write_png(tmp_path / "b.png", np.zeros((2, 3, 4)))
    with pytest.raises(DSIRError, match="does not exist"):
        write_png(tmp_path / "missing" / "c.png", np.zeros((4, 5)))
    assert sorted(q.name for q in tmp_path.iterdir()) == ["a.png"]  # no temporary files left


def test_scaling_and_image_grid_with_column_titles(tmp_path):
    assert to_uint8(np.array([[0.0, 1.0], [np.nan, 2.0]]), 0, 100).tolist() == [[0, 128], [0, 255]]
    assert to_uint8(np.full((3, 3), 7.0)).max() == 0  # flat: no division by zero
    ramp = np.arange(64.0).reshape(8, 8)
    fig = images_figure([[np.zeros((4, 4)), ramp], [ramp, ramp.T]], ["input", "truth"], "epoch 3", dpi=50)
    assert [ax.get_title() for ax in fig.axes] == ["input", "truth", "", ""]
    assert fig.get_suptitle() == "epoch 3"
    shown = fig.axes[1].images[0].get_array()
    np.testing.assert_array_equal(shown, to_uint8(ramp))  # each image on its own grey scale
    assert fig.axes[0].images[0].get_array().max() == 0  # flat: black
    with pytest.raises(ValueError, match="1 column titles for 2 columns"):
        images_figure([[ramp, ramp]], ["input"])


def test_curves_figure_has_labelled_axes_legend_and_lines():
    x = np.arange(1, 11)
    fig = curves_figure(x, {"a": x**2, "b": np.sqrt(x)}, "frame", "drift [nm]", title="Drift",
                        hlines={"limit": 20.0})
    (ax,) = fig.axes
    assert ax.get_xlabel() == "frame" and ax.get_ylabel() == "drift [nm]" and ax.get_title() == "Drift"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b", "limit"]
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    np.testing.assert_array_equal(lines["a"].get_ydata(), x**2)
    assert tuple(lines["limit"].get_ydata()) == (20.0, 20.0) and lines["limit"].get_linestyle() == "--"
    assert ax.get_yscale() == "linear"
    with pytest.raises(ValueError, match="3 values for 10"):
        curves_figure(x, {"short": [1, 2, 3]}, "x", "y")


def test_plot_curves_writes_a_png_of_the_asked_size(tmp_path):
    p = plot_curves(tmp_path / "c.png", [0, 1, 2], {"FRC": [1.0, 0.5, 0.1]}, "spatial frequency [1/nm]",
                    "FRC", hlines={"1/7": 1 / 7}, size=(5, 3), dpi=80)
    img = _read(p)
    assert img.shape[:2] == (240, 400)  # 3 x 5 inches at 80 dpi
    assert img.shape[2] in (3, 4) and img.std() > 0  # something drawn


def test_loss_curves_epoch_axis_and_legend(tmp_path):
    hist = {"train": [1.0, 0.5, 0.2], "val": [1.2, 0.6, 0.3]}
    fig = loss_figure(hist)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "epoch" and "loss" in ax.get_ylabel() and ax.get_yscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["training", "validation"]
    np.testing.assert_array_equal(ax.get_lines()[0].get_xdata(), [1, 2, 3])  # epochs are 1-based
    np.testing.assert_array_equal(ax.get_lines()[1].get_ydata(), hist["val"])
    img = _read(plot_loss_curves(tmp_path / "loss.png", hist))
    assert img.shape[:2] == (400, 600)
    # non-positive losses (an L1 term can make none, but a user history can): linear axis
    assert loss_figure({"train": [0.0, -1.0]}).axes[0].get_yscale() == "linear"


def test_figures_never_import_pyplot_or_qt(tmp_path):
    """Figures are drawn on the Agg canvas directly, even where the user's
    default backend is a Qt one: no pyplot, no Qt (safe inside napari and headless)."""
    code = ("import sys, numpy as np; from napari_dsir import figures; "
            f"figures.plot_curves({str(tmp_path / 'x.png')!r}, [0, 1], {{'a': [1, 2]}}, 'x', 'y'); "
            f"figures.write_png({str(tmp_path / 'y.png')!r}, np.eye(4), cmap='inferno'); "
            "print(sorted(m for m in sys.modules if m == 'matplotlib.pyplot' or 'qt' in m.lower()))")
    env = {**os.environ, "MPLBACKEND": "QtAgg"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "[]"
    assert (tmp_path / "x.png").is_file() and (tmp_path / "y.png").is_file()

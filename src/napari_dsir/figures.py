"""PNG figures: images (Pillow) and curves with labelled axes (matplotlib).

Used by training (validation panels, loss curves), `dsir demo`, the docs
and the benchmarks. Plots are drawn on a `matplotlib.figure.Figure` with the
Agg canvas directly: pyplot is never imported and no GUI backend is chosen,
so this works headless and inside napari alike. matplotlib and Pillow are
imported only when a figure is written. Every PNG is written atomically.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def to_uint8(img: np.ndarray, lo_pct: float = 0.0, hi_pct: float = 99.9) -> np.ndarray:
    """Scale an image to 0-255 between two percentiles of its finite values
    (NaN -> 0; a flat image -> 0)."""
    img = np.asarray(img, dtype=np.float64)
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        return np.zeros(img.shape, np.uint8)
    lo, hi = np.percentile(finite, [lo_pct, hi_pct])
    if hi <= lo:
        hi = lo + 1.0
    out = np.clip((np.nan_to_num(img, nan=lo) - lo) / (hi - lo), 0, 1)
    return (out * 255).round().astype(np.uint8)


def colorize(img: np.ndarray, cmap: str = "inferno", lo_pct: float = 0.0, hi_pct: float = 99.9) -> np.ndarray:
    """(Y, X) image -> (Y, X, 3) uint8 RGB through a matplotlib colormap,
    scaled as `to_uint8`."""
    from matplotlib import colormaps

    lut = (colormaps[cmap](np.linspace(0, 1, 256))[:, :3] * 255).round().astype(np.uint8)
    return lut[to_uint8(img, lo_pct, hi_pct)]


def images_figure(rows: list[list[np.ndarray]], columns: Sequence[str], title: str = "", size: float = 1.8,
                  dpi: int = 100):
    """A `matplotlib.figure.Figure` (Agg canvas, no pyplot) of a grid of
    (Y, X) images, each grey between its own 0 and 99.9th percentile
    (`to_uint8`), with a title over each column (``columns``) and the
    figure's ``title``; ``size`` inches a panel at ``dpi``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_cols = max(len(r) for r in rows)
    if len(columns) != n_cols:
        raise ValueError(f"{len(columns)} column titles for {n_cols} columns")
    fig = Figure(figsize=(size * n_cols, size * len(rows) + (0.5 if title else 0.2)), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for i, row in enumerate(rows):
        for j, ax in enumerate(axes[i]):
            if j < len(row):
                ax.imshow(to_uint8(np.asarray(row[j])), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(columns[j], fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def write_png(path: str | Path, img: np.ndarray, cmap: str | None = None, lo_pct: float = 0.0,
              hi_pct: float = 99.9, overwrite: bool = True) -> Path:
    """Write an image as PNG, one array pixel per image pixel.

    ``img``: (Y, X) or (Y, X, 3). uint8 is written as it is; anything else
    is scaled between the ``lo_pct`` and ``hi_pct`` percentiles (`to_uint8`).
    ``cmap`` (a matplotlib colormap name, e.g. "inferno") turns a (Y, X)
    image into RGB; None: grey. Returns the path.
    """
    from PIL import Image

    from .io import atomic_output

    img = np.asarray(img)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
        raise ValueError(f"expected an image (Y, X) or (Y, X, 3), got shape {img.shape}")
    if cmap is not None:
        if img.ndim != 2:
            raise ValueError("a colormap needs a (Y, X) image")
        img = colorize(img, cmap, lo_pct, hi_pct)
    elif img.dtype != np.uint8:
        img = to_uint8(img, lo_pct, hi_pct)
    pil = Image.fromarray(np.ascontiguousarray(img), "RGB" if img.ndim == 3 else "L")
    with atomic_output(path, overwrite=overwrite) as tmp:
        pil.save(tmp, format="PNG")
    return Path(path)


# --------------------------------------------------------------------------- curves


def curves_figure(x: Sequence[float] | np.ndarray, series: Mapping[str, Sequence[float] | np.ndarray],
                  xlabel: str, ylabel: str, title: str = "", hlines: Mapping[str, float] | None = None,
                  logy: bool = False, size: tuple[float, float] = (6.0, 4.0), dpi: int = 100):
    """A `matplotlib.figure.Figure` (Agg canvas, no pyplot) of ``series``
    (label -> y values, each as long as ``x``; NaN leaves a gap) against
    ``x``, with axis labels, a title, a legend, and dashed horizontal lines
    ``hlines`` (label -> y, e.g. {"1/7 threshold": 1 / 7}). ``logy``: log
    y axis. ``size`` inches at ``dpi``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = np.asarray(x, dtype=float)
    fig = Figure(figsize=size, dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, y in series.items():
        y = np.asarray(y, dtype=float)
        if y.shape != x.shape:
            raise ValueError(f"series {label!r}: {y.shape[0] if y.ndim else 0} values for {x.size} x values")
        ax.plot(x, y, marker="o" if x.size <= 30 else None, markersize=3, label=label)
    for k, (label, yv) in enumerate((hlines or {}).items()):
        ax.axhline(float(yv), color=f"C{(len(series) + k) % 10}", linestyle="--", linewidth=1, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if series or hlines:
        ax.legend()
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path, overwrite: bool = True) -> Path:
    """Write a matplotlib figure as PNG, atomically."""
    from .io import atomic_output

    with atomic_output(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png")
    return Path(path)


def plot_curves(path: str | Path, x, series: Mapping[str, Sequence[float] | np.ndarray], xlabel: str,
                ylabel: str, title: str = "", hlines: Mapping[str, float] | None = None, logy: bool = False,
                size: tuple[float, float] = (6.0, 4.0), dpi: int = 100) -> Path:
    """`curves_figure` written to ``path`` as PNG (size * dpi pixels)."""
    return save_figure(curves_figure(x, series, xlabel, ylabel, title, hlines, logy, size, dpi), path)


def loss_figure(history: Mapping[str, Sequence[float]], title: str = "Training"):
    """Loss curves against the epoch (1-based), log y axis: ``history`` has
    "train" and "val" lists (one value per epoch; a shorter list is padded
    with NaN)."""
    names = {"train": "training", "val": "validation"}
    n = max((len(v) for v in history.values()), default=0)
    series = {names.get(k, k): np.pad(np.asarray(v, float), (0, n - len(v)), constant_values=np.nan)
              for k, v in history.items()}
    positive = all((np.nan_to_num(v, nan=1.0) > 0).all() for v in series.values())
    return curves_figure(np.arange(1, n + 1), series, "epoch", "loss (MSE of blurred images)", title,
                         logy=positive and n > 0)


def plot_loss_curves(path: str | Path, history: Mapping[str, Sequence[float]], title: str = "Training") -> Path:
    """`loss_figure` written to ``path`` as PNG."""
    return save_figure(loss_figure(history, title), path)

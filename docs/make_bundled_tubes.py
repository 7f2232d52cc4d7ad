"""docs/bundled_tubes.png and docs/bundled_tubes_frc.png: the EPFL Bundled Tubes HD movie.

    python docs/make_bundled_tubes.py

The 361 frames (64 x 64 px of 100 nm; the camera's baseline and gain are not
given with the set: the default camera, 100 ADU and 1 e-/ADU, is assumed)
go through `dsir localize`'s run path with the original DSIR weights (legacy
mode) and with the shipped model. Top row, labelled: the raw mean, the
original weights' sum image, the shipped model's sum image and its
localizations rendered as Gaussians of their own uncertainty (10 nm
pixels). Bottom row: the same, zoomed on the 1.6 x 1.6 um square where the
shipped model's sum image is brightest. Each panel is scaled between its
0.5th and 99.8th percentiles. It also measures the FRC resolution and NeNA
precision of both models' localizations, plots the FRC curves and writes
those figures, with the median reported uncertainty and the machine, to
benchmarks/results/bundled_tubes.md (the README quotes them).
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import numpy as np

from napari_dsir.figures import curves_figure, save_figure
from napari_dsir.io import open_stack
from napari_dsir.render import render
from napari_dsir.resolution import frc, nena
from napari_dsir.run import reconstruct

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
RESULTS = HERE.parent / "benchmarks" / "results" / "bundled_tubes.md"
ZOOM = 16  # camera px
RENDER_PX = 10.0  # nm


def _scaled(img):
    lo, hi = np.percentile(img, [0.5, 99.8])
    return np.clip((img - lo) / max(hi - lo, 1e-12), 0, 1)


def main() -> int:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    stack = open_stack(DATA / "bundled_tubes_hd" / "sequence")
    h, w = stack.shape[1:]
    raw_mean = stack.read().astype(np.float64).mean(0)
    runs = {
        "original DSIR weights": reconstruct(stack, f"legacy:{DATA / 'dsir_original' / 'autoencoder_model.pt'}",
                                             pixel_size=100.0, localize=True),
        "shipped model": reconstruct(stack, None, pixel_size=100.0, localize=True),
    }
    shipped = runs["shipped model"]
    rendered = render(shipped.localizations, RENDER_PX, mode="gauss", shape=(h * 10, w * 10))
    u = shipped.upsampling
    cam = shipped.sum_image.reshape(h, u, w, u).sum((1, 3))
    c = np.cumsum(np.cumsum(np.pad(cam, ((1, 0), (1, 0))), 0), 1)
    win = c[ZOOM:, ZOOM:] - c[:-ZOOM, ZOOM:] - c[ZOOM:, :-ZOOM] + c[:-ZOOM, :-ZOOM]
    y0, x0 = (int(v) for v in np.unravel_index(int(np.argmax(win)), win.shape))
    panels = [("raw mean (100 nm px)", raw_mean, 1),
              ("original DSIR weights: sum image", runs["original DSIR weights"].sum_image, u),
              ("shipped model: sum image", shipped.sum_image, u),
              (f"shipped model: localizations\nrendered ({RENDER_PX:g} nm px)", rendered, 10)]
    fig = Figure(figsize=(16, 8.8), dpi=100)
    FigureCanvasAgg(fig)
    for k, (title, img, f) in enumerate(panels):
        for row, (sl, label) in enumerate((((slice(None), slice(None)), "6.4 x 6.4 um"),
                                           ((slice(y0 * f, (y0 + ZOOM) * f), slice(x0 * f, (x0 + ZOOM) * f)),
                                            "zoom: 1.6 x 1.6 um"))):
            ax = fig.add_subplot(2, 4, 1 + k + 4 * row)
            ax.imshow(_scaled(img[sl]), cmap="gray" if k == 0 else "inferno", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(f"{title}\n{label}", fontsize=10)
            else:
                ax.set_xlabel(label, fontsize=10)
            if row == 0:
                ax.add_patch(_square(x0 * f, y0 * f, ZOOM * f))
    fig.tight_layout()
    save_figure(fig, HERE / "bundled_tubes.png")
    curves, lines = {}, []
    for name, res in runs.items():
        locs = res.localizations
        f = frc(locs, 5.0, strict=False)  # grid-locked positions may never fall to 1/7
        n = nena(locs)
        label = f"{f.resolution_nm:.1f} nm" if np.isfinite(f.resolution_nm) else "above 1/7 to 10 nm"
        curves[f"{name} ({label})"] = (f.frequencies, f.curve)
        unc = np.nanmedian(locs.uncertainty) if locs.uncertainty is not None else np.nan
        lines.append(f"| {name} | {len(locs):,} | {label} | {n.precision_nm:.1f} | {unc:.1f} |")
    x = next(iter(curves.values()))[0]
    series = {k: np.interp(x, fx, fy) for k, (fx, fy) in curves.items()}
    save_figure(curves_figure(x, series, "spatial frequency (1/nm)", "Fourier ring correlation",
                              "FRC of Bundled Tubes HD (odd/even frames, 5 nm pixels)", {"1/7": 1 / 7}),
                HERE / "bundled_tubes_frc.png")
    sys.path.insert(0, str(HERE.parent / "benchmarks"))
    from _machine import describe

    report = ["# Bundled Tubes HD (`python docs/make_bundled_tubes.py`)", "",
              f"Run on {date.today()} on {describe()}: the 361 frames through `dsir localize`'s run path "
              "(default camera assumed); FRC of odd/even frames at 5 nm pixels, 1/7 threshold; NeNA of next-frame "
              "nearest neighbours.", "",
              "| model | localizations | FRC resolution (nm) | NeNA precision (nm) | median uncertainty (nm) |",
              "|---|---|---|---|---|", *lines, "",
              f"Zoom of docs/bundled_tubes.png: camera px y {y0}-{y0 + ZOOM}, x {x0}-{x0 + ZOOM}."]
    RESULTS.write_text("\n".join(report) + "\n")
    print("\n".join(report))
    return 0


def _square(x, y, size):
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), size, size, fill=False, edgecolor="white", linewidth=1)


if __name__ == "__main__":
    raise SystemExit(main())

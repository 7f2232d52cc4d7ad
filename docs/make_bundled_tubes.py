"""docs/bundled_tubes.png: the EPFL Bundled Tubes HD movie reconstructed.

    python docs/make_bundled_tubes.py [--out docs/bundled_tubes.png]

Top row, left to right: the raw mean of the 361 frames (6.4 x 6.4 um), the
sum image of the original DSIR weights (legacy mode), the sum image of the
shipped model. Bottom row: the same three, zoomed on the 1.6 x 1.6 um square
(16 x 16 camera px) where the shipped model's sum image is brightest.
Each panel is scaled between its 0.5th and 99.8th percentiles; no other
processing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_dsir.figures import to_uint8, write_png
from napari_dsir.io import open_stack
from napari_dsir.model import load_model
from napari_dsir.run import reconstruct

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
PANEL, PAD, ZOOM = 320, 6, 16


def _panel(img: np.ndarray) -> np.ndarray:
    img = to_uint8(img, 0.5, 99.8)
    yi = np.arange(PANEL) * img.shape[0] // PANEL
    xi = np.arange(PANEL) * img.shape[1] // PANEL
    return img[np.ix_(yi, xi)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "bundled_tubes.png")
    args = ap.parse_args(argv)
    stack = open_stack(DATA / "bundled_tubes_hd" / "sequence")
    raw_mean = stack.read().astype(np.float64).mean(0)
    shipped = reconstruct(stack, load_model("default"), pixel_size=100.0).sum_image
    legacy = reconstruct(stack, load_model(f"legacy:{DATA / 'dsir_original' / 'autoencoder_model.pt'}"),
                         pixel_size=100.0).sum_image
    u = shipped.shape[0] // raw_mean.shape[0]
    # brightest ZOOM x ZOOM camera-px window of the shipped sum (on the camera grid)
    cam = shipped.reshape(raw_mean.shape[0], u, raw_mean.shape[1], u).sum((1, 3))
    c = np.cumsum(np.cumsum(np.pad(cam, ((1, 0), (1, 0))), 0), 1)
    win = c[ZOOM:, ZOOM:] - c[:-ZOOM, ZOOM:] - c[ZOOM:, :-ZOOM] + c[:-ZOOM, :-ZOOM]
    y0, x0 = np.unravel_index(int(np.argmax(win)), win.shape)
    full = [raw_mean, legacy, shipped]
    zoom = [raw_mean[y0 : y0 + ZOOM, x0 : x0 + ZOOM]] + [
        im[y0 * u : (y0 + ZOOM) * u, x0 * u : (x0 + ZOOM) * u] for im in (legacy, shipped)
    ]
    out = np.full((2 * PANEL + 3 * PAD, 3 * PANEL + 4 * PAD), 255, np.uint8)
    for r, row in enumerate((full, zoom)):
        for k, im in enumerate(row):
            y, x = PAD + r * (PANEL + PAD), PAD + k * (PANEL + PAD)
            out[y : y + PANEL, x : x + PANEL] = _panel(im)
    # outline the zoomed square on the full-field panels
    s = PANEL / raw_mean.shape[0]
    for k in range(3):
        oy, ox = PAD, PAD + k * (PANEL + PAD)
        ya, yb = oy + int(y0 * s), oy + int((y0 + ZOOM) * s) - 1
        xa, xb = ox + int(x0 * s), ox + int((x0 + ZOOM) * s) - 1
        out[ya, xa:xb + 1] = out[yb, xa:xb + 1] = 255
        out[ya:yb + 1, xa] = out[ya:yb + 1, xb] = 255
    write_png(args.out, out)
    print(f"wrote {args.out} (zoom: camera px y {y0}-{y0 + ZOOM}, x {x0}-{x0 + ZOOM})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

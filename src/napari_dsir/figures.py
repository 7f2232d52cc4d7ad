"""PNG figures without a plotting library: grey images, montages, loss curves.

Used by training (validation panels, loss curves) and by `dsir demo`.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np


def to_uint8(img: np.ndarray, lo_pct: float = 0.0, hi_pct: float = 99.9) -> np.ndarray:
    """Scale an image to 0-255 between two percentiles."""
    img = np.asarray(img, dtype=np.float64)
    finite = img[np.isfinite(img)]
    if finite.size == 0:
        return np.zeros(img.shape, np.uint8)
    lo, hi = np.percentile(finite, [lo_pct, hi_pct])
    if hi <= lo:
        hi = lo + 1.0
    out = np.clip((np.nan_to_num(img, nan=lo) - lo) / (hi - lo), 0, 1)
    return (out * 255).round().astype(np.uint8)


def png_bytes(img: np.ndarray) -> bytes:
    """Encode a (Y, X) uint8 grey or (Y, X, 3) uint8 RGB image as PNG."""
    img = np.ascontiguousarray(img, dtype=np.uint8)
    if img.ndim == 2:
        color = 0
    elif img.ndim == 3 and img.shape[2] == 3:
        color = 2
    else:
        raise ValueError(f"expected (Y, X) or (Y, X, 3), got {img.shape}")
    h, w = img.shape[:2]
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def montage(rows: list[list[np.ndarray]], size: int = 128, pad: int = 4) -> np.ndarray:
    """Grid of images, each scaled to 0-255 and resized (nearest) to size x size."""
    out = np.full((len(rows) * (size + pad) + pad, max(len(r) for r in rows) * (size + pad) + pad), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, im in enumerate(row):
            im = to_uint8(im)
            yi = (np.arange(size) * im.shape[0] // size).clip(0, im.shape[0] - 1)
            xi = (np.arange(size) * im.shape[1] // size).clip(0, im.shape[1] - 1)
            y0, x0 = pad + i * (size + pad), pad + j * (size + pad)
            out[y0 : y0 + size, x0 : x0 + size] = im[np.ix_(yi, xi)]
    return out


def loss_curves(series: dict[str, list[float]], width: int = 400, height: int = 200) -> np.ndarray:
    """RGB plot of loss curves (log scale), one colour per series:
    first blue, second orange, third green."""
    colours = [(31, 119, 180), (255, 127, 14), (44, 160, 44)]
    img = np.full((height, width, 3), 255, np.uint8)
    m = 10
    img[m:height - m, m] = img[height - m, m:width - m] = 0
    vals = [np.asarray(v, float) for v in series.values() if len(v)]
    allv = np.concatenate(vals) if vals else np.zeros(0)
    allv = allv[np.isfinite(allv) & (allv > 0)]
    if allv.size == 0:
        return img
    lo, hi = np.log10(allv.min()), np.log10(allv.max())
    hi = hi if hi > lo else lo + 1
    n = max(len(v) for v in vals)
    for k, v in enumerate(vals):
        c = colours[k % len(colours)]
        xs = m + 1 + (np.arange(len(v)) * (width - 2 * m - 2) / max(n - 1, 1))
        ys = height - m - 1 - (np.log10(np.clip(v, 10**lo, None)) - lo) / (hi - lo) * (height - 2 * m - 2)
        for a in range(len(v) - 1 if len(v) > 1 else 1):
            b = min(a + 1, len(v) - 1)
            steps = int(np.hypot(xs[b] - xs[a], ys[b] - ys[a])) + 2  # a solid line
            for t in np.linspace(0, 1, steps):
                x = int(round(xs[a] + t * (xs[b] - xs[a])))
                y = int(round(ys[a] + t * (ys[b] - ys[a])))
                img[max(y - 1, 0) : y + 1, max(x - 1, 0) : x + 1] = c
    return img


def write_png(path: str | Path, img: np.ndarray) -> Path:
    """Write a uint8 grey or RGB image (anything else is scaled) as PNG."""
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = to_uint8(img)
    Path(path).write_bytes(png_bytes(img))
    return Path(path)

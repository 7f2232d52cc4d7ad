"""Camera pixel defects: hot and dead pixels, found on the movie and repaired.

A hot pixel (dark current, a defective sCMOS pixel) reads high in every
frame while its neighbours do not: to the network it is a bright spot
narrower than any PSF, in the same place in every frame, and it reports
an emitter there in every frame (one-off check: 7 hot pixels in a 64x64 px
movie at 0.5 emitters/um^2 brought the precision from 0.97 to 0.36).
They are found once per movie, on the frames the run samples for its noise
level, from each pixel's lower decile over those frames (blinking emitters
are off part of the time and leave it at the background; a hot pixel is
high in every frame): a pixel is hot where it stands above all its 8
neighbours, more than `HOT_LEVEL` noise levels above their median, and the
second highest of its 4 nearest neighbours less than `HOT_SPREAD` of that (light
through the optics always spreads: a PSF of 0.5 px sigma gives its
neighbours about a fifth of its centre's). Every frame read then has those
pixels replaced by the median of their 8 neighbours in that frame,
for the network and for the fits alike.

A dead pixel reads the same value in every frame (a live one always has
some noise): a dead column, a masked part of the chip, or the padding of
frames registered or cropped to a shape. To the network a dead region's
edge is a step it never saw in training, and it reported emitters along
it (an 8 px border at 0 ADU on two sides of a 64x64 px movie at 1 /um^2: precision
0.38). Dead pixels are found on the same sample (`find_dead_pixels`) and
repaired as hot ones are, but in a dead region (half its neighbours dead or
more), which takes the median of the frame's live pixels with their spread;
the detections more than a pixel inside it are left out (`inside_dead`).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DSIRError
from .model import movie_scale

#: a hot pixel's lower decile over the sample (`LOW_QUANTILE`) stands this
#: many noise levels (`napari_dsir.model.movie_scale`) above the median of
#: its 8 neighbours'
HOT_LEVEL = 8.0
#: and the second highest of its 4 nearest neighbours' stands less than this
#: share of that excess above the same median
HOT_SPREAD = 0.1
#: the quantile over the sample frames that a hot pixel holds above its
#: neighbours (a blinking emitter does not: it is off part of the time)
LOW_QUANTILE = 0.1
#: searches, each after repairing what the one before found (pairs of hot pixels)
PASSES = 3
#: fewer sample frames than this: no search (the lower decile of a few
#: frames is too often one with an emitter)
MIN_FRAMES = 8


#: a pixel with the same value in all of at least this many sample frames
#: is dead (with fewer, a quiet pixel of a low-noise camera might be)
DEAD_MIN_FRAMES = 16
#: more of the frame than this dead: none is (a simulation without noise)
DEAD_MAX_SHARE = 0.5


def _neighbours(img: torch.Tensor) -> torch.Tensor:
    """(8, y, x): each pixel's 8 neighbours in a (y, x) image (mirrored at its
    edges: a pixel on the edge is not its own neighbour), the 4 nearest (up,
    left, right, down) first."""
    h, w = img.shape
    p = F.pad(img[None, None], (1, 1, 1, 1), mode="reflect")[0, 0]
    order = ((0, 1), (1, 0), (1, 2), (2, 1), (0, 0), (0, 2), (2, 0), (2, 2))
    return torch.stack([p[dy : dy + h, dx : dx + w] for dy, dx in order])


def find_hot_pixels(sample) -> np.ndarray:
    """(n, 2) y, x of the hot pixels of camera frames ``sample`` (frame, y,
    x; ADU): see the module's docstring. None found, or fewer than
    `MIN_FRAMES` frames: an empty array."""
    x = torch.as_tensor(np.asarray(sample, np.float32))
    if x.ndim != 3:
        raise DSIRError(f"need frames (frame, y, x), got shape {tuple(x.shape)}")
    if x.shape[0] < MIN_FRAMES or min(x.shape[1:]) < 3:
        return np.zeros((0, 2), np.int64)
    # each pixel's lower decile over the frames: emitters blink, and leave
    # it at the background where they are off at least a tenth of the time
    low = torch.kthvalue(x, max(1, int(round(LOW_QUANTILE * x.shape[0]))), dim=0).values
    level = HOT_LEVEL * movie_scale(x)
    hot = torch.zeros_like(low, dtype=torch.bool)
    for _ in range(PASSES):  # a pixel beside a hotter one is found once that one is repaired
        nb = _neighbours(low)
        base = nb.median(0).values
        excess = low - base
        # the second highest of the 4 nearest: one hot neighbour (a pair of
        # hot pixels) does not count
        spread = torch.kthvalue(nb[:4], 3, dim=0).values - base
        # above all its neighbours (on a spot's flank a neighbour is higher)
        new = (low > nb.amax(0)) & (excess > level) & (spread < HOT_SPREAD * excess) & ~hot
        if not new.any():
            break
        hot |= new
        low = torch.where(new, base, low)
    return torch.nonzero(hot).numpy().astype(np.int64)


def find_dead_pixels(sample) -> np.ndarray:
    """(n, 2) y, x of the dead pixels of camera frames ``sample`` (frame, y,
    x): the same value in every frame, below the sample's maximum (a pixel
    saturated in every frame, a bright bead's top, is light, not a dead
    pixel: `localize.bright_objects` takes it), or NaN in every frame (a
    float image's padding). None with fewer than
    `DEAD_MIN_FRAMES` frames or more than `DEAD_MAX_SHARE` of the frame dead."""
    x = torch.as_tensor(np.asarray(sample, np.float32))
    if x.ndim != 3:
        raise DSIRError(f"need frames (frame, y, x), got shape {tuple(x.shape)}")
    if x.shape[0] < DEAD_MIN_FRAMES:
        return np.zeros((0, 2), np.int64)
    hi, lo = x.amax(0), x.amin(0)  # NaN where a frame is
    finite = torch.isfinite(hi) & torch.isfinite(lo)
    dead = (hi == lo) & finite
    if bool(finite.any()):  # at the sample's maximum in every frame: saturated (a bead's clipped top), not dead
        dead &= hi < hi[finite].max()
    if not bool(finite.all()):  # NaN (or infinite) in every frame: padding of a float image
        dead |= ~torch.isfinite(x).any(0)
    if float(dead.float().mean()) > DEAD_MAX_SHARE:
        return np.zeros((0, 2), np.int64)
    return torch.nonzero(dead).numpy().astype(np.int64)


def inside_dead(dead: np.ndarray, shape: tuple[int, int], y_px, x_px) -> np.ndarray:
    """Which positions (camera px, origin at the top-left corner of pixel
    (0, 0)) lie on a ``dead`` pixel ((n, 2) y, x) with no live pixel among
    its 8 neighbours: inside a dead region, not on its edge (nor on a dead
    column, whose emitters light its neighbours)."""
    from scipy import ndimage

    y, x = np.asarray(y_px, float), np.asarray(x_px, float)
    out = np.zeros(y.shape, bool)
    if not len(dead) or not len(y):
        return out
    mask = np.zeros(shape, bool)
    mask[dead[:, 0], dead[:, 1]] = True
    core = ndimage.binary_erosion(mask, np.ones((3, 3), bool), border_value=1)
    ok = np.isfinite(y) & np.isfinite(x)
    iy = np.clip(np.floor(np.where(ok, y, 0)).astype(np.int64), 0, shape[0] - 1)
    ix = np.clip(np.floor(np.where(ok, x, 0)).astype(np.int64), 0, shape[1] - 1)
    return ok & core[iy, ix]


def repair(frames: np.ndarray, hot: np.ndarray) -> np.ndarray:
    """``frames`` (frame, y, x) with the ``hot`` pixels ((n, 2) y, x; hot or
    dead) set to the median of their neighbours that are not in ``hot``
    (where all 8 are, the median of the frame's other pixels) in each frame
    (a copy; the input is left alone)."""
    if len(hot) == 0:
        return frames
    out = np.array(frames, dtype=np.result_type(frames.dtype, np.float32), copy=True)
    squeeze = out.ndim == 2
    if squeeze:
        out = out[None]
    y, x = hot[:, 0], hot[:, 1]
    h, w = out.shape[1:]
    offsets = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))
    nb = np.stack([out[:, np.clip(y + dy, 0, h - 1), np.clip(x + dx, 0, w - 1)] for dy, dx in offsets])
    # a hot neighbour (two hot pixels side by side) does not count
    hot_map = np.zeros((h, w), bool)
    hot_map[y, x] = True
    own = np.stack([hot_map[np.clip(y + dy, 0, h - 1), np.clip(x + dx, 0, w - 1)] for dy, dx in offsets])
    nb = np.where(own[:, None, :], np.nan, nb)
    # a hot or dead pixel with good neighbours (alone, a pair, a dead column): their median; else (in a
    # dead region, half its neighbours or more in it) the frame's good pixels', with their spread
    alone = own.sum(0) < 4
    good = ~hot_map.reshape(-1)
    good = good if good.any() else ~good
    live = out.reshape(len(out), -1)[:, good]
    level = np.median(live, axis=1)
    fill = np.repeat(level[:, None], len(y), axis=1)
    if not alone.all():  # in a dead region: the level with the live pixels' spread, as a background has
        # (flat, its edge with the noisy frame was a line of false detections); drawn from each frame's
        # own content, so that a frame repairs the same however it is read
        spread = 1.4826 * np.median(np.abs(live - level[:, None]), axis=1)
        inner = np.flatnonzero(~alone)
        for i in range(len(out)):
            rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(out[i]).tobytes()))
            fill[i, inner] += spread[i] * rng.standard_normal(len(inner))
    if alone.any():
        fill[:, alone] = np.nanmedian(nb[:, :, alone], axis=0)
    out[:, y, x] = fill
    return out[0] if squeeze else out

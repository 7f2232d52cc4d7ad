"""Camera pixel defects: hot pixels, found on the movie and repaired.

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
"""

from __future__ import annotations

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


def repair(frames: np.ndarray, hot: np.ndarray) -> np.ndarray:
    """``frames`` (frame, y, x) with the ``hot`` pixels ((n, 2) y, x) set to
    the median of their neighbours that are not hot (the frame's median
    where all 8 are) in each frame (a copy; the input is left alone)."""
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
    alone = (~own).any(0)  # a hot pixel with a good neighbour: their median; else the frame's
    fill = np.repeat(np.median(out.reshape(len(out), -1), axis=1)[:, None], len(y), axis=1)
    if alone.any():
        fill[:, alone] = np.nanmedian(nb[:, :, alone], axis=0)
    out[:, y, x] = fill
    return out[0] if squeeze else out

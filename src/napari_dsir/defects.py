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
neighbours, more than `HOT_LEVEL` noise levels above their median (and
`HOT_OVER_SCATTER` times their scatter over the frames: on bright
structure), and the second highest of its 4 nearest neighbours less
than `HOT_SPREAD` of that (light through the optics always spreads: a
PSF of 0.5 px sigma gives its neighbours about a fifth of its centre's). Every frame read then has those
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

Stripes: an sCMOS reads each column (and on some chips each row) through
its own amplifier, whose offset the camera corrects, or not. A column that
reads a few tens of ADU above its neighbours in every frame is, to the
network, a line of light it never saw in training, and it reported emitters
all along it (a column pattern of 15 ADU sd at 1 /um^2: precision 0.73,
`benchmarks/results/frame_artefacts.md`). `find_stripes` measures each
column's offset over its neighbours on the same sample, from the pixels'
lower decile (the background, where blinking emitters are off), as the
median over the column: the columns whose offset stands out of the
estimate's own noise (measured between two halves of the sample, where a
fixed pattern repeats and noise does not) and reaches the background's
noise, and read it along their whole length (over each quarter of it: a
filament lit in every frame raises part of a line, and its halves agree as
a fixed pattern's do), are subtracted from every frame
(`repair`), then the rows' likewise;
`PASSES` times, each measuring the lines against neighbours whose offsets
the pass before took out (once a pattern is found along an axis, its
lines need only stand out of the estimate's noise).
"""

from __future__ import annotations

import zlib
from typing import NamedTuple

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
#: and stands more than this many times its neighbours' scatter over the
#: frames (the median of their median less lower decile): on bright
#: structure, where emitters keep the neighbours lit and blinking, the lower
#: deciles of a few frames differ by far more than the background's noise
#: (one-off check: 16-20 frames of the shipped sample's filaments, excess
#: 72-86 ADU, 8.6-10x the noise level but 0.6 of the scatter, 123-189 ADU);
#: on a dark background the scatter is about 1.3 noise levels and
#: `HOT_LEVEL` is the stricter test
HOT_OVER_SCATTER = 2.0
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

#: a column's (row's) offset over its neighbours is subtracted where it
#: stands this many times the estimate's noise from 0
STRIPE_SIGMAS = 5.0
#: and this many times the background's noise (from each pixel's 5th and
#: 10th percentiles over the sample: emitters light the upper ones, and
#: raise this estimate in crowded movies): a pattern of half of it did no harm
#: (`benchmarks/results/frame_artefacts.md`), and dense structure shifts a
#: line's lower decile by a fraction of it
STRIPE_LEVEL = 1.0
#: the columns (rows) on each side that a column's offset is measured against
STRIPE_REACH = 3
#: fewer sample frames than this: no search (the two halves' lower deciles)
STRIPE_MIN_FRAMES = 16
#: a line's offset is measured over this many runs of it too: the same in
#: each, or it is structure (a filament along it), not the camera's
STRIPE_SEGMENTS = 4
#: each run's offset within this many of its noise levels of the line's (or half of it)
STRIPE_SEGMENT_SIGMAS = 3.0
#: a line's offset is known to no better than this times the background's
#: noise over the root of (frames x its length): a lower decile over N
#: frames varies 1.7 / sqrt(N) of the noise, its differences' median over
#: a line of H px 1.4 / sqrt(H) of that (integer data of low noise make
#: the estimate's own measure 0, which stopped the search)
STRIPE_NOISE_FLOOR = 2.0


def _neighbours(img: torch.Tensor) -> torch.Tensor:
    """(8, y, x): each pixel's 8 neighbours in a (y, x) image (mirrored at its
    edges: a pixel on the edge is not its own neighbour), the 4 nearest (up,
    left, right, down) first."""
    h, w = img.shape
    p = F.pad(img[None, None], (1, 1, 1, 1), mode="reflect")[0, 0]
    order = ((0, 1), (1, 0), (1, 2), (2, 1), (0, 0), (0, 2), (2, 0), (2, 2))
    return torch.stack([p[dy : dy + h, dx : dx + w] for dy, dx in order])


def _frames(sample) -> torch.Tensor:
    """The sample as a float32 (frame, y, x) tensor; another shape is an error."""
    x = torch.as_tensor(np.asarray(sample, np.float32))
    if x.ndim != 3:
        raise DSIRError(f"need frames (frame, y, x), got shape {tuple(x.shape)}")
    return x


def _quantiles(x: torch.Tensor, qs) -> list[torch.Tensor]:
    """Each pixel's ``qs`` quantiles over the frames of ``x`` (frame, y, x):
    its k-th smallest values, k = round(q * frames) (at least 1), from one
    partial sort (numpy's partition: no full sort, 2x `torch.kthvalue` on
    large frames)."""
    ks = [max(1, int(round(q * x.shape[0]))) - 1 for q in qs]
    part = np.partition(x.numpy(), sorted(set(ks)), axis=0)
    return [torch.from_numpy(np.ascontiguousarray(part[k])) for k in ks]


def find_hot_pixels(sample) -> np.ndarray:
    """(n, 2) y, x of the hot pixels of camera frames ``sample`` (frame, y,
    x; ADU): see the module's docstring. None found, or fewer than
    `MIN_FRAMES` frames: an empty array."""
    x = _frames(sample)
    if x.shape[0] < MIN_FRAMES or min(x.shape[1:]) < 3:
        return np.zeros((0, 2), np.int64)
    # each pixel's lower decile over the frames: emitters blink, and leave
    # it at the background where they are off at least a tenth of the time
    low, mid = _quantiles(x, (LOW_QUANTILE, 0.5))
    level = torch.clamp(HOT_OVER_SCATTER * _neighbours(mid - low).median(0).values, min=HOT_LEVEL * movie_scale(x))
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
    x = _frames(sample)
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


def _line_diffs(low: torch.Tensor) -> torch.Tensor:
    """Each pixel of a (y, x) image less the median of the `STRIPE_REACH`
    columns on each side of it (mirrored at the frame's edges); NaN pixels
    (dead) do not count."""
    k = STRIPE_REACH
    w = low.shape[1]
    pad = F.pad(low[None, None], (k, k, 0, 0), mode="reflect")[0, 0]
    nbrs = torch.stack([pad[:, k + d : k + d + w] for d in range(-k, k + 1) if d])
    return low - nbrs.nanmedian(0).values


def _line_offsets(diff: torch.Tensor) -> torch.Tensor:
    """Each column's offset (W,) over its neighbouring columns: the median
    over the rows of its `_line_diffs`; a column with no live pixel has 0."""
    return torch.nan_to_num(diff.nanmedian(0).values, nan=0.0)


def _uniform(diff: torch.Tensor, offsets: torch.Tensor, noise: float) -> torch.Tensor:
    """Which columns of a (y, x) image (its `_line_diffs`) read their
    ``offsets`` along their whole length, as an amplifier's offset does:
    over every quarter of the rows (`STRIPE_SEGMENTS`) an offset of the same
    sign and at least half as large, or over every quarter one within
    `STRIPE_SEGMENT_SIGMAS` of a quarter's noise (``noise``, that of the
    whole column's estimate, times the root of the quarters). Structure (a
    filament lit in every frame) raises a line in part of its length; where
    structure crosses a true stripe, it raises a quarter further or leaves it
    as it was."""
    n = STRIPE_SEGMENTS if diff.shape[0] >= 4 * STRIPE_SEGMENTS else 2
    parts = torch.stack([part.nanmedian(0).values for part in torch.tensor_split(diff, n, 0)])
    dead = parts.isnan()  # quarters of dead pixels only say nothing; two live ones at least must agree
    same = (parts * torch.sign(offsets) >= offsets.abs() / 2) | dead
    near = ((parts - offsets).abs() <= STRIPE_SEGMENT_SIGMAS * noise * n**0.5) | dead
    return (same.all(0) | near.all(0)) & ((~dead).sum(0) >= 2)


class Stripes(NamedTuple):
    """Offsets (ADU) of the camera's ``columns`` (x,) and ``rows`` (y,) to
    subtract from every frame, 0 where a line reads as its neighbours."""

    columns: np.ndarray
    rows: np.ndarray

    @property
    def pattern(self) -> np.ndarray:
        """The offsets as an image (y, x; ADU)."""
        return (self.rows[:, None] + self.columns[None, :]).astype(np.float32)

    def counts(self) -> dict:
        """The columns and rows with an offset, and the largest offset (ADU)."""
        return {"columns": int(np.count_nonzero(self.columns)), "rows": int(np.count_nonzero(self.rows)),
                "max_adu": round(float(np.abs(self.pattern).max()), 1)}


def find_stripes(sample, dead: np.ndarray | None = None) -> Stripes | None:
    """The fixed offsets of the columns and rows of camera frames ``sample``
    (frame, y, x; ADU) to subtract from every frame: see the module's
    docstring; ``dead`` pixels ((n, 2) y, x; `find_dead_pixels`) do not
    count. None where no column or row stands out, with fewer than
    `STRIPE_MIN_FRAMES` frames, or frames too small to compare a line with
    its neighbours."""
    x = _frames(sample)
    if x.shape[0] < STRIPE_MIN_FRAMES or min(x.shape[1:]) < 2 * STRIPE_REACH + 2:
        return None

    # each pixel's lower decile over the frames (the background), over each half of them, and 5th percentile
    low5, low = _quantiles(x, (0.05, LOW_QUANTILE))
    lows = [low] + [_quantiles(x[i::2], (LOW_QUANTILE,))[0] for i in (0, 1)]
    # the background's noise: a normal's 5th and 10th percentiles lie 0.363 sd apart
    level = STRIPE_LEVEL * float((low - low5).median()) / 0.363
    if dead is not None and len(dead):  # a dead region's fill is not the background
        for im in lows:
            im[dead[:, 0], dead[:, 1]] = float("nan")
    pattern = torch.zeros(x.shape[1:])
    lines = {1: torch.zeros(x.shape[2]), 0: torch.zeros(x.shape[1])}  # columns, rows
    found = {1: False, 0: False}  # a pattern along the axis: its lines need not reach the background's noise
    for _ in range(PASSES):  # each line against neighbours whose own offsets the pass before took out
        before = found.copy(), pattern.clone()
        for axis in (1, 0):  # columns, then the rows of what they leave
            diffs = [_line_diffs(im - pattern if axis == 1 else (im - pattern).T) for im in lows]
            off = [_line_offsets(d) for d in diffs]
            diff = off[1] - off[2]  # a fixed pattern cancels, the estimate's noise does not
            noise = 1.4826 * float((diff - diff.median()).abs().median()) / 2.0  # that of the whole sample's
            # at least `STRIPE_NOISE_FLOOR`'s: integer data of low noise make the halves' lower deciles, and
            # most of their differences, equal (noise 0: no search before)
            noise = max(noise, STRIPE_NOISE_FLOOR * level / STRIPE_LEVEL / (x.shape[0] * x.shape[2 - axis]) ** 0.5)
            if not noise > 0:  # no noise (a simulation): nothing to tell a pattern from
                continue
            big = off[0].abs() > max(STRIPE_SIGMAS * noise, 0.0 if found[axis] else level)
            if bool(big.any()):  # and the same along the whole line
                big &= _uniform(diffs[0], off[0], noise)
            if not bool(big.any()):
                continue
            found[axis] = True
            line = torch.where(big, off[0], torch.zeros_like(off[0]))
            lines[axis] += line
            pattern += line[None, :] if axis == 1 else line[:, None]
        if found == before[0] and torch.equal(pattern, before[1]):  # nothing new: the next pass would find the same
            break
    if not bool((pattern != 0).any()):
        return None
    return Stripes(lines[1].numpy(), lines[0].numpy())


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


def repair(frames: np.ndarray, hot: np.ndarray, pattern: np.ndarray | None = None) -> np.ndarray:
    """``frames`` (frame, y, x) less the fixed ``pattern`` (y, x; ADU,
    `find_stripes`; None: none), with the ``hot`` pixels ((n, 2) y, x; hot
    or dead) set to the median of their neighbours that are not in ``hot``
    (where all 8 are, the median of the frame's other pixels) in each frame
    (a copy; the input is left alone)."""
    if len(hot) == 0 and pattern is None:
        return frames
    out = np.array(frames, dtype=np.result_type(frames.dtype, np.float32), copy=True)
    squeeze = out.ndim == 2
    if squeeze:
        out = out[None]
    if pattern is not None:
        out -= pattern
    if len(hot) == 0:
        return out[0] if squeeze else out
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
    finite = np.isfinite(live)  # a NaN or infinite pixel in some frames: left out here, replaced later
    median = np.median if finite.all() else np.nanmedian
    if median is np.nanmedian:
        live = np.where(finite, live, np.nan)
    level = median(live, axis=1)
    fill = np.repeat(level[:, None], len(y), axis=1)
    if not alone.all():  # in a dead region: the level with the live pixels' spread, as a background has
        # (flat, its edge with the noisy frame was a line of false detections); drawn from each frame's
        # own content, so that a frame repairs the same however it is read
        spread = 1.4826 * median(np.abs(live - level[:, None]), axis=1)
        inner = np.flatnonzero(~alone)
        for i in range(len(out)):
            rng = np.random.default_rng(zlib.crc32(np.ascontiguousarray(out[i]).tobytes()))
            fill[i, inner] += spread[i] * rng.standard_normal(len(inner))
    if alone.any():
        fill[:, alone] = np.nanmedian(nb[:, :, alone], axis=0)
    out[:, y, x] = fill
    return out[0] if squeeze else out

"""Resolution and precision of a localization table: FRC and NeNA.

- FRC, Fourier ring correlation (Nieuwenhuizen et al. 2013, Nat Methods 10:557):
  the localizations are split into two halves, each rendered on the same grid;
  the correlation of their Fourier transforms over rings of spatial frequency
  q (1/nm) falls from 1 to 0, and the resolution is 1/q where the smoothed
  curve first drops below 1/7.
- NeNA, nearest-neighbour based analysis (Endesfelder et al. 2014, Histochem
  Cell Biol 141:629): a fluorophore ON in consecutive frames is localized twice;
  the distance between the two is distributed as
  p(d) = d / (2 s^2) exp(-d^2 / (4 s^2)), whose s is the localization precision (nm).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import curve_fit
from scipy.signal.windows import tukey
from scipy.spatial import cKDTree

from .errors import DSIRError, FRCError
from .io import check_pixel_size
from .locs import Localizations
from .render import render, render_extent

#: the FRC threshold of Nieuwenhuizen et al.
FRC_THRESHOLD = 1.0 / 7.0


@dataclass
class FRCResult:
    """An FRC curve: ``curve[i]`` (smoothed) at spatial frequency ``frequencies[i]``
    (1/nm); ``raw`` is the unsmoothed ring correlation. ``resolution_nm`` is
    1/(first frequency where ``curve`` < ``threshold``), NaN when the curve
    does not cross it (see ``note``)."""

    resolution_nm: float
    frequencies: np.ndarray
    curve: np.ndarray
    raw: np.ndarray
    threshold: float
    pixel_size_nm: float
    note: str = ""


def frc_images(
    img1: np.ndarray,
    img2: np.ndarray,
    pixel_size_nm: float,
    *,
    window: float = 0.25,
    smooth: float = 0.01,
    threshold: float = FRC_THRESHOLD,
) -> FRCResult:
    """The FRC of two images (y, x) of the same area, ``pixel_size_nm`` per pixel.

    Each image is multiplied by a Tukey window (taper fraction ``window``) and
    padded to a square. The curve is the correlation over a band of rings:
    its numerator and both powers summed per ring, each smoothed with a
    Gaussian of ``smooth`` x (number of rings) rings, so that the few pixels
    of the lowest rings weigh little (``raw``: ring by ring).
    """
    a = np.asarray(img1, dtype=np.float64)
    b = np.asarray(img2, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise DSIRError(f"FRC needs two 2-D images of the same shape, got {a.shape} and {b.shape}")
    if min(a.shape) < 8:
        raise DSIRError(f"FRC needs images of at least 8 x 8 pixels, got {a.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise DSIRError("FRC: the images hold non-finite values")
    pixel_size_nm = check_pixel_size(pixel_size_nm, "pixel_size_nm")
    win = np.outer(tukey(a.shape[0], window), tukey(a.shape[1], window))
    a = (a - a.mean()) * win  # the mean (DC) carries no resolution and leaks through the window
    b = (b - b.mean()) * win
    n = max(a.shape)
    fa = np.fft.rfft2(a, s=(n, n))
    fb = np.fft.rfft2(b, s=(n, n))
    ky = np.fft.fftfreq(n) * n
    kx = np.arange(fa.shape[1])
    ring = np.rint(np.hypot(ky[:, None], kx[None, :])).astype(np.int64)
    # rfft holds half of the plane: count the columns 1 .. n/2-1 twice (their mirror images)
    weight = np.full(fa.shape[1], 2.0)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    weight = np.broadcast_to(weight, fa.shape)
    nr = n // 2 + 1
    keep = ring < nr
    r, w = ring[keep], weight[keep]
    num = np.bincount(r, weights=w * (fa * np.conj(fb)).real[keep], minlength=nr)
    paa = np.bincount(r, weights=w * (np.abs(fa) ** 2)[keep], minlength=nr)
    pbb = np.bincount(r, weights=w * (np.abs(fb) ** 2)[keep], minlength=nr)
    denom = np.sqrt(paa * pbb)
    raw = np.divide(num, denom, out=np.zeros(nr), where=denom > 0)
    freqs = np.arange(nr) / (n * pixel_size_nm)
    s = max(1.0, smooth * nr)
    sn, sa, sb = (gaussian_filter1d(v[1:], s, mode="nearest") for v in (num, paa, pbb))
    band = np.sqrt(sa * sb)
    curve = np.concatenate([[1.0], np.divide(sn, band, out=np.zeros_like(sn), where=band > 0)])
    res, note, reason = _crossing(freqs, curve, threshold)
    if reason == FINER_THAN_2_PX:
        note += f"; {SMALLER_PIXELS}"
    return FRCResult(res, freqs, curve, raw, threshold, float(pixel_size_nm), note)


#: a crossing before this ring (a resolution coarser than field / 8) is not
#: a resolution (uniform random points, whose halves are independent: with
#: the curve smoothed ring by ring they crossed at rings 4-19, about 1-3 um,
#: in 21 of 100 seeds; smoothed as a band, 1 of 100 at ring 4)
MIN_CROSSING_RING = 8


#: `FRCError.reason`: odd and even frames split the table unevenly (few frames)
UNEVEN_HALVES = "uneven halves"
#: `FRCError.reason`: the curve stays above the threshold (positions finer than 2 px)
FINER_THAN_2_PX = "finer than 2 px"


def _crossing(freqs, curve, threshold) -> tuple[float, str, str | None]:
    """(resolution nm or NaN, why NaN, its `FRCError` reason)."""
    below = np.flatnonzero(curve[1:] < threshold) + 1
    if len(below) == 0:
        return math.nan, (
            f"the FRC stays above {threshold:.3g} up to the Nyquist frequency: the resolution is finer "
            "than 2 pixels"
        ), FINER_THAN_2_PX
    i = int(below[0])
    if i < MIN_CROSSING_RING:
        return math.nan, (
            f"the FRC is below the threshold within its first {MIN_CROSSING_RING} rings (coarser than an "
            f"eighth of the field): the two halves do not correlate beyond the field's outline (too few "
            "localizations, or no structure)"
        ), None
    c0, c1 = curve[i - 1], curve[i]
    q = freqs[i - 1] + (freqs[i] - freqs[i - 1]) * (c0 - threshold) / (c0 - c1)
    return 1.0 / q, "", None


#: the advice of an FRC finer than 2 pixels
SMALLER_PIXELS = "use a smaller pixel size"


def split_halves(locs: Localizations, split: str = "odd_even", *, seed: int = 0, block_frames: int = 100):
    """Two halves of a table for FRC: ``"odd_even"``, the even and the odd
    frames (single frames, alternately: always even halves, but an emitter
    ON in consecutive frames lands in both); ``"blocks"``, blocks of
    ``block_frames`` frames assigned at random (Nieuwenhuizen et al. 2013:
    an emitter's repeated localizations stay in one half; needs a movie of
    many blocks); ``"random"``, localizations at random (``seed``)."""
    if split == "odd_even":
        first = locs.frame % 2 == 0
    elif split == "random":
        first = np.random.default_rng(seed).random(len(locs)) < 0.5
    elif split == "blocks":
        if int(block_frames) < 1:
            raise DSIRError(f"block_frames must be >= 1, got {block_frames}")
        block = locs.frame // int(block_frames)
        nb = int(block.max()) + 1 if len(locs) else 0
        if nb < 2:
            raise FRCError(f"FRC: split 'blocks': the localizations lie in a single block of {block_frames} frames",
                           None, "use shorter blocks (dsir resolution --block-frames N) or --split odd_even")
        coin = np.random.default_rng(seed).permutation(nb) % 2 == 0
        first = coin[block]
    else:
        raise DSIRError(f"split: expected 'odd_even', 'random' or 'blocks', got {split!r}")
    return locs.select(first), locs.select(~first)


def frc(
    locs: Localizations,
    pixel_size_nm: float = 5.0,
    *,
    split: str = "odd_even",
    seed: int = 0,
    block_frames: int = 100,
    sigma_nm: float | None = None,
    extent: tuple[float, float, float, float] | None = None,
    min_locs: int = 100,
    strict: bool = True,
    **kwargs,
) -> FRCResult:
    """The FRC resolution (nm) of a table, from two halves (see `split_halves`)
    rendered as histograms (or Gaussians of ``sigma_nm``) of ``pixel_size_nm``
    on the same grid (``extent`` ``(y0, x0, y1, x1)`` nm, default: the
    localizations' bounding box). Other keywords go to `frc_images`.

    Raises DSIRError for too few localizations, or when the curve does not
    cross the threshold (the reason is in the message; with ``strict``
    False, that curve is returned with a NaN resolution and the reason in
    its ``note``).
    """
    if len(locs) < 2 * min_locs:
        raise DSIRError(f"FRC needs at least {2 * min_locs} localizations, got {len(locs)}")
    h1, h2 = split_halves(locs, split, seed=seed, block_frames=block_frames)
    if min(len(h1), len(h2)) < min_locs:
        text = f"FRC: a half has only {min(len(h1), len(h2))} localizations (need {min_locs})"
        if split == "blocks":
            raise FRCError(text + f": blocks of {block_frames} frames split them unevenly", None,
                           "use shorter blocks (dsir resolution --block-frames N) or --split odd_even")
        if split != "odd_even":
            raise FRCError(text)
        k = len(np.unique(locs.frame))
        raise FRCError(f"{text}: the localizations lie in {k} frame{'s' if k != 1 else ''}, and odd and even "
                       "frames split them unevenly", UNEVEN_HALVES, "split them at random (dsir resolution --split "
                       "random)")
    if extent is None:
        ok = np.isfinite(locs.x) & np.isfinite(locs.y)
        if not ok.any():
            raise DSIRError("FRC: no finite positions")
        extent = (locs.y[ok].min(), locs.x[ok].min(), locs.y[ok].max() + 1e-6, locs.x[ok].max() + 1e-6)
    (y0, x0), (ny, nx) = render_extent(locs, pixel_size_nm, extent=extent)
    if ny * nx > 1 << 26:
        raise DSIRError(f"FRC: a {ny} x {nx} px image is too large; use a larger pixel size or an extent")
    mode = "hist" if sigma_nm is None else "gauss"
    i1 = render(h1, pixel_size_nm, mode=mode, sigma_nm=sigma_nm, extent=extent)
    i2 = render(h2, pixel_size_nm, mode=mode, sigma_nm=sigma_nm, extent=extent)
    res = frc_images(i1, i2, pixel_size_nm, **kwargs)
    if strict and not math.isfinite(res.resolution_nm):
        _, text, reason = _crossing(res.frequencies, res.curve, res.threshold)
        raise FRCError(f"FRC: {text}", reason, SMALLER_PIXELS if reason == FINER_THAN_2_PX else "")
    return res


#: the widest FRC image `frc_of_field` renders (px a side): 4096 x 4096 at 5 nm
#: is a 20 um field, coarser pixels beyond (a 51 um camera chip: 12.5 nm)
FRC_MAX_SIDE = 4096


def frc_of_field(locs: Localizations, max_side: int = FRC_MAX_SIDE) -> tuple[FRCResult, list[str]]:
    """The FRC of a whole table with no settings to choose (DSIR Render &
    Drift): over the field that holds all but the outermost 0.1 % of the
    positions on each side (strays left out), at 5 nm pixels, or coarser
    where that field is wider than ``max_side`` of them; halves of the odd
    and the even frames (`split_halves` "odd_even"), or at random where those
    split it unevenly (few frames); half the pixel size once where the curve stays above the
    threshold (positions finer than 2 px). Returns (result, notes on what
    was chosen); `DSIRError` as `frc`, its message with the notes and
    without command-line advice."""
    ok = np.isfinite(locs.x) & np.isfinite(locs.y)
    if not ok.any():
        raise DSIRError("FRC: no finite positions")
    (y0, y1), (x0, x1) = (np.percentile(v[ok], [0.1, 99.9]) for v in (locs.y, locs.x))
    extent = (float(y0), float(x0), float(y1) + 1e-6, float(x1) + 1e-6)
    field = max(y1 - y0, x1 - x0)
    pixel = max(5.0, math.ceil(2.0 * field / max_side) / 2.0)
    notes = [f"{pixel:g} nm pixels (the field is {field / 1000:.1f} um wide)"] if pixel > 5.0 else []
    split = "odd_even"

    def said(e: DSIRError) -> DSIRError:
        text = e.text if isinstance(e, FRCError) else str(e)  # no command-line advice
        if isinstance(e, FRCError) and e.reason == FINER_THAN_2_PX:
            text += f" at {pixel:g} nm pixels"
        return DSIRError(text + (f" ({'; '.join(notes)})" if notes else ""))

    try:
        return frc(locs, pixel, split=split, extent=extent), notes
    except DSIRError as e:
        reason = e.reason if isinstance(e, FRCError) else None
        if reason == UNEVEN_HALVES:
            split = "random"
            notes.append("halves at random (odd and even frames split the localizations unevenly)")
        elif reason == FINER_THAN_2_PX and field / (pixel / 2.0) <= max_side:
            pixel /= 2.0
            notes.append(f"{pixel:g} nm pixels (the curve stayed above the threshold at {2 * pixel:g} nm)")
        else:
            raise said(e) from e
    try:
        return frc(locs, pixel, split=split, extent=extent), notes
    except DSIRError as e:
        raise said(e) from e


# ----------------------------------------------------------------------------- NeNA


@dataclass
class NeNAResult:
    """NeNA: ``precision_nm`` (s of the model), the histogram of next-frame
    nearest-neighbour distances (``bin_centers`` nm, ``histogram`` as a density
    1/nm) and the fitted model at the bin centres (``fit``); ``params`` holds the
    fitted weights (``a`` of the NeNA term, ``c`` of the linear term)."""

    precision_nm: float
    bin_centers: np.ndarray
    histogram: np.ndarray
    fit: np.ndarray
    n_pairs: int
    params: dict


def nena_pdf(d, s, a=1.0, c=0.0):
    """The NeNA model: a (d / (2 s^2)) exp(-d^2 / (4 s^2)) + c d (d, s in nm)."""
    d = np.asarray(d, dtype=np.float64)
    return a * d / (2 * s * s) * np.exp(-d * d / (4 * s * s)) + c * d


def nearest_next_frame(locs: Localizations, radius_nm: float = 150.0) -> np.ndarray:
    """For each localization, the distance (nm) to the nearest localization of
    the next frame, for those that have one within ``radius_nm``."""
    if len(locs) == 0:
        return np.zeros(0)
    sep = 10.0 * radius_nm  # frames far apart in a third axis: a neighbour is always in the same frame
    f = (locs.frame - locs.frame.min()).astype(np.float64) * sep
    tree = cKDTree(np.column_stack([locs.x, locs.y, f]))
    d, _ = tree.query(np.column_stack([locs.x, locs.y, f + sep]), k=1, distance_upper_bound=radius_nm)
    return d[np.isfinite(d)]


def nena(
    locs: Localizations,
    *,
    radius_nm: float = 150.0,
    bin_nm: float = 1.0,
    background: bool = True,
    min_pairs: int = 100,
) -> NeNAResult:
    """NeNA localization precision (nm, per axis) of a table.

    Pairs each localization with its nearest neighbour in the next frame within
    ``radius_nm``, histograms the distances in ``bin_nm`` bins and fits
    `nena_pdf` (with its linear term for random neighbours when ``background``)
    by least squares.
    """
    if not (radius_nm > 0 and bin_nm > 0 and bin_nm < radius_nm):
        raise DSIRError(f"NeNA: need 0 < bin_nm < radius_nm, got {bin_nm}, {radius_nm}")
    if len(locs) == 0 or len(np.unique(locs.frame)) < 2:
        raise DSIRError("NeNA needs localizations in at least two frames")
    ok = np.isfinite(locs.x) & np.isfinite(locs.y)
    d = nearest_next_frame(locs.select(ok), radius_nm)
    if len(d) < min_pairs:
        raise DSIRError(
            f"NeNA: only {len(d)} localizations have a neighbour in the next frame within {radius_nm:g} nm "
            f"(need {min_pairs}); is the table long enough, are emitters ON in consecutive frames?"
        )
    edges = np.arange(0.0, radius_nm + bin_nm / 2, bin_nm)
    hist, edges = np.histogram(d, bins=edges)
    centres = 0.5 * (edges[1:] + edges[:-1])
    density = hist / (len(d) * bin_nm)
    s0 = max(float(np.median(d)) / (2.0 * math.sqrt(math.log(2.0))), bin_nm)
    try:
        if background:
            popt, _ = curve_fit(
                nena_pdf, centres, density, p0=(s0, 0.9, 0.0),
                bounds=([bin_nm / 4, 0.0, 0.0], [radius_nm, 2.0, np.inf]),
            )
        else:
            popt, _ = curve_fit(
                lambda x, s, a: nena_pdf(x, s, a), centres, density, p0=(s0, 1.0),
                bounds=([bin_nm / 4, 0.0], [radius_nm, 2.0]),
            )
            popt = (*popt, 0.0)
    except (RuntimeError, ValueError) as e:
        raise DSIRError(f"NeNA: the fit of the distance histogram failed ({e})") from None
    s, a, c = (float(v) for v in popt)
    if not (s < radius_nm / 3) or a <= 0:
        raise DSIRError(
            f"NeNA: no precision peak in the distances (fit s = {s:.3g} nm within a {radius_nm:g} nm "
            "search radius): too few emitters ON in consecutive frames"
        )
    return NeNAResult(s, centres, density, nena_pdf(centres, s, a, c), len(d), {"s": s, "a": a, "c": c})

"""Rendering localizations into a super-resolved image.

The image is (y, x) on a grid of ``pixel_size_nm`` pixels whose origin is the
top-left corner of the area rendered: image pixel ``j`` spans
``[y0 + j*p, y0 + (j+1)*p)`` nm, so with the default origin (0, 0) it lies on the
same grid as the DSIR super-resolved image (README, "Coordinates and files") and the two overlay.

Two modes, and ``"auto"`` (the default of the API, ``dsir render`` and
DSIR Render & Drift) for Gaussians where the table can size them (a
``sigma_nm`` given, or any localization with an uncertainty), else histogram:

- ``"hist"``: the number of localizations in each pixel (a 2-D histogram);
- ``"gauss"``: each localization is a normalised Gaussian of standard deviation
  ``sigma_nm`` (or its own ``uncertainty``), integrated over the pixels, so the
  image sums to the number of localizations inside it.

``by_frame=True`` colours the localizations by their frame (time) through a
matplotlib colormap and returns an RGB image.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter
from scipy.special import erf

from .errors import DSIRError
from .io import check_pixel_size
from .locs import Localizations

#: largest image rendered, in pixels (a 4 GB float32 image)
MAX_PIXELS = 1 << 30
#: peak memory of a rendering per image pixel, bytes, grey / coloured by
#: frame: float64 accumulators (1 channel, 4 by frame), their temporaries and
#: the float32 result (measured peaks at most 27 and 72:
#: benchmarks/render_memory.py)
BYTES_PER_PIXEL = {False: 28, True: 72}
#: share of the free memory a rendering may take
MEMORY_SHARE = 0.8
#: a Gaussian patch reaches this many standard deviations from its centre
TRUNCATE = 3.0
_SPLAT_ENTRIES = 1 << 20  # patch pixels splatted at a time (small temporaries, reused)
_PHASES = 64  # sub-pixel positions of the Gaussian profiles (1/64 px)
_LOG_SIGMA_STEP = 0.005  # sigma grid of the profiles (0.5 %)


def render_extent(
    locs: Localizations,
    pixel_size_nm: float,
    *,
    extent: tuple[float, float, float, float] | None = None,
    shape: tuple[int, int] | None = None,
    camera_shape: tuple[int, int] | None = None,
    camera_pixel_size_nm: float | None = None,
) -> tuple[tuple[float, float], tuple[int, int]]:
    """The origin ``(y0, x0)`` nm and the image shape ``(Y, X)`` px of a rendering.

    In order of precedence: ``extent`` ``(y0, x0, y1, x1)`` nm; ``shape`` image
    pixels from (0, 0); a camera frame ``camera_shape`` (H, W) of
    ``camera_pixel_size_nm``; else from 0 to the largest position.
    """
    p = check_pixel_size(pixel_size_nm, "pixel_size_nm")
    if extent is not None:
        try:
            y0, x0, y1, x1 = (float(v) for v in extent)
        except (TypeError, ValueError):
            raise DSIRError(f"extent: expected (y0, x0, y1, x1) in nm, got {extent!r}") from None
        if not all(math.isfinite(v) for v in (y0, x0, y1, x1)) or y1 <= y0 or x1 <= x0:
            raise DSIRError(f"extent: (y0, x0, y1, x1) = {extent!r} is not an area (need y1 > y0, x1 > x0)")
        out = (y0, x0), (math.ceil((y1 - y0) / p - 1e-9), math.ceil((x1 - x0) / p - 1e-9))
    elif shape is not None:
        out = (0.0, 0.0), _check_shape("shape", shape)
    elif camera_shape is not None:
        h, w = _check_shape("camera_shape", camera_shape)
        if camera_pixel_size_nm is None or not camera_pixel_size_nm > 0:
            raise DSIRError("camera_shape needs camera_pixel_size_nm > 0 (nm)")
        c = float(camera_pixel_size_nm) / p
        out = (0.0, 0.0), (math.ceil(h * c - 1e-9), math.ceil(w * c - 1e-9))
    else:
        ok = np.isfinite(locs.x) & np.isfinite(locs.y)
        if not ok.any():
            raise DSIRError("no localizations to render (give an extent or a shape for an empty image)")
        ymax, xmax = float(locs.y[ok].max()), float(locs.x[ok].max())
        if ymax < 0 or xmax < 0:
            raise DSIRError("every localization has a negative position: give an extent to render them")
        out = (0.0, 0.0), (int(ymax // p) + 1, int(xmax // p) + 1)
    (y0, x0), (ny, nx) = out
    if ny < 1 or nx < 1:
        raise DSIRError(f"the rendered image would be empty ({ny} x {nx} px)")
    if ny * nx > MAX_PIXELS:
        raise DSIRError(
            f"the rendered image would be {ny} x {nx} px at {p:g} nm/px: too large; "
            "use a larger pixel size or a smaller extent"
        )
    return (y0, x0), (ny, nx)


def outside_area(locs: Localizations, pixel_size_nm: float, **area) -> int:
    """How many of ``locs`` `render` leaves out of the area ``area`` (its
    keywords ``extent``, ``shape``, ``camera_shape``, ``camera_pixel_size_nm``;
    see `render_extent`): outside it, or with a non-finite position."""
    (y0, x0), (ny, nx) = render_extent(locs, pixel_size_nm, **area)
    p = float(pixel_size_nm)
    with np.errstate(invalid="ignore"):
        u, v = (locs.x - x0) / p, (locs.y - y0) / p
        inside = (u >= 0) & (u < nx) & (v >= 0) & (v < ny)
    return int(len(locs) - np.count_nonzero(inside))


#: the modes in words, for messages
MODE_WORDS = {"hist": "histogram", "gauss": "Gaussians"}


def resolve_mode(locs: Localizations, mode: str = "auto", sigma_nm=None) -> str:
    """The mode a rendering uses: ``"auto"`` is ``"gauss"`` where a
    ``sigma_nm`` is given or any localization has an uncertainty (nm) to size
    its Gaussian, else ``"hist"``; ``"hist"`` and ``"gauss"`` stand."""
    if mode not in ("auto", "hist", "gauss"):
        raise DSIRError(f"mode: expected 'auto', 'hist' or 'gauss', got {mode!r}")
    if mode == "auto":
        return "gauss" if sigma_nm is not None or has_uncertainty(locs) else "hist"
    return mode


def render(
    locs: Localizations,
    pixel_size_nm: float,
    *,
    mode: str = "auto",
    sigma_nm: float | np.ndarray | None = None,
    extent: tuple[float, float, float, float] | None = None,
    shape: tuple[int, int] | None = None,
    camera_shape: tuple[int, int] | None = None,
    camera_pixel_size_nm: float | None = None,
    by_frame: bool = False,
    colormap: str = "turbo",
    vmax: float | None = None,
) -> np.ndarray:
    """Render localizations (nm) into an image of ``pixel_size_nm`` pixels.

    mode: ``"hist"`` (counts per pixel), ``"gauss"`` (each localization a
    pixel-integrated Gaussian of ``sigma_nm``: a number, one value per
    localization, or None for each localization's own ``uncertainty``; those
    without one, e.g. flagged fits, get the median uncertainty; any width
    is drawn, its part inside the image, but one number wider than the image
    is refused as a units mistake) or
    ``"auto"`` (`resolve_mode`: Gaussians where they can be sized).
    The area: see `render_extent` (default: from 0 to the largest position;
    localizations outside it, or with non-finite values, are left out).

    Returns float32 ``(Y, X)``; with ``by_frame`` an RGB float32 ``(Y, X, 3)`` in
    [0, 1]: hue = mean frame of the pixel's localizations through ``colormap``
    (first frame -> 0, last -> 1), brightness = density clipped at ``vmax``
    (default: the 99.5th percentile of the non-empty pixels).
    """
    mode = resolve_mode(locs, mode, sigma_nm)
    p = check_pixel_size(pixel_size_nm, "pixel_size_nm")
    (y0, x0), (ny, nx) = render_extent(
        locs, p, extent=extent, shape=shape, camera_shape=camera_shape, camera_pixel_size_nm=camera_pixel_size_nm
    )
    check_memory((ny, nx), p, by_frame)
    u = (locs.x - x0) / p  # position in image pixels
    v = (locs.y - y0) / p
    keep = np.isfinite(u) & np.isfinite(v)
    sig = None
    if mode == "gauss":
        sig = _sigmas(locs, sigma_nm)
        keep &= np.isfinite(sig) & (sig > 0)
    weights = np.ones((1, len(locs)))
    if by_frame:
        weights = np.vstack([weights, _frame_colours(locs.frame, colormap).T])
    if not keep.all():
        u, v, weights = u[keep], v[keep], weights[:, keep]
        sig = None if sig is None else sig[keep]
    if mode == "hist":
        acc = _histogram(u, v, weights, (ny, nx))
    else:
        # one sigma_nm given wider than the image: a units mistake (uncertainties: a bad fit, drawn)
        if sigma_nm is not None and np.ndim(sigma_nm) == 0 and len(sig) and sig.max() / p > max(ny, nx):
            raise DSIRError(
                f"sigma {sig.max():g} nm is wider than the {ny} x {nx} px image at {p:g} nm/px: "
                "check the sigma or uncertainty units (nm)"
            )
        acc = _gaussians(u, v, sig / p, weights, (ny, nx))
    if not by_frame:
        return acc[0].astype(np.float32)
    return _colour_image(acc, vmax)


def check_memory(shape: tuple[int, int], pixel_size_nm: float, by_frame: bool = False) -> None:
    """Refuse (DSIRError) a rendering of ``shape`` (Y, X) px that would need
    more than `MEMORY_SHARE` of the memory free now: a clear message instead of
    the system killing the process (and a napari session with it)."""
    free = available_memory()
    need = shape[0] * shape[1] * BYTES_PER_PIXEL[bool(by_frame)]
    if free is not None and need > MEMORY_SHARE * free:
        raise DSIRError(
            f"the rendered image would be {shape[0]} x {shape[1]} px at {pixel_size_nm:g} nm/px"
            f"{' coloured by frame' if by_frame else ''}: it needs about {memory_text(need)} of memory and "
            f"{memory_text(free)} is free; use a larger pixel size or a smaller extent"
        )


def available_memory() -> int | None:
    """Bytes of memory the system can give now without swapping (psutil, else
    Linux's /proc/meminfo), or None where neither tells."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # not installed, or no answer on this system
        pass
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory_text(n: float) -> str:
    """Bytes as GB (MB below 1 GB), for messages."""
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.0f} MB"


def _check_shape(name, shape) -> tuple[int, int]:
    try:
        h, w = (int(s) for s in shape)
    except (TypeError, ValueError):
        raise DSIRError(f"{name}: expected (height, width) in pixels, got {shape!r}") from None
    if h < 1 or w < 1:
        raise DSIRError(f"{name}: expected a positive (height, width), got {shape!r}")
    return h, w


def has_uncertainty(locs: Localizations) -> bool:
    """Whether any localization has an uncertainty (finite, > 0 nm) to size
    its Gaussian: else `render` needs ``sigma_nm`` in mode "gauss"."""
    u = locs.uncertainty
    return u is not None and bool(np.any(np.isfinite(u) & (u > 0)))


def _sigmas(locs: Localizations, sigma_nm) -> np.ndarray:
    """Per-localization Gaussian standard deviation, nm."""
    if sigma_nm is None:
        if locs.uncertainty is None:
            raise DSIRError(
                "gauss rendering without sigma_nm uses each localization's uncertainty, "
                "and this table has no uncertainty column: give sigma_nm (nm)"
            )
        unc = locs.uncertainty
        missing = ~(np.isfinite(unc) & (unc > 0))
        if missing.all():
            raise DSIRError("no localization has an uncertainty (all fits failed?): give sigma_nm (nm)")
        if missing.any():
            # flagged fits have no uncertainty: they are drawn, with the typical one
            unc = np.where(missing, np.median(unc[~missing]), unc)
        return unc
    try:
        s = np.asarray(sigma_nm, dtype=np.float64)
    except (TypeError, ValueError):
        raise DSIRError(f"sigma_nm: expected nm, got {sigma_nm!r}") from None
    if s.ndim == 0:
        if not (np.isfinite(s) and s > 0):
            raise DSIRError(f"sigma_nm must be > 0 nm, got {sigma_nm!r}")
        return np.full(len(locs), float(s))
    if s.shape != (len(locs),):
        raise DSIRError(f"sigma_nm: expected one number or one per localization ({len(locs)}), got {s.shape}")
    return s


def _frame_colours(frame: np.ndarray, colormap: str) -> np.ndarray:
    """(n, 3) RGB of each localization's frame through a matplotlib colormap."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[colormap]
    except (KeyError, ValueError):
        raise DSIRError(f"colormap: unknown matplotlib colormap {colormap!r}") from None
    if len(frame) == 0:
        return np.zeros((0, 3))
    lo, hi = frame.min(), frame.max()
    t = (frame - lo) / (hi - lo) if hi > lo else np.zeros(len(frame))
    return cmap(t)[:, :3]


def _histogram(u, v, weights, shape) -> np.ndarray:
    """Per channel, the sum of ``weights`` in each pixel; pixel j holds [j, j+1)."""
    ny, nx = shape
    iu = np.floor(u)
    iv = np.floor(v)
    inside = (iu >= 0) & (iu < nx) & (iv >= 0) & (iv < ny)
    flat = iv[inside].astype(np.int64) * nx + iu[inside].astype(np.int64)
    out = np.empty((len(weights), ny, nx), dtype=np.float64)
    for c, w in enumerate(weights):
        wc = None if c == 0 and len(weights) == 1 and np.all(w == 1) else w[inside]
        out[c] = np.bincount(flat, weights=wc, minlength=ny * nx).reshape(ny, nx)
    return out


def _profiles(c: np.ndarray, s: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """First pixel index and the normalised pixel integrals (n, k) of 1-D Gaussians
    centred at ``c`` px of standard deviation ``s`` px, from ``c - TRUNCATE s``
    (k >= 2 TRUNCATE s + 1 pixels reach ``c + TRUNCATE s``).

    From a table: centres on a 1/``_PHASES`` px grid within their pixel, sigmas on
    a 0.5 % (log) grid, each profile computed once (erf is the costly part).
    """
    ic = np.floor(c)
    q = np.minimum(((c - ic) * _PHASES).astype(np.int64), _PHASES - 1)
    sbin, inv = np.unique(np.rint(np.log(s) / _LOG_SIGMA_STEP).astype(np.int64), return_inverse=True)
    sq = np.exp(sbin * _LOG_SIGMA_STEP)[:, None]  # (B, 1)
    centre = ((np.arange(_PHASES) + 0.5) / _PHASES)[None, :]  # (1, Q)
    off = np.floor(centre - TRUNCATE * sq).astype(np.int64)  # (B, Q)
    edges = off[:, :, None] + np.arange(k + 1)
    cdf = erf((edges - centre[:, :, None]) / (np.sqrt(2.0) * sq[:, :, None]))
    g = 0.5 * np.diff(cdf, axis=2)
    g /= g.sum(axis=2, keepdims=True)
    inv = inv.ravel()
    return ic.astype(np.int64) + off[inv, q], g[inv, q]


def _gaussians(u, v, s, weights, shape) -> np.ndarray:
    """Per channel, the sum of pixel-integrated Gaussians (``s`` px) weighted by ``weights``.

    Only localizations inside the image are drawn, each a Gaussian truncated
    at `TRUNCATE` s and normalised; what falls outside the image is left out.
    They are grouped by patch width ceil(2 TRUNCATE s) + 1 px, and each group
    is drawn the way `_gauss_path` chooses: exactly (k x k patches, or an
    outer product of two profiles over the image for patches wider than it),
    or by blurred histograms where that costs less. No temporary grows with
    a sigma: memory stays within `BYTES_PER_PIXEL` whatever the sigmas.
    """
    ny, nx = shape
    inside = (u >= 0) & (u < nx) & (v >= 0) & (v < ny)
    u, v, s, weights = u[inside], v[inside], s[inside], weights[:, inside]
    s = np.minimum(s, 1e100)  # wider puts nothing in the image either; no overflow below
    # patch widths (px); beyond twice the image's every width is drawn alike (and no int64 overflows)
    width = np.minimum(np.ceil(2 * TRUNCATE * s), 4 * max(ny, nx)).astype(np.int64) + 1
    out = np.zeros((len(weights), ny, nx), dtype=np.float64)
    unit = len(weights) == 1 and bool(np.all(weights == 1))
    rest = np.zeros(len(u), dtype=bool)
    for k in (int(k) for k in np.unique(width)):
        sel = np.flatnonzero(width == k)
        path = _gauss_path(k, len(sel), shape)
        if path == "blur":
            rest[sel] = True
        elif path == "splat":
            row = np.floor(v[sel]).astype(np.uint16 if ny < 65536 else np.int64)
            sel = sel[np.argsort(row, kind="stable")]  # bands of rows (radix sort for 16-bit keys)
            step = max(1, _SPLAT_ENTRIES // (k * k))
            for start in range(0, len(sel), step):
                idx = sel[start:start + step]
                _splat(out, u[idx], v[idx], s[idx], None if unit else weights[:, idx], k)
        else:
            step = max(1, _SPLAT_ENTRIES // (ny + nx + 2))
            for start in range(0, len(sel), step):
                idx = sel[start:start + step]
                _separable(out, u[idx], v[idx], s[idx], weights[:, idx])
    if rest.any():
        _blur_bins(out, u[rest], v[rest], s[rest], weights[:, rest])
    return out


def _gauss_path(k: int, count: int, shape: tuple[int, int]) -> str:
    """How `_gaussians` draws ``count`` Gaussians of patch width ``k`` px on a
    ``shape`` (Y, X) px image, by cost in image entries: ``"splat"`` (exact
    k x k patches, count k^2) where a patch fits in the image and in
    `_SPLAT_ENTRIES`, else ``"separable"`` (exact outer products over the
    image, count Y X); ``"blur"`` (histograms per sigma bin blurred, about
    3 k Y X, the kernel no longer than twice the image) where that costs less.
    (Per entry a matrix product was 1-4 x as fast as blurring: 2 cores.)"""
    ny, nx = shape
    blur = 3 * min(k, 2 * max(ny, nx)) * ny * nx
    if k * k <= min(ny * nx, _SPLAT_ENTRIES):
        return "splat" if count * k * k <= blur else "blur"
    return "separable" if count * ny * nx <= blur else "blur"


def _splat(out, u, v, s, weights, k) -> None:
    """Add the k x k patches of localizations at ``u``, ``v`` (px of the image
    ``out``) to ``out``, within the band of rows they cover; the parts of
    patches outside the image are left out."""
    ny, nx = out.shape[1:]
    fx, gx = _profiles(u, s, k)
    fy, gy = _profiles(v, s, k)
    steps = np.arange(k)
    cols, rows_of = fx[:, None] + steps, fy[:, None] + steps  # (n, k) image columns and rows
    if fx.min() < 0 or fx.max() + k > nx:  # outside the image: no weight, on a pixel of its edge
        gx = np.where((cols >= 0) & (cols < nx), gx, 0.0)
        cols = np.clip(cols, 0, nx - 1)
    if fy.min() < 0 or fy.max() + k > ny:
        gy = np.where((rows_of >= 0) & (rows_of < ny), gy, 0.0)
        rows_of = np.clip(rows_of, 0, ny - 1)
    row0 = int(rows_of[:, 0].min())
    rows = int(rows_of[:, -1].max()) - row0 + 1
    flat = ((rows_of - row0)[:, :, None] * nx + cols[:, None, :]).ravel()
    g = (gy[:, :, None] * gx[:, None, :]).reshape(len(u), -1)
    for c in range(len(out)):
        wc = g if weights is None else g * weights[c][:, None]
        band = np.bincount(flat, weights=wc.ravel(), minlength=rows * nx)
        out[c, row0:row0 + rows] += band.reshape(rows, nx)


def _separable(out, u, v, s, weights) -> None:
    """Add Gaussians wider than the image exactly: each the outer product of
    its row and column profiles over the image (pixel integrals of the
    Gaussian truncated at `TRUNCATE` s and normalised, as `_profiles`), all
    summed by one matrix product per channel; memory (n, Y + X), not k^2."""
    ny, nx = out.shape[1:]
    gy, gx = _image_profiles(v, s, ny), _image_profiles(u, s, nx)
    for c in range(len(out)):
        out[c] += gy.T @ (gx * weights[c][:, None])


def _image_profiles(c: np.ndarray, s: np.ndarray, n: int) -> np.ndarray:
    """(len(c), n): the integrals over pixels 0..n-1 of Gaussians centred at
    ``c`` px of standard deviation ``s`` px, truncated to the k pixels from
    floor(c - TRUNCATE s) (k = ceil(2 TRUNCATE s) + 1) and normalised over them."""
    lo = np.floor(c - TRUNCATE * s)[:, None]
    hi = lo + np.ceil(2 * TRUNCATE * s)[:, None] + 1
    scale = np.sqrt(2.0) * s[:, None]
    edges = np.clip(np.arange(n + 1)[None, :], lo, hi)
    cdf = erf((edges - c[:, None]) / scale)
    total = erf((hi - c[:, None]) / scale) - erf((lo - c[:, None]) / scale)
    return np.diff(cdf, axis=1) / total


def _blur_bins(out, u, v, s, weights) -> None:
    """Add Gaussians by sigma bins (10 %): a bilinear histogram of each bin (it
    keeps the centroid; its spread, 1/6 px^2 on average, is taken off the blur)
    blurred by the bin's sigma."""
    edges = np.exp(np.arange(np.log(s.min()), np.log(s.max()) + 0.1, 0.1))
    which = np.searchsorted(edges, s, side="right")
    ny, nx = out.shape[1:]
    for b in np.unique(which):
        m = which == b
        sb = float(np.exp(np.mean(np.log(s[m]))))
        cu, cv = u[m] - 0.5, v[m] - 0.5  # from pixel centres
        iu, iv = np.floor(cu), np.floor(cv)
        fu, fv = cu - iu, cv - iv
        blur = math.sqrt(max(sb * sb - 1.0 / 6.0, 0.25 * sb * sb))
        corners = ((0, 0, (1 - fu) * (1 - fv)), (1, 0, fu * (1 - fv)), (0, 1, (1 - fu) * fv), (1, 1, fu * fv))
        for c in range(len(weights)):
            hist = np.zeros((ny, nx))
            for du, dv, w in corners:
                jx, jy = iu + du, iv + dv
                ok = (jx >= 0) & (jx < nx) & (jy >= 0) & (jy < ny)
                flat = jy[ok].astype(np.int64) * nx + jx[ok].astype(np.int64)
                hist += np.bincount(flat, weights=(w * weights[c][m])[ok], minlength=ny * nx).reshape(ny, nx)
            out[c] += _blur(hist, blur)


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """``img`` blurred by a Gaussian of ``sigma`` px truncated at `TRUNCATE` + 1
    sigma, zero outside: scipy's gaussian_filter, its kernel cut at the
    image's size (entries beyond only weigh the zeros outside; cost and
    result no longer grow with sigma) and scaled to the full kernel's norm."""
    radius = int((TRUNCATE + 1) * sigma + 0.5)  # scipy's own
    cap = max(img.shape)
    if radius <= cap:
        return gaussian_filter(img, sigma, mode="constant", radius=radius)
    phi = np.exp(-0.5 * (np.arange(cap + 1) / sigma) ** 2)
    if radius <= 1 << 20:
        full = 1.0 + 2.0 * np.exp(-0.5 * (np.arange(1, radius + 1) / sigma) ** 2).sum()
    else:  # sigma > 2e5 px: the sum is the integral (by the midpoint rule, exact far below float precision)
        full = sigma * math.sqrt(2.0 * math.pi) * math.erf((radius + 0.5) / (sigma * math.sqrt(2.0)))
    share = (phi[0] + 2.0 * phi[1:].sum()) / full
    out = gaussian_filter(img, sigma, mode="constant", radius=cap)
    out *= share ** img.ndim
    return out


def _colour_image(acc: np.ndarray, vmax: float | None) -> np.ndarray:
    density = acc[0]
    filled = density > 1e-12
    rgb = np.zeros(density.shape + (3,), dtype=np.float32)
    if not filled.any():
        return rgb
    if vmax is None:
        vmax = float(np.percentile(density[filled], 99.5))
    if not vmax > 0:
        raise DSIRError(f"vmax must be > 0, got {vmax!r}")
    bright = np.clip(density / vmax, 0.0, 1.0)
    for c in range(3):
        mean = np.divide(acc[c + 1], density, out=np.zeros_like(density), where=filled)
        rgb[..., c] = np.clip(mean, 0.0, 1.0) * bright
    return rgb

"""Classical baseline: Picasso's Gaussian least-squares localization ("gausslq").

Runs standalone in its own virtual environment (only numpy + picassosr and its
dependencies; napari-dsir itself is NOT imported), because picassosr pins
numpy / Qt versions that must not leak into the main environment:

    python3 -m venv /tmp/picvenv
    /tmp/picvenv/bin/pip install -r benchmarks/requirements-picasso.txt

The main benchmark (system Python, no picasso) calls it through a subprocess:

    /tmp/picvenv/bin/python benchmarks/classical.py MOVIE.npy OUT.csv \
        --pixel-size 100 --box 5 --min-net-gradient 1000 \
        --baseline 100 --sensitivity 1 --gain 1

MOVIE is a (frame, y, x) stack of camera ADU as .npy (or a multi-page .tif,
read with tifffile, which picassosr installs). OUT.csv gets the header
``frame,x_nm,y_nm,photons,net_gradient`` with 0-based frames (the caller converts at its
own I/O boundary, see ../shared/CONVENTIONS.md).

Coordinates: Picasso reports positions in camera pixels with the CENTRE of
pixel (0, 0) at 0.0. The project convention puts the origin at the top-left
CORNER of pixel (0, 0) (pixel k spans [k*p, (k+1)*p) nm), so

    x_nm = (x_px + 0.5) * pixel_size,   y_nm = (y_px + 0.5) * pixel_size.

Verified with a simulated spot at a known sub-pixel position
(``--self-test``) and on the ThunderSTORM demo (mean dx, dy of matched pairs
~0 nm).

Notes:
- Tested with picassosr 0.11.3, whose "gausslq" is a Levenberg-Marquardt fit
  of a pixel-sampled elliptical Gaussian (picasso.fitting.gaussfit, numba
  JIT). Each new process pays a fixed ~9 s: ~4.5 s to import picasso and
  ~4.5 s to JIT Picasso's identification kernels, which it compiles without
  cache (the fit kernels are cached on disk after the very first run in a
  fresh venv, which takes ~20 s). After that, 20 frames of 64x64 take ~0.25 s,
  50 frames ~0.3 s, 500 frames ~1 s.
- Identification (local maxima above ``min_net_gradient``) ignores maxima
  closer than box//2 pixels to the frame edge, as Picasso does.
- Photons = (ADU - baseline) * sensitivity / gain, integrated over the fitted
  Gaussian. Picasso (since 0.6) does not divide by the quantum efficiency;
  ``qe`` is accepted and recorded in the camera info but does not change the
  result.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
import warnings

import numpy as np

__all__ = ["picasso_localize", "load_movie", "write_csv"]

_PICASSO = None


def _import_picasso():
    """Import picasso.localize once, silencing its import-time chatter
    (playsound3 prints "No supported audio backends" to stdout)."""
    global _PICASSO
    if _PICASSO is None:
        with contextlib.redirect_stdout(io.StringIO()):
            from picasso import localize  # noqa: WPS433
        _PICASSO = localize
    return _PICASSO


def picasso_localize(
    movie: np.ndarray,
    pixel_size_nm: float,
    *,
    box: int = 5,
    min_net_gradient: float,
    baseline: float,
    sensitivity: float = 1.0,
    gain: float = 1.0,
    qe: float = 1.0,
    threaded: bool = True,
) -> dict:
    """Localize every frame of ``movie`` with Picasso's gausslq fit.

    Parameters
    ----------
    movie : (frame, y, x) array of camera ADU (a single 2D frame is accepted).
    pixel_size_nm : camera pixel size in nm.
    box : odd fitting box side in pixels (Picasso's "Box Size").
    min_net_gradient : Picasso's identification threshold ("Min. Net Gradient").
    baseline : camera offset in ADU.
    sensitivity : electrons per ADU.
    gain : EM gain (1 for sCMOS / no EM).
    qe : quantum efficiency (recorded only; Picasso no longer divides by it).
    threaded : let Picasso identify frames on several threads.

    Returns
    -------
    dict of numpy arrays, one entry per localization, sorted by frame:
    ``frame`` (int64, 0-based), ``x``, ``y`` (float64, nm, origin at the
    top-left corner of pixel (0, 0)), ``photons``, plus Picasso's extras
    ``sx_nm``, ``sy_nm``, ``bg`` (photons/pixel), ``lpx_nm``, ``lpy_nm`` and
    ``net_gradient``.
    """
    if box < 3 or box % 2 == 0:
        raise ValueError(f"box must be an odd integer >= 3, got {box}")
    movie = np.asarray(movie)
    if movie.ndim == 2:
        movie = movie[None]
    if movie.ndim != 3:
        raise ValueError(f"movie must be (frame, y, x), got shape {movie.shape}")
    # Picasso's identification runs on the raw values; float32 keeps
    # baseline-subtracted negatives and non-integer simulations intact.
    movie = np.ascontiguousarray(movie, dtype=np.float32)
    localize = _import_picasso()
    camera_info = {
        "Baseline": float(baseline),
        "Sensitivity": float(sensitivity),
        "Gain": float(gain),
        "Qe": float(qe),
        "Pixelsize": float(pixel_size_nm),
    }
    empty = {"frame": np.zeros(0, dtype=np.int64)}
    empty.update({k: np.zeros(0) for k in ("x", "y", "photons", "sx_nm", "sy_nm", "bg",
                                           "lpx_nm", "lpy_nm", "net_gradient")})
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        locs = _run_picasso(localize, movie, camera_info, int(box),
                            float(min_net_gradient), threaded)
    if locs is None or len(locs) == 0:
        return empty
    p = float(pixel_size_nm)
    out = {
        "frame": locs["frame"].to_numpy().astype(np.int64),
        # Picasso: centre of pixel 0 at 0.0 px -> project: corner at 0 nm.
        "x": (locs["x"].to_numpy().astype(np.float64) + 0.5) * p,
        "y": (locs["y"].to_numpy().astype(np.float64) + 0.5) * p,
        "photons": locs["photons"].to_numpy().astype(np.float64),
        "sx_nm": locs["sx"].to_numpy().astype(np.float64) * p,
        "sy_nm": locs["sy"].to_numpy().astype(np.float64) * p,
        "bg": locs["bg"].to_numpy().astype(np.float64),
        "lpx_nm": locs["lpx"].to_numpy().astype(np.float64) * p,
        "lpy_nm": locs["lpy"].to_numpy().astype(np.float64) * p,
        "net_gradient": locs["net_gradient"].to_numpy().astype(np.float64),
    }
    # Drop failed fits (NaN / non-finite positions), keep frame order stable.
    ok = np.isfinite(out["x"]) & np.isfinite(out["y"])
    order = np.argsort(out["frame"][ok], kind="stable")
    return {k: v[ok][order] for k, v in out.items()}


def _run_picasso(localize, movie, camera_info, box, min_net_gradient, threaded):
    """identify -> cut -> gausslq fit, as picasso.localize.localize() does.

    ``localize.localize_frames`` (identify + ``localize.fit``) gives the same
    table, but its spot cutter is a numba function compiled without cache
    (~9 s on every new process); the cut here is the same slicing in numpy,
    followed by Picasso's own photon conversion (``get_spots``: (ADU -
    Baseline) * Sensitivity / Gain), ``fit_spots_gauss`` (what
    ``fitting_method="gausslq"`` runs) and ``locs_from_fits_gauss``. The two
    paths were checked to give identical localizations on the ThunderSTORM
    demo. Falls back to ``localize_frames`` on Picasso versions without
    these functions.
    """
    if not all(hasattr(localize, n) for n in ("identify", "fit_spots_gauss",
                                              "locs_from_fits_gauss")):
        params = {"Min. Net Gradient": min_net_gradient, "Box Size": box}
        return localize.localize_frames(movie, None, params, camera_info=camera_info,
                                        fitting_method="gausslq", threaded=threaded)
    ids = localize.identify(movie, min_net_gradient, box, threaded=threaded)
    if isinstance(ids, tuple):  # (ids, info) in picassosr 0.11
        ids = ids[0]
    if ids is None or len(ids) == 0:
        return None
    f = ids["frame"].to_numpy().astype(np.intp)
    yc = ids["y"].to_numpy().astype(np.intp)
    xc = ids["x"].to_numpy().astype(np.intp)
    off = np.arange(box) - box // 2
    spots = movie[f[:, None, None], (yc[:, None] + off)[:, :, None],
                  (xc[:, None] + off)[:, None, :]].astype(np.float32)
    spots = (spots - camera_info["Baseline"]) * camera_info["Sensitivity"] / camera_info["Gain"]
    spots = np.ascontiguousarray(spots, dtype=np.float32)
    theta, _ll, iterations, chi_square = localize.fit_spots_gauss(spots, return_stats=True)
    return localize.locs_from_fits_gauss(ids, theta, box, camera_info["Gain"] > 1,
                                         iterations=iterations, chi_square=chi_square)


def load_movie(path: str) -> np.ndarray:
    """(frame, y, x) array from a .npy file or a (multi-page) TIFF."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        movie = np.load(path)
    elif ext in (".tif", ".tiff"):
        try:
            import tifffile
        except ImportError as e:  # pragma: no cover
            raise SystemExit(f"reading {path} needs tifffile: {e}") from e
        movie = tifffile.imread(path)
    else:
        raise SystemExit(f"unsupported movie file {path!r} (use .npy or .tif)")
    if movie.ndim == 2:
        movie = movie[None]
    if movie.ndim != 3:
        raise SystemExit(f"{path}: expected (frame, y, x), got shape {movie.shape}")
    return movie


def write_csv(path: str, locs: dict) -> None:
    """Write ``frame,x_nm,y_nm,photons,net_gradient`` (frame 0-based).

    Thresholding the net gradient afterwards is the same as running Picasso
    with that ``min_net_gradient`` (spot detection is a local maximum of the
    net gradient, the threshold is applied to it afterwards), so one run at
    a low threshold serves a whole threshold sweep."""
    data = np.column_stack([locs["frame"], locs["x"], locs["y"], locs["photons"], locs["net_gradient"]])
    np.savetxt(path, data, delimiter=",", header="frame,x_nm,y_nm,photons,net_gradient",
               comments="", fmt=["%d", "%.3f", "%.3f", "%.2f", "%.2f"])


def _self_test() -> int:
    """Single Gaussian spots at known sub-pixel positions (corner origin)."""
    rng = np.random.default_rng(0)
    p, size, sigma, n_ph, bg, base = 100.0, 32, 1.2, 5000.0, 20.0, 100.0
    truths = [(10.3, 15.8), (20.71, 7.25), (16.0, 16.0), (5.5, 24.9)]  # (x, y) px from corner
    frames = []
    yy, xx = np.mgrid[0:size, 0:size]
    from math import erf, sqrt

    verf = np.vectorize(erf)
    for tx, ty in truths:
        # integrate the Gaussian over each pixel [k, k+1) (corner origin)
        gx = 0.5 * (verf((np.arange(size) + 1 - tx) / (sqrt(2) * sigma))
                    - verf((np.arange(size) - tx) / (sqrt(2) * sigma)))
        gy = 0.5 * (verf((np.arange(size) + 1 - ty) / (sqrt(2) * sigma))
                    - verf((np.arange(size) - ty) / (sqrt(2) * sigma)))
        img = n_ph * gy[:, None] * gx[None, :] + bg
        frames.append(rng.poisson(img) + base)
    movie = np.array(frames, dtype=np.uint16)
    t0 = time.perf_counter()
    locs = picasso_localize(movie, p, box=7, min_net_gradient=2000, baseline=base)
    dt = time.perf_counter() - t0
    worst = 0.0
    for f, (tx, ty) in enumerate(truths):
        sel = locs["frame"] == f
        if sel.sum() != 1:
            print(f"frame {f}: expected 1 localization, got {sel.sum()}")
            return 1
        dx, dy = locs["x"][sel][0] - tx * p, locs["y"][sel][0] - ty * p
        worst = max(worst, abs(dx), abs(dy))
        print(f"frame {f}: truth ({tx * p:.1f}, {ty * p:.1f}) nm  got ({locs['x'][sel][0]:.1f}, "
              f"{locs['y'][sel][0]:.1f}) nm  dx {dx:+.1f} dy {dy:+.1f} nm  photons {locs['photons'][sel][0]:.0f}")
    print(f"max |error| {worst:.1f} nm ({dt:.2f} s incl. JIT)")
    return 0 if worst < 10 else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("movie", nargs="?", help="(frame, y, x) camera ADU: .npy or .tif")
    ap.add_argument("out", nargs="?", help="output CSV: frame,x_nm,y_nm,photons,net_gradient (frame 0-based)")
    ap.add_argument("--pixel-size", type=float, default=100.0, help="nm (default 100)")
    ap.add_argument("--box", type=int, default=5)
    ap.add_argument("--min-net-gradient", type=float, default=1000.0)
    ap.add_argument("--baseline", type=float, default=100.0, help="camera offset, ADU")
    ap.add_argument("--sensitivity", type=float, default=1.0, help="electrons per ADU")
    ap.add_argument("--gain", type=float, default=1.0, help="EM gain")
    ap.add_argument("--qe", type=float, default=1.0)
    ap.add_argument("--no-threads", action="store_true", help="identify serially")
    ap.add_argument("--self-test", action="store_true",
                    help="check the coordinate convention on simulated spots and exit")
    args = ap.parse_args(argv)
    if args.self_test:
        return _self_test()
    if not args.movie or not args.out:
        ap.error("MOVIE and OUT are required (or --self-test)")
    movie = load_movie(args.movie)
    t0 = time.perf_counter()
    locs = picasso_localize(
        movie, args.pixel_size, box=args.box, min_net_gradient=args.min_net_gradient,
        baseline=args.baseline, sensitivity=args.sensitivity, gain=args.gain, qe=args.qe,
        threaded=not args.no_threads,
    )
    dt = time.perf_counter() - t0
    write_csv(args.out, locs)
    print(f"{len(locs['x'])} localizations in {movie.shape[0]} frames, {dt:.2f} s "
          f"(incl. numba JIT on first use) -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Calibrated localizations: the shipped model with and without refinement on the raw frames.

    python benchmarks/calibrated.py [--frames 100] [--out benchmarks/results/calibrated.md]

Test sets: the project's simulator (seeds 91001+, never used in training),
64x64 px of 100 nm (of 160 nm for the last camera), PSF FWHM 250-350 nm, background 35
photons/px, at 0.1, 0.5, 1, 2, 4 and 6 emitters/um^2, on

- an sCMOS-like camera: baseline 400 ADU, 0.5 e-/ADU (2 ADU per e-), read noise 1.5 e-;
- an EMCCD: baseline 100 ADU, EM gain 100, 4.8 e-/ADU (an Andor iXon-like
  camera), gamma-distributed multiplication (excess noise), at 0.5, 2 and
  6 /um^2;
- an sCMOS with 160 nm pixels (baseline 100 ADU, 0.46 e-/ADU, read noise
  1.6 e-; the same PSFs in nm, so 0.66-0.93 camera px of sigma against the
  network's 100 nm training pixels), at 0.5, 1 and 4 /um^2,

and the ThunderSTORM demo (camera assumed: baseline 100 ADU, 1 e-/ADU).
Every run uses the defaults a user gets: the model's own threshold (never
tuned here), the camera given as it is, `dsir localize`'s refinement.

Reported per set, for network-only positions ("none") and refined ones
("mle"): Jaccard at 250 nm, lateral RMSE of the pairs matched within 250 nm
and within 100 nm; for the refined ones also:

- the per-axis RMSE of the fitted pairs within 100 nm against the root mean
  square of their bare Cramer-Rao bound (what an efficient estimator reaches
  on these emitters: their photon counts span 25x, so their bounds differ
  ~5x; the mean bound is given too), over all fitted rows and over the free
  fits only (the isolated detections whose position comes from the fit);
  these come from `napari_dsir.fit.refine` called with reconstruct's
  settings on the same detections, which gives each row's status (the
  bound without the chi-square scaling of the free fits' reported
  uncertainty);
- the per-axis RMSE of all refined pairs within 100 nm against the true
  Cramer-Rao bound of their emitters: that of a joint fit of each emitter
  and its neighbours within 7 px (x, y, photons of each, one background;
  PSF sigma known), at the true parameters, with the light of every emitter
  of the frame; the bound of the estimation problem itself, where the bare
  bound above treats the neighbours as known (mean and root mean square);
- the median ratio fitted / true photons;
- the std of (error / reported uncertainty) per axis over isolated emitters
  (no other emitter within 500 nm in that frame); for the crowded rows the
  reported uncertainty holds the network's calibrated error too; then the
  same over the isolated emitters at least 500 nm from the frame's edges
  (the truth lists no emitter outside the frame, where the simulator puts
  some within 200 nm: near the edges "isolated" is not known);
- the same over the rows kept at the network's position (crowded or
  pulled; their uncertainty holds the network's calibrated error), all of
  them, their brightest and dimmest third (by uncertainty), and the third
  whose nearest other detection is closest and farthest (in PSF sigmas);
- the share of detections that keep the network's position (a neighbour
  closer than 500 nm: status "crowded"; or a free fit pulled away: "pulled";
  photons and bound fitted there) and the share of failed fits (NaN
  photons and uncertainty).

Timings: `dsir localize` with and without
refinement, whole processes, on the Bundled Tubes HD movie when it exists.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _machine import cpu_name
from scipy.spatial import cKDTree
from scipy.special import erf

from napari_dsir import reconstruct as R
from napari_dsir.camera import Camera
from napari_dsir.evaluate import evaluate, match
from napari_dsir.fit import CROWDED, OK, PULLED, REPORTED, fit_report
from napari_dsir.fit import refine as refine_fits
from napari_dsir.io import open_stack, read_localizations
from napari_dsir.locs import Localizations
from napari_dsir.run import reconstruct
from napari_dsir.simulate import SimulationConfig, simulate

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
DENSITIES = (0.1, 0.5, 1.0, 2.0, 4.0, 6.0)
CAMERAS = {
    "sCMOS 400 ADU, 0.5 e-/ADU": (dict(base_level=400.0, gain=2.0, read_noise=1.5),
                                  Camera(400.0, 0.5, 1.0, 1.0, read_noise=1.5)),
    "EMCCD gain 100": (dict(base_level=100.0, gain=1 / 4.8, em_gain=100.0), Camera(100.0, 4.8, 100.0, 1.0)),
    "sCMOS 160 nm px": (dict(base_level=100.0, gain=1 / 0.46, read_noise=1.6, pixel_size=160.0),
                        Camera(100.0, 0.46, 1.0, 1.0, read_noise=1.6)),
}
#: densities per camera (the first: all of DENSITIES)
CAMERA_DENSITIES = {"EMCCD gain 100": (0.5, 2.0, 6.0), "sCMOS 160 nm px": (0.5, 1.0, 4.0)}


def sets(n_frames: int):
    """(name, density, frames, truth, camera, pixel size nm) of each test set."""
    for ci, (cname, (sim, cam)) in enumerate(CAMERAS.items()):
        dens = CAMERA_DENSITIES.get(cname, DENSITIES)
        for i, d in enumerate(dens):
            cfg = SimulationConfig(frame_size=(64, 64), density=d, fwhm=(250.0, 350.0), background=35.0,
                                   photons=(200.0, 5000.0), margin=200.0, **sim)
            frames, gt = simulate(n_frames, cfg, seed=91001 + 10 * ci + i)
            yield f"{cname}, {d:g} /um^2", d, frames, gt, cam, cfg.pixel_size
    demo = SHARED / "thunderstorm_demo"
    if demo.is_dir():
        frames = open_stack(demo / "ArtificialDataset_demo1.tif").read().astype(np.float32)
        yield ("ThunderSTORM demo (~6 /um^2)", 6.0, frames, read_localizations(demo / "positions_demo1.csv"), None,
               100.0)


def isolated(gt: Localizations, size_nm: tuple[float, float] | None = None, radius: float = 500.0) -> np.ndarray:
    """Mask of the ground-truth emitters with no other one within ``radius``
    nm in their frame and, given the frame's ``size_nm`` (height, width), at
    least ``radius`` nm from its edges: the truth lists no emitter outside the
    frame, and the simulator's emitters up to 200 nm outside shine in."""
    out = np.zeros(len(gt), bool)
    for f in np.unique(gt.frame):
        idx = np.flatnonzero(gt.frame == f)
        pts = np.column_stack([gt.x[idx], gt.y[idx]])
        d, _ = cKDTree(pts).query(pts, k=2) if len(idx) > 1 else (np.full((1, 2), np.inf), None)
        out[idx] = d[:, 1] > radius
    if size_nm is not None:
        h, w = size_nm
        out &= (gt.x >= radius) & (gt.x <= w - radius) & (gt.y >= radius) & (gt.y <= h - radius)
    return out


def calibration(gt: Localizations, locs: Localizations, size_nm=None) -> dict:
    """Reported localizations against the truth (pairs within 100 nm with an
    uncertainty); ``size_nm``: the frame's (height, width), see `isolated`."""
    gi, pi, _ = match(gt, locs, 100.0)
    ok = np.isfinite(locs.uncertainty[pi])
    gi, pi = gi[ok], pi[ok]
    dx, dy = locs.x[pi] - gt.x[gi], locs.y[pi] - gt.y[gi]
    unc = locs.uncertainty[pi]
    iso = isolated(gt, size_nm)[gi]
    z = np.concatenate([dx[iso] / unc[iso], dy[iso] / unc[iso]])
    return {
        "photons": float(np.median(locs.photons[pi] / gt.intensity[gi])) if gt.intensity is not None else np.nan,
        "z_std": float(np.std(z)) if len(z) > 10 else np.nan,
        "n_iso": int(iso.sum()),
    }


def _axis(edges, c, s):
    """Integrated Gaussian over pixels [e, e + 1) (px) and its derivative by the centre."""
    u0 = (edges - c) / s
    u1 = u0 + 1.0 / s
    a = 0.5 * (erf(u1 / np.sqrt(2.0)) - erf(u0 / np.sqrt(2.0)))
    return a, (np.exp(-0.5 * u0**2) - np.exp(-0.5 * u1**2)) / (s * np.sqrt(2.0 * np.pi))


def true_crlb(gt: Localizations, shape: tuple[int, int], background: float, camera: Camera,
              pixel: float = 100.0, window: int = 7) -> np.ndarray:
    """Per-axis Cramer-Rao bound (nm) of each true emitter (needs ``gt.sigma``):
    joint Fisher information of it and its (up to 7 nearest) neighbours
    within ``window`` px (x, y, photons each, one background) over the union
    of their windows, at the true parameters, with every emitter's light."""
    H, W = shape
    h = window // 2
    out = np.full(len(gt), np.nan)
    for f in np.unique(gt.frame):
        idx = np.flatnonzero(gt.frame == f)
        x, y, n, s = gt.x[idx] / pixel, gt.y[idx] / pixel, gt.intensity[idx] * camera.qe, gt.sigma[idx] / pixel
        tree = cKDTree(np.column_stack([x, y]))
        for a in range(len(idx)):
            d, nb = tree.query([x[a], y[a]], k=min(8, len(idx)), distance_upper_bound=window)
            nb = np.atleast_1d(nb)[np.isfinite(np.atleast_1d(d))]
            fx, fy = np.floor(x[nb]).astype(int), np.floor(y[nb]).astype(int)
            ex = np.arange(max(0, fx.min() - h), min(W, fx.max() + h + 1), dtype=float)
            ey = np.arange(max(0, fy.min() - h), min(H, fy.max() + h + 1), dtype=float)
            lit = tree.query_ball_point([ex.mean() + 0.5, ey.mean() + 0.5], 0.75 * (len(ex) + len(ey)) + 12)
            mu = np.full((len(ey), len(ex)), background * camera.qe + camera.read_variance_e)
            for j in lit:
                mu += n[j] * np.outer(_axis(ey, y[j], s[j])[0], _axis(ex, x[j], s[j])[0])
            jac = []
            for j in nb:
                ax, dax = _axis(ex, x[j], s[j])
                ay, day = _axis(ey, y[j], s[j])
                jac += [n[j] * np.outer(ay, dax), n[j] * np.outer(day, ax), np.outer(ay, ax)]
            jac = np.array([q.ravel() for q in jac + [np.ones_like(mu)]])
            fisher = (jac / mu.ravel()) @ jac.T / camera.excess_noise
            try:
                inv = np.linalg.inv(fisher)
            except np.linalg.LinAlgError:
                continue
            out[idx[a]] = np.sqrt(0.5 * (inv[0, 0] + inv[1, 1])) * pixel
    return out


def true_ratio(gt: Localizations, locs: Localizations, crlb: np.ndarray) -> str:
    """Per-axis RMSE of the pairs within 100 nm against their emitters' true bound."""
    gi, pi, _ = match(gt, locs, 100.0)
    e = np.concatenate([locs.x[pi] - gt.x[gi], locs.y[pi] - gt.y[gi]])
    c = crlb[gi]
    rmse, mean, rms = np.sqrt(np.mean(e**2)), np.nanmean(c), np.sqrt(np.nanmean(c**2))
    return f"{rmse:.1f} / {mean:.1f} = {rmse / mean:.2f}; / {rms:.1f} = {rmse / rms:.2f}"


def crlb_ratio(gt: Localizations, fit, rows) -> tuple[float, float, float, int]:
    """Per-axis RMSE of ``rows`` (bool, fitted rows) matched within 100 nm,
    the RMS and mean of their Cramer-Rao bound, and their count."""
    locs = fit.locs
    gi, pi, _ = match(gt, locs, 100.0)
    keep = rows[pi] & np.isfinite(locs.uncertainty[pi])
    gi, pi = gi[keep], pi[keep]
    e = np.concatenate([locs.x[pi] - gt.x[gi], locs.y[pi] - gt.y[gi]])
    u = locs.uncertainty[pi]
    if len(pi) < 10:
        return np.nan, np.nan, np.nan, len(pi)
    return float(np.sqrt(np.mean(e**2))), float(np.sqrt(np.mean(u**2))), float(np.mean(u)), len(pi)


def kept_z(gt: Localizations, locs: Localizations, rows, nearest=None) -> str:
    """std of (error / reported uncertainty) per axis of ``rows`` of
    ``locs`` matched within 100 nm, over all of them, over the third with
    the smallest and the largest uncertainty, and, given the distance to
    each row's ``nearest`` other detection (nm), over the third for which it
    is closest and farthest in their PSF's sigmas: "all (n); bright / dim;
    close / far"."""
    gi, pi, _ = match(gt, locs, 100.0)
    keep = rows[pi] & np.isfinite(locs.uncertainty[pi])
    gi, pi = gi[keep], pi[keep]
    if len(pi) < 30:
        return f"- ({len(pi)})"
    u = locs.uncertainty[pi]
    z = np.column_stack([(locs.x[pi] - gt.x[gi]) / u, (locs.y[pi] - gt.y[gi]) / u])
    lo, hi = np.quantile(u, [1 / 3, 2 / 3])
    out = f"{np.std(z):.2f} ({len(pi)}); {np.std(z[u <= lo]):.2f} / {np.std(z[u >= hi]):.2f}"
    if nearest is None:
        return out
    r = nearest[pi] / locs.sigma[pi]
    near, far = np.quantile(r, [1 / 3, 2 / 3])
    return out + f"; {np.std(z[r <= near]):.2f} / {np.std(z[r >= far]):.2f}"


def run_set(frames, gt, cam, px: float = 100.0, model=None) -> list[str]:
    """The table's cells for one set of ``px`` nm camera pixels (``model``: None, the default, or a name)."""
    cells = []
    for refine in (False, True):
        res = reconstruct(frames, model, pixel_size=px, localize=True, refine=refine, camera=cam)
        locs = res.localizations
        a, b = evaluate(gt, locs, 250.0), evaluate(gt, locs, 100.0)
        cells += [f"{a.jaccard:.3f}", f"{a.rmse:.1f}", f"{b.rmse:.1f}"]
        if not refine:
            found = locs
            continue
        c = calibration(gt, locs)
        ci = calibration(gt, locs, (frames.shape[1] * px, frames.shape[2] * px))
        report = fit_report(res.info["fit"], locs)
        total = max(1, report["total"])
        held, failed = (report["crowded"] + report["pulled"]) / total, sum(report["failed"].values()) / total
        # the same fits with their status and the bare Cramer-Rao bound
        # (no network error added to the crowded rows, no chi-square scaling
        # of the free fits' bound)
        camera = cam or Camera()
        photons = camera.to_photons(torch.from_numpy(np.asarray(frames, np.float32)))
        settings = R.refine_settings(px, sigma_init_nm=R.fit_sigma_init(res.info))
        found = R.merge_splits(photons, found, px, camera, settings)[0]  # as the run did
        bare = refine_fits(photons, found, px, camera, threads=2, **{**settings, "chi2_scale": False})
        reported = np.isin(bare.status, REPORTED)
        ra, crms, cmean, _ = crlb_ratio(gt, bare, reported)
        # the rows kept at the network's position (the status of these fits;
        # reconstruct refined the same detections in one call: the same
        # rows, with the reported uncertainty)
        assert np.array_equal(locs.frame, found.frame) and np.array_equal(locs.x[~bare.ok], found.x[~bare.ok])
        kept = np.isin(bare.status, (CROWDED, PULLED))
        rf, frms, _, nf = crlb_ratio(gt, bare, bare.status == OK)
        cells += [f"{ra:.1f} / {crms:.1f} = {ra / crms:.2f} (mean bound {cmean:.1f})",
                  f"{rf:.1f} / {frms:.1f} = {rf / frms:.2f} ({nf})",
                  true_ratio(gt, locs, true_crlb(gt, frames.shape[1:], 35.0, camera, pixel=px)) if cam is not None
                  else "-",
                  f"{c['photons']:.3f}", f"{c['z_std']:.2f} ({c['n_iso']}); {ci['z_std']:.2f} ({ci['n_iso']})",
                  kept_z(gt, locs, kept, bare.nearest * px),
                  f"{100 * held:.0f}%",
                  f"{100 * failed:.0f}%"]
    return cells


def timings(repeats: int, model: str = "default") -> list[str]:
    seq = SHARED / "bundled_tubes_hd" / "sequence"
    if not seq.is_dir():
        return ["(Bundled Tubes HD not found: no timings)"]
    if repeats < 1:
        return ["(timings not run: `--repeats 0`; see benchmarks/results/speed_processes.md)"]
    out = Path("/tmp/dsir_calibrated_bench.csv")
    times = {"none": [], "mle": []}
    for _ in range(repeats):
        for refine in ("none", "mle"):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "napari_dsir.cli", "localize", str(seq), "-o", str(out),
                            "--refine", refine, "--model", model, "--overwrite", "-q"], check=True, capture_output=True)
            times[refine].append(time.perf_counter() - t0)
    a, b = np.median(times["none"]), np.median(times["mle"])
    return ["| `dsir localize` on Bundled Tubes HD (361 frames) | seconds (median of "
            f"{repeats}) |", "|---|---|", f"| `--refine none` | {a:.1f} |", f"| `--refine mle` (default) | {b:.1f} |",
            "", f"Refinement adds {100 * (b / a - 1):.0f}% to the whole process."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="default", help="a shipped model's name or a checkpoint")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "calibrated.md")
    args = ap.parse_args()
    lines = [
        "# Calibrated localizations (`python benchmarks/calibrated.py`)", "",
        f"Run on {time.strftime('%Y-%m-%d')}, {cpu_name()}, {args.frames} test frames per simulated set, "
        f"the {args.model} model with its own threshold (no tuning), camera as given.", "",
        "| set | J250 none | RMSE250 none | RMSE100 none | J250 mle | RMSE250 mle | RMSE100 mle | "
        "RMSE / rms CRLB per axis, all fitted (100 nm pairs) | same, free fits only (n) | "
        "RMSE / true CRLB per axis (mean; rms), all matched | photons fitted/true | "
        "std(err/unc), isolated (n); away from the edges (n) | "
        "std(err/unc), network position kept (n); brightest / dimmest third; nearest detection closest / "
        "farthest third | network position kept | "
        "failed fits |",
        "|---" * 15 + "|",
    ]
    for name, _d, frames, gt, cam, px in sets(args.frames):
        cells = run_set(frames, gt, cam, px, args.model)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    lines += ["", "Lateral RMSE in nm of the pairs matched within 250 / 100 nm. The first two RMSE / CRLB columns "
              "are per axis and use the bare Cramer-Rao bound of each fit (the reported uncertainty of crowded rows "
              "also holds the network's calibrated error, that of free fits the square root of their reduced "
              "chi-square where above 1); the third, the true bound of each matched emitter (the "
              "simulated sets only: the ThunderSTORM demo's background and camera are not known; at 4-6 /um^2 the "
              "true bound of emitters a few tens of nm apart runs to hundreds of nm while the pairs' errors stop "
              "at the 100 nm of the matching: ratios below 1 there say that, not that an estimator beats the "
              "bound); std(err/unc) uses the reported uncertainty (for the rows kept at the network's position: "
              "their bound and the network's calibrated error, which grows with the bound and the PSF's width, "
              "changes with the density of detections around and falls with the distance to the nearest one, in "
              "quadrature; thirds by that uncertainty, then by that distance in PSF sigmas).", ""]
    lines += timings(args.repeats, args.model)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

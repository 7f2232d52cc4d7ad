"""MLE refinement (napari_dsir.fit.refine) on simulated emitters.

Isolated emitters (a 4x4 grid per 48x48 px frame, 11 px apart, 100 nm
pixels), FWHM 200-300 nm, 200-5,000 photons, background 10-50 photons/px,
seen through three cameras:

- sCMOS-like, baseline 100 ADU, 1 e-/ADU;
- baseline 400 ADU, 0.5 e-/ADU, 2 e- rms read noise, QE 0.8;
- EMCCD, baseline 100 ADU, 4.8 e-/ADU, EM gain 100 (gamma-distributed
  amplification), QE 0.95.

Frames are rounded ADU, converted with `Camera.to_photons`; fits start from
the truth plus 30 nm Gaussian noise per axis (as the network's peaks would).
Reports, per photon range: the fits flagged, RMSE per axis vs the mean
Cramer-Rao bound (CRLB), std(error / uncertainty), photon and background
median ratios; then fits per second (CPU threads, float64/float32), and a
dense scene (DSIR preset density, 2 emitters/um^2) fitted jointly vs one by
one. Writes benchmarks/results/fit.md.

Also, with the keywords `reconstruct` passes (float32, max_shift_px=1,
max_group=3) on the calibrated benchmark's sCMOS camera (baseline 400 ADU,
0.5 e-/ADU, read noise 1.5 e-; FWHM 250-350 nm, background 35 photons/px,
200-5,000 photons, starts truth + 25 nm): flag rate, RMSE vs CRLB,
std(err/unc), photons, and microseconds per detection, against a baseline
fit.py (``--baseline``, e.g. the previous commit's, timed in the same process).

    python benchmarks/fit.py [--emitters 1008] [--device cpu] [--repeats 3] [--baseline OLD_FIT_PY]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _machine import describe
from scipy.spatial import cKDTree

from napari_dsir.camera import Camera
from napari_dsir.fit import refine
from napari_dsir.locs import Localizations
from napari_dsir.simulate import FWHM_TO_SIGMA, SimulationConfig, render_emitters, simulate

P = 100.0
OUT = Path(__file__).resolve().parent / "results" / "fit.md"
BINS = [(200, 500), (500, 1000), (1000, 2000), (2000, 5000)]


def scene(n_emitters: int, seed: int = 0):
    """Expected photons per pixel (frame, y, x) of isolated emitters, truth."""
    rng = np.random.default_rng(seed)
    size, per = 48, 16
    g = np.arange(4) * 11 + 7.5
    gx, gy = (a.ravel() for a in np.meshgrid(g, g))
    n_frames = -(-n_emitters // per)
    mus, rows = [], []
    for f in range(n_frames):
        x = (gx + rng.uniform(-0.5, 0.5, per)) * P
        y = (gy + rng.uniform(-0.5, 0.5, per)) * P
        n = rng.uniform(200, 5000, per)
        s = rng.uniform(200, 300, per) * FWHM_TO_SIGMA
        b = rng.uniform(10, 50)
        mus.append(render_emitters(x, y, n, s, (size, size), P) + b)
        rows.append(np.column_stack([np.full(per, f), x, y, n, s, np.full(per, b)]))
    t = np.concatenate(rows)
    truth = {k: t[:, i] for i, k in enumerate(["frame", "x", "y", "photons", "sigma", "bg"])}
    truth["frame"] = truth["frame"].astype(int)
    return np.stack(mus), truth


def camera_frames(mu: np.ndarray, cam: Camera, rng) -> np.ndarray:
    """Rounded ADU frames: photons -> photoelectrons (QE, Poisson) -> EM
    amplification (gamma) -> read noise -> ADU."""
    e = rng.poisson(mu * cam.qe).astype(np.float64)
    if cam.em_gain > 1:
        e = rng.gamma(np.maximum(e, 1e-12), cam.em_gain) * (e > 0)
    if cam.read_noise > 0:
        e = e + rng.normal(0, cam.read_noise, e.shape)
    return np.clip(np.round(cam.baseline + e / cam.sensitivity), 0, 65535).astype(np.uint16)


def metrics(res, truth, sel) -> dict:
    ok = res.ok & sel
    ex, ey = res.locs.x[ok] - truth["x"][ok], res.locs.y[ok] - truth["y"][ok]
    u = res.locs.uncertainty[ok]
    rmse = float(np.sqrt(np.mean(np.r_[ex, ey] ** 2)))
    return {
        "n": int(sel.sum()),
        "flagged": int((sel & ~res.ok).sum()),
        "rmse": rmse,
        "crlb": float(u.mean()),
        "ratio": rmse / float(u.mean()),
        "ratio_rms": rmse / float(np.sqrt(np.mean(u**2))),
        "z": float(np.r_[ex / u, ey / u].std()),
        "photons": float(np.median(res.locs.photons[ok] / truth["photons"][ok])),
        "bg": float(np.median(res.locs.background[ok] / truth["bg"][ok])),
        "bias": float(max(abs(ex.mean()), abs(ey.mean()))),
    }


def accuracy_table(cams: dict, mu, truth, device, lines: list[str]) -> None:
    rng = np.random.default_rng(1)
    start = Localizations(
        truth["frame"], truth["x"] + rng.normal(0, 30, len(truth["x"])), truth["y"] + rng.normal(0, 30, len(truth["x"]))
    )
    lines += [
        "| camera | photons | emitters | flagged | RMSE/axis (nm) | mean CRLB (nm) | RMSE / mean CRLB "
        "| RMSE / rms CRLB | std(err/unc) | photons ratio (median) | background ratio (median) | max bias (nm) |",
        "|---" * 12 + "|",
    ]
    for name, cam in cams.items():
        frames = torch.as_tensor(cam.to_photons(camera_frames(mu, cam, rng)), device=device)
        res = refine(frames, start, P, cam)
        for lo, hi in BINS + [(200, 5000)]:
            sel = (truth["photons"] >= lo) & (truth["photons"] < hi)
            m = metrics(res, truth, sel)
            label = f"{lo}-{hi}" if (lo, hi) != (200, 5000) else "**all**"
            lines.append(
                f"| {name} | {label} | {m['n']} | {m['flagged']} | {m['rmse']:.1f} | {m['crlb']:.1f} "
                f"| {m['ratio']:.2f} | {m['ratio_rms']:.2f} | {m['z']:.2f} | {m['photons']:.3f} | {m['bg']:.3f} "
                f"| {m['bias']:.2f} |"
            )
        print(f"{name}: {res.summary()}", file=sys.stderr)


def speed_table(mu, truth, device, repeats, lines: list[str]) -> None:
    rng = np.random.default_rng(2)
    cam = Camera()
    frames = torch.as_tensor(cam.to_photons(camera_frames(mu, cam, rng)), device=device)
    n = len(truth["x"])
    start = Localizations(truth["frame"], truth["x"] + rng.normal(0, 30, n), truth["y"] + rng.normal(0, 30, n))
    lines += [
        "| device | torch threads (`threads=`) | dtype | fits/s (median) | s per 1,000 fits |",
        "|---|---|---|---|---|",
    ]
    thread_opts = [1, 2] if device == "cpu" else [None]
    for threads in thread_opts:
        for dtype in (torch.float64, torch.float32):
            refine(frames[:4], start.select(start.frame < 4), P, cam, dtype=dtype, threads=threads)  # warm-up
            ts = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                if device != "cpu":
                    torch.cuda.synchronize()
                refine(frames, start, P, cam, dtype=dtype, threads=threads)
                if device != "cpu":
                    torch.cuda.synchronize()
                ts.append(time.perf_counter() - t0)
            t = statistics.median(ts)
            dname = str(dtype).replace("torch.", "")
            lines.append(f"| {device} | {threads or '-'} | {dname} | {n / t:.0f} | {1000 * t / n:.2f} |")


def load_baseline(path: Path):
    """Import another version of fit.py as a module of the package (relative imports work)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("napari_dsir._fit_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    mod.__package__ = "napari_dsir"
    spec.loader.exec_module(mod)
    return mod


def reconstruct_settings_table(device, baseline, repeats, lines: list[str]) -> None:
    from napari_dsir import fit as current

    cam = Camera(400.0, 0.5, 1.0, 1.0, read_noise=1.5)
    rng = np.random.default_rng(5)
    mu, truth = scene(1008, seed=5)
    # same grid, wider PSFs and the calibrated benchmark's background
    n_frames = mu.shape[0]
    sig = rng.uniform(250, 350, len(truth["x"])) * FWHM_TO_SIGMA
    nph = rng.uniform(200, 5000, len(truth["x"]))
    mu = np.stack([
        render_emitters(truth["x"][truth["frame"] == f], truth["y"][truth["frame"] == f], nph[truth["frame"] == f],
                        sig[truth["frame"] == f], mu.shape[1:], P) + 35.0 for f in range(n_frames)
    ])
    truth = {**truth, "photons": nph, "sigma": sig, "bg": np.full(len(nph), 35.0)}
    e = rng.poisson(mu) + rng.normal(0, 1.5, mu.shape)
    frames = torch.as_tensor(cam.to_photons(np.round(400 + e / 0.5)).astype(np.float32), device=device)
    n = len(nph)
    start = Localizations(truth["frame"], truth["x"] + rng.normal(0, 25, n), truth["y"] + rng.normal(0, 25, n))
    kw = dict(window=7, dtype=torch.float32, max_shift_px=1.0, max_group=3)
    lines += [
        "| fit.py | photons | emitters | flagged | RMSE/axis (nm) | mean CRLB (nm) | RMSE / mean CRLB "
        "| RMSE / rms CRLB | std(err/unc) | photons ratio | us per detection (median of repeats) |",
        "|---" * 11 + "|",
    ]
    mods = [("this commit", current)] + ([("baseline", baseline)] if baseline is not None else [])
    times = {name: [] for name, _ in mods}
    for _ in range(max(1, repeats)):  # interleaved: both see the same load
        for name, mod in mods:
            t0 = time.perf_counter()
            mod.refine(frames, start, P, cam, **kw)
            times[name].append(time.perf_counter() - t0)
    for name, mod in mods:
        res = mod.refine(frames, start, P, cam, **kw)
        us = 1e6 * statistics.median(times[name]) / n
        for lo, hi in [(200, 1000), (1000, 5000), (200, 5000)]:
            sel = (truth["photons"] >= lo) & (truth["photons"] < hi)
            m = metrics(res, truth, sel)
            lines.append(
                f"| {name} | {lo}-{hi} | {m['n']} | {m['flagged']} | {m['rmse']:.1f} | {m['crlb']:.1f} "
                f"| {m['ratio']:.2f} | {m['ratio_rms']:.2f} | {m['z']:.2f} | {m['photons']:.3f} | {us:.0f} |"
            )


def dense_table(device, lines: list[str]) -> None:
    cfg = SimulationConfig(frame_size=(32, 32), density=2.0, photons=(1000, 3000), background=20)
    frames, gt = simulate(150, cfg, seed=2)
    cam = Camera(100, 1.0)
    ph = torch.as_tensor(cam.to_photons(frames), device=device)
    rng = np.random.default_rng(0)
    start = Localizations(gt.frame, gt.x + rng.normal(0, 30, len(gt)), gt.y + rng.normal(0, 30, len(gt)))
    inner = (gt.x > 300) & (gt.x < 2900) & (gt.y > 300) & (gt.y < 2900)
    pts = np.column_stack([gt.frame * 1e6, gt.x, gt.y])
    dnn = cKDTree(pts).query(pts, k=2)[0][:, 1]
    lines += [
        "| fit | neighbours | emitters | flagged | RMSE/axis (nm) | median abs error (nm) | median CRLB (nm) "
        "| std(err/unc) | photons ratio | s |",
        "|---" * 10 + "|",
    ]
    for label, mg in (("one by one (max_group=1, neighbours' light held fixed)", 1), ("joint (max_group=5)", 5)):
        t0 = time.perf_counter()
        res = refine(ph, start, P, cam, max_group=mg)
        dt = time.perf_counter() - t0
        for nlabel, sel in (("nearest > 300 nm", dnn > 300), ("nearest < 300 nm", dnn <= 300)):
            s = inner & sel
            ok = res.ok & s
            e = np.r_[res.locs.x[ok] - gt.x[ok], res.locs.y[ok] - gt.y[ok]]
            u = np.r_[res.locs.uncertainty[ok], res.locs.uncertainty[ok]]
            lines.append(
                f"| {label} | {nlabel} | {s.sum()} | {(s & ~res.ok).sum()} | {np.sqrt(np.mean(e**2)):.1f} "
                f"| {np.median(np.abs(e)):.1f} | {np.median(u):.1f} | {(e / u).std():.2f} "
                f"| {np.median(res.locs.photons[ok] / gt.intensity[ok]):.3f} | {dt:.1f} |"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--emitters", type=int, default=1008)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--baseline", type=Path, default=None, help="another fit.py to compare with")
    ap.add_argument("--note", default="", help="a sentence on the machine's load (e.g. a training run)")
    args = ap.parse_args()
    mu, truth = scene(args.emitters)
    cams = {
        "baseline 100 ADU, 1 e-/ADU": Camera(100, 1.0),
        "baseline 400 ADU, 0.5 e-/ADU, read noise 2 e-, QE 0.8": Camera(400, 0.5, 1, 0.8, read_noise=2.0),
        "EMCCD: baseline 100 ADU, 4.8 e-/ADU, EM gain 100, QE 0.95": Camera(100, 4.8, 100, 0.95),
    }
    cmd = "python benchmarks/fit.py" + "".join(
        f" --{k} {v}" for k, v in (("emitters", args.emitters), ("device", args.device), ("repeats", args.repeats))
    )
    lines = [
        "# MLE refinement (`napari_dsir.fit.refine`) on simulated emitters",
        "",
        f"Run on {time.strftime('%Y-%m-%d')} with `{cmd}` on {describe()}, torch {torch.__version__}, "
        f"device {args.device}; load average at the start {os.getloadavg()[0]:.1f} (the machine is shared: "
        "timings are indicative). " + args.note,
        "",
        f"## Isolated emitters ({len(truth['x'])}, FWHM 200-300 nm, 200-5,000 photons, background 10-50 photons/px)",
        "",
        "Starts: truth + 30 nm per axis. RMSE per axis over the fits not flagged; CRLB = the reported uncertainty "
        "(per axis). Targets: RMSE <= 1.3x mean CRLB and <= 25 nm at typical photon counts, photons within 5%, "
        "std(err/unc) in 0.8-1.25. RMSE / rms CRLB compares like with like when the bound varies within a bin.",
        "",
    ]
    accuracy_table(cams, mu, truth, args.device, lines)
    lines += ["", "## With reconstruct's keywords (float32, max_shift_px=1, max_group=3), sCMOS 400 ADU, 0.5 e-/ADU, "
              "read noise 1.5 e-, FWHM 250-350 nm, background 35 photons/px, isolated, starts truth + 25 nm", ""]
    baseline = load_baseline(args.baseline) if args.baseline else None
    reconstruct_settings_table(args.device, baseline, args.repeats, lines)
    lines += ["", f"## Speed ({len(truth['x'])} isolated emitters, 48x48 px frames, whole refine call)", ""]
    speed_table(mu, truth, args.device, args.repeats, lines)
    lines += [
        "",
        "## Dense frames: DSIR preset density (2 emitters/um^2, 32x32 px, 1,000-3,000 photons, background 20)",
        "",
        "150 frames, emitters at least 300 nm from the frame edge; starts: truth + 30 nm. Errors against each "
        "emitter's own truth. Default `threads=1`.",
        "",
    ]
    dense_table(args.device, lines)
    lines += [
        "",
        "## Reading",
        "",
        "- From 500 photons up, every camera is within the targets: RMSE 0.95-1.14x the mean CRLB, "
        "std(err/unc) 0.94-1.07, photons within 1.5%, background within 1%. At 200-500 photons on "
        "10-50 photons/px of background the MLE is 1.2-1.3x the bound (std(err/unc) 1.16-1.18) and "
        "photons are within 5%: the usual loss of MLE efficiency at low signal.",
        "- The **all** rows mix bounds from 2 to 20 nm: RMSE over all is dominated by the dimmest emitters, "
        "so RMSE / mean CRLB exceeds 1.3 there while RMSE / rms CRLB (like with like) is 1.05-1.11.",
        "- EMCCD: uncertainties include the excess-noise factor 2 on the variance (about sqrt(2) larger than "
        "the sCMOS-like camera at the same photons) and std(err/unc) stays about 1, so the bound holds.",
        "- Speed: on this shared 2-core machine two torch threads were far slower than one for these small "
        "batched operations (thread contention), hence `threads=1` by default.",
        "- Dense frames: joint fits cut the RMSE of well-separated emitters about 3x compared with fitting each "
        "alone, and cut the error of emitters with a neighbour closer than 300 nm; those remain hard "
        "(std(err/unc) about 4: the bound does not cover mis-assigned close pairs).",
        "- With reconstruct's keywords, isolated emitters on the calibrated benchmark's sCMOS camera are "
        'within every target (flags ~0.1%, RMSE / rms CRLB 1.0, std(err/unc) 1.0-1.06, photons within 1%) at '
        'about 20 us per detection, for the baseline as for this commit: the fitter, its CRLB (checked '
        'against the scatter over 400 noise draws and the Mortensen bound in tests/test_fit.py) and its flags'
        ' are not what fails in benchmarks/results/calibrated.md.',
        '- What fails there are fits next to emitters the network did not detect (recall ~0.53 at 1 /um^2 in '
        'the working tree, bright emitters included; and emitters in the 200 nm margin outside the frame): '
        'their light pulls the fit (errors 3-15x the bound). `max_chi2_sigma=4` flags most such fits '
        '(BAD_FIT, off by default) but costs many flags; the cure is detecting them (or fitting the residual '
        'peaks).',
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Post-processing benchmarks: rendering speed, RCC drift accuracy, FRC.

- render: 1,000,000 localizations into a 4096 x 4096 image (a 512 x 512 px
  camera of 100 nm on the 12.5 nm DSIR grid), histogram and Gaussian modes
  (each localization's own Mortensen uncertainty, and a fixed 12.5 nm sigma);
  median of ``--repeats`` wall-clock times.
- drift: structured movies from `napari_dsir.structures` (filaments, blinking,
  localization noise from the photons), the RCC estimate against the true
  drift: RMS over all frames of the 2-D error after removing the best constant
  (a drift is defined up to a constant), and the RMS with both zeroed at frame 0.
  (a) 10,000 frames, 1 ON/um^2, 300 nm linear drift + a random walk;
  (b) 500 frames, 6 ON/um^2, 100 nm linear drift + a random walk.
- FRC: see the results file for the definition of the comparison.

Prints markdown and writes benchmarks/results/postprocess.md.

    python benchmarks/postprocess.py [--repeats 3] [--seeds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from _machine import describe

from napari_dsir.drift import estimate_drift
from napari_dsir.errors import DSIRError
from napari_dsir.locs import Localizations
from napari_dsir.render import render
from napari_dsir.resolution import frc, frc_images, nena
from napari_dsir.structures import StructureConfig, localization_precision, place_labels, simulate_structure_locs

RESULTS = Path(__file__).resolve().parent / "results" / "postprocess.md"
PHOTONS = (200.0, 2000.0)


def _timed(fn, repeats):
    """Median wall-clock seconds, all runs, the median CPU seconds of the process, the output."""
    times, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(times), times, statistics.median(cpu), out


def bench_render(repeats: int) -> list[str]:
    rng = np.random.default_rng(0)
    n, size, p = 1_000_000, 4096, 12.5
    photons = rng.uniform(*PHOTONS, n)
    locs = Localizations(
        rng.integers(0, 10_000, n), rng.uniform(0, size * p, n), rng.uniform(0, size * p, n),
        photons=photons, uncertainty=localization_precision(photons, 110.0, 100.0, 20.0),
    )
    unc = locs.uncertainty
    lines = [
        "## Rendering 1,000,000 localizations into 4096 x 4096 (12.5 nm pixels)",
        "",
        f"Uniform positions; uncertainty from Mortensen's formula for {PHOTONS[0]:g}-{PHOTONS[1]:g} photons, "
        f"PSF sigma 110 nm, 100 nm camera pixels, 20 photons/px background: median {np.median(unc):.1f} nm "
        f"(5-95 %: {np.percentile(unc, 5):.1f}-{np.percentile(unc, 95):.1f} nm), i.e. "
        f"{np.median(unc) / p:.2f} px. Wall-clock: median of {repeats} runs (and every run); CPU: median "
        "process CPU time (less sensitive to other jobs on the machine; numpy and scipy run these steps "
        "on one core).",
        "",
        "| mode | median wall s | runs s | median CPU s | image sum |",
        "|---|---|---|---|---|",
    ]
    cases = [
        ("hist", dict(mode="hist")),
        ("gauss, sigma = own uncertainty", dict(mode="gauss")),
        ("gauss, sigma = 12.5 nm (1 px)", dict(mode="gauss", sigma_nm=12.5)),
        ("hist, coloured by frame (RGB)", dict(mode="hist", by_frame=True)),
    ]
    for name, kw in cases:
        med, times, cpu, img = _timed(lambda kw=kw: render(locs, p, shape=(size, size), **kw), repeats)
        total = f"{img.sum():,.0f}" if img.ndim == 2 else f"RGB {img.shape}"
        lines.append(f"| {name} | {med:.2f} | {', '.join(f'{t:.2f}' for t in times)} | {cpu:.2f} | {total} |")
    return lines


def _rms(est, true) -> tuple[float, float]:
    ex, ey = est.x - true.x, est.y - true.y
    free = float(np.sqrt(np.mean((ex - ex.mean()) ** 2 + (ey - ey.mean()) ** 2)))
    zero = float(np.sqrt(np.mean((ex - ex[0]) ** 2 + (ey - ey[0]) ** 2)))
    return free, zero


def bench_drift(seeds: int) -> list[str]:
    lines = [
        "## Drift (RCC) on simulated structured movies",
        "",
        "Filaments (12 worm-like chains, persistence 2 um, 0.2 fluorophores/nm) in 6.4 x 6.4 um "
        f"(a 64 x 64 px camera), blinking bursts of 1.5 frames on average, {PHOTONS[0]:g}-{PHOTONS[1]:g} photons, "
        "localization noise from Mortensen's precision (PSF sigma 110 nm, 100 nm pixels, 20 photons/px "
        "background: median {MEDIAN} nm). Drift: linear plus a Gaussian "
        "random walk. RCC at 20 nm pixels, 1 px blur, cubic interpolation. Error: RMS over all frames of the "
        "2-D difference from the true drift after removing the best constant offset (a drift is defined up "
        "to a constant); in brackets, with both zeroed at frame 0.",
        "",
        "| movie | segments | localizations | true drift range (x, y) nm | RMS error nm per seed | median | "
        "target | time s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    cases = [
        ("10,000 frames, 1 /um^2, 300 nm linear + walk 0.2 nm/frame", 10_000, 1.0, (0.03, 0.0075), 0.2, 10.0),
        ("10,000 frames, 1 /um^2, 300 nm linear + walk 0.5 nm/frame", 10_000, 1.0, (0.03, 0.0075), 0.5, 10.0),
        ("500 frames, 6 /um^2, 100 nm linear + walk 0.3 nm/frame", 500, 6.0, (0.2, -0.05), 0.3, 15.0),
    ]
    medians = []
    for name, n_frames, density, vel, walk, target in cases:
        for segments in (10, 20):
            errs, zeros, times, counts, ranges = [], [], [], [], []
            for seed in range(seeds):
                cfg = StructureConfig(density=density, photons=PHOTONS, drift_velocity_nm=vel, drift_walk_nm=walk)
                locs, _, truth = simulate_structure_locs(n_frames, cfg, seed=seed)
                t = time.perf_counter()
                est = estimate_drift(locs, segments=segments)
                times.append(time.perf_counter() - t)
                free, zero = _rms(est, truth.drift)
                errs.append(free)
                zeros.append(zero)
                counts.append(len(locs))
                medians.append(np.median(locs.uncertainty))
                ranges.append((np.ptp(truth.drift.x), np.ptp(truth.drift.y)))
            rx = np.median([r[0] for r in ranges])
            ry = np.median([r[1] for r in ranges])
            per_seed = ", ".join(f"{e:.1f} ({z:.1f})" for e, z in zip(errs, zeros))
            lines.append(
                f"| {name} | {segments} | {int(np.median(counts)):,} | {rx:.0f}, {ry:.0f} | {per_seed} | "
                f"**{statistics.median(errs):.1f}** | <= {target:g} | {statistics.median(times):.2f} |"
            )
    lines[2] = lines[2].replace("{MEDIAN}", f"{np.median(medians):.1f}")
    return lines


def bench_frc(seeds: int) -> list[str]:
    p = 5.0
    ext = (0.0, 0.0, 6400.0, 6400.0)
    lines = [
        "## FRC",
        "",
        "What an FRC should report is the resolution of one acquisition of half the length, measured "
        "against an *independent* second acquisition of the same sample. The simulation can produce exactly "
        "that: the same fluorophores (filaments, 0.2 /nm) imaged twice with independent blinking and "
        "localization noise, N frames each. Its FRC resolution is the reference ('ground truth FRC'). "
        "`frc()` sees one movie of 2N frames of the same fluorophores and must split it itself; the target "
        "is that its resolution is within 10 % of the reference. The splits: odd/even frames, random "
        "localizations, and random blocks of 100 frames (which keep an emitter's consecutive-frame "
        "repeats in one half). Histograms at 5 nm pixels over the 6.4 um field, Tukey window, 1/7 threshold. "
        "The rows with a fixed precision show that the FRC follows it (about 3 x the precision here).",
        "",
        "| N frames x2, precision | mean ON frames | reference nm | odd/even nm | random nm | blocks nm | "
        "worst deviation |",
        "|---|---|---|---|---|---|---|",
    ]
    for n_frames, precision, mean_on in ((5000, None, 1.5), (5000, None, 4.0), (2000, 10.0, 1.5), (2000, 20.0, 1.5)):
        ref_all, split_all, unc = [], {"odd_even": [], "random": [], "blocks": []}, []
        for seed in range(seeds):
            cfg = StructureConfig(photons=PHOTONS, mean_on_frames=mean_on)
            labels = place_labels(cfg, np.random.default_rng(100 + seed))
            a, _, _ = simulate_structure_locs(n_frames, cfg, labels=labels, seed=10 * seed + 1, precision_nm=precision)
            b, _, _ = simulate_structure_locs(n_frames, cfg, labels=labels, seed=10 * seed + 2, precision_nm=precision)
            m, _, _ = simulate_structure_locs(
                2 * n_frames, cfg, labels=labels, seed=10 * seed + 3, precision_nm=precision
            )
            unc.append(np.median(m.uncertainty))
            halves = (render(h, p, mode="hist", extent=ext) for h in (a, b))
            ref_all.append(frc_images(*halves, p).resolution_nm)
            for split in split_all:
                split_all[split].append(frc(m, p, split=split, extent=ext).resolution_nm)
        ref = statistics.median(ref_all)
        med = {k: statistics.median(v) for k, v in split_all.items()}
        worst = max(abs(v / ref - 1) for v in med.values())
        prec = f"Mortensen (median {np.median(unc):.1f} nm)" if precision is None else f"{precision:g} nm"
        lines.append(
            f"| {n_frames} x2, {prec} | {mean_on:g} | {ref:.1f} | {med['odd_even']:.1f} | {med['random']:.1f} | "
            f"{med['blocks']:.1f} | {100 * worst:.1f} % |"
        )
    lines.append("")
    lines.append(f"Medians over {seeds} seeds (structure, blinking and noise drawn anew for each).")
    lines += ["", "Points with no structure (uniform, frames 0-199 at random: the halves independent), where an FRC "
              "must refuse rather than report a resolution; 50 seeds each:", "",
              "| points | field | seeds refused | resolutions reported (nm) |", "|---|---|---|---|"]
    for n, field in ((3000, 6300.0), (20000, 20000.0)):
        reported = []
        for seed in range(50):
            rng = np.random.default_rng(seed)
            m = Localizations(rng.integers(0, 200, n), rng.uniform(0, field, n), rng.uniform(0, field, n))
            try:
                reported.append(frc(m, p).resolution_nm)
            except DSIRError:
                pass
        shown = ", ".join(f"{v:.0f}" for v in reported) or "none"
        lines.append(f"| {n:,} | {field / 1000:g} um | {50 - len(reported)} of 50 | {shown} |")
    return lines


def bench_nena(seeds: int) -> list[str]:
    lines = [
        "## NeNA",
        "",
        "The same filament movies (5,000 frames, 1 ON/um^2, bursts of 1.5 frames: random neighbours from other "
        "fluorophores are present), NeNA precision against the simulated noise: a fixed precision, or "
        "Mortensen's per localization (from 200-2000 photons), of which the median and the RMS (sqrt of the "
        "mean variance) are given: one s cannot stand for a spread of precisions, and NeNA's fit follows "
        "the peak of the distance histogram, made by the many precise localizations.",
        "",
        "| simulated precision | median nm | RMS nm | NeNA nm per seed | NeNA / RMS - 1 |",
        "|---|---|---|---|---|",
    ]
    for precision in (5.0, 10.0, 20.0, None):
        est, true, med = [], [], []
        for seed in range(seeds):
            cfg = StructureConfig(photons=PHOTONS)
            locs, _, _ = simulate_structure_locs(5000, cfg, seed=seed, precision_nm=precision)
            true.append(float(np.sqrt(np.mean(locs.uncertainty**2))))
            med.append(float(np.median(locs.uncertainty)))
            est.append(nena(locs).precision_nm)
        t = statistics.median(true)
        name = "Mortensen per localization" if precision is None else f"{precision:g} nm"
        lines.append(
            f"| {name} | {statistics.median(med):.2f} | {t:.2f} | {', '.join(f'{e:.2f}' for e in est)} | "
            f"{100 * (statistics.median(est) / t - 1):+.1f} % |"
        )
    return lines


NOTES = """## Notes

- Rendering: the wall-clock times swing with the other jobs on the shared cores (see the load
  average); the CPU time is the work done. Gaussian rendering costs about n x (ceil(6 sigma) + 1)^2
  pixel updates (sigma in pixels, patches to 3 sigma, each normalised so that the image sums to the
  number of localizations inside it): 49 per localization at sigma = 1 px. The pixel integrals come
  from a table (centres on a 1/64 px grid, sigmas on a 0.5 % grid). Where blurring a histogram of a
  10 % sigma bin is cheaper than splatting its patches (wide sigmas), that is done instead. On an
  idle 2-core machine the wall-clock time is about the CPU time (numpy runs these steps on one core).
- Drift: a random walk moves the stage within a segment, which segment averages cannot follow: the
  error grows with the walk (0.5 nm/frame: about 8 nm with 10 segments of 1,000 frames) and falls
  with more, shorter segments as long as each keeps enough localizations for a clear correlation
  peak (`estimate_drift` refuses segments under `min_locs` and correlation peaks that are not clear or
  do not agree, rather than return a wild estimate).
- FRC: with blinking bursts of 1.5-4 frames the odd/even and random splits put an emitter's repeated
  localizations in both halves; here that biased the resolution by at most 3 % (it matters more for
  long bursts: use `split="blocks"` then). The FRC resolution is about 3 x the localization precision
  for these densely labelled filaments; NeNA measures the precision itself.
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    out = [
        "# Post-processing benchmarks (render, drift, FRC)",
        "",
        f"Machine: {describe()}; load average at start {load:.1f} (other jobs shared the cores). "
        "Produced by `python benchmarks/postprocess.py`.",
        "",
    ]
    for part in (
        bench_render(args.repeats), bench_drift(args.seeds), bench_frc(args.seeds), bench_nena(args.seeds),
        NOTES.splitlines(),
    ):
        out += part + [""]
        print("\n".join(part) + "\n", flush=True)
    if not args.no_write:
        RESULTS.parent.mkdir(exist_ok=True)
        RESULTS.write_text("\n".join(out))


if __name__ == "__main__":
    main()

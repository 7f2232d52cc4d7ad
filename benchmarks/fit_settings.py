"""The refinement's iteration cap and fallback passes in `reconstruct` (FIT_MAX_ITER, FIT_FALLBACK_PASSES).

    python benchmarks/fit_settings.py [--out benchmarks/results/fit_settings.md]

On the accuracy benchmark's sCMOS sets at 1 and 6 emitters/um^2
(benchmarks/accuracy.py), the default model's detections are refined by
`napari_dsir.fit.refine` with reconstruct's other keywords, once with
`refine`'s defaults (30 iterations, 2 fallback passes) and once with
reconstruct's (20, 1). Reports the fit time per detection (median of 3, one
torch thread, as `refine` runs), the share of flagged fits and the lateral
RMSE of the kept fits matched within 100 nm.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import accuracy
import numpy as np
import torch
from _machine import describe

from napari_dsir import reconstruct as R
from napari_dsir.camera import Camera
from napari_dsir.evaluate import evaluate
from napari_dsir.fit import refine
from napari_dsir.run import reconstruct

HERE = Path(__file__).resolve().parent
SETTINGS = {"refine's defaults (30 iterations, 2 passes)": {},
            "reconstruct's (20 iterations, 1 pass)": {"max_iter": R.FIT_MAX_ITER,
                                                       "fallback_passes": R.FIT_FALLBACK_PASSES}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "fit_settings.md")
    args = ap.parse_args(argv)
    rows = []
    for name, cam, (frames, gt), _ in accuracy.datasets():
        if name.split(" (")[0] not in ("sCMOS 1 /um^2", "sCMOS 6 /um^2"):
            continue
        found = reconstruct(frames, model="default", pixel_size=100.0, localize=True, refine=False).localizations
        camera = Camera.from_dict(cam)
        photons = camera.to_photons(torch.from_numpy(np.asarray(frames, np.float32)))
        for label, kw in SETTINGS.items():
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                fit = refine(photons, found, 100.0, camera, window=7, dtype=torch.float32,
                             max_shift_px=R.MAX_SHIFT_PX, max_group=R.FIT_MAX_GROUP, **kw)
                times.append(time.perf_counter() - t0)
            kept = fit.locs.select(fit.ok)
            m = evaluate(gt, kept, 100)
            us = 1e6 * statistics.median(times) / max(1, len(found))
            rows.append(f"| {name} | {label} | {len(found)} | {us:.0f} | {100 * (1 - fit.ok.mean()):.0f}% | "
                        f"{m.rmse:.1f} |")
            print(rows[-1], flush=True)
    head = ["# Refinement settings (`python benchmarks/fit_settings.py`)", "",
            f"Run on {time.strftime('%Y-%m-%d')} on {describe()}; default model's detections, "
            f"median of {args.repeats} `refine` calls.", "",
            "| set | settings | detections | us per detection | flagged | RMSE of kept fits, 100 nm pairs (nm) |",
            "|---|---|---|---|---|---|"]
    args.out.write_text("\n".join(head + rows) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

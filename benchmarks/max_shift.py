"""How far a refined fit may move from the network's detection (`reconstruct.MAX_SHIFT_PX`).

    python benchmarks/max_shift.py [--out benchmarks/results/max_shift.md]

Runs `reconstruct(..., localize=True, refine=True)` with the default model on
the ThunderSTORM demo and the accuracy benchmark's sCMOS sets at 1, 4 and 8
emitters/um^2 (benchmarks/accuracy.py), holding fits that end more than 1,
0.5 or 0.35 camera px from their detection at the network's position
(status "pulled": photons and uncertainty fitted there). Reports Jaccard at
100 nm, lateral RMSE of the pairs within 250 and 100 nm and the share of
failed fits (`napari_dsir.fit.fit_report`: crowded and pulled detections,
which keep the network's position with photons fitted there, are not
failures).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import accuracy
from _machine import describe

from napari_dsir import reconstruct as R
from napari_dsir.evaluate import evaluate
from napari_dsir.fit import fit_report
from napari_dsir.run import reconstruct

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "max_shift.md")
    args = ap.parse_args(argv)
    sets = [s for s in accuracy.datasets() if s[0].startswith(("ThunderSTORM", "sCMOS 1 ", "sCMOS 4", "sCMOS 8"))]
    rows = []
    default = R.MAX_SHIFT_PX
    try:
        for shift in (1.0, 0.5, 0.35):
            R.MAX_SHIFT_PX = shift
            for name, cam, (frames, gt), _ in sets:
                res = reconstruct(frames, model="default", pixel_size=100.0, localize=True, refine=True,
                                  camera=cam, device="cpu")
                a, b = evaluate(gt, res.localizations, 250), evaluate(gt, res.localizations, 100)
                report = fit_report(res.info["fit"], res.localizations)
                failed = sum(report["failed"].values()) / max(1, report["total"])
                rows.append(f"| {shift:g} | {name} | {b.jaccard:.3f} | {a.rmse:.1f} | {b.rmse:.1f} | "
                            f"{100 * failed:.0f}% |")
                print(rows[-1], flush=True)
    finally:
        R.MAX_SHIFT_PX = default
    head = ["# Maximum shift of a refined fit (`python benchmarks/max_shift.py`)", "",
            f"Run on {time.strftime('%Y-%m-%d')} on {describe()}; default model, its shipped threshold, "
            f"the camera given; the package's setting is {default:g} px.", "",
            "| max shift (camera px) | set | Jaccard 100 nm | RMSE 250 nm | RMSE 100 nm | failed fits |",
            "|---|---|---|---|---|---|"]
    args.out.write_text("\n".join(head + rows) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

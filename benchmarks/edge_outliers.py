"""Where the std(error / uncertainty) of isolated emitters at 6 /um^2 comes from.

    python benchmarks/edge_outliers.py [--out benchmarks/results/edge_outliers.md]

On `benchmarks/calibrated.py`'s sCMOS set at 6 /um^2 (camera 400 ADU, 0.5
e-/ADU; its seed, 100 frames), for the default and the `wide` model as runs
make them (refinement on): the isolated emitters' std of (error /
uncertainty) per axis (`calibrated.calibration`), the largest 2-D |error| /
uncertainty with each emitter's distance to the frame's edge, and the std
without the 3 largest and as 1.4826 x the median absolute value (a robust
spread). The truth lists no emitter outside the frame while the simulator
places some up to 200 nm outside, so "isolated" cannot be known near edges.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import calibrated
import numpy as np
from _machine import describe

from napari_dsir.evaluate import match
from napari_dsir.run import reconstruct

HERE = Path(__file__).resolve().parent
SET = "sCMOS 400 ADU, 0.5 e-/ADU, 6 /um^2"
TOP = 8


def rows_for(model: str, frames, gt, cam, px: float) -> list[str]:
    locs = reconstruct(frames, model=model, pixel_size=px, localize=True, refine=True, camera=cam).localizations
    gi, pi, _ = match(gt, locs, 100.0)
    keep = np.isfinite(locs.uncertainty[pi])
    gi, pi = gi[keep], pi[keep]
    iso = calibrated.isolated(gt)[gi]
    gi, pi = gi[iso], pi[iso]
    unc = locs.uncertainty[pi]
    zx, zy = (locs.x[pi] - gt.x[gi]) / unc, (locs.y[pi] - gt.y[gi]) / unc
    z2 = np.hypot(zx, zy)
    h, w = frames.shape[1] * px, frames.shape[2] * px
    edge = np.minimum.reduce([gt.x[gi], w - gt.x[gi], gt.y[gi], h - gt.y[gi]])
    order = np.argsort(z2)[::-1]
    rest = order[3:]
    top = ", ".join(f"{z2[i]:.1f} ({edge[i]:.0f} nm)" for i in order[:TOP])
    return [f"| {model} | {len(gi)} | {np.std(np.r_[zx, zy]):.2f} | {np.std(np.r_[zx[rest], zy[rest]]):.2f} | "
            f"{1.4826 * np.median(np.abs(np.r_[zx, zy])):.2f} | {top} |"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "edge_outliers.md")
    args = ap.parse_args(argv)
    found = [s for s in calibrated.sets(100) if s[0] == SET]
    if not found:
        raise SystemExit(f"set {SET!r} not in benchmarks/calibrated.py")
    _, _, frames, gt, cam, px = found[0]
    rows = rows_for("default", frames, gt, cam, px) + rows_for("wide", frames, gt, cam, px)
    lines = ["# Isolated emitters' std(error / uncertainty) at 6 /um^2 (`python benchmarks/edge_outliers.py`)", "",
             f"Run on {time.strftime('%Y-%m-%d')} on {describe()}; `benchmarks/calibrated.py`'s set {SET!r}, "
             "100 frames, refinement on. See the script's docstring.", "",
             "| model | isolated emitters | std(error / uncertainty) per axis | without the 3 largest | "
             f"1.4826 x median absolute | largest {TOP} 2-D error / uncertainty (distance to the edge) |",
             "|---|---|---|---|---|---|", *rows, ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Two models side by side, network positions, on the accuracy sets and the PSF-shape sets.

    python benchmarks/compare_models.py CANDIDATE.pt [--base default] [--note TEXT]
        [--out benchmarks/results/compare_models.md]

For a model candidate before it is shipped: each model runs as a user runs
it (`napari_dsir.run.reconstruct`, localizations with the threshold stored
in its checkpoint, never tuned here) on the test sets of
`benchmarks/accuracy.py` (ThunderSTORM demo, sCMOS 0.1-8 /um^2, EMCCD, empty
frames) and of `benchmarks/psf_shape.py` (Gaussian and Airy PSFs, 200-5,000
and 1,000-20,000 photons, 0.5 and 2 /um^2). Reported: Jaccard at 250 nm,
lateral RMSE of the pairs within 250 nm, detections per true emitter; false
positives per empty frame.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import accuracy
from _machine import cpu_name
from psf_shape import SETS as PSF_SETS
from psf_shape import make_set

from napari_dsir.evaluate import evaluate
from napari_dsir.run import reconstruct

HERE = Path(__file__).resolve().parent


def cell(model, frames, gt) -> str:
    locs = reconstruct(frames, model=model, pixel_size=100.0, localize=True, refine=False, device="cpu").localizations
    if len(gt) == 0:
        return f"{len(locs) / len(frames):.3f} per frame"
    e = evaluate(gt, locs, 250.0)
    return f"{e.jaccard:.3f} / {e.rmse:.1f} / {len(locs) / len(gt):.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("candidate")
    ap.add_argument("--base", default="default", help="the model to compare with (default: the shipped one)")
    ap.add_argument("--note", default="", help="a line on how the candidate was made")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "compare_models.md")
    args = ap.parse_args()
    lines = ["# Two models side by side (`python benchmarks/compare_models.py`)", "",
             f"Run on {time.strftime('%Y-%m-%d')}, {cpu_name()}. Base: `{args.base}`; candidate: "
             f"`{Path(args.candidate).name}`. {args.note}", "",
             "Network positions, each model's own threshold. Cells: Jaccard 250 nm / RMSE 250 nm (nm) / "
             "detections per true emitter (false positives per frame on empty frames).", "",
             "| test set | base | candidate |", "|---|---|---|"]
    sets = [(name, frames, gt) for name, _cam, (frames, gt), _val in accuracy.datasets()]
    sets += [(f"{psf} PSF, {d:g} /um^2, {lo:.0f}-{hi:.0f} photons", *make_set(psf, d, (lo, hi), 40, seed))
             for psf, d, (lo, hi), seed in PSF_SETS]
    for name, frames, gt in sets:
        lines.append(f"| {name} | {cell(args.base, frames, gt)} | {cell(args.candidate, frames, gt)} |")
        print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

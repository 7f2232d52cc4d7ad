"""Quick accuracy check of the shipped model against the original DSIR weights.

Both use their own localizer settings calibrated on simulated validation data
(never on these test sets): the shipped model's are stored in its checkpoint
(`dsir train` calibrates them), the original weights' come from
benchmarks/calibrate_legacy.py. Test sets: the ThunderSTORM demo in
../shared/data and simulated 64x64 stacks at 1, 2, 4 and 6 emitters/um^2
(test seeds 9001+, never used in training or calibration).

    python benchmarks/accuracy_quick.py [--out benchmarks/results/accuracy_quick.md]

This is not the full benchmark of the "shipped model" issue (no classical
fitter here); it records where the models stand.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from napari_dsir.evaluate import evaluate
from napari_dsir.io import open_stack, read_localizations
from napari_dsir.localize import params_for
from napari_dsir.model import load_model
from napari_dsir.reconstruct import reconstruct
from napari_dsir.simulate import SimulationConfig, simulate

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_sets():
    demo = SHARED / "thunderstorm_demo"
    if demo.is_dir():
        s = open_stack(demo / "ArtificialDataset_demo1.tif")
        yield "ThunderSTORM demo (~6 /um^2)", s.read(), read_localizations(demo / "positions_demo1.csv"), 100.0
    for i, d in enumerate((1.0, 2.0, 4.0, 6.0)):
        frames, gt = simulate(20, SimulationConfig(frame_size=(64, 64), density=d), seed=9001 + i)
        yield f"simulated {d:g} /um^2", frames, gt, 100.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "accuracy_quick.md")
    args = ap.parse_args()
    models = {"shipped (default)": load_model()}
    legacy = SHARED / "dsir_original" / "autoencoder_model.pt"
    if legacy.is_file():
        models["original DSIR weights"] = load_model(f"legacy:{legacy}")
    rows = []
    for name, frames, gt, px in test_sets():
        for mname, m in models.items():
            t0 = time.perf_counter()
            res = reconstruct(frames, m, pixel_size=px, localize=params_for(m))
            dt = time.perf_counter() - t0
            a, b = evaluate(gt, res.localizations, 250), evaluate(gt, res.localizations, 100)
            rows.append(f"| {name} | {mname} | {a.jaccard:.3f} | {b.jaccard:.3f} | {a.rmse:.1f} | "
                        f"{a.efficiency:.1f} | {a.recall:.3f} | {a.precision:.3f} | {dt:.1f} |")
            print(rows[-1], flush=True)
    head = [
        "# Quick accuracy check",
        "",
        f"Run on {time.strftime('%Y-%m-%d')} with `python benchmarks/accuracy_quick.py` on {platform.machine()}, "
        f"{torch.get_num_threads()} CPU threads ({platform.processor() or 'CPU'}), torch {torch.__version__}.",
        "RMSE and efficiency at 250 nm; times are wall seconds for reconstruct + localize.",
        "",
        "| test set | model | Jaccard 250 nm | Jaccard 100 nm | RMSE nm | efficiency | recall | precision | s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(head + rows) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

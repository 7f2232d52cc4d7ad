"""Shipped movie models' training loss on validation movies of their training mix.

    python benchmarks/validation_loss.py [--models default wide] [--seeds 100 104 105]
        [--out benchmarks/results/validation_loss.md]

The loss `dsir train` minimises (MSE of the output against the label
blurred by the checkpoint's kernel, `train._val_loss`) on 2,400 frames of
the first model's training mix (`MovieConfig` from its checkpoint) drawn as
`dsir train` draws a run's validation movies, from seed + 1,000,003 for each
``--seeds`` (the defaults: the validation seeds of the default's fine-tuning
and of the two wide networks trained on a GPU). Every model is scored on the
same frames.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _machine import describe

from napari_dsir.model import load_model
from napari_dsir.simulate import MovieConfig, SimulationConfig
from napari_dsir.train import TrainConfig, _Data, _val_loss, gauss_kernel

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["default", "wide"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[100, 104, 105])
    ap.add_argument("--frames", type=int, default=2400)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "validation_loss.md")
    args = ap.parse_args()
    models = {name: load_model(name) for name in args.models}
    tr = next(iter(models.values())).metadata["training"]
    movies = MovieConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in tr["movies"].items()})
    cfg = TrainConfig(batch_size=32, kernel_width=tr["kernel_width"], kernel_fwhm=tr["kernel_fwhm"],
                      label_scale=tr["label_scale"], normalization="movie", movies=movies)
    kernel = gauss_kernel(cfg.kernel_width, cfg.kernel_fwhm)
    lines = ["# Validation loss (`python benchmarks/validation_loss.py`)", "",
             f"Run on {time.strftime('%Y-%m-%d')} on {describe()}, torch {torch.__version__}: {args.frames} frames of "
             f"the `{args.models[0]}` model's training mix per seed (seed + 1,000,003), `dsir train`'s loss.", "",
             "| validation seed | " + " | ".join(f"`{Path(m).name}`" for m in models) + " |",
             "|---" * (len(models) + 1) + "|"]
    for seed in args.seeds:
        val = _Data(args.frames, SimulationConfig(), seed + 1_000_003, 8, movies)
        losses = [_val_loss(m, val, cfg, kernel, cfg.kernel_width // 2, "cpu") for m in models.values()]
        lines.append(f"| {seed} | " + " | ".join(f"{v:.2f}" for v in losses) + " |")
        print(lines[-1], flush=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""The CPU batch size of each shipped model: reconstruct's time at batches 1, 4 and 8.

    python benchmarks/batch_size.py [--repeats 3] [--out benchmarks/results/batch_size.md]

On the EPFL Bundled Tubes HD set (361 frames of 64x64 px, read once into
memory), `napari_dsir.run.reconstruct` (sum image, no localizations) with the
default model, the DSIR auto-encoder (``dsir``) and the original weights
(legacy mode), on the CPU, each at batches 1, 4 and 8; runs interleaved
(model by model, batch by batch, ``--repeats`` rounds) after one warm-up
each; median wall seconds. The package's CPU defaults
(`reconstruct.default_batch_size`: 8 for the default model, 1 for the
other two) are measured here against the other batches.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from _machine import describe

from napari_dsir.io import open_stack
from napari_dsir.run import reconstruct

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
BATCHES = (1, 4, 8)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "batch_size.md")
    args = ap.parse_args()
    seq = DATA / "bundled_tubes_hd" / "sequence"
    if not seq.is_dir():
        raise SystemExit(f"{seq} not found")
    frames = open_stack(seq).read().astype(np.float32)
    models = {"default": None, "dsir": "dsir",
              "original weights": f"legacy:{DATA / 'dsir_original' / 'autoencoder_model.pt'}"}
    times = {(m, b): [] for m in models for b in BATCHES}

    def run(model, batch):
        t0 = time.perf_counter()
        reconstruct(frames, model, pixel_size=100.0, device="cpu", batch_size=batch)
        return time.perf_counter() - t0

    for model in models.values():  # warm-up: weights loaded, kernels chosen
        run(model, 1)
    for _ in range(args.repeats):
        for m, model in models.items():
            for b in BATCHES:
                times[m, b].append(run(model, b))
    rows = [
        "# CPU batch size per model (`python benchmarks/batch_size.py`)",
        "",
        f"Run on {date.today()} on {describe()}, torch {torch.__version__} with {torch.get_num_threads()} threads; "
        f"Bundled Tubes HD, 361 frames in memory; `reconstruct` (sum image); median wall seconds of "
        f"{args.repeats} interleaved runs (each run in brackets).",
        "",
        "| model | " + " | ".join(f"batch {b}" for b in BATCHES) + " |",
        "|---|" + "---|" * len(BATCHES),
    ]
    for m in models:
        cells = [f"{statistics.median(times[m, b]):.2f} ({', '.join(f'{t:.2f}' for t in times[m, b])})"
                 for b in BATCHES]
        rows.append(f"| {m} | " + " | ".join(cells) + " |")
    args.out.write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Calibrate the localizer for the original DSIR weights (legacy model).

The 2018 model came without a localizer. This script searches the threshold,
blur and local-maximum radius that maximise Jaccard (250 nm) on simulated
64x64 frames (the original DSIR simulation settings at 1-6 emitters/um^2,
seed 4242, never used for anything else) and prints them; the values are
stored as ``LEGACY_LOCALIZE`` in ``src/napari_dsir/model.py``.

    python benchmarks/calibrate_legacy.py [PATH/TO/autoencoder_model.pt]
"""

import sys
import time
from pathlib import Path

import torch

from napari_dsir.model import load_legacy
from napari_dsir.simulate import SimulationConfig, simulate
from napari_dsir.train import calibrate_localizer

HERE = Path(__file__).resolve().parent
DEFAULT = HERE.parents[1] / "shared" / "data" / "dsir_original" / "autoencoder_model.pt"


def main():
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    model = load_legacy(path)
    model.metadata.pop("localize", None)
    frames, truth = simulate(120, SimulationConfig(frame_size=(64, 64), density=(1.0, 6.0)), seed=4242)
    t0 = time.perf_counter()
    params, jac = calibrate_localizer(model, frames, truth, 100.0 / model.upsampling)
    print(f"machine: {torch.get_num_threads()} CPU threads; {time.perf_counter() - t0:.0f} s")
    print(f"LEGACY_LOCALIZE = {params.to_dict()}  # Jaccard(250 nm) {jac:.3f} on the calibration set")


if __name__ == "__main__":
    main()

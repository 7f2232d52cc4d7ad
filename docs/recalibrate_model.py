"""Calibrate a trained movie model's localizer again, as `dsir train` does after training.

    python docs/recalibrate_model.py MODEL.pt -o OUT.pt

For a checkpoint trained before a change to the calibration
(`napari_dsir.calibrate`): the validation movies are simulated again from
the checkpoint's own training settings (its `MovieConfig`, its seed) exactly
as `dsir train` simulates them, then the threshold (`calibrate_movies`) and
the network's error in crowds (`crowded_error`) are found again and stored;
the weights are not touched. The checkpoint's metadata keeps its training
command and records the recalibration.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np

from napari_dsir.calibrate import calibrate_movies, crowded_error
from napari_dsir.model import load_checkpoint, save_checkpoint
from napari_dsir.simulate import MovieConfig, SimulationConfig
from napari_dsir.train import _Data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--command", default=None,
                    help="the training command to record, where the stored one no longer reproduces the "
                         "stored training settings (an option renamed since)")
    args = ap.parse_args()
    model = load_checkpoint(args.model)
    training = model.metadata["training"]
    movies = MovieConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in training["movies"].items()})
    val = _Data(training["n_val"], SimulationConfig(), training["seed"] + 1_000_003, model.upsampling, movies)
    dens = np.array([st["density"] for st in val.settings])[val.movie]
    params, report = calibrate_movies(model, val.frames, val.locs, val.sr_pixel, val.scales, dens,
                                      training["batch_size"])
    fields, report["crowded_error"] = crowded_error(model, val.frames, val.locs, val.movie, val.settings,
                                                 movies.pixel_size, params)
    params = replace(params, **fields)
    model.metadata["calibration"] = report
    model.metadata["localize"] = params.to_dict()
    model.metadata["validation_jaccard_250nm"] = report["mean_jaccard"]
    model.metadata["recalibrated"] = time.strftime("%Y-%m-%d") + " by docs/recalibrate_model.py"
    if args.command:
        model.metadata["command_as_run"] = model.metadata.get("command")
        model.metadata["command"] = args.command
    save_checkpoint(args.output, model, training=training)
    print(f"{args.output}: threshold {params.threshold:.3f}, radius {params.radius}, "
          f"validation Jaccard {report['mean_jaccard']:.3f}, crowded error "
          f"{np.round(params.crowded_error_px, 3).tolist()} px, power {params.crowded_error_power:.3f}, "
          f"pulled {params.pulled_error_px}")


if __name__ == "__main__":
    main()

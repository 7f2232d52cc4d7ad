"""Calibrate a trained movie model's localizer again, as `dsir train` does after training.

    python docs/recalibrate_model.py MODEL.pt -o OUT.pt

For a checkpoint trained before a change to the calibration
(`napari_dsir.calibrate`): the validation movies are simulated again from
the checkpoint's own training settings (its `MovieConfig`, its seed) exactly
as `dsir train` simulates them, then the threshold and the network's error
in crowds (`calibrate_movie_localizer`) are found again and stored; the
weights are not touched. The checkpoint's metadata keeps its training
command and records the recalibration.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from napari_dsir.calibrate import ERROR_MOVIES, calibrate_movie_localizer
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
    params, report = calibrate_movie_localizer(model, val.frames, val.locs, val.sr_pixel, val.scales, val.movie,
                                               val.settings, movies, training["seed"], training["batch_size"],
                                               training.get("error_movies", ERROR_MOVIES))
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
          f"density factors {np.round(params.crowded_error_density, 3).tolist()}, pulled {params.pulled_error_px}")


if __name__ == "__main__":
    main()

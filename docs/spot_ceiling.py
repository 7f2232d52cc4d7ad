"""Store a trained movie model's spot ceiling, as `dsir train` does after training.

    python docs/spot_ceiling.py MODEL.pt -o OUT.pt [--movies 3000]

For a checkpoint trained before the ceiling existed: movies of its own
training distribution (its `MovieConfig`) are simulated from its validation
seed (the training seed + 1,000,003, never trained on; ``--movies`` of
them: `dsir train` uses its validation split, fewer), each divided by its
noise level as in training, and the spot height (`movie_spot_height`) that
99 % of them stay under is stored as ``spot_ceiling``
(`napari_dsir.calibrate.spot_ceiling`). Movies whose spots are taller are
scaled down for the network (`DSIRModel.input_scale`). The weights and the
localizer are not touched.
"""

from __future__ import annotations

import argparse
import time

from napari_dsir.calibrate import spot_ceiling
from napari_dsir.model import load_checkpoint, save_checkpoint
from napari_dsir.simulate import MovieConfig, SimulationConfig
from napari_dsir.train import _Data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--movies", type=int, default=3000)
    args = ap.parse_args()
    model = load_checkpoint(args.model)
    training = model.metadata["training"]
    movies = MovieConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in training["movies"].items()})
    data = _Data(args.movies * movies.frames_per_movie, SimulationConfig(), training["seed"] + 1_000_003,
                 model.upsampling, movies)
    ceiling = spot_ceiling(data.frames, data.movie, data.scales)
    model.metadata["spot_ceiling"] = {**ceiling, "stored": time.strftime("%Y-%m-%d") + " by docs/spot_ceiling.py"}
    save_checkpoint(args.output, model, training=training)
    print(f"{args.output}: spot ceiling {ceiling['height']:.1f} noise levels ({ceiling['movies']} movies)")


if __name__ == "__main__":
    main()

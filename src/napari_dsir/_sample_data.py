"""Sample data: a small simulated high-density SMLM stack and its ground truth.

120 frames of 64 x 64 camera pixels (100 nm) of blinking filaments, about 3
ON emitters per um^2 per frame, shipped inside the package
(``data/sample_stack.tif``, ``data/sample_positions.csv``; see data/README.md).
The layers come from `napari_dsir.layers`, as the reader's and the widgets' do.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .io import open_stack, read_localizations
from .layers import Geometry, points_layer_data, stack_layer_data

SAMPLE_STACK = "sample_stack.tif"
SAMPLE_POSITIONS = "sample_positions.csv"


def sample_path(name: str) -> Path:
    return Path(str(resources.files("napari_dsir") / "data" / name))


def sample_stack():
    """LayerData tuples: the camera stack and the ground-truth points."""
    stack = open_stack(sample_path(SAMPLE_STACK), pixel_size=100.0)
    img = stack_layer_data(stack)
    img[1]["name"] = "DSIR sample"
    gt = read_localizations(sample_path(SAMPLE_POSITIONS))
    pts = points_layer_data(
        gt, "DSIR sample ground truth",
        geometry=Geometry.for_pixel_size(100.0),
        # (added as DSIR Ground Truth adds a load: that file loaded again replaces it)
        metadata={"source": str(sample_path(SAMPLE_POSITIONS)), "kind": "ground_truth", "pixel_size": 100.0,
                  "output_name": "DSIR sample ground truth"},
        color="cyan",
    )
    return [img, pts]

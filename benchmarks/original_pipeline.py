"""The original DSIR (2018) reconstruction, as its own script ran it: the baseline of the speed figures.

    python benchmarks/original_pipeline.py WEIGHTS.pt MOVIE.tif|FOLDER [--out sum.npy]

A plain `nn.Module` with the original layer names and forward pass (batch-
norms shared between stages, left in train mode as the original code left
them, so each frame is normalised by its own statistics), applied one frame
at a time: scikit-image bilinear resize x8, per-frame z-score, the network,
and the sum over frames. Nothing from napari-dsir is imported, so timing this
script as a whole process is timing the original pipeline.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import tifffile
import torch
import torch.nn as nn
import torch.nn.functional as F
from skimage.transform import resize


class Autoencoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1)
        self.conv4 = nn.Conv2d(8, 1, 3, padding=1)
        self.bn4 = nn.BatchNorm2d(1)
        self.convt1 = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.convt2 = nn.ConvTranspose2d(8, 16, 2, stride=2)
        self.convt3 = nn.ConvTranspose2d(16, 8, 2, stride=2)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv3(x))), 2)
        x = F.relu(self.bn2(self.convt1(x)))
        x = F.relu(self.bn1(self.convt2(x)))
        x = F.relu(self.bn2(self.convt3(x)))
        return F.relu(self.bn4(self.conv4(x)))


def frames(path: Path):
    """Each frame of a multi-page TIFF, or of the TIFF files of a folder, in order."""
    if path.is_dir():
        for f in sorted(path.glob("*.tif")):
            yield tifffile.imread(f)
    else:
        with tifffile.TiffFile(path) as tif:
            for page in tif.pages:
                yield page.asarray()


def reconstruct(weights: Path, movie: Path) -> np.ndarray:
    net = Autoencoder()
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    acc = None
    with torch.no_grad():
        for img in frames(movie):
            img = img.astype(np.float64)
            up = resize(img, (img.shape[0] * 8, img.shape[1] * 8), preserve_range=True, mode="constant")
            up = (up - up.mean()) / up.std()
            out = net(torch.as_tensor(up, dtype=torch.float32).view(1, 1, *up.shape))[0, 0].numpy()
            acc = out if acc is None else acc + out
    return acc


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("weights", type=Path)
    ap.add_argument("movie", type=Path)
    ap.add_argument("--out", type=Path, default=None, help="save the sum image (.npy)")
    args = ap.parse_args(argv)
    acc = reconstruct(args.weights, args.movie)
    if args.out:
        np.save(args.out, acc)
    print(f"{acc.shape[1]}x{acc.shape[0]} sum image", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reconstruction speed on the EPFL Bundled Tubes HD set (361 frames, 64x64).

Measures, in one process, end to end from the TIFF files:
- baseline: the original DSIR pipeline (per-frame bilinear x8 resize on the
  CPU with scikit-image, per-frame z-score, the legacy model one frame at a
  time);
- napari-dsir `reconstruct` (sum image), with the shipped model and with the
  original weights;
- napari-dsir `reconstruct` + `localize` (shipped model).
Each is run ``--repeats`` times; medians are reported with the ratio to the
baseline, and the peak RSS of the process. Writes benchmarks/results/speed.md.

    python benchmarks/speed.py [--repeats 3] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from napari_dsir.io import open_stack
from napari_dsir.localize import params_for
from napari_dsir.model import load_model, resolve_device
from napari_dsir.reconstruct import reconstruct

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SEQ = SHARED / "bundled_tubes_hd" / "sequence"
LEGACY = SHARED / "dsir_original" / "autoencoder_model.pt"


def baseline(model) -> np.ndarray:
    """The original load_model.py loop: one frame at a time."""
    from skimage.io import imread
    from skimage.transform import resize

    files = sorted(SEQ.glob("*.tif"))
    acc = None
    with torch.no_grad():
        for f in files:
            img = imread(f).astype(np.float64)
            up = resize(img, (img.shape[0] * 8, img.shape[1] * 8), preserve_range=True, mode="constant")
            up = (up - up.mean()) / up.std()
            out = model.net(torch.as_tensor(up, dtype=torch.float32).view(1, 1, *up.shape))[0, 0].numpy()
            acc = out if acc is None else acc + out
    return acc


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=None, help="default: the package's (1 on the CPU)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "speed.md")
    args = ap.parse_args()
    device = resolve_device(args.device)
    legacy = load_model(f"legacy:{LEGACY}", device="cpu")
    shipped = load_model(device=device)
    legacy_dev = load_model(f"legacy:{LEGACY}", device=device)
    n = len(open_stack(SEQ))

    def ours(model, localize=False):
        s = open_stack(SEQ)  # from the files, every time
        return reconstruct(s, model, pixel_size=100.0, batch_size=args.batch_size,
                           localize=params_for(model) if localize else None)

    rows = [("baseline: original pipeline (skimage resize, legacy, 1 frame at a time, CPU)",
             timed(lambda: baseline(legacy), args.repeats))]
    rows.append((f"reconstruct, original weights ({device})", timed(lambda: ours(legacy_dev), args.repeats)))
    rows.append((f"reconstruct, shipped model ({device})", timed(lambda: ours(shipped), args.repeats)))
    rows.append((f"reconstruct + localize, shipped model ({device})",
                 timed(lambda: ours(shipped, True), args.repeats)))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    base = rows[0][1]
    lines = [
        "# Reconstruction speed: Bundled Tubes HD (361 frames of 64x64 -> 512x512)",
        "",
        f"Run on {time.strftime('%Y-%m-%d')} with `python benchmarks/speed.py --repeats {args.repeats} "
        f"--device {args.device}` on {platform.machine()}, {torch.get_num_threads()} CPU threads, "
        f"torch {torch.__version__}, batch {args.batch_size or 'default'}; medians of {args.repeats} runs, end to end "
        "from the TIFF files.",
        "",
        "| pipeline | seconds | frames/s | speed-up vs baseline |",
        "|---|---|---|---|",
    ]
    for name, t in rows:
        lines.append(f"| {name} | {t:.2f} | {n / t:.0f} | {base / t:.2f}x |")
    lines += ["", f"Peak RSS of the benchmark process: {peak_mb:.0f} MB."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

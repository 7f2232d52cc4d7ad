"""Fine-tune a movie model on a GPU within a time budget, with its training movies simulated on every core.

    python docs/finetune_gpu.py --init src/napari_dsir/data/dsir_default.pt -o OUT.pt \
        [--movies 12000] [--seed 102] [--lr 5e-4] [--budget-s 330] [--workers 16]
        [--scratch --channels 48 --context 64] [--teacher WIDE.pt --teacher-weight 0.5]

With ``--scratch`` a new `ShuffleNet` of ``--channels`` / ``--context`` is
trained from random weights instead, on the init checkpoint's training mix
and settings (the init's weights are not used).

What `dsir train --init ... --device cuda` does, with two changes that a
lent GPU needs: the movies (drawn from the init checkpoint's own training
mix, `MovieConfig`) are simulated in chunks of 250 on all cores (seed of a
chunk: ``seed * 100_000 + chunk``; the validation movies exactly as `dsir
train` draws them, seed + 1,000,003), and the labels are rendered on the GPU.
With ``--teacher`` the network learns from a second, frozen model too
(distillation): its target is ``(1 - w)`` x the blurred label plus ``w`` x
the teacher's output on the same frame (``--teacher-weight`` w); the
validation loss, which picks the checkpoint kept, is against the labels
alone.

The loss, optimiser and learning-rate schedule are `dsir train`'s (Adam,
weight decay 1e-5, cosine decay to 5 %); the number of epochs is fixed after
the first one from ``--budget-s`` (the schedule spans them). The checkpoint
with the lowest validation loss is kept; its localizer is calibrated
afterwards by `docs/recalibrate_model.py`, on the CPU.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from napari_dsir.locs import Localizations
from napari_dsir.model import DSIRModel, load_checkpoint, save_checkpoint
from napari_dsir.networks import ShuffleNet
from napari_dsir.simulate import MovieConfig, simulate_movies
from napari_dsir.train import TrainConfig, _Data, _val_loss, cosine_lr, gauss_kernel, train_epoch

CHUNK = 250


def _chunk(args):
    n, cfg, seed = args
    return simulate_movies(n, cfg, seed=seed)


class GPUData(_Data):
    """`_Data` from chunks simulated in parallel; frames kept on the device
    and labels rendered there (the same labels as `render_labels`)."""

    def __init__(self, parts, cfg: MovieConfig, upsampling: int, device):
        frames, locs, movie, settings = [], [], [], []
        n_frames = n_movies = 0
        for f, lc, mv, st in parts:
            frames.append(f)
            locs.append(Localizations(lc.frame + n_frames, lc.x, lc.y, photons=lc.photons))
            movie.append(mv + n_movies)
            settings += st
            n_frames, n_movies = n_frames + len(f), n_movies + len(st)
        self._set_movies(np.concatenate(frames), Localizations.concatenate(locs), np.concatenate(movie), settings,
                         cfg, upsampling)
        self.device = device
        self._x = torch.from_numpy(self.frames).to(device)
        self._iy = torch.as_tensor(np.floor(self.locs.y / self.sr_pixel).astype(np.int64), device=device).clamp(
            0, self.shape[0] - 1)
        self._ix = torch.as_tensor(np.floor(self.locs.x / self.sr_pixel).astype(np.int64), device=device).clamp(
            0, self.shape[1] - 1)
        self._sc = torch.from_numpy(self.scales).to(device)

    def batch(self, idx, device, label_scale=1.0, rng=None, jitter=0.0):
        idx = np.asarray(idx, np.int64)
        counts = self.starts[idx + 1] - self.starts[idx]
        b = np.repeat(np.arange(len(idx)), counts)
        first = np.repeat(self.starts[idx] - (np.cumsum(counts) - counts), counts)
        sel = torch.as_tensor(first + np.arange(counts.sum()), device=self.device)
        lab = torch.zeros((len(idx), 1) + self.shape, device=self.device)
        bt = torch.as_tensor(b, device=self.device)
        lab.index_put_((bt, torch.zeros_like(bt), self._iy[sel], self._ix[sel]),
                       torch.full((len(b),), float(label_scale), device=self.device), accumulate=True)
        it = torch.as_tensor(idx, device=self.device)
        sc = self._sc[it]
        if rng is not None and jitter > 0:
            sc = sc * torch.as_tensor(np.exp(rng.normal(0.0, jitter, len(idx))), dtype=torch.float32,
                                      device=self.device)
        return self._x[it], lab, sc


def distill_loss(model, teacher, weight, kernel, pad):
    """The loss of a batch against ``(1 - weight)`` x its blurred label +
    ``weight`` x the frozen ``teacher``'s output (camera-resolution networks)."""

    def loss(x, y, sc):
        with torch.no_grad():
            target = (1.0 - weight) * F.conv2d(y, kernel, padding=pad) + weight * teacher.raw(x, scale=sc).unsqueeze(1)
        return F.mse_loss(model.raw(x, scale=sc).unsqueeze(1), target)

    return loss


def simulate_parallel(n_movies: int, n_val_movies: int, cfg: MovieConfig, seed: int, workers: int):
    """(training chunks, validation movies): the validation movies as `dsir
    train` simulates them (one call, seed + 1,000,003), beside the chunks."""
    jobs = [(n_val_movies, cfg, seed + 1_000_003)]
    jobs += [(min(CHUNK, n_movies - s), cfg, seed * 100_000 + i) for i, s in enumerate(range(0, n_movies, CHUNK))]
    with ProcessPoolExecutor(workers) as ex:
        parts = list(ex.map(_chunk, jobs))
    return parts[1:], parts[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--init", required=True)
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--movies", type=int, default=12000)
    ap.add_argument("--seed", type=int, default=102)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--budget-s", type=float, default=330.0, help="training time (the epochs are fixed after one)")
    ap.add_argument("--max-epochs", type=int, default=100)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scratch", action="store_true", help="a new network of --channels/--context, not the init's")
    ap.add_argument("--channels", type=int, default=None)
    ap.add_argument("--context", type=int, default=None)
    ap.add_argument("--teacher", default=None, help="a frozen model whose output the network also learns from")
    ap.add_argument("--teacher-weight", type=float, default=0.5)
    args = ap.parse_args()
    t_start = time.perf_counter()
    device = torch.device(args.device)
    model = load_checkpoint(args.init)  # to the device after the simulation's processes are forked
    old = model.metadata["training"]
    if args.scratch:
        channels, context = args.channels or old["channels"], args.context or old["context"]
        # the spot ceiling belongs to the training mix, which is the init's
        keep = {"spot_ceiling": model.metadata["spot_ceiling"]} if "spot_ceiling" in model.metadata else {}
        model = DSIRModel(ShuffleNet(channels, context, model.upsampling), "shuffle", model.upsampling,
                          model.normalization, model.pixel_size, keep)
        old = {**old, "channels": channels, "context": context}
    movies = MovieConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in old["movies"].items()})
    cfg = TrainConfig(epochs=1, batch_size=args.batch_size, lr=args.lr, kernel_width=old["kernel_width"],
                      kernel_fwhm=old["kernel_fwhm"], label_scale=old["label_scale"], seed=args.seed,
                      n_train=args.movies * movies.frames_per_movie, n_val=old["n_val"], normalization="movie",
                      arch=model.arch, channels=old["channels"], context=old["context"], movies=movies,
                      lr_decay=True, init=None if args.scratch else str(args.init), device=args.device, png_every=0,
                      scale_jitter=old["scale_jitter"])
    teacher = None  # checked before the simulation, moved to the device after it (as the model)
    if args.teacher:
        teacher = load_checkpoint(args.teacher)
        if not (teacher.camera_resolution and model.camera_resolution and teacher.upsampling == model.upsampling):
            sys.exit("--teacher: both networks must be camera-resolution networks of the same up-sampling")
    # what `dsir train` records: the wide-PSF binning and the crowded rows' PSF floor read it
    model.metadata["simulation"] = movies.to_dict()
    chunks, val_part = simulate_parallel(args.movies, -(-cfg.n_val // movies.frames_per_movie), movies, args.seed,
                                         args.workers)
    model.to(device)
    if teacher is not None:
        teacher.to(device)
        teacher.net.eval()
    train = GPUData(chunks, movies, model.upsampling, device)
    val = GPUData([val_part], movies, model.upsampling, device)
    print(f"simulated {len(train)} training and {len(val)} validation frames in "
          f"{time.perf_counter() - t_start:.0f} s", flush=True)
    kernel = gauss_kernel(cfg.kernel_width, cfg.kernel_fwhm).to(device)
    pad = cfg.kernel_width // 2
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.Adam(model.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = None if teacher is None else distill_loss(model, teacher, args.teacher_weight, kernel, pad)
    distill = {"teacher": Path(args.teacher).name, "teacher_weight": args.teacher_weight} if teacher else {}
    steps_per_epoch = -(-len(train) // cfg.batch_size)
    best = _val_loss(model, val, cfg, kernel, pad, device)
    out = Path(args.output)
    log = out.with_name(out.stem + "_log.csv")
    rows = [[0, "", f"{best:.6g}", f"{best:.6g}", "0"]]
    print(f"epoch 0: validation loss {best:.4f} (the starting weights)", flush=True)
    epochs, epoch, n_steps = args.max_epochs, 0, None
    while epoch < epochs:
        epoch += 1
        t0 = time.perf_counter()
        model.net.train()
        # the schedule's length is known after the first epoch, run at the full rate
        lr_at = partial(cosine_lr, cfg.lr, n_steps=math.inf if n_steps is None else n_steps)
        losses = train_epoch(model, train, cfg, opt, kernel, pad, device, rng, lr_at, (epoch - 1) * steps_per_epoch,
                             loss_fn)
        tl = float(torch.stack(losses).mean())
        vl = _val_loss(model, val, cfg, kernel, pad, device)
        dt = time.perf_counter() - t0
        if n_steps is None:  # the first epoch ran at the full rate; fix the schedule's length from its time
            epochs = max(2, min(args.max_epochs, int(args.budget_s // dt)))
            n_steps = epochs * steps_per_epoch
        improved = vl < best
        if improved:
            best = vl
            cfg.epochs = epochs
            save_checkpoint(out, model, training={**cfg.to_dict(), "epochs_done": epoch, "best_val_loss": best,
                                                  "simulation_chunks": f"{CHUNK} movies, seed * 100000 + chunk",
                                                  **distill})
        last = {**cfg.to_dict(), "epochs": epochs, "epochs_done": epoch, "val_loss": vl, **distill}
        save_checkpoint(out.with_name(out.stem + ".last.pt"), model, training=last)
        rows.append([epoch, f"{tl:.6g}", f"{vl:.6g}", f"{best:.6g}", f"{dt:.2f}"])
        print(f"epoch {epoch}/{epochs}: train {tl:.4f} validation {vl:.4f}{' *' if improved else ''} "
              f"({dt:.1f} s)", flush=True)
    with open(log, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["epoch", "train_loss", "val_loss", "best_val_loss", "seconds"])
        w.writerows(rows)
    if out.is_file():
        m = load_checkpoint(out)
        m.metadata["command"] = "python " + " ".join(sys.argv)
        m.metadata["trained_on"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        for key in ("calibration", "localize", "validation_jaccard_250nm"):
            m.metadata.pop(key, None)  # calibrated again afterwards (docs/recalibrate_model.py)
        save_checkpoint(out, m, training=m.metadata["training"])
    print(f"done in {time.perf_counter() - t_start:.0f} s; best validation loss {best:.4f}", flush=True)


if __name__ == "__main__":
    main()

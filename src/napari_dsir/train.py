"""Training the DSIR auto-encoder on simulated frames.

Labels are the emitter positions binned onto the x``upsampling`` grid; the
loss is the MSE between the Gaussian-blurred prediction and the
Gaussian-blurred label (``kernel_width`` px, ``kernel_fwhm`` px on the
super-resolved grid), Adam with weight decay, as the original DSIR.
`iter_train` yields a `TrainStatus` when a stage other than an epoch starts
(simulating the data, calibrating the localizer, done) and one `EpochLog` per
epoch; a tqdm bar (`show_epoch`) or a napari progress bar is driven from
them. `train` runs it to the end.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .calibrate import ERROR_MOVIES, calibrate_localizer, calibrate_movie_localizer, spot_ceiling
from .errors import DSIRError
from .figures import images_figure, plot_loss_curves, save_figure
from .localize import gauss_kernel
from .locs import Localizations
from .model import (
    DSIRModel,
    DSIRNet,
    ShuffleNet,
    dsir_from_legacy,
    load_checkpoint,
    load_legacy,
    movie_scale,
    save_checkpoint,
)
from .progress import drive
from .simulate import MovieConfig, SimulationConfig, as_range, simulate, simulate_movies

ARCHS = ("dsir", "shuffle")


def user_data_dir() -> Path:
    """Per-user data folder of napari-dsir (models, logs)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "napari-dsir"


def default_model_path() -> Path:
    return user_data_dir() / "models" / time.strftime("dsir_%Y%m%d_%H%M%S.pt")


@dataclass
class TrainConfig:
    """All training settings; defaults are the original DSIR's.

    ``arch``: ``"dsir"`` (the DSIR auto-encoder on the up-sampled frame,
    ``encoder``/``decoder`` channels) or ``"shuffle"`` (`ShuffleNet`:
    camera-resolution features, ``channels``/``context``, a pixel-shuffle
    output trained to equal the blurred label directly). ``movies``: train
    on short movies drawn from these ranges (`simulate_movies`), each
    normalised by its own noise level (``normalization="movie"``) instead of
    frames from ``simulation``; ``scale_jitter``: the log-normal spread
    applied to that level while training (robustness to its estimate).
    """

    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-5
    kernel_width: int = 5  # SR px
    kernel_fwhm: float = 3.0  # SR px
    l1: float = 0.0  # weight of an L1 sparsity term on the raw output (0: the original loss)
    label_scale: float = 1.0  # value of one emitter in the label (1: the original; Deep-STORM uses 100)
    seed: int = 99
    n_train: int = 3500
    n_val: int = 1500
    upsampling: int = 8
    normalization: str = "zscore"
    encoder: tuple = (16, 8, 8)
    decoder: tuple = (8, 16, 8)
    head_norm: bool = True
    head_relu: bool = True
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    arch: str = "dsir"
    channels: int = 24
    context: int = 32
    movies: MovieConfig | None = None
    scale_jitter: float = 0.1
    lr_decay: bool = False  # cosine decay of the learning rate to 5% over the epochs
    init: str | None = None  # checkpoint to fine-tune from, or legacy:PATH (original weights)
    device: str = "cpu"
    png_every: int = 10  # epochs between validation PNGs (0: never)
    calibrate: bool = True  # tune the localization threshold on validation data
    # movies simulated beyond the validation movies to measure the network's
    # own error in crowds (`calibrate.calibrate_movie_localizer`)
    error_movies: int = ERROR_MOVIES

    def to_dict(self) -> dict:
        d = asdict(self)
        d["simulation"] = self.simulation.to_dict()
        d["movies"] = self.movies.to_dict() if self.movies is not None else None
        d["encoder"], d["decoder"] = list(self.encoder), list(self.decoder)
        return d


@dataclass
class EpochLog:
    """One finished epoch. ``seconds``: the epoch's own wall time (training,
    validation, checkpoint and PNGs; not the data simulation or the
    calibration). ``mean_seconds``: mean over the epochs of this run."""

    epoch: int  # 1-based
    epochs: int
    train_loss: float
    val_loss: float
    best_val_loss: float
    improved: bool
    seconds: float
    mean_seconds: float = math.nan


@dataclass
class TrainStatus:
    """A stage of training that is not an epoch: ``stage`` is "simulating"
    (the training and validation frames), "calibrating" (the localizer, on
    the validation frames, after the last epoch) or "done"; ``message`` says
    it to the user; ``epoch`` epochs of ``epochs`` are done."""

    stage: str
    message: str
    epoch: int
    epochs: int


def frame_starts(locs: Localizations, n_frames: int) -> np.ndarray:
    """Row where each frame's localizations start in ``locs`` (sorted by
    frame), and the end: (n_frames + 1,), for `render_labels`."""
    if len(locs) and (np.diff(locs.frame) < 0).any():
        raise DSIRError("localizations must be sorted by frame")
    return np.searchsorted(locs.frame, np.arange(n_frames + 1))


def render_labels(locs: Localizations, frames: np.ndarray, shape: tuple[int, int], sr_pixel: float,
                  starts: np.ndarray | None = None) -> torch.Tensor:
    """Emitter counts per super-resolved pixel: (len(frames), 1, Y, X).
    ``starts``: `frame_starts` of ``locs`` (sorted by frame): the rows of a
    batch are then found without a pass over the whole table (0.18 against
    8.5 ms per batch of 32 frames of a 64,000-frame set)."""
    lab = torch.zeros((len(frames), 1) + shape)
    frames = np.asarray(frames, np.int64)
    if starts is None:
        pos = {int(f): i for i, f in enumerate(frames)}
        sel = np.flatnonzero(np.isin(locs.frame, frames))
        b = np.array([pos[int(f)] for f in locs.frame[sel]], np.int64)
    else:
        counts = starts[frames + 1] - starts[frames]
        b = np.repeat(np.arange(len(frames)), counts)
        first = np.repeat(starts[frames] - (np.cumsum(counts) - counts), counts)  # row minus its place in the batch
        sel = first + np.arange(counts.sum())
    if len(sel):
        b = torch.as_tensor(b)
        iy = torch.as_tensor(np.floor(locs.y[sel] / sr_pixel).astype(np.int64)).clamp(0, shape[0] - 1)
        ix = torch.as_tensor(np.floor(locs.x[sel] / sr_pixel).astype(np.int64)).clamp(0, shape[1] - 1)
        lab.index_put_((b, torch.zeros_like(b), iy, ix), torch.ones(len(b)), accumulate=True)
    return lab


class _Data:
    """Simulated frames and their labels: single frames from a
    `SimulationConfig`, or short movies from a `MovieConfig` with each
    movie's noise level (``scales``, one per frame) for ``movie`` normalisation."""

    def __init__(self, n: int, sim: SimulationConfig, seed: int, upsampling: int,
                 movies: MovieConfig | None = None):
        if movies is not None:
            k = int(movies.frames_per_movie)
            self._set_movies(*simulate_movies(max(1, -(-n // k)), movies, seed=seed), movies, upsampling)
        else:
            self.scales = None
            self.frames, self.locs = simulate(n, sim, seed=seed)
            self._index(sim.pixel_size, sim.frame_size, upsampling)

    def _set_movies(self, frames, locs, movie, settings, movies: MovieConfig, upsampling: int) -> None:
        """Hold movies as `simulate_movies` returns them, with each movie's
        noise level, indexed for `batch`."""
        k = int(movies.frames_per_movie)
        self.frames, self.locs, self.movie, self.settings = frames, locs, movie, settings
        per_movie = np.array([movie_scale(torch.from_numpy(frames[i * k : (i + 1) * k]))
                              for i in range(len(settings))], np.float32)
        self.scales = per_movie[movie]
        self._index(movies.pixel_size, movies.frame_size, upsampling)

    def _index(self, pixel: float, size, upsampling: int) -> None:
        """The label grid (``pixel`` nm, ``size`` camera px) and the rows of
        each frame (the table sorted by frame)."""
        self.sr_pixel = pixel / upsampling
        self.shape = (size[0] * upsampling, size[1] * upsampling)
        order = np.argsort(self.locs.frame, kind="stable")
        if (order != np.arange(len(order))).any():
            self.locs = self.locs.select(order)
        self.starts = frame_starts(self.locs, len(self.frames))

    def __len__(self):
        return len(self.frames)

    def batch(self, idx: np.ndarray, device, label_scale: float = 1.0, rng: np.random.Generator | None = None,
              jitter: float = 0.0):
        """(frames, labels, scales): scales None without movies; ``rng`` and
        ``jitter`` spread each scale log-normally (training only)."""
        x = torch.from_numpy(self.frames[idx]).to(device)
        y = render_labels(self.locs, idx, self.shape, self.sr_pixel, self.starts).to(device)
        scale = None
        if self.scales is not None:
            sc = self.scales[idx]
            if rng is not None and jitter > 0:
                sc = sc * np.exp(rng.normal(0.0, jitter, len(sc)))
            scale = torch.from_numpy(np.ascontiguousarray(sc, np.float32)).to(device)
        return x, (y * label_scale if label_scale != 1 else y), scale


def _loss(model: DSIRModel, x, y, kernel, pad, l1: float = 0.0, scale=None) -> torch.Tensor:
    """MSE of the blurred prediction against the blurred label (DSIR), or of
    the prediction itself for networks trained to output the blurred label
    (no ``output_blur``, camera-resolution networks)."""
    pred = model.raw(x, scale=scale).unsqueeze(1)
    target = F.conv2d(y, kernel, padding=pad)
    if model.camera_resolution:
        loss = F.mse_loss(pred, target)
    else:
        loss = F.mse_loss(F.conv2d(pred, kernel, padding=pad), target)
    if l1:
        loss = loss + l1 * pred.abs().mean()
    return loss


def _val_loss(model, data, cfg, kernel, pad, device) -> float:
    model.net.eval()
    tot, n = 0.0, 0
    with torch.inference_mode():
        for s in range(0, len(data), cfg.batch_size):
            idx = np.arange(s, min(s + cfg.batch_size, len(data)))
            x, y, sc = data.batch(idx, device, cfg.label_scale)
            tot += float(_loss(model, x, y, kernel, pad, cfg.l1, sc)) * len(idx)
            n += len(idx)
    return tot / max(n, 1)


def _pixel_size(cfg: TrainConfig) -> float:
    return float(cfg.movies.pixel_size if cfg.movies is not None else cfg.simulation.pixel_size)


def last_path(model_path: Path) -> Path:
    """Where a training to ``model_path`` keeps the state it resumes from:
    ``NAME.last.pt`` beside it."""
    return model_path.with_name(model_path.stem + ".last.pt")


#: settings a resumed run may change: how long, where, how often a panel
RESUME_MAY_CHANGE = ("epochs", "device", "png_every")


def _check_resume(stored: dict | None, cfg: TrainConfig, last: Path) -> None:
    """Refuse to resume the run whose settings (``stored``, its
    `TrainConfig.to_dict`; None: a state saved before they were kept) differ
    from ``cfg`` but for `RESUME_MAY_CHANGE`: its weights, data and schedule
    would not fit them."""
    if stored is None:
        return
    now = cfg.to_dict()
    diff = []  # (name, then, now); within a dict (the simulation), the settings that differ
    for k in stored:
        if k in RESUME_MAY_CHANGE or stored.get(k) == now.get(k):
            continue
        a, b = stored[k], now.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            diff += [(f"{k} {j}", a.get(j), b.get(j)) for j in sorted(set(a) | set(b)) if a.get(j) != b.get(j)]
        else:
            diff.append((k, a, b))
    if diff:
        said = "; ".join(f"{k}: {a!r} then, {b!r} now" for k, a, b in diff[:4])
        raise DSIRError(f"{last}: the interrupted run had other settings ({said}); resume with the same command "
                        "and --resume (only --epochs, --device and --png-every may change)")


def cosine_lr(lr: float, step: int, n_steps: float) -> float:
    """The learning rate at ``step`` of ``n_steps``: ``lr`` decayed along a
    half cosine to 5 % of it at the last step (and after)."""
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, n_steps)))))


def train_epoch(model, data, cfg: TrainConfig, opt, kernel, pad, device, rng, lr_at, step0: int,
                loss_fn=None) -> list:
    """One pass over ``data`` (`_Data`) in a random order of ``rng``, in
    batches of ``cfg.batch_size``, the learning rate ``lr_at(step)`` from
    step ``step0`` on: the batches' losses (detached tensors, read when the
    caller wants: on a GPU each read waits for the device). ``loss_fn(x,
    y, scale)``: the loss of a batch (default: `dsir train`'s)."""
    order = rng.permutation(len(data))
    losses = []
    for k, s in enumerate(range(0, len(order), cfg.batch_size)):
        for g in opt.param_groups:
            g["lr"] = lr_at(step0 + k)
        x, y, sc = data.batch(np.sort(order[s : s + cfg.batch_size]), device, cfg.label_scale, rng, cfg.scale_jitter)
        loss = _loss(model, x, y, kernel, pad, cfg.l1, sc) if loss_fn is None else loss_fn(x, y, sc)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return losses


def iter_train(cfg: TrainConfig, model_path: str | Path | None = None, *, save: bool = True,
               resume: bool = False, log_dir: str | Path | None = None,
               metadata: dict | None = None) -> Generator[EpochLog | TrainStatus, None, DSIRModel]:
    """Train; yield a `TrainStatus` per stage and an `EpochLog` per epoch;
    return the best model.

    The best checkpoint (lowest validation loss) is kept at ``model_path``;
    ``<model_path>.last.pt`` holds the state to ``resume`` from. A CSV log and
    every ``png_every`` epochs a PNG of 4 validation frames (input,
    prediction, ground truth, as the loss sees them) and ``<stem>_loss.png``
    (loss curves) go to ``log_dir`` (default: beside the model).
    On KeyboardInterrupt the state is saved before the interrupt propagates.
    ``metadata`` (plain types) is stored in the checkpoint, e.g. the command.
    """
    if cfg.epochs < 1 or cfg.batch_size < 1 or cfg.n_train < 1 or cfg.n_val < 1:
        raise DSIRError("epochs, batch size, n_train and n_val must all be >= 1")
    if not (cfg.lr > 0):
        raise DSIRError(f"learning rate must be > 0, got {cfg.lr}")
    if not (cfg.weight_decay >= 0 and math.isfinite(cfg.weight_decay)):
        raise DSIRError(f"weight decay must be >= 0, got {cfg.weight_decay}")
    if cfg.arch not in ARCHS:
        raise DSIRError(f"unknown architecture {cfg.arch!r} (use {', '.join(ARCHS)})")
    if cfg.movies is None and as_range("density", cfg.simulation.density)[1] <= 0:
        raise DSIRError(f"density {cfg.simulation.density} emitters/um^2: frames with no emitter teach the network "
                        "nothing to find (give a density > 0)")
    if cfg.png_every < 0:
        raise DSIRError(f"png_every must be >= 0 epochs (0: none), got {cfg.png_every}")
    if cfg.movies is not None and cfg.normalization != "movie":
        raise DSIRError("training on movies needs normalization 'movie' (each movie's noise level)")
    if cfg.normalization == "movie" and cfg.movies is None:
        raise DSIRError("normalization 'movie' needs training movies (TrainConfig.movies)")
    from .model import resolve_device

    device = resolve_device(cfg.device)
    model_path = Path(model_path) if model_path else default_model_path()
    log_dir = Path(log_dir) if log_dir else model_path.parent
    if save:
        if log_dir.exists() and not log_dir.is_dir():
            raise DSIRError(f"{log_dir}: the log folder is a file")
        model_path.parent.mkdir(parents=True, exist_ok=True)
        log_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    if cfg.init and str(cfg.init).startswith("legacy:"):
        # fine-tune from the original weights, with independent batch-norms
        legacy = load_legacy(str(cfg.init)[len("legacy:"):])
        model = DSIRModel(dsir_from_legacy(legacy.net), "dsir", 8, "zscore", _pixel_size(cfg),
                          {"initialised_from": "original DSIR weights (2018, MIT)"})
    elif cfg.init:
        model = load_checkpoint(cfg.init)
        if model.legacy:
            raise DSIRError(f"{cfg.init}: an original DSIR file: fine-tune it with init legacy:PATH")
        if model.normalization != cfg.normalization:
            raise DSIRError(f"{cfg.init}: the model normalises its input by {model.normalization!r}; fine-tune it "
                            f"with the same normalization" + (" (--movies)" if model.normalization == "movie" else ""))
        if model.output_blur:  # linear output: judged through this run's loss kernel from now on
            model.output_blur = (cfg.kernel_width, cfg.kernel_fwhm)
        model.pixel_size = _pixel_size(cfg)  # trained on from now on (not the initial model's)
    elif cfg.arch == "shuffle":
        model = DSIRModel(ShuffleNet(cfg.channels, cfg.context, cfg.upsampling), "shuffle", cfg.upsampling,
                          cfg.normalization, _pixel_size(cfg))
    else:
        model = DSIRModel(DSIRNet(cfg.encoder, cfg.decoder, cfg.head_norm, cfg.head_relu), "dsir", cfg.upsampling,
                          cfg.normalization, _pixel_size(cfg),
                          output_blur=None if cfg.head_relu else (cfg.kernel_width, cfg.kernel_fwhm))
    model.to(device)
    state = None
    if resume:  # its settings and epochs checked before the data are made
        if not last_path(model_path).is_file():
            raise DSIRError(f"{last_path(model_path)}: nothing to resume from")
        state = torch.load(last_path(model_path), map_location="cpu", weights_only=True)
        _check_resume(state.get("config"), cfg, last_path(model_path))
        if int(state["epoch"]) > cfg.epochs:
            raise DSIRError(f"{last_path(model_path)}: the run has done {int(state['epoch'])} epochs, more than the "
                            f"{cfg.epochs} asked: give --epochs {int(state['epoch'])} or more")
    yield TrainStatus("simulating", f"simulating {cfg.n_train} training and {cfg.n_val} validation frames",
                      0, cfg.epochs)
    train_data = _Data(cfg.n_train, cfg.simulation, cfg.seed, model.upsampling, cfg.movies)
    val_data = _Data(cfg.n_val, cfg.simulation, cfg.seed + 1_000_003, model.upsampling, cfg.movies)
    kernel = gauss_kernel(cfg.kernel_width, cfg.kernel_fwhm).to(device)
    pad = cfg.kernel_width // 2
    opt = torch.optim.Adam(model.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    n_steps = cfg.epochs * -(-len(train_data) // cfg.batch_size)

    def lr_at(step: int) -> float:
        return cosine_lr(cfg.lr, step, n_steps) if cfg.lr_decay else cfg.lr
    history: dict[str, list[float]] = {"train": [], "val": []}
    best, start_epoch = math.inf, 0
    last = last_path(model_path)
    if state is not None:
        model.net.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        start_epoch, best = int(state["epoch"]), float(state["best"])
        history = {k: list(v) for k, v in state["history"].items()}
        rng = np.random.default_rng(cfg.seed + start_epoch)
    sim_meta = cfg.movies.to_dict() if cfg.movies is not None else cfg.simulation.to_dict()
    model.metadata.update({"simulation": sim_meta, **(metadata or {})})
    training_meta = cfg.to_dict()

    def save_last(epoch: int):
        if save:
            from .io import atomic_output
            with atomic_output(last, overwrite=True) as tmp:
                torch.save({"state_dict": model.net.state_dict(), "optimizer": opt.state_dict(),
                            "epoch": epoch, "best": best, "history": history, "config": training_meta}, tmp)

    csv_path = log_dir / (model_path.stem + "_log.csv")
    if save and (not resume or not csv_path.is_file()):  # (resumed into another --log-dir: a new log, its header)
        with open(csv_path, "w", newline="") as fh:
            csv.writer(fh).writerow(["epoch", "train_loss", "val_loss", "best_val_loss", "seconds"])
    epoch = completed = start_epoch
    run_seconds = 0.0
    try:
        for epoch in range(start_epoch + 1, cfg.epochs + 1):
            t0 = time.perf_counter()
            model.net.train()
            losses = train_epoch(model, train_data, cfg, opt, kernel, pad, device, rng, lr_at,
                                 (epoch - 1) * -(-len(train_data) // cfg.batch_size))
            tl = float(np.mean([float(v) for v in losses]))
            vl = _val_loss(model, val_data, cfg, kernel, pad, device)
            history["train"].append(tl)
            history["val"].append(vl)
            improved = vl < best
            if improved:
                best = vl
                if save:
                    save_checkpoint(model_path, model, training={**training_meta, "epochs_done": epoch,
                                                                 "best_val_loss": best})
            if save and cfg.png_every and (epoch % cfg.png_every == 0 or epoch == cfg.epochs):
                _write_panel(log_dir / f"{model_path.stem}_epoch{epoch:04d}.png", model, val_data, kernel, pad,
                             device, epoch)
                plot_loss_curves(log_dir / f"{model_path.stem}_loss.png", history, title=model_path.name)
            dt = time.perf_counter() - t0  # the whole epoch, as the log and the bar report it
            if save:
                with open(csv_path, "a", newline="") as fh:
                    csv.writer(fh).writerow([epoch, f"{tl:.6g}", f"{vl:.6g}", f"{best:.6g}", f"{dt:.2f}"])
                save_last(epoch)
            completed = epoch
            run_seconds += dt
            yield EpochLog(epoch, cfg.epochs, tl, vl, best, improved, dt, run_seconds / (epoch - start_epoch))
    except KeyboardInterrupt:
        if completed > start_epoch or not resume:
            save_last(completed)
        raise

    if save and model_path.is_file():
        model = load_checkpoint(model_path).to(device)
    if cfg.calibrate:
        more = f" and {cfg.error_movies} more movies" if cfg.movies is not None and cfg.error_movies else ""
        yield TrainStatus("calibrating", f"calibrating the localizer on {len(val_data)} validation frames{more}",
                          epoch, cfg.epochs)
        if cfg.movies is not None:
            params, report = calibrate_movie_localizer(model, val_data.frames, val_data.locs, val_data.sr_pixel,
                                                       val_data.scales, val_data.movie, val_data.settings,
                                                       cfg.movies, cfg.seed, cfg.batch_size, cfg.error_movies)
            jac = report["mean_jaccard"]
            model.metadata["calibration"] = report
            model.metadata["spot_ceiling"] = spot_ceiling(val_data.frames, val_data.movie, val_data.scales)
        else:
            params, jac = calibrate_localizer(model, val_data.frames, val_data.locs, val_data.sr_pixel,
                                              cfg.batch_size, blur=(cfg.kernel_width, cfg.kernel_fwhm))
        model.metadata["localize"] = params.to_dict()
        model.metadata["validation_jaccard_250nm"] = jac
    if save:
        save_checkpoint(model_path, model, training={**training_meta, "epochs_done": epoch, "best_val_loss": best})
    jac = model.metadata.get("validation_jaccard_250nm") if cfg.calibrate else None
    yield TrainStatus("done", "trained" + (f", validation Jaccard (250 nm) {jac:.3f}" if jac is not None else ""),
                      epoch, cfg.epochs)
    return model


def _write_panel(path, model, data, kernel, pad, device, epoch=None):
    """4 validation frames, one a row: input, blurred prediction, blurred
    ground truth (what the loss compares), each scaled to its own range,
    each column titled."""
    idx = np.arange(min(4, len(data)))
    x, y, sc = data.batch(idx, device)
    model.net.eval()
    with torch.inference_mode():
        pred = model.raw(x, scale=sc).unsqueeze(1)  # what the loss sees: raw output, blurred (DSIR)
        pb = (pred if model.camera_resolution else F.conv2d(pred, kernel, padding=pad))[:, 0].cpu().numpy()
        yb = F.conv2d(y, kernel, padding=pad)[:, 0].cpu().numpy()
    rows = [[data.frames[i], pb[k], yb[k]] for k, i in enumerate(idx)]
    blurred = "output" if model.camera_resolution else "output, blurred"
    save_figure(images_figure(rows, ["input (camera frame)", f"prediction ({blurred})", "truth (blurred)"],
                              f"validation frames, epoch {epoch}" if epoch else "validation frames"), path)


def train(cfg: TrainConfig, model_path=None, *, verbose: bool = False, **kwargs) -> DSIRModel:
    """Blocking training; with ``verbose`` a tqdm bar shows both losses."""
    if not verbose:
        return drive(iter_train(cfg, model_path, **kwargs))
    from tqdm import tqdm

    with tqdm(total=cfg.epochs, desc="training", unit="epoch", file=sys.stderr) as bar:
        return drive(iter_train(cfg, model_path, **kwargs), lambda log: show_epoch(bar, log))


# tqdm's own rate counts everything since the bar opened (simulating the data,
# calibrating the localizer), so the bar shows the epochs' own times instead
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def show_epoch(bar, log: EpochLog | TrainStatus) -> None:
    """Update a tqdm bar from a record of `iter_train`: a `TrainStatus`
    becomes the bar's description; an `EpochLog` sets the count, the
    epoch's own seconds, the time left at the mean epoch time, and the losses."""
    bar.bar_format = BAR_FORMAT
    if isinstance(log, TrainStatus):
        bar.set_description_str(log.message, refresh=False)
        bar.refresh()
        return
    bar.set_description_str("training", refresh=False)
    bar.n = log.epoch
    mean = log.mean_seconds if math.isfinite(log.mean_seconds) else log.seconds
    left = mean * (log.epochs - log.epoch)
    bar.set_postfix_str(f"{log.seconds:.1f} s/epoch, {_hms(left)} left, train {log.train_loss:.4g}, "
                        f"val {log.val_loss:.4g}, best {log.best_val_loss:.4g}", refresh=False)
    bar.refresh()

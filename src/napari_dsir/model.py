"""A network with what it needs to be applied (`DSIRModel`), its input
normalisation and its checkpoints; the networks themselves are in `networks`.

Input frames are (batch, y, x) camera ADU; `preprocess` up-samples them x u
(bilinear; not for camera-resolution networks) and normalises them; the
network maps that to a (batch, 1, u*y, u*x) localization image on a grid of
pixel size p/u nm.
"""

from __future__ import annotations

import difflib
import math
import pickle
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import __version__
from .errors import DSIRError
from .networks import ARCHITECTURES, DSIRNet, LegacyDSIR, ShuffleNet, dsir_from_legacy

__all__ = ["ARCHITECTURES", "DSIRModel", "DSIRNet", "LegacyDSIR", "ShuffleNet", "dsir_from_legacy",
           "load_checkpoint", "load_model", "save_checkpoint"]

CHECKPOINT_FORMAT = "napari-dsir-checkpoint"
CHECKPOINT_VERSION = 1
# zscore / robust: per frame, on the up-sampled frame (DSIR); movie: each
# frame's median subtracted, divided by the movie's noise level (`movie_scale`)
NORMALIZATIONS = ("zscore", "robust", "movie")

# Localizer for the original weights, from benchmarks/calibrate_legacy.py
# (best Jaccard at 250 nm, 0.637, on simulated 64x64 frames at 1-6 emitters/um^2).
LEGACY_LOCALIZE = {"threshold": 0.002367, "radius": 2, "window": 2, "blur_fwhm": 3.0, "blur_width": 5}


# --------------------------------------------------------------------------- pre-processing


def frame_stats(frames: torch.Tensor, upsampling: int = 8, normalization: str = "zscore",
                max_pixels: int = 1 << 22, legacy_edges: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame (centre, scale) of the up-sampled frames, shape (batch,).

    ``zscore``: mean and standard deviation (the original DSIR). ``robust``:
    median and MAD-based standard deviation, insensitive to bright spots.
    ``movie``: the median of the camera frame, and NaN for the scale (the
    movie's, `movie_scale`, is given separately). Frames are up-sampled a
    few at a time (at most ``max_pixels`` up-sampled pixels at once), so
    large frames need little memory. ``legacy_edges``: see `_upsample`.
    """
    if normalization == "movie":
        return _stats(frames.to(torch.float32).unsqueeze(1), normalization)
    n, h, w = frames.shape
    step = max(1, int(max_pixels) // max(1, h * w * upsampling * upsampling))
    centres, scales = [], []
    for i in range(0, n, step):
        c, s = _stats(_upsample(frames[i : i + step], upsampling, legacy_edges), normalization)
        centres.append(c)
        scales.append(s)
    return torch.cat(centres), torch.cat(scales)


def noise_level(frames: torch.Tensor) -> torch.Tensor:
    """Robust standard deviation of each frame's pixel noise, shape (batch,).

    From the differences of neighbouring pixels (both axes): 1.4826 x their
    median absolute value / sqrt(2), which background pixels dominate. Bright
    spots raise it somewhat at high density, in training as in use.
    """
    x = frames.to(torch.float32)
    dx = (x[:, :, 1:] - x[:, :, :-1]).flatten(1)
    dy = (x[:, 1:, :] - x[:, :-1, :]).flatten(1)
    return torch.cat([dx, dy], 1).abs().median(dim=1).values * (1.4826 / math.sqrt(2.0))


#: `movie_scale`: frames whose noise is under this share of their peak
#: height have none (rendered without noise). At 0.1 %, as before, a 16-bit
#: camera's saturated bead (4,000 noise levels) made a noisy movie "noise
#: free": divided by 1 % of the bead's height, its emitters vanished
NOISE_FREE = 1e-6


def movie_scale(frames: torch.Tensor) -> float:
    """The noise level of a movie from a sample of its frames (frame, y, x):
    the median of `noise_level` over frames. Frames without measurable noise
    (synthetic; under `NOISE_FREE` of their peak height above the median)
    use 1% of that height instead."""
    if frames.ndim != 3 or frames.shape[0] < 1 or min(frames.shape[1:]) < 2:
        raise DSIRError(f"need frames (frame, y, x) of at least 2x2 px, got shape {tuple(frames.shape)}")
    x = frames.to(torch.float32)
    s = float(noise_level(x).median())
    flat = x.flatten(1)
    spread = float((flat.amax(1) - flat.median(1).values).median())
    if s <= NOISE_FREE * spread:  # no measurable noise: a synthetic movie
        s = 0.01 * spread
    return max(s, 1e-6)


#: `spot_heights`: the 3x3 local maxima this many noise levels above their
#: frame's median are spots
SPOT_LEVEL = 8.0
#: a movie's spot height (`movie_spot_height`): this quantile of its spots'
SPOT_QUANTILE = 0.9
#: fewer spots than this: no spot height (nothing to compare)
MIN_SPOTS = 10
#: the share of a model's training movies whose spot height is under its
#: ``spot_ceiling`` (`napari_dsir.calibrate.spot_ceiling`)
SPOT_CEILING_SHARE = 0.99
#: the network's input (noise levels above the frame's median) is held at
#: this many times the model's ``spot_ceiling`` (`DSIRModel.raw`)
INPUT_CEILING = 3.0


def spot_heights(frames: torch.Tensor, scale: float) -> torch.Tensor:
    """Heights (in noise levels ``scale``, ADU) above their frame's median of
    the spots of (frame, y, x) frames: 3x3 local maxima over `SPOT_LEVEL`,
    a plateau (a saturated bead: tens of pixels at the camera's maximum)
    counted once."""
    x = frames.to(torch.float32)
    z = (x - x.flatten(1).median(1).values[:, None, None]) / float(scale)
    peak = F.max_pool2d(z[:, None], 3, 1, 1)[:, 0]
    top = (z == peak) & (z > SPOT_LEVEL)
    # maxima that touch are one plateau (distinct spots' maxima never touch): one height each,
    # counted (by connected parts) only in the frames that have one
    t = F.pad(top, (1, 1, 0, 1))
    h, w = top.shape[-2:]
    touch = top & (t[:, 1:, 2:] | t[:, 1:, 1 : w + 1] | t[:, 1:, :w] | t[:, :h, 2:])  # right, below
    some = touch.flatten(1).any(1)
    if not bool(some.any()):
        return z[top]
    from scipy import ndimage

    within = np.zeros((3, 3, 3), bool)
    within[1] = True  # 8-connected within a frame, never across frames
    lab, n = ndimage.label(top[some].cpu().numpy(), structure=within)
    heights = ndimage.maximum(z[some].cpu().numpy(), lab, np.arange(1, n + 1))
    plateaus = torch.as_tensor(np.asarray(heights, np.float32).reshape(-1), device=z.device)
    return torch.cat([z[~some][top[~some]], plateaus])


def movie_spot_height(frames: torch.Tensor, scale: float) -> float | None:
    """The `SPOT_QUANTILE` of a movie's `spot_heights` (noise levels; None
    with fewer than `MIN_SPOTS` spots): how bright its emitters look to a
    network that divides by its noise level."""
    h = spot_heights(frames, scale)
    if h.numel() < MIN_SPOTS:
        return None
    return float(torch.quantile(h.to(torch.float64), SPOT_QUANTILE))


def brightness_factor(height: float | None, ceiling: float | None) -> float:
    """How much a movie of spot height ``height`` is scaled down for a
    network whose training movies' spot heights stay under ``ceiling``
    (`DSIRModel.spot_ceiling`): height / ceiling where above it, else 1."""
    if height is None or not ceiling:
        return 1.0
    return max(1.0, float(height) / float(ceiling))


def _stats(x: torch.Tensor, normalization: str) -> tuple[torch.Tensor, torch.Tensor]:
    if normalization not in NORMALIZATIONS:
        raise DSIRError(f"unknown normalization {normalization!r} (use {', '.join(NORMALIZATIONS)})")
    flat = x.flatten(1)
    if normalization == "movie":
        return flat.median(dim=1).values, torch.full((len(flat),), float("nan"), device=x.device)
    if normalization == "zscore":
        centre, scale = flat.mean(dim=1), flat.std(dim=1, unbiased=False)
    else:
        centre = flat.median(dim=1).values
        scale = (flat - centre[:, None]).abs().median(dim=1).values * 1.4826
    return centre, torch.clamp(scale, min=1e-6)


def _upsample(frames: torch.Tensor, upsampling: int, legacy_edges: bool = False) -> torch.Tensor:
    """(batch, y, x) -> (batch, 1, u*y, u*x) float32, bilinear (half-pixel centres).

    Up-sampled pixel j (either axis) samples camera coordinate (j + 0.5)/u - 0.5
    (pixel-index units). Beyond the outer pixel centres the frame is clamped
    (edge value). With ``legacy_edges`` it is what the original DSIR got from
    scikit-image's ``resize(frame, (u*y, u*x), mode='constant',
    preserve_range=True)``: zeros outside the frame blended in, then each
    frame clipped to its own [min, max] (``clip=True``), so the outer u/2
    up-sampled pixels each side fall towards the frame's minimum.
    """
    x = frames.to(torch.float32).unsqueeze(1)
    if upsampling == 1:
        return x
    if not legacy_edges:
        return F.interpolate(x, scale_factor=upsampling, mode="bilinear", align_corners=False)
    # one camera pixel of zeros each side; the samples kept never reach
    # beyond it, so the clamping inside interpolate plays no part
    u = int(upsampling)
    y = F.interpolate(F.pad(x, (1, 1, 1, 1)), scale_factor=u, mode="bilinear", align_corners=False)
    y = y[:, :, u:-u, u:-u]
    lo, hi = x.amin(dim=(2, 3), keepdim=True), x.amax(dim=(2, 3), keepdim=True)
    return torch.clamp(y, lo, hi)


def preprocess(frames: torch.Tensor, upsampling: int = 8, normalization: str = "zscore",
               stats: tuple[torch.Tensor, torch.Tensor] | None = None,
               legacy_edges: bool = False, scale: float | None = None) -> torch.Tensor:
    """(batch, y, x) ADU -> (batch, 1, u*y, u*x) up-sampled, normalised input.

    Each frame is normalised by its `frame_stats` (``stats`` gives them when
    ``frames`` is a tile of larger frames, so tiles match whole frames).
    ``movie`` normalisation divides by ``scale``, the movie's noise level
    (`movie_scale`; a number, one per frame, or None: measured on these
    frames). ``legacy_edges``: the original DSIR's up-sampling at the
    frame's edges (see `_upsample`), used for its weights only.
    """
    if normalization == "movie":
        if stats is None:
            stats = frame_stats(frames, upsampling, normalization)
        s = movie_scale(frames) if scale is None else scale
        c = stats[0].to(torch.float32)
        stats = (c, torch.as_tensor(s, dtype=torch.float32, device=c.device).expand_as(c))
    x = _upsample(frames, upsampling, legacy_edges)
    if stats is None:
        centre, scale_ = _stats(x, normalization)
    else:
        centre, scale_ = (t.to(x.device, torch.float32) for t in stats)
    return (x - centre[:, None, None, None]) / scale_[:, None, None, None]


# --------------------------------------------------------------------------- model + metadata


@dataclass
class DSIRModel:
    """A network with what is needed to apply it: up-sampling, normalisation,
    the pixel size (nm) it was trained at, and free-form metadata."""

    net: nn.Module
    arch: str = "dsir"
    upsampling: int = 8
    normalization: str = "zscore"
    pixel_size: float = 100.0
    metadata: dict = field(default_factory=dict)
    source: str = ""
    output_blur: tuple[int, float] | None = None  # (width, fwhm) SR px, see predict

    def __post_init__(self):
        if self.camera_resolution and int(getattr(self.net, "upsampling", self.upsampling)) != int(self.upsampling):
            raise DSIRError(f"this network's output is fixed at up-sampling {self.net.upsampling}, "
                            f"not {self.upsampling}")
        # channels-last is 1.5-3x faster for these convolutions on CPU
        self.net.to(memory_format=torch.channels_last)

    @property
    def legacy(self) -> bool:
        return self.arch == "dsir-legacy"

    def to(self, device) -> DSIRModel:
        self.net.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    @property
    def camera_resolution(self) -> bool:
        """The network takes camera frames (no up-sampling before it)."""
        return bool(getattr(self.net, "camera_resolution", False))

    @property
    def input_limit(self) -> float | None:
        """The height (noise levels above a frame's median) at which the
        network's input is held: `INPUT_CEILING` x `spot_ceiling` (None:
        not a movie-normalised model or no ceiling known)."""
        c = self.spot_ceiling
        return INPUT_CEILING * c if self.normalization == "movie" and c else None

    @property
    def spot_ceiling(self) -> float | None:
        """The spot height (noise levels, `movie_spot_height`) that
        `SPOT_CEILING_SHARE` of the model's training movies stay under
        (checkpoint metadata ``spot_ceiling``; None: not known)."""
        c = (self.metadata.get("spot_ceiling") or {}).get("height")
        return float(c) if c else None

    def input_scale(self, frames) -> tuple[float | None, float]:
        """(scale, factor) for ``movie`` normalisation from a sample of frames
        (frame, y, x): the movie's noise level (ADU) times the
        `brightness_factor` of its spots against the model's training
        (emitters taller than any the network was trained on make it add
        false detections beside them); (None, 1.0) for per-frame
        normalisations."""
        if self.normalization != "movie":
            return None, 1.0
        x = torch.as_tensor(frames, dtype=torch.float32)
        s = movie_scale(x)
        f = brightness_factor(movie_spot_height(x, s), self.spot_ceiling)
        return s * f, f

    def movie_scale(self, frames) -> float | None:
        """The scale of `input_scale` (None for per-frame normalisations)."""
        return self.input_scale(frames)[0]

    def raw(self, frames: torch.Tensor, stats=None, scale=None) -> torch.Tensor:
        """(batch, y, x) ADU -> (batch, u*y, u*x) network output, as trained.

        Frames whose size does not fit the network's pooling grid are padded
        (replicate) and cropped back. ``stats``, ``scale``: see `preprocess`.
        The original weights (``legacy``) get the original's up-sampling at
        the frame's edges (see `_upsample`).
        """
        u = int(self.upsampling)
        up = 1 if self.camera_resolution else u
        x = preprocess(frames, up, self.normalization, stats, legacy_edges=self.legacy, scale=scale)
        if self.input_limit is not None:
            # far beyond anything in training (a saturated bead, a dust grain): held at a
            # height it knows, so its output stays local instead of a halo of detections
            x = torch.clamp(x, max=self.input_limit)
        h, w = x.shape[-2:]
        m = int(getattr(self.net, "stride", 8))
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        net = self.net if self.net.training else self._inference_net()
        out = net(x.contiguous(memory_format=torch.channels_last))
        k = u // up
        return out[:, 0, : h * k, : w * k]

    def _inference_net(self) -> nn.Module:
        """The eval-mode network, with batch-norm folded where the architecture
        allows (cached; rebuilt when any weight or statistic changes)."""
        if not hasattr(self.net, "fused"):
            return self.net
        tensors = list(self.net.parameters()) + list(self.net.buffers())
        key = (tuple(t._version for t in tensors), tuple(t.data_ptr() for t in tensors))
        if getattr(self, "_fused_key", None) != key:
            with torch.inference_mode(False), torch.no_grad():  # normal tensors, usable anywhere
                self._fused = self.net.fused().to(memory_format=torch.channels_last).requires_grad_(False)
            self._fused_key = key
        return self._fused

    def predict(self, frames: torch.Tensor, tile: int | str | None = "auto",
                scale: float | None = None) -> torch.Tensor:
        """(batch, y, x) ADU -> (batch, u*y, u*x) localization images (>= 0).

        Models trained with a linear output (``output_blur`` set) are judged
        by the loss only through the loss's Gaussian; their output is blurred
        by that Gaussian (normalised to sum 1) before use.

        Frames larger than ``tile`` camera pixels (either side) go through
        the network in overlapping tiles of about ``tile`` x ``tile`` px,
        normalised with the whole frame's statistics and stitched: the same
        result as whole frames (to float rounding) in a fraction of the
        memory. ``"auto"``: `AUTO_TILE` px; None or 0: never tile.
        ``scale``: the movie's noise level (``movie`` normalisation; None:
        measured on these frames, see `movie_scale`).
        """
        if self.normalization == "movie" and scale is None:
            scale = self.movie_scale(frames)
        if tile == "auto":
            tile = AUTO_TILE
        h, w = frames.shape[-2:]
        if tile and not self.legacy and max(h, w) > int(tile):
            return self._predict_tiled(frames, int(tile), scale)
        return self._finish(self.raw(frames, scale=scale))

    def _finish(self, y: torch.Tensor) -> torch.Tensor:
        if self.output_blur:
            from .localize import blur

            y = blur(y, *self.output_blur)
        return torch.clamp(y, min=0)

    def tile_halo(self) -> int:
        """Camera pixels of context each side of a tile that make tiles
        match whole frames: the network's receptive field (DSIR: 3 x max-pool
        2 + 3x3 convs, < 32 up-sampled px each side), the output blur, the
        bilinear up-sampling (1 px), rounded up to the pooling grid."""
        u = int(self.upsampling)
        blur_r = int(self.output_blur[0]) // 2 if self.output_blur else 0
        if self.camera_resolution:
            halo = int(self.net.field) + -(-blur_r // u)
        else:
            halo = -(-(32 + blur_r) // u) + 1
        a = self._tile_align()
        return -(-halo // a) * a

    def _tile_align(self) -> int:
        # tile origins in camera px must map onto the network's pooling grid
        if self.camera_resolution:
            return int(self.net.stride)
        return 8 // math.gcd(int(self.upsampling), 8)

    def _predict_tiled(self, frames: torch.Tensor, tile: int, scale: float | None = None) -> torch.Tensor:
        u, a = int(self.upsampling), self._tile_align()
        tile = max(a, -(-tile // a) * a)
        halo = self.tile_halo()
        n, h, w = frames.shape
        stats = frame_stats(frames, 1 if self.camera_resolution else u, self.normalization)
        out = torch.empty((n, h * u, w * u), dtype=torch.float32, device=frames.device)
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
                ya, xa = max(0, y0 - halo), max(0, x0 - halo)
                yb, xb = min(h, y1 + halo), min(w, x1 + halo)
                sr = self._finish(self.raw(frames[:, ya:yb, xa:xb], stats, scale))
                out[:, y0 * u : y1 * u, x0 * u : x1 * u] = sr[
                    :, (y0 - ya) * u : (y1 - ya) * u, (x0 - xa) * u : (x1 - xa) * u
                ]
        return out


# Frames larger than this (camera px, either side) are processed in tiles.
AUTO_TILE = 128


def save_checkpoint(path, model: DSIRModel, training: dict | None = None) -> Path:
    """Save a weights-only checkpoint: state dict plus plain-type metadata."""
    from .io import atomic_output

    meta = dict(model.metadata)
    if training is not None:
        meta["training"] = training
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "arch": model.arch,
        "arch_params": model.net.arch_params(),
        "upsampling": int(model.upsampling),
        "normalization": model.normalization,
        "pixel_size": float(model.pixel_size),
        "output_blur": list(model.output_blur) if model.output_blur else None,
        "package_version": __version__,
        "metadata": meta,
        "state_dict": {k: v.detach().cpu() for k, v in model.net.state_dict().items()},
    }
    with atomic_output(path, overwrite=True) as tmp:
        torch.save(ckpt, tmp)
    return Path(path)


def _torch_load(path: Path):
    if not path.is_file():
        raise DSIRError(f"{path}: no such model file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as e:
        raise DSIRError(f"{path}: cannot read ({e.strerror or e})") from e
    # a checkpoint is a zip archive (torch >= 1.6) or a pickle (the 2018 weights)
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        try:
            text = bool(head) and b"\x00" not in head and bool(head.decode("utf-8"))
        except UnicodeDecodeError:
            text = False
        raise DSIRError(f"{path}: not a PyTorch checkpoint (.pt){': a text file' if text else ''}; "
                        "give a shipped model's name or a checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "weights_only" in msg or "Unsupported" in msg or "global" in msg.lower():
            raise DSIRError(
                f"{path}: refused: the file holds Python objects beyond weights "
                "(only weights-only checkpoints are loaded, a checkpoint can never run code)"
            ) from e
        raise DSIRError(f"{path}: not a PyTorch checkpoint ({msg.splitlines()[0][:120]})") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, AttributeError, KeyError) as e:
        first = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise DSIRError(f"{path}: not a valid or a truncated PyTorch checkpoint ({first})") from e


def _load_state(net: nn.Module, state: dict, path: Path) -> None:
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DSIRError(f"{path}: the checkpoint holds no state dict of tensors")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = str(e).splitlines()
        detail = "; ".join(ln.strip() for ln in lines[1:3]) or lines[0]
        raise DSIRError(f"{path}: weights do not fit the architecture ({detail[:200]})") from e


def load_legacy(path) -> DSIRModel:
    """Load an original DSIR (2018) state dict into `LegacyDSIR`."""
    path = Path(path)
    state = _torch_load(path)
    if isinstance(state, dict) and state.get("format") == CHECKPOINT_FORMAT:
        if state.get("arch") != "dsir-legacy":
            raise DSIRError(f"{path}: a napari-dsir checkpoint, not an original DSIR file "
                            "(give it without the legacy: prefix)")
        state = state["state_dict"]
    net = LegacyDSIR()
    _load_state(net, state, path)
    net.eval()
    return DSIRModel(
        net, "dsir-legacy", 8, "zscore", 100.0,
        {"description": "original DSIR weights (2018)", "localize": dict(LEGACY_LOCALIZE)},
        source=f"legacy:{path}",
    )


def load_checkpoint(path) -> DSIRModel:
    """Load a napari-dsir checkpoint (weights only). Original DSIR state
    dicts are recognised and loaded as the legacy model."""
    path = Path(path)
    ckpt = _torch_load(path)
    if not isinstance(ckpt, dict):
        raise DSIRError(f"{path}: not a napari-dsir checkpoint")
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        if {"conv1.weight", "convt1.weight", "bn4.weight"} <= set(ckpt):
            return load_legacy(path)
        if {"state_dict", "optimizer", "epoch"} <= set(ckpt):
            model = path.with_name(path.name.removesuffix(".last.pt") + ".pt") if path.name.endswith(".last.pt") \
                else None  # the checkpoint beside it, where named as dsir train names it
            give = f"give {model}" if model is not None else "give the checkpoint it was saved beside"
            raise DSIRError(f"{path}: the state a training resumes from, not a model: {give} (an interrupted "
                            "training's is finished by dsir train --resume)")
        raise DSIRError(f"{path}: not a napari-dsir checkpoint (no metadata; for an original "
                        "DSIR file use legacy:PATH)")
    arch = ckpt.get("arch")
    if arch not in ARCHITECTURES:
        raise DSIRError(f"{path}: unknown architecture {arch!r}")
    try:
        net = ARCHITECTURES[arch](**ckpt.get("arch_params", {}))
    except TypeError as e:
        raise DSIRError(f"{path}: bad architecture parameters ({e})") from e
    _load_state(net, ckpt.get("state_dict"), path)
    net.eval()
    norm = ckpt.get("normalization", "zscore")
    if norm not in NORMALIZATIONS:
        raise DSIRError(f"{path}: unknown normalization {norm!r}")
    blur = ckpt.get("output_blur")
    try:
        return DSIRModel(
            net, arch, int(ckpt.get("upsampling", 8)), norm, float(ckpt.get("pixel_size", 100.0)),
            dict(ckpt.get("metadata", {})), source=str(path),
            output_blur=(int(blur[0]), float(blur[1])) if blur else None,
        )
    except DSIRError as e:
        raise DSIRError(f"{path}: {e}") from e


# The models shipped in the package, by name: file and a line for menus.
SHIPPED_MODELS = {
    "default": ("dsir_default.pt", "fast camera-resolution network, any density and camera (2026)"),
    "wide": ("dsir_wide.pt", "the default's network 1.5x wider: closer positions in crowds, slower on a CPU (2026)"),
    "dsir": ("dsir_autoencoder.pt", "the DSIR auto-encoder on the x8 frame, retrained (2026)"),
}


def default_model_path(name: str = "default") -> Path:
    """Path of a model shipped inside the package (`SHIPPED_MODELS`)."""
    if name not in SHIPPED_MODELS:
        raise DSIRError(f"no shipped model named {name!r} (shipped: {', '.join(SHIPPED_MODELS)})")
    return Path(str(resources.files("napari_dsir") / "data" / SHIPPED_MODELS[name][0]))


def load_model(spec: str | Path | None = None, device: str | torch.device = "cpu") -> DSIRModel:
    """Load a model: ``None``/``"default"`` or another name of
    `SHIPPED_MODELS`, ``"legacy:PATH"`` (original DSIR weights) or a
    checkpoint path; moved to ``device``."""
    if spec is not None and not str(spec).strip():
        raise DSIRError(f"the model is given as {str(spec)!r}, an empty name (an unset variable?): give a shipped "
                        f"model's name ({', '.join(SHIPPED_MODELS)}) or a checkpoint file, or leave it out for "
                        "the default")
    name = "default" if spec is None else str(spec)
    if isinstance(spec, str) and name.lower() in SHIPPED_MODELS and not Path(name).exists():
        name = name.lower()  # "Wide": the shipped model
    if isinstance(spec, (str, type(None))) and name in SHIPPED_MODELS:
        model = load_checkpoint(default_model_path(name))
        model.source = name
    elif name.startswith("legacy:"):
        model = load_legacy(name[len("legacy:"):])
    else:
        if isinstance(spec, str) and not Path(spec).exists() and not Path(spec).suffix and not any(
                sep in spec for sep in "/\\"):
            # a bare word that is no file: a shipped model's name mistyped
            close = difflib.get_close_matches(name.lower(), list(SHIPPED_MODELS), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DSIRError(f"{spec}: no shipped model of that name and no such file ({hint}shipped: "
                            f"{', '.join(SHIPPED_MODELS)}; or a checkpoint file .pt)")
        model = load_checkpoint(spec)
    return model.to(device)


def resolve_device(device: str | None = "auto") -> torch.device:
    """'auto' -> cuda, then mps, then cpu; 'gpu' means cuda. Raises
    `DSIRError` when the device asked for is absent."""
    d = (device or "auto").lower()
    if d == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if d in ("cuda", "gpu") or d.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise DSIRError("CUDA was asked for but no CUDA GPU is available (use the CPU, or auto)")
        return torch.device("cuda" if d == "gpu" else d)
    if d == "mps":
        if not (getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()):
            raise DSIRError("MPS was asked for but is not available (use the CPU, or auto)")
        return torch.device("mps")
    if d == "cpu":
        return torch.device("cpu")
    raise DSIRError(f"unknown device {device!r} (use auto, cpu, cuda or mps)")

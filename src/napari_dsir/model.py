"""The DSIR auto-encoder, its checkpoints and the original (legacy) model.

Input frames are (batch, y, x) camera ADU; `preprocess` up-samples them x u
(bilinear) and normalises each frame; the network maps that to a
(batch, 1, u*y, u*x) localization image on a grid of pixel size p/u nm.
"""

from __future__ import annotations

import math
import pickle
import zipfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import __version__
from .errors import DSIRError

CHECKPOINT_FORMAT = "napari-dsir-checkpoint"
CHECKPOINT_VERSION = 1
NORMALIZATIONS = ("zscore", "robust")
DEFAULT_MODEL_NAME = "dsir_default.pt"

# Localizer for the original weights, from benchmarks/calibrate_legacy.py
# (best Jaccard at 250 nm, 0.637, on simulated 64x64 frames at 1-6 emitters/um^2).
LEGACY_LOCALIZE = {"threshold": 0.002367, "radius": 2, "window": 2, "blur_fwhm": 3.0, "blur_width": 5}


# --------------------------------------------------------------------------- pre-processing


def frame_stats(frames: torch.Tensor, upsampling: int = 8, normalization: str = "zscore",
                max_pixels: int = 1 << 22, legacy_edges: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-frame (centre, scale) of the up-sampled frames, shape (batch,).

    ``zscore``: mean and standard deviation (the original DSIR). ``robust``:
    median and MAD-based standard deviation, insensitive to bright spots.
    Frames are up-sampled a few at a time (at most ``max_pixels`` up-sampled
    pixels at once), so large frames need little memory. ``legacy_edges``:
    see `_upsample`.
    """
    n, h, w = frames.shape
    step = max(1, int(max_pixels) // max(1, h * w * upsampling * upsampling))
    centres, scales = [], []
    for i in range(0, n, step):
        c, s = _stats(_upsample(frames[i : i + step], upsampling, legacy_edges), normalization)
        centres.append(c)
        scales.append(s)
    return torch.cat(centres), torch.cat(scales)


def _stats(x: torch.Tensor, normalization: str) -> tuple[torch.Tensor, torch.Tensor]:
    if normalization not in NORMALIZATIONS:
        raise DSIRError(f"unknown normalization {normalization!r} (use {', '.join(NORMALIZATIONS)})")
    flat = x.flatten(1)
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
               legacy_edges: bool = False) -> torch.Tensor:
    """(batch, y, x) ADU -> (batch, 1, u*y, u*x) up-sampled, normalised input.

    Each frame is normalised by its `frame_stats` (``stats`` gives them when
    ``frames`` is a tile of larger frames, so tiles match whole frames).
    ``legacy_edges``: the original DSIR's up-sampling at the frame's edges
    (see `_upsample`), used for its weights only.
    """
    x = _upsample(frames, upsampling, legacy_edges)
    if stats is None:
        centre, scale = _stats(x, normalization)
    else:
        centre, scale = (t.to(x.device, torch.float32) for t in stats)
    return (x - centre[:, None, None, None]) / scale[:, None, None, None]


# --------------------------------------------------------------------------- networks


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _up_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 2, stride=2), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DSIRNet(nn.Module):
    """DSIR auto-encoder with its own batch-norm per stage.

    Encoder: 3 x [conv 3x3 + BN + ReLU + max-pool 2] (``encoder`` channels,
    16, 8, 8 by default); decoder: 3 x [transposed conv x2 + BN + ReLU]
    (``decoder`` channels, 8, 16, 8); a final conv 3x3 to one channel, then
    BN (``head_norm``) and ReLU (``head_relu``), both as the original. Without
    the final ReLU the output is linear while training (no dead output units)
    and `DSIRModel.predict` clips it at 0 in eval mode. Input height and width must be multiples of 8.
    """

    def __init__(self, encoder=(16, 8, 8), decoder=(8, 16, 8), head_norm: bool = True,
                 head_relu: bool = True):
        super().__init__()
        encoder, decoder = tuple(int(c) for c in encoder), tuple(int(c) for c in decoder)
        if len(encoder) != 3 or len(decoder) != 3 or min(encoder + decoder) < 1:
            raise DSIRError(f"encoder and decoder need 3 positive channel counts, got {encoder}, {decoder}")
        self.encoder_channels, self.decoder_channels = encoder, decoder
        enc, cin = [], 1
        for c in encoder:
            enc += [_conv_block(cin, c), nn.MaxPool2d(2, 2)]
            cin = c
        self.encoder = nn.Sequential(*enc)
        dec = []
        for c in decoder:
            dec.append(_up_block(cin, c))
            cin = c
        self.decoder = nn.Sequential(*dec)
        self.head_norm, self.head_relu = bool(head_norm), bool(head_relu)
        head = [nn.Conv2d(cin, 1, 3, padding=1)] + ([nn.BatchNorm2d(1)] if head_norm else [])
        self.head = nn.Sequential(*head, *([nn.ReLU()] if head_relu else []))
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def fused(self) -> nn.Module:
        """An inference-only copy with each batch-norm folded into the
        convolution before it (eval-mode statistics): same output, less work."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        def fold(seq: nn.Sequential) -> nn.Sequential:
            mods, out, i = list(seq), [], 0
            while i < len(mods):
                m = mods[i]
                nxt = mods[i + 1] if i + 1 < len(mods) else None
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(nxt, nn.BatchNorm2d):
                    out.append(fuse_conv_bn_eval(m, nxt, transpose=isinstance(m, nn.ConvTranspose2d)))
                    i += 2
                else:
                    out.append(fold(m) if isinstance(m, nn.Sequential) else m)
                    i += 1
            return nn.Sequential(*out)

        def pool_first(seq: nn.Sequential) -> nn.Sequential:
            # [conv, ReLU], max-pool -> conv, max-pool, ReLU: the same values
            # (ReLU is monotonic) with a quarter of the ReLU work
            mods, out, i = list(seq), [], 0
            while i < len(mods):
                m = mods[i]
                nxt = mods[i + 1] if i + 1 < len(mods) else None
                if isinstance(m, nn.Sequential) and isinstance(nxt, nn.MaxPool2d) and isinstance(m[-1], nn.ReLU):
                    out += list(m)[:-1] + [nxt, nn.ReLU(inplace=True)]
                    i += 2
                else:
                    out.append(m)
                    i += 1
            return nn.Sequential(*out)

        was_training = self.training
        self.eval()
        try:
            return nn.Sequential(pool_first(fold(self.encoder)), fold(self.decoder), fold(self.head)).eval()
        finally:
            self.train(was_training)

    def arch_params(self) -> dict:
        return {"encoder": list(self.encoder_channels), "decoder": list(self.decoder_channels),
                "head_norm": self.head_norm, "head_relu": self.head_relu}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.decoder(self.encoder(x)))


class LegacyDSIR(nn.Module):
    """The original 2018 DSIR network, reproducing its behaviour exactly.

    Layer names match the original state dict. Its forward pass shares bn2
    between four stages and bn1 between two, and normalises with the
    statistics of each frame (the original never called ``eval()`` and ran
    one frame at a time), so frames can be batched without changing results.
    """

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

    def arch_params(self) -> dict:
        return {}

    @staticmethod
    def _mean_var(x: torch.Tensor, block_bytes: int = 1 << 23) -> tuple[torch.Tensor, torch.Tensor]:
        """Per (frame, channel) mean and biased variance over y, x; (batch, C, 1, 1).

        Two passes (the mean, then the squared deviations, cascade sums): as
        accurate as `torch.var_mean` here and several times faster than its
        Welford loop. The deviations are formed a block of rows at a time
        (``block_bytes`` per frame), never as a full-size temporary; the blocks
        do not depend on the batch size, so neither does a frame's result."""
        mean = x.mean(dim=(2, 3), keepdim=True)
        _, c, h, w = x.shape
        rows = max(1, block_bytes // max(1, c * w * x.element_size()))
        ss = sum((x[:, :, r : r + rows] - mean).square_().sum(dim=(2, 3), keepdim=True) for r in range(0, h, rows))
        return mean, ss / (h * w)

    @staticmethod
    def _norm_relu(x: torch.Tensor, bn: nn.BatchNorm2d, pool: bool = False) -> torch.Tensor:
        """ReLU(batch-norm of ``x`` with each frame's own statistics), then
        max-pool 2 when ``pool``; ``x`` (batch, C, Y, X) is overwritten.

        Per-frame statistics equal batch-norm on a batch of one frame. The
        norm is applied as ``x * a + b`` per channel (as PyTorch's kernel
        does), in place: no full-size temporaries, and no copy out of
        channels-last (``F.instance_norm`` made three of each per stage, which
        cost more kernel time in page faults than the network took). With
        a > 0 (positive batch-norm weights, as in the original file) ReLU and
        the affine map are non-decreasing, so max-pooling first gives the
        same values (float rounding is monotonic too) on a quarter of the pixels.
        """
        mean, var = LegacyDSIR._mean_var(x)
        a = bn.weight.view(1, -1, 1, 1) * torch.rsqrt(var + bn.eps)
        b = bn.bias.view(1, -1, 1, 1) - mean * a
        if torch.is_grad_enabled() and x.requires_grad:  # autograd: no in-place
            y = F.relu(x * a + b)
            return F.max_pool2d(y, 2) if pool else y
        if pool:
            if bool((bn.weight < 0).any()):
                return F.max_pool2d(x.mul_(a).add_(b).relu_(), 2)
            x = F.max_pool2d(x, 2)
        return x.mul_(a).add_(b).relu_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nr = self._norm_relu
        x = nr(self.conv1(x), self.bn1, pool=True)
        x = nr(self.conv2(x), self.bn2, pool=True)
        x = nr(self.conv3(x), self.bn2, pool=True)
        x = nr(self.convt1(x), self.bn2)
        x = nr(self.convt2(x), self.bn1)
        x = nr(self.convt3(x), self.bn2)
        return nr(self.conv4(x), self.bn4)


def dsir_from_legacy(legacy: LegacyDSIR) -> DSIRNet:
    """A `DSIRNet` initialised from the original weights: each stage gets its
    own copy of the batch-norm the original shared there (bn1, bn2, bn2 in
    the encoder; bn2, bn1, bn2 in the decoder; bn4 in the head). Its running
    statistics are meaningless (the original trained them shared), so train
    (fine-tune) it before use in eval mode."""
    net = DSIRNet((16, 8, 8), (8, 16, 8), head_norm=True, head_relu=True)
    convs = [legacy.conv1, legacy.conv2, legacy.conv3, legacy.convt1, legacy.convt2, legacy.convt3]
    bns = [legacy.bn1, legacy.bn2, legacy.bn2, legacy.bn2, legacy.bn1, legacy.bn2]
    blocks = [net.encoder[0], net.encoder[2], net.encoder[4], net.decoder[0], net.decoder[1], net.decoder[2]]
    with torch.no_grad():
        for blk, conv, bn in zip(blocks, convs, bns):
            blk[0].load_state_dict(conv.state_dict())
            blk[1].load_state_dict(bn.state_dict())
        net.head[0].load_state_dict(legacy.conv4.state_dict())
        net.head[1].load_state_dict(legacy.bn4.state_dict())
    return net


ARCHITECTURES = {"dsir": DSIRNet, "dsir-legacy": LegacyDSIR}


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

    def raw(self, frames: torch.Tensor, stats=None) -> torch.Tensor:
        """(batch, y, x) ADU -> (batch, u*y, u*x) network output, as trained.

        Frames whose up-sampled size is not a multiple of 8 are padded
        (replicate) and cropped back. ``stats``: see `preprocess`. The
        original weights (``legacy``) get the original's up-sampling at the
        frame's edges (see `_upsample`).
        """
        x = preprocess(frames, self.upsampling, self.normalization, stats, legacy_edges=self.legacy)
        h, w = x.shape[-2:]
        ph, pw = (-h) % 8, (-w) % 8
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        net = self.net if self.net.training else self._inference_net()
        return net(x.contiguous(memory_format=torch.channels_last))[:, 0, :h, :w]

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

    def predict(self, frames: torch.Tensor, tile: int | str | None = "auto") -> torch.Tensor:
        """(batch, y, x) ADU -> (batch, u*y, u*x) localization images (>= 0).

        Models trained with a linear output (``output_blur`` set) are judged
        by the loss only through the loss's Gaussian; their output is blurred
        by that Gaussian (normalised to sum 1) before use.

        Frames larger than ``tile`` camera pixels (either side) go through
        the network in overlapping tiles of about ``tile`` x ``tile`` px,
        normalised with the whole frame's statistics and stitched: the same
        result as whole frames (to float rounding) in a fraction of the
        memory. ``"auto"``: `AUTO_TILE` px; None or 0: never tile.
        """
        if tile == "auto":
            tile = AUTO_TILE
        h, w = frames.shape[-2:]
        if tile and not self.legacy and max(h, w) > int(tile):
            return self._predict_tiled(frames, int(tile))
        return self._finish(self.raw(frames))

    def _finish(self, y: torch.Tensor) -> torch.Tensor:
        if self.output_blur:
            from .localize import blur

            y = blur(y, *self.output_blur)
        return torch.clamp(y, min=0)

    def tile_halo(self) -> int:
        """Camera pixels of context each side of a tile that make tiles
        match whole frames: the network's receptive field (3 x max-pool 2
        + 3x3 convs, < 32 up-sampled px each side), the output blur, the
        bilinear up-sampling (1 px), rounded up to the pooling grid."""
        u = int(self.upsampling)
        blur_r = int(self.output_blur[0]) // 2 if self.output_blur else 0
        halo = -(-(32 + blur_r) // u) + 1
        a = self._tile_align()
        return -(-halo // a) * a

    def _tile_align(self) -> int:
        # tile origins in camera px must map onto the 8-px pooling grid
        return 8 // math.gcd(int(self.upsampling), 8)

    def _predict_tiled(self, frames: torch.Tensor, tile: int) -> torch.Tensor:
        u, a = int(self.upsampling), self._tile_align()
        tile = max(a, -(-tile // a) * a)
        halo = self.tile_halo()
        n, h, w = frames.shape
        stats = frame_stats(frames, u, self.normalization)
        out = torch.empty((n, h * u, w * u), dtype=torch.float32, device=frames.device)
        for y0 in range(0, h, tile):
            for x0 in range(0, w, tile):
                y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
                ya, xa = max(0, y0 - halo), max(0, x0 - halo)
                yb, xb = min(h, y1 + halo), min(w, x1 + halo)
                sr = self._finish(self.raw(frames[:, ya:yb, xa:xb], stats))
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
    return DSIRModel(
        net, arch, int(ckpt.get("upsampling", 8)), norm, float(ckpt.get("pixel_size", 100.0)),
        dict(ckpt.get("metadata", {})), source=str(path),
        output_blur=(int(blur[0]), float(blur[1])) if blur else None,
    )


def default_model_path() -> Path:
    """Path of the model shipped inside the package."""
    return Path(str(resources.files("napari_dsir") / "data" / DEFAULT_MODEL_NAME))


def load_model(spec: str | Path | None = None, device: str | torch.device = "cpu") -> DSIRModel:
    """Load a model: ``None``/``"default"`` (shipped), ``"legacy:PATH"``
    (original DSIR weights) or a checkpoint path; moved to ``device``."""
    if spec is None or str(spec) in ("", "default"):
        model = load_checkpoint(default_model_path())
        model.source = "default"
    elif str(spec).startswith("legacy:"):
        model = load_legacy(str(spec)[len("legacy:"):])
    else:
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

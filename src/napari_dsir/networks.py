"""The networks: the DSIR auto-encoder, the original (2018) network and the
fast camera-resolution network with a sub-pixel (pixel-shuffle) output.

Every network maps a normalised input to a (batch, 1, Y, X) localization
image on the x8 grid. `DSIRNet` and `LegacyDSIR` take the frame already
up-sampled to that grid; `ShuffleNet` takes the camera frame itself
(``camera_resolution = True``) and produces the fine grid in its last layer.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import DSIRError


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


def _cbr(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ShuffleNet(nn.Module):
    """Features at camera resolution, a localization image on the x``upsampling`` grid.

    stem: 2 x [conv 3x3 + BN + ReLU] (``channels``); context: a stride-2
    conv and two 3x3 convs (the second dilated) at half resolution
    (``context`` channels), a transposed conv back; fuse: the two
    concatenated, 2 x [conv 3x3 + BN + ReLU]; head: a 1x1 conv to
    ``upsampling``^2 channels, rearranged by pixel shuffle onto the fine grid.
    Receptive field: 23 camera px (+-11). The output is linear (no ReLU):
    it is trained to equal the Gaussian-blurred label directly, and
    `DSIRModel.predict` clips it at 0. Input height and width must be even.
    """

    camera_resolution = True
    stride = 2  # input sides must be multiples of this
    field = 11  # camera px of context each side that change an output pixel

    def __init__(self, channels: int = 24, context: int = 32, upsampling: int = 8):
        super().__init__()
        c, k, u = int(channels), int(context), int(upsampling)
        if min(c, k, u) < 1:
            raise DSIRError(f"channels, context and upsampling must be >= 1, got {c}, {k}, {u}")
        self.channels, self.context, self.upsampling = c, k, u
        self.stem = nn.Sequential(_cbr(1, c), _cbr(c, c))
        self.down = nn.Sequential(_cbr(c, k, stride=2), _cbr(k, k), _cbr(k, k, dilation=2))
        self.up = nn.ConvTranspose2d(k, c, 2, stride=2)
        self.fuse = nn.Sequential(_cbr(2 * c, c), _cbr(c, c))
        self.head = nn.Conv2d(c, u * u, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.head.weight, std=1e-3)

    def arch_params(self) -> dict:
        return {"channels": self.channels, "context": self.context, "upsampling": self.upsampling}

    def fused(self) -> nn.Module:
        """An inference-only copy with every batch-norm folded into its conv."""
        from torch.nn.utils.fusion import fuse_conv_bn_eval

        def fold(seq: nn.Sequential) -> nn.Sequential:
            return nn.Sequential(*[nn.Sequential(fuse_conv_bn_eval(b[0], b[1]), nn.ReLU(inplace=True))
                                   for b in seq])

        was_training = self.training
        self.eval()
        try:
            p = next(self.parameters())  # built where (and as) this one is: a GPU net stays on the GPU
            out = ShuffleNet(self.channels, self.context, self.upsampling).to(device=p.device, dtype=p.dtype)
            out.load_state_dict(self.state_dict())
            out.eval()
            out.stem, out.down, out.fuse = fold(out.stem), fold(out.down), fold(out.fuse)
            return out
        finally:
            self.train(was_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stem(x)
        b = self.up(self.down(a))
        y = self.fuse(torch.cat([a, b], 1))
        return F.pixel_shuffle(self.head(y), self.upsampling)


ARCHITECTURES = {"dsir": DSIRNet, "dsir-legacy": LegacyDSIR, "shuffle": ShuffleNet}

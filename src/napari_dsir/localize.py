"""Coordinates from super-resolved DSIR output.

Local maxima above a threshold in each frame's localization image, refined by
a weighted centroid; positions in nm (origin: top-left corner of camera pixel
(0, 0)), with the frame and the summed output around the peak as intensity.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import DSIRError
from .io import Localizations


@dataclass
class LocalizeParams:
    """``threshold``: minimum peak value of the network output (its units);
    ``radius``: local-maximum radius in super-resolved pixels (peaks closer
    than this merge); ``window``: half-width of the centroid window (SR px);
    ``blur_fwhm``/``blur_width``: the Gaussian the training loss compares
    outputs through (peaks are found in the output blurred by it)."""

    threshold: float = 0.1
    radius: int = 2
    window: int = 2
    blur_fwhm: float = 3.0  # SR px; 0: no blur
    blur_width: int = 5  # SR px

    def validate(self) -> "LocalizeParams":
        if not np.isfinite(self.threshold) or self.threshold < 0:
            raise DSIRError(f"threshold must be a number >= 0, got {self.threshold}")
        if int(self.radius) < 1 or int(self.window) < 1:
            raise DSIRError("radius and window must be >= 1 super-resolved pixel")
        if self.blur_fwhm < 0 or int(self.blur_width) < 1 or int(self.blur_width) % 2 == 0:
            raise DSIRError("blur_fwhm must be >= 0 and blur_width an odd number of pixels")
        return self

    def to_dict(self) -> dict:
        return asdict(self)


def params_for(model, **overrides) -> LocalizeParams:
    """The model's calibrated parameters (checkpoint metadata) with overrides."""
    base = dict(getattr(model, "metadata", {}).get("localize", {}))
    base.update({k: v for k, v in overrides.items() if v is not None})
    known = LocalizeParams.__dataclass_fields__
    return LocalizeParams(**{k: v for k, v in base.items() if k in known}).validate()


def gauss_kernel(width: int, fwhm: float) -> torch.Tensor:
    """Square Gaussian kernel (1, 1, width, width) with peak 1 (the DSIR loss's)."""
    r = torch.arange(width, dtype=torch.float32) - width // 2
    g = torch.exp(-4 * math.log(2) * (r[None, :] ** 2 + r[:, None] ** 2) / fwhm**2)
    return g.view(1, 1, width, width)


def blur(sr: torch.Tensor, width: int, fwhm: float) -> torch.Tensor:
    """(batch, Y, X) images blurred by the Gaussian (width, fwhm) SR px,
    normalised to sum 1; unchanged for fwhm 0."""
    if fwhm <= 0:
        return sr
    k = gauss_kernel(int(width), float(fwhm)).to(sr.device, sr.dtype)
    return F.conv2d(sr.unsqueeze(1), k / k.sum(), padding=int(width) // 2)[:, 0]


def find_peaks(
    sr: torch.Tensor, sr_pixel_size: float, params: LocalizeParams, first_frame: int = 0
) -> Localizations:
    """Localize in a batch of localization images ``sr`` (batch, Y, X).

    ``sr_pixel_size`` is the super-resolved pixel size in nm. Returns
    positions in nm and frames ``first_frame + batch index``.
    """
    if sr.ndim == 2:
        sr = sr[None]
    x = blur(sr.to(torch.float32), params.blur_width, params.blur_fwhm).unsqueeze(1)
    r, w = int(params.radius), int(params.window)
    # a tiny ramp breaks exact ties between neighbours (noise-free plateaus),
    # so that a plateau gives one peak, not one per pixel
    ramp = torch.arange(x.shape[-2] * x.shape[-1], device=x.device, dtype=torch.float64)
    ramp = ramp.view(1, 1, *x.shape[-2:]) / ramp.numel()
    xd = x.double()
    xt = xd + ramp * (1e-7 * xd.abs().amax(dim=(-2, -1), keepdim=True) + 1e-300)
    pooled = F.max_pool2d(xt, 2 * r + 1, stride=1, padding=r)
    peaks = (xt == pooled) & (x > params.threshold)
    # weighted centroid over a (2w+1)^2 window, as three box convolutions
    k = 2 * w + 1
    off = torch.arange(-w, w + 1, dtype=torch.float32, device=x.device)
    kx = off.repeat(k, 1).view(1, 1, k, k)
    ky = off.view(-1, 1).repeat(1, k).view(1, 1, k, k)
    ones = torch.ones(1, 1, k, k, device=x.device)
    kern = torch.cat([ones, kx, ky], 0)
    sums = F.conv2d(x, kern, padding=w)  # (batch, 3, Y, X)
    b, _, yy, xx = torch.nonzero(peaks, as_tuple=True)
    if b.numel() == 0:
        return Localizations.empty()
    s = sums[b, 0, yy, xx]
    dx = sums[b, 1, yy, xx] / s
    dy = sums[b, 2, yy, xx] / s
    xs = (xx.to(torch.float64) + 0.5 + dx.to(torch.float64)) * sr_pixel_size
    ys = (yy.to(torch.float64) + 0.5 + dy.to(torch.float64)) * sr_pixel_size
    return Localizations(
        (b + first_frame).cpu().numpy(), xs.cpu().numpy(), ys.cpu().numpy(), s.cpu().numpy()
    )


def localize_image(sr: np.ndarray, sr_pixel_size: float, params: LocalizeParams | None = None,
                   first_frame: int = 0) -> Localizations:
    """Numpy front end of `find_peaks` for (Y, X) or (frame, Y, X) arrays."""
    t = torch.as_tensor(np.asarray(sr, dtype=np.float32))
    return find_peaks(t, sr_pixel_size, (params or LocalizeParams()).validate(), first_frame)

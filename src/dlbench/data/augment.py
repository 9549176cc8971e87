"""Data augmentation as batched tensor operations on the run's device (training batches only)."""
import math

import torch
from torch.nn import functional as F

from dlbench import choices


class Augment:
    def __init__(self, crop_padding: int = 0, hflip: bool = False, rotation: float = 0.0, noise_std: float = 0.0,
                 crop_fill: str = "replicate"):
        if crop_fill not in choices.CROP_FILLS:
            raise ValueError(f"augmentation.crop_fill must be one of {', '.join(choices.CROP_FILLS)}, not {crop_fill!r}")
        self.crop_padding, self.hflip, self.rotation, self.noise_std = crop_padding, hflip, rotation, noise_std
        self.crop_fill = crop_fill

    def __call__(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> same shape
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, self.crop_fill)
        if self.hflip:
            flip = torch.rand(len(x), device=x.device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
        if self.rotation:
            x = random_rotation(x, self.rotation)
        if self.noise_std:
            x = x + self.noise_std * torch.randn_like(x)
        return x


def random_crop(x: torch.Tensor, pad: int, fill: str = "replicate") -> torch.Tensor:
    """Pad by `pad`, crop back to the original size at an independent random offset per image. The
    padding: `replicate` (edge values, so a plain background stays background), `reflect` (the
    CIFAR speed records'), `zero` (0 in normalised units: the training split's mean colour)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="constant" if fill == "zero" else fill)
    dy = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), device=x.device)
    rows = (dy + torch.arange(h, device=x.device)).view(b, 1, h, 1)  # (B, 1, H, 1)
    cols = (dx + torch.arange(w, device=x.device)).view(b, 1, 1, w)  # (B, 1, 1, W)
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    chans = torch.arange(x.shape[1], device=x.device).view(1, -1, 1, 1)
    return padded[batch, chans, rows, cols]


def random_rotation(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate each image by its own angle in [-degrees, degrees] about its centre (bilinear)."""
    angle = (torch.rand(len(x), device=x.device) * 2 - 1) * math.radians(degrees)
    cos, sin = angle.cos(), angle.sin()
    zero = torch.zeros_like(cos)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)  # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

"""Classic augmentation: random affine jitter of images, the baseline every GAN must beat.

Rotation ±10°, scale 0.9–1.1 and shift ±2 px at 28 px (scaled with the image size), sampled per
image; the area uncovered by the transform is filled with the paper (background) value, not
with zeros, which would be mid-grey in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F


@dataclass(frozen=True, kw_only=True)
class AffineJitter:
    degrees: float = 10.0
    scale: tuple[float, float] = (0.9, 1.1)
    shift_px_at_28: float = 2.0
    background: float = -1.0  # -1 for inverted images (strokes +1 on -1), +1 otherwise

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """One random transform per image of ``x`` (N, C, H, W) in [-1, 1]."""
        n, _, h, _ = x.shape
        u = torch.rand(n, 4, generator=generator, dtype=torch.float64)  # (N, 4) in [0, 1)
        angle = (2 * u[:, 0] - 1) * math.radians(self.degrees)
        lo, hi = self.scale
        s = lo + (hi - lo) * u[:, 1]
        shift = self.shift_px_at_28 * h / 28  # pixels at this size
        t = (2 * u[:, 2:] - 1) * shift * 2 / h  # (N, 2) in grid units ([-1, 1] spans h pixels)
        cos, sin = torch.cos(angle) / s, torch.sin(angle) / s  # output -> input: inverse scale
        theta = torch.stack(
            [torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1
        ).to(x)  # (N, 2, 3)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        out = F.grid_sample(x - self.background, grid, align_corners=False, padding_mode="zeros")
        return out + self.background

    def expand(self, shots: Tensor, num: int, generator: torch.Generator) -> Tensor:
        """``num`` jittered copies of the shots (K, C, H, W), cycling through them: (num, C, H, W)."""
        idx = torch.arange(num) % shots.shape[0]
        return self(shots[idx], generator)


def background_of(invert: bool) -> float:
    """The paper's value in [-1, 1]: white paper is +1, or -1 when the images are inverted."""
    return -1.0 if invert else 1.0

"""Classic augmentation for colour photographs, the free references a photo GAN must beat.

What every image library's users apply to a small set of photographs (torchvision's
``RandomHorizontalFlip``, ``RandomResizedCrop``, ``ColorJitter``), here on ``(N, C, H, W)``
tensors in [-1, 1], batched and seeded by a :class:`torch.Generator` so a row reproduces:

* ``flip``: mirror left-right with probability 1/2;
* ``crop``: a random crop of 50-100 % of the area, aspect ratio 3/4-4/3, resized back to the
  full size (bilinear), anywhere inside the image;
* ``colour``: brightness, contrast and saturation each scaled by a factor in [0.8, 1.2]
  (saturation blends with the image's luma; hue is left alone);
* ``photo``: all three, the usual recipe.

Each is a fixed row of ``metagan eval`` (``--reference flip crop colour photo``; the default
rows for colour data, with ``shots``, ``affine`` and ``elastic``, whose uncovered area repeats
the photograph's border): scored like every row, but not one of the augmentation protocol's
free rows, whose strengths are chosen on validation classes (:mod:`metagan.eval.free`).
The fill never matters here: a crop stays inside the image and a flip moves nothing out of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from metagan.eval.sources import Samples, Source

LUMA = (0.299, 0.587, 0.114)  # ITU-R 601, as Pillow's convert("L")


@dataclass(frozen=True, kw_only=True)
class PhotoJitter:
    flip: float = 0.5  # probability of a left-right mirror; 0: never
    crop_scale: tuple[float, float] = (0.5, 1.0)  # share of the area kept; (1, 1): no crop
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)  # width / height of the crop
    brightness: float = 0.2  # factors in [1 - b, 1 + b]; 0: unchanged
    contrast: float = 0.2
    saturation: float = 0.2

    def __call__(self, x: Tensor, generator: torch.Generator) -> Tensor:
        """One random draw per image of ``x`` (N, C, H, W) in [-1, 1]; the result stays there."""
        n = x.shape[0]
        u = torch.rand(n, 8, generator=generator, dtype=torch.float64)  # (N, 8) in [0, 1)
        out = x
        if self.flip > 0 or self.crop_scale != (1.0, 1.0):
            out = self._geometry(out, u[:, :5])
        if self.brightness or self.contrast or self.saturation:
            out = self._colour(out, u[:, 5:])
        return out

    def _geometry(self, x: Tensor, u: Tensor) -> Tensor:
        lo, hi = self.crop_scale
        area = lo + (hi - lo) * u[:, 0]
        r0, r1 = (math.log(r) for r in self.crop_ratio)
        ratio = torch.exp(r0 + (r1 - r0) * u[:, 1])
        w = torch.sqrt(area * ratio).clamp(max=1.0)  # crop side / image side
        h = torch.sqrt(area / ratio).clamp(max=1.0)
        if self.crop_scale == (1.0, 1.0):  # no crop: the whole image whatever the ratio
            w = h = torch.ones_like(area)
        cx = (2 * u[:, 2] - 1) * (1 - w)  # the crop's centre, inside the image
        cy = (2 * u[:, 3] - 1) * (1 - h)
        mirror = torch.where(u[:, 4] < self.flip, -1.0, 1.0).to(u)
        zero = torch.zeros_like(w)
        theta = torch.stack(
            [torch.stack([w * mirror, zero, cx], 1), torch.stack([zero, h, cy], 1)], 1
        ).to(x)  # (N, 2, 3): output -> input coordinates
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _colour(self, x: Tensor, u: Tensor) -> Tensor:
        def factor(strength: float, col: int) -> Tensor:  # (N, 1, 1, 1)
            f = 1 + strength * (2 * u[:, col] - 1)
            return f.to(x).view(-1, 1, 1, 1)

        p = (x + 1) / 2  # [0, 1]
        p = (p * factor(self.brightness, 0)).clamp(0, 1)
        gray = _luma(p)  # (N, 1, H, W)
        mean = gray.mean((1, 2, 3), keepdim=True)
        p = ((p - mean) * factor(self.contrast, 1) + mean).clamp(0, 1)
        if p.shape[1] == 3:
            gray = _luma(p)
            p = ((p - gray) * factor(self.saturation, 2) + gray).clamp(0, 1)
        return p * 2 - 1

    def expand(self, shots: Tensor, num: int, generator: torch.Generator) -> Tensor:
        """``num`` jittered copies of the shots (K, C, H, W), cycling through them: (num, C, H, W)."""
        idx = torch.arange(num) % shots.shape[0]
        return self(shots[idx], generator)


def _luma(p: Tensor) -> Tensor:
    if p.shape[1] != 3:
        return p
    w = torch.tensor(LUMA, dtype=p.dtype, device=p.device).view(1, 3, 1, 1)
    return (p * w).sum(1, keepdim=True)


NO_CROP, NO_COLOUR = (1.0, 1.0), {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0}
# the colour-aware reference rows of ``metagan eval`` (beside ``shots`` and ``affine``)
PHOTO_REFERENCES = {
    "flip": PhotoJitter(crop_scale=NO_CROP, **NO_COLOUR),
    "crop": PhotoJitter(flip=0.0, **NO_COLOUR),
    "colour": PhotoJitter(flip=0.0, crop_scale=NO_CROP),
    "photo": PhotoJitter(),
}


class PhotoSource(Source):
    """A colour reference row (:data:`PHOTO_REFERENCES`): jittered copies of the shots."""

    def __init__(self, name: str):
        self.name = name
        self.jitter = PHOTO_REFERENCES[name]

    def samples(self, shots, num, *, steps, seed):
        gen = torch.Generator().manual_seed(seed)
        out = torch.stack([self.jitter.expand(k, num, gen) for k in shots])  # (T, num, C, H, W)
        return {0: Samples(out, torch.zeros(shots.shape[0], dtype=torch.bool))}

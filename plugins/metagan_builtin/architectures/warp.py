"""``warp``: a generator that learns intra-class transformations and applies them to a shot (the
DeltaGAN idea: diversity that stays on-class), judged by the pair discriminator of ``dagan``.

G picks ONE of the task's shots per sample (from the last entry of z, as ``dagan`` does) and
resamples it (``grid_sample``) along a smooth displacement field: ``GRID`` x ``GRID`` control
displacements, bilinearly upsampled, each at most ``MAX_SHIFT`` of the image side in each
direction. Strokes bend, lengthen, thin and move the way another writer's would, and the
character stays the same because every output pixel comes from the shot. The bound is what
keeps every sample a drawing: two neighbouring control points (a third of the image apart)
can move at most 2 x ``MAX_SHIFT`` of the side towards each other, less than their distance,
so the field never folds the image over itself however hard training pushes. The field is the
sum of

- a z path (a linear map of z to the control displacements): which deformation, different for
  every z from the start (about 1.5 px at 28 px before training), so samples differ;
- a shot path (an encoder of the shot joined with z, then convolutions, starting near zero):
  which deformations suit this drawing (where its strokes are).

Two earlier versions taught the bound: one with an additive residual map faded and thinned the
strokes after meta-training, and one with a 7 x 7 field of up to 0.15 of the side folded them
into jagged copies (both on the Balinese fold; docs/results.md).
With a zero field G returns its shot; the pair discriminator, which never sees two identical
drawings among its real pairs, pushes G away from copies, and the deformations it accepts are
what meta-training learns.

Normalisation: GroupNorm in G (per sample, nothing shared across tasks), none in D.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metagan.models import ArchConfig, GanPair

from ._shots import ENCODER_LEVELS, PairDiscriminator, _conv_norm, check_z_dim
from .dagan import one_shot

GRID = 4  # control points per side of the displacement field
MAX_SHIFT = 0.12  # largest displacement, as a share of the image side (3.4 px at 28 px)


class WarpGenerator(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        levels = ENCODER_LEVELS[cfg.image_size]
        ch = [cfg.width * 2**i for i in range(levels)]
        self.base = cfg.image_size >> levels  # 7 or 8 px bottleneck
        self.size = cfg.image_size
        self.ch = ch
        self.down = nn.Sequential(
            *(
                _conv_norm(c_in, c, 4, 2, nn.LeakyReLU(0.2))
                for c_in, c in zip([cfg.channels, *ch], ch)
            )
        )
        self.fc = nn.Linear(cfg.z_dim - 1, ch[-1] * self.base**2)
        self.fuse = nn.Sequential(
            _conv_norm(2 * ch[-1], ch[-1], 3, 1, nn.ReLU()),
            _conv_norm(ch[-1], ch[-1], 3, 1, nn.ReLU()),
        )
        self.flow = nn.Conv2d(ch[-1], 2, 3, padding=1)
        with torch.no_grad():  # the shot path starts near zero: z alone decides at first
            self.flow.weight.mul_(0.1)
            self.flow.bias.zero_()
        self.zflow = nn.Linear(cfg.z_dim - 1, 2 * GRID**2)
        ys, xs = torch.meshgrid(
            torch.linspace(-1 + 1 / self.size, 1 - 1 / self.size, self.size),
            torch.linspace(-1 + 1 / self.size, 1 - 1 / self.size, self.size),
            indexing="ij",
        )
        # pixel centres in grid_sample's align_corners=False units: (1, H, W, 2) as (x, y)
        self.register_buffer("identity", torch.stack([xs, ys], -1)[None], persistent=False)

    def forward(self, z: Tensor, shots: Tensor) -> Tensor:  # (B, Z), (K, C, H, W) -> (B, C, H, W)
        w = one_shot(z, shots.shape[0])  # (B, K) one-hot
        shot = torch.einsum("bk,kchw->bchw", w, shots)  # (B, C, H, W): each sample's shot
        h = self.down(shot)  # (B, ch[-1], base, base)
        zmap = self.fc(z[:, :-1]).view(z.shape[0], self.ch[-1], self.base, self.base)
        h = self.fuse(torch.cat([h, zmap], 1))
        flow = F.adaptive_avg_pool2d(self.flow(h), GRID)  # (B, 2, GRID, GRID)
        flow = flow + self.zflow(z[:, :-1]).view(-1, 2, GRID, GRID)
        flow = F.interpolate(flow, size=(self.size, self.size), mode="bilinear",
                             align_corners=False)  # fmt: skip
        grid = self.identity + 2 * MAX_SHIFT * torch.tanh(flow).permute(0, 2, 3, 1)  # (B, H, W, 2)
        # "border" padding repeats the shot's edge, which is paper: nothing dark or bright
        # comes in from outside the image whichever way the images are inverted
        return F.grid_sample(shot, grid, mode="bilinear", padding_mode="border",
                             align_corners=False)  # fmt: skip


def build_warp(cfg: ArchConfig) -> GanPair:
    check_z_dim(cfg, "warp")
    return GanPair(WarpGenerator(cfg), PairDiscriminator(cfg), conditional=True)

"""``warp``: a generator that learns intra-class transformations and applies them to a shot (the
DeltaGAN idea: diversity that stays on-class), judged by the pair discriminator of ``dagan``.

G picks ONE of the task's shots per sample (from the last entry of z, as ``dagan`` does), reads
it with a small encoder, joins z at the 7 or 8 px bottleneck and predicts

- a smooth displacement field (2 channels at the bottleneck, bilinearly upsampled to the image,
  at most ``MAX_SHIFT`` of the image side in each direction), with which the shot is resampled
  (``grid_sample``): strokes bend, thin, lengthen and move the way another writer's would, and
  the character stays the same because every output pixel comes from the shot;
- a residual stroke map (a ``tanh`` layer at full resolution whose scale starts small), added
  to the warped shot, for what a warp cannot do (a stroke's end, a gap, a thicker pen).

The output is ``clamp(warped + residual, -1, 1)``, in the range every generator must keep.
With zero flow and zero residual G returns its shot: the pair discriminator, which never sees
a pair of identical drawings among the reals, is what pushes G away from copies, and the shape
of the warps it accepts is what meta-training learns.

Normalisation: GroupNorm in G (per sample, nothing shared across tasks), none in D.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from metagan.models import ArchConfig, GanPair

from ._shots import ENCODER_LEVELS, PairDiscriminator, _conv_norm, check_z_dim
from .dagan import one_shot

MAX_SHIFT = 0.15  # largest displacement, as a share of the image side (about 4 px at 28 px)


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
        # the residual: from the upsampled bottleneck and the shot itself, at full resolution
        self.res = nn.Sequential(
            _conv_norm(ch[-1] + cfg.channels, ch[0], 3, 1, nn.ReLU()),
            nn.Conv2d(ch[0], cfg.channels, 3, padding=1),
            nn.Tanh(),
        )
        with torch.no_grad():  # start near the identity warp with a faint residual
            self.flow.weight.mul_(0.1)
            self.flow.bias.zero_()
            self.res[1].weight.mul_(0.1)
            self.res[1].bias.zero_()
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
        flow = F.interpolate(self.flow(h), size=(self.size, self.size), mode="bilinear",
                             align_corners=False)  # fmt: skip
        grid = self.identity + 2 * MAX_SHIFT * torch.tanh(flow).permute(0, 2, 3, 1)  # (B, H, W, 2)
        # "border" padding repeats the shot's edge, which is paper: nothing dark or bright
        # comes in from outside the image whichever way the images are inverted
        warped = F.grid_sample(shot, grid, mode="bilinear", padding_mode="border",
                               align_corners=False)  # fmt: skip
        up = F.interpolate(h, size=(self.size, self.size), mode="bilinear", align_corners=False)
        residual = self.res(torch.cat([up, warped], 1))
        return (warped + residual).clamp(-1.0, 1.0)


def build_warp(cfg: ArchConfig) -> GanPair:
    check_z_dim(cfg, "warp")
    return GanPair(WarpGenerator(cfg), PairDiscriminator(cfg), conditional=True)

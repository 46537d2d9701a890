"""DCGAN-style generator and discriminator for 28, 32, 64 and 128 px images, 1 or 3 channels.

Normalisation: GroupNorm in the generator (statistics per sample, so nothing is shared across
tasks or carried between calls: safe under ``vmap`` over tasks); no normalisation in the
discriminator, whose LeakyReLU conv stack is stable for the few inner steps of meta-learning
and whose per-sample outputs stay independent of the other samples in the batch.
"""

from __future__ import annotations

import torch
from torch import nn

from metagan.models import ArchConfig, GanPair


def _groups(ch: int) -> int:
    return 8 if ch % 8 == 0 else 1


class Generator(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        w = cfg.width
        self.base = 7 if cfg.image_size == 28 else 8
        ups = {28: 2, 32: 2, 64: 3, 128: 4}[cfg.image_size]
        ch = [w * 2 ** (ups - i) for i in range(ups + 1)]  # e.g. 28 px: [4w, 2w, w]
        self.ch0 = ch[0]
        self.fc = nn.Linear(cfg.z_dim, ch[0] * self.base * self.base)
        self.norm0 = nn.GroupNorm(_groups(ch[0]), ch[0])
        layers: list[nn.Module] = []
        # Nearest upsampling + 3x3 conv rather than strided transposed convs: no checkerboard
        # artefacts (Odena et al. 2016), which thin strokes on a flat background make obvious.
        for i in range(ups - 1):
            layers += [
                nn.Upsample(scale_factor=2),
                nn.Conv2d(ch[i], ch[i + 1], 3, padding=1),
                nn.GroupNorm(_groups(ch[i + 1]), ch[i + 1]),
                nn.ReLU(),
            ]
        layers += [
            nn.Upsample(scale_factor=2),
            nn.Conv2d(ch[ups - 1], cfg.channels, 3, padding=1),
            nn.Tanh(),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, z) -> (B, C, H, W)
        h = self.fc(z).view(z.shape[0], self.ch0, self.base, self.base)
        return self.net(torch.relu(self.norm0(h)))


class Discriminator(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        w = cfg.width
        downs = {28: 2, 32: 3, 64: 4, 128: 5}[cfg.image_size]
        layers: list[nn.Module] = []
        c_in = cfg.channels
        for i in range(downs):
            c_out = w * 2**i
            layers += [nn.Conv2d(c_in, c_out, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in = c_out
        self.net = nn.Sequential(*layers)
        final = {28: 7, 32: 4, 64: 4, 128: 4}[cfg.image_size]
        self.fc = nn.Linear(c_in * final * final, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B,)
        return self.fc(self.net(x).flatten(1)).squeeze(-1)


def build_dcgan(cfg: ArchConfig) -> GanPair:
    return GanPair(Generator(cfg), Discriminator(cfg))

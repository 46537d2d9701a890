"""The reference MLP GAN: z -> 256 -> H*W (the classic design; 784 outputs at 28 px).

No normalisation at all, so it is trivially safe under ``vmap`` over tasks. ``width`` in
:class:`~metagan.models.ArchConfig` is ignored: the hidden layer is 256 wide by design.
"""

from __future__ import annotations

import torch
from torch import nn

from metagan.models import ArchConfig, GanPair

HIDDEN = 256


class Generator(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.shape = (cfg.channels, cfg.image_size, cfg.image_size)
        out = cfg.channels * cfg.image_size**2
        self.net = nn.Sequential(
            nn.Linear(cfg.z_dim, HIDDEN), nn.LeakyReLU(0.2), nn.Linear(HIDDEN, out), nn.Tanh()
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, z) -> (B, C, H, W)
        return self.net(z).view(z.shape[0], *self.shape)


class Discriminator(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        inp = cfg.channels * cfg.image_size**2
        self.net = nn.Sequential(nn.Linear(inp, HIDDEN), nn.LeakyReLU(0.2), nn.Linear(HIDDEN, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B,)
        return self.net(x.flatten(1)).squeeze(-1)


def build_mlp(cfg: ArchConfig) -> GanPair:
    return GanPair(Generator(cfg), Discriminator(cfg))

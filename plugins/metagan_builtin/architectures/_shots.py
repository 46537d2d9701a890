"""What the shot-conditioned architectures ``dagan`` and ``fusion`` share.

Both are a :class:`ShotGenerator` ``G(z (B, Z), shots (K, C, H, W)) -> (B, C, H, W)`` (an
encoder-decoder with skip connections whose encoder features are mixed over the K shots with
per-sample convex weights) and a :class:`PairDiscriminator` ``D(x (B, C, H, W), shots) -> (B,)``
that judges the pairs (shot, x). They differ only in the weights: ``dagan`` puts all weight on
one shot, ``fusion`` spreads it over all K.

Randomness inside G (which shot, which weights) is a fixed function of the LAST entry of each
z row (:func:`shot_uniforms`), not of torch's global RNG: the inner step stays a pure function,
``vmap`` over tasks and the sequential reference see the same numbers, and the same z gives
the same sample. The decoder gets the other ``z_dim - 1`` entries.

Normalisation: GroupNorm in G (per sample and per shot, nothing shared across tasks or calls),
none in D, as in ``dcgan``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from metagan.errors import ConfigError
from metagan.models import ArchConfig

ENCODER_LEVELS = {28: 2, 32: 2, 64: 3, 128: 4}  # stride-2 levels down to the 7 or 8 px bottleneck
D_LEVELS = {28: 2, 32: 3, 64: 4, 128: 5}  # the discriminator's, down to 7 or 4 px (as in dcgan)
D_FINAL = {28: 7, 32: 4, 64: 4, 128: 4}


def shot_uniforms(z: Tensor, shots: int) -> Tensor:
    """(B, Z) -> (B, K) numbers in (0, 1), pseudo-random but a fixed function of ``z[:, -1]``.

    A sine hash per (sample, shot index): z drawn from N(0, 1) gives numbers that behave as
    independent uniforms, while equal z rows give equal numbers on every engine.
    """
    seed = z[:, -1:]  # (B, 1)
    k = torch.arange(1, shots + 1, dtype=z.dtype, device=z.device)  # (K,)
    x = torch.sin(seed * 12.9898 + k * 78.233) * 43758.5453  # (B, K)
    return (x - torch.floor(x)).clamp(1e-6, 1 - 1e-6)


def check_z_dim(cfg: ArchConfig, arch: str) -> None:
    if cfg.z_dim < 2:
        raise ConfigError(
            f"architecture {arch!r} reserves the last z entry to pick shots; "
            f"model.z_dim must be >= 2, got {cfg.z_dim}"
        )


def _conv_norm(c_in: int, c_out: int, kernel: int, stride: int, act: nn.Module) -> nn.Sequential:
    """Conv (padding 1), GroupNorm, activation. The conv has no bias: the norm cancels it, so its
    gradient would be exactly zero, where a second-order Adam inner step is NaN (sqrt'(0))."""
    conv = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=1, bias=False)
    return nn.Sequential(conv, nn.GroupNorm(8 if c_out % 8 == 0 else 1, c_out), act)


class ShotGenerator(nn.Module):
    """Encode the K shots, mix every level's features with ``mix(z, K)`` (B, K) convex weights,
    join z at the bottleneck and decode with the mixed encoder maps as skip connections."""

    def __init__(self, cfg: ArchConfig, mix: Callable[[Tensor, int], Tensor]):
        super().__init__()
        self.mix = mix
        levels = ENCODER_LEVELS[cfg.image_size]
        ch = [cfg.width * 2**i for i in range(levels)]  # e.g. 28 px: [w, 2w]
        self.base = cfg.image_size >> levels  # 7 or 8
        self.ch = ch
        self.down = nn.ModuleList(
            _conv_norm(c_in, c, 4, 2, nn.LeakyReLU(0.2)) for c_in, c in zip([cfg.channels, *ch], ch)
        )
        self.fc = nn.Linear(cfg.z_dim - 1, ch[-1] * self.base**2)
        self.fuse = _conv_norm(2 * ch[-1], ch[-1], 3, 1, nn.ReLU())
        # Nearest upsampling + 3x3 conv (no checkerboard artefacts), skip maps concatenated.
        self.upsample = nn.Upsample(scale_factor=2)
        self.up = nn.ModuleList(
            _conv_norm(ch[i] + ch[i - 1], ch[i - 1], 3, 1, nn.ReLU())
            for i in range(levels - 1, 0, -1)
        )
        self.out = nn.Sequential(nn.Conv2d(ch[0], cfg.channels, 3, padding=1), nn.Tanh())

    def forward(self, z: Tensor, shots: Tensor) -> Tensor:  # (B, Z), (K, C, H, W) -> (B, C, H, W)
        w = self.mix(z, shots.shape[0])  # (B, K), rows sum to 1
        maps, h = [], shots
        for block in self.down:
            h = block(h)  # (K, ch_i, H / 2^(i+1), W / 2^(i+1))
            maps.append(torch.einsum("bk,kchw->bchw", w, h))  # (B, ch_i, ...)
        zmap = self.fc(z[:, :-1]).view(z.shape[0], self.ch[-1], self.base, self.base)
        h = self.fuse(torch.cat([maps[-1], zmap], 1))  # (B, ch[-1], base, base)
        for block, skip in zip(self.up, reversed(maps[:-1])):
            h = block(torch.cat([self.upsample(h), skip], 1))
        return self.out(self.upsample(h))


class PairDiscriminator(nn.Module):
    """Scores every pair (shot, x) and averages over the shots: 'same class, different drawing'.

    A pair whose x IS that shot (pixel for pixel: a support image judged as a real in the inner
    loop) is left out, so real pairs are always two different drawings and a near-copy of a
    shot is a pair D never saw among the reals. With K = 1 that leaves no pair for the shot
    itself; it is then judged against itself (the outer loss on query images still shows D real
    pairs of different drawings).
    """

    def __init__(self, cfg: ArchConfig, augment: Callable[[Tensor], Tensor] | None = None):
        super().__init__()
        self.augment = augment  # applied to every judged image, real or fake (DiffAugment)
        w, c_in, layers = cfg.width, cfg.channels, []
        for i in range(D_LEVELS[cfg.image_size]):
            layers += [nn.Conv2d(c_in, w * 2**i, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
            c_in = w * 2**i
        self.net = nn.Sequential(*layers)
        feat = 2 * w
        self.embed = nn.Linear(c_in * D_FINAL[cfg.image_size] ** 2, feat)
        self.pair = nn.Sequential(nn.Linear(3 * feat, feat), nn.LeakyReLU(0.2), nn.Linear(feat, 1))

    def forward(self, x: Tensor, shots: Tensor) -> Tensor:  # (B, C, H, W), (K, C, H, W) -> (B,)
        B, K = x.shape[0], shots.shape[0]
        keep = (x[:, None] != shots[None]).flatten(2).any(-1)  # (B, K), on the images as given
        if self.augment is not None:
            x = self.augment(x)
        h = self.embed(self.net(torch.cat([x, shots])).flatten(1))  # (B + K, F)
        hx = h[:B, None].expand(B, K, -1)
        hs = h[None, B:].expand(B, K, -1)
        score = self.pair(torch.cat([hx, hs, (hx - hs).abs()], -1)).squeeze(-1)  # (B, K)
        keep = keep.to(score.dtype)
        keep = torch.where(keep.sum(1, keepdim=True) > 0, keep, torch.ones_like(keep))
        return (score * keep).sum(1) / keep.sum(1)

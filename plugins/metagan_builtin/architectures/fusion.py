"""``fusion`` (after F2GAN, Hong et al. 2020): G encodes ALL K shots and mixes their features
with random convex weights per sample, then decodes the mixture with z (encoder-decoder with
skip connections, the skips mixed with the same weights); D judges pairs (shot, candidate) as
in ``dagan``. The weights come from the last entry of z (see ``_shots.py``), so the same z
always gives the same sample; with K = 1 it is ``dagan``'s generator.
"""

from __future__ import annotations

import torch
from torch import Tensor

from metagan.models import ArchConfig, GanPair

from ._shots import PairDiscriminator, ShotGenerator, check_z_dim, shot_uniforms


def convex_weights(z: Tensor, shots: int) -> Tensor:
    """(B, Z) -> (B, K) weights >= 0 summing to 1, uniform on the simplex (Dirichlet(1, ..., 1))."""
    e = -torch.log(shot_uniforms(z, shots))  # (B, K) exponential variates
    return e / e.sum(1, keepdim=True)


def build_fusion(cfg: ArchConfig) -> GanPair:
    check_z_dim(cfg, "fusion")
    return GanPair(ShotGenerator(cfg, convex_weights), PairDiscriminator(cfg), conditional=True)

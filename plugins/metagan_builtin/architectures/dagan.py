"""``dagan`` (Antoniou et al. 2017, Data Augmentation GAN): G encodes ONE of the task's shots,
chosen at random per sample, and decodes it with z into a new drawing of the same class
(encoder-decoder with skip connections); D judges pairs (shot, candidate), so it learns
'same class, different drawing'. The shot is picked from the last entry of z
(see ``_shots.py``), so the same z always gives the same sample.
"""

from __future__ import annotations

import torch
from torch import Tensor

from metagan.models import ArchConfig, GanPair

from ._shots import PairDiscriminator, ShotGenerator, check_z_dim, shot_uniforms


def one_shot(z: Tensor, shots: int) -> Tensor:
    """(B, Z) -> (B, K) one-hot rows: each sample's shot, uniform over the K shots."""
    pick = shot_uniforms(z, shots).argmax(1, keepdim=True)  # (B, 1)
    return (torch.arange(shots, device=z.device) == pick).to(z.dtype)


def build_dagan(cfg: ArchConfig) -> GanPair:
    check_z_dim(cfg, "dagan")
    return GanPair(ShotGenerator(cfg, one_shot), PairDiscriminator(cfg), conditional=True)

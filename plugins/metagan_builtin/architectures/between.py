"""``between``: new drawings where this character's real variation lies, from its own shots.

``jitter``'s generator (the free affine + elastic + stroke jitter with learned gains and a
zero-initialised correction) applied after two deformations that no free transform knows:

- *between two shots* (K >= 2): each sample's shot ``i`` is registered onto another shot ``j``
  of the task (:func:`metagan.registration.register_vectors`: affine + control grid, the same
  parameterisation as the jitter's elastic part) and warped a fraction ``t`` of the way
  (``t`` uniform in [0, ``scale[0]``]): F2GAN's fusion of shots done in deformation space
  instead of pixels, so a sample is the shot drawn partly the way another shot was drawn;
- *a real deformation* (any K, the only new one at K = 1): ``c @ bank * scale[1]`` with
  ``c ~ N(0, I)`` from z, a low-rank model of the warps between drawings of the same
  character (:class:`metagan.registration.FieldBank`). ``bank`` starts at zero; a checkpoint
  gets it from data with ``benchmarks/between_init.py`` (PCA of warps registered between
  drawings of the meta-train characters).

z's entries: the jitter's uniforms, then the other shot ``j``, ``t``, the ``RANK`` bank
coefficients, and last the shot ``i`` (``model.z_dim`` >= 55 + 2 + RANK + 1). Registration
runs in every forward on the task's K x K shot pairs, a pure function of the shots (no
gradient flows into it), so the inner step stays pure under ``vmap``. D is ``jitter``'s.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from metagan.models import ArchConfig, GanPair
from metagan.registration import CONTROL_BOUND, FIELD, compose, pack, register_vectors, unpack
from metagan.transforms import deform

from ._shots import PairDiscriminator
from .dagan import one_shot
from .jitter import JitterGenerator, diff_augment, uniforms

RANK = 8  # components of the deformation bank


class BetweenGenerator(JitterGenerator):
    arch = "between"
    extra_noise = 2 + RANK

    def __init__(self, cfg: ArchConfig):
        super().__init__(cfg)
        self.bank = nn.Parameter(torch.zeros(RANK, FIELD))  # set from data (between_init.py)
        self.scale = nn.Parameter(torch.ones(2))  # fraction towards the other shot; bank

    def forward(self, z: Tensor, shots: Tensor) -> Tensor:  # (B, Z), (K, C, H, W) -> (B, C, H, W)
        B, K, n = z.shape[0], shots.shape[0], self.n
        wi = one_shot(z, K)  # (B, K)
        shot = torch.einsum("bk,kchw->bchw", wi, shots)
        paper = torch.where(shots[:, :, 0].mean() < 0, -1.0, 1.0).to(z)  # top rows: paper
        theta, control, stroke = self.jitter(z, shot)
        warp = torch.zeros(B, FIELD, dtype=z.dtype, device=z.device)
        if K > 1:  # the field of every ordered pair (i, j) at row i * K + j
            fields = register_vectors(
                shots.repeat_interleave(K, 0), shots.repeat(K, 1, 1, 1), paper
            )
            u = uniforms(z[:, n : n + 2], 2)  # (B, 2): the other shot, the fraction
            pick = (u[:, :1] * K).floor().clamp(max=K - 1)  # (B, 1)
            wj = (torch.arange(K, device=z.device) == pick).to(z.dtype)  # (B, K)
            pair = torch.einsum("bi,bj->bij", wi, wj).flatten(1)  # (B, K * K)
            warp = (pair @ fields) * (u[:, 1:] * self.scale[0])
        bank = (z[:, n + 2 : n + 2 + self.bank.shape[0]] @ self.bank) * self.scale[1]
        warp = compose(bank, warp)  # the real deformation after the move towards shot j
        warp = compose(pack(theta, control), warp)  # then the jitter
        theta, control = unpack(warp)
        control = control.clamp(-CONTROL_BOUND, CONTROL_BOUND)
        return deform(shot, theta=theta, control=control, stroke=stroke, background=paper)


def build_between(cfg: ArchConfig) -> GanPair:
    return GanPair(
        BetweenGenerator(cfg), PairDiscriminator(cfg, augment=diff_augment), conditional=True
    )

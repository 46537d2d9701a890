"""The GAN loss contract.

A loss is a pair of pure functions of discriminator logits, vmapped over tasks by the inner
loop and differentiated twice by second-order MAML, so they must not use in-place ops or
Python control flow on tensor values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class GanLoss:
    """``d_loss(real_logits (B,), fake_logits (B,)) -> ()`` and ``g_loss(fake_logits (B,)) -> ()``."""

    d_loss: Callable[[Tensor, Tensor], Tensor]
    g_loss: Callable[[Tensor], Tensor]
    description: str = ""

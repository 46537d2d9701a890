"""The small CNN behind every learned measurement of ``metagan eval``, and how it is trained.

One network, three jobs: the domain feature extractor (its 64-d embedding replaces Inception,
which does not fit 28-px strokes; Beckham et al. 2022 do the same for Omniglot), the class
fidelity judge (trained on the meta-test classes' real non-shot images), and the few-shot
classifier of the augmentation protocol. Training is seeded end to end, so a result reproduces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from metagan.errors import ConfigError
from metagan.fewshot import MixedFewShotDataset


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """How a classifier is trained (Adam, fixed number of steps, seeded)."""

    steps: int = 600
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4  # the small sets of the augmentation protocol overfit otherwise
    seed: int = 0

    def __post_init__(self):
        for key in ("steps", "batch_size"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError(f"classifier {key} must be a positive integer, got {v!r}")
        if not self.lr > 0:
            raise ConfigError(f"classifier lr must be positive, got {self.lr}")


class ConvNet(nn.Module):
    """Four 3x3 conv blocks (the usual few-shot Omniglot backbone), a ``dim``-d embedding and
    a linear head. ``embed`` gives the features used for FID/KID/PRDC; ``forward`` the logits."""

    def __init__(self, *, num_classes: int, dim: int = 64, width: int = 32, channels: int = 1):
        super().__init__()
        blocks: list[nn.Module] = []
        c = channels
        for i in range(4):
            blocks += [nn.Conv2d(c, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
            if i < 3:
                blocks.append(nn.MaxPool2d(2))
            c = width
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(3), nn.Flatten())
        self.embedding = nn.Linear(width * 9, dim)
        self.head = nn.Linear(dim, num_classes)
        self.num_classes, self.dim, self.width, self.channels = num_classes, dim, width, channels

    def embed(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, dim)
        return self.embedding(self.features(x))

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, num_classes)
        return self.head(torch.relu(self.embed(x)))

    def arch(self) -> dict:
        return {"num_classes": self.num_classes, "dim": self.dim, "width": self.width,
                "channels": self.channels}  # fmt: skip


def fit(
    x: Tensor,
    y: Tensor,
    num_classes: int,
    cfg: FitConfig,
    *,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    dim: int = 64,
    progress: Callable[[int, float], None] | None = None,
) -> ConvNet:
    """Train a :class:`ConvNet` on images ``x`` (N, C, H, W) with labels ``y`` (N,) in
    [0, num_classes); ``augment(batch, generator)`` is applied to every minibatch when given.
    Returns the network in eval mode. Shapes are checked by :class:`MixedFewShotDataset`."""
    return fit_set(MixedFewShotDataset(x, y), num_classes, cfg, augment=augment, dim=dim,
                   progress=progress)  # fmt: skip


def fit_set(
    data: MixedFewShotDataset,
    num_classes: int,
    cfg: FitConfig,
    *,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
    dim: int = 64,
    progress: Callable[[int, float], None] | None = None,
) -> ConvNet:
    """:func:`fit` on a few-shot set enlarged with generated images: every minibatch is drawn
    at the set's mix ratio (:meth:`MixedFewShotDataset.batches`)."""
    x = data.x
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = ConvNet(num_classes=num_classes, dim=dim, channels=x.shape[1]).to(x.device)
    gen = torch.Generator().manual_seed(cfg.seed + 1)  # the augmentation's randomness
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps)
    net.train()
    batches = data.batches(cfg.batch_size, steps=cfg.steps, seed=cfg.seed + 2)
    for step, idx in enumerate(batches):
        xb, yb = data[idx]
        if augment is not None:
            xb = augment(xb, gen)
        loss = nn.functional.cross_entropy(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(step, float(loss))
    return net.eval()


@torch.no_grad()
def predict(net: ConvNet, x: Tensor, *, batch: int = 512) -> Tensor:
    """Predicted classes of ``x`` (N, C, H, W): (N,) long."""
    return torch.cat([net(x[i : i + batch]).argmax(1) for i in range(0, x.shape[0], batch)])


@torch.no_grad()
def embed(net: ConvNet, x: Tensor, *, batch: int = 512) -> Tensor:
    """Features of ``x`` (N, C, H, W): (N, dim)."""
    if x.shape[0] == 0:
        return torch.zeros(0, net.dim)
    return torch.cat([net.embed(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


def accuracy(net: ConvNet, x: Tensor, y: Tensor) -> float:
    """Share of ``x`` classified as ``y``."""
    return float((predict(net, x) == y).double().mean())

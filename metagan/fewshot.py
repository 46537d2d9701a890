"""A few-shot classification set enlarged with generated images, the way a user consumes them.

A user who adds generated drawings to K real ones does not let 64 generated images per class
outweigh the 5 real ones 13:1 in every batch: they choose the share of each batch that comes
from generated images, the *mix ratio*. :class:`MixedFewShotDataset` holds both sets with their
labels (an ordinary ``torch.utils.data.Dataset`` of ``(image, label)`` pairs, real ones first)
and :meth:`MixedFewShotDataset.batches` draws index batches at that ratio, with a seeded
generator, for a classifier's training loop (``metagan eval``'s augmentation protocol uses
exactly this)::

    data = MixedFewShotDataset(x_real, y_real, x_gen, y_gen, mix=0.25)
    loader = DataLoader(data, batch_sampler=data.batches(64, steps=400, seed=0))
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from metagan.errors import ConfigError


def check_mix(mix: float) -> float:
    """A mix ratio: a finite number in [0, 1)."""
    if isinstance(mix, bool) or not isinstance(mix, (int, float)) or not 0.0 <= mix < 1.0:
        raise ConfigError(
            f"mix ratio must be a number in [0, 1) (the share of each batch drawn from generated "
            f"images; 0 = real images only), got {mix!r}"
        )
    return float(mix)


class MixedFewShotDataset(Dataset):
    """Real images ``x_real`` (N_r, C, H, W) with labels (N_r,) and generated images ``x_gen``
    (N_g, C, H, W) with labels (N_g,); item i < N_r is real, the rest generated.

    ``mix`` is the share of every batch drawn from the generated images (0 <= mix < 1): a batch
    of B holds ``round(mix * B)`` generated images and the rest real ones, each drawn uniformly
    with replacement from its own set. ``mix`` must be 0 when there are no generated images.
    """

    def __init__(
        self, x_real: Tensor, y_real: Tensor, x_gen: Tensor | None = None,
        y_gen: Tensor | None = None, *, mix: float = 0.0,
    ):  # fmt: skip
        if x_gen is None:
            x_gen = x_real.new_zeros((0, *x_real.shape[1:]))
            y_gen = y_real.new_zeros((0,))
        if x_real.dim() != 4 or x_gen.shape[1:] != x_real.shape[1:]:
            raise ConfigError(
                "real and generated images must both be (N, C, H, W) of one image shape, got "
                f"{tuple(x_real.shape)} and {tuple(x_gen.shape)}"
            )
        if y_real.shape != x_real.shape[:1] or y_gen is None or y_gen.shape != x_gen.shape[:1]:
            raise ConfigError(
                "every image needs one label: labels must be (N,) beside (N, C, H, W)"
            )
        if x_real.shape[0] == 0:
            raise ConfigError("a few-shot set needs at least one real image")
        self.mix = check_mix(mix)
        if self.mix > 0 and x_gen.shape[0] == 0:
            raise ConfigError(f"mix ratio {mix} asks for generated images but none were given")
        self.x = torch.cat([x_real, x_gen])
        self.y = torch.cat([y_real, y_gen])
        self.num_real = x_real.shape[0]

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> tuple[Tensor, Tensor]:
        return self.x[i], self.y[i]

    def batches(self, batch_size: int, *, steps: int, seed: int = 0) -> MixedBatchSampler:
        """``steps`` index batches of ``batch_size`` at this set's mix ratio (seeded)."""
        return MixedBatchSampler(self.num_real, len(self) - self.num_real, batch_size,
                                 mix=self.mix, steps=steps, seed=seed)  # fmt: skip


class MixedBatchSampler(Sampler[list[int]]):
    """Index batches over [real | generated]: ``round(mix * B)`` generated indices (>= N_r)
    and ``B - round(mix * B)`` real ones (< N_r) per batch, drawn with replacement.

    With ``mix = 0`` a batch is ``min(B, N_r)`` real indices, the plain uniform minibatch of a
    real-only classifier. The same seed gives the same batches.
    """

    def __init__(
        self, num_real: int, num_gen: int, batch_size: int, *, mix: float, steps: int, seed: int = 0
    ):
        for name, v in (("batch_size", batch_size), ("steps", steps)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}")
        self.mix = check_mix(mix)
        if num_real < 1 or (self.mix > 0 and num_gen < 1):
            raise ConfigError(
                f"cannot draw batches at mix {mix} from {num_real} real and {num_gen} generated images"
            )
        self.num_real, self.num_gen = num_real, num_gen
        self.steps, self.seed = steps, seed
        self.n_gen = round(self.mix * batch_size) if self.mix > 0 else 0
        self.n_real = batch_size - self.n_gen if self.mix > 0 else min(batch_size, num_real)
        if self.mix > 0 and self.n_real < 1:
            raise ConfigError(
                f"mix ratio {mix} leaves no real image in a batch of {batch_size}; lower it"
            )
        if self.mix > 0 and self.n_gen < 1:
            need = math.ceil(0.5 / self.mix)
            raise ConfigError(
                f"mix ratio {mix} gives no generated image in a batch of {batch_size}; "
                f"use batches of at least {need}"
            )

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        gen = torch.Generator().manual_seed(self.seed)
        for _ in range(self.steps):
            real = torch.randint(self.num_real, (self.n_real,), generator=gen)
            if self.n_gen:
                fake = self.num_real + torch.randint(self.num_gen, (self.n_gen,), generator=gen)
                real = torch.cat([real, fake])
            yield real.tolist()

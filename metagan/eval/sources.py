"""The rows of an evaluation: where each class's generated samples come from.

A *source* turns every meta-test class's K shots into ``num`` samples. GAN sources adapt a
checkpoint (all classes at once, through the batched inner loop) and give samples after every
adaptation step 0..S, so "fast adaptation" can be measured; the two reference sources need no
GAN: ``shots`` repeats the shots (the memoriser) and the free rows (:mod:`metagan.eval.free`:
``affine``, ``elastic``, ``stroke`` and their compositions) jitter them. A GAN that does not
beat the best free row adds nothing a user could not get for free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from metagan import checkpoint
from metagan.adaptation import SeededStream, adapt_and_generate, load_session
from metagan.eval import free


@dataclass
class Samples:
    images: Tensor  # (T, num, C, H, W) in [-1, 1]
    failed: Tensor  # (T,) bool: adaptation went non-finite; images are blank pages


class Source:
    name: str = "source"
    adapts: bool = False  # True: samples depend on the adaptation step

    def samples(
        self, shots: Tensor, num: int, *, steps: list[int], seed: int
    ) -> dict[int, Samples]:
        """shots (T, K, C, H, W) -> {step: Samples}; sources that do not adapt return {0: ...}."""
        raise NotImplementedError


class ShotsSource(Source):
    """The K shots themselves, repeated: perfect fidelity, no novelty (memorisation 0)."""

    name = "shots"

    def samples(self, shots, num, *, steps, seed):
        idx = torch.arange(num) % shots.shape[1]
        return {0: Samples(shots[:, idx].clone(), torch.zeros(shots.shape[0], dtype=torch.bool))}


class FreeSource(Source):
    """A free row: random transforms of the shots (:mod:`metagan.eval.free`), e.g. ``affine``
    (rotation ±10°, scale 0.9-1.1, shift ±2 px at 28 px at strength 1) or
    ``affine+elastic+stroke``, at the given strengths of its parts."""

    def __init__(self, name: str, background: float, strengths: dict[str, float] | None = None):
        self.name, self.background = name, background
        self.parts = free.parts(name)
        self.strengths = {p: (strengths or free.DEFAULT)[p] for p in self.parts}
        self.jitter = free.jitter(name, self.strengths, background)

    def at(self, strengths: dict[str, float]) -> FreeSource:
        """The same row at other strengths."""
        return FreeSource(self.name, self.background, strengths)

    def samples(self, shots, num, *, steps, seed):
        gen = torch.Generator().manual_seed(seed)
        out = torch.stack([self.jitter.expand(k, num, gen) for k in shots])  # (T, num, C, H, W)
        return {0: Samples(out, torch.zeros(shots.shape[0], dtype=torch.bool))}


class CheckpointSource(Source):
    """A meta-trained (or baseline) generator, adapted to the shots with its algorithm."""

    adapts = True

    def __init__(self, path: str | Path, registries, *, name: str | None = None, device="cpu"):
        self.path = Path(path)
        ckpt = checkpoint.load(self.path)
        self.session, self.params = load_session(self.path, registries, device=device, ckpt=ckpt)
        self.cfg = self.session.cfg
        self.step = int(ckpt["step"])
        self.name = name or self.cfg.meta.algorithm

    def samples(self, shots, num, *, steps, seed):
        s = self.session
        T, K = shots.shape[:2]
        S = max(steps)
        stream = SeededStream(seed)  # the API's and `metagan adapt`'s recipe
        inner = stream.inner_noise(s, T, K, S)
        z = stream.z(s, T, num)  # the same z at every step
        out = {}
        for step in steps:  # each from the initialisation, so any inner optimiser is exact
            images, finite = adapt_and_generate(s, self.params, shots, inner, z, steps=step)
            images = images.cpu()  # (T, num, C, H, W)
            failed = ~(finite.cpu() & torch.isfinite(images).flatten(1).all(1))
            # a class whose adaptation diverged gets blank pages: counted, and scored as such
            blank = -1.0 if s.cfg.data.invert else 1.0
            images[failed] = blank
            out[step] = Samples(images, failed)
        return out

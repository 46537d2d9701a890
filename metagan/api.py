"""The Python API: meta-learned generators in your own code.

::

    import metagan

    g = metagan.load("runs/r1/checkpoint.pt")          # or a shipped name, device="cuda"
    a = g.adapt(["a.png", "b.png", "c.png"], steps=5, seed=0)
    x = a.sample(16)                                    # (16, C, H, W) in [-1, 1]

    result = metagan.train(metagan.Config(meta=metagan.MetaConfig(iterations=10)))

Everything here is a thin layer over :mod:`metagan.adaptation` (what ``metagan adapt`` and
``metagan sample`` run) and :class:`metagan.train.Trainer` (what ``metagan train`` runs), so
the API and the commands give the same samples for the same seed. docs/api.md has examples
that the test suite runs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from metagan import adaptation, pretrained
from metagan.config import Config
from metagan.errors import ConfigError
from metagan.train import Trainer, TrainResult

ImageLike = Tensor | Image.Image | str | os.PathLike


def load(
    checkpoint: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    overrides: Sequence[str] = (),
    registries=None,
) -> FewShotGenerator:
    """A meta-learned generator from a checkpoint file or a shipped checkpoint's name.

    :param checkpoint: a path to ``checkpoint.pt``, or a name from
        :func:`metagan.pretrained.available`.
    :param device: where to adapt and sample (``"cpu"``, ``"cuda"``, ``"cuda:1"``).
    :param overrides: ``inner.*`` settings to adapt with instead of the checkpoint's, e.g.
        ``["inner.lr_g=0.01"]``.
    :param registries: the plugins to build it with (default: the installed ones).
    """
    path = pretrained.resolve(checkpoint)
    s, params = adaptation.load_session(
        path, registries, overrides=list(overrides), device=str(device)
    )
    return FewShotGenerator(s, params, path)


class FewShotGenerator:
    """A meta-learned generator (and its discriminator) that adapts to a new class.

    Build it with :func:`load`. Images go in and come out as tensors in [-1, 1] of shape
    ``(C, H, W) = image_shape``, with the training data's polarity (``config.data.invert``:
    bright strokes on dark); :meth:`to_pil` turns samples back into ordinary images.
    """

    def __init__(self, session, params: dict[str, Tensor], path: Path):
        self.session = session
        self.params = params
        self.path = path

    # -- what it is ------------------------------------------------------------------------
    @property
    def config(self) -> Config:
        """The checkpoint's config (with any ``inner.*`` overrides and the chosen device)."""
        return self.session.cfg

    @property
    def device(self) -> torch.device:
        return self.session.device

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images it adapts to and generates."""
        size = self.config.data.image_size
        return (self.session.arch_cfg.channels, size, size)

    @property
    def conditional(self) -> bool:
        """True when G also takes the shots (``dagan``, ``fusion``): then :meth:`sample`
        needs ``shots``."""
        return self.session.engine.conditional

    # -- images in and out -----------------------------------------------------------------
    def images(self, images: Tensor | Sequence[ImageLike]) -> Tensor:
        """K images as the model's input, (K, C, H, W) in [-1, 1] on :attr:`device`.

        :param images: a (K, C, H, W) tensor already in the model's range and size, or a list
            of PIL images, image paths or (C, H, W) tensors. PIL images and files are
            converted as the training data was (grey, squared, resized, inverted when
            ``config.data.invert``).
        """
        from metagan.data.images import check_min_size, open_image, to_tensor

        cfg = self.config.data
        if isinstance(images, Tensor):
            x = images
        else:
            items = list(images)
            if not items:
                raise ConfigError("no images given: pass K >= 1 images of one class")
            if all(isinstance(i, Tensor) for i in items):
                x = torch.stack(items)
            elif any(isinstance(i, Tensor) for i in items):
                raise ConfigError("pass images as all tensors or all PIL images/paths, not mixed")
            else:
                pil = [i if isinstance(i, Image.Image) else open_image(Path(i)) for i in items]
                for n, im in enumerate(pil):  # files were checked as they were read
                    check_min_size(f"number {n} of the images given", im.size)
                x = to_tensor(pil, cfg.image_size, invert=cfg.invert)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape or x.shape[0] < 1:
            raise ConfigError(
                f"images must be (K, {', '.join(map(str, self.image_shape))}) with K >= 1, got "
                f"{tuple(x.shape)}; pass PIL images or paths to have them resized"
            )
        return x.to(self.device, torch.float32)

    def to_pil(self, samples: Tensor) -> list[Image.Image]:
        """(N, C, H, W) samples → N PIL images (dark strokes on white, as the data files)."""
        from metagan.data.images import to_pil

        return to_pil(samples, invert=self.config.data.invert)

    # -- adapting and sampling -------------------------------------------------------------
    def adapt(
        self, images: Tensor | Sequence[ImageLike], *, steps: int | None = None, seed: int = 0
    ) -> AdaptedGenerator:
        """Adapt to K images of one class with ``steps`` inner steps (default: the
        checkpoint's ``inner.steps``); ``seed`` fixes the inner loop's noise."""
        shots = self.images(images)
        steps = self.config.inner.steps if steps is None else steps
        if steps < 0:
            raise ConfigError(f"steps must be >= 0, got {steps}")
        s = self.session
        gen = torch.Generator().manual_seed(seed)
        inner = adaptation.draw_inner_noise(s, 1, shots.shape[0], steps, gen)
        adapted = s.algorithm.adapt(
            self.params, s.engine, shots[None], inner.to(s.device), steps=steps
        )
        return AdaptedGenerator(self, adapted.theta_g, shots, steps, bool(adapted.finite[0]), gen)

    def sample(self, num: int, *, seed: int = 0, shots=None) -> Tensor:
        """``num`` samples of the meta-learned (unadapted) generator: (num, C, H, W).

        Conditional generators need ``shots`` (images of one class, as for :meth:`adapt`).
        """
        if self.conditional and shots is None:
            raise ConfigError(
                f"architecture {self.config.model.arch!r} is conditioned on shots; pass shots="
            )
        cond = None if shots is None else self.images(shots)[None]
        gen = torch.Generator().manual_seed(seed)
        return self._generate(self.params["g"].detach()[None], cond, num, gen)

    def _generate(self, theta_g: Tensor, shots: Tensor | None, num: int, gen) -> Tensor:
        if num < 1:
            raise ConfigError(f"num must be a positive number of samples, got {num}")
        s = self.session
        if not s.engine.conditional:
            shots = None
        z = torch.randn(1, num, self.config.model.z_dim, generator=gen).to(s.device)
        with torch.no_grad():
            return s.engine.generate(theta_g, z, shots)[0]

    def __repr__(self) -> str:
        c = self.config
        return (
            f"FewShotGenerator({str(self.path)!r}, arch={c.model.arch!r}, "
            f"algorithm={c.meta.algorithm!r}, image_shape={self.image_shape}, device={self.device})"
        )


class AdaptedGenerator:
    """A generator adapted to one class's shots; from :meth:`FewShotGenerator.adapt`."""

    def __init__(self, base: FewShotGenerator, theta_g, shots, steps: int, finite: bool, gen):
        self.base = base
        self.theta_g = theta_g  # (1, P_G): the adapted flat parameters
        self.shots = shots  # (K, C, H, W)
        self.steps = steps
        self.finite = finite  # False: the adaptation diverged (lower inner.lr_g / inner.lr_d)
        self._gen = gen

    def sample(self, num: int, *, seed: int | None = None) -> Tensor:
        """``num`` samples of the adapted generator: (num, C, H, W) in [-1, 1], on the device.

        ``seed=None`` continues the stream :meth:`FewShotGenerator.adapt` was seeded with: the
        first call then gives exactly what ``metagan adapt --seed SEED --num num`` writes.
        """
        if not self.finite:
            raise ConfigError(
                "the adaptation went non-finite; adapt with fewer steps or lower inner.lr_g/lr_d"
            )
        gen = self._gen if seed is None else torch.Generator().manual_seed(seed)
        return self.base._generate(self.theta_g, self.shots[None], num, gen)


def train(
    config: Config | str | os.PathLike | None = None,
    *,
    overrides: Sequence[str] = (),
    resume: str | os.PathLike | None = None,
    overwrite: bool = False,
    registries=None,
    log=None,
) -> TrainResult:
    """Meta-train from a config and return the run's result.

    :param config: a :class:`metagan.Config` (the dataclasses the TOML files fill), a TOML
        file's path, or None for the defaults.
    :param overrides: ``section.key=value`` strings applied on top, as on the command line.
    :param resume: a checkpoint to continue from (its config is the base).
    :param overwrite: replace the run that ``run.out`` already holds (without it, a folder
        holding a run is refused unless ``resume`` is that folder's checkpoint).
    :param log: called with each log line (default: silent).
    :return: :class:`metagan.train.TrainResult` with the step reached, the checkpoint's path,
        the last sample grid and the last logged metrics.
    """
    from metagan import checkpoint
    from metagan import config as configs
    from metagan.session import Session

    if resume is not None:
        resume = pretrained.resolve(resume)
    if isinstance(config, Config):
        base = config.to_dict()
        cfg = configs.load(None, list(overrides), base=base)
    else:
        base = checkpoint.load(resume)["config"] if resume is not None else None
        cfg = configs.load(config, list(overrides), base=base)
    if log is None:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, progress=False))
    trainer = Trainer(cfg, Session(cfg, registries), resume=resume, overwrite=overwrite)
    return trainer.run(log=log or (lambda line: None))

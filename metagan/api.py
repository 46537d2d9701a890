"""The Python API: meta-learned generators in your own code.

::

    import metagan

    g = metagan.load("runs/r1/checkpoint.pt")          # or a shipped name, device="cuda"
    a = g.adapt(["a.png", "b.png", "c.png"], steps=5, seed=0)
    x = a.sample(16)                                    # (16, C, H, W) in [-1, 1]

    result = metagan.train(metagan.Config(meta=metagan.MetaConfig(iterations=10)))

The ``metagan`` command is a thin layer over this module (``adapt`` and ``sample`` call
:meth:`FewShotGenerator.adapt_classes` / :meth:`FewShotGenerator.sample`, ``train`` runs the
same :class:`metagan.train.Trainer`), so every check holds in both, with the same exception
types, and both give the same samples for the same seed (one seeded recipe:
:class:`metagan.adaptation.SeededStream`). docs/api.md lists the value ranges and every
exception; its examples are run by the test suite.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from metagan import adaptation, memory, plugins, pretrained
from metagan.config import Config
from metagan.errors import ConfigError, DataError, check_count, check_seed
from metagan.train import Trainer, TrainResult

ImageLike = Tensor | Image.Image | str | os.PathLike
MAX_STEPS = 10_000  # adaptation steps, as `metagan adapt --steps`


class PluginLoadWarning(UserWarning):
    """A plugin failed to load (the command line prints the same line on stderr)."""


def registries(registries=None) -> plugins.Registries:
    """``registries``, or the installed plugins; each plugin that failed to load is reported
    as a :class:`PluginLoadWarning` naming it, its distribution, the cause and how to disable it."""
    if registries is not None:
        return registries
    regs = plugins.get()
    for line in plugins.failure_lines(regs):
        warnings.warn(line, PluginLoadWarning, stacklevel=3)
    return regs


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
        path, _registries(registries), overrides=list(overrides), device=str(device)
    )
    return FewShotGenerator(s, params, path)


_registries = registries


class FewShotGenerator:
    """A meta-learned generator (and its discriminator) that adapts to a new class.

    Build it with :func:`load`. Images go in and come out as tensors in [-1, 1] of shape
    ``(C, H, W) = image_shape`` (C = 1 for strokes, 3 for colour photographs), with the
    training data's polarity (``config.data.invert``: bright strokes on dark; colour is never
    inverted); :meth:`to_pil` turns samples back into ordinary images.
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
        """True when G also takes the shots (``dagan``, ``fusion``, ``warp``): then
        :meth:`sample` needs ``shots``."""
        return self.session.engine.conditional

    # -- images in and out -----------------------------------------------------------------
    def images(self, images: Tensor | ImageLike | Sequence[ImageLike]) -> Tensor:
        """K images of one class as the model's input, (K, C, H, W) in [-1, 1] on :attr:`device`.

        :param images: a (K, C, H, W) tensor (or one (C, H, W) image) already in the model's
            range, size and polarity; or PIL images, image paths, a folder's path (every image
            in it), or a list of them, of any size and mode, converted as the training data
            was: for one channel grey, padded to a square, resized, inverted when
            ``config.data.invert``; for three channels RGB, centre-cropped, resized, never
            inverted. A list of (C, H, W) tensors is stacked.
        :raises DataError: non-finite values; values outside [-1, 1]; values all >= 0, taken
            for [0, 1] images (say how to map them); an unreadable file.
        :raises ConfigError: no images, a wrong shape, tensors mixed with other kinds.
        """
        from metagan.data.images import check_min_size, open_image, read_image_dir, to_tensor

        cfg = self.config.data
        if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
            images = read_image_dir(images, gray=False)  # a folder: every image in it
        elif isinstance(images, (str, os.PathLike, Image.Image)):
            images = [images]  # one image, not a sequence of characters
        if isinstance(images, Tensor):
            x = images[None] if images.dim() == 3 else images
        else:
            items = list(images)
            if not items:
                raise ConfigError("no images given: pass K >= 1 images of one class")
            if all(isinstance(i, Tensor) for i in items):
                x = torch.stack(items)
            elif any(isinstance(i, Tensor) for i in items):
                raise ConfigError("pass images as all tensors or all PIL images/paths, not mixed")
            else:
                pil = [i if isinstance(i, Image.Image) else open_image(Path(i), gray=False)
                       for i in items]  # fmt: skip
                for n, im in enumerate(pil):  # files were checked as they were read
                    check_min_size(f"number {n} of the images given", im.size)
                x = to_tensor(pil, cfg.image_size, invert=cfg.invert, channels=cfg.channels)
                return x.to(self.device)
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape or x.shape[0] < 1:
            raise ConfigError(
                f"images must be (K, {', '.join(map(str, self.image_shape))}) with K >= 1, got "
                f"{tuple(x.shape)}; pass PIL images or paths to have them resized"
            )
        check_image_values(x, invert=cfg.invert)
        return x.to(self.device, torch.float32)

    def to_pil(self, samples: Tensor) -> list[Image.Image]:
        """(N, C, H, W) samples → N PIL images: mode "L" with dark strokes on white (as the
        data files) for one channel, "RGB" for three."""
        from metagan.data.images import to_pil

        return to_pil(samples, invert=self.config.data.invert)

    # -- adapting and sampling -------------------------------------------------------------
    def adapt(
        self,
        images: Tensor | ImageLike | Sequence[ImageLike],
        *,
        steps: int | None = None,
        seed: int = 0,
    ) -> AdaptedGenerator:
        """Adapt to K images of one class (see :meth:`images`) with ``steps`` inner steps
        (default: the checkpoint's ``inner.steps``); ``seed`` fixes the inner loop's noise and
        then the samples' (what ``metagan adapt --seed SEED`` does)."""
        return self.adapt_classes(self.images(images)[None], steps=steps, seed=seed, _one=True)

    def adapt_classes(
        self, shots: Tensor, *, steps: int | None = None, seed: int = 0, _one: bool = False
    ) -> AdaptedGenerator:
        """Adapt to T classes at once, batched: ``shots`` (T, K, C, H, W) in the model's range.
        Its :meth:`AdaptedGenerator.sample` gives (T, num, C, H, W); ``metagan adapt --unseen N``
        runs this."""
        if shots.dim() != 5 or tuple(shots.shape[2:]) != self.image_shape or 0 in shots.shape:
            raise ConfigError(
                f"shots must be (T, K, {', '.join(map(str, self.image_shape))}) with T, K >= 1, "
                f"got {tuple(shots.shape)}"
            )
        if not _one:  # (adapt's images are checked by images())
            check_image_values(shots, invert=self.config.data.invert, unit=False)
        steps = self.config.inner.steps if steps is None else steps
        check_count("steps", steps, low=0, high=MAX_STEPS)
        check_seed(seed)
        s = self.session
        stream = adaptation.SeededStream(seed)
        inner = stream.inner_noise(s, shots.shape[0], shots.shape[1], steps)
        shots = shots.to(s.device, torch.float32)
        adapted = s.algorithm.adapt(self.params, s.engine, shots, inner.to(s.device), steps=steps)
        return AdaptedGenerator(self, adapted.theta_g, shots, steps, adapted.finite, stream, _one)

    def sample(self, num: int, *, seed: int = 0, shots=None) -> Tensor:
        """``num`` samples of the meta-learned (unadapted) generator: (num, C, H, W) in [-1, 1].

        Conditional generators need ``shots`` (images of one class, as for :meth:`adapt`);
        unconditional ones refuse them.
        """
        check_count("num", num)
        check_seed(seed)
        if self.conditional and shots is None:
            raise ConfigError(
                f"architecture {self.config.model.arch!r} is conditioned on shots; pass "
                "images of one class (shots=..., --images DIR)"
            )
        if not self.conditional and shots is not None:
            raise ConfigError(
                f"architecture {self.config.model.arch!r} is not conditional; "
                "sample without shots (drop --images)"
            )
        cond = None if shots is None else self.images(shots)[None]
        stream = adaptation.SeededStream(seed)
        return self._generate(self.params["g"].detach()[None], cond, num, stream)[0]

    def _generate(self, theta_g: Tensor, shots: Tensor | None, num: int, stream) -> Tensor:
        """(T, num, C, H, W) samples of the generators ``theta_g`` (T, P_G), z from ``stream``."""
        s = self.session
        memory.check_sampling(s.footprint, theta_g.shape[0], num, s.cfg, s.device, flag="num")
        z = stream.z(s, theta_g.shape[0], num).to(s.device)
        with torch.no_grad():
            return s.engine.generate(theta_g, z, shots if s.engine.conditional else None)

    def __repr__(self) -> str:
        c = self.config
        return (
            f"FewShotGenerator({str(self.path)!r}, arch={c.model.arch!r}, "
            f"algorithm={c.meta.algorithm!r}, image_shape={self.image_shape}, device={self.device})"
        )


class AdaptedGenerator:
    """A generator adapted to one class's shots (:meth:`FewShotGenerator.adapt`), or to T
    classes' (:meth:`FewShotGenerator.adapt_classes`)."""

    def __init__(self, base, theta_g, shots, steps: int, finite, stream, one: bool = True):
        self.base = base
        self.theta_g = theta_g  # (T, P_G): the adapted flat parameters
        self.shots = shots[0] if one else shots  # (K, C, H, W), or (T, K, C, H, W)
        self.steps = steps
        self.finite = finite  # (T,) bool; False: that class's adaptation diverged
        self._one = one
        self._stream = stream

    def sample(self, num: int, *, seed: int | None = None) -> Tensor:
        """``num`` samples of the adapted generator: (num, C, H, W) in [-1, 1] on the device
        ((T, num, C, H, W) after ``adapt_classes``).

        ``seed=None`` continues the stream :meth:`FewShotGenerator.adapt` was seeded with: the
        first call then gives exactly what ``metagan adapt --seed SEED --num num`` writes.
        """
        check_count("num", num)
        if not bool(self.finite.all()):
            raise ConfigError(
                "the adaptation went non-finite; adapt with fewer steps or lower inner.lr_g/lr_d"
            )
        if seed is not None:
            check_seed(seed)
        stream = self._stream if seed is None else adaptation.SeededStream(seed)
        shots = self.shots[None] if self._one else self.shots
        out = self.base._generate(self.theta_g, shots, num, stream)
        return out[0] if self._one else out


def check_image_values(x: Tensor, *, invert: bool, unit: bool = True) -> None:
    """Images given as tensors must be floating point, finite and in the model's range,
    [-1, 1]. With ``unit``, a batch whose values are all >= 0 is taken for [0, 1] images
    (torchvision's habit) and refused, with the mapping to use: an image in the model's range
    has its background (``invert``: -1) or its strokes below 0."""
    if not x.is_floating_point():
        raise DataError(
            f"image tensors must be floating point in [-1, 1], got {x.dtype}; "
            "pass PIL images or paths to have them converted"
        )
    bad = int((~torch.isfinite(x)).sum())
    if bad:
        raise DataError(
            f"images contain {bad} non-finite value(s) (NaN or inf); pass finite images in [-1, 1]"
        )
    lo, hi = float(x.min()), float(x.max())
    look = (
        "bright strokes on a dark background (-1)" if invert else "as the data files (white is +1)"
    )
    if lo < -1.001 or hi > 1.001:
        raise DataError(
            f"image values must be in [-1, 1] ({look}), got values in [{lo:g}, {hi:g}]; "
            "pass PIL images or paths to have them converted"
        )
    if unit and lo >= 0:
        fix = "1 - 2 * x" if invert else "2 * x - 1"
        raise DataError(
            f"images look like [0, 1] values (all in [{lo:g}, {hi:g}]): the model takes [-1, 1], "
            f"{look}; for dark-on-white [0, 1] images pass {fix}, or pass PIL images or paths"
        )


def train(
    config: Config | str | os.PathLike | None = None,
    *,
    overrides: Sequence[str] = (),
    resume: str | os.PathLike | None = None,
    overwrite: bool = False,
    registries=None,
    log=None,
) -> TrainResult:
    """Meta-train from a config and return the run's result (what ``metagan train`` runs).

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
    if resume is not None:
        resume = pretrained.resolve(resume)
    cfg = resolve_config(config, overrides, resume=resume)
    if log is None:
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, progress=False))
    trainer = make_trainer(cfg, resume=resume, overwrite=overwrite, registries=registries)
    return trainer.run(log=log or (lambda line: None))


def resolve_config(
    config: Config | str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    *,
    resume: str | os.PathLike | None = None,
) -> Config:
    """The config a run uses: ``config`` (a Config, a TOML file or None for the defaults; when
    resuming without a Config, the checkpoint's own config is the base) with ``overrides``."""
    from metagan import checkpoint
    from metagan import config as configs

    if isinstance(config, Config):
        return configs.load(None, list(overrides), base=config.to_dict())
    # a changed architecture is refused when the parameters are loaded (check_params)
    base = checkpoint.load(resume)["config"] if resume is not None else None
    return configs.load(config, list(overrides), base=base)


def make_trainer(cfg: Config, *, resume=None, overwrite: bool = False, registries=None) -> Trainer:
    """The :class:`~metagan.train.Trainer` of a run with ``cfg``: run.out checked before any
    work; under torchrun the process group joined and the Session built on this rank's GPU."""
    from metagan import checkpoint, distributed
    from metagan.io import check_writable
    from metagan.session import Session

    check_writable(cfg.run.out, "run.out (--out)")
    regs = _registries(registries)
    if resume is not None:  # a plugin the checkpoint was made with and that is missing: named
        checkpoint.check_plugins(resume, checkpoint.load(resume), regs)
    ctx = distributed.setup(cfg)  # one process: a context that changes nothing
    session = Session(ctx.rank_config(cfg), regs)
    return Trainer(cfg, session, resume=resume, dist=ctx, overwrite=overwrite)

"""Adaptation: from a checkpoint and K images of a class to samples of that class.

One room for everything that happens after meta-training:

* :func:`load_session`: a checkpoint → its :class:`~metagan.session.Session` and meta-parameters;
* :func:`read_shots`: the first K image files of a folder (``--images DIR``);
* :func:`adapt_and_generate` / :func:`adapt_and_sample`: adapt every task's generator to its
  shots through the algorithm's (batched) inner loop, then draw samples;
* :class:`SeededStream`: the one seeded recipe (inner-loop noise, then z) every path uses;
* :func:`nearest_shot_distance`: how close samples stay to their shots.

Training's loggers (sample grids, the logged memorisation), the ``adapt`` and ``sample`` commands,
evaluation and the Python API (:mod:`metagan.api`) all use these; this module imports neither
training nor evaluation.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from metagan import checkpoint, config, memory, plugins
from metagan.errors import ConfigError, DataError
from metagan.inner import Noise
from metagan.models import ArchConfig
from metagan.session import Session


def load_session(
    path: str | Path,
    registries=None,
    *,
    overrides=(),
    device: str | None = None,
    ckpt: dict | None = None,
    num: int | None = None,
) -> tuple[Session, dict[str, Tensor]]:
    """The Session a checkpoint was trained with, and its meta-parameters loaded into it.

    ``overrides`` change how to adapt (``inner.*`` keys only, e.g. ``inner.lr_g=0.01``);
    ``device`` replaces the checkpoint's ``run.device``; ``ckpt``: the checkpoint at ``path``
    when the caller has already read it; ``num``: samples per class the caller will draw, which
    are refused (with an estimate) before the networks are built if they cannot fit.
    Parameters that are not finite are refused (:func:`metagan.checkpoint.check_params`).
    """
    ckpt = checkpoint.load(path) if ckpt is None else ckpt
    registries = registries or plugins.get()
    checkpoint.check_plugins(path, ckpt, registries)  # a missing plugin is named
    bad = [o for o in overrides if not o.startswith("inner.")]
    if bad:
        raise ConfigError(f"adapt takes only inner.* overrides (how to adapt), got {bad[0]!r}")
    overrides = list(overrides)
    if device is not None:
        overrides.append(f"run.device={config._toml_value(str(device))}")
    cfg = config.load(None, overrides, base=recorded_config(ckpt))
    if num is not None:  # one class at least
        m, d = cfg.model, cfg.data
        arch = ArchConfig(
            image_size=d.image_size, channels=d.channels, z_dim=m.z_dim, width=m.width
        )
        fp = memory.footprint(registries.architectures.get(m.arch), arch)
        memory.check_sampling(fp, 1, num, cfg, cfg.run.device)
    s = Session(cfg, registries, check_memory=False)  # adapting needs no meta-batch
    return s, s.load_params(path, ckpt)


def recorded_config(ckpt: dict) -> dict:
    """A checkpoint's config as a dict; checkpoints from before colour data (no
    ``data.channels``) were all one-channel, so they read as ``channels = 1``."""
    base = {k: dict(v) for k, v in ckpt["config"].items()}
    base.setdefault("data", {}).setdefault("channels", 1)
    return base


def read_shots(folder: Path, k: int | None = None) -> list:
    """The first ``k`` (None: every) image of ``folder``, as PIL images (``--images DIR``) in
    their own modes: the generator converts them as its training data was (grey or colour)."""
    from metagan.data.images import read_image_dir

    images = read_image_dir(folder, gray=False)
    if k is not None and len(images) < k:
        raise DataError(
            f"--images {folder} holds {len(images)} images but --shots is {k}; add images or lower --shots"
        )
    return images if k is None else images[:k]


def adapt_and_generate(
    s: Session, params, shots: Tensor, inner_noise: Tensor, z: Tensor, *, steps: int
) -> tuple[Tensor, Tensor]:
    """Adapt each task's generator to its shots (T, K, C, H, W) for ``steps`` inner steps
    (noise ``inner_noise[:steps]``, (S, T, B, Z)) and generate from ``z`` (T, N, Z).

    Returns the samples (T, N, C, H, W) on the session's device and which tasks' adaptation
    stayed finite (T,) bool.
    """
    dev = s.device
    adapted = s.algorithm.adapt(
        params, s.engine, shots.to(dev), inner_noise[:steps].to(dev), steps=steps
    )
    with torch.no_grad():
        images = s.engine.generate(adapted.theta_g, z.to(dev), shots.to(dev))
    return images, adapted.finite


def adapt_and_sample(
    s: Session, params, shots: Tensor, num: int, *, seed: int, steps: int | None = None
) -> Tensor:
    """Adapt to each task's shots (T, K, C, H, W) and draw ``num`` samples each: (T, num, C, H, W)
    on the CPU, from the one seeded recipe (:class:`SeededStream`): the training grids'."""
    T, K = shots.shape[:2]
    steps = s.cfg.inner.steps if steps is None else steps
    stream = SeededStream(seed)
    inner = stream.inner_noise(s, T, K, steps)
    z = stream.z(s, T, num)
    images, _ = adapt_and_generate(s, params, shots, inner, z, steps=steps)
    return images.cpu()


class SeededStream:
    """THE seeded recipe behind "the same samples for the same seed": one generator seeded with
    ``seed`` gives first the inner loop's noise, then the samples' z.

    Every path that adapts and samples draws through it: the Python API
    (:meth:`metagan.api.FewShotGenerator.adapt` then ``.sample``, and ``sample``), hence
    ``metagan adapt`` and ``metagan sample``; training's sample grids
    (:func:`adapt_and_sample`); evaluation's checkpoint rows (:mod:`metagan.eval.sources`).
    """

    def __init__(self, seed: int):
        self.gen = torch.Generator().manual_seed(seed)

    def inner_noise(self, s: Session, tasks: int, shots: int, steps: int) -> Tensor:
        """The inner loop's noise for ``tasks`` tasks of ``shots`` shots: (steps, T, B, Z), on
        the CPU. Drawn as :meth:`Noise.draw` draws it (the outer z too, unused here), so the
        stream continues exactly where it would after a training-style draw."""
        return Noise.draw(
            steps, tasks, s.engine.fake_batch(shots), s.cfg.model.z_dim, generator=self.gen
        ).inner

    def z(self, s: Session, tasks: int, num: int) -> Tensor:
        """The latent codes of ``num`` samples for each of ``tasks`` tasks: (T, num, Z), CPU."""
        return torch.randn(tasks, num, s.cfg.model.z_dim, generator=self.gen)


def nearest_shot_distance(x: Tensor, shots: Tensor) -> Tensor:
    """Distance from each row of ``x`` (N, F) to its nearest shot (K, F): (N,)."""
    return torch.cdist(x.double(), shots.double()).min(1).values

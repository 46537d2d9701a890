"""Adaptation: from a checkpoint and K images of a class to samples of that class.

One room for everything that happens after meta-training:

* :func:`load_session`: a checkpoint → its :class:`~metagan.session.Session` and meta-parameters;
* :func:`read_shots`: K image files of one class → a shots tensor ``(1, K, C, H, W)``;
* :func:`adapt_and_generate` / :func:`adapt_and_sample`: adapt every task's generator to its
  shots through the algorithm's (batched) inner loop, then draw samples;
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
    bad = [o for o in overrides if not o.startswith("inner.")]
    if bad:
        raise ConfigError(f"adapt takes only inner.* overrides (how to adapt), got {bad[0]!r}")
    overrides = list(overrides)
    if device is not None:
        overrides.append(f"run.device={config._toml_value(str(device))}")
    cfg = config.load(None, overrides, base=ckpt["config"])
    if num is not None:  # one class at least
        m = cfg.model
        arch = ArchConfig(image_size=cfg.data.image_size, z_dim=m.z_dim, width=m.width)
        fp = memory.footprint((registries or plugins.get()).architectures.get(m.arch), arch)
        memory.check_sampling(fp, 1, num, cfg, cfg.run.device)
    s = Session(cfg, registries, check_memory=False)  # adapting needs no meta-batch
    return s, s.load_params(path, ckpt)


def read_shots(
    folder: Path, k: int, size: int, invert: bool, *, all_images: bool = False
) -> Tensor:
    """The first ``k`` (or, with ``all_images``, every) image of ``folder``: (1, K, C, H, W)."""
    from metagan.data.images import read_image_dir, to_tensor

    images = read_image_dir(folder)
    if len(images) < k:
        raise DataError(
            f"--images {folder} holds {len(images)} images but --shots is {k}; add images or lower --shots"
        )
    return to_tensor(images if all_images else images[:k], size, invert=invert)[None]


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
    """Adapt to each task's shots (T, K, C, H, W) and draw ``num`` samples each: (T, num, C, H, W).

    One seeded stream gives the inner-loop noise, then the samples' z: what ``metagan adapt``
    writes and what :meth:`metagan.api.FewShotGenerator.adapt` then ``.sample`` return.
    """
    T, K = shots.shape[:2]
    steps = s.cfg.inner.steps if steps is None else steps
    gen = torch.Generator().manual_seed(seed)
    inner = draw_inner_noise(s, T, K, steps, gen)
    z = torch.randn(T, num, s.cfg.model.z_dim, generator=gen)
    images, _ = adapt_and_generate(s, params, shots, inner, z, steps=steps)
    return images.cpu()


def draw_inner_noise(s: Session, tasks: int, shots: int, steps: int, gen) -> Tensor:
    """The inner loop's noise for ``tasks`` tasks of ``shots`` shots: (steps, T, B, Z).

    Drawn as :meth:`Noise.draw` draws it (the outer z too, unused here), so that the stream
    ``gen`` continues exactly where it would after a training-style draw.
    """
    return Noise.draw(
        steps, tasks, s.engine.fake_batch(shots), s.cfg.model.z_dim, generator=gen
    ).inner


def nearest_shot_distance(x: Tensor, shots: Tensor) -> Tensor:
    """Distance from each row of ``x`` (N, F) to its nearest shot (K, F): (N,)."""
    return torch.cdist(x.double(), shots.double()).min(1).values

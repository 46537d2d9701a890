"""A pytest plugin for plugin authors (installed with metagan, active in every pytest run).

metagan declares it in the ``pytest11`` entry-point group, so with metagan and pytest installed
(``pip install 'metagan[test]'``) every pytest run has the :func:`metagan_load` fixture; the
module itself imports pytest and is only for tests. It offers that fixture, which loads plugins
in isolation, and three conformance checks that a third-party dataset, architecture or
algorithm should pass::

    from metagan.testing import check_algorithm, check_architecture, check_dataset

    def test_my_dataset():
        check_dataset(MyDataset, root="tests/data/my_dataset")

    def test_my_arch():
        check_architecture(build_my_arch)

    def test_my_algorithm():
        check_algorithm(MyAlgorithm)

    def test_registration(metagan_load):
        regs = metagan_load(my_plugin_module)      # entry points off: only the built-in losses
        assert "myalgo" in regs.algorithms
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import vmap

from metagan import plugins
from metagan.algorithm import MetaConfig
from metagan.inner import BatchedEngine, InnerConfig, Noise
from metagan.losses import GanLoss
from metagan.models import ArchConfig, FunctionalNet, check_vmap_safe
from metagan.sequential import SequentialEngine

_NS = GanLoss(
    d_loss=lambda r, f: nn.functional.softplus(-r).mean() + nn.functional.softplus(f).mean(),
    g_loss=lambda f: nn.functional.softplus(-f).mean(),
)


@pytest.fixture
def metagan_load():
    """``metagan_load(*plugin_objects) -> Registries`` with entry-point discovery off."""

    def load(*objs):
        return plugins.load(
            entry_points=False,
            extra=[(getattr(o, "__name__", f"p{i}"), o) for i, o in enumerate(objs)],
        )

    return load


def check_dataset(cls, *, root=None, seed: int = 0, classes: int = 3) -> None:
    """``cls(root=root, seed=seed)`` is a usable few-shot dataset.

    Checks: it subclasses :class:`metagan.data.base.ClassDataset` and lists classes as
    :class:`~metagan.data.base.ClassRef` with unique ``group/class`` names (``class_index``
    finds each; a grouped class's name starts with its group); the same arguments give the
    same classes; the first ``classes`` classes (and the last) load exactly ``num_images``
    (at least 2) decodable images that metagan can convert to the dataset's ``channels``
    (1 or 3), identical on a second load; an out-of-range index is a one-line
    :class:`~metagan.errors.DataError`.
    """
    from PIL import Image

    from metagan.data.base import ClassDataset, ClassRef
    from metagan.data.images import to_tensor
    from metagan.errors import DataError

    assert issubclass(cls, ClassDataset), f"{cls.__name__} must subclass ClassDataset"
    ds = cls(root=root, seed=seed)
    assert isinstance(ds.classes, list) and ds.classes, "the dataset lists no classes"
    assert all(isinstance(c, ClassRef) for c in ds.classes), "classes must be ClassRef objects"
    names = [c.name for c in ds.classes]
    assert len(set(names)) == len(names), "class names must be unique"
    for i, c in enumerate(ds.classes):
        assert ds.class_index(c.name) == i, f"class_index({c.name!r}) != {i}"
        if c.group is not None:
            assert c.name.startswith(f"{c.group}/"), (
                f"class {c.name!r} of group {c.group!r}: name it '<group>/<class>'"
            )
    ch = getattr(ds, "channels", 1)
    assert ch in (1, 3) and not isinstance(ch, bool), (
        f"channels must be 1 (grayscale) or 3 (RGB), got {ch!r}"
    )
    again = cls(root=root, seed=seed)
    assert again.classes == ds.classes, "the same arguments must give the same classes"
    picks = sorted({*range(min(classes, len(ds.classes))), len(ds.classes) - 1})
    for i in picks:
        c = ds.classes[i]
        assert c.num_images >= 2, f"class {c.name!r} has {c.num_images} images; K + Q need >= 2"
        images = ds.load_class(i)
        assert len(images) == c.num_images, (
            f"class {c.name!r} lists {c.num_images} images but load_class gave {len(images)}"
        )
        assert all(isinstance(im, Image.Image) for im in images), "load_class must give PIL images"
        x = to_tensor(images, 28, invert=False, channels=ch)
        assert x.shape == (c.num_images, ch, 28, 28) and torch.isfinite(x).all()
        y = to_tensor(again.load_class(i), 28, invert=False, channels=ch)
        assert torch.equal(x, y), f"class {c.name!r} loads different images each time"
    try:
        ds.check_index(len(ds.classes))
    except DataError as exc:
        assert "\n" not in str(exc)
    else:
        raise AssertionError("check_index accepted an index past the last class")


def check_architecture(
    build,
    *,
    image_size: int = 28,
    z_dim: int = 16,
    tasks: int = 3,
    shots: int = 2,
    channels: int = 1,
    width: int = 8,
) -> None:
    """``build(ArchConfig)`` gives G/D of the right shapes (``channels`` x ``image_size``
    squared) that are safe under vmap over tasks: each task's output equals running that
    task alone, and the same inputs give the same output (no global RNG inside). A
    conditional pair gets ``shots`` support images per task. Run it for every size and
    channel count the architecture supports (1 and 3; 28, 32, 64 and 128 px)."""
    arch_cfg = ArchConfig(image_size=image_size, z_dim=z_dim, width=width, channels=channels)
    pair = build(arch_cfg)
    check_vmap_safe(pair.generator, "generator", "under test")
    check_vmap_safe(pair.discriminator, "discriminator", "under test")
    G, D = FunctionalNet(pair.generator), FunctionalNet(pair.discriminator)
    theta = G.init_flat().expand(tasks, -1).clone()
    theta += 0.01 * torch.randn_like(theta)
    z = torch.randn(tasks, 4, z_dim)
    size = (channels, image_size, image_size)
    # (T, K, C, H, W) for a conditional pair; nothing otherwise
    cond = (torch.rand(tasks, shots, *size) * 2 - 1,) if pair.conditional else ()
    x = vmap(G)(theta, z, *cond)
    assert x.shape == (tasks, 4, *size), f"generator output shape {tuple(x.shape)}"
    assert torch.isfinite(x).all() and x.abs().max() <= 1.0, (
        "generator output must be finite and in [-1, 1]"
    )
    torch.testing.assert_close(
        x[1],
        G(theta[1], z[1], *(c[1] for c in cond)),
        # float32 sums run in another order batched: 2e-5 seen at 128 px (a leak is ~0.1)
        atol=1e-4,
        rtol=1e-4,
        msg="generator output depends on other tasks",
    )
    assert torch.equal(x, vmap(G)(theta, z, *cond)), (
        "generator output is not a function of its inputs"
    )
    logits = vmap(D)(D.init_flat().expand(tasks, -1), x, *cond)
    assert logits.shape == (tasks, 4), (
        f"discriminator output shape {tuple(logits.shape)}, want (T, B)"
    )
    if pair.conditional:  # any number of shots from 1 up
        for k in (1, shots + 1):
            sub = torch.rand(tasks, k, *size) * 2 - 1  # (T, k, C, H, W)
            assert vmap(G)(theta, z, sub).shape == x.shape, f"generator fails with {k} shots"
            assert vmap(D)(D.init_flat().expand(tasks, -1), x, sub).shape == (tasks, 4), (
                f"discriminator fails with {k} shots"
            )


def check_algorithm(cls, *, build=None, steps: int = 2, tasks: int = 3) -> None:
    """One meta-step gives finite meta-gradients for every meta-parameter, equal (float64)
    between the batched engine and the sequential reference."""
    from metagan.data.tasks import TaskBatch

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        if build is None:
            regs = plugins.get()
            build = regs.architectures.get("mlp")
        pair = build(ArchConfig(image_size=28, z_dim=8, width=8))
        cfg = InnerConfig(steps=steps)
        algo = cls(meta=MetaConfig(), inner=cfg)
        engines = [E(pair, _NS, cfg) for E in (BatchedEngine, SequentialEngine)]
        g0, d0 = engines[0].G.init_flat(), engines[0].D.init_flat()
        params = {
            k: nn.Parameter(v.clone())
            for k, v in {"g": g0, "d": d0, **algo.extra_parameters(g0, d0)}.items()
        }
        gen = torch.Generator().manual_seed(0)
        batch = TaskBatch(
            support=torch.rand(tasks, 2, 1, 28, 28, generator=gen) * 2 - 1,
            query=torch.rand(tasks, 2, 1, 28, 28, generator=gen) * 2 - 1,
            classes=torch.arange(tasks),
        )
        noise = Noise.draw(steps, tasks, 2, 8, generator=gen)
        a, b = (algo.step(params, batch, noise, e) for e in engines)
        assert a.grads is not None and set(a.grads) == set(params), (
            "meta-gradients must cover every meta-parameter"
        )
        for k in params:
            assert torch.isfinite(a.grads[k]).all(), f"non-finite meta-gradient for {k}"
            torch.testing.assert_close(a.grads[k], b.grads[k], msg=f"batched != sequential for {k}")
    finally:
        torch.set_default_dtype(old)

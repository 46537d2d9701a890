"""The hooks through which a plugin adds datasets, architectures, meta-algorithms and losses.

A plugin is a module (or object) with functions decorated by :data:`metagan.plugins.hookimpl`
whose names are the hook names below. metagan finds plugins through the ``metagan`` entry-point
group, so a third-party package declares in its pyproject::

    [project.entry-points.metagan]
    myplugin = "my_package.metagan_plugin"

Every hook receives a :class:`metagan.registry.Registry` and calls ``registry.add(name, obj)``;
the registry checks the entry and records which plugin added it. Hooks are called with keyword
arguments only; new arguments are only ever added as opt-in, so an implementation that takes
fewer arguments keeps working.
"""

from __future__ import annotations

import pluggy

hookspec = pluggy.HookspecMarker("metagan")


@hookspec
def metagan_register_datasets(registry):
    """Register few-shot datasets.

    :param registry: the dataset :class:`~metagan.registry.Registry`. Call
        ``registry.add(name, cls, description=...)`` where ``cls`` is a subclass of
        :class:`metagan.data.base.ClassDataset` whose constructor takes the keyword-only
        arguments ``root`` (a path or ``None``) and ``seed`` (an int).
    :return: ignored.

    Added in 0.1.
    """


@hookspec
def metagan_register_architectures(registry):
    """Register generator/discriminator pairs.

    :param registry: the architecture :class:`~metagan.registry.Registry`. Call
        ``registry.add(name, build, description=...)`` where ``build(config)`` takes a
        :class:`metagan.models.ArchConfig` and returns a :class:`metagan.models.GanPair`:
        a generator ``G(z) -> images`` and a discriminator ``D(images) -> logits`` as
        ``torch.nn.Module`` objects that are safe under ``torch.func.vmap`` over tasks
        (no BatchNorm running statistics, no in-place updates of buffers). With
        ``GanPair(..., conditional=True)`` both also take the task's support images:
        ``G(z, shots)``, ``D(images, shots)`` (see docs/plugins.md).
    :return: ignored.

    Added in 0.1.
    """


@hookspec
def metagan_register_algorithms(registry):
    """Register meta-learning algorithms.

    :param registry: the algorithm :class:`~metagan.registry.Registry`. Call
        ``registry.add(name, cls, description=...)`` where ``cls`` subclasses
        :class:`metagan.algorithm.Algorithm` and implements ``meta_gradients`` (and, where it
        learns more than the initialisation, ``extra_parameters``).
    :return: ignored.

    Added in 0.1.
    """


@hookspec
def metagan_register_losses(registry):
    """Register GAN losses.

    :param registry: the loss :class:`~metagan.registry.Registry`. Call
        ``registry.add(name, loss, description=...)`` where ``loss`` is a
        :class:`metagan.losses.GanLoss`: ``d_loss(real_logits, fake_logits)`` and
        ``g_loss(fake_logits)``, each returning a scalar per task (pure functions of their
        inputs, so that they can be vmapped and differentiated twice).
    :return: ignored.

    Added in 0.1.
    """

"""The hooks through which a plugin adds datasets, architectures, meta-algorithms and losses,
and follows (or steers) a training run.

A plugin is a module (or object) with functions decorated by :data:`metagan.plugins.hookimpl`
whose names are the hook names below. metagan finds plugins through the ``metagan`` entry-point
group, so a third-party package declares in its pyproject::

    [project.entry-points.metagan]
    myplugin = "my_package.metagan_plugin"

Every hook receives a :class:`metagan.registry.Registry` and calls ``registry.add(name, obj)``;
the registry checks the entry and records which plugin added it. Hooks are called with keyword
arguments only; new arguments are only ever added as opt-in, so an implementation that takes
fewer arguments keeps working.

Two families:

* **registration hooks** (``metagan_register_*``) run once, when the plugins are loaded;
* **lifecycle hooks** run during :meth:`metagan.train.Trainer.run`, in this order::

      metagan_run_start
      for each meta-step:  metagan_meta_step_end
                           (at log steps) metagan_collect_metrics, then metagan_log_metrics
                           (when saved)   metagan_checkpoint_saved
                           (sample steps) metagan_make_sample_grid, then metagan_sample_grid
      metagan_run_end                     (also when the run fails: ``error`` is set)

  Every lifecycle hook receives ``trainer``, the running :class:`metagan.train.Trainer`
  (``trainer.cfg``, ``trainer.session``, ``trainer.params``, ``trainer.step``, ``trainer.out``,
  ``trainer.is_main``, ``trainer.log(line)``, ``trainer.request_stop(reason)``). Under torchrun
  they are called on every rank; write files only where ``trainer.is_main``. metagan's own
  progress bar, ``metrics.jsonl``, TensorBoard events, sample grids and memorisation score are
  plugins on these hooks (``metagan/loggers/``), listed by ``metagan plugins`` and disabled
  like any other (``--disable-plugin tensorboard``).

An exception raised inside a hook is reported as a :class:`metagan.errors.PluginError` that
names the plugin.
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


# -- lifecycle hooks (called by metagan.train.Trainer.run) ----------------------------------------


@hookspec
def metagan_run_start(trainer):
    """A run starts: the output folder exists, ``config.toml`` is written, nothing is trained yet.

    :param trainer: the :class:`metagan.train.Trainer`; ``trainer.step`` is 0, or the step a
        resumed run continues from.
    :return: ignored.

    Added in 0.2.
    """


@hookspec
def metagan_meta_step_end(trainer, result, row):
    """A meta-step finished (its update applied, or skipped as non-finite).

    :param trainer: the trainer; ``trainer.step`` is the step just done (1-based).
    :param result: the algorithm's :class:`metagan.algorithm.MetaResult` (``stats``,
        ``dropped``, ``grads``; the tensors may be a CUDA graph's buffers: copy to keep).
    :param row: this step's numbers: ``step``, the loss statistics, ``dropped_tasks``,
        ``skipped`` (bool), ``tasks_per_s``. Read it; do not change it.
    :return: ignored. Call ``trainer.request_stop(reason)`` to end the run after this step
        (it is saved as the last step).

    Added in 0.2.
    """


@hookspec
def metagan_collect_metrics(trainer, result, batch, noise):
    """Extra numbers for this log step's row (at every ``run.log_every`` step and the last).

    :param trainer: the trainer.
    :param result: the step's :class:`metagan.algorithm.MetaResult` (``theta_g`` (T, P_G): the
        adapted generators, where the algorithm keeps them).
    :param batch: the meta-batch (:class:`metagan.data.tasks.TaskBatch`).
    :param noise: the step's :class:`metagan.inner.Noise`.
    :return: a dict of JSON numbers merged into the row, or None.

    Added in 0.2.
    """


@hookspec
def metagan_log_metrics(trainer, row):
    """A log step's row, with every collected number: what ``metrics.jsonl`` gets.

    :param trainer: the trainer.
    :param row: ``step``, the loss statistics, ``dropped_tasks``, ``skipped``,
        ``tasks_per_s`` and what :func:`metagan_collect_metrics` added (``memorisation``).
    :return: ignored.

    Added in 0.2.
    """


@hookspec
def metagan_checkpoint_saved(trainer, path):
    """A checkpoint was written (atomically; it holds ``trainer.step``), on the main rank.

    :param trainer: the trainer.
    :param path: the checkpoint file (``run.out/checkpoint.pt``).
    :return: ignored.

    Added in 0.2.
    """


@hookspec(firstresult=True)
def metagan_make_sample_grid(trainer):
    """Make the sample grid of ``trainer.step`` (at every ``run.sample_every`` step and at the
    end of a run). The first plugin that returns a path wins (the built-in ``grids``).

    :param trainer: the trainer.
    :return: the path of the image written, or None.

    Added in 0.2.
    """


@hookspec
def metagan_sample_grid(trainer, path):
    """A sample grid was written.

    :param trainer: the trainer.
    :param path: the PNG (one row per class: its shots, then samples).
    :return: ignored.

    Added in 0.2.
    """


@hookspec
def metagan_run_end(trainer, result, error):
    """The run ends: finished, stopped, or failed.

    :param trainer: the trainer.
    :param result: the :class:`metagan.train.TrainResult`, or None when the run failed.
    :param error: the exception that ends the run, or None. With ``trainer.discard`` True the
        run failed before its first checkpoint in a folder it created, and what it wrote there
        is removed: remove your files too.
    :return: ignored.

    Added in 0.2.
    """

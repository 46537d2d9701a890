"""metagan's own run loggers: plugins on the lifecycle hooks of :mod:`metagan.hookspecs`.

Each module here is one plugin, loaded by :func:`metagan.plugins.load` under its short name
(:data:`metagan.plugins.DEFAULT_PLUGINS`) exactly as a third-party plugin is, listed by
``metagan plugins`` and turned off with ``--disable-plugin NAME``:

* ``progress``: the tqdm progress bar (``run.progress``);
* ``metrics``: ``run.out/metrics.jsonl``, one JSON row per log step (kept exact on resume);
* ``memorisation``: the ``memorisation`` number of each logged row;
* ``tensorboard``: the rows and sample grids as TensorBoard events (``run.tensorboard``);
* ``grids``: ``run.out/samples/step_*.png``, at ``run.sample_every`` and at the end of a run.

The trainer (:mod:`metagan.train`) knows none of them; a plugin of your own is written the same
way (docs/plugins.md, "Lifecycle hooks").
"""

"""The ``grids`` plugin: ``run.out/samples/step_NNNNNN.png`` (main rank).

Adapts to fixed meta-test classes (meta-train ones when every class trains) with the run's
seed; one row per class: its shots, then ``run.sample_num`` samples.
"""

from __future__ import annotations

import torch

from metagan.adaptation import adapt_and_sample
from metagan.data.grid import save_grid
from metagan.plugins import hookimpl


@hookimpl
def metagan_make_sample_grid(trainer):
    if not trainer.is_main:
        return None
    cfg, s = trainer.cfg, trainer.session
    which = "test" if s.split[1] else "train"
    test = s.sampler(which, queries=0)
    classes = s.split[1 if s.split[1] else 0][: cfg.run.sample_classes]
    batch = test.for_classes(classes, seed=cfg.run.seed).to(s.device)
    rows = adapt_and_sample(s, trainer.params, batch.support, cfg.run.sample_num, seed=cfg.run.seed)
    path = trainer.out / "samples" / f"step_{trainer.step:06d}.png"
    save_grid(
        [torch.cat([shots, gen]) for shots, gen in zip(batch.support.cpu(), rows)],
        path,
        invert=cfg.data.invert,
        split=batch.support.shape[1],  # a line between each row's shots and its samples
        labels=[s.dataset.classes[i].name for i in classes],
    )
    return path

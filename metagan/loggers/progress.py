"""The ``progress`` plugin: a tqdm bar over the meta-steps (``run.progress``, main rank only)."""

from __future__ import annotations

from tqdm import tqdm

from metagan.plugins import hookimpl

_bars: dict[int, tqdm] = {}  # id(trainer) -> its bar, while it runs
_SHOWN = ("loss_d", "loss_g", "inner_loss_d", "tasks_per_s")


@hookimpl
def metagan_run_start(trainer):
    cfg = trainer.cfg
    if not trainer.session.algorithm.trains:
        return
    _bars[id(trainer)] = tqdm(
        total=cfg.meta.iterations,
        initial=trainer.step,
        disable=not (cfg.run.progress and trainer.is_main),
        unit="it",
        dynamic_ncols=True,
    )


@hookimpl
def metagan_meta_step_end(trainer, row):
    bar = _bars.get(id(trainer))
    if bar is not None:
        bar.update(1)
        bar.set_postfix({k: v for k, v in row.items() if k in _SHOWN})


@hookimpl
def metagan_run_end(trainer):
    bar = _bars.pop(id(trainer), None)
    if bar is not None:
        bar.close()

"""A logger on every lifecycle hook, as docs/plugins.md shows it (that example, verbatim)."""

import json

from metagan.plugins import hookimpl


def _write(trainer, hook, **fields):
    if trainer.is_main:  # under torchrun: one file, written by rank 0
        with open(trainer.out / "hooklogger.jsonl", "a") as f:
            f.write(json.dumps({"hook": hook, "step": trainer.step, **fields}) + "\n")


@hookimpl
def metagan_run_start(trainer):
    _write(trainer, "run_start", iterations=trainer.cfg.meta.iterations)
    trainer.log(f"hooklogger: writing {trainer.out / 'hooklogger.jsonl'}")


@hookimpl
def metagan_meta_step_end(trainer, row):
    _write(trainer, "meta_step_end", skipped=row["skipped"])
    if row.get("loss_d", 0.0) > 1e6:  # early stopping: end the run, keeping this step
        trainer.request_stop("loss_d exploded")


@hookimpl
def metagan_collect_metrics(trainer, result):
    _write(trainer, "collect_metrics")
    return {"hooklogger_tasks": int(result.finite.numel())}  # merged into the logged row


@hookimpl
def metagan_log_metrics(trainer, row):
    _write(trainer, "log_metrics", row=row)


@hookimpl
def metagan_checkpoint_saved(trainer, path):
    _write(trainer, "checkpoint_saved", path=str(path))


@hookimpl
def metagan_make_sample_grid(trainer):
    _write(trainer, "make_sample_grid")
    return None  # leave the grid to the built-in `grids` plugin


@hookimpl
def metagan_sample_grid(trainer, path):
    _write(trainer, "sample_grid", path=str(path))


@hookimpl
def metagan_run_end(trainer, result, error):
    _write(trainer, "run_end", error=None if error is None else str(error))
    if trainer.discard:  # the run failed before its first checkpoint: leave nothing behind
        (trainer.out / "hooklogger.jsonl").unlink(missing_ok=True)

"""The ``metrics`` plugin: ``run.out/metrics.jsonl``, one JSON row per log step (main rank).

On resume the rows of steps after the checkpoint are dropped first (they are redone), so each
step appears exactly once and the file reads as the uninterrupted run's.
"""

from __future__ import annotations

import json
from pathlib import Path

from metagan.io import atomic_write, named_errors
from metagan.plugins import hookimpl

NAME = "metrics.jsonl"
_files: dict[int, object] = {}  # id(trainer) -> its open file, while it runs


@hookimpl
def metagan_run_start(trainer):
    if not (trainer.is_main and trainer.session.algorithm.trains):
        return
    path = trainer.out / NAME
    mode = "a" if trainer.step > 0 and path.exists() else "w"
    if mode == "a":  # lines of steps after the checkpoint are redone: drop them
        truncate_metrics(path, trainer.step)
    _files[id(trainer)] = open(path, mode)


@hookimpl
def metagan_log_metrics(trainer, row):
    f = _files.get(id(trainer))
    if f is not None:
        with named_errors(f.name):  # a full disk names the file
            f.write(json.dumps(row) + "\n")
            f.flush()


@hookimpl
def metagan_run_end(trainer):
    f = _files.pop(id(trainer), None)
    if f is not None:
        f.close()
    if trainer.discard:
        (trainer.out / NAME).unlink(missing_ok=True)


def truncate_metrics(path: Path, step: int) -> None:
    """Keep only the metrics lines of steps <= ``step`` (the checkpoint being resumed).

    Lines are written after a step is applied but the checkpoint may be older; the steps after
    it are redone on resume and write their lines again, so each step appears exactly once. A
    torn last line (a crash mid-write) is dropped too.
    """
    if not path.exists():
        return
    lines = path.read_text().splitlines()
    keep = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            break
        if not isinstance(record, dict) or int(record.get("step", 0)) > step:
            break
        keep.append(line)
    if len(keep) < len(lines):
        with atomic_write(path, "w") as f:
            f.write("".join(line + "\n" for line in keep))

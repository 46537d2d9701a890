"""The ``tensorboard`` plugin: a training run as TensorBoard events (``run.tensorboard = true``).

Needs the ``tensorboard`` package (``pip install 'metagan[tensorboard]'``). At every log step
the scalars of ``metrics.jsonl`` (the losses, ``tasks_per_s``, ``dropped_tasks``,
``memorisation``) go to ``run.out/tensorboard/``, and every sample grid as the image
``samples``; ``tensorboard --logdir runs`` shows them beside other runs. Without the package
the run goes on without event files, and its log header says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from metagan.plugins import hookimpl

MISSING = (
    "tensorboard: the tensorboard package is not installed, so no event files are written "
    "(pip install 'metagan[tensorboard]')"
)


class TensorBoard:
    """Writes a run's scalars and sample grids to ``out/tensorboard`` (or nothing)."""

    def __init__(self, out: str | Path, *, start_step: int = 0):
        self.logdir = Path(out) / "tensorboard"
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's wrapper needs the tensorboard package
            self.writer = None
            return
        # resumed: events of steps after the checkpoint are redone, so TensorBoard drops them
        purge = start_step + 1 if start_step else None
        self.writer = SummaryWriter(str(self.logdir), purge_step=purge)

    @property
    def header(self) -> str:
        return MISSING if self.writer is None else f"tensorboard: {self.logdir}"

    def scalars(self, row: dict) -> None:
        """One ``metrics.jsonl`` row: every number but ``step`` (and booleans) as a scalar."""
        if self.writer is None:
            return
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, row["step"])
        self.writer.flush()

    def grid(self, path: Path | None, step: int) -> None:
        """A sample grid PNG as the image ``samples`` at ``step``."""
        if self.writer is None or path is None:
            return
        with Image.open(path) as img:
            pixels = np.asarray(img.convert("L"))
        self.writer.add_image("samples", pixels[None], step)  # (1, H, W) uint8
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


# -- the plugin ----------------------------------------------------------------------------------
_boards: dict[int, TensorBoard] = {}  # id(trainer) -> its writer, while it runs


@hookimpl
def metagan_run_start(trainer):
    if trainer.cfg.run.tensorboard and trainer.is_main:
        tb = _boards[id(trainer)] = TensorBoard(trainer.out, start_step=trainer.step)
        trainer.log(tb.header)


@hookimpl
def metagan_log_metrics(trainer, row):
    if id(trainer) in _boards:
        _boards[id(trainer)].scalars(row)


@hookimpl
def metagan_sample_grid(trainer, path):
    if id(trainer) in _boards:
        _boards[id(trainer)].grid(path, trainer.step)


@hookimpl
def metagan_run_end(trainer):
    tb = _boards.pop(id(trainer), None)
    if tb is not None:
        tb.close()

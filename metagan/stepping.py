"""How a run computes one meta-step's meta-gradients, chosen once per run (:func:`choose`).

* :class:`Plain`: ``algorithm.step`` in this process (one CPU or GPU);
* :class:`Graphed`: the same, replayed from a CUDA graph (``run.cuda_graph``; metagan/graphs.py);
* :class:`Sharded`: this rank's share of the tasks under torchrun, meta-gradients all-reduced
  (metagan/distributed.py).

Each is called as ``stepper(batch, noise, step=k)`` and returns the
:class:`~metagan.algorithm.MetaResult` of meta-step ``k``; the trainer applies it.
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor

from metagan import distributed
from metagan.algorithm import MetaResult
from metagan.config import Config
from metagan.errors import ConfigError
from metagan.session import Session


class Plain:
    """``algorithm.step`` on the whole meta-batch, in this process."""

    def __init__(self, session: Session, params: dict[str, Tensor]):
        self.s, self.params = session, params

    def __call__(self, batch, noise, *, step: int) -> MetaResult:
        s = self.s  # looked up per call: a test may replace s.algorithm.step
        return s.algorithm.step(self.params, batch, noise, s.engine)


class Graphed(Plain):
    """The meta-gradients replayed from a CUDA graph, captured on the first meta-step (and
    again whenever the meta-batch's shapes change)."""

    def __init__(self, session: Session, params: dict[str, Tensor]):
        super().__init__(session, params)
        self._graph = None  # metagan.graphs.GraphedMetaStep

    def __call__(self, batch, noise, *, step: int) -> MetaResult:
        if self._graph is None or not self._graph.shapes_match(batch, noise):
            from metagan.graphs import GraphedMetaStep  # CUDA only

            self._graph = GraphedMetaStep(
                self.s.algorithm, self.s.engine, self.params, batch, noise
            )
        return self._graph.step(batch, noise)


class Sharded(Plain):
    """This rank's shard of the tasks, the meta-gradients all-reduced over the ranks."""

    def __init__(
        self, session: Session, params: dict[str, Tensor], ctx: distributed.Context, out: Path
    ):
        super().__init__(session, params)
        self.ctx, self.out = ctx, out

    def __call__(self, batch, noise, *, step: int) -> MetaResult:
        s = self.s
        return distributed.step(
            self.ctx, s.algorithm, self.params, batch, noise, s.engine, step=step, out=self.out
        )


def choose(
    cfg: Config, session: Session, params: dict[str, Tensor], ctx: distributed.Context
) -> Plain:
    """The stepping strategy of a run with ``cfg`` in the distributed context ``ctx``."""
    if ctx.enabled:
        if cfg.run.cuda_graph:
            raise ConfigError(
                "run.cuda_graph is for one process; distributed runs use the eager batched engine "
                "(set run.cuda_graph = false)"
            )
        return Sharded(session, params, ctx, Path(cfg.run.out))
    if cfg.run.cuda_graph:
        return Graphed(session, params)
    return Plain(session, params)

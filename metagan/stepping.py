"""How a run computes one meta-step's meta-gradients, chosen once per run (:func:`choose`).

* :class:`Plain`: ``algorithm.step`` in this process (one CPU or GPU);
* :class:`Graphed`: the same, replayed from a CUDA graph (``run.cuda_graph``; metagan/graphs.py);
* :class:`Sharded`: this rank's share of the tasks under torchrun, meta-gradients all-reduced
  (metagan/distributed.py).

Each is called as ``stepper(batch, noise, step=k)`` and returns the
:class:`~metagan.algorithm.MetaResult` of meta-step ``k``; the trainer applies it.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from metagan import distributed
from metagan.algorithm import Algorithm, MetaResult, select_tasks
from metagan.config import Config
from metagan.errors import ConfigError
from metagan.inner import Engine, Noise
from metagan.session import Session

FAULT_ENV = "METAGAN_FAULT_AT_STEP"  # test-only: the last rank exits at this meta-step, once


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
        return sharded_step(
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


# -- torchrun: this rank's shard, all-reduced ---------------------------------------------------------------------------
def shard(tasks: int, rank: int, world_size: int) -> Tensor:
    """Rank ``rank``'s tasks of a meta-batch of ``tasks``: ``rank::world_size`` as (n,) long."""
    if tasks < world_size:
        raise ConfigError(
            f"a meta-batch of {tasks} tasks cannot give each of {world_size} processes a task"
        )
    return torch.arange(rank, tasks, world_size)


def sharded_step(
    ctx: distributed.Context,
    algorithm: Algorithm,
    params: dict[str, Tensor],
    batch,
    noise: Noise,
    engine: Engine,
    *,
    step: int,
    out: Path,
) -> MetaResult:
    """The meta-batch's meta-gradients, computed on this rank's shard and all-reduced.

    ``batch`` (T tasks) and ``noise`` are the whole meta-batch, identical on every rank. The
    result is the same on every rank: ``grads`` is the mean over every rank's kept tasks (None
    when a rank's recomputation failed or no task is left, so all ranks skip together),
    ``stats`` the task-weighted means, ``dropped`` the total number of dropped tasks;
    ``finite`` is this rank's, as :meth:`Algorithm.step` returned it.

    The weighting is exact for algorithms whose meta-gradient and stats are means over tasks
    (maml, fomaml, reptile, metasgd) and for ``finetune``, whose pooled GAN step averages its
    loss over images, an equal number per task.
    """
    T = batch.support.shape[0]
    idx = shard(T, ctx.rank, ctx.world_size).to(batch.support.device)  # (n,)
    n = idx.numel()
    res = algorithm.step(params, select_tasks(batch, idx), noise.select(idx), engine)
    _maybe_fault(ctx, step, out)
    kept = n - res.dropped  # tasks the grads and stats describe
    has_grads = res.grads is not None and kept > 0
    failed = res.grads is None and kept > 0  # Algorithm.step's recomputation went non-finite
    keys = list(params)  # the same order on every rank
    # (P_total,): Σ over ranks of kept × this rank's mean meta-gradient
    flat = torch.cat(
        [
            (
                res.grads[k].detach().to(params[k].dtype) * kept
                if has_grads
                else torch.zeros_like(params[k])
            ).reshape(-1)
            for k in keys
        ]
    )
    names = list(res.stats)
    stats = torch.tensor([res.stats[k] for k in names], dtype=torch.float64)
    # counts, then stats weighted by kept tasks, then by all n tasks (used when none is kept)
    meta = torch.cat([
        torch.tensor([kept if has_grads else 0, float(failed), res.dropped, kept, n], dtype=torch.float64),
        stats * kept if kept > 0 else torch.zeros_like(stats),
        stats * n,
    ]).to(flat.device)  # fmt: skip
    dist.all_reduce(flat)
    dist.all_reduce(meta)
    meta = meta.cpu()
    valid, failures, dropped, kept_all, n_all = (float(v) for v in meta[:5])
    s_kept, s_all = meta[5 : 5 + len(names)], meta[5 + len(names) :]
    grads = None
    if valid > 0 and failures == 0:
        grads, offset = {}, 0
        for k in keys:
            size = params[k].numel()
            grads[k] = (flat[offset : offset + size] / valid).view_as(params[k])
            offset += size
    mean = s_kept / kept_all if kept_all > 0 else s_all / n_all
    return MetaResult(grads, res.finite, dict(zip(names, mean.tolist())), int(dropped))


def _maybe_fault(ctx: distributed.Context, step: int, out: Path) -> None:
    """Test-only fault injection: with ``METAGAN_FAULT_AT_STEP=k`` the last rank dies (exit 1,
    no cleanup) in the middle of meta-step k, between its own computation and the all-reduce,
    once: a marker file in ``out`` keeps the restarted run from dying again."""
    at = os.environ.get(FAULT_ENV)
    if not at or int(at) != step or ctx.rank != ctx.world_size - 1:
        return
    marker = Path(out) / f".fault-at-step-{step}"
    if marker.exists():
        return
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    os._exit(1)

"""One meta-iteration's meta-gradients captured in a CUDA graph and replayed.

Why: at the sizes few-shot GANs use (28 px, K = 5, a few hundred thousand parameters) a batched
meta-iteration on a GPU is bound by kernel launches and Python, not by arithmetic: each inner
step of each network is dozens of small kernels (vmap's reshapes, grouped convolutions, the
update), and the GPU idles between them. Captured once, the same kernels replay with one launch
and no Python in between (``torch.cuda.CUDAGraph``; "whole-network capture" in the PyTorch CUDA
semantics notes).

What is captured: ``algorithm.meta_gradients(params, batch, noise, engine)``: every inner D/G
step of every task, the outer losses and, for second-order algorithms, the backward to the
meta-parameters. Not captured: the meta-optimizer step and the non-finite-task fallback of
:meth:`metagan.algorithm.Algorithm.step` (dropping tasks changes shapes). Shapes are static:
a graph serves one (T, K, Q, S, B) and is rebuilt by the caller for another.

Inputs are copied into the graph's own buffers before each replay. The meta-parameters are read
where they live, so an optimizer that updates them in place (every ``torch.optim`` one) is seen
by the next replay. The returned gradients, losses and adapted generators are the graph's
output buffers: the next replay overwrites them.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from metagan.algorithm import Algorithm, MetaResult
from metagan.data.tasks import TaskBatch
from metagan.errors import ConfigError
from metagan.inner import Engine, Noise


class GraphedMetaStep:
    """``step(batch, noise) -> MetaResult`` like ``algorithm.step``, replayed from a CUDA graph.

    Built from one example meta-batch (its shapes fix the graph's); ``warmup`` eager runs on a
    side stream come first, as CUDA graph capture requires (cuBLAS/cuDNN workspaces, autograd's
    stream bookkeeping).
    """

    def __init__(
        self,
        algorithm: Algorithm,
        engine: Engine,
        params: dict[str, Tensor],
        batch: TaskBatch,
        noise: Noise,
        *,
        warmup: int = 2,
    ):
        check_capturable(engine, params, batch)
        self.algorithm, self.engine, self.params = algorithm, engine, params
        self.batch = TaskBatch(  # the graph's input buffers
            support=batch.support.clone(), query=batch.query.clone(), classes=batch.classes.clone()
        )
        self.noise = Noise(inner=noise.inner.clone(), outer=noise.outer.clone())
        self.inputs = _inputs(self.batch, self.noise)
        side = torch.cuda.Stream(device=batch.support.device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                algorithm.meta_gradients(params, self.batch, self.noise, engine)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(self.graph):
                self.out = algorithm.meta_gradients(params, self.batch, self.noise, engine)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(
                f"algorithm {algorithm.name!r} could not be captured in a CUDA graph ({first}); "
                "run it without run.cuda_graph"
            ) from e

    def shapes_match(self, batch: TaskBatch, noise: Noise) -> bool:
        """Whether this graph can serve the meta-batch (same shapes, dtypes and device)."""
        return all(
            a.shape == b.shape and a.dtype == b.dtype and a.device == b.device
            for a, b in zip(self.inputs, _inputs(batch, noise))
        )

    def step(self, batch: TaskBatch, noise: Noise) -> MetaResult:
        """Meta-gradients for the meta-batch: replayed, or eager when a task went non-finite."""
        if not self.shapes_match(batch, noise):
            raise ConfigError(
                "a CUDA graph serves one meta-batch shape; got "
                f"support {tuple(batch.support.shape)}, noise {tuple(noise.inner.shape)} for a "
                f"graph of support {tuple(self.batch.support.shape)}, "
                f"noise {tuple(self.noise.inner.shape)}"
            )
        for buffer, x in zip(self.inputs, _inputs(batch, noise)):
            buffer.copy_(x)
        self.graph.replay()
        out = self.out
        if not bool(out.finite.all()):  # the eager path drops the non-finite tasks
            return self.algorithm.step(self.params, batch, noise, self.engine)
        stats = {k: float(v) for k, v in out.stats.items()}
        return dataclasses.replace(out, stats=stats)


def _inputs(batch: TaskBatch, noise: Noise) -> tuple[Tensor, ...]:
    """Every tensor a meta-iteration reads besides the meta-parameters, in a fixed order."""
    return batch.support, batch.query, batch.classes, noise.inner, noise.outer


def check_capturable(engine: Engine, params: dict[str, Tensor], batch: TaskBatch) -> None:
    """One-line errors for what a CUDA graph cannot serve."""
    if not torch.cuda.is_available():
        raise ConfigError("CUDA graphs need a CUDA GPU; none is available (use run.device = cpu)")
    devices = {t.device for t in (*params.values(), batch.support, batch.query)}
    if len(devices) != 1 or next(iter(devices)).type != "cuda":
        found = ", ".join(sorted(str(d) for d in devices))
        raise ConfigError(
            f"CUDA graphs need the meta-parameters and the meta-batch on one CUDA device; found {found}"
        )
    if engine.name != "batched":
        raise ConfigError(
            f"CUDA graphs replay the batched engine; got engine {engine.name!r} (run.engine = batched)"
        )

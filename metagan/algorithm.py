"""The meta-algorithm contract, and the pieces the built-in algorithms share.

An algorithm turns one meta-batch into meta-gradients for the meta-parameters (the flat
initialisations ``"g"`` and ``"d"``, plus whatever else it learns, e.g. Meta-SGD's learning
rates). The meta-optimizer (Adam) then applies them. Algorithms never loop over tasks
themselves: they call an engine (:mod:`metagan.inner`), so the same algorithm code runs batched
or as the sequential reference, and ``adapt``/``sample`` are shared by all of them.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from metagan.errors import ConfigError, MetaganError, PluginError, cause, check_range
from metagan.inner import Adapted, Engine, InnerConfig, Noise

META_GRADIENTS = ("separate", "summed")
ITERATIONS_MAX = 10**9  # the largest meta.iterations (--iterations)


@dataclass(frozen=True, kw_only=True)
class MetaConfig:
    """The outer loop."""

    algorithm: str = "fomaml"
    tasks: int = 8  # T, tasks per meta-batch
    iterations: int = 1000
    lr: float = 1e-3  # meta-optimizer (Adam) learning rate
    # β1 = 0.5 is the usual GAN choice (Radford et al. 2016): momentum 0.9 oscillates with two players.
    betas: tuple[float, float] = (0.5, 0.999)
    first_order: bool = False  # metasgd: do not differentiate through the inner gradients
    max_skips: int = 10  # consecutive non-finite meta-steps tolerated before the run stops
    # Which meta-gradient second-order algorithms (maml, metasgd) compute. "separate": each
    # player meta-trained on its own query loss (G on L_G, D on L_D), D's inner steps on G(z)
    # (the seeds'). "summed": what learn2learn/higher users compute, one backward of L_D + L_G
    # into both initialisations with D's inner steps on G(z).detach() (docs/architecture.md).
    meta_gradient: str = "separate"
    # Second order (maml, metasgd): tasks adapted and back-propagated together; 0 = the whole
    # meta-batch. Peak memory is about one chunk's graph (a per-task loop such as
    # learn2learn's keeps one task's), time grows as chunks get smaller. Same meta-gradient.
    task_chunk: int = 0

    def __post_init__(self):
        for key in ("tasks", "iterations", "max_skips"):
            if getattr(self, key) <= 0:
                raise ConfigError(
                    f"meta.{key} must be a positive integer, got {getattr(self, key)}"
                )
        if not self.lr > 0:
            raise ConfigError(f"meta.lr must be a positive learning rate, got {self.lr}")
        check_range("meta.tasks", self.tasks, 1, 100_000, what="an integer")
        check_range("meta.iterations", self.iterations, 1, ITERATIONS_MAX, what="an integer")
        check_range("meta.max_skips", self.max_skips, 1, 10**6, what="an integer")
        check_range("meta.lr", self.lr, 0, 1, low_open=True, what="a learning rate")
        check_range("meta.task_chunk", self.task_chunk, 0, 100_000, what="an integer")
        if self.meta_gradient not in META_GRADIENTS:
            raise ConfigError(
                f"meta.meta_gradient must be one of {', '.join(META_GRADIENTS)}, "
                f"got {self.meta_gradient!r}"
            )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"meta.betas must be two numbers in [0, 1), got {list(self.betas)}")


@dataclass
class MetaResult:
    """One meta-batch's outcome."""

    grads: dict[str, Tensor] | None  # keyed like the meta-parameters; None = skip this step
    finite: Tensor  # (T,) bool: which tasks stayed finite
    stats: dict[str, float] = field(default_factory=dict)
    dropped: int = 0  # tasks left out of this meta-update because they went non-finite
    # (T, P_G) the tasks' adapted generators, detached, from algorithms that adapt: lets the
    # trainer log memorisation without a second adaptation. None: not available.
    theta_g: Tensor | None = None


class Algorithm:
    """Base class of every meta-algorithm (subclass it in a plugin).

    Subclasses implement :meth:`meta_gradients`; they may override :meth:`extra_parameters`,
    :meth:`inner_lrs` (Meta-SGD; per-layer rates) and :meth:`adapt`, and set ``needs_query`` /
    ``trains``. :meth:`step` (dropping non-finite tasks) is shared and not meant to be
    overridden.
    """

    name = "algorithm"
    plugin: str | None = None  # the plugin that registered it (set by the Session)
    needs_query = True  # uses the query images for the outer loss
    trains = True  # False: there is nothing to meta-train (the `scratch` baseline)
    # The values of ``meta.meta_gradient`` this algorithm computes (MetaConfig, META_GRADIENTS).
    meta_gradient_kinds: tuple[str, ...] = ("separate",)
    chunks_tasks = False  # honours meta.task_chunk (the second-order algorithms)

    def __init__(self, *, meta: MetaConfig, inner: InnerConfig):
        if meta.meta_gradient not in self.meta_gradient_kinds:
            raise ConfigError(
                f"algorithm {self.name!r} has no {meta.meta_gradient!r} meta-gradient; "
                f"meta.meta_gradient may be {', '.join(map(repr, self.meta_gradient_kinds))} "
                '("summed" is offered by the second-order algorithms maml and metasgd)'
            )
        if meta.task_chunk and not self.chunks_tasks:
            raise ConfigError(
                f"algorithm {self.name!r} does not split the meta-batch; meta.task_chunk is for "
                "the second-order algorithms maml and metasgd (set it to 0)"
            )
        self.meta = meta
        self.inner = inner

    # -- what a subclass may override -------------------------------------------------------
    def extra_parameters(self, theta_g: Tensor, theta_d: Tensor) -> dict[str, Tensor]:
        """Meta-parameters besides the initialisations ``g`` and ``d``."""
        return {}

    def inner_lrs(
        self, params: dict[str, Tensor], engine: Engine | None = None
    ) -> tuple[float | Tensor, float | Tensor]:
        """Inner learning rates (α for G, β for D): floats or per-parameter ``(P_G,)``,
        ``(P_D,)`` tensors (a 0 freezes that parameter in the inner loop).

        An override that takes ``engine`` gets it from :meth:`adapt` and can read the
        parameter layout: ``engine.G.spec.segments()`` is ``(name, offset, numel)`` per
        parameter of the generator's flat buffer (``engine.D.spec`` the discriminator's).
        """
        return self.inner.lr_g, self.inner.lr_d

    def lrs_for(self, params: dict[str, Tensor], engine: Engine):
        """:meth:`inner_lrs`, given the engine when the override accepts it (opt-in)."""
        if "engine" in inspect.signature(self.inner_lrs).parameters:
            return self.inner_lrs(params, engine=engine)
        return self.inner_lrs(params)

    def meta_gradients(
        self, params: dict[str, Tensor], batch, noise: Noise, engine: Engine
    ) -> MetaResult:
        raise NotImplementedError

    # -- shared ----------------------------------------------------------------------------
    def step(self, params: dict[str, Tensor], batch, noise: Noise, engine: Engine) -> MetaResult:
        """Meta-gradients for the meta-batch, leaving out the tasks that went non-finite.

        A task whose inner or outer loss (or adapted parameters) becomes non-finite is dropped
        and the meta-gradient is recomputed over the remaining tasks; with none left, the
        result has ``grads=None`` and the trainer skips the step.
        """
        res = self._meta_gradients(params, batch, noise, engine)
        if bool(res.finite.all()):
            return res
        keep = res.finite.nonzero().squeeze(1)
        dropped = res.finite.numel() - keep.numel()
        if keep.numel() == 0:
            return MetaResult(None, res.finite, res.stats, dropped)
        sub = self._meta_gradients(params, select_tasks(batch, keep), noise.select(keep), engine)
        sub.dropped = dropped + int((~sub.finite).sum())
        if not bool(sub.finite.all()):
            sub.grads = None
        return sub

    def _meta_gradients(self, params, batch, noise, engine) -> MetaResult:
        """:meth:`meta_gradients`; an exception raised inside it (not a user error, not running
        out of memory) becomes a one-line PluginError naming the algorithm and its plugin."""
        try:
            return self.meta_gradients(params, batch, noise, engine)
        except (MetaganError, MemoryError, torch.OutOfMemoryError):
            raise
        except Exception as exc:  # noqa: BLE001 - the plugin's fault, named
            if "out of memory" in str(exc) or "can't allocate memory" in str(exc):
                raise
            who = f" (plugin {self.plugin!r})" if self.plugin else ""
            raise PluginError(
                f"algorithm {self.name!r}{who} raised in meta_gradients: {cause(exc)}"
            ) from exc

    def adapt(
        self,
        params: dict[str, Tensor],
        engine: Engine,
        shots: Tensor,
        noise: Tensor,
        *,
        steps: int | None = None,
    ) -> Adapted:
        """Adapt the initialisation to each task's shots: shots (T, K, C, H, W), noise (S, T, B, Z)."""
        T = shots.shape[0]
        lr_g, lr_d = self.lrs_for(params, engine)
        with torch.no_grad():
            return engine.adapt(
                rows(params["g"], T), rows(params["d"], T), shots, noise,
                lr_g=_detach(lr_g), lr_d=_detach(lr_d), steps=steps,
            )  # fmt: skip


def select_tasks(batch, idx: Tensor):
    """The meta-batch restricted to the tasks at ``idx``."""
    return dataclasses.replace(
        batch, support=batch.support[idx], query=batch.query[idx], classes=batch.classes[idx]
    )


def rows(theta: Tensor, tasks: int) -> Tensor:
    """The shared initialisation (P,) as T task rows (T, P), differentiable back to it."""
    return theta.unsqueeze(0).expand(tasks, -1).contiguous()


def _detach(lr):
    return lr.detach() if isinstance(lr, Tensor) else lr


def loss_stats(ad: Adapted, ld: Tensor | None = None, lg: Tensor | None = None) -> dict[str, float]:
    """The logged losses: mean inner D/G losses, and the outer ones when given."""
    stats = {"inner_loss_d": mean_task_loss(ad.loss_d), "inner_loss_g": mean_task_loss(ad.loss_g)}
    if ld is not None:
        stats = {"loss_d": mean_task_loss(ld), "loss_g": mean_task_loss(lg), **stats}
    return stats


def mean_task_loss(x: Tensor) -> float | Tensor:
    """The mean over tasks as a float; as a 0-dim tensor while a CUDA graph is being captured
    (no host sync is allowed there; :mod:`metagan.graphs` converts it after each replay)."""
    if not x.numel():
        return math.nan
    if capturing():
        return x.detach().mean()
    return float(x.detach().mean())


def capturing() -> bool:
    """Whether a CUDA graph is being captured on the current stream (no host syncs then)."""
    return torch.cuda.is_available() and torch.cuda.is_current_stream_capturing()


def differentiate_through_adaptation(
    params: dict[str, Tensor],
    batch,
    noise: Noise,
    engine: Engine,
    *,
    lr_g: float | Tensor,
    lr_d: float | Tensor,
    create_graph: bool,
    summed: bool = False,
    chunk: int = 0,
) -> MetaResult:
    """:func:`_through_adaptation` of the whole meta-batch, or (``chunk``, ``meta.task_chunk``)
    of ``chunk`` tasks at a time with the meta-gradients averaged: the same result, with the
    peak memory of one chunk's graph."""
    T = batch.support.shape[0]
    kw = dict(lr_g=lr_g, lr_d=lr_d, create_graph=create_graph, summed=summed)
    if not chunk or chunk >= T:
        return _through_adaptation(params, batch, noise, engine, **kw)
    parts = [
        (idx.numel(), _through_adaptation(params, select_tasks(batch, idx), noise.select(idx),
                                          engine, **kw))
        for idx in torch.arange(T, device=batch.support.device).split(chunk)
    ]  # fmt: skip
    finite = torch.cat([r.finite for _, r in parts])
    stats = {k: sum(n * r.stats[k] for n, r in parts) / T for k in parts[0][1].stats}
    theta_g = torch.cat([r.theta_g for _, r in parts])
    if any(r.grads is None for _, r in parts):
        return MetaResult(None, finite, stats, theta_g=theta_g)
    grads = {k: sum(n * r.grads[k] for n, r in parts) / T for k in parts[0][1].grads}
    return MetaResult(grads, finite, stats, theta_g=theta_g)


def _through_adaptation(params, batch, noise, engine, *, lr_g, lr_d, create_graph, summed):
    """MAML-style meta-gradients: adapt with the updates recorded, then backpropagate the
    query losses to the initialisation (and to tensor learning rates, for Meta-SGD).

    D's meta-parameters get the gradient of D's outer loss, G's those of G's outer loss: each
    player is meta-trained on its own objective, through both players' inner steps (two
    backward passes). ``summed`` (``meta.meta_gradient = "summed"``) computes the peers'
    meta-gradient instead: D's inner steps see ``G(z).detach()`` and ONE backward of
    ``mean(L_D) + mean(L_G)`` gives every meta-parameter its gradient.
    """
    T = batch.support.shape[0]
    g0, d0 = params["g"], params["d"]
    ad = engine.adapt(
        rows(g0, T), rows(d0, T), batch.support, noise.inner,
        lr_g=lr_g, lr_d=lr_d, track=True, create_graph=create_graph, detach_fakes=summed,
    )  # fmt: skip
    ld, lg = engine.outer_losses(ad.theta_g, ad.theta_d, batch.query, noise.outer, batch.support)
    finite = ad.finite & torch.isfinite(ld).detach() & torch.isfinite(lg).detach()
    stats = loss_stats(ad, ld, lg)
    # (Under CUDA-graph capture the check moves after the replay: metagan.graphs.)
    if not capturing() and not bool(finite.all()):
        return MetaResult(None, finite, stats, theta_g=ad.theta_g.detach())
    d_keys = ["d"] + (["lr_d"] if isinstance(lr_d, Tensor) and lr_d.requires_grad else [])
    g_keys = ["g"] + (["lr_g"] if isinstance(lr_g, Tensor) and lr_g.requires_grad else [])
    if summed:
        both = torch.autograd.grad(
            ld.mean() + lg.mean(), [params[k] for k in d_keys + g_keys], allow_unused=True
        )
        gd, gg = both[: len(d_keys)], both[len(d_keys) :]
    else:
        gd = torch.autograd.grad(
            ld.mean(), [params[k] for k in d_keys], retain_graph=True, allow_unused=True
        )
        gg = torch.autograd.grad(lg.mean(), [params[k] for k in g_keys], allow_unused=True)
    grads = {}
    for keys, gs in ((d_keys, gd), (g_keys, gg)):
        for k, g in zip(keys, gs):
            grads[k] = torch.zeros_like(params[k]) if g is None else g
    return MetaResult(grads, finite, stats, theta_g=ad.theta_g.detach())


def check_query(algorithm: Algorithm, queries: int) -> None:
    if algorithm.needs_query and queries < 1:
        raise ConfigError(
            f"algorithm {algorithm.name!r} needs query images for its outer loss; "
            f"set data.queries >= 1 (got {queries})"
        )

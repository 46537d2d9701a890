"""The inner loop: adapt D then G to each task with a few gradient steps.

Two engines with one interface:

* :class:`BatchedEngine` adapts all T tasks of a meta-batch at once. Per-task parameters are
  rows of one flat ``(T, P)`` buffer per network; losses and gradients come from
  ``torch.func`` (``vmap`` over tasks of ``grad`` of a per-task loss), and the update of every
  task and every parameter is one :func:`metagan.ops.inner_step` call per network per step.
  Its convolutions run through :mod:`metagan.ops.conv` (per-task convolution ops whose vmap
  rule picks the CPU layout per shape).
* :class:`metagan.sequential.SequentialEngine` is the reference (a loop over tasks, per-tensor
  autograd): tests check that both give the same adapted parameters and meta-gradients.

One inner step for a task with support images x and noise z (shared by the D and G step):
``θ_D ← θ_D − β ∇_θD L_D(D_θD(x), D_θD(G_θG(z)))``, then
``θ_G ← θ_G − α ∇_θG L_G(D_θD(G_θG(z)))`` with the just-updated θ_D.
For a conditional pair (``GanPair.conditional``) G and D also receive the task's support images
as their condition, ``G(z, x)`` and ``D(·, x)``, in every loss, the outer (query) ones included.

``track=True`` keeps the updates differentiable w.r.t. the initial parameters and the
learning rates (MAML, Meta-SGD); ``create_graph=True`` also differentiates through the inner
gradients (second order). With ``track=False`` nothing is recorded for autograd.
``detach_fakes=True`` gives the D step ``G(z).detach()``, as the usual GAN loop (and a
learn2learn/higher user) does: same values, but no derivative of D's step w.r.t. θ_G
(``meta.meta_gradient = "summed"``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.func import grad, vmap

from metagan import ops
from metagan.errors import ConfigError, check_range
from metagan.losses import GanLoss
from metagan.models import FunctionalNet, GanPair
from metagan.ops.conv import task_convolutions

INNER_METHODS = ("sgd", "momentum", "adam")


@dataclass(frozen=True, kw_only=True)
class InnerConfig:
    """How a task is adapted."""

    steps: int = 5
    lr_g: float = 0.05  # α; plain SGD steps on a meta-learned init tolerate large rates
    lr_d: float = 0.05  # β
    method: str = "sgd"  # "sgd" | "momentum" | "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    max_grad_norm: float = 0.0  # per-task gradient clipping; 0 = off
    fake_batch: int = 0  # fake samples per task and step; 0 = the number of shots K
    r1_gamma: float = 0.0  # R1 penalty γ/2·E‖∇ₓD(x)‖² on real images; 0 = off
    # MSGAN (Mao et al. 2019): λ / (mean|G(z1)−G(z2)| / mean|z1−z2| + ε) added to every L_G,
    # so samples stay apart instead of collapsing onto a copy of a shot; 0 = off.
    mode_seeking: float = 0.0
    # IMLE (Li & Malik 2019; few-shot generation: Aghabozorgi et al. 2023): λ · the mean over
    # the task's real images of the mean squared pixel distance to the NEAREST fake, added to
    # every L_G, so that some fake is pulled onto each shot (sharp strokes, not a GAN's blur
    # after a few steps; copies if it wins outright: watch memorisation); 0 = off.
    imle: float = 0.0
    # Second-order MAML/Meta-SGD: keep only each inner step's inputs and recompute the step
    # during the meta-backward, so memory no longer grows with activations × steps (costs
    # about one more forward of every step).
    recompute: bool = False

    def __post_init__(self):
        if self.steps < 0:
            raise ConfigError(f"inner.steps must be >= 0, got {self.steps}")
        for key in ("lr_g", "lr_d"):
            if not getattr(self, key) > 0:
                raise ConfigError(
                    f"inner.{key} must be a positive learning rate, got {getattr(self, key)}"
                )
        if self.method not in INNER_METHODS:
            raise ConfigError(
                f"inner.method must be one of {', '.join(INNER_METHODS)}, got {self.method!r}"
            )
        for key in ("weight_decay", "max_grad_norm", "fake_batch", "r1_gamma", "mode_seeking",
                    "imle"):  # fmt: skip
            if getattr(self, key) < 0:
                raise ConfigError(f"inner.{key} must be >= 0, got {getattr(self, key)}")
        check_range("inner.steps", self.steps, 0, 10_000, what="an integer")
        for key in ("lr_g", "lr_d"):
            check_range(f"inner.{key}", getattr(self, key), 0, 100, low_open=True, what="a rate")
        check_range("inner.momentum", self.momentum, 0, 0.999)
        check_range("inner.weight_decay", self.weight_decay, 0, 1)
        check_range("inner.fake_batch", self.fake_batch, 0, 100_000, what="an integer")
        for key in ("max_grad_norm", "r1_gamma", "mode_seeking", "imle"):
            check_range(f"inner.{key}", getattr(self, key), 0, 1e6)
        if self.mode_seeking > 0 and self.fake_batch == 1:
            raise ConfigError(
                "inner.mode_seeking compares pairs of fakes; set inner.fake_batch >= 2 or 0 (= K)"
            )


@dataclass
class Noise:
    """Latent codes for one meta-batch, drawn once so every engine sees the same ones."""

    inner: Tensor  # (S, T, B, Z): step s uses inner[s] for both its D and its G step
    outer: Tensor  # (T, B, Z): for the outer (query) losses and sample grids

    @staticmethod
    def draw(
        steps: int, tasks: int, batch: int, z_dim: int, *, generator: torch.Generator, device="cpu"
    ) -> Noise:
        z = torch.randn(steps + 1, tasks, batch, z_dim, generator=generator)
        z = z.to(device)
        return Noise(inner=z[:steps], outer=z[steps])

    def select(self, idx: Tensor) -> Noise:
        return Noise(inner=self.inner[:, idx], outer=self.outer[idx])


@dataclass
class Adapted:
    theta_g: Tensor  # (T, P_G)
    theta_d: Tensor  # (T, P_D)
    loss_d: Tensor  # (S, T) inner D losses, detached
    loss_g: Tensor  # (S, T) inner G losses, detached
    finite: Tensor = field(init=False)  # (T,) bool: every inner loss and parameter finite

    def __post_init__(self):
        ok = torch.isfinite(self.theta_g).all(1) & torch.isfinite(self.theta_d).all(1)
        if self.loss_d.numel():
            ok &= torch.isfinite(self.loss_d).all(0) & torch.isfinite(self.loss_g).all(0)
        self.finite = ok.detach()


class Engine:
    """What both engines share: the networks, the loss and the per-task objectives."""

    def __init__(self, pair: GanPair, loss: GanLoss, cfg: InnerConfig):
        self.G = FunctionalNet(pair.generator)
        self.D = FunctionalNet(pair.discriminator)
        self.conditional = pair.conditional
        self.loss = loss
        self.cfg = cfg

    def condition(self, shots: Tensor | None, where: str) -> tuple[Tensor, ...]:
        """What G and D get besides z / images: ``(shots,)`` for a conditional pair, else ``()``.

        ``shots`` is (T, K, C, H, W), the tasks' support images; a tuple so that ``vmap`` maps
        over it when present and sees no input at all for an unconditional pair.
        """
        if not self.conditional:
            return ()
        if shots is None:
            raise ConfigError(
                f"the architecture is conditional: engine.{where} needs the tasks' support "
                "images (T, K, C, H, W) as its condition"
            )
        return (shots,)

    # -- per-task objectives, written against "apply D to x" callables -------------------------
    def d_objective(
        self, d_apply: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor
    ) -> Tensor:
        """L_D for one task: real (K, C, H, W), fake (B, C, H, W) -> ()."""
        loss = self.loss.d_loss(d_apply(real), d_apply(fake))
        if self.cfg.r1_gamma > 0:
            g = grad(lambda x: d_apply(x).sum())(real)  # (K, C, H, W)
            loss = loss + 0.5 * self.cfg.r1_gamma * g.pow(2).flatten(1).sum(1).mean()
        return loss

    def g_objective(
        self, d_apply: Callable[[Tensor], Tensor], fake: Tensor, z: Tensor, real: Tensor
    ) -> Tensor:
        """L_G for one task: fake (B, C, H, W) = G(z (B, Z)), real (K, C, H, W) the task's real
        images (support in the inner steps, query in the outer losses) -> (), with the
        mode-seeking and IMLE terms."""
        loss = self.loss.g_loss(d_apply(fake))
        if self.cfg.mode_seeking > 0:
            loss = loss + self.cfg.mode_seeking * mode_seeking_penalty(fake, z)
        if self.cfg.imle > 0:
            loss = loss + self.cfg.imle * imle_penalty(fake, real)
        return loss

    def step_kwargs(self) -> dict:
        c = self.cfg
        return dict(
            method=c.method,
            momentum=c.momentum,
            weight_decay=c.weight_decay,
            max_grad_norm=c.max_grad_norm or None,
        )

    def fake_batch(self, shots: int) -> int:
        return self.cfg.fake_batch or shots


class BatchedEngine(Engine):
    """All tasks at once: vmap over the task dimension of flat ``(T, P)`` parameter buffers."""

    name = "batched"

    # One task each; ``cond`` is () or (shots (K, C, H, W),), see :meth:`Engine.condition`.
    def _gen(self, theta_g, z, cond):  # (P_G,), (B, Z) -> (B, C, H, W)
        return self.G(theta_g, z, *cond)

    def _d_loss(self, theta_d, theta_g, real, z, cond):  # (P_D,), (P_G,), (K,C,H,W), (B,Z)
        return self._d_loss_on(theta_d, real, self._gen(theta_g, z, cond), cond)

    def _g_loss(self, theta_g, theta_d, real, z, cond):
        return self._g_loss_on(self._gen(theta_g, z, cond), theta_d, real, z, cond)

    def _d_loss_on(self, theta_d, real, fake, cond):  # fakes given: (P_D,), (K,...), (B,...)
        loss = self.d_objective(lambda x: self.D(theta_d, x, *cond), real, fake)
        return loss, loss.detach()

    def _g_loss_on(self, fake, theta_d, real, z, cond):  # L_G as a function of the fakes
        loss = self.g_objective(lambda x: self.D(theta_d, x, *cond), fake, z, real)
        return loss, loss.detach()

    def adapt(
        self,
        theta_g: Tensor,  # (T, P_G)
        theta_d: Tensor,  # (T, P_D)
        support: Tensor,  # (T, K, C, H, W)
        noise: Tensor,  # (S, T, B, Z)
        *,
        lr_g: float | Tensor,
        lr_d: float | Tensor,
        track: bool = False,
        create_graph: bool = False,
        steps: int | None = None,
        detach_fakes: bool = False,
    ) -> Adapted:
        steps = noise.shape[0] if steps is None else steps
        if not track:
            theta_g, theta_d = theta_g.detach(), theta_d.detach()
        state_g, state_d = {}, {}
        losses_d, losses_g = [], []
        recompute = self.cfg.recompute and create_graph and torch.is_grad_enabled()
        with torch.set_grad_enabled(track and torch.is_grad_enabled()):
            for s in range(steps):
                if recompute:
                    out = _recomputed_step(self, theta_g, theta_d, state_g, state_d, support,
                                           noise[s], lr_g, lr_d, s + 1, detach_fakes)  # fmt: skip
                else:
                    out = self._step(theta_g, theta_d, state_g, state_d, support, noise[s],
                                     lr_g, lr_d, s + 1, create_graph, detach_fakes)  # fmt: skip
                theta_g, theta_d, state_g, state_d, ld, lg = out
                losses_d.append(ld)
                losses_g.append(lg)
        return Adapted(theta_g, theta_d, _stack(losses_d, theta_g), _stack(losses_g, theta_g))

    def _step(
        self, theta_g, theta_d, state_g, state_d, support, z, lr_g, lr_d, step, create_graph,
        detach_fakes=False,
    ):  # fmt: skip
        """One alternating inner step of all tasks: D, then G against the updated D."""
        with task_convolutions():
            return self._step_tasks(theta_g, theta_d, state_g, state_d, support, z, lr_g, lr_d,
                                    step, create_graph, detach_fakes)  # fmt: skip

    def _step_tasks(
        self, theta_g, theta_d, state_g, state_d, support, z, lr_g, lr_d, step, create_graph,
        detach_fakes,
    ):  # fmt: skip
        kw = self.step_kwargs()
        # G runs once per step: its output feeds the D step, and its recorded graph gives the G
        # step's gradient (θ_G has not changed in between).
        cond = self.condition(support, "adapt")
        keep = create_graph and theta_g.requires_grad
        tg = theta_g if keep else theta_g.detach().requires_grad_()
        with torch.enable_grad():
            fake = vmap(self._gen)(tg, z, cond)  # (T, B, C, H, W)
        fake_in = fake if keep else fake.detach()
        td = theta_d if create_graph else theta_d.detach()
        fake_d = fake.detach() if detach_fakes else fake_in  # what D's step sees
        gd, ld = vmap(grad(self._d_loss_on, has_aux=True))(td, support, fake_d, cond)
        theta_d, state_d = ops.inner_step(theta_d, gd, lr_d, state=state_d or None, step=step, **kw)
        td = theta_d if create_graph else theta_d.detach()
        dfake, lg = vmap(grad(self._g_loss_on, has_aux=True))(fake_in, td, support, z, cond)
        with torch.enable_grad():
            (gg,) = torch.autograd.grad(fake, tg, dfake, create_graph=keep)
        gg = gg if keep else gg.detach()
        theta_g, state_g = ops.inner_step(theta_g, gg, lr_g, state=state_g or None, step=step, **kw)
        return theta_g, theta_d, state_g, state_d, ld, lg

    def outer_losses(self, theta_g, theta_d, query, z, shots=None) -> tuple[Tensor, Tensor]:
        """Differentiable per-task losses on the query images: ``(L_D (T,), L_G (T,))``.

        ``shots`` (T, K, C, H, W): the support images, the condition of a conditional pair.
        """
        cond = self.condition(shots, "outer_losses")
        with task_convolutions():
            ld = vmap(lambda *a: self._d_loss(*a)[0])(theta_d, theta_g, query, z, cond)
            lg = vmap(lambda *a: self._g_loss(*a)[0])(theta_g, theta_d, query, z, cond)
        return ld, lg

    def task_grads(
        self, theta_g, theta_d, real, z, shots=None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """First-order gradients at the given parameters: ``(∇L_G (T,P_G), ∇L_D (T,P_D), L_G, L_D)``."""
        cond = self.condition(shots, "task_grads")
        # G runs once for both losses, as in an inner step: its recorded graph turns ∂L_G/∂fakes
        # into ∇L_G (G's forward is the larger part of the outer step's arithmetic).
        tg, td = theta_g.detach().requires_grad_(), theta_d.detach()
        with task_convolutions():
            with torch.enable_grad():
                fake = vmap(self._gen)(tg, z, cond)  # (T, B, C, H, W)
            gd, ld = vmap(grad(self._d_loss_on, has_aux=True))(td, real, fake.detach(), cond)
            dfake, lg = vmap(grad(self._g_loss_on, has_aux=True))(fake.detach(), td, real, z, cond)
        with torch.enable_grad():
            (gg,) = torch.autograd.grad(fake, tg, dfake)
        return gg, gd, lg, ld

    def generate(self, theta_g: Tensor, z: Tensor, shots: Tensor | None = None) -> Tensor:
        """(T, P_G), (T, N, Z) [, shots (T, K, C, H, W)] -> (T, N, C, H, W)."""
        with task_convolutions():
            return vmap(self._gen)(theta_g, z, self.condition(shots, "generate"))


class _RecomputedStep(torch.autograd.Function):
    """One second-order inner step whose insides are not kept: the forward runs it without
    recording, the backward re-runs it with ``create_graph=True`` and differentiates that.

    (``torch.utils.checkpoint`` cannot do this: its non-reentrant mode relies on saved-tensor
    hooks, which ``torch.func.grad`` refuses, and its reentrant mode does not support the
    ``torch.autograd.grad`` call that computes the meta-gradient.)
    """

    @staticmethod
    def forward(ctx, run, *inputs):
        ctx.run = run
        ctx.save_for_backward(*inputs)
        with torch.no_grad():  # same values as the second-order step, nothing recorded
            outs = run(False, *inputs)
        return tuple(o.detach() for o in outs)

    @staticmethod
    def backward(ctx, *grad_outs):
        inputs = [x.detach().requires_grad_(x.requires_grad) for x in ctx.saved_tensors]
        with torch.enable_grad():
            outs = ctx.run(True, *inputs)
            pairs = [(o, g) for o, g in zip(outs, grad_outs) if g is not None and o.requires_grad]
            wrt = [x for x in inputs if x.requires_grad]
            grads = (
                torch.autograd.grad(
                    [o for o, _ in pairs], wrt, [g for _, g in pairs], allow_unused=True
                )
                if pairs and wrt
                else []
            )
        it = iter(grads)
        return (None, *[next(it) if x.requires_grad else None for x in inputs])


def _recomputed_step(
    engine, theta_g, theta_d, state_g, state_d, support, z, lr_g, lr_d, step, detach_fakes
):
    """:meth:`BatchedEngine._step` (second order) through :class:`_RecomputedStep`: tensors that
    may carry the meta-graph (parameters, optimizer state, tensor learning rates) are inputs."""
    keys_g, keys_d = sorted(state_g), sorted(state_d)
    lrs = [lr for lr in (lr_g, lr_d) if isinstance(lr, Tensor)]

    def run(create_graph, tg, td, *rest):
        sg = dict(zip(keys_g, rest[: len(keys_g)]))
        sd = dict(zip(keys_d, rest[len(keys_g) : len(keys_g) + len(keys_d)]))
        it = iter(rest[len(keys_g) + len(keys_d) :])
        lg_ = next(it) if isinstance(lr_g, Tensor) else lr_g
        ld_ = next(it) if isinstance(lr_d, Tensor) else lr_d
        ng, nd, nsg, nsd, lossd, lossg = engine._step(
            tg, td, sg, sd, support, z, lg_, ld_, step, create_graph, detach_fakes
        )
        return (
            ng,
            nd,
            *[nsg[k] for k in sorted(nsg)],
            *[nsd[k] for k in sorted(nsd)],
            lossd,
            lossg,
        )

    inputs = (theta_g, theta_d, *[state_g[k] for k in keys_g], *[state_d[k] for k in keys_d], *lrs)
    outs = _RecomputedStep.apply(run, *inputs)
    keys = sorted(ops.STATE_KEYS[engine.cfg.method])  # the state each step returns
    n = len(keys)
    ng, nd, rest = outs[0], outs[1], outs[2:]
    sg = dict(zip(keys, rest[:n]))
    sd = dict(zip(keys, rest[n : 2 * n]))
    return ng, nd, sg, sd, rest[-2], rest[-1]


def mode_seeking_penalty(fake: Tensor, z: Tensor, eps: float = 1e-5) -> Tensor:
    """MSGAN's term for one task (Mao et al. 2019): ``1 / (mean|G(z1) − G(z2)| / mean|z1 − z2| + ε)``
    with the first half of the fake batch as G(z1) and the second half as G(z2).

    fake (B, C, H, W), z (B, Z), B >= 2 -> (). Small when different codes give different images.
    """
    h = fake.shape[0] // 2
    if h == 0:
        raise ConfigError(
            "inner.mode_seeking compares pairs of fakes but a task has 1; set inner.fake_batch >= 2"
        )
    ratio = (fake[:h] - fake[h : 2 * h]).abs().mean() / (z[:h] - z[h : 2 * h]).abs().mean()
    return 1.0 / (ratio + eps)


def imle_penalty(fake: Tensor, real: Tensor) -> Tensor:
    """IMLE's term for one task: fake (B, C, H, W), real (K, C, H, W) -> (), the mean over the
    K real images of the mean squared pixel difference to the nearest of the B fakes."""
    d = (fake.unsqueeze(1) - real.unsqueeze(0)).pow(2).flatten(2).mean(2)  # (B, K)
    return d.min(0).values.mean()


def _stack(losses: list[Tensor], like: Tensor) -> Tensor:
    return torch.stack(losses) if losses else like.new_zeros(0, like.shape[0])

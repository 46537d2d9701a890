"""The reference inner loop: one task at a time, per-tensor autograd and per-tensor updates.

:class:`SequentialEngine` is what a learn2learn/higher user writes (a Python loop over tasks,
``torch.autograd.grad`` per tensor, per-tensor SGD/momentum/Adam updates). It implements the
same :class:`metagan.inner.Engine` interface as the :class:`metagan.inner.BatchedEngine` that
training runs, so every algorithm runs on both: the batched == sequential tests check that they
give the same adapted parameters and meta-gradients, and ``metagan bench`` times one against
the other (``run.engine = "sequential"`` selects it for training).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.func import functional_call

from metagan import ops
from metagan.inner import Adapted, Engine
from metagan.models import FunctionalNet


class SequentialEngine(Engine):
    """The reference: one task at a time, per-tensor autograd and per-tensor updates."""

    name = "sequential"

    def _apply(
        self, net: FunctionalNet, params: dict[str, Tensor], cond: tuple[Tensor, ...]
    ) -> Callable[[Tensor], Tensor]:
        """``x -> net(x, *cond)`` with the given parameters; ``cond`` is () or (shots,)."""
        full = {**net.buffers, **params}
        return lambda x: functional_call(net.module, full, (x, *cond))

    def _update(self, net, params, grads, lr, states, step):
        """Per-tensor updates; ``lr`` is a float or a flat (P,) tensor of per-parameter rates.

        Gradient clipping is per task over the whole network (as in the batched engine and the
        docs), so the tensors' gradients are scaled together here and each per-tensor update
        runs unclipped.
        """
        kw = self.step_kwargs()
        if kw["max_grad_norm"] is not None:
            norm = torch.sqrt(sum(g.pow(2).sum() for g in grads))
            scale = torch.clamp(kw["max_grad_norm"] / (norm + 1e-6), max=1.0)
            grads = [g * scale for g in grads]
        kw["max_grad_norm"] = None
        out, new_states = {}, {}
        for (name, off, n), g in zip(net.spec.segments(), grads):
            p = params[name]
            lr_t = lr[off : off + n] if isinstance(lr, Tensor) and lr.dim() == 1 else lr
            new, new_states[name] = ops.inner_step(
                p.reshape(1, n),
                g.reshape(1, n),
                lr_t,
                state=states.get(name),
                step=step,
                **kw,
            )
            out[name] = new.view(p.shape)
        return out, new_states

    def _adapt_one(
        self, tg, td, support, noise, lr_g, lr_d, track, create_graph, steps, detach_fakes
    ):
        pg, pd = self.G.spec.unflatten(tg), self.D.spec.unflatten(td)
        cond = (support,) if self.conditional else ()  # the task's own shots (K, C, H, W)
        st_g, st_d, lds, lgs = {}, {}, [], []
        for s in range(steps):
            z = noise[s]
            leaves_d = _leaves(pd, create_graph)
            fake = self._apply(
                self.G, _leaves(pg, create_graph) if create_graph else _detached(pg), cond
            )(z)
            fake_d = fake.detach() if detach_fakes else fake
            ld = self.d_objective(self._apply(self.D, leaves_d, cond), support, fake_d)
            gd = torch.autograd.grad(ld, list(leaves_d.values()), create_graph=create_graph)
            pd, st_d = self._update(self.D, pd if track else _detached(pd), gd, lr_d, st_d, s + 1)
            leaves_g = _leaves(pg, create_graph)
            d_apply = self._apply(self.D, pd if create_graph else _detached(pd), cond)
            lg = self.g_objective(d_apply, self._apply(self.G, leaves_g, cond)(z), z, support)
            gg = torch.autograd.grad(lg, list(leaves_g.values()), create_graph=create_graph)
            pg, st_g = self._update(self.G, pg if track else _detached(pg), gg, lr_g, st_g, s + 1)
            lds.append(ld.detach())
            lgs.append(lg.detach())
        flat_g = torch.cat([pg[n].reshape(-1) for n in self.G.spec.names])
        flat_d = torch.cat([pd[n].reshape(-1) for n in self.D.spec.names])
        return flat_g, flat_d, lds, lgs

    def adapt(
        self,
        theta_g,
        theta_d,
        support,
        noise,
        *,
        lr_g,
        lr_d,
        track=False,
        create_graph=False,
        steps=None,
        detach_fakes=False,
    ) -> Adapted:
        steps = noise.shape[0] if steps is None else steps
        if not track:
            theta_g, theta_d = theta_g.detach(), theta_d.detach()
        rows_g, rows_d, lds, lgs = [], [], [], []
        with torch.set_grad_enabled(True):
            for t in range(theta_g.shape[0]):
                lr_gt = lr_g[t] if isinstance(lr_g, Tensor) and lr_g.dim() == 2 else lr_g
                lr_dt = lr_d[t] if isinstance(lr_d, Tensor) and lr_d.dim() == 2 else lr_d
                fg, fd, ld, lg = self._adapt_one(
                    theta_g[t],
                    theta_d[t],
                    support[t],
                    noise[:, t],
                    lr_gt,
                    lr_dt,
                    track,
                    create_graph,
                    steps,
                    detach_fakes,
                )
                if not track:
                    fg, fd = fg.detach(), fd.detach()
                rows_g.append(fg)
                rows_d.append(fd)
                lds.append(torch.stack(ld) if ld else theta_g.new_zeros(0))
                lgs.append(torch.stack(lg) if lg else theta_g.new_zeros(0))
        return Adapted(
            torch.stack(rows_g), torch.stack(rows_d), torch.stack(lds, 1), torch.stack(lgs, 1)
        )

    def outer_losses(self, theta_g, theta_d, query, z, shots=None):
        cond = self.condition(shots, "outer_losses")
        lds, lgs = [], []
        for t in range(theta_g.shape[0]):
            pg, pd = self.G.spec.unflatten(theta_g[t]), self.D.spec.unflatten(theta_d[t])
            ct = tuple(c[t] for c in cond)
            fake = self._apply(self.G, pg, ct)(z[t])
            lds.append(self.d_objective(self._apply(self.D, pd, ct), query[t], fake))
            lgs.append(self.g_objective(self._apply(self.D, pd, ct), fake, z[t], query[t]))
        return torch.stack(lds), torch.stack(lgs)

    def task_grads(self, theta_g, theta_d, real, z, shots=None):
        self.condition(shots, "task_grads")
        ggs, gds, lgs, lds = [], [], [], []
        for t in range(theta_g.shape[0]):
            tg = theta_g[t].detach().requires_grad_()
            td = theta_d[t].detach().requires_grad_()
            sh = None if shots is None else shots[t : t + 1]
            with torch.enable_grad():
                ld, lg = self.outer_losses(tg[None], td[None], real[t : t + 1], z[t : t + 1], sh)
                ggs.append(torch.autograd.grad(lg.sum(), tg, retain_graph=True)[0])
                gds.append(torch.autograd.grad(ld.sum(), td)[0])
            lgs.append(lg.detach()[0])
            lds.append(ld.detach()[0])
        return torch.stack(ggs), torch.stack(gds), torch.stack(lgs), torch.stack(lds)

    def generate(self, theta_g, z, shots=None):
        cond = self.condition(shots, "generate")
        return torch.stack(
            [self.G(theta_g[t], z[t], *(c[t] for c in cond)) for t in range(theta_g.shape[0])]
        )


def _leaves(params: dict[str, Tensor], keep_graph: bool) -> dict[str, Tensor]:
    """Tensors to take an inner gradient w.r.t.

    With ``keep_graph`` they are clones: identical values, still connected to the
    initialisation for the outer derivative, but a *separate* node, so that
    ``autograd.grad(loss, clones)`` is the partial derivative w.r.t. this network only. (The
    other network's current parameters also depend on these ones through the previous
    alternating step; differentiating w.r.t. the tensors themselves would wrongly add that path.)
    """
    if keep_graph:
        return {
            n: p.clone() if p.requires_grad else p.detach().requires_grad_()
            for n, p in params.items()
        }
    return {n: p.detach().requires_grad_() for n, p in params.items()}


def _detached(params: dict[str, Tensor]) -> dict[str, Tensor]:
    return {n: p.detach() for n, p in params.items()}

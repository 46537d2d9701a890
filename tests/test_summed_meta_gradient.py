"""``meta.meta_gradient = "summed"``: the meta-gradient learn2learn/higher users compute (D's
inner steps on G(z).detach(), one backward of L_D + L_G), against per-task autograd code
written here the way such a user writes it, and against finite differences."""

import pytest
import torch
from test_inner import TinyD, TinyG
from torch import nn
from torch.func import functional_call

from metagan.algorithm import MetaConfig
from metagan.data.tasks import TaskBatch
from metagan.errors import ConfigError
from metagan.inner import BatchedEngine, InnerConfig, Noise
from metagan.models import GanPair
from metagan.sequential import SequentialEngine

LR_G, LR_D = 0.3, 0.4


def peer_objective(pair, loss, batch, noise, g0, d0, frozen=None):
    """A learn2learn/higher user's meta-objective mean_t (L_D + L_G) for the per-tensor
    initialisations ``g0``/``d0`` ({name: tensor}).

    Per task: clone the weights, S alternating steps, each inner gradient taken w.r.t. the fast
    weights themselves (``create_graph=True``), the D step on ``G(z).detach()``. ``frozen``
    replaces those detached fakes by given tensors (for finite differences: the objective whose
    gradient the detached graph computes). Returns the objective and the D steps' fakes.
    """
    G, D = pair.generator, pair.discriminator
    T, S = batch.support.shape[0], noise.inner.shape[0]
    total, fakes = 0.0, []
    for t in range(T):
        g, d = {n: p.clone() for n, p in g0.items()}, {n: p.clone() for n, p in d0.items()}
        for s in range(S):
            fake = functional_call(G, g, (noise.inner[s, t],))
            seen = fake.detach() if frozen is None else frozen[t * S + s]
            fakes.append(fake.detach())
            real_logits = functional_call(D, d, (batch.support[t],))
            ld = loss.d_loss(real_logits, functional_call(D, d, (seen,)))
            grads = torch.autograd.grad(ld, list(d.values()), create_graph=True)
            d = {n: p - LR_D * gr for (n, p), gr in zip(d.items(), grads)}
            lg = loss.g_loss(functional_call(D, d, (fake,)))
            grads = torch.autograd.grad(lg, list(g.values()), create_graph=True)
            g = {n: p - LR_G * gr for (n, p), gr in zip(g.items(), grads)}
        fake = functional_call(G, g, (noise.outer[t],))
        ld = loss.d_loss(functional_call(D, d, (batch.query[t],)), functional_call(D, d, (fake,)))
        lg = loss.g_loss(functional_call(D, d, (fake,)))
        total = total + (ld + lg) / T
    return total, fakes


def metagan_grads(registries, engine, batch, noise, meta_gradient="summed", name="maml"):
    cfg = engine.cfg
    algo = registries.algorithms.get(name)(
        meta=MetaConfig(algorithm=name, meta_gradient=meta_gradient), inner=cfg
    )
    g0, d0 = engine.G.init_flat(), engine.D.init_flat()
    params = {
        k: nn.Parameter(v.clone())
        for k, v in {"g": g0, "d": d0, **algo.extra_parameters(g0, d0)}.items()
    }
    return algo.step(params, batch, noise, engine).grads


def random_batch(T, K, size, z_dim, steps, seed):
    g = torch.Generator().manual_seed(seed)
    batch = TaskBatch(
        support=torch.rand(T, K, 1, size, size, generator=g) * 2 - 1,
        query=torch.rand(T, K, 1, size, size, generator=g) * 2 - 1,
        classes=torch.arange(T),
    )
    return batch, Noise.draw(steps, T, K, z_dim, generator=g)


# (inner.recompute is the batched engine's; the sequential one has nothing to recompute)
@pytest.mark.parametrize(
    "engine_cls, recompute",
    [(BatchedEngine, False), (BatchedEngine, True), (SequentialEngine, False)],
)
def test_summed_meta_gradient_equals_peer_code(registries, float64, engine_cls, recompute):
    torch.manual_seed(0)
    pair = GanPair(TinyG(), TinyD())
    loss = registries.losses.get("nonsaturating")
    cfg = InnerConfig(steps=3, lr_g=LR_G, lr_d=LR_D, recompute=recompute)
    engine = engine_cls(pair, loss, cfg)
    batch, noise = random_batch(3, 2, 3, 2, 3, seed=2)
    got = metagan_grads(registries, engine, batch, noise)

    g0 = {n: p.detach().clone().requires_grad_() for n, p in pair.generator.named_parameters()}
    d0 = {n: p.detach().clone().requires_grad_() for n, p in pair.discriminator.named_parameters()}
    total, _ = peer_objective(pair, loss, batch, noise, g0, d0)
    ref = torch.autograd.grad(total, [*g0.values(), *d0.values()])
    ref_g = dict(zip(g0, ref[: len(g0)]))
    ref_d = dict(zip(d0, ref[len(g0) :]))
    for key, net, want in (("g", engine.G, ref_g), ("d", engine.D, ref_d)):
        for n, v in net.spec.unflatten(got[key]).items():
            torch.testing.assert_close(v, want[n], msg=f"{key}: {n}")
    # the option changes the meta-gradient: the separate ones differ
    sep = metagan_grads(registries, engine, batch, noise, "separate")
    assert not torch.allclose(sep["g"], got["g"])
    assert not torch.allclose(sep["d"], got["d"])


def test_summed_meta_gradient_matches_finite_differences(registries, float64):
    """Central differences of the objective with the D steps' fakes held at their values (what
    ``.detach()`` differentiates), every coordinate of θ_G and θ_D."""
    torch.manual_seed(0)
    pair = GanPair(TinyG(), TinyD())
    loss = registries.losses.get("nonsaturating")
    engine = BatchedEngine(pair, loss, InnerConfig(steps=2, lr_g=LR_G, lr_d=LR_D))
    batch, noise = random_batch(2, 3, 3, 2, 2, seed=3)
    got = metagan_grads(registries, engine, batch, noise)
    g0, d0 = engine.G.init_flat(), engine.D.init_flat()

    def objective(gv, dv, frozen=None):
        gp = engine.G.spec.unflatten(gv.clone().requires_grad_())
        dp = engine.D.spec.unflatten(dv.clone().requires_grad_())
        total, fakes = peer_objective(pair, loss, batch, noise, gp, dp, frozen)
        return float(total.detach()), fakes

    _, frozen = objective(g0, d0)

    eps = 1e-6
    theta = torch.cat([g0, d0])
    fd = torch.zeros_like(theta)
    n_g = g0.numel()
    for i in range(theta.numel()):
        e = torch.zeros_like(theta)
        e[i] = eps
        hi, lo = theta + e, theta - e
        up, down = objective(hi[:n_g], hi[n_g:], frozen), objective(lo[:n_g], lo[n_g:], frozen)
        fd[i] = (up[0] - down[0]) / (2 * eps)
    torch.testing.assert_close(got["g"], fd[:n_g], atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(got["d"], fd[n_g:], atol=1e-7, rtol=1e-5)


def test_summed_metasgd_batched_equals_sequential(registries, float64):
    """Meta-SGD's learned rates get the summed meta-gradient too, the same in both engines."""
    torch.manual_seed(0)
    pair = GanPair(TinyG(), TinyD())
    loss = registries.losses.get("nonsaturating")
    cfg = InnerConfig(steps=2, lr_g=LR_G, lr_d=LR_D)
    batch, noise = random_batch(3, 2, 3, 2, 2, seed=4)
    a = metagan_grads(registries, BatchedEngine(pair, loss, cfg), batch, noise, name="metasgd")
    b = metagan_grads(registries, SequentialEngine(pair, loss, cfg), batch, noise, name="metasgd")
    assert set(a) == {"g", "d", "lr_g", "lr_d"}
    for k in a:
        torch.testing.assert_close(a[k], b[k], msg=k)
        assert a[k].abs().sum() > 0, k


@pytest.mark.parametrize("name", ["fomaml", "reptile", "finetune"])
def test_summed_is_refused_where_it_has_no_meaning(registries, name):
    cls = registries.algorithms.get(name)
    with pytest.raises(ConfigError, match=f"algorithm '{name}' has no 'summed' meta-gradient"):
        cls(meta=MetaConfig(algorithm=name, meta_gradient="summed"), inner=InnerConfig())
    with pytest.raises(ConfigError, match="meta.meta_gradient must be one of separate, summed"):
        MetaConfig(meta_gradient="sum")


@pytest.mark.parametrize(
    "name, meta_gradient", [("maml", "separate"), ("maml", "summed"), ("metasgd", "summed")]
)
def test_task_chunks_give_the_same_meta_gradient(registries, float64, name, meta_gradient):
    """meta.task_chunk = 2 of 3 tasks: two backward passes, averaged by their task counts."""
    torch.manual_seed(0)
    pair = GanPair(TinyG(), TinyD())
    loss = registries.losses.get("nonsaturating")
    engine = BatchedEngine(pair, loss, InnerConfig(steps=2, lr_g=LR_G, lr_d=LR_D))
    batch, noise = random_batch(3, 2, 3, 2, 2, seed=5)
    grads = {}
    for chunk in (0, 2):
        meta = MetaConfig(algorithm=name, meta_gradient=meta_gradient, task_chunk=chunk)
        algo = registries.algorithms.get(name)(meta=meta, inner=engine.cfg)
        g0, d0 = engine.G.init_flat(), engine.D.init_flat()
        params = {
            k: nn.Parameter(v.clone())
            for k, v in {"g": g0, "d": d0, **algo.extra_parameters(g0, d0)}.items()
        }
        res = algo.step(params, batch, noise, engine)
        grads[chunk] = res.grads
        assert res.theta_g.shape[0] == 3 and res.finite.shape == (3,)
    for k in grads[0]:
        torch.testing.assert_close(grads[2][k], grads[0][k], msg=k)
    with pytest.raises(ConfigError, match="meta.task_chunk is for the second-order"):
        registries.algorithms.get("fomaml")(meta=MetaConfig(task_chunk=2), inner=engine.cfg)

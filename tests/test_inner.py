"""The batched inner loop against the sequential per-task reference, and MAML's
meta-gradient against finite differences."""

import pytest
import torch
from torch import nn

from metagan.algorithm import MetaConfig, rows
from metagan.data.tasks import TaskBatch
from metagan.errors import ConfigError
from metagan.inner import BatchedEngine, InnerConfig, Noise, imle_penalty
from metagan.models import ArchConfig, GanPair
from metagan.sequential import SequentialEngine

ALGORITHMS = ["maml", "fomaml", "reptile", "metasgd", "finetune"]


def tiny_pair(registries, arch="dcgan"):
    torch.manual_seed(0)
    return registries.architectures.get(arch)(ArchConfig(image_size=28, z_dim=8, width=8))


def make_batch(T=3, K=2, Q=2, size=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    support = torch.rand(T, K, 1, size, size, generator=g) * 2 - 1
    query = torch.rand(T, Q, 1, size, size, generator=g) * 2 - 1
    return TaskBatch(support=support, query=query, classes=torch.arange(T))


def engines(registries, cfg, arch="dcgan"):
    pair = tiny_pair(registries, arch)
    loss = registries.losses.get("nonsaturating")
    return BatchedEngine(pair, loss, cfg), SequentialEngine(pair, loss, cfg)


# inner.max_grad_norm = 0.01 is far below the tiny networks' per-task gradient norms (each test
# asserts it), so clipping really acts; sgd (and two algorithms) also run without it.
CLIP = 0.01


def assert_clipping_triggers(engine, g0, d0, batch, noise, T=3):
    """Every task's first D gradient (the whole network's, at the initialisation) exceeds CLIP."""
    _, gd, _, _ = engine.task_grads(
        rows(g0, T), rows(d0, T), batch.support, noise.inner[0], batch.support
    )
    assert (gd.norm(dim=1) > CLIP).all(), gd.norm(dim=1)


@pytest.mark.parametrize("method", ["sgd", "momentum", "adam"])
@pytest.mark.parametrize("arch", ["dcgan", "mlp", "dagan", "fusion"])
def test_batched_adapt_equals_sequential(registries, float64, method, arch):
    clip = 0.0 if method == "sgd" else CLIP
    cfg = InnerConfig(steps=3, lr_g=0.05, lr_d=0.07, method=method,
                      r1_gamma=0.5 if arch == "mlp" else 0.0, max_grad_norm=clip,
                      imle=0.3 if arch == "mlp" else 0.0)  # fmt: skip
    batched, seq = engines(registries, cfg, arch)
    batch = make_batch()
    noise = Noise.draw(3, 3, 2, 8, generator=torch.Generator().manual_seed(1))
    g0, d0 = batched.G.init_flat(), batched.D.init_flat()
    a = batched.adapt(rows(g0, 3), rows(d0, 3), batch.support, noise.inner, lr_g=0.05, lr_d=0.07)
    b = seq.adapt(rows(g0, 3), rows(d0, 3), batch.support, noise.inner, lr_g=0.05, lr_d=0.07)
    torch.testing.assert_close(a.theta_g, b.theta_g)
    torch.testing.assert_close(a.theta_d, b.theta_d)
    torch.testing.assert_close(a.loss_d, b.loss_d)
    # adaptation moved the parameters, and differently for different tasks
    assert not torch.allclose(a.theta_d[0], d0)
    assert not torch.allclose(a.theta_d[0], a.theta_d[1])
    if clip:
        assert_clipping_triggers(batched, g0, d0, batch, noise)


def test_imle_term_against_a_hand_computation(registries, float64):
    # fakes (0, 0), (1, 1), (2, 0); shots (0.5, 0), (2, 2) as 1 x 1 x 2 images.
    fake = torch.tensor([[0.0, 0.0], [1.0, 1.0], [2.0, 0.0]]).view(3, 1, 1, 2).requires_grad_()
    real = torch.tensor([[0.5, 0.0], [2.0, 2.0]]).view(2, 1, 1, 2)
    # mean squared distances: shot 0 -> 0.125, 0.625, 1.125 (nearest: fake 0);
    # shot 1 -> 4, 1, 2 (nearest: fake 1); the term is (0.125 + 1) / 2
    value = imle_penalty(fake, real)
    torch.testing.assert_close(value, torch.tensor(0.5625))
    # only each shot's nearest fake is pulled, towards that shot: d/df of (|f - x|^2 / 2) / 2
    (g,) = torch.autograd.grad(value, fake)
    want = torch.tensor([[-0.25, 0.0], [-0.5, -0.5], [0.0, 0.0]]).view(3, 1, 1, 2)
    torch.testing.assert_close(g, want)
    # and it is what the engine adds to L_G, scaled by inner.imle (the task's real images)
    pair = GanPair(TinyG(), TinyD())
    loss = registries.losses.get("nonsaturating")
    z, d_apply = torch.zeros(3, 2), lambda x: x.flatten(1).sum(1)  # (B,) logits
    off = SequentialEngine(pair, loss, InnerConfig()).g_objective(d_apply, fake, z, real)
    on = BatchedEngine(pair, loss, InnerConfig(imle=2.0)).g_objective(d_apply, fake, z, real)
    torch.testing.assert_close(on - off, 2.0 * value)
    with pytest.raises(ConfigError, match="inner.imle must be >= 0"):
        InnerConfig(imle=-1.0)


def test_sequential_engine_clips_the_whole_network_per_task(registries, float64):
    """One SGD step with clipping equals θ − β·g·c/(‖g‖ + 1e-6), ‖g‖ over every tensor of the
    task's network (not per tensor), derived from the unclipped gradient."""
    _, seq = engines(registries, InnerConfig(steps=1, lr_d=0.07, max_grad_norm=CLIP))
    batch = make_batch()
    noise = Noise.draw(1, 3, 2, 8, generator=torch.Generator().manual_seed(1))
    g0, d0 = seq.G.init_flat(), seq.D.init_flat()
    _, gd, _, _ = seq.task_grads(rows(g0, 3), rows(d0, 3), batch.support, noise.inner[0])
    norm = gd.norm(dim=1, keepdim=True)  # (T, 1)
    assert (norm > CLIP).all()
    out = seq.adapt(rows(g0, 3), rows(d0, 3), batch.support, noise.inner, lr_g=0.05, lr_d=0.07)
    torch.testing.assert_close(out.theta_d, d0 - 0.07 * gd * (CLIP / (norm + 1e-6)))


@pytest.mark.parametrize(
    "name, clip", [(n, CLIP) for n in ALGORITHMS] + [("fomaml", 0.0), ("maml", 0.0)]
)
def test_batched_meta_gradients_equal_sequential(registries, float64, name, clip):
    cfg = InnerConfig(steps=2, lr_g=0.05, lr_d=0.05, max_grad_norm=clip)
    batched, seq = engines(registries, cfg)
    algo = registries.algorithms.get(name)(meta=MetaConfig(algorithm=name), inner=cfg)
    g0, d0 = batched.G.init_flat(), batched.D.init_flat()
    extra = algo.extra_parameters(g0, d0)
    params = {k: nn.Parameter(v.clone()) for k, v in {"g": g0, "d": d0, **extra}.items()}
    batch = make_batch()
    noise = Noise.draw(2, 3, 2, 8, generator=torch.Generator().manual_seed(2))
    ra = algo.step(params, batch, noise, batched)
    rb = algo.step(params, batch, noise, seq)
    assert set(ra.grads) == set(params)
    for k in params:
        torch.testing.assert_close(ra.grads[k], rb.grads[k], msg=f"{name}: meta-gradient {k}")
        assert ra.grads[k].abs().sum() > 0, f"{name}: zero meta-gradient for {k}"
    if clip and name != "finetune":  # finetune has no inner loop: nothing to clip
        assert_clipping_triggers(batched, g0, d0, batch, noise)


class TinyG(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 9)

    def forward(self, z):
        return torch.tanh(self.fc(z)).view(-1, 1, 3, 3)


class TinyD(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(9, 3)
        self.fc2 = nn.Linear(3, 1)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x.flatten(1)))).squeeze(-1)


@pytest.mark.parametrize("engine_cls", [BatchedEngine, SequentialEngine])
def test_maml_meta_gradient_matches_finite_differences(registries, float64, engine_cls):
    torch.manual_seed(0)
    cfg = InnerConfig(steps=2, lr_g=0.3, lr_d=0.4)
    engine = engine_cls(GanPair(TinyG(), TinyD()), registries.losses.get("nonsaturating"), cfg)
    algo = registries.algorithms.get("maml")(meta=MetaConfig(algorithm="maml"), inner=cfg)
    T, K = 2, 3
    g = torch.Generator().manual_seed(3)
    batch = TaskBatch(
        support=torch.rand(T, K, 1, 3, 3, generator=g) * 2 - 1,
        query=torch.rand(T, K, 1, 3, 3, generator=g) * 2 - 1,
        classes=torch.arange(T),
    )
    noise = Noise.draw(2, T, K, 2, generator=g)
    g0, d0 = engine.G.init_flat(), engine.D.init_flat()
    params = {"g": nn.Parameter(g0.clone()), "d": nn.Parameter(d0.clone())}
    res = algo.step(params, batch, noise, engine)

    def outer(gv, dv):
        with torch.no_grad():
            ad = engine.adapt(
                rows(gv, T), rows(dv, T), batch.support, noise.inner, lr_g=0.3, lr_d=0.4
            )
            ld, lg = engine.outer_losses(ad.theta_g, ad.theta_d, batch.query, noise.outer)
        return ld.mean(), lg.mean()

    eps = 1e-6
    fd_d = torch.zeros_like(d0)
    for i in range(d0.numel()):
        e = torch.zeros_like(d0)
        e[i] = eps
        fd_d[i] = (outer(g0, d0 + e)[0] - outer(g0, d0 - e)[0]) / (2 * eps)
    fd_g = torch.zeros_like(g0)
    for i in range(g0.numel()):
        e = torch.zeros_like(g0)
        e[i] = eps
        fd_g[i] = (outer(g0 + e, d0)[1] - outer(g0 - e, d0)[1]) / (2 * eps)
    torch.testing.assert_close(res.grads["d"], fd_d, atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(res.grads["g"], fd_g, atol=1e-7, rtol=1e-5)
    # and it is truly second order: the first-order estimate differs
    fo = registries.algorithms.get("fomaml")(meta=MetaConfig(), inner=cfg).step(
        params, batch, noise, engine
    )
    assert not torch.allclose(fo.grads["d"], fd_d, atol=1e-5)


def test_non_finite_task_is_dropped(registries, float64):
    cfg = InnerConfig(steps=2)
    batched, _ = engines(registries, cfg)
    algo = registries.algorithms.get("fomaml")(meta=MetaConfig(), inner=cfg)
    params = {"g": nn.Parameter(batched.G.init_flat()), "d": nn.Parameter(batched.D.init_flat())}
    batch = make_batch(T=3)
    batch.support[1, 0, 0, 0, 0] = float("nan")
    noise = Noise.draw(2, 3, 2, 8, generator=torch.Generator().manual_seed(4))
    res = algo.step(params, batch, noise, batched)
    assert res.dropped == 1
    keep = torch.tensor([0, 2])
    from metagan.algorithm import select_tasks

    ref = algo.step(params, select_tasks(batch, keep), noise.select(keep), batched)
    for k in ("g", "d"):
        assert torch.isfinite(res.grads[k]).all()
        torch.testing.assert_close(res.grads[k], ref.grads[k])
    # every task non-finite: no meta-gradient, the trainer skips the step
    batch.support[:] = float("nan")
    res = algo.step(params, batch, noise, batched)
    assert res.grads is None and res.dropped == 3


@pytest.mark.parametrize("name", ["maml", "metasgd"])
@pytest.mark.parametrize("method", ["sgd", "adam"])
def test_recomputed_inner_steps_give_the_same_meta_gradients(
    registries, float64, monkeypatch, name, method
):
    """inner.recompute keeps only each step's inputs and re-runs the step in the backward."""
    from metagan import inner

    calls = []
    original = inner._RecomputedStep.backward
    monkeypatch.setattr(
        inner._RecomputedStep,
        "backward",
        staticmethod(lambda ctx, *g: calls.append(1) or original(ctx, *g)),
    )
    grads = {}
    for recompute in (False, True):
        cfg = InnerConfig(steps=3, lr_g=0.3, lr_d=0.4, method=method, recompute=recompute)
        batched, _ = engines(registries, cfg, "mlp")
        algo = registries.algorithms.get(name)(meta=MetaConfig(algorithm=name), inner=cfg)
        g0, d0 = batched.G.init_flat(), batched.D.init_flat()
        params = {
            k: nn.Parameter(v.clone())
            for k, v in {"g": g0, "d": d0, **algo.extra_parameters(g0, d0)}.items()
        }
        noise = Noise.draw(3, 3, 2, 8, generator=torch.Generator().manual_seed(5))
        grads[recompute] = algo.step(params, make_batch(), noise, batched).grads
    assert len(calls) == 3 * 2  # every step recomputed, once per meta-gradient (D's, then G's)
    for k in grads[False]:
        torch.testing.assert_close(grads[True][k], grads[False][k], msg=k)

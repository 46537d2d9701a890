"""CUDA-graph replay of meta-iterations (metagan.graphs) against the eager batched engine:
the same meta-gradients for every algorithm, on new inputs each replay, after the optimizer
has moved the meta-parameters in place, for unconditional and shot-conditioned pairs; and a
training run with run.cuda_graph logs what the eager run logs."""

import json

import pytest
import torch
from torch import nn

from metagan import config
from metagan.algorithm import MetaConfig
from metagan.data.tasks import TaskBatch
from metagan.graphs import GraphedMetaStep
from metagan.inner import BatchedEngine, InnerConfig, Noise
from metagan.models import ArchConfig
from metagan.train import Trainer

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(autouse=True)
def _full_fp32():
    """Full fp32 (no TF32), so eager and replayed runs compare at fp32 tolerances."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def setup(registries, name, arch="dcgan", T=4, K=3, steps=3):
    torch.manual_seed(0)
    pair = registries.architectures.get(arch)(ArchConfig(image_size=28, z_dim=16, width=8))
    pair.generator.cuda()
    pair.discriminator.cuda()
    cfg = InnerConfig(steps=steps, lr_g=0.05, lr_d=0.05, max_grad_norm=5.0)
    algo = registries.algorithms.get(name)(meta=MetaConfig(algorithm=name), inner=cfg)
    eng = BatchedEngine(pair, registries.losses.get("nonsaturating"), cfg)
    g, d = eng.G.init_flat(), eng.D.init_flat()
    params = {
        k: nn.Parameter(v.clone())
        for k, v in {"g": g, "d": d, **algo.extra_parameters(g, d)}.items()
    }
    gen = torch.Generator().manual_seed(1)

    def draw():
        batch = TaskBatch(
            support=(torch.rand(T, K, 1, 28, 28, generator=gen) * 2 - 1).cuda(),
            query=(torch.rand(T, K, 1, 28, 28, generator=gen) * 2 - 1).cuda(),
            classes=torch.randint(100, (T,), generator=gen).cuda(),
        )
        return batch, Noise.draw(steps, T, K, 16, generator=gen, device="cuda")

    return algo, eng, params, draw


@pytest.mark.parametrize(
    "name,arch",
    [("fomaml", "dcgan"), ("maml", "dcgan"), ("metasgd", "dcgan"), ("reptile", "dcgan"),
     ("fomaml", "dagan"), ("maml", "fusion")],
)  # fmt: skip
def test_replay_equals_eager(registries, name, arch):
    algo, eng, params, draw = setup(registries, name, arch)
    graphed = GraphedMetaStep(algo, eng, params, *draw())
    opt = torch.optim.Adam(params.values(), lr=1e-2)
    for it in range(3):  # new inputs each time; the params move in place in between
        batch, noise = draw()
        eager = algo.step(params, batch, noise, eng)
        replayed = graphed.step(batch, noise)
        assert set(replayed.grads) == set(eager.grads) == set(params)
        for k in params:
            torch.testing.assert_close(
                replayed.grads[k], eager.grads[k], rtol=1e-4, atol=1e-6, msg=f"{name} {it} {k}"
            )
        assert replayed.stats.keys() == eager.stats.keys()
        for k, v in eager.stats.items():
            assert isinstance(replayed.stats[k], float)
            assert replayed.stats[k] == pytest.approx(v, rel=1e-4, abs=1e-6), k
        for k, p in params.items():
            p.grad = eager.grads[k].clone()
        opt.step()
        opt.zero_grad(set_to_none=True)


def test_a_new_shape_is_refused(registries):
    algo, eng, params, draw = setup(registries, "fomaml")
    graphed = GraphedMetaStep(algo, eng, params, *draw())
    batch, noise = draw()
    batch = TaskBatch(support=batch.support[:2], query=batch.query[:2], classes=batch.classes[:2])
    with pytest.raises(Exception, match="one meta-batch shape"):
        graphed.step(batch, Noise(inner=noise.inner[:, :2], outer=noise.outer[:2]))


def test_training_with_cuda_graph_logs_what_eager_logs(registries, tmp_path):
    metrics = {}
    for graph in (False, True):
        cfg = config.load(
            None,
            [
                'data.dataset="glyphs"', "data.shots=3", "data.queries=3", "model.width=8",
                "model.z_dim=16", "inner.steps=2", "meta.tasks=4", "meta.iterations=6",
                'run.device="cuda"', f"run.cuda_graph={str(graph).lower()}", "run.log_every=2",
                "run.sample_every=0", f'run.out="{tmp_path / str(graph)}"', "run.progress=false",
            ],
        )  # fmt: skip
        Trainer(cfg).run(log=lambda *a: None)
        lines = (tmp_path / str(graph) / "metrics.jsonl").read_text().splitlines()
        metrics[graph] = [json.loads(x) for x in lines]
    assert [m["step"] for m in metrics[True]] == [2, 4, 6]
    for eager, replayed in zip(metrics[False], metrics[True]):
        for k in ("loss_d", "loss_g", "inner_loss_d", "inner_loss_g", "memorisation"):
            assert replayed[k] == pytest.approx(eager[k], rel=1e-3, abs=1e-4), k

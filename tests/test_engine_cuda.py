"""The whole inner loop on a GPU: meta-gradients with the fused CUDA inner-step kernel equal
those of the pure-PyTorch path (second-order MAML included), and batched equals sequential."""

import pytest
import torch
from torch import nn

from metagan import ops
from metagan.algorithm import MetaConfig
from metagan.data.tasks import TaskBatch
from metagan.inner import BatchedEngine, InnerConfig, Noise
from metagan.models import ArchConfig
from metagan.sequential import SequentialEngine

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA GPU (run on a GPU machine: tests/gpu_check.sh)",
    ),
]


@pytest.fixture(autouse=True)
def _full_fp32():
    """cuDNN convolutions default to TF32 on Ampere and newer; the per-task (sequential) and
    grouped (vmapped) convolutions then round differently, and a GAN's inner steps amplify
    that (seen on an H100: batched vs sequential off by more than 1e-3). Compare in full fp32."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


def setup(registries, name, method, T=5):
    torch.manual_seed(0)
    pair = registries.architectures.get("dcgan")(ArchConfig(image_size=28, z_dim=16, width=8))
    pair.generator.cuda()
    pair.discriminator.cuda()
    cfg = InnerConfig(steps=3, lr_g=0.05, lr_d=0.05, method=method, max_grad_norm=5.0)
    loss = registries.losses.get("nonsaturating")
    algo = registries.algorithms.get(name)(meta=MetaConfig(algorithm=name), inner=cfg)
    batched, seq = BatchedEngine(pair, loss, cfg), SequentialEngine(pair, loss, cfg)
    g, d = batched.G.init_flat(), batched.D.init_flat()
    params = {
        k: nn.Parameter(v.clone())
        for k, v in {"g": g, "d": d, **algo.extra_parameters(g, d)}.items()
    }
    gen = torch.Generator().manual_seed(1)
    batch = TaskBatch(
        support=(torch.rand(T, 3, 1, 28, 28, generator=gen) * 2 - 1).cuda(),
        query=(torch.rand(T, 3, 1, 28, 28, generator=gen) * 2 - 1).cuda(),
        classes=torch.arange(T).cuda(),
    )
    noise = Noise.draw(3, T, 3, 16, generator=gen, device="cuda")
    return algo, params, batch, noise, batched, seq


def test_the_fused_kernel_is_in_use():
    assert ops.backend() == "cuda", ops.backend_info()


@pytest.mark.parametrize("name", ["maml", "metasgd", "fomaml", "reptile"])
# sgd and momentum: linear in the gradient. (Adam's m/sqrt(v) turns float32 rounding of
# near-zero gradients into ±lr updates, so fused-vs-reference equality after several steps is
# not a meaningful float32 check there; the op-level tests compare Adam on random inputs.)
@pytest.mark.parametrize("method", ["sgd", "momentum"])
def test_meta_gradients_with_and_without_the_extension(registries, name, method):
    algo, params, batch, noise, batched, seq = setup(registries, name, method)
    fused = algo.step(params, batch, noise, batched)
    with ops.reference_only():
        ref = algo.step(params, batch, noise, batched)
        sequential = algo.step(params, batch, noise, seq)
    for k in params:
        torch.testing.assert_close(
            fused.grads[k], ref.grads[k], rtol=1e-4, atol=1e-6, msg=f"{name}/{method}: {k}"
        )
        torch.testing.assert_close(
            sequential.grads[k], ref.grads[k], rtol=1e-3, atol=1e-5, msg=f"{name}/{method}: {k}"
        )

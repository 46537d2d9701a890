"""The mix-ratio few-shot set (`metagan.fewshot`): what every batch holds, counted exactly."""

import pytest
import torch

from metagan.errors import ConfigError
from metagan.eval.classifier import FitConfig, fit_set
from metagan.fewshot import MixedBatchSampler, MixedFewShotDataset


def _data(n_real=10, n_gen=40, mix=0.25):
    x_real = torch.zeros(n_real, 1, 4, 4)  # real images are 0, generated ones 1
    x_gen = torch.ones(n_gen, 1, 4, 4)
    y_real = torch.arange(n_real) % 2
    y_gen = torch.arange(n_gen) % 2
    return MixedFewShotDataset(x_real, y_real, x_gen, y_gen, mix=mix)


@pytest.mark.parametrize(
    "mix,batch,n_gen", [(0.25, 64, 16), (0.1, 64, 6), (0.5, 10, 5), (0.3, 7, 2)]
)
def test_every_batch_holds_round_mix_times_b_generated_images(mix, batch, n_gen):
    data = _data(mix=mix)
    batches = list(data.batches(batch, steps=50, seed=3))
    assert len(batches) == 50
    for idx in batches:
        x, y = data[idx]
        assert len(idx) == batch
        assert int(x.flatten(1)[:, 0].sum()) == n_gen  # generated images are the ones
        assert all(0 <= i < len(data) for i in idx)


def test_both_sets_are_drawn_uniformly():
    data = _data(n_real=4, n_gen=8, mix=0.5)
    counts = torch.zeros(len(data))
    for idx in data.batches(32, steps=500, seed=0):
        counts += torch.bincount(torch.tensor(idx), minlength=len(data))
    real, gen = counts[:4], counts[4:]
    # 500 batches x 16 per set: each real index expects 2000 draws, each generated one 1000
    assert torch.allclose(real, torch.full((4,), 2000.0), rtol=0.1)
    assert torch.allclose(gen, torch.full((8,), 1000.0), rtol=0.1)


def test_mix_zero_is_the_plain_real_only_minibatch():
    data = MixedFewShotDataset(torch.zeros(5, 1, 2, 2), torch.arange(5))
    batches = list(data.batches(64, steps=3, seed=1))
    assert [len(b) for b in batches] == [5, 5, 5]  # min(B, N_real), as a real-only loop draws
    assert all(max(b) < 5 for b in batches)


def test_same_seed_same_batches_other_seed_other_batches():
    data = _data()
    a = list(data.batches(16, steps=5, seed=7))
    assert a == list(data.batches(16, steps=5, seed=7))
    assert a != list(data.batches(16, steps=5, seed=8))


@pytest.mark.parametrize("mix", [-0.1, 1.0, 1.5, float("nan"), float("inf"), True, "0.2"])
def test_bad_mix_ratio_is_refused(mix):
    with pytest.raises(ConfigError, match=r"mix ratio must be a number in \[0, 1\)"):
        _data(mix=mix)


def test_refusals_name_the_problem():
    with pytest.raises(ConfigError, match="none were given"):
        MixedFewShotDataset(torch.zeros(3, 1, 2, 2), torch.arange(3), mix=0.5)
    with pytest.raises(ConfigError, match="no generated image in a batch of 4"):
        MixedBatchSampler(3, 3, 4, mix=0.1, steps=1)
    with pytest.raises(ConfigError, match="one image shape"):
        MixedFewShotDataset(torch.zeros(3, 1, 2, 2), torch.arange(3), torch.zeros(3, 1, 3, 3),
                            torch.arange(3), mix=0.5)  # fmt: skip
    with pytest.raises(ConfigError, match="one label"):
        MixedFewShotDataset(torch.zeros(3, 1, 2, 2), torch.arange(4))


def test_generated_images_at_the_mix_ratio_change_what_the_classifier_learns():
    # real images of class 0 are dark and of class 1 bright; the generated ones carry the
    # opposite labels: the more of them in each batch, the worse the classifier on real data
    g = torch.Generator().manual_seed(0)
    x_real = torch.cat([torch.full((6, 1, 8, 8), -1.0), torch.full((6, 1, 8, 8), 1.0)])
    x_real = x_real + 0.1 * torch.randn(x_real.shape, generator=g)
    y_real = torch.tensor([0] * 6 + [1] * 6)
    cfg = FitConfig(steps=60, batch_size=20, seed=0)
    acc = {}
    for mix in (0.0, 0.8):
        data = MixedFewShotDataset(x_real, y_real, x_real.clone(), 1 - y_real, mix=mix)
        net = fit_set(data, 2, cfg)
        acc[mix] = float((net(x_real).argmax(1) == y_real).double().mean())
    assert acc[0.0] == 1.0 and acc[0.8] < 0.5

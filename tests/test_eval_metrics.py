"""The evaluation's building blocks against independent expectations: closed forms, hand-derived
values on tiny point sets, and the affine jitter's geometry."""

import math

import numpy as np
import pytest
import torch

from metagan.errors import ConfigError
from metagan.eval import metrics as M
from metagan.eval.classifier import FitConfig, accuracy, fit


def _fid_reference(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance with numpy only: Tr(sqrt(C_a C_b)) via sqrt(C_a)^(1/2) C_b sqrt(C_a)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(ca)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root_a @ cb @ root_a)
    return float(
        ((mu_a - mu_b) ** 2).sum()
        + np.trace(ca)
        + np.trace(cb)
        - 2 * np.sqrt(np.clip(inner, 0, None)).sum()
    )


def test_fid_matches_numpy_reference():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(400, 6, generator=g, dtype=torch.float64)
    b = (
        torch.randn(300, 6, generator=g, dtype=torch.float64)
        @ torch.diag(torch.tensor([1.0, 2, 0.5, 1, 1, 3], dtype=torch.float64))
        + 0.3
    )
    assert M.fid(a, b) == pytest.approx(_fid_reference(a.numpy(), b.numpy()), rel=1e-6, abs=1e-8)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_the_shift():
    a = torch.randn(500, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert M.fid(a, a) == pytest.approx(0.0, abs=1e-6)
    # a mean shift by d in every one of F dimensions adds exactly F * d^2
    assert M.fid(a, a + 0.5) == pytest.approx(4 * 0.25, rel=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(300, 8, generator=g), torch.randn(300, 8, generator=g)
    same, same_std = M.kid(a, b)
    shifted, shifted_std = M.kid(a, b + 1.0)
    assert abs(same) < 3 * same_std + 1e-4
    assert shifted > 10 * max(shifted_std, abs(same))
    assert M.kid(a, b + 1.0, seed=5) == M.kid(a, b + 1.0, seed=5)  # seeded subsets


def test_prdc_on_points_on_a_line_by_hand():
    # reals at 0, 1, 2, 3, 10 (1-d); with k = 1 each real's radius is the distance to its
    # nearest other real: 1, 1, 1, 1, 7.
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    fake = torch.tensor([[0.5], [20.0], [9.0]])
    out = M.prdc(real, fake, k=1)
    # precision: 0.5 is inside the balls of 0 and 1; 20 is in none; 9 is inside 10's (7) -> 2/3
    assert out["precision"] == pytest.approx(2 / 3)
    # density: balls holding each fake: 0.5 -> {0, 1} (2), 20 -> 0, 9 -> {10} (1): (3 / 3) / k
    assert out["density"] == pytest.approx(1.0)
    # coverage: reals whose nearest fake is inside their ball: 0 (0.5 < 1), 1 (0.5 < 1),
    # 2 (1.5 > 1 no), 3 (2.5 no), 10 (1 < 7) -> 3/5
    assert out["coverage"] == pytest.approx(3 / 5)
    # recall, fake radii with k = 1: 0.5 -> 8.5, 20 -> 11, 9 -> 8.5; reals 0..3 lie within 8.5
    # of 0.5 and 10 within 8.5 of 9 -> 5/5
    assert out["recall"] == pytest.approx(1.0)


def test_memorisation_ratio_is_zero_for_copies_and_one_for_real_drawings():
    g = torch.Generator().manual_seed(3)
    shots, real = torch.randn(5, 16, generator=g), torch.randn(15, 16, generator=g)
    assert M.memorisation_ratio(shots.repeat(3, 1), shots, real) == 0.0
    assert M.memorisation_ratio(real, shots, real) == pytest.approx(1.0)


def test_diversity_by_hand():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 4.0]])  # distances 5, 4, 3
    assert M.diversity(x) == pytest.approx((5 + 4 + 3) / 3)
    with pytest.raises(ConfigError, match="at least 2"):
        M.diversity(x[:1])


def test_mean_ci_uses_student_t():
    mean, half = M.mean_ci([1, 2, 3, 4])
    assert mean == 2.5
    assert half == pytest.approx(3.182 * math.sqrt(5 / 3) / 2, rel=1e-4)


def test_bootstrap_ci_of_a_constant_statistic_is_zero_and_of_the_mean_is_sane():
    groups = [float(v) for v in range(20)]
    value, half = M.bootstrap_ci(lambda gs: 7.0, groups, resamples=50)
    assert (value, half) == (7.0, 0.0)
    value, half = M.bootstrap_ci(lambda gs: sum(gs) / len(gs), groups, resamples=400)
    _, t_half = M.mean_ci(groups)
    assert value == 9.5 and 0.6 * t_half < half < 1.4 * t_half


def test_metric_inputs_are_checked():
    with pytest.raises(ConfigError, match="equal F"):
        M.fid(torch.zeros(5, 3), torch.zeros(5, 4))
    with pytest.raises(ConfigError, match="at least 4"):
        M.prdc(torch.randn(3, 2), torch.randn(10, 2), k=3)


def test_classifier_learns_a_separable_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.full((60, 1, 28, 28), -1.0)
    y = torch.arange(3).repeat_interleave(20)
    for i, c in enumerate(y.tolist()):  # class c: a bar in rows 4c+4 .. 4c+8, plus noise
        x[i, 0, 4 * c + 4 : 4 * c + 8] = 1.0
    x = x + 0.2 * torch.randn(x.shape, generator=g)
    net = fit(x[::2], y[::2], 3, FitConfig(steps=60, seed=1))
    assert accuracy(net, x[1::2], y[1::2]) == 1.0

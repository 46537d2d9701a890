"""Few-shot generation metrics on feature vectors: pure functions of ``(N, F)`` tensors.

FID and KID are torchmetrics' (its Fréchet and polynomial-kernel MMD code, fed features we have
already computed, through a pass-through "extractor"); precision/recall/density/coverage follow
Naeem et al. 2020 (k-nearest-neighbour balls); memorisation and diversity are the few-shot
checks that plain FID misses: a generator that copies its K shots scores a good FID.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

from metagan.adaptation import nearest_shot_distance
from metagan.errors import ConfigError


class _Given(nn.Module):
    """A torchmetrics "feature extractor" that returns its input: we pass features, not images."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def _pair(real: Tensor, fake: Tensor, what: str, minimum: int) -> tuple[Tensor, Tensor]:
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ConfigError(
            f"{what} needs two (N, F) feature sets of equal F, got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    if real.shape[0] < minimum or fake.shape[0] < minimum:
        raise ConfigError(
            f"{what} needs at least {minimum} samples per set, got {real.shape[0]} real and {fake.shape[0]} generated"
        )
    return real.detach().double().cpu(), fake.detach().double().cpu()


def _torchmetrics():
    try:
        import torchmetrics.image  # noqa: F401
    except ImportError:
        raise ConfigError(
            "FID/KID need torchmetrics, which is not installed: pip install 'metagan[eval]'"
        ) from None


def fid(real: Tensor, fake: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to ``real`` (N, F) and ``fake`` (M, F)."""
    _torchmetrics()
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _pair(real, fake, "FID", 2)
    m = FrechetInceptionDistance(feature=_Given(real.shape[1]), reset_real_features=True)
    m.set_dtype(torch.float64)
    m.update(real, real=True)
    m.update(fake, real=False)
    return float(m.compute())


def kid(real: Tensor, fake: Tensor, *, subsets: int = 50, seed: int = 0) -> tuple[float, float]:
    """Kernel distance (unbiased MMD², cubic polynomial kernel) on unit-normalised features:
    mean and standard deviation over ``subsets`` random subsets of half the smaller set's size
    (a whole-set "subset" would be the same every time)."""
    _torchmetrics()
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = _pair(real, fake, "KID", 4)
    real = nn.functional.normalize(real, dim=1)
    fake = nn.functional.normalize(fake, dim=1)
    size = min(real.shape[0], fake.shape[0]) // 2
    with warnings.catch_warnings():  # "will save all extracted features": we pass them in
        warnings.simplefilter("ignore", UserWarning)
        m = KernelInceptionDistance(
            feature=_Given(real.shape[1]), subsets=subsets, subset_size=size
        )
    m.update(real, real=True)
    m.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):  # torchmetrics draws subsets from the global RNG
        torch.manual_seed(seed)
        mean, std = m.compute()
    return float(mean), float(std)


def _kth_radius(x: Tensor, k: int) -> Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row: (N,)."""
    d = torch.cdist(x, x)
    return d.kthvalue(k + 1, dim=1).values  # k + 1: the row itself is at distance 0


def prdc(real: Tensor, fake: Tensor, *, k: int = 3) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020) with k-NN balls.

    precision: share of fakes inside some real sample's k-NN ball; recall: share of reals
    inside some fake's k-NN ball; density: mean number of real balls holding a fake, over k;
    coverage: share of real samples whose ball holds at least one fake.
    """
    real, fake = _pair(real, fake, "precision/recall", k + 1)
    r_real = _kth_radius(real, k)  # (N,)
    r_fake = _kth_radius(fake, k)  # (M,)
    d = torch.cdist(real, fake)  # (N, M)
    inside = d < r_real[:, None]  # fake j within real i's ball
    return {
        "precision": float(inside.any(0).double().mean()),
        "recall": float((d < r_fake[None, :]).any(1).double().mean()),
        "density": float(inside.sum(0).double().mean() / k),
        "coverage": float((d.min(1).values < r_real).double().mean()),
    }


def memorisation_ratio(fake: Tensor, shots: Tensor, real: Tensor) -> float:
    """median nearest-shot distance of the generated samples / the same for the real non-shot
    images of the class. 0: the generator copies its shots; about 1: as new as another drawing."""
    ref = float(nearest_shot_distance(real, shots).median())
    if ref <= 0:
        raise ConfigError("memorisation ratio is undefined: a real non-shot image equals a shot")
    return float(nearest_shot_distance(fake, shots).median()) / ref


def diversity(x: Tensor) -> float:
    """Mean pairwise Euclidean distance between the rows of ``x`` (N >= 2, F)."""
    n = x.shape[0]
    if n < 2:
        raise ConfigError(f"diversity needs at least 2 samples, got {n}")
    d = torch.cdist(x.double(), x.double())
    return float(d.sum() / (n * (n - 1)))


# Two-sided 95% Student t quantiles for 1..30 degrees of freedom; 1.96 beyond.
_T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


def mean_ci(values) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student t over the values)."""
    v = torch.as_tensor(list(values), dtype=torch.float64)
    n = v.numel()
    if n == 0:
        raise ConfigError("mean_ci needs at least one value")
    mean = float(v.mean())
    if n == 1:
        return mean, math.nan
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.96
    return mean, t * float(v.std(unbiased=True)) / math.sqrt(n)


def bootstrap_ci(stat, groups: list, *, resamples: int = 200, seed: int = 0) -> tuple[float, float]:
    """``stat(groups)`` and the half-width of a 95% percentile bootstrap interval, resampling
    whole groups (classes) with replacement: for pooled statistics such as FID."""
    value = stat(groups)
    gen = torch.Generator().manual_seed(seed)
    n = len(groups)
    draws = []
    for _ in range(resamples):
        idx = torch.randint(n, (n,), generator=gen).tolist()
        draws.append(stat([groups[i] for i in idx]))
    d = torch.tensor(draws, dtype=torch.float64)
    lo, hi = torch.quantile(d, torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
    return value, (hi - lo) / 2

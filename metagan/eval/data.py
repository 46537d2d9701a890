"""What an evaluation runs on: its settings (:class:`EvalConfig`) and its classes, one fixed,
seeded order of images per class (:class:`ClassData`; meta-test classes, or meta-train
validation classes for the protocol's choices)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from metagan import config
from metagan.errors import ConfigError, DataError
from metagan.eval import free
from metagan.eval.classifier import FitConfig
from metagan.eval.features import Features
from metagan.fewshot import check_mix


@dataclass(frozen=True, kw_only=True)
class EvalConfig:
    shots: tuple[int, ...] = (1, 5)  # K values of the main table
    steps: int | None = None  # adaptation steps S; None: the checkpoints' common inner.steps
    # the adaptation curves go on to this step (sparsely after S); None: S. The table's rows
    # and the augmentation protocol use step S.
    curve_steps: int | None = None
    num: int = 32  # samples per class
    augment_k: tuple[int, ...] = (1, 5)  # real images per class in the augmentation protocol
    augment_num: int = 64  # generated images per class there (512 in the F2GAN protocol)
    # Candidate mix ratios (share of each classifier batch drawn from generated images),
    # classifier steps of the augmentation arms and strengths of each free part; one of each
    # is chosen on validation classes from the meta-train side (never the meta-test classes).
    augment_mix: tuple[float, ...] = (0.1, 0.25, 0.5)
    augment_steps: tuple[int, ...] = (200, 400)
    strengths: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(free.CANDIDATES))
    val_classes: int = 20  # meta-train classes the choice is made on
    classifier: FitConfig = field(default_factory=lambda: FitConfig(steps=400))
    bootstrap: int = 100  # class resamples for the FID confidence intervals
    classes: int = 0  # evaluate a seeded random subset of this many meta-test classes; 0 = all
    seed: int = 0

    def __post_init__(self):
        for key in ("num", "augment_num", "bootstrap"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{key} must be a positive integer, got {v!r}")
        if isinstance(self.classes, bool) or not isinstance(self.classes, int) or self.classes < 0:
            raise ConfigError(f"classes must be an integer >= 0 (0 = all), got {self.classes!r}")
        if self.num < 4:
            raise ConfigError(f"num must be >= 4 samples per class (for KID/PRDC), got {self.num}")
        for k in (*self.shots, *self.augment_k):
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise ConfigError(f"shot counts must be positive integers, got {k!r}")
        if not self.shots:
            raise ConfigError("shots needs at least one K, e.g. 1 5")
        if self.steps is not None and self.steps < 0:
            raise ConfigError(f"steps must be >= 0, got {self.steps}")
        if self.curve_steps is not None and (self.curve_steps < 0 or self.curve_steps > 1000):
            raise ConfigError(f"curve_steps must be in 0..1000, got {self.curve_steps}")
        if not self.augment_mix or not self.augment_steps:
            raise ConfigError("augment_mix and augment_steps need at least one candidate each")
        for r in self.augment_mix:
            check_mix(r)
        for v in (*self.augment_steps, self.val_classes):
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise ConfigError(f"augment_steps and val_classes must be integers >= 2, got {v!r}")
        free.check_candidates(self.strengths)


@dataclass
class ClassData:
    """The meta-test classes' images in one fixed, seeded order per class."""

    names: list[str]
    images: list[Tensor]  # per class (N_c, C, H, W), permuted: shots are the first K

    def split(self, k: int) -> tuple[Tensor, list[Tensor]]:
        """shots (T, k, C, H, W) and the remaining images of each class."""
        return torch.stack([x[:k] for x in self.images]), [x[k:] for x in self.images]


def load_classes(
    features: Features, registries, seed: int, limit: int = 0
) -> tuple[ClassData, object]:
    """The meta-test classes of the split the extractor was fitted with (``limit`` > 0: a
    seeded random subset of that many, in split order)."""
    from metagan.session import Session

    s = Session(config.from_dict({"data": features.data}), registries)
    names = [c.name for c in s.dataset.classes]
    test = [names[i] for i in s.split[1]]
    if not test:
        raise ConfigError(
            "the data config holds out no meta-test classes (data.test_fraction = 0): there is "
            "nothing unseen to evaluate on; fit features on a split with meta-test classes"
        )
    if test != features.test_classes:
        raise DataError(
            f"the dataset's meta-test classes differ from those the extractor {features.path} "
            "recorded; the data changed since fit-features: fit it again"
        )
    chosen = list(s.split[1])
    if limit:
        if limit < 2 or limit > len(chosen):
            raise ConfigError(
                f"--classes {limit} is out of range: the split has {len(chosen)} meta-test "
                f"classes; pick 2..{len(chosen)} (0 = all)"
            )
        chosen = _pick(chosen, limit, seed)
    return _class_data(s, chosen, seed), s


def curve_points(steps: int, curve_steps: int | None) -> list[int]:
    """The adaptation steps a curve is scored at: every step up to S, then (up to
    ``curve_steps``) a few more, since each point adapts afresh from the initialisation."""
    last = steps if curve_steps is None else max(steps, curve_steps)
    extra = {s for s in (7, 10, 15, 20, 30, 50, 100) if steps < s < last}
    return sorted({*range(steps + 1), *extra, last})


def validation_classes(session, count: int, seed: int) -> ClassData:
    """``count`` seeded meta-train classes (all of them when there are fewer): where the
    augmentation protocol's mix ratio and classifier steps are chosen, so that no choice is
    made on the meta-test classes a table reports."""
    train = list(session.split[0])
    return _class_data(session, _pick(train, min(count, len(train)), seed + 1), seed)


def _pick(indices: list[int], n: int, seed: int) -> list[int]:
    order = torch.randperm(len(indices), generator=torch.Generator().manual_seed(seed))
    return [indices[j] for j in sorted(order[:n].tolist())]


def _class_data(session, chosen: list[int], seed: int) -> ClassData:
    names = [c.name for c in session.dataset.classes]
    images = []
    for i in chosen:
        x = session.cache.get(i)
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed * 7919 + i))
        images.append(x[perm])
    return ClassData([names[i] for i in chosen], images)

"""``metagan eval fit-features``: the domain feature extractor, trained on meta-train classes.

Inception features were learned on ImageNet photographs and say little about 28-px strokes;
a small classifier trained on the dataset's own meta-train classes (Beckham et al. 2022 do this
for Omniglot/EMNIST) gives a 64-d embedding in which FID is well estimated from a few hundred
images. The meta-test classes are never seen, so the extractor cannot favour a generator that
saw them. Its accuracy on held-out drawings of the training classes is recorded with it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch

from metagan import checkpoint
from metagan._version import __version__
from metagan.errors import CheckpointError, DataError
from metagan.eval.classifier import ConvNet, FitConfig, accuracy, fit

FORMAT = "metagan-features"
VERSION = 1
SPLIT_KEYS = ("dataset", "root", "seed", "image_size", "invert", "test_fraction", "test_groups")


@dataclass
class Features:
    """A fitted extractor and what it was fitted on."""

    net: ConvNet
    data: dict  # the [data] config section whose split defined the classes
    train_classes: list[str]  # the classes it was trained on (meta-train)
    test_classes: list[str]  # the meta-test classes it never saw
    accuracy: float  # on held-out drawings of the training classes
    path: Path | None = None

    @property
    def dim(self) -> int:
        return self.net.dim


def fit_features(
    session, cfg: FitConfig, *, holdout: float = 0.2, dim: int = 64, log=print
) -> Features:
    """Train the extractor on every meta-train class of ``session``'s split.

    :param holdout: share of each class's drawings kept out of training to measure accuracy.
    """
    if not 0 < holdout < 1:
        raise DataError(f"holdout must be in (0, 1), got {holdout}")
    train_idx, test_idx = session.split
    gen = torch.Generator().manual_seed(cfg.seed)
    xs, ys, xt, yt = [], [], [], []
    for label, c in enumerate(train_idx):
        imgs = session.cache.get(c)  # (N, 1, S, S)
        n_out = max(1, round(holdout * imgs.shape[0]))
        if imgs.shape[0] - n_out < 1:
            raise DataError(
                f"class {session.dataset.classes[c].name!r} has {imgs.shape[0]} images; "
                "fit-features needs at least 2 per class"
            )
        perm = torch.randperm(imgs.shape[0], generator=gen)
        xt.append(imgs[perm[:n_out]])
        xs.append(imgs[perm[n_out:]])
        yt += [label] * n_out
        ys += [label] * (imgs.shape[0] - n_out)
    x, y = torch.cat(xs), torch.tensor(ys)
    log(
        f"fit-features: {len(train_idx)} meta-train classes, {x.shape[0]} training and "
        f"{len(yt)} held-out images, {cfg.steps} steps"
    )
    net = fit(x, y, len(train_idx), cfg, dim=dim)
    acc = accuracy(net, torch.cat(xt), torch.tensor(yt))
    names = [c.name for c in session.dataset.classes]
    return Features(
        net=net,
        data=session.cfg.to_dict()["data"],
        train_classes=[names[i] for i in train_idx],
        test_classes=[names[i] for i in test_idx],
        accuracy=acc,
    )


def save(features: Features, path: str | Path, fit_cfg: FitConfig) -> None:
    state = {
        "format": FORMAT,
        "version": VERSION,
        "metagan": __version__,
        "torch": str(torch.__version__),
        "arch": features.net.arch(),
        "state_dict": features.net.state_dict(),
        "data": features.data,
        "train_classes": features.train_classes,
        "test_classes": features.test_classes,
        "accuracy": features.accuracy,
        "fit": dataclasses.asdict(fit_cfg),
    }
    checkpoint.write(path, {**state, checkpoint.DIGEST: checkpoint.digest(state)})


def load(path: str | Path) -> Features:
    """Read an extractor written by :func:`save` (``torch.load(weights_only=True)``)."""
    path = Path(path)
    state = checkpoint.read(path, "feature extractor", "metagan eval fit-features")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a metagan feature extractor; write one with `metagan eval fit-features`"
        )
    checkpoint.verify(path, state)  # the digest of its weights, when it has one
    net = ConvNet(**state["arch"])
    net.load_state_dict(state["state_dict"])
    return Features(
        net=net.eval(),
        data=state["data"],
        train_classes=list(state["train_classes"]),
        test_classes=list(state["test_classes"]),
        accuracy=float(state["accuracy"]),
        path=path,
    )

"""Few-shot tasks: meta-train/meta-test class splits, an image cache and a resumable task sampler.

A task is one class with K support images (what the generator adapts to) and Q query images
(held out from adaptation, used for the meta-objective or evaluation). :class:`TaskSampler`
draws batches of T tasks as ``(T, K, C, H, W)`` tensors from a :class:`torch.Generator`, whose
state goes into the checkpoint, so a resumed run draws exactly the tasks the uninterrupted run
would have drawn.
"""

from __future__ import annotations

import difflib
import random
from dataclasses import dataclass

import torch

from metagan.data.base import ClassDataset
from metagan.data.images import (
    check_channels,
    check_image_size,
    check_invert,
    to_pixels,
    uint8_to_tensor,
)
from metagan.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    MetaganError,
    PluginError,
    cause,
)

# data.task_augment: how many new classes each meta-train class makes (task augmentation, the
# usual Omniglot meta-learning practice: a rotated character is a different character).
TASK_AUGMENTS = {
    "none": 1,
    "rot90": 4,  # rotations by 0, 90, 180 and 270 degrees
    "dihedral": 8,  # those 4, each also mirrored left-right
}


def augment_variant(pixels: torch.Tensor, variant: int) -> torch.Tensor:
    """Variant ``v`` of a class's images ``(N, C, S, S)``: mirrored left-right when ``v >= 4``,
    then rotated by ``90 * (v % 4)`` degrees counter-clockwise; variant 0 is the images as they are."""
    if variant >= 4:
        pixels = pixels.flip(-1)
    return torch.rot90(pixels, variant % 4, dims=(-2, -1)) if variant % 4 else pixels


@dataclass
class TaskBatch:
    """T few-shot tasks, one class each."""

    support: torch.Tensor  # (T, K, C, H, W) in [-1, 1]
    query: torch.Tensor  # (T, Q, C, H, W) in [-1, 1]; Q may be 0
    classes: torch.Tensor  # (T,) long, dataset class indices

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> TaskBatch:
        """The same batch on ``device``."""
        return TaskBatch(
            support=self.support.to(device, non_blocking=non_blocking),
            query=self.query.to(device, non_blocking=non_blocking),
            classes=self.classes.to(device, non_blocking=non_blocking),
        )

    @property
    def tasks(self) -> int:
        return self.support.shape[0]

    @property
    def shots(self) -> int:
        return self.support.shape[1]

    @property
    def queries(self) -> int:
        return self.query.shape[1]


def split_classes(
    dataset: ClassDataset,
    *,
    test_fraction: float = 0.2,
    test_groups: list[str] | None = None,
    seed: int = 0,
) -> tuple[list[int], list[int]]:
    """Disjoint, sorted meta-train and meta-test class indices.

    Where the dataset has groups, whole groups go to meta-test (a new alphabet is the harder
    and standard test); groups are drawn in a seeded random order until the test side holds at
    least ``test_fraction`` of the classes, always leaving one group for training. Classes
    without a group are split by class. A dataset with fewer than two groups is split by class.

    :param test_fraction: share of classes for meta-test, in [0, 1); 0 puts every class in
        meta-train (nothing to evaluate on, a generator to ship); unused with ``test_groups``.
    :param test_groups: explicit meta-test groups (e.g. ``["Greek", "Latin"]``).
    :param seed: the same seed gives the same split.
    """
    n = len(dataset.classes)
    groups = dataset.groups()
    if test_groups is not None:
        names = [test_groups] if isinstance(test_groups, str) else list(test_groups)
        return _split_named_groups(dataset, names, groups)
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
        raise ConfigError(f"test_fraction must be a number in [0, 1), got {test_fraction!r}")
    if not 0.0 <= test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in [0, 1), got {test_fraction!r}")
    if test_fraction == 0:
        return list(range(n)), []
    if n < 2:
        raise DataError(
            f"cannot split {n} class(es) into meta-train and meta-test; the dataset needs >= 2"
        )
    rng = random.Random(seed)
    target = test_fraction * n
    grouped = [i for i, c in enumerate(dataset.classes) if c.group is not None]
    if len(groups) >= 2:
        order = groups[:]
        rng.shuffle(order)
        size = {g: 0 for g in groups}
        for i in grouped:
            size[dataset.classes[i].group] += 1
        chosen: set[str] = set()
        count = 0
        for g in order[:-1]:  # the last group in the order always stays in meta-train
            if count >= target:
                break
            chosen.add(g)
            count += size[g]
        test = [i for i in grouped if dataset.classes[i].group in chosen]
        loose = [i for i, c in enumerate(dataset.classes) if c.group is None]
        rng.shuffle(loose)
        test += loose[: round(test_fraction * len(loose))]
    else:
        order = list(range(n))
        rng.shuffle(order)
        k = min(n - 1, max(1, round(target)))
        test = order[:k]
    test_set = set(test)
    train = [i for i in range(n) if i not in test_set]
    return train, sorted(test_set)


def _split_named_groups(
    dataset: ClassDataset, test_groups: list[str], groups: list[str]
) -> tuple[list[int], list[int]]:
    if not groups:
        raise DataError(
            f"{type(dataset).__name__} has no groups, so test_groups cannot be used; "
            "use test_fraction to split by class"
        )
    if not test_groups:
        raise ConfigError(f"test_groups is empty; name at least one of: {', '.join(groups)}")
    for g in test_groups:
        if g not in groups:
            close = difflib.get_close_matches(str(g), groups, n=3, cutoff=0.6)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
            raise DataError(f"unknown test group {g!r}; {hint}valid groups: {', '.join(groups)}")
    chosen = set(test_groups)
    test = [i for i, c in enumerate(dataset.classes) if c.group in chosen]
    train = [i for i, c in enumerate(dataset.classes) if c.group not in chosen]
    if not train:
        raise DataError(
            f"test_groups {sorted(chosen)} take every class; leave at least one group for training"
        )
    return train, test


class ImageCache:
    """Loads, resizes and caches each class once; :meth:`get` gives ``(N, C, S, S)`` floats.

    Pixels are kept as uint8 (Pillow resizes in 8 bits anyway, so nothing is lost): the full
    glyphs dataset at 64x64 takes ~100 MB instead of ~400 MB as float32.

    :param channels: 1 (grayscale, padded to square) or 3 (RGB, centre-cropped); see
        :mod:`metagan.data.images`.
    """

    def __init__(
        self,
        dataset: ClassDataset,
        *,
        image_size: int,
        invert: bool,
        channels: int = 1,
        who: str | None = None,
    ):
        self.dataset = dataset
        # how errors name the dataset's plugin, e.g. "dataset 'mine' (plugin 'my-plugin')"
        self.who = who or f"dataset {type(dataset).__name__}"
        self.image_size = check_image_size(image_size)
        self.channels = check_channels(channels)
        self.invert = bool(invert)
        check_invert(self.channels, self.invert)
        self._pixels: dict[int, torch.Tensor] = {}

    def pixels(self, index: int) -> torch.Tensor:
        """The class's images as ``(N, C, S, S)`` uint8 (255 = white paper)."""
        index = self.dataset.check_index(index)
        out = self._pixels.get(index)
        if out is None:
            try:
                images = self.dataset.load_class(index)
                out = to_pixels(images, self.image_size, self.channels)  # (N, C, S, S)
                out = torch.from_numpy(out)
            except MetaganError:
                raise
            except Exception as exc:  # noqa: BLE001 - the dataset plugin's fault, named
                raise PluginError(
                    f"{self.who} failed to load class {index} (it must return a list of PIL "
                    f"images): {cause(exc)}"
                ) from None
            self._pixels[index] = out
        return out

    def get(self, index: int) -> torch.Tensor:
        """Class ``index`` as ``(N, C, S, S)`` float32 in [-1, 1]."""
        return uint8_to_tensor(self.pixels(index), invert=self.invert)

    def __len__(self) -> int:
        return len(self._pixels)


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class TaskSampler:
    """Draws batches of few-shot tasks from a fixed list of classes, reproducibly.

    :param cache: where the images come from.
    :param class_indices: the classes tasks are drawn from (e.g. the meta-train split).
    :param shots: K, support images per task (>= 1).
    :param queries: Q, query images per task (>= 0), disjoint from the support images.
    :param seed: seeds the task stream; :meth:`state_dict` captures its position.
    :param augment: task augmentation (:data:`TASK_AUGMENTS`): ``"rot90"`` makes each class 4
        classes (its images rotated by 0/90/180/270 degrees), ``"dihedral"`` 8 (also mirrored);
        a task draws one such class and applies its transform to all its images. Only
        :meth:`sample` augments; :meth:`for_classes` gives the images as they are.

    Every class must have at least ``shots + queries`` images; that is checked here, from the
    dataset's class list, so that a bad setting fails at start-up rather than mid-training.
    """

    def __init__(
        self,
        cache: ImageCache,
        class_indices: list[int],
        *,
        shots: int,
        queries: int,
        seed: int,
        augment: str = "none",
    ):
        if augment not in TASK_AUGMENTS:
            raise ConfigError(
                f"data.task_augment must be one of {', '.join(TASK_AUGMENTS)}, got {augment!r}"
            )
        self.augment = augment
        self.variants = TASK_AUGMENTS[augment]
        self.cache = cache
        self.shots = _check_count("shots", shots, 1)
        self.queries = _check_count("queries", queries, 0)
        dataset = cache.dataset
        self.class_indices = [dataset.check_index(i) for i in class_indices]
        if not self.class_indices:
            raise DataError("the task sampler got no classes to draw tasks from")
        for i in self.class_indices:
            self._check_class(i, dataset.classes[i].num_images)
        self.seed = int(seed)
        self._generator = torch.Generator().manual_seed(self.seed)
        self._batches = 0

    def _check_class(self, index: int, count: int) -> None:
        need = self.shots + self.queries
        if count < need:
            name = self.cache.dataset.classes[index].name
            raise DataError(
                f"class {name!r} has {count} images but shots + queries = "
                f"{self.shots} + {self.queries} needs at least {need}; "
                "lower shots/queries or leave the class out"
            )

    def _task(self, index: int, generator: torch.Generator) -> torch.Tensor:
        """``(K + Q, C, S, S)`` uint8 images of class ``index``, in a random order."""
        pixels = self.cache.pixels(index)  # (N, C, S, S)
        self._check_class(index, pixels.shape[0])  # the dataset's count may have been wrong
        pick = torch.randperm(pixels.shape[0], generator=generator)[: self.shots + self.queries]
        return pixels[pick]

    def _batch(
        self, classes: list[int], generator: torch.Generator, variants: list[int] | None = None
    ) -> TaskBatch:
        variants = variants or [0] * len(classes)
        pixels = torch.stack(
            [augment_variant(self._task(i, generator), v) for i, v in zip(classes, variants)]
        )  # (T, K+Q, C, S, S)
        x = uint8_to_tensor(pixels, invert=self.cache.invert)  # (T, K+Q, C, S, S)
        return TaskBatch(
            support=x[:, : self.shots].contiguous(),  # (T, K, C, S, S)
            query=x[:, self.shots :].contiguous(),  # (T, Q, C, S, S)
            classes=torch.tensor(classes, dtype=torch.long),  # (T,)
        )

    def sample(self, tasks: int) -> TaskBatch:
        """T tasks from random classes: without replacement when T <= the number of classes,
        otherwise every class once per round (so classes repeat as evenly as possible). With
        task augmentation the classes are (class, variant) pairs; ``classes`` of the batch
        holds the dataset's class index."""
        tasks = _check_count("tasks", tasks, 1)
        c = len(self.class_indices)
        picks: list[int] = []
        while len(picks) < tasks:
            perm = torch.randperm(c * self.variants, generator=self._generator)
            picks += perm[: tasks - len(picks)].tolist()
        self._batches += 1
        classes = [self.class_indices[j % c] for j in picks]
        return self._batch(classes, self._generator, [j // c for j in picks])

    def for_classes(self, class_indices: list[int], *, seed: int) -> TaskBatch:
        """One task per listed class (in that order), from its own generator: the same seed
        gives the same images, and the :meth:`sample` stream is not disturbed."""
        dataset = self.cache.dataset
        classes = [dataset.check_index(i) for i in class_indices]
        if not classes:
            raise DataError("for_classes needs at least one class index")
        for i in classes:
            self._check_class(i, dataset.classes[i].num_images)
        return self._batch(classes, torch.Generator().manual_seed(int(seed)))

    def state_dict(self) -> dict:
        """The stream's position; tensors and ints only, so ``torch.load(weights_only=True)``
        reads it back."""
        return {
            "generator": self._generator.get_state(),  # uint8 tensor
            "batches": self._batches,
            "seed": self.seed,
            "shots": self.shots,
            "queries": self.queries,
            "num_classes": len(self.class_indices),
            "variants": self.variants,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue the stream where :meth:`state_dict` left it.

        Raises a CheckpointError if the sampler is set up differently (shots, queries or the
        number of classes), because the resumed stream would then not be the original one.
        """
        missing = [k for k in ("generator", "batches") if k not in state]
        if missing:
            raise CheckpointError(
                f"task sampler state lacks {', '.join(missing)}; "
                "expected the dict from TaskSampler.state_dict()"
            )
        for key, mine in (
            ("shots", self.shots),
            ("queries", self.queries),
            ("num_classes", len(self.class_indices)),
            ("variants", self.variants),  # data.task_augment (1: none)
        ):
            theirs = state.get(key, mine)
            if int(theirs) != mine:
                raise CheckpointError(
                    f"task sampler state was saved with {key}={int(theirs)} but this run has "
                    f"{key}={mine}; resume with the original setting"
                )
        self._generator.set_state(state["generator"])
        self._batches = int(state["batches"])

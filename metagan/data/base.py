"""The dataset abstraction every few-shot dataset implements: group -> class -> images.

A few-shot task is one class: K support images and Q query images of it. A dataset therefore
only has to say which classes it has (:attr:`ClassDataset.classes`, cheap, known at construction)
and how to load the images of one class (:meth:`ClassDataset.load_class`, possibly slow, called
lazily and cached by :class:`metagan.data.tasks.ImageCache`). Groups (Omniglot's alphabets) let
:func:`metagan.data.tasks.split_classes` keep whole alphabets out of meta-training, which is the
standard and harder protocol.
"""

from __future__ import annotations

import abc
import difflib
import operator
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from metagan.errors import DataError


@dataclass(frozen=True)
class ClassRef:
    """One class of a dataset, known without loading its images."""

    name: str  # e.g. "Greek/character07"; unique within the dataset
    group: str | None  # e.g. "Greek" (the alphabet); None when the dataset has no groups
    num_images: int


class ClassDataset(abc.ABC):
    """A class hierarchy group -> class -> images. Subclasses set ``self.classes`` in __init__.

    A class's index is its position in :attr:`classes`, and that order is deterministic (sorted
    names, or generation order for a procedural dataset), so an index saved in a checkpoint or a
    split means the same class on the next run.

    :param root: where the data lives (a file or folder); ``None`` for generated datasets.
    :param seed: seeds procedural datasets; file-backed datasets accept and ignore it so that
        every dataset is constructed the same way.
    """

    classes: list[ClassRef]
    #: The images' channels: 1 (grayscale: strokes, dark on white) or 3 (colour photographs).
    #: ``data.channels = 0`` (the default) trains with this; the images :meth:`load_class`
    #: returns are converted to it (or to an explicit ``data.channels``) whatever their mode.
    #: A class attribute for a fixed dataset; a file-backed dataset that reads it from its
    #: files sets it in ``__init__`` (the ``folder`` dataset: 3 if any file is colour).
    channels: int = 1

    def __init__(self, *, root: str | os.PathLike | None = None, seed: int = 0):
        self.root = Path(root).expanduser() if root is not None else None
        self.seed = int(seed)
        self.classes = []
        self._index_by_name: dict[str, int] | None = None

    @classmethod
    def download(cls, root: str | os.PathLike, *, parts=None) -> list[Path]:
        """Fetch this dataset's files into the folder ``root`` for ``metagan data download``:
        checksum-verified, written atomically, files already there kept; returns their paths.

        :param parts: which of the dataset's files (its own names); None: its default set.

        Datasets that can fetch their files override this; the default says there is nothing
        to download.
        """
        raise DataError(f"dataset {cls.__name__} has nothing to download")

    @abc.abstractmethod
    def load_class(self, index: int) -> list[Image.Image]:
        """The images of class ``index``: any size and mode (one-channel datasets: dark strokes
        on white; colour ones: RGB photographs), converted by the image cache."""

    def __len__(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        root = f", root={str(self.root)!r}" if self.root is not None else ""
        return (
            f"{type(self).__name__}({len(self.classes)} classes, "
            f"{len(self.groups())} groups{root}, seed={self.seed})"
        )

    def groups(self) -> list[str]:
        """Sorted distinct non-None groups (empty when the dataset has no groups)."""
        return sorted({c.group for c in self.classes if c.group is not None})

    def class_index(self, name: str) -> int:
        """The index of the class called ``name``; an unknown name raises with suggestions."""
        index = getattr(self, "_index_by_name", None)  # a subclass may skip our __init__
        if index is None or len(index) != len(self.classes):
            index = self._index_by_name = {c.name: i for i, c in enumerate(self.classes)}
        try:
            return index[name]
        except KeyError:
            pass
        names = [c.name for c in self.classes]
        close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.6)
        hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
        examples = ", ".join(repr(n) for n in names[:3])
        raise DataError(
            f"unknown class {name!r} in {type(self).__name__}; {hint}"
            f"valid names are like {examples} ({len(names)} classes)"
        )

    def check_index(self, index: int) -> int:
        """``index`` as an int if it names a class, else a DataError naming the valid range."""
        n = len(self.classes)
        try:
            i = operator.index(index)  # accepts numpy and 0-d torch integers, rejects floats
        except TypeError:
            i = -1
        if isinstance(index, bool) or not 0 <= i < n:
            raise DataError(
                f"class index {index!r} is out of range for {type(self).__name__}: "
                f"valid indices are 0..{n - 1} ({n} classes)"
            )
        return i

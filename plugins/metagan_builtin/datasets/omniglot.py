"""``omniglot``: the Omniglot handwritten characters (Lake et al., 2015), read from the official zips.

``root`` may be

- one official zip (``images_background.zip``, ``images_evaluation.zip``,
  ``images_background_small1.zip``, ``images_background_small2.zip``),
- one of them extracted (the folder holding ``<Alphabet>/character<NN>/*.png``), or
- a folder holding several of those zips and/or extracted folders (what
  ``metagan data download omniglot --root DIR`` leaves behind); all are read, or only the one
  named by ``split``.

Zips are read in place with :mod:`zipfile` (nothing is extracted to disk), one class at a time
when it is first needed. A class is ``"<Alphabet>/character<NN>"`` and its group is the
alphabet. The small splits are subsets of ``images_background``; a class found in more than
one source is read from the first (background, evaluation, small1, small2 order).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from metagan.data.base import ClassDataset, ClassRef
from metagan.data.images import open_image
from metagan.errors import ConfigError, DataError

SPLITS = (
    "images_background",
    "images_evaluation",
    "images_background_small1",
    "images_background_small2",
)
_EXPECTED = (
    "expected an Omniglot zip (images_background.zip, images_evaluation.zip, "
    "images_background_small1.zip or images_background_small2.zip), one of them extracted, "
    "or a folder holding them; `metagan data download omniglot --root DIR` fetches them"
)


@dataclass(frozen=True)
class _Source:
    split: str
    path: Path
    is_zip: bool


class OmniglotDataset(ClassDataset):
    """Omniglot: 50 alphabets, 1,623 characters, 20 drawings each (105 x 105, black on white).

    :param root: an Omniglot zip, an extracted split, or a folder holding several.
    :param seed: unused (the data is fixed); accepted like every dataset's.
    :param split: read only this split (e.g. ``"images_background"``) from a folder of several.
    """

    channels = 1  # grayscale drawings

    def __init__(
        self,
        *,
        root: str | os.PathLike | None = None,
        seed: int = 0,
        split: str | None = None,
    ):
        super().__init__(root=root, seed=seed)
        if split is not None and split not in SPLITS:
            raise ConfigError(
                f"unknown Omniglot split {split!r}; valid splits: {', '.join(SPLITS)}"
            )
        if self.root is None:
            raise DataError(
                f"the omniglot dataset needs a root path (--data-root PATH, or data.root); {_EXPECTED}"
            )
        if not self.root.exists():
            raise DataError(f"Omniglot root {str(self.root)!r} does not exist; {_EXPECTED}")
        if not (self.root.is_file() or self.root.is_dir()):  # a device, a pipe, a socket
            raise DataError(
                f"Omniglot root {str(self.root)!r} is neither a file nor a folder; {_EXPECTED}"
            )
        self.split = split
        self.sources = self._find_sources(self.root, split)
        self._zips: dict[Path, zipfile.ZipFile] = {}
        self._members: list[tuple[_Source, list[str]]] = []  # class index -> where its files are
        seen: set[str] = set()
        found: list[tuple[str, _Source, list[str]]] = []
        for source in self.sources:
            for name, files in sorted(self._list(source).items()):
                if name not in seen:
                    seen.add(name)
                    found.append((name, source, files))
        if not found:
            where = ", ".join(str(s.path) for s in self.sources)
            raise DataError(
                f"no Omniglot images (<Alphabet>/character<NN>/*.png) found in {where}; {_EXPECTED}"
            )
        for name, source, files in sorted(found, key=lambda f: f[0]):
            self.classes.append(ClassRef(name, name.split("/", 1)[0], len(files)))
            self._members.append((source, files))

    @classmethod
    def download(cls, root, *, parts=None) -> list[Path]:
        """Fetch the official zips into ``root`` (md5-checked, atomic; present ones are kept).

        :param parts: splits to fetch (default ``images_background`` and ``images_evaluation``).
        """
        from metagan_builtin.datasets.omniglot_download import download_omniglot

        if parts is None:
            return download_omniglot(root)
        return download_omniglot(root, splits=tuple(parts))

    @staticmethod
    def _find_sources(root: Path, split: str | None) -> list[_Source]:
        """The zips / extracted folders under ``root``, in :data:`SPLITS` order."""
        if root.is_file():
            if not zipfile.is_zipfile(root):
                raise DataError(f"{str(root)!r} is not a zip file; {_EXPECTED}")
            stem = root.name.removesuffix(".zip")
            if split is not None and stem != split:
                raise DataError(f"{str(root)!r} is not the {split!r} split; {_EXPECTED}")
            return [_Source(stem, root, True)]
        sources = []
        for name in SPLITS if split is None else (split,):
            folder, archive = root / name, root / f"{name}.zip"
            if folder.is_dir():  # an extracted copy is faster to read than the zip
                sources.append(_Source(name, folder, False))
            elif archive.is_file():
                sources.append(_Source(name, archive, True))
        if sources:
            return sources
        if split is None and _looks_extracted(root):  # root is itself an extracted split
            return [_Source(root.name, root, False)]
        want = f"{split}.zip or {split}/" if split else _EXPECTED
        raise DataError(f"no Omniglot data in {str(root)!r}; {want}")

    def _zip(self, path: Path) -> zipfile.ZipFile:
        z = self._zips.get(path)
        if z is None:
            try:
                z = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise DataError(
                    f"cannot read {str(path)!r} ({exc}); it may be an incomplete download: "
                    "delete it and run `metagan data download omniglot --root DIR`"
                ) from None
            self._zips[path] = z
        return z

    def _list(self, source: _Source) -> dict[str, list[str]]:
        """class name -> sorted member names (zip) or file paths (folder) of its images."""
        out: dict[str, list[str]] = {}
        if source.is_zip:
            names = self._zip(source.path).namelist()
            for n in names:
                parts = PurePosixPath(n).parts
                if len(parts) < 3 or not n.lower().endswith(".png") or "__MACOSX" in parts:
                    continue
                out.setdefault(f"{parts[-3]}/{parts[-2]}", []).append(n)
        else:
            for f in source.path.glob("**/*.png"):
                rel = f.relative_to(source.path).parts
                if len(rel) < 3 or any(p.startswith(".") for p in rel):
                    continue
                out.setdefault(f"{rel[-3]}/{rel[-2]}", []).append(str(f))
        return {k: sorted(v) for k, v in out.items()}

    def load_class(self, index: int) -> list[Image.Image]:
        """The 20 drawings of one character, mode "L" (black strokes on white), 105 x 105."""
        source, files = self._members[self.check_index(index)]
        if not source.is_zip:
            return [open_image(Path(f)) for f in files]
        z = self._zip(source.path)
        images = []
        for member in files:
            try:
                data = z.read(member)
            except (OSError, zipfile.BadZipFile, ValueError) as exc:
                raise DataError(f"cannot read {member!r} in {str(source.path)!r}: {exc}") from None
            images.append(open_image(f"{source.path}:{member}", data))
        return images

    def close(self) -> None:
        """Close the zip files (they are reopened if needed)."""
        for z in self._zips.values():
            z.close()
        self._zips.clear()

    def __getstate__(self) -> dict:  # open zip handles cannot be pickled (DataLoader workers)
        state = self.__dict__.copy()
        state["_zips"] = {}
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


def _looks_extracted(folder: Path) -> bool:
    """Whether ``folder`` holds ``<Alphabet>/character<NN>/*.png``."""
    for alphabet in folder.iterdir():
        if alphabet.is_dir():
            for character in alphabet.iterdir():
                if character.is_dir() and any(character.glob("*.png")):
                    return True
    return False

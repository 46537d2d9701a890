"""``folder``: the user's own classes, one subfolder of images per class.

Two layouts are recognised::

    root/<class>/*.png                  # classes without groups
    root/<group>/<class>/*.png          # grouped, like Omniglot's alphabets

The second is chosen when every subfolder of ``root`` holds only folders. Images may be png,
jpg, jpeg, bmp or gif, of any sizes (they are resized; photographs centre-cropped).

Channels come from the files: if any image is in a colour mode (RGB, a colour palette, CMYK,
...) the dataset is colour (``channels = 3``: photographs, never inverted), otherwise
grayscale (``channels = 1``: drawings with dark strokes on a light background, as before).
``data.channels`` = 1 or 3 converts either way.

Every image's header is read at construction (no pixels are decoded), so a file that is not an
image is reported before training starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

from metagan.data.base import ClassDataset, ClassRef
from metagan.data.images import image_files_or_error, image_is_colour, open_image
from metagan.errors import DataError

_LAYOUT = "expected root/<class>/*.png or root/<group>/<class>/*.png"


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _only_folders(folder: Path) -> bool:
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return bool(entries) and all(p.is_dir() for p in entries)


class FolderDataset(ClassDataset):
    """Classes read from a folder of class subfolders (optionally grouped one level up).

    :param root: the folder; see the module docstring for the layouts.
    :param seed: unused (the data is fixed); accepted like every dataset's.
    """

    def __init__(self, *, root: str | os.PathLike | None = None, seed: int = 0):
        super().__init__(root=root, seed=seed)
        if self.root is None:
            raise DataError(
                f"the folder dataset needs a root folder (--data-root DIR, or data.root); {_LAYOUT}"
            )
        if not self.root.exists():
            raise DataError(f"dataset folder {str(self.root)!r} does not exist; {_LAYOUT}")
        if not self.root.is_dir():
            raise DataError(f"dataset root {str(self.root)!r} is not a folder; {_LAYOUT}")
        top = _subfolders(self.root)
        if not top:
            raise DataError(f"dataset folder {str(self.root)!r} has no class subfolders; {_LAYOUT}")
        grouped = all(_only_folders(d) for d in top)
        self.grouped = grouped
        self._files: list[list[Path]] = []
        colour = False
        for d in top:
            for class_dir in _subfolders(d) if grouped else [d]:
                files = image_files_or_error(class_dir, "class folder")
                # every header is read (a file that is not an image is named now); the first
                # colour one settles the channels
                colour = any([image_is_colour(f) for f in files]) or colour
                name = f"{d.name}/{class_dir.name}" if grouped else d.name
                self.classes.append(ClassRef(name, d.name if grouped else None, len(files)))
                self._files.append(files)
        self.channels = 3 if colour else 1

    def load_class(self, index: int) -> list[Image.Image]:
        """The class's images, decoded now: mode "L" for a grayscale dataset, each file's own
        mode for a colour one (the image cache converts them); a file that fails to decode is
        named."""
        files = self._files[self.check_index(index)]
        return [open_image(f, gray=self.channels == 1) for f in files]

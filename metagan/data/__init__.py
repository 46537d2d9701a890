"""Few-shot data: datasets of classes, image conversion and task sampling.

- :mod:`metagan.data.base`: :class:`ClassDataset`, the interface dataset plugins implement.
- :mod:`metagan.data.images`: Pillow images <-> ``(N, C, S, S)`` tensors in [-1, 1] (C = 1 or 3).
- :mod:`metagan.data.grid`: sample grids (rows of tensors as one PNG).
- :mod:`metagan.data.tasks`: class splits, the image cache and the resumable task sampler.
"""

from metagan.data.base import ClassDataset, ClassRef
from metagan.data.grid import save_grid
from metagan.data.images import (
    IMAGE_EXTENSIONS,
    IMAGE_SIZES,
    read_image_dir,
    to_pil,
    to_tensor,
)
from metagan.data.tasks import ImageCache, TaskBatch, TaskSampler, split_classes

__all__ = [
    "IMAGE_EXTENSIONS",
    "IMAGE_SIZES",
    "ClassDataset",
    "ClassRef",
    "ImageCache",
    "TaskBatch",
    "TaskSampler",
    "read_image_dir",
    "save_grid",
    "split_classes",
    "to_pil",
    "to_tensor",
]

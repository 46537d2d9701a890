"""The built-in datasets plugin: ``glyphs`` (the default), ``omniglot`` and ``folder``.

Loaded through the ``metagan`` entry-point group like any third-party plugin (see the root
pyproject), so it shows up in ``metagan plugins`` and can be read as an example of how to add a
dataset.
"""

from __future__ import annotations

from metagan.plugins import hookimpl
from metagan_builtin.datasets.folder import FolderDataset
from metagan_builtin.datasets.glyphs import GlyphsDataset
from metagan_builtin.datasets.omniglot import OmniglotDataset

__all__ = ["FolderDataset", "GlyphsDataset", "OmniglotDataset", "metagan_register_datasets"]


@hookimpl
def metagan_register_datasets(registry):
    registry.add(
        "glyphs",
        GlyphsDataset,
        description="procedural Omniglot-like alphabets: 30 alphabets, ~1,250 characters x 20 "
        "drawings, generated from the seed (no files, no download)",
    )
    registry.add(
        "omniglot",
        OmniglotDataset,
        description="Omniglot handwritten characters read from the official zips "
        "(--data-root; `metagan data download omniglot --root DIR` fetches them)",
    )
    registry.add(
        "folder",
        FolderDataset,
        description="your own images: --data-root DIR with one subfolder per class "
        "(or DIR/<group>/<class>/)",
    )

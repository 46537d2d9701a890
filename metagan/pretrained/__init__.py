"""Checkpoints shipped with metagan, by name.

A shipped checkpoint is ``<name>.pt`` in this folder with its model card ``<name>.md`` beside
it (what it was trained on, how, and how good it is). Every ``--checkpoint`` of the command
line and :func:`metagan.load` accept such a name wherever they accept a path::

    metagan adapt --checkpoint omniglot-dagan --images my_five/ --out out/
    g = metagan.load("omniglot-dagan")
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

from metagan.errors import CheckpointError

FOLDER = Path(__file__).resolve().parent


def available() -> list[str]:
    """The names of the shipped checkpoints (those with a model card), sorted."""
    return sorted(p.stem for p in FOLDER.glob("*.pt") if p.with_suffix(".md").is_file())


def path(name: str) -> Path:
    """The file of the shipped checkpoint ``name``; an unknown name is a one-line error that
    lists the names there are (and the closest ones)."""
    names = available()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        have = ", ".join(names) if names else "none are installed"
        raise CheckpointError(
            f"no checkpoint file or shipped checkpoint named {name!r}{hint} "
            f"(shipped checkpoints: {have})"
        )
    return FOLDER / f"{name}.pt"


def model_card(name: str) -> str:
    """The model card of the shipped checkpoint ``name`` (Markdown)."""
    return path(name).with_suffix(".md").read_text()


def resolve(checkpoint: str | os.PathLike) -> Path:
    """A checkpoint argument → its file: an existing file, a path-like string (left for the
    checkpoint reader to report if missing), or else a shipped checkpoint's name."""
    p = Path(checkpoint)
    try:
        exists = p.exists()
    except OSError:  # a name too long: a path, for the checkpoint reader to report
        return p
    if exists or isinstance(checkpoint, Path) or _looks_like_path(str(checkpoint)):
        return p
    return path(str(checkpoint))


def _looks_like_path(text: str) -> bool:
    return os.sep in text or "/" in text or text.endswith(".pt") or text.startswith(".")

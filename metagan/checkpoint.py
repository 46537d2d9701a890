"""Checkpoints: plain dicts of tensors and Python scalars, written atomically, read with
``torch.load(weights_only=True)`` (no pickled code is ever executed on load)."""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from metagan.errors import CheckpointError
from metagan.io import atomic_write

FORMAT = "metagan-checkpoint"
VERSION = 1


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus format and version tags) to ``path`` atomically."""
    write(path, {"format": FORMAT, "version": VERSION, **state})


def write(path: str | Path, obj: Any) -> None:
    """``torch.save`` to ``path`` atomically: a crash leaves the old file or none."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    with atomic_write(path) as f:
        f.write(buf.getvalue())


def read(path: str | Path, what: str, written_by: str) -> Any:
    """``torch.load(weights_only=True)`` of a file; missing or corrupt is a one-line
    CheckpointError naming ``what`` it should be and the command that writes one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{what} {path} does not exist; write one with `{written_by}`")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message ends by suggesting weights_only=False: never do that with this file
        found = re.search(r"(?:GLOBAL|global) ([\w.]+)", str(exc))
        name = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"{what} {path} is refused: it holds Python objects{name} beyond tensors and plain "
            "data, and loading it could run code; metagan loads only weights "
            "(torch.load weights_only=True); use a file written by metagan"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any other unpickling failure means a corrupt file
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{what} {path} is corrupt or of another kind ({cause[:200]})"
        ) from None


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint; a missing, corrupt or foreign file raises a one-line CheckpointError."""
    ckpt = read(path, "checkpoint", "metagan train")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a metagan checkpoint (no '{FORMAT}' tag)")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {ckpt.get('version')}; this metagan reads version {VERSION}"
        )
    for key in ("config", "params", "step"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint {path} is incomplete: it has no {key!r} entry")
    return ckpt


def check_finite(path: str | Path, tensors, what: str) -> None:
    """A one-line CheckpointError if any of ``tensors`` holds inf or nan: metagan never writes
    nor uses non-finite weights (adapting them gives black samples and meaningless scores)."""
    tensors = list(tensors)
    bad = sum(int((~torch.isfinite(t)).sum()) for t in tensors if t.is_floating_point())
    if bad:
        total = sum(t.numel() for t in tensors)
        raise CheckpointError(
            f"checkpoint {path} is refused: {bad} of {total} values of its {what} are not finite "
            "(inf or nan); use an earlier checkpoint or retrain with lower learning rates"
        )


def check_params(
    path: str | Path, ckpt: dict, expected: dict[str, torch.Tensor], arch: str
) -> None:
    """The checkpoint's parameters must fit the architecture it is loaded into, and be finite."""
    if not isinstance(ckpt["config"], dict) or not isinstance(ckpt["params"], dict):
        raise CheckpointError(f"checkpoint {path} is damaged: its config or params is not a table")
    saved_arch = ckpt["config"].get("model", {}).get("arch")
    if saved_arch != arch:
        raise CheckpointError(
            f"checkpoint {path} was trained with architecture {saved_arch!r}, not {arch!r}; "
            f"use --arch {saved_arch} or a checkpoint of {arch!r}"
        )
    params = ckpt["params"]
    for key, ref in expected.items():
        got = params.get(key)
        if not isinstance(got, torch.Tensor) or got.shape != ref.shape:
            shape = tuple(got.shape) if isinstance(got, torch.Tensor) else None
            raise CheckpointError(
                f"checkpoint {path}: parameters {key!r} have shape {shape}, but architecture {arch!r} with "
                f"this config needs {tuple(ref.shape)} (was it trained with other model settings?)"
            )
    check_finite(path, [params[k] for k in expected], "parameters")

"""Checkpoints: plain dicts of tensors and Python scalars, written atomically, read with
``torch.load(weights_only=True)`` (no pickled code is ever executed on load).

Every checkpoint proves its integrity: :func:`save` records a digest (sha256 of each tensor's
dtype, shape and bytes, and of the other data in a canonical order) and :func:`load` checks
it, so a bit flipped on disk or in a copy is refused in one line naming the tensor that
differs. Checkpoints written before digests existed (no ``digest`` entry) are loaded with the
structural checks alone: their config must be tables, their parameters tensors of the dtype and
shape the architecture needs (:func:`check_params`), finite.
"""

from __future__ import annotations

import hashlib
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
DIGEST = "digest"  # the entry that holds the digest (optional: older checkpoints lack it)


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus format and version tags and its digest) to ``path`` atomically."""
    state = {"format": FORMAT, "version": VERSION, **state}
    state.pop(DIGEST, None)
    write(path, {**state, DIGEST: digest(state)})


def digest(state: dict[str, Any]) -> dict[str, Any]:
    """The digest of a checkpoint's content: per tensor (named by its path in ``state``, e.g.
    ``params/g``) its dtype, shape and the sha256 of dtype, shape and bytes; and one sha256
    of every other value (config, step) with its path, in sorted order."""
    tensors, data = {}, hashlib.sha256()
    for name, value in _leaves({k: v for k, v in state.items() if k != DIGEST}):
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h = hashlib.sha256(f"{t.dtype}|{tuple(t.shape)}|".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy())  # the bytes, not a copy
            tensors[name] = [_dtype(t), list(t.shape), h.hexdigest()]
        else:
            data.update(f"{name}={type(value).__name__}:{value!r}\n".encode())
    return {"algorithm": "sha256", "tensors": tensors, "data": data.hexdigest()}


def _leaves(obj: Any, name: str = ""):
    if isinstance(obj, dict):
        for k in sorted(obj, key=str):
            yield from _leaves(obj[k], f"{name}/{k}" if name else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{name}[{i}]")
    else:
        yield name, obj


def _dtype(t: torch.Tensor) -> str:
    return str(t.dtype).removeprefix("torch.")


def verify(path: str | Path, ckpt: dict[str, Any]) -> None:
    """Check ``ckpt`` against the digest recorded when it was saved; a difference is a
    one-line CheckpointError naming the tensor (its dtype and shape when those changed).
    A checkpoint without a digest (older than digests) passes: the structural checks of
    :func:`load` and :func:`check_params` are what it gets."""
    rec = ckpt.get(DIGEST)
    if rec is None:
        return
    damaged = CheckpointError(f"checkpoint {path} is corrupt: its digest entry is damaged")
    if not (isinstance(rec, dict) and isinstance(rec.get("tensors"), dict)):
        raise damaged
    now = digest(ckpt)
    wrong = []
    for name in sorted(set(rec["tensors"]) | set(now["tensors"]), key=str):
        saved, got = rec["tensors"].get(name), now["tensors"].get(name)
        if saved == got:
            continue
        if not isinstance(saved, (list, tuple)) or len(saved) != 3:
            what = f"tensor {name!r} is not in the digest recorded when it was saved"
            what = what if got is not None else f"its digest entry of {name!r} is damaged"
        elif got is None:
            what = f"tensor {name!r} of its digest is missing"
        elif list(saved[:2]) != got[:2]:
            what = (
                f"tensor {name!r} is {got[0]} of shape {tuple(got[1])}, but it was saved as "
                f"{saved[0]} of shape {tuple(saved[1])}"
            )
        else:
            what = f"tensor {name!r} differs from the digest recorded when it was saved"
        wrong.append(what)
    if wrong:
        more = f" ({len(wrong)} of {len(now['tensors'])} tensors differ)" if len(wrong) > 1 else ""
        raise CheckpointError(
            f"checkpoint {path} is corrupt: {wrong[0]}{more}; the file changed after it was "
            "written (a disk or copy error, or an edit): use another copy or an earlier checkpoint"
        )
    if rec.get("data") != now["data"]:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its config, step or other data differ from the digest "
            "recorded when it was saved; use another copy or an earlier checkpoint"
        )


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
    try:
        found = path.is_file()
    except OSError as exc:  # a name too long, a loop of links
        raise CheckpointError(f"{what} {path} cannot be read: {exc.strerror or exc}") from None
    if not found:
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
    verify(path, ckpt)
    check_structure(path, ckpt)
    return ckpt


def check_structure(path: str | Path, ckpt: dict[str, Any]) -> None:
    """The config is a table of tables, the parameters a table of tensors, the step an int."""
    config, params, step = ckpt["config"], ckpt["params"], ckpt["step"]
    if not isinstance(config, dict):
        raise CheckpointError(f"checkpoint {path} is damaged: its config is not a table")
    for section, values in config.items():
        if not isinstance(values, dict):
            raise CheckpointError(
                f"checkpoint {path} is damaged: its config[{section!r}] is a "
                f"{type(values).__name__}, not a table of settings"
            )
    if not isinstance(params, dict) or not all(
        isinstance(v, torch.Tensor) for v in params.values()
    ):
        raise CheckpointError(
            f"checkpoint {path} is damaged: its params are not a table of tensors"
        )
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise CheckpointError(f"checkpoint {path} is damaged: its step {step!r} is not a count")


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
        if got.dtype != ref.dtype:
            raise CheckpointError(
                f"checkpoint {path}: parameters {key!r} are {_dtype(got)}, but architecture "
                f"{arch!r} needs {_dtype(ref)} (was the file converted?); use the checkpoint as "
                "metagan wrote it"
            )
    check_finite(path, [params[k] for k in expected], "parameters")


def check_optimizer(path: str | Path, params: dict[str, torch.Tensor], opt) -> None:
    """The optimizer state read from a checkpoint must fit the parameters it updates (Adam's
    moments have each parameter's shape): a one-line CheckpointError before any step."""
    names = {id(p): k for k, p in params.items()}
    for p, state in opt.state.items():
        for key, v in state.items():
            if isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape != p.shape:
                raise CheckpointError(
                    f"checkpoint {path} cannot be resumed: its optimizer state {key!r} of parameters "
                    f"{names.get(id(p), '?')!r} has shape {tuple(v.shape)}, but the parameters have "
                    f"{tuple(p.shape)}; resume from the checkpoint as metagan wrote it"
                )


def check_plugins(path: str | Path, ckpt: dict[str, Any], registries) -> None:
    """Every named component the checkpoint was made with (``ckpt["plugins"]``: kind → name,
    plugin, distribution and version, recorded by the trainer) is registered now; one that is
    not is refused in one line naming its plugin and what to install. Checkpoints written
    before the record existed are left to the usual unknown-name error."""
    made = ckpt.get("plugins")
    if not isinstance(made, dict):
        return
    kinds = {
        "algorithm": registries.algorithms,
        "architecture": registries.architectures,
        "dataset": registries.datasets,
        "loss": registries.losses,
    }
    for kind, rec in made.items():
        if kind not in kinds or not isinstance(rec, dict) or rec.get("name") in kinds[kind]:
            continue
        plugin, dist, version = rec.get("plugin"), rec.get("dist"), rec.get("version")
        where = f"plugin {plugin!r}" + (f" ({dist}=={version})" if dist else "")
        if plugin in registries.disabled:
            todo = f"it is disabled: drop --disable-plugin {plugin}"
        else:
            todo = f"it is not installed: pip install {dist or plugin}"
        raise CheckpointError(
            f"checkpoint {path} was made with {kind} {rec.get('name')!r} from {where}; {todo} "
            "(metagan plugins lists what is installed)"
        )

"""Loading the compiled CUDA kernels, the JIT fallback build, and the backend report.

How the backend is chosen (once per process; :func:`resolve` runs on first use):

1. At import of :mod:`metagan.ops`, ``import metagan._C``: the extension that ``setup.py``
   builds on CUDA machines. It defines the op schema (``csrc/schema.cpp``) and registers the
   CUDA kernel (``csrc/inner_step_cuda.cpp`` + ``csrc/inner_step_kernels.cu``). When it is not
   built (CPU-only install) or fails to load, ``_register.py`` defines the same schema from
   Python. Either way the pure-PyTorch reference is the kernel for CPU and any other device.
2. On first use (``inner_step``, ``backend()`` or ``backend_info()``), if no compiled CUDA
   kernel is loaded but torch is a CUDA build and a GPU is visible, the CUDA kernel alone is
   JIT-built from ``csrc/`` with ``torch.utils.cpp_extension.load`` (ninja; cached under
   ``~/.cache/torch_extensions``) and loaded; it registers into the Python-defined schema.
   If that fails, CUDA tensors use the reference and a ``RuntimeWarning`` says why, once.

On a machine without CUDA the reference is the only backend: no warning, and
``backend_info()`` says why no CUDA kernel is in use.

Environment variables:
    ``METAGAN_OPS=reference``   never load compiled kernels (debugging, A/B timing)
    ``METAGAN_OPS=jit``         ignore metagan._C and JIT-build the CUDA kernel from csrc/
                                (kernel development without reinstalling)
    ``METAGAN_JIT=0``           never JIT-build (a GPU machine without metagan._C then warns)
    ``METAGAN_JIT_VERBOSE=1``   show the compiler output of the JIT build
"""

from __future__ import annotations

import importlib
import os
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

# csrc/ of the source checkout (editable installs); a wheel does not ship it.
CSRC_DIR = Path(__file__).resolve().parents[2] / "csrc"
JIT_SOURCES = ("inner_step_cuda.cpp", "inner_step_kernels.cu")
JIT_NAME = "metagan_cuda_jit"
PREBUILT = "metagan._C"


@dataclass
class _State:
    prebuilt: bool = False  # metagan._C imported: schema + CUDA kernel registered
    prebuilt_error: str = ""  # why not
    cuda_kernel: str | None = None  # where the CUDA kernel in use comes from
    reason: str = ""  # why the reference is used (when cuda_kernel is None)
    resolved: bool = False
    warned: bool = False


_STATE = _State()
_LOCK = threading.RLock()


def _ops_mode() -> str:
    return os.environ.get("METAGAN_OPS", "").strip().lower()


def forced_reference() -> bool:
    return _ops_mode() == "reference"


def _one_line(exc: BaseException, limit: int = 300) -> str:
    """First line of an exception, plus the first line that mentions an error, if different."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    text = f"{type(exc).__name__}: {lines[0]}"
    detail = next((ln for ln in lines[1:] if "error" in ln.lower()), None)
    if detail:
        text += f" ... {detail}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def load_prebuilt() -> bool:
    """Import ``metagan._C`` if it was built; called once, before the schema may be defined."""
    if forced_reference():
        _STATE.prebuilt_error = "METAGAN_OPS=reference"
        return False
    if _ops_mode() == "jit":
        _STATE.prebuilt_error = f"METAGAN_OPS=jit skips {PREBUILT}"
        return False
    try:
        importlib.import_module(PREBUILT)
    except ModuleNotFoundError as exc:
        if exc.name == PREBUILT:
            _STATE.prebuilt_error = f"{PREBUILT} is not built"
        else:
            _STATE.prebuilt_error = f"{PREBUILT} failed to load ({_one_line(exc)})"
        return False
    except (ImportError, OSError) as exc:  # e.g. built against another torch
        _STATE.prebuilt_error = f"{PREBUILT} failed to load ({_one_line(exc)})"
        return False
    _STATE.prebuilt = True
    return True


def _jit_build() -> None:
    missing = [str(CSRC_DIR / n) for n in JIT_SOURCES if not (CSRC_DIR / n).is_file()]
    if missing:
        raise FileNotFoundError(
            f"CUDA sources not found ({', '.join(missing)}); install from a source checkout"
        )
    from torch.utils.cpp_extension import load

    load(
        name=JIT_NAME,
        sources=[str(CSRC_DIR / n) for n in JIT_SOURCES],
        extra_include_paths=[str(CSRC_DIR)],
        extra_cflags=["-O3"],
        extra_cuda_cflags=["-O3"],
        is_python_module=False,
        verbose=os.environ.get("METAGAN_JIT_VERBOSE", "") == "1",
    )


def _fallback(reason: str) -> None:
    """A GPU is here but no CUDA kernel: use the reference, and say so once."""
    _STATE.reason = f"CUDA extension not built: {reason}"
    if not _STATE.warned:
        _STATE.warned = True
        warnings.warn(
            "metagan.ops: CUDA tensors use the pure-PyTorch reference inner step (slower), "
            f"because the CUDA extension is unavailable: {reason}. Reinstall with the CUDA "
            "toolkit (nvcc) on PATH: `pip install --no-build-isolation -e .`, or set "
            "METAGAN_JIT_VERBOSE=1 to see the JIT compiler output.",
            RuntimeWarning,
            stacklevel=5,  # _fallback < _resolve < resolve < inner_step < caller
        )


def _resolve() -> None:
    if forced_reference():
        _STATE.reason = "METAGAN_OPS=reference"
        return
    if torch.version.cuda is None:
        _STATE.reason = f"CUDA extension not built: torch {torch.__version__} is a CPU-only build"
        return
    if _STATE.prebuilt:
        if torch.cuda.is_available():
            _STATE.cuda_kernel = PREBUILT
        else:
            _STATE.reason = f"{PREBUILT} is built but no CUDA device is visible"
        return
    if not torch.cuda.is_available():
        _STATE.reason = (
            f"CUDA extension not built ({_STATE.prebuilt_error}); no CUDA device is visible"
        )
        return
    if os.environ.get("METAGAN_JIT", "").strip() == "0":
        _fallback(f"{_STATE.prebuilt_error}, and METAGAN_JIT=0 disables the JIT build")
        return
    try:
        _jit_build()
    except Exception as exc:  # a failed build must not stop training: fall back, loudly
        _fallback(f"{_STATE.prebuilt_error}, and the JIT build failed ({_one_line(exc)})")
        return
    _STATE.cuda_kernel = f"JIT build {JIT_NAME}"


def resolve() -> None:
    """Choose the backend (first call only; later calls return at once)."""
    if _STATE.resolved:
        return
    with _LOCK:
        if _STATE.resolved:
            return
        try:
            _resolve()
        finally:
            _STATE.resolved = True


def backend() -> str:
    """``"cuda"`` when the compiled CUDA kernel is loaded (and a GPU visible), else ``"reference"``."""
    resolve()
    return "cuda" if _STATE.cuda_kernel else "reference"


def backend_info() -> str:
    """One line for log headers, e.g. ``cuda (metagan._C, sm_90)``."""
    resolve()
    if _STATE.cuda_kernel:
        major, minor = torch.cuda.get_device_capability()
        return f"cuda ({_STATE.cuda_kernel}, sm_{major}{minor})"
    return f"reference (pure PyTorch; {_STATE.reason})"

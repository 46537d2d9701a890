"""Build of the optional CUDA extension ``metagan._C``; everything else is in pyproject.toml.

Install: ``pip install --no-build-isolation -e .`` (torch comes from the environment; any
torch >= 2.4 is accepted, CPU or CUDA build).

What gets built, decided on the build machine's toolchain, never on whether a GPU is visible:

* ``METAGAN_CUDA=auto`` (default): a ``CUDAExtension`` (``csrc/schema.cpp`` +
  ``csrc/inner_step_cuda.cpp`` + ``csrc/inner_step_kernels.cu``) when torch is a CUDA build
  (``torch.version.cuda``), the CUDA toolkit is found (``CUDA_HOME`` or ``nvcc`` on PATH),
  its major version matches torch's, and a C++ compiler exists. Otherwise no extension at all:
  a pure-Python install whose op schema is defined from Python and whose only kernel is the
  pure-PyTorch reference. (No schema-only ``CppExtension`` on CPU machines: it would add no
  kernel, cost CI a minute of compiling torch headers on 2 cores, and tie the install to one
  torch ABI.) A CUDA-less install on a GPU machine JIT-builds the kernel at first use.
* ``METAGAN_CUDA=1``: the CUDA extension is required; if it cannot be built the install fails
  with a message that says what to install.
* ``METAGAN_CUDA=0``: build nothing.

The CUDA architectures follow ``TORCH_CUDA_ARCH_LIST`` (default: the visible GPUs, or torch's
list when none is visible); ``MAX_JOBS`` bounds ninja's parallelism.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).resolve().parent
CSRC = "csrc"
SOURCES = [f"{CSRC}/schema.cpp", f"{CSRC}/inner_step_cuda.cpp", f"{CSRC}/inner_step_kernels.cu"]


def _log(msg: str) -> None:
    print(f"metagan setup.py: {msg}", file=sys.stderr, flush=True)


def _nvcc_major(cuda_home: str) -> int | None:
    nvcc = Path(cuda_home) / "bin" / "nvcc"
    exe = str(nvcc) if nvcc.exists() else shutil.which("nvcc")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    m = re.search(r"release (\d+)\.", out)
    return int(m.group(1)) if m else None


def _cuda_problems() -> list[str]:
    """Why the CUDA extension cannot be built here (empty list: it can)."""
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME
    except ImportError as exc:
        return [
            f"torch is not importable ({exc}); install torch first, then "
            "`pip install --no-build-isolation -e .`"
        ]
    problems = []
    if torch.version.cuda is None:
        problems.append(
            f"torch {torch.__version__} is a CPU-only build: install a CUDA build of torch "
            "(https://pytorch.org/get-started/locally/)"
        )
    if CUDA_HOME is None:
        problems.append(
            "the CUDA toolkit was not found: install it (nvcc) and put nvcc on PATH or set "
            "CUDA_HOME"
        )
    elif torch.version.cuda is not None:
        major = _nvcc_major(CUDA_HOME)
        want = int(torch.version.cuda.split(".")[0])
        if major is not None and major != want:
            problems.append(
                f"nvcc in {CUDA_HOME} is CUDA {major} but torch {torch.__version__} was built "
                f"with CUDA {torch.version.cuda}: install the CUDA {want} toolkit or point "
                "CUDA_HOME at it"
            )
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        problems.append(f"no C++ compiler ({cxx!r} not on PATH): install g++ or set CXX")
    return problems


def _extensions() -> tuple[list, dict]:
    mode = os.environ.get("METAGAN_CUDA", "auto").strip().lower()
    if mode not in ("auto", "0", "1"):
        raise SystemExit(f"metagan setup.py: METAGAN_CUDA must be auto, 0 or 1, got {mode!r}")
    if mode == "0":
        _log("METAGAN_CUDA=0: building no extension (ops use the pure-PyTorch reference)")
        return [], {}
    problems = _cuda_problems()
    if problems:
        if mode == "1":
            raise SystemExit(
                "metagan setup.py: METAGAN_CUDA=1 but the CUDA extension cannot be built: "
                + "; ".join(problems)
            )
        _log(
            "building without the CUDA extension ("
            + "; ".join(problems)
            + "); ops use the pure-PyTorch reference. Set METAGAN_CUDA=1 to require it."
        )
        return [], {}

    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    _log("building the CUDA extension metagan._C")
    ext = CUDAExtension(
        name="metagan._C",
        sources=SOURCES,
        include_dirs=[str(ROOT / CSRC)],
        extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "-lineinfo"]},
    )
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = _extensions()
setup(ext_modules=ext_modules, cmdclass=cmdclass)

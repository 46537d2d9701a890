"""Argument checks shared by the public wrapper, the reference kernel and the fake kernel; the
arguments' names, order and kinds come from the spec (:mod:`metagan.ops._schema`).

Metadata only (shapes, dtypes, devices, plain numbers), so they also run on fake tensors
under ``torch.compile``. The CUDA kernel keeps its own C++ checks (``TORCH_CHECK_VALUE``,
which Python sees as ``ValueError``, naming the same tensors and shapes) because the
dispatcher reaches it without passing through Python (``torch.ops.metagan.inner_step``
called from C++ or an exported graph); every call through :func:`metagan.ops.inner_step`
is checked here first.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from metagan.errors import MetaganError
from metagan.ops._schema import OpArgs, check_kinds

METHODS = ("sgd", "momentum", "adam")
# Which of the op's two state slots each method reads and writes.
STATE_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}
STATE_KEYS = {"sgd": (), "momentum": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq")}
PARAM_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


class InnerStepInputError(MetaganError, ValueError):
    """A tensor or hyper-parameter passed to :func:`metagan.ops.inner_step` is invalid."""


def shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Arithmetic and state dtype: float64 for float64 params, float32 for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def _fail(msg: str) -> None:
    raise InnerStepInputError(f"inner_step: {msg}")


def check_op_args(*args) -> None:
    """Validate the arguments of ``metagan::inner_step`` (the op, not the wrapper), given
    positionally in the order of :data:`metagan.ops._schema.ARGS`."""
    a = OpArgs(*args)
    check_kinds(a, _fail)
    params, grads, lr, method, state1, state2 = (
        a.params, a.grads, a.lr, a.method, a.state1, a.state2
    )  # fmt: skip
    if params.dim() != 2:
        _fail(f"params must be 2-D (T, P), got shape {shape(params)}")
    if params.dtype not in PARAM_DTYPES:
        _fail(f"params must be float32, float64, float16 or bfloat16, got {params.dtype}")
    if grads.shape != params.shape:
        _fail(f"grads must have params' shape {shape(params)}, got {shape(grads)}")
    if grads.dtype != params.dtype:
        _fail(f"grads must have params' dtype {params.dtype}, got {grads.dtype}")
    if grads.device != params.device:
        _fail(f"grads must be on {params.device} like params, got {grads.device}")
    if method not in METHODS:
        _fail(f"method must be 'sgd', 'momentum' or 'adam', got {method!r}")
    if a.step < 1:
        _fail(f"step must be an int >= 1 (1-based), got {a.step!r}")
    if not math.isfinite(a.lr_scale):
        _fail(f"lr must be finite, got {a.lr_scale}")
    if not (0.0 <= a.beta1 < 1.0 and 0.0 <= a.beta2 < 1.0):
        _fail(f"betas must be in [0, 1), got ({a.beta1}, {a.beta2})")
    if not a.eps >= 0.0:
        _fail(f"eps must be >= 0, got {a.eps}")
    if not math.isfinite(a.weight_decay):
        _fail(f"weight_decay must be finite, got {a.weight_decay}")
    if a.max_grad_norm is not None and not a.max_grad_norm > 0.0:
        _fail(f"max_grad_norm must be > 0 or None, got {a.max_grad_norm}")

    T, P = params.shape
    if lr is not None:
        if lr.device != params.device:
            _fail(f"lr must be on {params.device} like params, got {lr.device}")
        if not lr.is_floating_point():
            _fail(f"lr must be a floating tensor, got {lr.dtype}")
        ok = lr.dim() <= 2
        if lr.dim() == 2:
            ok = lr.shape[0] in (1, T) and lr.shape[1] in (1, P)
        elif lr.dim() == 1:
            ok = lr.shape[0] in (1, P)
        if not ok:
            _fail(
                f"lr of shape {shape(lr)} does not broadcast to params' shape {shape(params)} "
                "(expected (), (P,), (T, 1), (1, P) or (T, P))"
            )

    acc = compute_dtype(params.dtype)
    used = STATE_SLOTS[method]
    for i, (name, s) in enumerate((("state1", state1), ("state2", state2)), start=1):
        if s is None:
            continue
        if i > used:
            _fail(f"{name} must be None for method {method!r}, got a tensor of shape {shape(s)}")
        if s.shape != params.shape:
            _fail(f"{name} must have params' shape {shape(params)}, got {shape(s)}")
        if s.dtype != acc:
            _fail(
                f"{name} must be {acc} (state is kept in {acc} for {params.dtype} params), "
                f"got {s.dtype}"
            )
        if s.device != params.device:
            _fail(f"{name} must be on {params.device} like params, got {s.device}")

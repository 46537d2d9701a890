"""Argument checks shared by the public wrapper, the reference kernel and the fake kernel.

Metadata only (shapes, dtypes, devices, plain numbers), so they also run on fake tensors
under ``torch.compile``. The CUDA kernel repeats them in C++ (``TORCH_CHECK_VALUE``, which
Python sees as ``ValueError``); the messages name the same tensors and shapes.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from metagan.errors import MetaganError

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


def check_op_args(
    params: Tensor,
    grads: Tensor,
    lr: Tensor | None,
    lr_scale: float,
    method: str,
    state1: Tensor | None,
    state2: Tensor | None,
    step: int,
    momentum: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    max_grad_norm: float | None,
) -> None:
    """Validate the arguments of ``metagan::inner_step`` (the op, not the wrapper)."""
    if not isinstance(params, Tensor):
        _fail(f"params must be a tensor, got {type(params).__name__}")
    if params.dim() != 2:
        _fail(f"params must be 2-D (T, P), got shape {shape(params)}")
    if params.dtype not in PARAM_DTYPES:
        _fail(f"params must be float32, float64, float16 or bfloat16, got {params.dtype}")
    if not isinstance(grads, Tensor):
        _fail(f"grads must be a tensor, got {type(grads).__name__}")
    if grads.shape != params.shape:
        _fail(f"grads must have params' shape {shape(params)}, got {shape(grads)}")
    if grads.dtype != params.dtype:
        _fail(f"grads must have params' dtype {params.dtype}, got {grads.dtype}")
    if grads.device != params.device:
        _fail(f"grads must be on {params.device} like params, got {grads.device}")
    if method not in METHODS:
        _fail(f"method must be 'sgd', 'momentum' or 'adam', got {method!r}")
    if isinstance(step, bool) or not isinstance(step, int) or step < 1:
        _fail(f"step must be an int >= 1 (1-based), got {step!r}")
    if not math.isfinite(lr_scale):
        _fail(f"lr must be finite, got {lr_scale}")
    if not (0.0 <= beta1 < 1.0 and 0.0 <= beta2 < 1.0):
        _fail(f"betas must be in [0, 1), got ({beta1}, {beta2})")
    if not eps >= 0.0:
        _fail(f"eps must be >= 0, got {eps}")
    if not math.isfinite(weight_decay):
        _fail(f"weight_decay must be finite, got {weight_decay}")
    if max_grad_norm is not None and not max_grad_norm > 0.0:
        _fail(f"max_grad_norm must be > 0 or None, got {max_grad_norm}")

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

"""Fused MAML inner-loop update: one op for all tasks' parameters of one network.

Public API::

    new_params, new_state = inner_step(params, grads, lr, method="adam", state=state, step=s)
    backend()       # "cuda" when the compiled CUDA kernel is in use, else "reference"
    backend_info()  # one line for log headers

``inner_step`` calls the custom op ``torch.ops.metagan.inner_step`` (schema in
``csrc/schema.cpp`` / ``_schema.py``). The dispatcher picks the kernel by device: the compiled
CUDA kernel for CUDA tensors when it is built (or JIT-built), the pure-PyTorch reference
(:mod:`metagan.ops.reference`) otherwise. The op has a fake kernel (``torch.compile``) and an
autograd formula that supports double backward (second-order MAML).

``lr`` shapes: a Python number; a tensor of shape ``()``; ``(T,)`` per task; ``(P,)`` per
parameter (Meta-SGD); ``(T, P)``; or explicitly ``(T, 1)`` / ``(1, P)``. When ``T == P > 1`` a
1-D ``lr`` is ambiguous and rejected: pass ``(T, 1)`` or ``(1, P)``.
"""

from __future__ import annotations

import contextlib
import numbers

import torch
from torch import Tensor

from metagan.ops import _extension, _register, reference
from metagan.ops._checks import (
    METHODS,
    STATE_KEYS,
    InnerStepInputError,
    check_op_args,
    shape,
)
from metagan.ops._schema import OpArgs

__all__ = [
    "inner_step",
    "backend",
    "backend_info",
    "reference_only",
    "InnerStepInputError",
    "METHODS",
]

# A plain global, not a ContextVar: torch.compile cannot trace ContextVar.get.
_reference_only = False


@contextlib.contextmanager
def reference_only():
    """Within the block, :func:`inner_step` runs the pure-PyTorch reference on every device,
    bypassing compiled kernels: for side-by-side timings (``metagan bench``) and A/B tests of
    the fused kernel inside one process (``METAGAN_OPS=reference`` does it process-wide)."""
    global _reference_only
    before, _reference_only = _reference_only, True
    try:
        yield
    finally:
        _reference_only = before


# Import order matters: the compiled schema (if any) must load before Python would define it.
_extension.load_prebuilt()
_register.register()

backend = _extension.backend
backend_info = _extension.backend_info


def _fail(msg: str) -> None:
    raise InnerStepInputError(f"inner_step: {msg}")


def _lr_arg(lr: float | Tensor, params: Tensor) -> tuple[Tensor | None, float]:
    """The op's ``(lr, lr_scale)``: a tensor broadcastable to (T, P), or None and a float."""
    if isinstance(lr, Tensor):
        T, P = params.shape
        if lr.dim() == 1:
            n = lr.shape[0]
            if n == T and n == P and T > 1:
                _fail(
                    f"lr of shape ({n},) is ambiguous for params of shape {shape(params)} "
                    f"(T == P == {n}): pass shape ({T}, 1) for per-task or (1, {P}) for "
                    "per-parameter rates"
                )
            if n == P or n == 1:
                return lr, 1.0
            if n == T:
                return lr.reshape(T, 1), 1.0  # per-task
            _fail(
                f"lr of shape ({n},) is neither (T,)=({T},) per-task nor (P,)=({P},) "
                f"per-parameter for params of shape {shape(params)}"
            )
        if lr.dim() > 2:
            _fail(
                f"lr must have shape (), (T,), (P,) or (T, P), got {shape(lr)} "
                f"for params of shape {shape(params)}"
            )
        return lr, 1.0
    if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
        _fail(f"lr must be a float or a tensor, got {type(lr).__name__}")
    return None, float(lr)


def _state_args(
    method: str, state: dict[str, Tensor] | None
) -> tuple[Tensor | None, Tensor | None]:
    keys = STATE_KEYS[method]
    if not state:
        return None, None
    if not isinstance(state, dict) or set(state) != set(keys):
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        _fail(
            f"state for method {method!r} must be None or a dict with keys {list(keys)} "
            f"(as returned by the previous call), got {got}"
        )
    slots = [state[k] for k in keys] + [None] * (2 - len(keys))
    for k, v in state.items():
        if not isinstance(v, Tensor):
            _fail(f"state[{k!r}] must be a tensor, got {type(v).__name__}")
    return slots[0], slots[1]


def inner_step(
    params: Tensor,  # (T, P) flat per-task parameters of one network
    grads: Tensor,  # (T, P)
    lr: float | Tensor,  # float, or tensor (), (T,), (P,), (T, P)
    *,
    method: str = "sgd",
    state: dict[str, Tensor] | None = None,
    step: int = 1,
    momentum: float = 0.9,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    max_grad_norm: float | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """One inner-loop update of all T tasks; returns ``(new_params (T, P), new_state)``.

    Out of place and differentiable w.r.t. ``params``, ``grads``, a tensor ``lr`` and the
    state, to any order. Arithmetic is in float32 for float32/float16/bfloat16 params (float64
    for float64), and the state is kept in that dtype; ``new_params`` has params' dtype.

    Args:
        params: ``(T, P)`` flat parameters of one network, one row per task.
        grads: ``(T, P)`` gradients, same dtype and device as ``params``.
        lr: learning rate: a float, or a tensor of shape ``()``, ``(T,)`` (per task), ``(P,)``
            (per parameter, Meta-SGD) or ``(T, P)``; ``(T, 1)``/``(1, P)`` also accepted.
        method: ``"sgd"``, ``"momentum"`` or ``"adam"``.
        state: the state returned by the previous call; ``None`` (or ``{}``) means zeros.
            sgd: ``{}``; momentum: ``{"momentum_buffer"}``; adam: ``{"exp_avg", "exp_avg_sq"}``.
        step: 1-based step number (Adam bias correction).
        momentum: momentum factor (``b' = momentum * b + g``; the first ``b'`` is ``g``).
        betas: Adam's ``(beta1, beta2)``.
        eps: Adam's epsilon, added to the bias-corrected ``sqrt(v)``.
        weight_decay: L2 penalty added to the (clipped) gradient: ``g + wd * p``.
        max_grad_norm: per-task L2 clipping of ``grads`` before weight decay:
            ``g_t *= min(1, max_grad_norm / (||g_t|| + 1e-6))``.

    Raises:
        InnerStepInputError: (a ``ValueError`` and ``MetaganError``) for bad shapes, dtypes,
            devices or hyper-parameters, naming the tensor and its shape.
    """
    if not torch.compiler.is_compiling():  # under torch.compile: call backend() beforehand
        _extension.resolve()
    if not isinstance(params, Tensor) or params.dim() != 2:
        got = shape(params) if isinstance(params, Tensor) else type(params).__name__
        _fail(f"params must be a 2-D (T, P) tensor, got {got}")
    if method not in METHODS:
        _fail(f"method must be one of {list(METHODS)}, got {method!r}")
    lr_t, lr_scale = _lr_arg(lr, params)
    s1, s2 = _state_args(method, state)
    if isinstance(step, bool) or not isinstance(step, numbers.Integral):
        _fail(f"step must be an int >= 1, got {step!r}")
    try:
        beta1, beta2 = (float(b) for b in betas)
    except (TypeError, ValueError):
        _fail(f"betas must be a pair of floats, got {betas!r}")
    args = OpArgs(  # by name; the order is the spec's (metagan/ops/_schema.py)
        params=params, grads=grads, lr=lr_t, lr_scale=lr_scale, method=method,
        state1=s1, state2=s2, step=int(step), momentum=float(momentum),
        beta1=beta1, beta2=beta2, eps=float(eps), weight_decay=float(weight_decay),
        max_grad_norm=None if max_grad_norm is None else float(max_grad_norm),
    )  # fmt: skip
    check_op_args(*args)  # same MetaganError messages on every device
    if _reference_only:
        new_p, n1, n2 = reference.inner_step_reference(*args)  # plain autograd, no custom op
    else:
        new_p, n1, n2 = torch.ops.metagan.inner_step(*args)
    keys = STATE_KEYS[method]
    return new_p, dict(zip(keys, (n1, n2)))

"""Registration of ``metagan::inner_step`` with the dispatcher (runs once, at import).

- schema: from ``metagan._C`` (``csrc/schema.cpp``) when it loaded, else defined here from the
  same string (``_schema.py``);
- CompositeExplicitAutograd kernel (CPU and every device without a compiled kernel): the
  pure-PyTorch reference. A compiled CUDA kernel (``TORCH_LIBRARY_IMPL(metagan, CUDA, m)``)
  takes precedence for CUDA tensors; the dispatcher chooses, not Python;
- fake kernel (shapes only) for ``torch.compile`` / FakeTensor tracing;
- autograd: the backward is the vector-Jacobian product of the reference math
  (:func:`metagan.ops.reference.inner_step_math`) taken with ``torch.func.vjp``. It is made of
  differentiable PyTorch ops on the saved inputs, so double backward (second-order MAML, where
  ``grads`` depend on ``params``) works whichever kernel ran the forward.
"""

from __future__ import annotations

import torch
from torch import Tensor

from metagan.ops._checks import STATE_SLOTS, check_op_args, compute_dtype
from metagan.ops._schema import (
    DIFF_POS,
    INNER_STEP_SCHEMA,
    N_INPUTS,
    NAMESPACE,
    OP_NAME,
    QUALNAME,
    OpArgs,
    op_signature,
)
from metagan.ops.reference import inner_step_math, inner_step_reference

_LIB: torch.library.Library | None = None  # keeps the Python-defined schema alive
SCHEMA_SOURCE = ""  # "metagan._C" or "python"


def op_exists() -> bool:
    try:
        getattr(getattr(torch.ops, NAMESPACE), OP_NAME)
    except (AttributeError, RuntimeError):
        return False
    return True


@op_signature
def _fake(*args) -> tuple[Tensor, Tensor, Tensor]:
    check_op_args(*args)
    a = OpArgs(*args)
    acc = compute_dtype(a.params.dtype)
    used = STATE_SLOTS[a.method]
    out = a.params.new_empty(a.params.shape)
    s1 = a.params.new_empty(a.params.shape if used >= 1 else (0,), dtype=acc)
    s2 = a.params.new_empty(a.params.shape if used >= 2 else (0,), dtype=acc)
    return out, s1, s2


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(*(inputs[i] for i in DIFF_POS))  # None where absent
    ctx.others = [None if i in DIFF_POS else x for i, x in enumerate(inputs)]  # numbers, str


def _backward(ctx, d_params: Tensor, d_state1: Tensor, d_state2: Tensor):
    saved = ctx.saved_tensors  # the differentiable inputs, in DIFF_POS order
    which = [
        i for i, pos in enumerate(DIFF_POS) if saved[i] is not None and ctx.needs_input_grad[pos]
    ]
    result: list[Tensor | None] = [None] * N_INPUTS
    if not which:
        return tuple(result)

    def update(*diff: Tensor) -> tuple[Tensor, ...]:
        full = list(ctx.others)
        for i, s in enumerate(saved):
            full[DIFF_POS[i]] = s
        for i, x in zip(which, diff):
            full[DIFF_POS[i]] = x
        return inner_step_math(*full)

    outs, vjp_fn = torch.func.vjp(update, *(saved[i] for i in which))
    cot = tuple(
        c if c is not None else torch.zeros_like(o)
        for c, o in zip((d_params, d_state1, d_state2), outs)
    )
    for i, gi in zip(which, vjp_fn(cot)):
        result[DIFF_POS[i]] = gi
    return tuple(result)


def register() -> None:
    """Define the schema if ``metagan._C`` did not, and register the Python-side pieces."""
    global _LIB, SCHEMA_SOURCE
    if op_exists():
        SCHEMA_SOURCE = "metagan._C"
    else:
        _LIB = torch.library.Library(NAMESPACE, "FRAGMENT")
        _LIB.define(INNER_STEP_SCHEMA)
        SCHEMA_SOURCE = "python"
    torch.library.register_kernel(QUALNAME, None, inner_step_reference)
    torch.library.register_fake(QUALNAME, _fake)
    torch.library.register_autograd(QUALNAME, _backward, setup_context=_setup_context)

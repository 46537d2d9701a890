"""Pure-PyTorch reference of ``metagan::inner_step``: the CPU kernel and the fallback.

Same signature as the op (``torch.ops.metagan.inner_step``). It is registered as the op's
CompositeExplicitAutograd kernel, so it serves CPU tensors and any device that has no compiled
kernel; the op's backward is the vector-Jacobian product of :func:`inner_step_math` (see
``metagan/ops/_register.py``), which is built from differentiable PyTorch ops only, so second
order (MAML) works on every backend.

The update, per task row ``t`` of the (T, P) arrays, all in the compute dtype (float32 for
float32/float16/bfloat16 params, float64 for float64 params)::

    g  = g * min(1, max_grad_norm / (||g_t||_2 + 1e-6))   # if max_grad_norm is not None
    g  = g + weight_decay * p                              # if weight_decay != 0
    lr = lr_scale * lr_tensor                              # or lr_scale alone
    sgd:      p' = p - lr * g
    momentum: b' = momentum * b + g;  p' = p - lr * b'     (b = 0 when state1 is None)
    adam:     m' = beta1 * m + (1 - beta1) * g
              v' = beta2 * v + (1 - beta2) * (g * g)
              p' = p - lr * (m' / (1 - beta1**step)) / (sqrt(v' / (1 - beta2**step)) + eps)

Outputs: ``(p' in params' dtype, state1', state2')``; a state slot the method does not use is
an empty ``(0,)`` tensor of the compute dtype. All outputs are new, contiguous tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from metagan.ops._checks import check_op_args, compute_dtype
from metagan.ops._schema import op_signature

__all__ = ["inner_step_reference", "inner_step_math"]


def inner_step_math(
    params: Tensor,  # (T, P)
    grads: Tensor,  # (T, P)
    lr: Tensor | None,  # broadcastable to (T, P)
    lr_scale: float,
    method: str,
    state1: Tensor | None,  # (T, P) compute dtype
    state2: Tensor | None,  # (T, P) compute dtype
    step: int,
    momentum: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    max_grad_norm: float | None,
) -> tuple[Tensor, ...]:
    """The update without argument checks; returns only the outputs ``method`` uses.

    ``(p',)`` for sgd, ``(p', b')`` for momentum, ``(p', m', v')`` for adam.
    """
    acc = compute_dtype(params.dtype)
    p = params.to(acc).contiguous()
    g = grads.to(acc).contiguous()
    if max_grad_norm is not None:
        norm = torch.linalg.vector_norm(g, dim=1, keepdim=True)  # (T, 1)
        g = g * torch.clamp(max_grad_norm / (norm + 1e-6), max=1.0)
    if weight_decay != 0.0:
        g = g + weight_decay * p
    lr_eff = lr_scale if lr is None else lr.to(acc) * lr_scale

    if method == "sgd":
        if isinstance(lr_eff, float):  # one pass over (T, P) instead of a product and a difference
            return (torch.add(p, g, alpha=-lr_eff).to(params.dtype),)
        return ((p - lr_eff * g).to(params.dtype),)
    if method == "momentum":
        b = g.clone() if state1 is None else momentum * state1 + g
        return (p - lr_eff * b).to(params.dtype), b
    if method == "adam":
        m = (1.0 - beta1) * g if state1 is None else beta1 * state1 + (1.0 - beta1) * g
        gg = g * g
        v = (1.0 - beta2) * gg if state2 is None else beta2 * state2 + (1.0 - beta2) * gg
        bc1 = 1.0 - beta1**step
        bc2 = 1.0 - beta2**step
        denom = torch.sqrt(v / bc2) + eps
        return (p - lr_eff * (m / bc1) / denom).to(params.dtype), m, v
    raise ValueError(f"inner_step: method must be 'sgd', 'momentum' or 'adam', got {method!r}")


@op_signature
def inner_step_reference(*args) -> tuple[Tensor, Tensor, Tensor]:
    """Checked reference with the op's exact signature and outputs (CPU kernel)."""
    check_op_args(*args)
    params = args[0]
    outs = inner_step_math(*args)
    empty = params.new_empty((0,), dtype=compute_dtype(params.dtype))
    new_p = outs[0]
    s1 = outs[1] if len(outs) > 1 else empty
    s2 = outs[2] if len(outs) > 2 else empty.clone()
    return new_p, s1, s2

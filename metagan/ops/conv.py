"""Per-task convolutions for the batched engine: ``metagan::task_conv2d`` and its backward.

Under ``torch.func.vmap`` over tasks, every convolution of an architecture has per-task weights,
and PyTorch's own batching rule turns it into one grouped convolution (T groups) in the
contiguous layout. On the CPU oneDNN runs some of those shapes far below its rate: G's last
``64 → 1`` convolution of ``dcgan`` ran 2–4× slower than the same grouped convolution in the
channels-last layout (BENCHMARKS.md; ``benchmarks/conv_layouts.py``). The layout cannot be
asked for inside vmap, so these two custom ops carry their own vmap rules, which see the
whole ``(T, ...)`` tensors and pick the layout per shape (:func:`_layout`, :func:`routed`):

    task_conv2d(x, w, b, stride, padding)             F.conv2d of one task (dilation 1, groups 1)
    task_conv2d_backward(gy, x, w, stride, padding)   its (∂x, ∂w, ∂b) for the cotangent gy

Their autograd formulas are written with each other (the backward of a convolution is linear in
gy and in w or x, so its derivative is again a convolution and a convolution backward), so any
order of derivative runs through the same ops: first order in the inner steps, second order in
MAML's meta-gradient. ``tests/test_conv_op.py`` checks values, first and second derivatives
(``gradcheck``/``gradgradcheck`` in float64, also under vmap) and ``torch.library.opcheck``.

:func:`task_convolutions` is the switch: inside it, ``F.conv2d`` calls on CPU tensors with one output
channel are routed to ``task_conv2d`` (a ``TorchFunctionMode``); everything else, CUDA
included, runs as before. ``BatchedEngine`` enters it around its vmapped calls unless
:func:`aten_convolutions` is active (for side-by-side timings).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.overrides import TorchFunctionMode

# A plain global (read at call time), as ``reference_only`` in this package.
_enabled = True


def _layout(c_in: int, c_out: int, stride: list[int]) -> torch.memory_format:
    """The layout of a grouped per-task convolution: channels-last for one output channel
    (there oneDNN's contiguous grouped kernel ran 2.5× slower), contiguous elsewhere."""
    return torch.channels_last if c_out == 1 else torch.contiguous_format


def routed(w: Tensor) -> bool:
    """Which convolutions :func:`task_convolutions` sends through the ops: those with one output
    channel (w (1, C, k, k) per task). Routing every convolution was measured: the strided
    convolutions of D ran about 1.8× slower through the op (its layout copies cost more than the
    layout saved) and the ``128 → 64`` one the same, so only these are routed."""
    return w.dim() == 4 and w.shape[0] == 1


@torch.library.custom_op("metagan::task_conv2d", mutates_args=())
def task_conv2d(
    x: Tensor, w: Tensor, b: Tensor | None, stride: list[int], padding: list[int]
) -> Tensor:
    """``F.conv2d(x, w, b, stride, padding)`` for one task: x (B, C, H, W), w (O, C, k, k)."""
    return F.conv2d(x, w, b, stride, padding)


@task_conv2d.register_fake
def _(x, w, b, stride, padding):
    return F.conv2d(x, w, b, stride, padding)


@torch.library.custom_op("metagan::task_conv2d_backward", mutates_args=())
def task_conv2d_backward(
    gy: Tensor, x: Tensor, w: Tensor, stride: list[int], padding: list[int]
) -> tuple[Tensor, Tensor, Tensor]:
    """(∂x, ∂w, ∂b) of ``task_conv2d`` for the cotangent gy (B, O, H', W')."""
    gx, gw, gb = torch.ops.aten.convolution_backward(
        gy, x, w, [w.shape[0]], stride, padding, [1, 1], False, [0, 0], 1, [True, True, True]
    )
    return gx, gw, gb


@task_conv2d_backward.register_fake
def _(gy, x, w, stride, padding):
    return torch.empty_like(x), torch.empty_like(w), w.new_empty(w.shape[0])


# -- autograd ------------------------------------------------------------------------------------
# ``torch.func`` transforms (the engine's ``vmap(grad(...))``) cannot use a custom op's own
# autograd registration, so the derivatives live in two ``autograd.Function``s with
# ``setup_context`` (which torch.func supports); their forwards call the ops, whose vmap rules
# then see whole task batches. The ops' own autograd registration uses the same Functions.
class _TaskConv(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x, w, b, stride, padding):
        return task_conv2d(x, w, b, stride, padding)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, w, b, stride, padding = inputs
        ctx.save_for_backward(x, w)
        ctx.conf = (stride, padding, b is not None)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        stride, padding, has_bias = ctx.conf
        gx, gw, gb = _TaskConvGrad.apply(gy, x, w, stride, padding)
        return gx, gw, gb if has_bias else None, None, None


class _TaskConvGrad(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(gy, x, w, stride, padding):
        return task_conv2d_backward(gy, x, w, stride, padding)

    @staticmethod
    def setup_context(ctx, inputs, output):
        gy, x, w, stride, padding = inputs
        ctx.save_for_backward(gy, x, w)
        ctx.conf = (stride, padding)

    @staticmethod
    def backward(ctx, ggx, ggw, ggb):
        """The backward is bilinear: ∂x = J_xᵀ(w) gy, ∂w = J_wᵀ(x) gy, ∂b = Σ gy. So the
        cotangents (ggx, ggw, ggb) give gy the forward convolutions conv(ggx, w) + conv(x, ggw)
        + ggb, x the input-gradient with weight ggw, and w the weight-gradient with input ggx."""
        gy, x, w = ctx.saved_tensors
        stride, padding = ctx.conf
        ggx = torch.zeros_like(x) if ggx is None else ggx
        ggw = torch.zeros_like(w) if ggw is None else ggw
        d_gy = conv2d(ggx, w, None, stride, padding) + conv2d(x, ggw, None, stride, padding)
        if ggb is not None:
            d_gy = d_gy + ggb.view(1, -1, 1, 1)
        d_x, d_w, _ = _TaskConvGrad.apply(gy, ggx, ggw, stride, padding)
        return d_gy, d_x, d_w, None, None


def conv2d(x: Tensor, w: Tensor, b: Tensor | None, stride: list[int], padding: list[int]):
    """Differentiable (to any order, also under torch.func) :func:`task_conv2d`."""
    return _TaskConv.apply(x, w, b, stride, padding)


def _op_setup(ctx, inputs, output):
    _TaskConv.setup_context(ctx, inputs, output)


task_conv2d.register_autograd(_TaskConv.backward, setup_context=_op_setup)


def _op_back_setup(ctx, inputs, output):
    _TaskConvGrad.setup_context(ctx, inputs, output)


task_conv2d_backward.register_autograd(_TaskConvGrad.backward, setup_context=_op_back_setup)


# -- vmap over tasks -----------------------------------------------------------------------------
def _tasks(t: Tensor, dim: int | None, T: int) -> Tensor:
    """``t`` with its task dimension first (expanded when it has none)."""
    return t.movedim(dim, 0) if dim is not None else t.expand(T, *t.shape)


def _grouped(x: Tensor, w: Tensor, fmt) -> tuple[Tensor, Tensor]:
    """x (T, B, C, H, W) -> (B, T·C, H, W); w (T, O, C, k, k) -> (T·O, C, k, k); in ``fmt``."""
    T, B = x.shape[:2]
    xi = x.transpose(0, 1).reshape(B, T * x.shape[2], *x.shape[3:]).contiguous(memory_format=fmt)
    return xi, w.reshape(T * w.shape[1], *w.shape[2:]).contiguous(memory_format=fmt)


@task_conv2d.register_vmap
def _(info, in_dims, x, w, b, stride, padding):
    T = info.batch_size
    xd, wd, bd = in_dims[:3]
    if wd is None and bd is None:  # shared weights: the tasks' images are one larger batch
        xt = _tasks(x, xd, T)
        return task_conv2d(xt.flatten(0, 1), w, b, stride, padding).unflatten(0, xt.shape[:2]), 0
    x, w = _tasks(x, xd, T), _tasks(w, wd, T)
    b = None if b is None else _tasks(b, bd, T).reshape(-1)
    xi, wi = _grouped(x, w, _layout(x.shape[2], w.shape[1], stride))
    y = F.conv2d(xi, wi, b, stride, padding, 1, T)  # (B, T·O, H', W')
    return y.unflatten(1, (T, w.shape[1])), 1


@task_conv2d_backward.register_vmap
def _(info, in_dims, gy, x, w, stride, padding):
    T = info.batch_size
    gy, x, w = (_tasks(t, d, T) for t, d in zip((gy, x, w), in_dims[:3]))
    (_, B, c_in), c_out = x.shape[:3], w.shape[1]
    fmt = _layout(c_in, c_out, stride)
    xi, wi = _grouped(x, w, fmt)
    gyi = gy.transpose(0, 1).reshape(B, T * c_out, *gy.shape[3:]).contiguous(memory_format=fmt)
    gx, gw, gb = torch.ops.aten.convolution_backward(
        gyi, xi, wi, [T * c_out], stride, padding, [1, 1], False, [0, 0], T, [True, True, True]
    )
    return (gx.unflatten(1, (T, c_in)), gw.reshape(w.shape), gb.reshape(T, c_out)), (1, 0, 0)


# -- the switch ----------------------------------------------------------------------------------
def _pair(v) -> list[int] | None:
    if isinstance(v, int):
        return [v, v]
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(i, int) for i in v):
        return list(v)
    return None


class _TaskConvMode(TorchFunctionMode):
    """Routes ``F.conv2d`` on CPU tensors (4-D input, dilation 1, groups 1, numeric padding) to
    :func:`task_conv2d`; every other call runs unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.conv2d or func is torch.conv2d:
            names = ("input", "weight", "bias", "stride", "padding", "dilation", "groups")
            a = dict(zip(names, args), **kwargs)
            x, w = a["input"], a["weight"]
            stride, padding = _pair(a.get("stride", 1)), _pair(a.get("padding", 0))
            if (
                x.device.type == "cpu"
                and x.dim() == 4
                and stride is not None
                and padding is not None
                and _pair(a.get("dilation", 1)) == [1, 1]
                and a.get("groups", 1) == 1
                and routed(w)
            ):
                return conv2d(x, w, a.get("bias"), stride, padding)
        return func(*args, **kwargs)


def task_convolutions():
    """A context in which the ops' convolutions go through :func:`task_conv2d` (see the
    module docstring); a no-op context while :func:`aten_convolutions` is active."""
    return _TaskConvMode() if _enabled else contextlib.nullcontext()


@contextlib.contextmanager
def aten_convolutions():
    """Within the block the batched engine uses PyTorch's own convolution batching rule (for
    side-by-side timings of the two)."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before

"""metagan::task_conv2d and its backward against F.conv2d: values, first and second derivatives
(gradcheck / gradgradcheck in float64, alone and under vmap over tasks, where the ops' own vmap
rules run), torch.library.opcheck, and which convolutions the engine's switch routes."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

from metagan.ops import conv

# (c_in, c_out, kernel, stride, padding, size): G's last convolution (one output channel, the
# channels-last path) and a strided one like D's (the contiguous path).
SHAPES = [(2, 1, 3, 1, 1, 4), (2, 3, 4, 2, 1, 4)]


def tensors(c_in, c_out, k, size, T=None, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    lead = (B,) if T is None else (T, B)
    x = torch.randn(*lead, c_in, size, size, generator=g)
    w = torch.randn(*lead[:-1], c_out, c_in, k, k, generator=g)
    b = torch.randn(*lead[:-1], c_out, generator=g)
    return [t.requires_grad_() for t in (x, w, b)]


@pytest.mark.parametrize("c_in, c_out, k, s, p, size", SHAPES)
def test_values_and_derivatives_equal_conv2d(float64, c_in, c_out, k, s, p, size):
    x, w, b = tensors(c_in, c_out, k, size)
    ours = lambda x, w, b: conv.conv2d(x, w, b, [s, s], [p, p])  # noqa: E731
    op = lambda x, w, b: conv.task_conv2d(x, w, b, [s, s], [p, p])  # noqa: E731
    ref = lambda x, w, b: F.conv2d(x, w, b, s, p)  # noqa: E731
    torch.testing.assert_close(ours(x, w, b), ref(x, w, b))
    assert torch.autograd.gradcheck(ours, (x, w, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(ours, (x, w, b), fast_mode=True)
    assert torch.autograd.gradcheck(op, (x, w, b), fast_mode=True)  # the op's own registration


@pytest.mark.parametrize("c_in, c_out, k, s, p, size", SHAPES)
def test_vmap_rules_equal_the_per_task_convolutions(float64, c_in, c_out, k, s, p, size):
    """Per-task weights under vmap (the grouped path of the rules): values, gradcheck and
    gradgradcheck of the vmapped op, and torch.func's vmap(grad) with a second derivative
    through it, against a loop of F.conv2d over the tasks."""
    x, w, b = tensors(c_in, c_out, k, size, T=2)
    batched = lambda x, w, b: vmap(lambda *a: conv.conv2d(*a, [s, s], [p, p]))(x, w, b)  # noqa: E731
    loop = lambda x, w, b: torch.stack([F.conv2d(x[t], w[t], b[t], s, p) for t in range(2)])  # noqa: E731
    torch.testing.assert_close(batched(x, w, b), loop(x, w, b))
    assert torch.autograd.gradcheck(batched, (x, w, b), fast_mode=True)
    assert torch.autograd.gradgradcheck(batched, (x, w, b), fast_mode=True)

    def meta(f):  # a second-order quantity built from per-task gradients
        inner = lambda x, w, b: torch.tanh(f(x, w, b)).pow(2).sum()  # noqa: E731
        per_task = vmap(grad(inner, argnums=(0, 1, 2)))
        return lambda x, w, b: sum(g.pow(2).sum() for g in per_task(x, w, b))

    want = torch.autograd.grad(meta(lambda *a: F.conv2d(*a, s, p))(x, w, b), (x, w, b))
    got = torch.autograd.grad(meta(lambda *a: conv.conv2d(*a, [s, s], [p, p]))(x, w, b), (x, w, b))
    for g_, w_ in zip(got, want):
        torch.testing.assert_close(g_, w_)
    # shared weights (not batched): the rule folds the tasks into the image batch
    shared = vmap(lambda x: conv.conv2d(x, w[0], b[0], [s, s], [p, p]))(x)
    torch.testing.assert_close(
        shared, F.conv2d(x.flatten(0, 1), w[0], b[0], s, p).unflatten(0, (2, 2))
    )


# opcheck's schema, autograd-registration and fake-tensor tests (its aot_dispatch test compiles
# with torch.compile, which the engine never uses on these ops)
CHECKS = ("test_schema", "test_autograd_registration", "test_faketensor")


def test_opcheck(float64):
    x, w, b = tensors(3, 1, 3, 5)
    torch.library.opcheck(conv.task_conv2d, (x, w, b, [1, 1], [1, 1]), test_utils=CHECKS)
    gy = torch.randn(2, 1, 5, 5, requires_grad=True)
    args = (gy, x, w, [1, 1], [1, 1])
    torch.library.opcheck(conv.task_conv2d_backward, args, test_utils=CHECKS)


def test_switch_routes_single_output_channel_convolutions_only():
    x = torch.randn(2, 4, 6, 6)
    one, many = torch.randn(1, 4, 3, 3), torch.randn(5, 4, 3, 3)
    with conv.task_convolutions():
        routed = F.conv2d(x, one.requires_grad_(), padding=1)
        kept = F.conv2d(x, many.requires_grad_(), padding=1)
        grouped = F.conv2d(x, torch.randn(2, 2, 3, 3, requires_grad=True), groups=2)
    assert type(routed.grad_fn).__name__ == "_TaskConvBackward"
    assert type(kept.grad_fn).__name__ != "_TaskConvBackward"
    assert type(grouped.grad_fn).__name__ != "_TaskConvBackward"
    torch.testing.assert_close(routed, F.conv2d(x, one, padding=1))
    with conv.aten_convolutions(), conv.task_convolutions():
        off = F.conv2d(x, one, padding=1)
    assert type(off.grad_fn).__name__ != "_TaskConvBackward"

"""The compiled CUDA kernel of ``metagan::inner_step`` against the pure-PyTorch reference.

Run on a GPU machine (``bash benchmarks/gpu_session.sh`` does the install first)::

    pytest -m cuda -q tests/test_ops_cuda.py

Every test here is skipped when ``torch.cuda.is_available()`` is False, and only then; on a GPU
machine where the extension did not build, ``test_backend_is_cuda`` fails and says why.

Unwritten outputs: the op allocates its outputs through the caching allocator, so before each
fused call blocks of exactly the output sizes are filled with NaN and freed; the op's outputs
then reuse that memory, and any element the kernel did not write stays NaN and fails the
comparison (inputs and reference are finite).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.library import opcheck

from metagan import ops
from metagan.ops.reference import inner_step_reference

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="needs a CUDA GPU: torch.cuda.is_available() is False on this machine",
    ),
]

OP = torch.ops.metagan.inner_step.default
METHODS = ("sgd", "momentum", "adam")
DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
TASKS = (1, 3, 37)
PARAMS = (1, 1000, 4097, 123457)
LR_KINDS = ("float", "scalar", "task", "param", "full")
HYPER = dict(momentum=0.9, beta1=0.9, beta2=0.999, eps=1e-8)

# params-dtype outputs; states are always compared at the compute dtype's tolerance.
TOL = {
    torch.float32: dict(rtol=1e-5, atol=1e-5),
    torch.float64: dict(rtol=1e-10, atol=1e-12),
    torch.bfloat16: dict(rtol=1.6e-2, atol=1e-5),  # one bf16 rounding of close fp32 values
    torch.float16: dict(rtol=1e-3, atol=1e-5),
}


def acc_dtype(dtype):
    return torch.float64 if dtype == torch.float64 else torch.float32


def make_case(T, P, dtype, method, lr_kind, *, with_state, seed, device="cuda"):
    """Positional op arguments for one case (random, finite)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    acc = acc_dtype(dtype)

    def rnd(shape, dt, positive=False):
        x = torch.rand(shape, generator=gen, device=device, dtype=acc)
        return (x + 0.1 if positive else 2 * x - 1).to(dt)

    params = rnd((T, P), dtype)
    grads = rnd((T, P), dtype)
    lr_shape = {"float": None, "scalar": (), "task": (T, 1), "param": (P,), "full": (T, P)}[lr_kind]
    lr = None if lr_shape is None else 0.05 * rnd(lr_shape, acc, positive=True)
    lr_scale = 0.03 if lr is None else 1.0
    s1 = rnd((T, P), acc) if with_state and method != "sgd" else None
    s2 = rnd((T, P), acc, positive=True) * 0.01 if with_state and method == "adam" else None
    return [params, grads, lr, lr_scale, method, s1, s2, 3, *HYPER.values(), 0.0, None]


def poison_outputs(T, P, dtype):
    """Fill freed blocks of the outputs' sizes with NaN so unwritten outputs show up."""
    blocks = [torch.full((T, P), float("nan"), dtype=dtype, device="cuda")]
    blocks += [
        torch.full((T, P), float("nan"), dtype=acc_dtype(dtype), device="cuda") for _ in range(2)
    ]
    del blocks


def check_case(args, label):
    params = args[0]
    T, P = params.shape
    poison_outputs(T, P, params.dtype)
    got = OP(*args)
    want = inner_step_reference(*args)
    tol = TOL[params.dtype]
    acc_tol = TOL[acc_dtype(params.dtype)]
    names = ("new_params", "state1", "state2")
    for name, g, w, t in zip(names, got, want, (tol, acc_tol, acc_tol)):
        assert g.shape == w.shape and g.dtype == w.dtype, f"{label}: {name} {g.shape}/{g.dtype}"
        if g.numel():
            assert torch.isfinite(g).all(), (
                f"{label}: {name} has unwritten (NaN) or non-finite elements"
            )
        torch.testing.assert_close(g, w, **t, msg=lambda m, n=name: f"{label}: {n}: {m}")


def test_backend_is_cuda():
    info = ops.backend_info()
    assert ops.backend() == "cuda", f"the CUDA kernel is not in use: {info}"
    assert info.startswith("cuda (") and "sm_" in info


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_fused_matches_reference(dtype, method):
    """Every shape x lr shape x clipping x weight decay, with and without incoming state."""
    cases = itertools.product(TASKS, PARAMS, LR_KINDS, (None, 0.5), (0.0, 0.01))
    for i, (T, P, lr_kind, clip, wd) in enumerate(cases):
        with_state = i % 2 == 1
        args = make_case(T, P, dtype, method, lr_kind, with_state=with_state, seed=i)
        args[12], args[13] = wd, clip
        label = f"{method} {dtype} T={T} P={P} lr={lr_kind} clip={clip} wd={wd} state={with_state}"
        check_case(args, label)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_misaligned_and_noncontiguous_inputs(dtype, method):
    """Storage offsets that break 16-byte alignment (scalar path) and transposed inputs."""
    T, P = 5, 1003
    base = make_case(T, P, dtype, method, "param", with_state=True, seed=7)
    shifted = []
    for x in base:
        if isinstance(x, torch.Tensor) and x.dim() == 2:
            buf = torch.empty(x.numel() + 1, dtype=x.dtype, device="cuda")
            view = buf[1:].view(x.shape)
            view.copy_(x)
            shifted.append(view)
        else:
            shifted.append(x)
    shifted[13] = 1.0
    check_case(shifted, f"misaligned {method} {dtype}")
    transposed = list(base)
    transposed[0] = base[0].t().contiguous().t()
    transposed[1] = base[1].t().contiguous().t()
    assert not transposed[0].is_contiguous()
    check_case(transposed, f"transposed {method} {dtype}")


@pytest.mark.parametrize(
    "T,P", [(70001, 3), (2, 3_000_001), (1, 4), (0, 5), (4, 0)], ids=lambda v: str(v)
)
def test_grid_limits_and_empty(T, P):
    """More tasks than gridDim.y, rows longer than one grid pass, and empty problems."""
    for method in METHODS:
        args = make_case(T, P, torch.float32, method, "task", with_state=True, seed=11)
        args[13] = 0.5
        check_case(args, f"{method} T={T} P={P}")


def test_clipping_is_deterministic():
    args = make_case(37, 123457, torch.float32, "adam", "param", with_state=True, seed=5)
    args[13] = 0.5
    a = OP(*args)
    b = OP(*args)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def test_current_stream_is_used():
    args = make_case(37, 4097, torch.float32, "adam", "full", with_state=True, seed=3)
    want = inner_step_reference(*args)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = OP(*args)
    side.synchronize()
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, **TOL[torch.float32])


def test_wrapper_multi_step_state_on_cuda():
    """Three steps through ops.inner_step on CUDA equal the same on CPU (reference kernel)."""
    T, P = 3, 4097
    gen = torch.Generator().manual_seed(0)
    p_cpu = torch.randn(T, P, generator=gen)
    grads = [torch.randn(T, P, generator=gen) for _ in range(3)]
    lr = torch.rand(P, generator=gen) * 0.1
    kw = dict(method="adam", weight_decay=0.01, max_grad_norm=10.0)
    p_gpu, st_cpu, st_gpu = p_cpu.cuda(), None, None
    for step, g in enumerate(grads, start=1):
        p_cpu, st_cpu = ops.inner_step(p_cpu, g, lr, state=st_cpu, step=step, **kw)
        p_gpu, st_gpu = ops.inner_step(p_gpu, g.cuda(), lr.cuda(), state=st_gpu, step=step, **kw)
    torch.testing.assert_close(p_gpu.cpu(), p_cpu, **TOL[torch.float32])
    for k in st_cpu:
        torch.testing.assert_close(st_gpu[k].cpu(), st_cpu[k], **TOL[torch.float32])


def call_op(params, grads, lr=None, method="sgd", state1=None):
    """The op with default hyper-parameters (lr_scale 1 when lr is a tensor, else 0.1)."""
    lr_scale = 0.1 if lr is None else 1.0
    return OP(
        params, grads, lr, lr_scale, method, state1, None, 1, 0.9, 0.9, 0.999, 1e-8, 0.0, None
    )


def test_cuda_input_errors_are_value_errors():
    """The C++ checks (TORCH_CHECK_VALUE) reach Python as ValueError naming the tensor."""
    p = torch.randn(3, 5, device="cuda")
    with pytest.raises(ValueError, match=r"lr of shape .*3.* does not broadcast"):
        call_op(p, p, torch.rand(3, device="cuda"))
    with pytest.raises(ValueError, match=r"grads must have params' shape"):
        call_op(p, p[:, :4])
    with pytest.raises(ValueError, match=r"method must be 'sgd', 'momentum' or 'adam'"):
        call_op(p, p, method="lion")
    with pytest.raises(ValueError, match=r"lr must be on"):
        call_op(p, p, torch.rand(5))
    with pytest.raises(ValueError, match=r"state1 must be None for method 'sgd'"):
        call_op(p, p, state1=p)


def _grad_args(method, dtype, clip, requires_grad=True):
    args = make_case(2, 5, dtype, method, "param", with_state=True, seed=13)
    args[12], args[13] = 0.01, clip
    for i in (0, 1, 2, 5, 6):
        if args[i] is not None:
            args[i] = args[i].detach().requires_grad_(requires_grad)
    return args


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_opcheck_cuda(method, dtype):
    for clip in (None, 0.5):
        opcheck(OP, tuple(_grad_args(method, dtype, clip)))
        opcheck(OP, tuple(_grad_args(method, dtype, clip, requires_grad=False)))


@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_cuda_float64(method):
    """Forward = fused kernel (float64 is supported), backward = reference vjp."""
    for clip in (None, 0.5):
        args = _grad_args(method, torch.float64, clip)
        idx = [i for i in (0, 1, 2, 5, 6) if args[i] is not None]
        n_out = {"sgd": 1, "momentum": 2, "adam": 3}[method]

        def fn(*xs, args=args, idx=idx, n_out=n_out):
            full = list(args)
            for i, x in zip(idx, xs):
                full[i] = x
            return OP(*full)[:n_out]

        inputs = tuple(args[i] for i in idx)
        assert torch.autograd.gradcheck(fn, inputs)
        assert torch.autograd.gradgradcheck(fn, inputs)

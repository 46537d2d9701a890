"""The ``metagan::inner_step`` op on CPU (its reference kernel), through the dispatcher.

Checked against an independent implementation: ``torch.optim.SGD``/``Adam`` and
``torch.nn.utils.clip_grad_norm_`` stepping every parameter of every task as its own tensor (one
param group per element, so per-task and per-parameter learning rates fit). Plus opcheck,
gradcheck/gradgradcheck, a second-order MAML meta-gradient against finite differences,
reduced-precision params, input errors and the backend report.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest
import torch
from torch.library import opcheck

from metagan import ops
from metagan.errors import MetaganError
from metagan.ops import _extension
from metagan.ops._schema import INNER_STEP_SCHEMA
from metagan.ops.reference import inner_step_reference

OP = torch.ops.metagan.inner_step.default
ROOT = Path(__file__).resolve().parents[1]
METHODS = ("sgd", "momentum", "adam")
LR_KINDS = ("float", "scalar", "task", "param", "full")
STATE_KEYS = {"sgd": (), "momentum": ("momentum_buffer",), "adam": ("exp_avg", "exp_avg_sq")}
HYPER = dict(momentum=0.8, betas=(0.85, 0.99), eps=1e-3)


def make_lr(kind: str, T: int, P: int, dtype=torch.float64, gen=None):
    """(lr argument for inner_step, full (T, P) float64 matrix of the rates it means)."""
    if kind == "float":
        return 0.07, torch.full((T, P), 0.07, dtype=torch.float64)
    if kind == "scalar":
        lr = torch.tensor(0.05, dtype=dtype)
    elif kind == "task":
        lr = 0.01 + 0.1 * torch.rand(T, dtype=dtype, generator=gen)
    elif kind == "param":
        lr = 0.01 + 0.1 * torch.rand(P, dtype=dtype, generator=gen)
    else:
        lr = 0.01 + 0.1 * torch.rand(T, P, dtype=dtype, generator=gen)
    full = (lr.reshape(T, 1) if kind == "task" else lr).double().expand(T, P)
    return lr, full


def optim_steps(params, grads_seq, lr_full, method, weight_decay, max_grad_norm):
    """Independent implementation: torch.optim on one 0-d tensor per (task, parameter)."""
    T, P = params.shape
    leaves = [
        [torch.nn.Parameter(params[t, j].detach().clone()) for j in range(P)] for t in range(T)
    ]
    groups = [
        {"params": [leaves[t][j]], "lr": float(lr_full[t, j])} for t in range(T) for j in range(P)
    ]
    if method == "adam":
        opt = torch.optim.Adam(
            groups,
            lr=1.0,
            betas=HYPER["betas"],
            eps=HYPER["eps"],
            weight_decay=weight_decay,
            foreach=False,
        )
    else:
        mom = HYPER["momentum"] if method == "momentum" else 0.0
        opt = torch.optim.SGD(
            groups, lr=1.0, momentum=mom, weight_decay=weight_decay, foreach=False
        )
    for grads in grads_seq:
        for t in range(T):
            for j in range(P):
                leaves[t][j].grad = grads[t, j].detach().clone()
            if max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(leaves[t], max_grad_norm)
        opt.step()
    new_p = torch.stack([torch.stack([x.detach() for x in row]) for row in leaves])
    state = {
        k: torch.stack([torch.stack([opt.state[x][k] for x in row]) for row in leaves])
        for k in STATE_KEYS[method]
    }
    return new_p, state


def call_op(params, grads, lr=None, method="sgd", state1=None):
    """The op with default hyper-parameters (lr_scale 1 when lr is a tensor, else 0.1)."""
    lr_scale = 0.1 if lr is None else 1.0
    return OP(
        params, grads, lr, lr_scale, method, state1, None, 1, 0.9, 0.9, 0.999, 1e-8, 0.0, None
    )


def op_lr(lr, T):
    """The op's (lr, lr_scale) for an inner_step lr argument (per-task (T,) -> (T, 1))."""
    if not isinstance(lr, torch.Tensor):
        return None, float(lr)
    if lr.dim() == 1 and lr.shape[0] == T:
        return lr.reshape(T, 1), 1.0
    return lr, 1.0


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("max_grad_norm", [None, 2.0])
@pytest.mark.parametrize("lr_kind", LR_KINDS)
@pytest.mark.parametrize("method", METHODS)
def test_matches_torch_optim(method, lr_kind, max_grad_norm, weight_decay):
    gen = torch.Generator().manual_seed(0)
    T, P, steps = 3, 5, 3
    params = torch.randn(T, P, dtype=torch.float64, generator=gen)
    grads_seq = [torch.randn(T, P, dtype=torch.float64, generator=gen) for _ in range(steps)]
    grads_seq[1][0] *= 0.01  # one task below the clipping threshold, the others above
    lr, lr_full = make_lr(lr_kind, T, P, gen=gen)
    want_p, want_state = optim_steps(
        params, grads_seq, lr_full, method, weight_decay, max_grad_norm
    )

    kw = dict(method=method, weight_decay=weight_decay, max_grad_norm=max_grad_norm, **HYPER)
    p, state = params, None
    op_p, s1, s2 = params, None, None
    op_lr_t, lr_scale = op_lr(lr, T)
    for step, grads in enumerate(grads_seq, start=1):
        p, state = ops.inner_step(p, grads, lr, state=state, step=step, **kw)
        op_p, n1, n2 = torch.ops.metagan.inner_step(
            op_p, grads, op_lr_t, lr_scale, method, s1, s2, step, HYPER["momentum"],
            *HYPER["betas"], HYPER["eps"], weight_decay, max_grad_norm,
        )  # fmt: skip
        s1 = n1 if method != "sgd" else None
        s2 = n2 if method == "adam" else None

    torch.testing.assert_close(p, want_p, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op_p, p, rtol=0, atol=0)
    assert sorted(state) == sorted(STATE_KEYS[method])
    for k in STATE_KEYS[method]:
        torch.testing.assert_close(state[k], want_state[k], rtol=1e-12, atol=1e-12)
        assert state[k].dtype == torch.float64


def test_op_outputs_and_no_mutation():
    T, P = 4, 6
    params, grads = torch.randn(T, P), torch.randn(T, P)
    state = {"exp_avg": torch.randn(T, P), "exp_avg_sq": torch.rand(T, P)}
    before = [x.clone() for x in (params, grads, *state.values())]
    new_p, new_state = ops.inner_step(params, grads, 0.1, method="adam", state=state, step=3)
    for x, y in zip((params, grads, *state.values()), before):
        assert torch.equal(x, y), "inner_step must not modify its inputs"
    assert new_p.shape == (T, P) and new_p.is_contiguous()
    assert new_p.data_ptr() != params.data_ptr()
    # unused state slots of the op are empty (0,) tensors of the compute dtype
    _, s1, s2 = call_op(params, grads, method="sgd")
    assert s1.shape == (0,) and s2.shape == (0,) and s1.dtype == torch.float32
    _, s1, s2 = call_op(params, grads, method="momentum")
    assert s1.shape == (T, P) and s2.shape == (0,)
    assert not s1.data_ptr() == grads.data_ptr(), "first momentum buffer must not alias grads"


def test_noncontiguous_and_empty_inputs():
    base = torch.randn(7, 4)
    params, grads = base.t(), torch.randn(7, 4).t()  # (4, 7), transposed views
    out, _ = ops.inner_step(params, grads, 0.1, method="momentum", max_grad_norm=1.0)
    want, _ = ops.inner_step(
        params.contiguous(), grads.contiguous(), 0.1, method="momentum", max_grad_norm=1.0
    )
    assert out.is_contiguous()
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    for shape in ((0, 5), (3, 0)):
        p = torch.randn(shape)
        out, state = ops.inner_step(p, torch.randn(shape), 0.1, method="adam", max_grad_norm=1.0)
        assert out.shape == shape and state["exp_avg"].shape == shape


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("method", METHODS)
def test_reduced_precision_params(method, dtype):
    """bf16/fp16 params: fp32 arithmetic and fp32 state, one rounding of the result."""
    gen = torch.Generator().manual_seed(1)
    T, P = 3, 33
    params = torch.randn(T, P, generator=gen).to(dtype)
    lr = (0.01 + 0.1 * torch.rand(P, generator=gen)).to(dtype)
    kw = dict(method=method, weight_decay=0.01, max_grad_norm=3.0, **HYPER)
    p, state = params, None
    p32, state32 = params.float(), None
    for step in (1, 2):
        grads = torch.randn(T, P, generator=gen).to(dtype)
        p, state = ops.inner_step(p, grads, lr, state=state, step=step, **kw)
        p32, state32 = ops.inner_step(
            p32, grads.float(), lr.float(), state=state32, step=step, **kw
        )
        assert p.dtype == dtype
        assert torch.equal(p, p32.to(dtype)), "one rounding of the fp32 result"
        p32 = p.float()  # continue from the rounded params, as the bf16 run does
        for k in STATE_KEYS[method]:
            assert state[k].dtype == torch.float32
            torch.testing.assert_close(state[k], state32[k], rtol=0, atol=0)
    # and close to torch.optim on the same (rounded) inputs
    want, _ = optim_steps(
        params.double(), [grads.double()], lr.double().expand(T, P), method, 0.01, 3.0
    )
    got, _ = ops.inner_step(params, grads, lr, **kw)
    torch.testing.assert_close(got.double(), want.to(dtype).double(), **_tol(dtype))


def _tol(dtype):
    return {
        torch.bfloat16: dict(rtol=1.6e-2, atol=1e-2),
        torch.float16: dict(rtol=1e-3, atol=1e-3),
    }[dtype]


def _op_args(
    method, *, lr_shape=(1, 4), clip=None, wd=0.01, dtype=torch.float64, grad=True, T=2, P=4
):
    """Positional arguments of the op; state in the compute dtype, lr in params' dtype."""
    gen = torch.Generator().manual_seed(2)
    acc = torch.float64 if dtype == torch.float64 else torch.float32

    def mk(shape, dt=dtype, positive=False):
        x = (
            torch.rand(shape, generator=gen) + 0.5
            if positive
            else torch.randn(shape, generator=gen)
        )
        return x.to(dt).requires_grad_(grad)

    lr = (
        None
        if lr_shape is None
        else mk(lr_shape, positive=True).detach().mul(0.05).requires_grad_(grad)
    )
    s1 = mk((T, P), acc) if method != "sgd" else None
    s2 = mk((T, P), acc, positive=True) if method == "adam" else None
    lr_scale = 0.1 if lr is None else 1.0
    hyper = (2, 0.9, 0.9, 0.999, 1e-8, wd, clip)  # step, momentum, beta1, beta2, eps, wd, clip
    return (mk((T, P)), mk((T, P)), lr, lr_scale, method, s1, s2, *hyper)


@pytest.mark.parametrize(
    "method,lr_shape,clip,dtype",
    [
        ("sgd", None, None, torch.float32),
        ("sgd", (2, 1), 0.5, torch.float64),
        ("momentum", (4,), None, torch.float32),
        ("momentum", (), 0.5, torch.float64),
        ("adam", (2, 4), None, torch.float64),
        ("adam", (1, 4), 0.5, torch.float32),
        ("adam", None, 1.0, torch.bfloat16),
    ],
)
def test_opcheck(method, lr_shape, clip, dtype):
    opcheck(OP, _op_args(method, lr_shape=lr_shape, clip=clip, dtype=dtype))
    opcheck(OP, _op_args(method, lr_shape=lr_shape, clip=clip, dtype=dtype, grad=False))


@pytest.mark.parametrize("clip", [None, 0.5])
@pytest.mark.parametrize("method", METHODS)
def test_gradcheck_and_gradgradcheck(method, clip):
    """Analytic first and second derivatives w.r.t. params, grads, lr and state, in float64."""
    for lr_shape in ((2, 1), (4,)):
        args = _op_args(method, lr_shape=lr_shape, clip=clip)
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


def _mlp(theta, x):
    """Tiny per-task MLP 2 -> 3 -> 1 from a flat (P=13,) parameter vector."""
    w1, b1, w2, b2 = theta[:6].view(3, 2), theta[6:9], theta[9:12].view(1, 3), theta[12:13]
    return torch.tanh(x @ w1.t() + b1) @ w2.t() + b2


def _meta_loss(init, lr, data, method, steps, create_graph):
    """MAML: `steps` inner steps from `init` on each task's support set, loss on the query set."""
    xs, ys, xq, yq = data  # (T, N, 2), (T, N, 1), ...
    T = xs.shape[0]
    theta = init.expand(T, -1)
    state = None
    for s in range(steps):
        inner = sum(((_mlp(theta[t], xs[t]) - ys[t]) ** 2).mean() for t in range(T))
        (g,) = torch.autograd.grad(inner, theta, create_graph=create_graph)
        theta, state = ops.inner_step(
            theta,
            g,
            lr,
            method=method,
            state=state,
            step=s + 1,
            max_grad_norm=5.0,
            weight_decay=0.01,
        )
    return sum(((_mlp(theta[t], xq[t]) - yq[t]) ** 2).mean() for t in range(T))


@pytest.mark.parametrize("method", METHODS)
def test_second_order_maml_meta_gradient(method):
    """d(query loss)/d(init, lr) through 2 inner steps, against central finite differences."""
    gen = torch.Generator().manual_seed(3)
    T, N, P = 2, 5, 13
    data = tuple(torch.randn(T, N, d, dtype=torch.float64, generator=gen) for d in (2, 1, 2, 1))
    init = (0.5 * torch.randn(P, dtype=torch.float64, generator=gen)).requires_grad_()
    lr = torch.full((P,), 0.1, dtype=torch.float64).requires_grad_()  # Meta-SGD rates
    loss = _meta_loss(init, lr, data, method, 2, create_graph=True)
    g_init, g_lr = torch.autograd.grad(loss, (init, lr))

    def numeric(x, which):
        h, out = 1e-6, torch.zeros_like(x)
        for i in range(x.numel()):
            vals = []
            for sign in (1, -1):
                xx = x.detach().clone()
                xx.view(-1)[i] += sign * h
                a = (xx, lr.detach()) if which == "init" else (init.detach(), xx)
                a0 = a[0].requires_grad_()
                with torch.enable_grad():
                    vals.append(_meta_loss(a0, a[1], data, method, 2, create_graph=False).item())
            out.view(-1)[i] = (vals[0] - vals[1]) / (2 * h)
        return out

    torch.testing.assert_close(g_init, numeric(init, "init"), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g_lr, numeric(lr, "lr"), rtol=1e-5, atol=1e-7)
    # the second-order terms matter here: first-order MAML gives a different answer
    fo = _meta_loss(init, lr, data, method, 2, create_graph=False)
    g_fo = torch.autograd.grad(fo, init)[0]
    assert not torch.allclose(g_fo, g_init, rtol=1e-3, atol=1e-6)


def test_torch_compile_traces_the_op():
    def two_steps(p, g):
        p1, st = ops.inner_step(p, g, 0.1, method="adam", step=1, max_grad_norm=1.0)
        p2, st = ops.inner_step(p1, g, torch.full((5,), 0.1), method="adam", state=st, step=2)
        return p2, st["exp_avg_sq"]

    p, g = torch.randn(3, 5), torch.randn(3, 5)
    compiled = torch.compile(two_steps, backend="aot_eager", fullgraph=True)
    for a, b in zip(compiled(p, g), two_steps(p, g)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(grads=torch.randn(3, 4)), r"grads must have params' shape \(3, 5\), got \(3, 4\)"),
        (dict(grads=torch.randn(3, 5, dtype=torch.float64)), r"grads must have params' dtype"),
        (dict(params=torch.randn(15)), r"params must be a 2-D \(T, P\) tensor, got \(15,\)"),
        (dict(lr=torch.rand(4)), r"lr of shape \(4,\) is neither \(T,\)=\(3,\) .* \(P,\)=\(5,\)"),
        (
            dict(lr=torch.rand(2, 5)),
            r"lr of shape \(2, 5\) does not broadcast to params' shape \(3, 5\)",
        ),
        (dict(lr="fast"), r"lr must be a float or a tensor, got str"),
        (
            dict(method="rmsprop"),
            r"method must be one of \['sgd', 'momentum', 'adam'\], got 'rmsprop'",
        ),
        (
            dict(method="adam", state={"momentum_buffer": torch.zeros(3, 5)}),
            r"keys \['exp_avg', 'exp_avg_sq'\]",
        ),
        (
            dict(
                method="momentum", state={"momentum_buffer": torch.zeros(3, 5, dtype=torch.float64)}
            ),
            r"state1 must be torch.float32",
        ),
        (
            dict(method="momentum", state={"momentum_buffer": torch.zeros(5, 3)}),
            r"state1 must have params' shape",
        ),
        (dict(step=0), r"step must be an int >= 1"),
        (dict(betas=(0.9, 1.0)), r"betas must be in \[0, 1\)"),
        (dict(max_grad_norm=0.0), r"max_grad_norm must be > 0 or None"),
        (
            dict(params=torch.randn(3, 5).int(), grads=torch.randn(3, 5).int()),
            r"params must be float32",
        ),
    ],
)
def test_input_errors(kwargs, match):
    args = dict(params=torch.randn(3, 5), grads=torch.randn(3, 5), lr=0.1)
    args.update(kwargs)
    params, grads, lr = args.pop("params"), args.pop("grads"), args.pop("lr")
    with pytest.raises(ValueError, match=match) as info:
        ops.inner_step(params, grads, lr, **args)
    assert isinstance(info.value, MetaganError)
    assert "\n" not in str(info.value)


def test_ambiguous_per_task_or_per_parameter_lr():
    p, g = torch.randn(4, 4), torch.randn(4, 4)
    with pytest.raises(ValueError, match=r"ambiguous .* pass shape \(4, 1\) .* or \(1, 4\)"):
        ops.inner_step(p, g, torch.rand(4))
    lr = torch.rand(4)
    per_task, _ = ops.inner_step(p, g, lr.view(4, 1))
    torch.testing.assert_close(per_task, p - lr.view(4, 1) * g)
    per_param, _ = ops.inner_step(p, g, lr.view(1, 4))
    torch.testing.assert_close(per_param, p - lr * g)
    one, _ = ops.inner_step(p[:1], g[:1], lr[:1])  # T == P == 1 is not ambiguous
    torch.testing.assert_close(one, p[:1] - lr[:1] * g[:1])


def test_direct_op_call_errors_name_the_tensor():
    p = torch.randn(3, 5)
    with pytest.raises(ValueError, match=r"lr of shape \(3,\) does not broadcast"):
        call_op(p, p, torch.rand(3))
    with pytest.raises(ValueError, match=r"state1 must be None for method 'sgd'"):
        call_op(p, p, state1=p)


def test_reference_is_the_cpu_kernel():
    args = _op_args("adam", clip=0.5, dtype=torch.float32, grad=False)
    for a, b in zip(OP(*args), inner_step_reference(*args)):
        assert torch.equal(a, b)


def test_schema_matches_csrc():
    text = (ROOT / "csrc" / "schema.cpp").read_text()
    block = re.search(r"BEGIN SCHEMA inner_step(.*?)END SCHEMA", text, re.S)
    assert block, "csrc/schema.cpp lost its BEGIN/END SCHEMA markers"
    cpp = "".join(re.findall(r'"((?:[^"\\]|\\.)*)"', block.group(1)))
    assert cpp == INNER_STEP_SCHEMA
    assert str(OP._schema) == f"metagan::{INNER_STEP_SCHEMA}"


def test_the_spec_is_the_one_statement_of_the_arguments():
    """The schema, the kernels' signatures and the kind checks all come from _schema.ARGS."""
    import inspect

    from metagan.ops._register import _fake
    from metagan.ops._schema import ARGS

    names = [a.name for a in ARGS]
    assert [a.name for a in OP._schema.arguments] == names
    assert list(inspect.signature(inner_step_reference).parameters) == names
    assert list(inspect.signature(_fake).parameters) == names
    # a wrong kind is named from the spec (the dispatcher refuses it too, less readably)
    from metagan.ops._checks import check_op_args

    p = torch.randn(3, 5)
    with pytest.raises(ValueError, match=r"^inner_step: momentum must be a float, got str$"):
        check_op_args(p, p, None, 0.1, "sgd", None, None, 1, "0.9", 0.9, 0.999, 1e-8, 0.0, None)
    with pytest.raises(ValueError, match=r"^inner_step: state1 must be None or a tensor, got list"):
        check_op_args(p, p, None, 0.1, "sgd", [], None, 1, 0.9, 0.9, 0.999, 1e-8, 0.0, None)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the report of a machine without CUDA")
def test_backend_report_without_cuda():
    assert ops.backend() == "reference"
    info = ops.backend_info()
    assert info.startswith("reference (pure PyTorch; ") and "\n" not in info


def test_jit_failure_falls_back_and_warns_once(monkeypatch):
    """A GPU machine without metagan._C whose JIT build fails: reference + one warning."""
    monkeypatch.setattr(
        _extension, "_STATE", _extension._State(prebuilt_error="metagan._C is not built")
    )
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.delenv("METAGAN_OPS", raising=False)
    monkeypatch.delenv("METAGAN_JIT", raising=False)

    def boom():
        raise RuntimeError("Error building extension 'metagan_cuda_jit'\nnvcc fatal error: boom")

    monkeypatch.setattr(_extension, "_jit_build", boom)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert ops.backend() == "reference"
        assert ops.backend() == "reference"
        ops.inner_step(torch.randn(2, 3), torch.randn(2, 3), 0.1)
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1, msgs
    assert "JIT build failed" in msgs[0] and "boom" in msgs[0]
    assert "JIT build failed" in ops.backend_info()

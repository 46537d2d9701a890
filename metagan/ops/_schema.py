"""The op's argument spec, written once: every other statement of ``metagan::inner_step``'s
arguments is derived from :data:`ARGS`.

- the schema string (:data:`INNER_STEP_SCHEMA`), defined from Python when the compiled
  extension is absent; ``csrc/schema.cpp`` (between ``BEGIN SCHEMA`` and ``END SCHEMA``) must
  hold the same string, and ``tests/test_ops.py::test_schema_matches_csrc`` checks it;
- the Python signature of the kernels registered with the dispatcher (:func:`op_signature`:
  the reference, the fake kernel);
- the positional binding :class:`OpArgs` the checks, the fake kernel and the autograd formula
  read arguments through, and the kind checks of :func:`check_kinds` (a ``Tensor`` is a
  tensor, a ``float`` a finite real number...);
- which inputs are differentiable (:data:`DIFF_POS`).
"""

from __future__ import annotations

import inspect
import numbers
from collections import namedtuple
from dataclasses import dataclass

from torch import Tensor

NAMESPACE = "metagan"
OP_NAME = "inner_step"
QUALNAME = f"{NAMESPACE}::{OP_NAME}"


@dataclass(frozen=True)
class Arg:
    name: str
    type: str  # the schema type: Tensor, Tensor?, float, float?, int, str
    differentiable: bool = False  # the backward returns a gradient for it
    doc: str = ""


ARGS = (
    Arg("params", "Tensor", True, "(T, P) flat parameters of one network, one row per task"),
    Arg("grads", "Tensor", True, "(T, P), params' dtype and device"),
    Arg("lr", "Tensor?", True, "broadcastable to (T, P): (), (P,), (T, 1), (1, P), (T, P)"),
    Arg("lr_scale", "float", doc="multiplies lr (the whole rate when lr is None)"),
    Arg("method", "str", doc="sgd, momentum or adam"),
    Arg("state1", "Tensor?", True, "(T, P) momentum buffer or Adam's m, compute dtype"),
    Arg("state2", "Tensor?", True, "(T, P) Adam's v, compute dtype"),
    Arg("step", "int", doc="1-based step (Adam's bias correction)"),
    Arg("momentum", "float"),
    Arg("beta1", "float"),
    Arg("beta2", "float"),
    Arg("eps", "float"),
    Arg("weight_decay", "float"),
    Arg("max_grad_norm", "float?", doc="per-task L2 clipping of grads, or None"),
)
RETURNS = "(Tensor, Tensor, Tensor)"  # new params, state1, state2 (unused: empty (0,))

INNER_STEP_SCHEMA = f"{OP_NAME}({', '.join(f'{a.type} {a.name}' for a in ARGS)}) -> {RETURNS}"
OpArgs = namedtuple("OpArgs", [a.name for a in ARGS])
DIFF_POS = tuple(i for i, a in enumerate(ARGS) if a.differentiable)
N_INPUTS = len(ARGS)

_ANNOTATION = {"Tensor": Tensor, "float": float, "int": int, "str": str}


def op_signature(fn):
    """Give ``fn(*args)`` the op's Python signature (inspect and the dispatcher see it)."""
    params = []
    for a in ARGS:
        base = _ANNOTATION[a.type.rstrip("?")]
        ann = base | None if a.type.endswith("?") else base
        params.append(
            inspect.Parameter(a.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=ann)
        )
    fn.__signature__ = inspect.Signature(params)
    return fn


def check_kinds(args: OpArgs, fail) -> None:
    """Each argument is of its schema type: ``fail(message)`` names the first that is not."""
    for a, value in zip(ARGS, args):
        optional, kind = a.type.endswith("?"), a.type.rstrip("?")
        if value is None and optional:
            continue
        if kind == "Tensor":
            ok, what = isinstance(value, Tensor), "a tensor"
        elif kind == "int":
            ok, what = isinstance(value, numbers.Integral), "an int"
        elif kind == "float":
            ok, what = isinstance(value, numbers.Real), "a float"
        else:
            ok, what = isinstance(value, str), "a str"
        if not ok or isinstance(value, bool):
            fail(
                f"{a.name} must be {'None or ' if optional else ''}{what}, got {type(value).__name__}"
            )

"""The op schema, as defined from Python when the compiled extension is absent.

Must stay identical to the string in ``csrc/schema.cpp`` (between ``BEGIN SCHEMA`` and
``END SCHEMA``); ``tests/test_ops.py::test_schema_matches_csrc`` checks it.
"""

from __future__ import annotations

NAMESPACE = "metagan"
OP_NAME = "inner_step"
QUALNAME = f"{NAMESPACE}::{OP_NAME}"

INNER_STEP_SCHEMA = (
    "inner_step(Tensor params, Tensor grads, Tensor? lr, float lr_scale, str method, "
    "Tensor? state1, Tensor? state2, int step, float momentum, float beta1, float beta2, "
    "float eps, float weight_decay, float? max_grad_norm) -> (Tensor, Tensor, Tensor)"
)

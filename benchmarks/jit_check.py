"""GPU-only check of the JIT fallback: ignore metagan._C, build the CUDA kernel from csrc/ on
first use, and compare it with the reference. Run with ``METAGAN_OPS=jit`` (benchmarks/gpu_session.sh)."""

import time

import torch

t0 = time.time()
import metagan.ops as ops  # noqa: E402 - timed: the import triggers the JIT build
from metagan.ops.reference import inner_step_reference  # noqa: E402

print("jit:", ops.backend_info(), f"(import + build {time.time() - t0:.0f} s)")
assert ops.backend() == "cuda", ops.backend_info()
p = torch.randn(37, 4097, device="cuda")
g, lr = torch.randn_like(p), torch.rand(4097, device="cuda")
for method in ("sgd", "momentum", "adam"):
    got, _ = ops.inner_step(p, g, lr, method=method, max_grad_norm=1.0)
    args = (p, g, lr, 1.0, method, None, None, 1, 0.9, 0.9, 0.999, 1e-8, 0.0, 1.0)
    torch.testing.assert_close(got, inner_step_reference(*args)[0])
print("jit: fused == reference for sgd, momentum, adam")

#!/usr/bin/env bash
# One-shot GPU check of the metagan CUDA extension; run from the repo root on a GPU machine:
#
#     OUT=/some/dir bash tests/gpu_check.sh
#
# Installs (building metagan._C; METAGAN_CUDA=1 makes a failed CUDA build fail loudly), prints
# the versions, runs the CUDA tests, the CPU op tests and the benchmark, and tees every log
# into $OUT (default ./out/gpu_check). Exits non-zero if any step failed; later steps still run.
set -x -o pipefail
export PYTHONUNBUFFERED=1
OUT="${OUT:-$PWD/out/gpu_check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
status=0

{
  nvidia-smi
  nvcc --version
  "$PY" -c 'import sys, torch; print("python", sys.version.split()[0]); print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available()); print("device", torch.cuda.get_device_name(0), "capability", torch.cuda.get_device_capability(0))'
} 2>&1 | tee "$OUT/versions.log"

# Build for the visible GPU only unless the caller chose (keeps the build to about a minute).
if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
  TORCH_CUDA_ARCH_LIST="$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')"
  export TORCH_CUDA_ARCH_LIST
fi
START=$(date +%s)
"$PY" -m pip --version
"$PY" -c 'import setuptools; print("setuptools", setuptools.__version__)'
if ! METAGAN_CUDA=1 "$PY" -m pip install --no-deps --no-build-isolation -e . 2>&1 | tee "$OUT/install.log"; then
  echo "gpu_check: INSTALL FAILED (see $OUT/install.log); JIT disabled so the tests report it quickly"
  export METAGAN_JIT=0
  status=1
fi
echo "gpu_check: install took $(( $(date +%s) - START )) s"

"$PY" -c 'import metagan.ops as o; print("backend:", o.backend(), "|", o.backend_info())' 2>&1 \
  | tee "$OUT/backend.log" || status=1

# --noconftest -p no:metagan: these tests need neither the core's conftest nor its pytest plugin.
PYTEST=("$PY" -m pytest --noconftest -p no:metagan)
"${PYTEST[@]}" -m cuda -q -rs --durations=8 tests/test_ops_cuda.py 2>&1 | tee "$OUT/pytest_cuda.log" \
  || { echo "gpu_check: CUDA TESTS FAILED"; status=1; }

"${PYTEST[@]}" -q tests/test_ops.py 2>&1 | tee "$OUT/pytest_cpu_ops.log" \
  || { echo "gpu_check: CPU OP TESTS FAILED"; status=1; }

# The JIT fallback: ignore metagan._C, build the CUDA kernel from csrc/ at first use, compare.
METAGAN_OPS=jit timeout 300 "$PY" - <<'PY' 2>&1 | tee "$OUT/jit.log" || { echo "gpu_check: JIT FAILED"; status=1; }
import time

import torch

t0 = time.time()
import metagan.ops as ops
from metagan.ops.reference import inner_step_reference

print("jit:", ops.backend_info(), f"(import + build {time.time() - t0:.0f} s)")
assert ops.backend() == "cuda", ops.backend_info()
p = torch.randn(37, 4097, device="cuda")
g, lr = torch.randn_like(p), torch.rand(4097, device="cuda")
for method in ("sgd", "momentum", "adam"):
    got, _ = ops.inner_step(p, g, lr, method=method, max_grad_norm=1.0)
    args = (p, g, lr, 1.0, method, None, None, 1, 0.9, 0.9, 0.999, 1e-8, 0.0, 1.0)
    torch.testing.assert_close(got, inner_step_reference(*args)[0])
print("jit: fused == reference for sgd, momentum, adam")
PY

timeout 120 "$PY" benchmarks/bench_inner_step.py --json "$OUT/bench_inner_step.json" 2>&1 \
  | tee "$OUT/bench_inner_step.log" || { echo "gpu_check: BENCHMARK FAILED"; status=1; }

echo "gpu_check: exit status $status (logs in $OUT)"
exit $status

#!/usr/bin/env bash
# The one prepared GPU run of a session (device time is scarce): install against the machine's
# own torch (building the CUDA extension), run every cuda-marked test, then the op benchmark
# and `metagan bench`. Logs go to $OUT. Usage on the GPU machine, from the repo root:
#     OUT=/tmp/out bash benchmarks/gpu_session.sh
set -x -o pipefail
export PYTHONUNBUFFERED=1
OUT="${OUT:-$PWD/out/gpu}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; "$PY" -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda)'; date -u; } 2>&1 | tee "$OUT/versions.log"
if [ "$DEVICE" = cuda ]; then
  export TORCH_CUDA_ARCH_LIST="$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')"
  "$PY" -c "import metagan._C" 2>/dev/null || time METAGAN_CUDA=1 "$PY" -m pip install -q --no-deps --no-build-isolation -e . > "$OUT/install.log" 2>&1 || echo "INSTALL FAILED"
fi
"$PY" -m metagan plugins 2>&1 | head -3
timeout 150 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/test_engine_cuda.py tests/test_ops_cuda.py 2>&1 | tail -25 | tee "$OUT/pytest_cuda.log"
[ "$DEVICE" = cuda ] && METAGAN_OPS=jit timeout 300 "$PY" benchmarks/jit_check.py 2>&1 | tee "$OUT/jit.log"
timeout 60 "$PY" benchmarks/bench_inner_step.py --json "$OUT/bench_inner_step.json" 2>&1 | tee "$OUT/bench_inner_step.log"
timeout 200 "$PY" -m metagan bench --device "$DEVICE" --algorithm fomaml,maml --tasks ${TASKS:-1,8,32} --repeats ${REPEATS:-5} --warmup 2 2>&1 | tee "$OUT/bench_meta.log"
timeout 40 "$PY" -m metagan bench --device "$DEVICE" --algorithm fomaml --tasks 128 --modes batched${EXT:-,batched-ext} --repeats 3 --no-flops 2>&1 | tee "$OUT/bench_t128.log"

#!/usr/bin/env bash
# The one prepared GPU run of a session (device time is scarce, about 8 minutes of it here):
# install against the machine's own torch (building the CUDA extension), meta-train the
# shot-conditioned `dagan` on the five small1 folds on the GPU (longer runs than the CPU table,
# replayed from CUDA graphs) while every cuda-marked test runs, then `metagan bench` on a quiet
# GPU: the side-by-side modes at T = 8 and 32, and how cost grows with T, inner steps and size.
# Usage on the GPU machine, from the repo root (SMALL1: the small1 zip, carried there):
#     OUT=/tmp/out SMALL1=.carry/omniglot/images_background_small1.zip bash benchmarks/gpu_session.sh
# $OUT receives at most 6 files (setup.log, pytest_cuda.log, bench.log, bench.jsonl,
# train.log, train.tar.gz); the work folder is $WORK. OPS=1 adds, at the end, the fused op's
# own benchmark (BENCHMARKS.md's op table) and the JIT-build check, into bench.log.
# PEERS=DIR adds the side-by-side peer benchmark (benchmarks/peers.py: learn2learn, higher,
# metagan's modes, T = 8 and 32, first and second order, graph and eager; second order also with
# meta.meta_gradient = "summed", the peers' own meta-gradient; first order at 64 px too; about
# 10 minutes at most) into peers.log and peers.jsonl; DIR
# holds the two peer wheels, made on a machine with the network by
#     bash benchmarks/install_peers.sh .venv/bin/python .whl/peers
# and carried over (the GPU machine reaches no index). PEERS_ONLY=1 runs setup and the peers only.
set -x -o pipefail
export PYTHONUNBUFFERED=1
OUT="${OUT:-$PWD/out/gpu}"
WORK="${WORK:-/tmp/metagan_gpu}"
SMALL1="${SMALL1:-../shared/omniglot/images_background_small1.zip}"
TRAIN_ITERS="${TRAIN_ITERS:-1000}"
mkdir -p "$OUT" "$WORK"
PY="${PYTHON:-python3}"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  "$PY" -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.version.cuda)'
  lscpu | grep -m1 "Model name"; date -u
  export TORCH_CUDA_ARCH_LIST="$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability(0))')"
  "$PY" -c "import metagan._C" 2>/dev/null || time METAGAN_CUDA=1 "$PY" -m pip install -q --no-deps --no-build-isolation -e . || echo "INSTALL FAILED"
  "$PY" -m metagan plugins | head -3
} > "$OUT/setup.log" 2>&1

peers() {  # the side-by-side peer benchmark on the GPU (section 4; alone with PEERS_ONLY=1)
  {
    bash benchmarks/install_peers.sh "$PY" "$PEERS" || { echo "PEERS INSTALL FAILED"; return; }
    local P=("$PY" benchmarks/peers.py --device cuda --rounds 3 --json "$OUT/peers.jsonl")
    timeout 60 "$PY" benchmarks/peers.py --device cuda --check   # the same meta-gradients on CUDA
    timeout 180 "${P[@]}" --order first --tasks 8,32              # peers, sequential, batched, -graph
    timeout 240 "${P[@]}" --order second --tasks 8,32 \
      --modes higher,learn2learn,batched,batched-summed,batched-graph-summed  # identical work: -summed
    timeout 120 "${P[@]}" --order first --tasks 8 --image-size 64 --modes higher,learn2learn,batched,batched-graph
  } > "$OUT/peers.log" 2>&1
}
if [ -n "${PEERS_ONLY:-}" ]; then
  peers
  echo "done after ${SECONDS}s"
  exit 0
fi

# -- 1. meta-train dagan on the small1 folds, on the GPU, in the background ----------------------
train_fold() {
  local f=$1 d="$WORK/train/$1"
  local args=(--config configs/conditional.toml --dataset omniglot --data-root "$SMALL1"
              "data.test_groups=[\"$f\"]" --device cuda run.checkpoint_every=250)
  timeout "${TRAIN_TIMEOUT:-150}" "$PY" -m metagan train "${args[@]}" "meta.iterations=$TRAIN_ITERS" \
    run.cuda_graph=true --out "$d" > "$WORK/train/$f.log" 2>&1
  local rc=$?
  if [ $rc -ne 0 ] && [ ! -f "$d/checkpoint.pt" ]; then  # no graph: the eager engine, CPU-table length
    timeout 100 "$PY" -m metagan train "${args[@]}" --out "$d.eager" > "$WORK/train/$f.eager.log" 2>&1
    rc="$rc, eager $?"
  fi
  echo "$f exit $rc after ${SECONDS}s" >> "$WORK/train/status.log"
}
mkdir -p "$WORK/train"
pids=()
for f in Balinese Early_Aramaic Greek Korean Latin; do train_fold "$f" & pids+=($!); done

# -- 2. the cuda-marked tests (the GPU is shared with the training meanwhile) ---------------------
timeout 240 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests/test_ops_cuda.py \
  tests/test_engine_cuda.py tests/test_graphs_cuda.py 2>&1 | tail -40 > "$OUT/pytest_cuda.log"

wait "${pids[@]}"
(cd "$WORK/train" && tail -n 3 ./*.log status.log; for f in */metrics.jsonl; do echo "$f"; tail -n 1 "$f"; done) > "$OUT/train.log" 2>&1
tar -C "$WORK" -czf "$OUT/train.tar.gz" train

# -- 3. metagan bench on a quiet GPU ------------------------------------------------------------
n=0
B() {  # B SECONDS ARGS...: one `metagan bench` invocation, its JSON rows to a file of its own
  n=$((n + 1)); timeout "$1" "$PY" -m metagan bench --device cuda --json "$WORK/bench_$n.jsonl" "${@:2}"
  cat "$WORK/bench_$n.jsonl" >> "$OUT/bench.jsonl"; }
{
  B 100 --algorithm fomaml --tasks 8,32 --repeats 5 --warmup 2
  B 130 --algorithm maml --tasks 8,32 --repeats 3 --warmup 1
  # how cost grows (batched paths only; the sequential loop is linear in T by construction)
  B 50 --algorithm fomaml --tasks 1,128 --modes batched,batched-graph --repeats 3 --no-flops
  for s in 1 20; do
    B 35 --algorithm fomaml --tasks 32 --inner-steps $s --modes batched,batched-graph --repeats 3 --no-flops
  done
  for px in 32 64; do
    B 45 --algorithm fomaml --tasks 32 --image-size $px --modes batched,batched-graph --repeats 3
  done
} > "$OUT/bench.log" 2>&1
if [ -n "${OPS:-}" ]; then
  {
    timeout 60 "$PY" benchmarks/bench_inner_step.py --json "$WORK/bench_inner_step.json"
    METAGAN_OPS=jit timeout 300 "$PY" benchmarks/jit_check.py
  } >> "$OUT/bench.log" 2>&1
fi
# -- 4. learn2learn and higher side by side with metagan ---------------------------------------
if [ -n "${PEERS:-}" ]; then peers; fi
echo "done after ${SECONDS}s"

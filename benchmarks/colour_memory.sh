#!/usr/bin/env bash
# Issue 24's memory goal: one 128 px, T = 8 meta-iteration of the shot-conditioned dagan on
# colour photographs (../shared/caltech101) fits in 8 GB on the CPU. Runs `metagan train` for
# one meta-iteration per algorithm under /usr/bin/time -v: the log's header prints the estimate
# before anything is allocated, and "Maximum resident set size" is the process's peak RSS.
#   benchmarks/colour_memory.sh [ALGORITHMS]        (default: fomaml maml; STEPS=5 inner steps)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/colour_memory}
DATA=${DATA:-../shared/caltech101}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$OUT"
for algo in ${1:-fomaml maml}; do
  echo "== $algo: 128 px, 3 channels, dagan width 32, T = 8, K = 5, Q = 5, S = ${STEPS:-5}"
  /usr/bin/time -v "$BIN/metagan" train --dataset folder --data-root "$DATA" --arch dagan \
    --algorithm "$algo" --iterations 1 data.image_size=128 data.channels=3 meta.tasks=8 \
    model.width=32 data.shots=5 data.queries=5 inner.steps="${STEPS:-5}" run.progress=false \
    run.sample_every=0 --out "$OUT/$algo" 2> "$OUT/$algo.time" | grep -v "^plugins:"
  grep -E "Maximum resident set size|Elapsed \(wall" "$OUT/$algo.time"
done

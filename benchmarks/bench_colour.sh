#!/usr/bin/env bash
# Issue 24's `metagan bench` rows for colour photographs: the shot-conditioned dagan at 64 and
# 128 px, 3 channels, the Caltech-101 table's settings (width 16, T = 4, K = 5, Q = 5, 2 inner
# steps, fomaml), batched against the sequential loop, one thread. Raw rows: JSON lines.
#   benchmarks/bench_colour.sh [OUT.jsonl]          (default docs/bench_colour_cpu.jsonl)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${1:-docs/bench_colour_cpu.jsonl}
: > "$OUT"
for size in 64 128; do
  OMP_NUM_THREADS=1 "$BIN/metagan" bench --arch dagan --channels 3 --image-size "$size" \
    --algorithm fomaml --tasks 4 --width 16 --inner-steps 2 --shots 5 --queries 5 \
    --modes sequential,batched --repeats 2 --warmup 1 --threads 1 --json - >> "$OUT"
done

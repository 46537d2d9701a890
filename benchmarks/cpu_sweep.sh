#!/usr/bin/env bash
# The CPU tables of BENCHMARKS.md: how cost grows with T, inner steps and image size.
# Usage: bash benchmarks/cpu_sweep.sh OUTDIR   (about 15 minutes on a 2-core machine; run nothing else meanwhile)
set -euo pipefail
OUT="${1:-out/cpu_sweep}"
mkdir -p "$OUT"
MB="${METAGAN:-.venv/bin/metagan}"
# Workload W (dcgan 28 px, z=64, K=5, 5 inner steps): batched vs the sequential loop
$MB bench --algorithm fomaml,maml --tasks 1,4,8 --repeats 5 --json "$OUT/w.jsonl" | tee "$OUT/w.md"
# cost against T (fomaml)
$MB bench --algorithm fomaml --tasks 16,32 --repeats 3 --json "$OUT/tasks.jsonl" | tee "$OUT/tasks.md"
# cost against inner steps (T=8)
for s in 1 10 20; do
  $MB bench --algorithm fomaml,maml --tasks 8 --inner-steps $s --modes batched --repeats 3 --json "$OUT/steps_$s.jsonl" | tee "$OUT/steps_$s.md"
done
# cost against image size (T=8)
for px in 32 64; do
  $MB bench --algorithm fomaml --tasks 8 --image-size $px --repeats 3 --json "$OUT/size_$px.jsonl" | tee "$OUT/size_$px.md"
done
# the largest meta-batches last (batched only: the sequential loop's time is linear in T)
$MB bench --algorithm fomaml --tasks 64,128 --modes batched --repeats 2 --warmup 1 --json "$OUT/tasks_big.jsonl" | tee "$OUT/tasks_big.md"
# second-order memory: recomputing each inner step in the backward (inner.recompute) vs keeping it
for s in 5 10 20; do
  $MB bench --algorithm maml --tasks 8 --inner-steps $s --modes batched --repeats 2 --no-flops --json "$OUT/keep_$s.jsonl" | tee "$OUT/keep_$s.md"
  $MB bench --algorithm maml --tasks 8 --inner-steps $s --modes batched --repeats 2 --no-flops --recompute --json "$OUT/recompute_$s.jsonl" | tee "$OUT/recompute_$s.md"
done

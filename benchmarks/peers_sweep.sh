#!/usr/bin/env bash
# The CPU peer tables of BENCHMARKS.md: benchmarks/peers.py at W (T = 8, both orders, with
# memory) and how cost grows with T, inner steps and image size, every metagan row beside
# learn2learn's and higher's, plus the `-summed` rows (meta.meta_gradient = "summed": the peers'
# own meta-gradient, identical work). One torch thread (see BENCHMARKS.md: on the shared 2-core
# box two threads stall in OpenMP barriers).
# Usage: bash benchmarks/peers_sweep.sh OUT_DIR [PYTHON]; SKIP_W=1 leaves out the W rows of
# issue 15, SKIP_23=1 issue 23's tables, ONLY_23=1 runs those alone.
set -eu
OUT="${1:-out/peers}"
PY="${2:-.venv/bin/python}"
mkdir -p "$OUT"
P() { "$PY" benchmarks/peers.py --threads 1 --json "$OUT/peers.jsonl" "$@" | tee -a "$OUT/peers.md"; }
# Issue 23's tables (BENCHMARKS.md leads with them): identical work side by side.
# Second order: the peers (D step on G(z).detach(), one backward of L_D + L_G) against metagan
# with meta.meta_gradient = "summed" (the same meta-gradient, peers.py --check), its recompute
# variant and the seeds' separate meta-gradients (`batched`), with fresh-process peak memory.
# First order: --peer-outer separate (the same meta-gradient as fomaml), with `batched-aten`
# (PyTorch's own convolution batching rule, no metagan::task_conv2d), at one and two threads.
# Memory: meta.task_chunk (-chunkN), alone and with recompute, beside learn2learn.
if [ -z "${SKIP_23:-}" ]; then
  P --order second --tasks 8 --rounds 3 \
    --modes learn2learn,higher,batched,batched-summed,batched-summed-recompute,sequential-summed
  P --order second --tasks 8 --rounds 3 --modes \
    learn2learn,batched-summed,batched-summed-chunk2,batched-summed-recompute-chunk2,batched-summed-chunk1
  P --order first --tasks 8 --rounds 5 --peer-outer separate \
    --modes learn2learn,higher,sequential,batched,batched-aten
  "$PY" benchmarks/peers.py --threads 2 --json "$OUT/peers.jsonl" --order first --tasks 8 \
    --rounds 5 --peer-outer separate --no-memory \
    --modes learn2learn,higher,sequential,batched,batched-aten | tee -a "$OUT/peers.md"
  "$PY" benchmarks/conv_layouts.py --json "$OUT/conv_layouts.jsonl" | tee -a "$OUT/peers.md"
fi
[ -n "${ONLY_23:-}" ] && exit 0
if [ -z "${SKIP_W:-}" ]; then                                       # W, both orders
  P --tasks 8 --rounds 5 --peer-d-step keep
  P --order second --tasks 8 --rounds 3 --no-memory \
    --modes higher,learn2learn,sequential,batched,batched-summed
  for m in learn2learn higher; do  # the peers' memory with the usual (detached) D step
    "$PY" benchmarks/peers.py --memory-of $m --order second --tasks 8 --threads 1 | tee -a "$OUT/peers.md"
  done
fi
P --order first --tasks 1,16 --rounds 3 --no-memory                 # against T
P --order first --tasks 8 --inner-steps 1 --rounds 3 --no-memory    # against inner steps
P --order first --tasks 8 --inner-steps 10 --rounds 3 --no-memory
P --order first --tasks 8 --image-size 32 --rounds 3 --no-memory    # against image size
P --order second --tasks 1 --rounds 3 --no-memory \
  --modes higher,learn2learn,sequential,batched,batched-summed

#!/usr/bin/env bash
# Reproduce the tables of docs/results.md.
#   benchmarks/results.sh glyphs|small1 [train|eval|all]   (default: all)
# train: meta-train every algorithm (configs/results.toml; small1: one run per held-out
#        alphabet); runs that already reached their last iteration are kept.
# eval:  fit the feature extractor on each split's meta-train classes, then `metagan eval`.
# Two jobs at a time (JOBS=2), one thread each, so a 2-core machine is fully used.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:?usage: benchmarks/results.sh glyphs|small1 [train|eval|all]}
PHASE=${2:-all}
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/results}
JOBS=${JOBS:-2}
SMALL1=${SMALL1:-../shared/omniglot/images_background_small1.zip}
ALGOS="maml metasgd fomaml reptile finetune scratch"
EVAL_ARGS=${EVAL_ARGS:---shots 1 5 --num 32 --augment-k 5 10 15 --augment-num 64 --classifier-steps 200}
export OMP_NUM_THREADS=1

case $WHICH in
  glyphs) FOLDS="glyphs"; data() { echo ""; } ;;
  small1) FOLDS="Balinese Early_Aramaic Greek Korean Latin"
          data() { echo "--dataset omniglot --data-root $SMALL1 data.test_groups=[\"$1\"]"; } ;;
  *) echo "results.sh: unknown table $WHICH; use glyphs or small1" >&2; exit 2 ;;
esac

train_one() {  # fold algorithm
  local dir="$OUT/$WHICH/$1/$2"
  if [ -f "$dir/metrics.jsonl" ] && grep -q '"step": 150' "$dir/metrics.jsonl"; then return 0; fi
  if [ "$2" = scratch ] && [ -f "$dir/checkpoint.pt" ]; then return 0; fi
  # shellcheck disable=SC2046
  $BIN/metagan train --config configs/results.toml --algorithm "$2" --out "$dir" \
    $(data "$1") > "$dir.log" 2>&1 || { echo "FAILED: $dir (see $dir.log)" >&2; return 1; }
  echo "trained $dir"
}
export -f train_one data; export OUT WHICH BIN SMALL1

if [ "$PHASE" = train ] || [ "$PHASE" = all ]; then
  mkdir -p "$OUT/$WHICH"
  for f in $FOLDS; do mkdir -p "$OUT/$WHICH/$f"; for a in $ALGOS; do echo "$f $a"; done; done \
    | xargs -P "$JOBS" -n 2 bash -c 'train_one "$0" "$1"'
fi

if [ "$PHASE" = eval ] || [ "$PHASE" = all ]; then
  for f in $FOLDS; do
    d="$OUT/$WHICH/$f"
    [ -f "$d/features.pt" ] || $BIN/metagan eval fit-features --checkpoint "$d/fomaml/checkpoint.pt" \
      --steps 800 --out "$d/features.pt"
    gens=""; for a in $ALGOS; do gens="$gens --generator $d/$a/checkpoint.pt"; done
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=2 $BIN/metagan eval --features "$d/features.pt" $gens $EVAL_ARGS ${CLASSES:+--classes $CLASSES} \
      --out "$d/eval" 2>&1 | tee "$d/eval.log"
  done
fi

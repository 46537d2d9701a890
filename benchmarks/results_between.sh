#!/usr/bin/env bash
# The `between` generator on the small1 folds (docs/results.md, issue 20), one evaluation per
# fold with the free rows beside it:
#   benchmarks/results_between.sh            # FOLDS="Greek Latin" to limit; OUT=runs/between
# Per fold: the untrained `between` checkpoint (metagan train --algorithm scratch), two
# initialisations from the fold's meta-train characters (benchmarks/between_init.py: the
# deformation bank; validation characters left out): `between` (move towards another shot +
# bank + jitter) and `bank` (bank + jitter, no move), then `metagan eval` at 0 adaptation
# steps with the free rows' protocol (the free table's settings). The feature extractor is
# fitted on the fold's meta-train classes if $FEATURES/<fold>/features.pt is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/between}
FEATURES=${FEATURES:-runs/free}
SMALL1=${SMALL1:-../shared/omniglot/images_background_small1.zip}
FOLDS=${FOLDS:-"Early_Aramaic Greek Korean Latin Balinese"}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
for f in $FOLDS; do
  D=$OUT/$f; mkdir -p "$D" "$FEATURES/$f"
  DATA=(--dataset omniglot --data-root "$SMALL1" "data.test_groups=[\"$f\"]")
  [ -f "$FEATURES/$f/features.pt" ] || $BIN/metagan eval fit-features --config configs/warp.toml \
    "${DATA[@]}" --steps 800 --out "$FEATURES/$f/features.pt" > "$FEATURES/$f/features.log" 2>&1
  [ -f "$D/scratch/checkpoint.pt" ] || $BIN/metagan train --config configs/between.toml \
    --algorithm scratch "${DATA[@]}" --out "$D/scratch" > "$D/scratch.log" 2>&1
  $BIN/python benchmarks/between_init.py "$D/scratch/checkpoint.pt" --out "$D/between/checkpoint.pt" > "$D/init.log" 2>&1
  $BIN/python benchmarks/between_init.py "$D/scratch/checkpoint.pt" --out "$D/bank/checkpoint.pt" --between 0 >> "$D/init.log" 2>&1
  $BIN/metagan eval --features "$FEATURES/$f/features.pt" \
    --generator between="$D/between/checkpoint.pt" --generator bank="$D/bank/checkpoint.pt" \
    --steps 0 --shots 1 5 --num 32 --augment-k 1 5 --augment-num 64 --augment-steps 200 \
    --mix 0.25 0.5 --bootstrap 50 --reference shots affine elastic stroke affine+elastic+stroke \
    --out "$D/eval" > "$D/eval.log" 2>&1
  echo "evaluated $f: $D/eval/table.md ($(date))"
done

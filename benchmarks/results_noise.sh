#!/usr/bin/env bash
# The noise-only table of docs/results.md (`make results-noise`): per small1 fold, meta-train
# the MLP G/D with Reptile (configs/noise_only.toml), train the `finetune` baseline, save the
# `scratch` initialisation, set each row's adaptation rate (chosen on validation classes:
# Korean classes of a run trained on 3 alphabets), fit the feature extractor and evaluate
# K = 1 and 5 with S = 20 steps and curves to step 50 (SHOTS="5" CURVE=20: a cheaper run).
# One job, one thread.
#   benchmarks/results_noise.sh [FOLD ...]     (default: the 5 small1 folds)
#   CONFIG=configs/X.toml OUT=runs/results/X RATES="reptile=0.01" ...: another configuration
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/results/noise}
SMALL1=${SMALL1:-../shared/omniglot/images_background_small1.zip}
CONFIG=${CONFIG:-configs/noise_only.toml}
# adaptation rate (Adam, inner.lr_g = inner.lr_d) per row, the best of 0.003/0.01/0.03 on validation
declare -A RATE=([reptile]=0.003 [finetune]=0.03 [scratch]=0.01)
for r in ${RATES:-}; do RATE[${r%%=*}]=${r#*=}; done   # e.g. RATES="reptile=0.01"
# FEATURES_FROM=DIR: reuse DIR/<fold>/features.pt (the extractor depends on the fold only)
export OMP_NUM_THREADS=1
SHOTS=${SHOTS:-"1 5"}   # K values; CURVE: the last step of the adaptation curves
CURVE=${CURVE:-50}
FOLDS=${*:-"Balinese Early_Aramaic Greek Korean Latin"}
for f in $FOLDS; do
  d=$OUT/$f; mkdir -p "$d"
  data=(--dataset omniglot --data-root "$SMALL1" "data.test_groups=[\"$f\"]")
  for a in finetune scratch reptile; do
    [ -f "$d/$a/checkpoint.pt" ] || $BIN/metagan train --config $CONFIG --algorithm $a \
      --out "$d/$a" "${data[@]}" > "$d/$a.log" 2>&1
    $BIN/python benchmarks/set_inner.py "$d/$a/checkpoint.pt" "$d/$a/adapt.pt" \
      "inner.lr_g=${RATE[$a]}" "inner.lr_d=${RATE[$a]}" > /dev/null
  done
  [ -f "$d/features.pt" ] || [ ! -f "${FEATURES_FROM:-/nonexistent}/$f/features.pt" ] ||
    cp "$FEATURES_FROM/$f/features.pt" "$d/features.pt"
  [ -f "$d/features.pt" ] || $BIN/metagan eval fit-features --checkpoint "$d/reptile/checkpoint.pt" \
    --steps 800 --out "$d/features.pt" > "$d/features.log" 2>&1
  $BIN/metagan eval --features "$d/features.pt" --generator "reptile=$d/reptile/adapt.pt" \
    --generator "finetune=$d/finetune/adapt.pt" --generator "scratch=$d/scratch/adapt.pt" \
    --shots $SHOTS --steps 20 --curve-steps $CURVE --num 32 --augment-k --classifier-steps 200 \
    --bootstrap 50 --out "$d/eval" > "$d/eval.log" 2>&1
  echo "evaluated $d: $d/eval/table.md"
done

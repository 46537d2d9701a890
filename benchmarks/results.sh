#!/usr/bin/env bash
# Reproduce the tables of docs/results.md.
#   benchmarks/results.sh glyphs|small1|conditional|warp|free|caltech [train|eval|all]   (default: all)
# train: meta-train every entry (configs/results.toml, or configs/conditional.toml for the
#        `conditional` table; small1 and conditional: one run per held-out alphabet); runs
#        that already reached their last iteration are kept.
# eval:  fit the feature extractor on each split's meta-train classes, then `metagan eval`.
# Two jobs at a time (JOBS=2), one thread each, so a 2-core machine is fully used.
# Finished steps are kept (a rerun resumes); FORCE=1 redoes the evaluations; FOLDS="Greek Latin"
# limits the warp table to some held-out alphabets.
set -euo pipefail
cd "$(dirname "$0")/.."
WHICH=${1:?usage: benchmarks/results.sh glyphs|small1|conditional|warp|free|caltech [train|eval|all]}
PHASE=${2:-all}
BIN=${BIN:-.venv/bin}
OUT=${OUT:-runs/results}
JOBS=${JOBS:-2}
SMALL1=${SMALL1:-../shared/omniglot/images_background_small1.zip}
EVAL_COMMON="--shots 1 5 --num 32 --classifier-steps 200"
CONFIG=configs/results.toml
export OMP_NUM_THREADS=1

# What each table holds (what fitted the 2-core CPU budget of the session that made them):
# glyphs: 60 of the 288 meta-test classes, no augmentation protocol, no maml/metasgd, plus the
#         shot-conditioned dagan; small1: every algorithm, the augmentation protocol, 5 folds;
#         conditional: dagan, fusion and dcgan under fomaml plus dagan+finetune, K=5, 5 folds.
SMALL1_FOLDS="Balinese Early_Aramaic Greek Korean Latin"
small1_fold() { echo "--dataset omniglot --data-root $SMALL1 data.test_groups=[\"$1\"]"; }

case $WHICH in
  glyphs) FOLDS="glyphs"; data() { echo ""; }
          ALGOS=${ALGOS:-"fomaml reptile finetune scratch dagan+fomaml"}
          EVAL_ARGS=${EVAL_ARGS:-"$EVAL_COMMON --classes 60 --augment-k"} ;;
  small1) FOLDS=$SMALL1_FOLDS; data() { small1_fold "$1"; }
          ALGOS=${ALGOS:-"maml metasgd fomaml reptile finetune scratch"}
          EVAL_ARGS=${EVAL_ARGS:-"$EVAL_COMMON --augment-k 5 10 15 --augment-num 64"} ;;
  # the shot-conditioned generators beside the unconditional dcgan, all with the same config
  # and algorithm (fomaml), and dagan trained without meta-learning (finetune)
  conditional)
          FOLDS=$SMALL1_FOLDS; CONFIG=configs/conditional.toml; data() { small1_fold "$1"; }
          ALGOS=${ALGOS:-"dagan+fomaml fusion+fomaml dagan+finetune dcgan+fomaml"}
          EVAL_ARGS=${EVAL_ARGS:-"--shots 5 --num 32 --classifier-steps 200 --augment-k 5 --augment-num 64"} ;;
  # the warp generator, meta-learned (fomaml), trained without meta-learning (finetune) and
  # untrained (scratch: what the architecture's random warps give for free)
  warp)   FOLDS=${FOLDS:-$SMALL1_FOLDS}; CONFIG=configs/warp.toml; data() { small1_fold "$1"; }
          ALGOS=${ALGOS:-"warp+fomaml warp+finetune warp+scratch"}
          EVAL_ARGS=${EVAL_ARGS:-"--shots 1 5 --steps 5 --curve-steps 20 --num 32 --augment-k 5 --augment-num 64 --bootstrap 50"} ;;
  # the free rows alone (no GAN): affine, elastic, stroke and their composition, on the fly
  # and as samples, strengths and mix ratio chosen on validation classes, k = 1 and 5; the
  # candidates are cut to what fits a loaded 2-core CPU (one classifier-steps candidate)
  free)   FOLDS=${FOLDS:-$SMALL1_FOLDS}; CONFIG=configs/warp.toml; data() { small1_fold "$1"; }
          ALGOS=${ALGOS:-}
          EVAL_ARGS=${EVAL_ARGS:-"--shots 1 5 --num 32 --augment-k 1 5 --augment-num 64 --augment-steps 200 --mix 0.25 0.5 --bootstrap 50 --reference shots affine elastic stroke affine+elastic+stroke"} ;;
  # colour photographs (issue 24): dagan meta-trained (fomaml) and untrained (scratch) on 64 of
  # the 80 Caltech-101 classes of ../shared/caltech101, scored on the 16 held-out ones beside
  # every reference row, the colour-aware ones included; no augmentation protocol (its
  # classifiers at 64 px did not fit the session's CPU budget)
  caltech) FOLDS="caltech"; CONFIG=configs/caltech.toml; data() { echo ""; }
          ALGOS=${ALGOS:-"dagan+fomaml dagan+scratch"}; FEATURE_STEPS=${FEATURE_STEPS:-300}
          EVAL_ARGS=${EVAL_ARGS:-"--shots 5 --num 32 --classifier-steps 200 --bootstrap 50 --augment-k --reference shots affine flip crop colour photo"} ;;
  *) echo "results.sh: unknown table $WHICH; use glyphs, small1, conditional, warp, free or caltech" >&2; exit 2 ;;
esac

train_one() {  # fold entry; an entry is ALGORITHM or ARCH+ALGORITHM (e.g. dagan+fomaml)
  local dir="$OUT/$WHICH/$1/$2" arch=() algo=$2
  if [[ $2 == *+* ]]; then arch=(--arch "${2%%+*}"); algo=${2#*+}; fi
  if [ -f "$dir/metrics.jsonl" ] && grep -q "\"step\": $ITERS," "$dir/metrics.jsonl"; then return 0; fi
  if [ "$algo" = scratch ] && [ -f "$dir/checkpoint.pt" ]; then return 0; fi
  # an unfinished run in $dir is redone from the start (--overwrite)
  # shellcheck disable=SC2046
  $BIN/metagan train --config "$CONFIG" --algorithm "$algo" "${arch[@]}" --out "$dir" --overwrite \
    $(data "$1") > "$dir.log" 2>&1 || { echo "FAILED: $dir (see $dir.log)" >&2; return 1; }
  echo "trained $dir"
}
ITERS=$(sed -n 's/^iterations = \([0-9]*\).*/\1/p' "$CONFIG")
export -f train_one data small1_fold; export OUT WHICH BIN SMALL1 ITERS CONFIG

if { [ "$PHASE" = train ] || [ "$PHASE" = all ]; } && [ -n "$ALGOS" ]; then
  mkdir -p "$OUT/$WHICH"
  for f in $FOLDS; do mkdir -p "$OUT/$WHICH/$f"; for a in $ALGOS; do echo "$f $a"; done; done \
    | xargs -P "$JOBS" -n 2 bash -c 'train_one "$0" "$1"'
fi

eval_one() {  # fold
  local d="$OUT/$WHICH/$1" gens="" a
  if [ -f "$d/eval/results.json" ] && [ -z "${FORCE:-}" ]; then echo "kept $d/eval (FORCE=1 redoes it)"; return 0; fi
  local first=${ALGOS%% *} from
  # the data config: the first entry's checkpoint, or (no GAN) the table's config and fold
  if [ -n "$first" ]; then from="--checkpoint $d/$first/checkpoint.pt"; else from="--config $CONFIG $(data "$1")"; fi
  mkdir -p "$d"
  # shellcheck disable=SC2086
  [ -f "$d/features.pt" ] || $BIN/metagan eval fit-features $from \
    --steps "${FEATURE_STEPS:-800}" --out "$d/features.pt" > "$d/features.log" 2>&1 || { echo "FAILED: $d/features.pt" >&2; return 1; }
  for a in $ALGOS; do gens="$gens --generator $a=$d/$a/checkpoint.pt"; done
  # shellcheck disable=SC2086
  $BIN/metagan eval --features "$d/features.pt" $gens $EVAL_ARGS \
    --out "$d/eval" > "$d/eval.log" 2>&1 || { echo "FAILED: $d/eval (see $d/eval.log)" >&2; return 1; }
  echo "evaluated $d: $d/eval/table.md"
}
export -f eval_one; export ALGOS EVAL_ARGS FORCE CONFIG FEATURE_STEPS

if [ "$PHASE" = eval ] || [ "$PHASE" = all ]; then
  n=$(echo $FOLDS | wc -w)
  # one fold (glyphs): give it every core; several: one core per fold, JOBS at a time
  [ "$n" -lt "$JOBS" ] && export OMP_NUM_THREADS=$JOBS
  for f in $FOLDS; do echo "$f"; done | xargs -P "$JOBS" -n 1 bash -c 'eval_one "$0"'
fi

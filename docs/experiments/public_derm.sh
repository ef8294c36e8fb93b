#!/usr/bin/env bash
# The real-image experiment of docs/experiments/public-derm.md, end to end.
#
#   bash docs/experiments/public_derm.sh            # from the repository root
#
# Settings (environment variables): DATA, WEIGHTS, OUT, SIZE (P input size), VIEWS (augmented
# views per training image in the feature cache), EPOCHS, SMALL (input size of the end-to-end
# variants N/PS/NS), SMALL_EPOCHS, VARIANTS_E2E (which of N PS NS to run; empty to skip).
# Every step skips work whose result already exists, so an interrupted run can be restarted.
set -euo pipefail
DATA=${DATA:-../shared/data/public-derm}
WEIGHTS=${WEIGHTS:-../shared/weights/vgg16_imagenet_notop_caffe_input.h5}
OUT=${OUT:-runs/experiment}
SIZE=${SIZE:-160}
VIEWS=${VIEWS:-2}
EPOCHS=${EPOCHS:-60}
SMALL=${SMALL:-64}
SMALL_EPOCHS=${SMALL_EPOCHS:-6}
VARIANTS_E2E=${VARIANTS_E2E:-"N PS NS"}
CACHE=$OUT/feature_cache
BY=original_dataset
mkdir -p "$OUT"

# 1. validate, split by patient with near-duplicate grouping, crop
skin-cnn manifest check "$DATA/manifest.csv" -o "$OUT/manifest_check"
[ -f "$OUT/split.csv" ] || skin-cnn split "$DATA/manifest.csv" -o "$OUT/split.csv" --group-near-duplicates --seed 0
[ -f "$OUT/crop/split.csv" ] || skin-cnn crop "$OUT/split.csv" -o "$OUT/crop" --workers 2 --quiet

NOAUG="--zoom 0 --rotation 0 --translation 0 --no-flip --cache-views 0"
run() {  # run NAME [train flags...]: train, evaluate on test (pooled and per image source)
  local name=$1; shift
  if [ ! -f "$OUT/$name/status.json" ]; then  # status.json is written when training ends
    if [ -f "$OUT/$name/config.json" ]; then
      skin-cnn train --resume "$OUT/$name" --quiet
    else
      skin-cnn train "$OUT/crop/split.csv" -o "$OUT/$name" --weights "$WEIGHTS" --batch-size 32 \
        --seed 0 --cache-dir "$CACHE" --quiet "$@"
    fi
  fi
  [ -f "$OUT/$name/eval_test/metrics.json" ] || skin-cnn evaluate "$OUT/$name" --split test \
      --by "$BY" --flow "$OUT/split.flow.json" --quiet
}

# 2. VGG-16P (frozen ImageNet trunk + the study's heads; feature cache): the value of each part
run p-nocrop-noaug --variant P --image-size "$SIZE" --epochs "$EPOCHS" --no-crop $NOAUG
run p-crop-noaug   --variant P --image-size "$SIZE" --epochs "$EPOCHS" --crop $NOAUG
run p-crop-aug     --variant P --image-size "$SIZE" --epochs "$EPOCHS" --crop --cache-views "$VIEWS"
run p-crop-aug-bal --variant P --image-size "$SIZE" --epochs "$EPOCHS" --crop --cache-views "$VIEWS" --balanced

# 3. Baseline: logistic regression on the same frozen pooled features, no crop, no augmentation
[ -f "$OUT/baseline-logreg/eval_test/metrics.json" ] || \
  python docs/experiments/baseline_logreg.py --split "$OUT/crop/split.csv" --weights "$WEIGHTS" \
    --image-size "$SIZE" -o "$OUT/baseline-logreg" --by "$BY"

# 4. End-to-end variants (trunk trained or spatial transformer: no feature cache) at a small size
for v in $VARIANTS_E2E; do
  lower=$(echo "$v" | tr 'A-Z' 'a-z')
  run "$lower$SMALL-crop-aug" --variant "$v" --image-size "$SMALL" --epochs "$SMALL_EPOCHS" --crop \
      --learning-rate 1e-4 --patience 3
done

# 5. One table of everything, beside the study's; paired DeLong tests between all models
python docs/experiments/summarise.py "$OUT" -o "$OUT/summary.md" --by "$BY"
skin-cnn compare $(dirname $(dirname $(ls "$OUT"/*/eval_test/predictions_test.csv))) -o "$OUT/compare"
echo "summary: $OUT/summary.md and $OUT/compare/compare.md"

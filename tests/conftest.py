"""Shared test setup."""

# Hypothesis imports its optimiser lazily, from deep inside a running property test. There,
# CPython 3.11.7's compile() now and then fails with "AST constructor recursion depth mismatch"
# (a CPython bug, fixed in 3.11.8); importing the module here, on a shallow stack, avoids it.
import hypothesis.internal.conjecture.optimiser  # noqa: F401
import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under tests/integration talks to a real vLLM server.
    for item in items:
        if "tests/integration/" in item.nodeid.replace("\\", "/") or item.nodeid.startswith(
            "integration/"
        ):
            item.add_marker(pytest.mark.integration)

"""Shared test setup."""

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under tests/integration talks to a real vLLM server.
    for item in items:
        if "tests/integration/" in item.nodeid.replace("\\", "/") or item.nodeid.startswith(
            "integration/"
        ):
            item.add_marker(pytest.mark.integration)

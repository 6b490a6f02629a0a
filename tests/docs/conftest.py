"""A real vLLM server (the embedded model) for the guides' code.

The same server as the integration tests' ``vllm_server`` fixture (tests/integration/conftest.py),
and the same ``TTS_GRAPH_TEST_BASE_URL`` to use one you started yourself. Fixtures of that
conftest are not visible here, and importing its session fixture would make a second session
fixture whose server stays up next to the integration tests' until the session ends: this one is
module-scoped instead, so in a full run it is stopped before the integration tests start theirs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tts_graph.backends.server import ServerConfig, VLLMServer


@dataclass(frozen=True)
class RunningServer:
    base_url: str


@pytest.fixture(scope="module")
def vllm_server() -> Iterator[RunningServer]:
    if url := os.environ.get("TTS_GRAPH_TEST_BASE_URL"):
        yield RunningServer(url)
        return
    with VLLMServer(ServerConfig()) as server:
        yield RunningServer(server.base_url)

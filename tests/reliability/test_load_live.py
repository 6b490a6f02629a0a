"""Load: many graph runs at once through one VLLMBackend.

Every run completes (an overall deadline turns a deadlock into a loud failure), the requests in
flight never exceed the backend's ``max_concurrency`` (counted at the HTTP transport, where a
request really leaves the process, never inferred from timing), and the client's memory does
not grow with the number of runs. The connection pool is unbounded here, so the only thing that
can hold the line is the backend's own bound.
"""

from __future__ import annotations

import asyncio
import gc
import json
from collections import Counter
from collections.abc import AsyncIterator

import httpx
import psutil
import pytest

from tts_graph import Budget, SamplingParams, VLLMBackend, create_best_of_n_graph

BOUND = 8
RUNS = 200
DEADLINE_S = 600.0  # for 200 tiny runs on a busy 2-core machine; only a deadlock comes near it


class _Counted(httpx.AsyncByteStream):
    """A response body whose request stops counting as in flight once the body is closed."""

    def __init__(self, inner: httpx.AsyncByteStream, meter: InFlight) -> None:
        self._inner = inner
        self._meter = meter
        self._open = True

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()
        if self._open:
            self._open = False
            self._meter.now -= 1


class InFlight(httpx.AsyncBaseTransport):
    """Counts the requests in flight through ``inner`` (from sending until the body is closed),
    their peak, and the requests sent per path."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.now = 0
        self.peak = 0
        self.sent: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.now += 1
        self.peak = max(self.peak, self.now)
        self.sent[request.url.path] += 1
        try:
            response = await self.inner.handle_async_request(request)
        except BaseException:
            self.now -= 1
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Counted(response.stream, self),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


def unbounded_client(transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(300.0, connect=10.0))


async def run_all(graph, inputs: list[dict]) -> list[dict]:
    try:
        return await asyncio.wait_for(
            asyncio.gather(*(graph.ainvoke(i) for i in inputs)), DEADLINE_S
        )
    except TimeoutError:
        pytest.fail(f"{len(inputs)} concurrent runs did not finish in {DEADLINE_S:.0f} s: deadlock")


def questions(offset: int = 0) -> list[dict]:
    return [{"question": f"What is {i} + {i + 1}?"} for i in range(offset, offset + RUNS)]


# -- a fake server: the bound under load, for every kind of request a run sends -------------


def fake_vllm(delay_s: float = 0.01) -> httpx.AsyncBaseTransport:
    """Answers what VLLMBackend asks of a vLLM server, each answer after ``delay_s`` so that
    concurrent requests overlap."""

    async def handle(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(delay_s)
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "fake", "root": "fake"}]})
        if path == "/tokenize":
            return httpx.Response(200, json={"count": 12, "tokens": list(range(12))})
        assert path == "/v1/chat/completions", path
        body = json.loads(request.content)
        choices = [
            {"index": i, "message": {"role": "assistant", "content": "Answer: 3"},
             "finish_reason": "length", "token_ids": [1, 2, 3, 4]}
            for i in range(body["n"])
        ]  # fmt: skip
        usage = {"prompt_tokens": 12, "completion_tokens": 4 * body["n"], "total_tokens": 0}
        return httpx.Response(
            200,
            json={"id": "x", "object": "chat.completion", "created": 0, "model": "fake",
                  "choices": choices, "usage": usage},
        )  # fmt: skip

    return httpx.MockTransport(handle)


@pytest.mark.parametrize(
    "budget",
    [None, Budget(max_total_tokens=10_000)],
    ids=["no-budget", "token-budget"],
)
async def test_the_backend_bound_holds_for_every_request_a_run_sends(budget):
    """With a token budget each run also counts its prompt at ``/tokenize``: those requests
    are requests to the server too, and the bound covers them."""
    meter = InFlight(fake_vllm())
    async with unbounded_client(meter) as http:
        backend = VLLMBackend("http://fake/v1", max_concurrency=BOUND, http_client=http)
        graph = create_best_of_n_graph(
            backend, n=2, sampling=SamplingParams(max_tokens=4, seed=0), seed=0
        ).compile()
        inputs = [{**q, "budget": budget} if budget else q for q in questions()]
        results = await run_all(graph, inputs)
    assert len(results) == RUNS
    assert all(r["answer"] == "3" and len(r["candidates"]) == 2 for r in results)
    assert meter.sent["/v1/chat/completions"] == RUNS
    assert meter.now == 0
    assert 1 < meter.peak <= BOUND, meter.sent


async def test_a_bound_of_one_serialises_budgeted_runs_without_deadlock():
    """Counting a prompt and generating take the one slot in turn, never both at once: no run
    waits on a slot its own task holds."""
    meter = InFlight(fake_vllm())
    async with unbounded_client(meter) as http:
        backend = VLLMBackend("http://fake/v1", max_concurrency=1, http_client=http)
        graph = create_best_of_n_graph(
            backend, n=2, sampling=SamplingParams(max_tokens=4, seed=0), seed=0
        ).compile()
        budget = Budget(max_total_tokens=10_000)
        results = await run_all(graph, [{**q, "budget": budget} for q in questions()[:20]])
    assert [r["answer"] for r in results] == ["3"] * 20
    assert meter.sent["/tokenize"] >= 1 and meter.sent["/v1/chat/completions"] == 20
    assert meter.peak == 1


# -- the real server ----------------------------------------------------------------------


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


async def test_200_concurrent_runs_complete_within_the_bound_and_memory_stays_flat(vllm_server):
    meter = InFlight(httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=None)))
    async with unbounded_client(meter) as http:
        backend = VLLMBackend(vllm_server.base_url, max_concurrency=BOUND, http_client=http)
        params = SamplingParams(temperature=0.7, max_tokens=4, seed=0, ignore_eos=True)
        graph = create_best_of_n_graph(backend, n=1, sampling=params, seed=0).compile()

        first = await run_all(graph, questions())
        after_first = rss()
        second = await run_all(graph, questions(RUNS))
        after_second = rss()

    for results in (first, second):
        assert len(results) == RUNS
        for r in results:
            (candidate,) = r["candidates"]
            assert candidate.completion_tokens == 4
            assert r["usage"].calls == 1 and r["usage"].completion_tokens == 4
    # Each run sent exactly one generation request: no run was lost or retried.
    assert meter.sent["/v1/chat/completions"] == 2 * RUNS
    assert meter.now == 0
    assert 1 < meter.peak <= BOUND, meter.sent
    # A second batch of the same size reuses what the first one allocated: a leak of even a
    # few hundred KB per run (kept states, candidates, responses) would show as tens of MB.
    grew = after_second - after_first
    assert grew < 32 * 1024 * 1024, f"RSS grew by {grew / 2**20:.1f} MiB over {RUNS} more runs"

"""Transport faults between VLLMBackend and a real vLLM server, injected by a loopback proxy.

For each fault the backend, and a graph run on it, either retries and succeeds or fails with a
clear error; the usage counted is what the server reported in the replies that arrived (the
proxy's record of what it forwarded), and the server's own generated-token counter shows every
token the code under test caused, lost replies included.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from tts_graph.backends.base import Generation, GenerationRequest, SamplingParams, StreamChunk
from tts_graph.backends.vllm import VLLMBackend
from tts_graph.budget import Budget
from tts_graph.errors import BackendError
from tts_graph.graphs.best_of_n import create_best_of_n_graph
from tts_graph.graphs.confidence import create_confidence_graph
from tts_graph.ledger import Ledger
from tts_graph.metering import spending

from fault_proxy import (
    CutStream,
    Delay,
    Drop,
    DropMidBody,
    Exchange,
    Fault,
    FaultProxy,
    FewerChoices,
    Replace,
    Status,
    TooManyRequests,
    Truncate,
    fault_proxy,
)
from server_metrics import settled_tokens

QUESTION = [{"role": "user", "content": "Name a colour."}]
SMALL = SamplingParams(temperature=0.8, max_tokens=6, seed=11)


def chat(n: int = 2, sampling: SamplingParams = SMALL) -> GenerationRequest:
    return GenerationRequest.chat(QUESTION, n=n, sampling=sampling)


def make_backend(proxy: FaultProxy, server: Any, **options: Any) -> VLLMBackend:
    options = {"max_retries": 4, "backoff_base_s": 0.01, "backoff_max_s": 0.05, **options}
    return VLLMBackend(proxy.base_url, model_params=server.model_params, **options)


class Counted:
    """The server's generated tokens during a block: only the code under test runs then."""

    def __init__(self, server: Any) -> None:
        self.root = str(server.root_url)
        self.own = server.server is not None  # a server this test session started
        self.before = 0.0

    async def __aenter__(self) -> Counted:
        self.before = await settled_tokens(self.root)
        return self

    async def __aexit__(self, *exc: object) -> None:
        pass

    async def check(self, proxy: FaultProxy) -> None:
        """The server generated exactly the tokens of every reply it sent back (those the
        client got and those lost on the way)."""
        proxy.wait_idle()
        expected = proxy.upstream_completion_tokens()
        for _ in range(100):  # the counter is updated by the engine loop, just after a reply
            generated = await settled_tokens(self.root) - self.before
            if generated >= expected:
                break
            await asyncio.sleep(0.1)
        # A cut stream goes on until the server notices; a server given from outside (an
        # address in the environment) may serve others too: then only a lower bound holds.
        if self.own and proxy.upstream_known():
            assert generated == expected
        else:
            assert generated >= expected


@pytest.fixture
async def counted(vllm_server: Any) -> AsyncIterator[Counted]:
    async with Counted(vllm_server) as c:
        yield c


def kinds(proxy: FaultProxy) -> list[str]:
    return [type(f).__name__ if f is not None else "-" for f in proxy.faults()]


async def generate_charged(
    backend: VLLMBackend, request: GenerationRequest
) -> tuple[Generation, Ledger]:
    """``backend.generate(request)`` charged to a fresh ledger, as inside a node."""
    ledger = Ledger(budget=Budget(max_total_tokens=100_000))
    with spending(ledger):
        gen = await backend.generate(request)
    return gen, ledger


# -- requests ---------------------------------------------------------------------------------


async def test_a_burst_of_5xx_is_retried_and_counted_once(vllm_server, counted):
    script = [Status(503), Status(502), Status(500)]
    with fault_proxy(vllm_server.root_url, script=script) as proxy:
        backend = make_backend(proxy, vllm_server)
        gen, ledger = await generate_charged(backend, chat())
        await backend.aclose()
    assert kinds(proxy) == ["Status", "Status", "Status", "-"]
    assert len(gen.completions) == 2
    assert gen.usage.calls == 1 == ledger.spent.calls
    assert ledger.spent.completion_tokens == proxy.delivered_completion_tokens() > 0
    assert ledger.spent.prompt_tokens == proxy.delivered_prompt_tokens()
    await counted.check(proxy)


async def test_a_burst_longer_than_the_retries_fails_saying_so(vllm_server, counted):
    with fault_proxy(vllm_server.root_url, decide=lambda e: Status(503)) as proxy:
        backend = make_backend(proxy, vllm_server, max_retries=2)
        ledger = Ledger(budget=Budget(max_total_tokens=100_000))
        with spending(ledger), pytest.raises(BackendError) as info:
            await backend.generate(chat())
        await backend.aclose()
    assert len(proxy.generations()) == 3
    error = info.value
    assert error.retryable and error.status == 503
    assert "HTTP 503" in str(error) and "gave up after 3 attempts" in str(error)
    assert ledger.spent.calls == 0 and ledger.spent.total_tokens == 0
    await counted.check(proxy)  # the server generated nothing


async def test_429_retry_after_is_waited_for_and_capped(vllm_server, caplog):
    script = [TooManyRequests("1"), TooManyRequests("3600")]
    caplog.set_level(logging.WARNING, logger="tts_graph.backends.vllm")
    with fault_proxy(vllm_server.root_url, script=script) as proxy:
        backend = make_backend(proxy, vllm_server, retry_after_max_s=1.5)
        gen, ledger = await generate_charged(backend, chat())
        await backend.aclose()
    assert len(gen.completions) == 2
    arrivals = [e.arrived for e in proxy.generations()]
    assert len(arrivals) == 3
    # Never sooner than asked (a lower bound: a busy machine only makes it later) ...
    assert arrivals[1] - arrivals[0] >= 1.0
    assert arrivals[2] - arrivals[1] >= 1.5
    # ... and an hour's wait is cut to retry_after_max_s.
    waits = [
        float(m.group(1))
        for r in caplog.records
        if (m := re.search(r"retrying a request to \S+ in ([0-9.e+-]+) s", r.getMessage()))
    ]
    assert waits == [1.0, 1.5]
    assert any("asks to wait 3600 s" in r.getMessage() for r in caplog.records)
    assert ledger.spent.completion_tokens == proxy.delivered_completion_tokens()


async def test_dropped_connections_are_retried_and_lost_replies_are_not_counted(
    vllm_server, counted
):
    script = [Drop(), Drop(after_forward=True), DropMidBody(0.5)]
    with fault_proxy(vllm_server.root_url, script=script) as proxy:
        backend = make_backend(proxy, vllm_server)
        gen, ledger = await generate_charged(backend, chat())
        await backend.aclose()
    assert kinds(proxy) == ["Drop", "Drop", "DropMidBody", "-"]
    assert len(gen.completions) == 2
    # Two replies the server generated never arrived: the server's counter has them, the
    # budget counts only the reply that came back.
    delivered = proxy.delivered_completion_tokens()
    assert ledger.spent.completion_tokens == delivered == gen.usage.completion_tokens
    assert proxy.upstream_completion_tokens() > delivered
    assert ledger.spent.calls == 1
    await counted.check(proxy)


async def test_a_reply_slower_than_the_timeout_is_retried(vllm_server, counted):
    # One token: the retried request must finish well within the timeout on a busy machine.
    request = chat(n=1, sampling=SamplingParams(max_tokens=1, seed=3))
    with fault_proxy(vllm_server.root_url, script=[Delay(300)]) as proxy:
        backend = make_backend(proxy, vllm_server, timeout_s=8)
        gen, ledger = await generate_charged(backend, request)
        await backend.aclose()
    assert kinds(proxy) == ["Delay", "-"]
    assert not proxy.generations()[0].delivered  # the client hung up on the held reply
    assert len(gen.completions) == 1
    assert ledger.spent.completion_tokens == proxy.delivered_completion_tokens()
    await counted.check(proxy)


async def test_broken_200_bodies_are_retried(vllm_server, counted):
    script = [
        Truncate(0.6),
        Replace(b"<html><body>502 Bad Gateway</body></html>"),
        Replace(b'{"id": "x", "object": "chat.completion", "choices": "none"}'),
    ]
    with fault_proxy(vllm_server.root_url, script=script) as proxy:
        backend = make_backend(proxy, vllm_server)
        gen, ledger = await generate_charged(backend, chat())
        await backend.aclose()
    assert kinds(proxy) == ["Truncate", "Replace", "Replace", "-"]
    assert len(gen.completions) == 2 and all(c.text for c in gen.completions)
    assert ledger.spent.completion_tokens == proxy.delivered_completion_tokens()
    assert ledger.spent.calls == 1
    await counted.check(proxy)


async def test_broken_200_bodies_past_the_retries_fail_saying_what_was_wrong(vllm_server):
    with fault_proxy(vllm_server.root_url, decide=lambda e: Truncate(0.5)) as proxy:
        backend = make_backend(proxy, vllm_server, max_retries=1)
        with pytest.raises(BackendError, match="not JSON") as info:
            await backend.generate(chat(n=1))
        await backend.aclose()
    assert info.value.retryable
    assert "gave up after 2 attempts" in str(info.value)
    assert len(proxy.generations()) == 2


async def test_missing_choices_are_asked_for_again_with_their_own_seeds(vllm_server, counted):
    request = chat(n=3, sampling=SamplingParams(temperature=1.0, max_tokens=6, seed=21))
    with fault_proxy(vllm_server.root_url, script=[FewerChoices(keep=(0,))]) as proxy:
        backend = make_backend(proxy, vllm_server)
        gen, ledger = await generate_charged(backend, request)
        await backend.aclose()
    asked = [(e.body["n"], e.body["seed"]) for e in proxy.generations()]
    assert asked == [(3, 21), (2, 22)]  # samples 1 and 2, seeded as vLLM seeds them in one reply
    assert [c.index for c in gen.completions] == [0, 1, 2]
    assert all(c.finish_reason for c in gen.completions)
    # Both replies are counted, as the server reported them (it did generate the dropped ones).
    assert ledger.spent.completion_tokens == proxy.delivered_completion_tokens()
    assert ledger.spent.calls == gen.usage.calls == 2
    await counted.check(proxy)


async def test_choices_that_stay_missing_fail_and_what_came_is_counted(vllm_server, counted):
    def short(exchange: Exchange) -> Fault:  # sample 0 only; nothing when asked again
        return FewerChoices(keep=(0,) if exchange.body["n"] == 2 else ())

    with fault_proxy(vllm_server.root_url, decide=short) as proxy:
        backend = make_backend(proxy, vllm_server, max_retries=1)
        ledger = Ledger(budget=Budget(max_total_tokens=100_000))
        with spending(ledger), pytest.raises(BackendError, match=r"1 of the 2 samples") as info:
            await backend.generate(chat(n=2))
        await backend.aclose()
    assert "missing: [1]" in str(info.value)
    assert len(proxy.generations()) == 2  # the reply, and one more ask for sample 1
    assert ledger.spent.completion_tokens == proxy.delivered_completion_tokens() > 0
    await counted.check(proxy)


# -- streams ----------------------------------------------------------------------------------


async def stream_charged(
    backend: VLLMBackend, request: GenerationRequest
) -> tuple[list[StreamChunk], Ledger, BaseException | None]:
    ledger = Ledger(budget=Budget(max_total_tokens=100_000))
    chunks: list[StreamChunk] = []
    error: BaseException | None = None
    with spending(ledger):
        try:
            async for chunk in backend.stream(request):
                chunks.append(chunk)
        except BackendError as exc:
            error = exc
    return chunks, ledger, error


STREAMED = GenerationRequest.chat(
    QUESTION, n=2, sampling=SamplingParams(temperature=0.8, max_tokens=12, seed=5)
)


async def test_a_stream_cut_before_any_text_is_sent_again(vllm_server, counted):
    with fault_proxy(vllm_server.root_url, script=[CutStream(events=0)]) as proxy:
        backend = make_backend(proxy, vllm_server)
        chunks, ledger, error = await stream_charged(backend, STREAMED)
        await backend.aclose()
    assert error is None
    assert kinds(proxy) == ["CutStream", "-"]
    assert {c.index for c in chunks if c.finish_reason} == {0, 1}
    last = proxy.generations()[-1]
    assert ledger.spent.completion_tokens == last.streamed_completion_tokens > 0
    assert ledger.spent.calls == 1
    await counted.check(proxy)


@pytest.mark.parametrize("clean", [False, True], ids=["connection-closed", "body-ended"])
async def test_a_stream_cut_after_text_is_reported_and_counts_what_arrived_once(vllm_server, clean):
    with fault_proxy(vllm_server.root_url, script=[CutStream(events=5, clean=clean)]) as proxy:
        backend = make_backend(proxy, vllm_server)
        chunks, ledger, error = await stream_charged(backend, STREAMED)
        await backend.aclose()
    assert isinstance(error, BackendError) and error.retryable
    assert "cut off" in str(error) if clean else "broke off" in str(error)
    assert len(proxy.generations()) == 1  # delivered text cannot be taken back: not resent
    (cut,) = proxy.generations()
    received = cut.streamed_completion_tokens
    assert 0 < received < 2 * 12
    # What the stream delivered, summed over both samples, once.
    assert ledger.spent.completion_tokens == received
    assert ledger.spent.calls == 1
    assert f"{received} token(s) it delivered are counted" in str(error)
    assert "".join(c.text for c in chunks)


# -- graphs -----------------------------------------------------------------------------------


async def test_best_of_n_rides_out_mixed_faults_and_its_usage_is_what_arrived(vllm_server, counted):
    script: Sequence[Fault] = [
        Status(503),
        Drop(after_forward=True),
        TooManyRequests("0"),
        Truncate(0.5),
        FewerChoices(keep=(0, 2)),
    ]
    with fault_proxy(vllm_server.root_url, script=script) as proxy:
        backend = make_backend(proxy, vllm_server)
        graph = create_best_of_n_graph(backend, n=3, sampling=SMALL, seed=7).compile()
        state = await graph.ainvoke({"question": "Name a colour."})
        await backend.aclose()
    assert kinds(proxy) == ["Status", "Drop", "Status", "Truncate", "FewerChoices", "-"]
    assert len(state["candidates"]) == 3
    record = next(d for d in state["decisions"] if d["kind"] == "fanout")
    assert record["sampled"] == 3 and record["skipped"] == 0
    assert state["usage"].completion_tokens == proxy.delivered_completion_tokens()
    assert state["usage"].prompt_tokens == proxy.delivered_prompt_tokens()
    assert state["usage"].calls == 2
    await counted.check(proxy)


async def test_best_of_n_on_a_failing_server_fails_with_the_server_error(vllm_server, counted):
    with fault_proxy(vllm_server.root_url, decide=lambda e: Status(502)) as proxy:
        backend = make_backend(proxy, vllm_server, max_retries=1)
        graph = create_best_of_n_graph(backend, n=2, sampling=SMALL).compile()
        with pytest.raises(BackendError, match=r"HTTP 502.*gave up after 2 attempts"):
            await graph.ainvoke({"question": "Name a colour."})
        await backend.aclose()
    # The backend's two attempts, for each of the graph's three attempts at the node.
    assert len(proxy.generations()) == 6
    await counted.check(proxy)


async def test_confidence_graph_resends_a_stream_cut_before_text(vllm_server, counted):
    with fault_proxy(vllm_server.root_url, script=[CutStream(events=0)]) as proxy:
        backend = make_backend(proxy, vllm_server)
        graph = create_confidence_graph(
            backend, n=2, concurrency=1, sampling=SamplingParams(max_tokens=8), seed=1
        ).compile()
        state = await graph.ainvoke({"question": "Name a colour."})
        await backend.aclose()
    assert "CutStream" in kinds(proxy)
    assert len(state["candidates"]) == 2
    complete = [e for e in proxy.generations() if e.delivered]
    assert len(complete) == 2
    assert state["usage"].completion_tokens == sum(e.streamed_completion_tokens for e in complete)
    assert state["usage"].calls == 2
    await counted.check(proxy)

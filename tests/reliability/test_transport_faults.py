"""Transport faults that need no server: VLLMBackend against an httpx MockTransport.

The live twin (test_transport_faults_live.py) injects the same faults between the backend and a
real vLLM server; here each case is scripted exactly, including the ones a proxy cannot stage
(an HTTP-date Retry-After, a stream breaking with a given error).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from tts_graph.backends.base import (
    BaseBackend,
    Completion,
    Generation,
    GenerationRequest,
    SamplingParams,
    StreamedSample,
)
from tts_graph.backends.vllm import VLLMBackend
from tts_graph.budget import Budget, Usage
from tts_graph.errors import BackendError
from tts_graph.ledger import Ledger
from tts_graph.metering import spending

BASE = "http://vllm.test/v1"
MODELS = {"object": "list", "data": [{"id": "tiny", "object": "model"}]}
HI = [{"role": "user", "content": "hi"}]


def reply(n: int, *, first: int = 0, tokens: int = 3, prompt_tokens: int = 7) -> dict[str, Any]:
    """A chat completion with choices ``first .. first + n - 1``, ``tokens`` tokens each."""
    return {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "tiny",
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": f"sample {i}"},
                "finish_reason": "stop",
                "token_ids": list(range(tokens)),
            }
            for i in range(first, first + n)
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": n * tokens,
            "total_tokens": prompt_tokens + n * tokens,
        },
    }


Answer = httpx.Response | Exception | Callable[[dict[str, Any]], httpx.Response]


class Server:
    """A scripted server: each generation POST takes the next answer (a response, an exception
    to raise, or a function of the request body); then it answers ``n`` whole choices."""

    def __init__(self, *script: Answer, tokenize: tuple[Answer, ...] = ()) -> None:
        self.script = list(script)
        self.tokenize_script = list(tokenize)
        self.posts: list[dict[str, Any]] = []
        self.tokenize_posts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/models":
            return httpx.Response(200, json=MODELS)
        if path == "/health":
            return httpx.Response(200)
        body = json.loads(request.content)
        tokenize = path == "/tokenize"
        if tokenize:
            self.tokenize_posts += 1
        else:
            self.posts.append(body)
        script = self.tokenize_script if tokenize else self.script
        if script:
            answer = script.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer if isinstance(answer, httpx.Response) else answer(body)
        if tokenize:
            return httpx.Response(200, json={"tokens": [1, 2, 3], "count": 3})
        return httpx.Response(200, json=reply(body["n"]))


def backend_on(server: Server, **options: Any) -> VLLMBackend:
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    options = {"backoff_base_s": 0.001, "backoff_max_s": 0.002, **options}
    return VLLMBackend(BASE, http_client=client, **options)


def request(n: int = 2, seed: int | None = 40) -> GenerationRequest:
    return GenerationRequest.chat(HI, n=n, sampling=SamplingParams(max_tokens=8, seed=seed))


def logged_waits(caplog: pytest.LogCaptureFixture) -> list[float]:
    return [
        float(m.group(1))
        for r in caplog.records
        if (m := re.search(r"retrying a request to \S+ in ([0-9.e+-]+) s", r.getMessage()))
    ]


def charged() -> tuple[Ledger, Any]:
    ledger = Ledger(budget=Budget(max_total_tokens=100_000))
    return ledger, spending(ledger)


# -- Retry-After ------------------------------------------------------------------------------


def limited(headers: dict[str, str], status: int = 429) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"error": {"message": "slow down"}})


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "0.2"}, 0.2),
        ({"Retry-After": "0"}, 0.0),
        ({"retry-after-ms": "150", "Retry-After": "9"}, 0.15),
        ({"Retry-After": "3600"}, 0.5),  # capped at retry_after_max_s
    ],
    ids=["seconds", "zero", "milliseconds-first", "capped"],
)
async def test_retry_after_sets_the_wait_before_the_next_attempt(caplog, headers, expected):
    caplog.set_level(logging.WARNING, logger="tts_graph.backends.vllm")
    server = Server(limited(headers))
    backend = backend_on(server, retry_after_max_s=0.5)
    gen = await backend.generate(request())
    assert len(gen.completions) == 2 and len(server.posts) == 2
    assert logged_waits(caplog) == [expected]


async def test_retry_after_as_an_http_date(caplog):
    caplog.set_level(logging.WARNING, logger="tts_graph.backends.vllm")
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    backend = backend_on(Server(limited({"Retry-After": when})), retry_after_max_s=0.25)
    await backend.generate(request())
    # About 30 s away, so cut to the cap (an unparsed date would give the tiny backoff).
    assert logged_waits(caplog) == [0.25]


async def test_retry_after_on_503_is_honoured_and_garbage_falls_back_to_backoff(caplog):
    caplog.set_level(logging.WARNING, logger="tts_graph.backends.vllm")
    server = Server(limited({"Retry-After": "0.3"}, 503), limited({"Retry-After": "soon"}))
    await backend_on(server).generate(request())
    first, second = logged_waits(caplog)
    assert first == 0.3
    assert second <= 0.002  # the configured backoff, not a guess


async def test_a_rate_limit_that_outlasts_the_retries_says_so():
    server = Server(*[limited({"Retry-After": "0"})] * 3)
    with pytest.raises(BackendError) as info:
        await backend_on(server, max_retries=2).generate(request())
    assert info.value.retryable and info.value.status == 429
    assert "HTTP 429: slow down" in str(info.value)
    assert "gave up after 3 attempts" in str(info.value)


# -- broken replies ---------------------------------------------------------------------------


BROKEN = {
    "truncated": httpx.Response(200, content=json.dumps(reply(2)).encode()[:90]),
    "html": httpx.Response(200, content=b"<html>502</html>", headers={"content-type": "text/html"}),
    "wrong shape": httpx.Response(200, json={"id": "x", "choices": "none"}),
    "choice without message": httpx.Response(200, json={"id": "x", "choices": [{"index": 0}]}),
    "duplicate indices": httpx.Response(
        200, json={**reply(2), "choices": reply(2)["choices"][:1] * 2}
    ),
}


@pytest.mark.parametrize("broken", BROKEN.values(), ids=BROKEN.keys())
async def test_a_broken_200_reply_is_retried(broken):
    server = Server(broken)
    ledger, scope = charged()
    with scope:
        gen = await backend_on(server).generate(request())
    assert len(server.posts) == 2
    assert [c.index for c in gen.completions] == [0, 1]
    assert ledger.spent.completion_tokens == 6 and ledger.spent.calls == 1


async def test_broken_replies_past_the_retries_fail_naming_the_problem():
    body = json.dumps(reply(2)).encode()[:90]
    server = Server(*[httpx.Response(200, content=body)] * 2)
    with pytest.raises(BackendError, match=r"not JSON.*gave up after 2 attempts") as info:
        await backend_on(server, max_retries=1).generate(request())
    assert info.value.retryable


async def test_connection_closed_mid_body_and_timeouts_are_retried():
    server = Server(
        httpx.RemoteProtocolError("peer closed connection without sending complete body"),
        httpx.ReadTimeout("timed out"),
    )
    gen = await backend_on(server).generate(request())
    assert len(gen.completions) == 2 and len(server.posts) == 3


async def test_a_timeout_that_outlasts_the_retries_names_the_timeout():
    server = Server(*[httpx.ReadTimeout("timed out")] * 2)
    with pytest.raises(BackendError, match=r"timed out after 0\.5 s \(gave up after 2 attempts\)"):
        await backend_on(server, max_retries=1, timeout_s=0.5).generate(request())


async def test_a_dropped_connection_says_what_happened():
    server = Server(*[httpx.RemoteProtocolError("Server disconnected without a response")] * 2)
    with pytest.raises(BackendError, match="Server disconnected without a response"):
        await backend_on(server, max_retries=1).generate(request())


# -- fewer choices than n ---------------------------------------------------------------------


async def test_missing_choices_are_asked_for_with_the_seeds_of_their_indices():
    keep_one = httpx.Response(200, json={**reply(4), "choices": reply(4)["choices"][1:2]})
    server = Server(keep_one)
    ledger, scope = charged()
    with scope:
        gen = await backend_on(server).generate(request(n=4, seed=40))
    asked = [(p["n"], p.get("seed")) for p in server.posts]
    # Sample 1 arrived; 0 alone, then 2-3 together, each run seeded as in the whole request.
    assert asked == [(4, 40), (1, 40), (2, 42)]
    assert [c.index for c in gen.completions] == [0, 1, 2, 3]
    assert [c.text for c in gen.completions] == ["sample 0", "sample 1", "sample 0", "sample 1"]
    # Every reply as the server reported it: 4 samples, then 1, then 2.
    assert gen.usage.completion_tokens == 3 * (4 + 1 + 2) == ledger.spent.completion_tokens
    assert gen.usage.prompt_tokens == 3 * 7 and gen.usage.calls == 3 == ledger.spent.calls


async def test_missing_choices_of_an_unseeded_request_stay_unseeded():
    server = Server(httpx.Response(200, json=reply(1)))
    gen = await backend_on(server).generate(request(n=3, seed=None))
    assert [(p["n"], p.get("seed")) for p in server.posts] == [(3, None), (2, None)]
    assert len(gen.completions) == 3


async def test_choices_that_stay_missing_raise_and_what_came_back_is_counted():
    def nothing(body: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json={**reply(body["n"]), "choices": []})

    server = Server(httpx.Response(200, json=reply(1)), nothing, nothing)
    ledger, scope = charged()
    with scope, pytest.raises(BackendError) as info:
        await backend_on(server, max_retries=2).generate(request(n=3))
    message = str(info.value)
    assert "returned 1 of the 3 samples" in message and "missing: [1, 2]" in message
    assert not info.value.retryable
    assert len(server.posts) == 3
    # Every reply as the server reported it: the first (1 sample), the two empty ones (2 each).
    assert ledger.spent.completion_tokens == 3 + 2 * (2 * 3)
    assert ledger.spent.calls == 3


class Short(BaseBackend):
    """A backend of someone's own that returns one sample whatever ``n`` is."""

    async def _generate(self, request: GenerationRequest) -> Generation:
        usage = Usage(prompt_tokens=5, completion_tokens=4, calls=1)
        return Generation((Completion(0, "only", "stop", completion_tokens=4),), usage)

    async def tokenize(self, text: str) -> list[int]:
        return [1] * len(text.split())


async def test_any_backend_returning_fewer_samples_than_asked_fails_clearly():
    ledger, scope = charged()
    with scope, pytest.raises(BackendError, match=r"Short returned 1 of the 3 samples"):
        await Short().generate(request(n=3))
    assert ledger.spent.completion_tokens == 4 and ledger.spent.calls == 1
    gen = await Short().generate(request(n=1))  # a whole reply passes
    assert len(gen.completions) == 1


# -- streams ----------------------------------------------------------------------------------


def event(index: int, text: str | None, tokens: int, finish: str | None = None) -> bytes:
    delta = {"content": text} if text is not None else {"role": "assistant", "content": ""}
    chunk = {
        "id": "s",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "tiny",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
        "usage": {"prompt_tokens": 7, "completion_tokens": tokens, "total_tokens": 7 + tokens},
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def final(tokens: int) -> bytes:
    chunk = {
        "id": "s",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "tiny",
        "choices": [],
        "usage": {"prompt_tokens": 7, "completion_tokens": tokens, "total_tokens": 7 + tokens},
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\ndata: [DONE]\n\n"


# Two samples of two tokens each, interleaved, as vLLM streams them with continuous usage
# (each chunk's usage counts its own sample's tokens so far).
WHOLE = [
    event(0, None, 0),
    event(1, None, 0),
    event(0, "a", 1),
    event(1, "x", 1),
    event(0, "b", 2, "stop"),
    event(1, "y", 2, "stop"),
    final(4),
]


def sse(events: list[bytes], error: Exception | None = None) -> httpx.Response:
    async def body() -> AsyncIterator[bytes]:
        for e in events:
            yield e
        if error is not None:
            raise error

    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body())


async def drain(backend: VLLMBackend, n: int = 2) -> tuple[list[Any], Ledger, Exception | None]:
    ledger, scope = charged()
    chunks: list[Any] = []
    error: Exception | None = None
    with scope:
        try:
            async for chunk in backend.stream(request(n=n)):
                chunks.append(chunk)
        except BackendError as exc:
            error = exc
    return chunks, ledger, error


async def test_a_whole_stream_counts_its_final_usage():
    _, ledger, error = await drain(backend_on(Server(sse(WHOLE))))
    assert error is None
    assert ledger.spent.completion_tokens == 4 and ledger.spent.calls == 1


async def test_a_stream_closed_early_counts_the_tokens_of_every_sample_so_far():
    # vLLM's continuous usage is per sample: the request's tokens are the sum over samples.
    backend = backend_on(Server(sse(WHOLE)))
    ledger, scope = charged()
    texts: list[str] = []
    with scope:
        async with contextlib.aclosing(backend.stream(request(n=2))) as chunks:
            async for chunk in chunks:
                texts.append(chunk.text)
                if len(texts) == 4:  # "a" and "x": one token of each sample
                    break
    assert texts[2:] == ["a", "x"]
    assert ledger.spent.completion_tokens == 2 and ledger.spent.calls == 1


async def test_usage_of_a_stream_cut_after_text_sums_the_samples_and_is_reported():
    server = Server(sse(WHOLE[:4], httpx.RemoteProtocolError("peer closed connection")))
    chunks, ledger, error = await drain(backend_on(server))
    assert isinstance(error, BackendError) and error.retryable
    assert "broke off" in str(error) and "peer closed connection" in str(error)
    assert "0 of 2 sample(s) had finished" in str(error)
    assert "2 token(s) it delivered are counted" in str(error)
    assert len(server.posts) == 1  # text was delivered: not sent again
    assert chunks[-1].usage.completion_tokens == 2  # one token of each sample
    assert ledger.spent.completion_tokens == 2 and ledger.spent.calls == 1


async def test_a_stream_that_ends_before_its_samples_finish_is_an_error_not_a_short_answer():
    server = Server(sse(WHOLE[:5]))  # sample 1 never finishes; the body ends without [DONE]
    _, ledger, error = await drain(backend_on(server))
    assert isinstance(error, BackendError) and error.retryable
    assert "ended before sample(s) [1] finished" in str(error)
    assert ledger.spent.completion_tokens == 3  # a: 1, x: 1, b: 2 -> 2 + 1


async def test_a_stream_cut_before_any_text_is_sent_again_and_counted_once():
    server = Server(
        sse(WHOLE[:2], httpx.RemoteProtocolError("peer closed connection")),
        sse(WHOLE[:1]),  # ends cleanly, still before any text
        sse(WHOLE),
    )
    chunks, ledger, error = await drain(backend_on(server))
    assert error is None and len(server.posts) == 3
    assert "".join(c.text for c in chunks if c.index == 0) == "ab"
    assert "".join(c.text for c in chunks if c.index == 1) == "xy"
    assert ledger.spent.completion_tokens == 4 and ledger.spent.calls == 1


def tool_event(pieces: list[dict[str, Any]], tokens: int, finish: str | None = None) -> bytes:
    chunk = {
        "id": "s",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "tiny",
        "choices": [{"index": 0, "delta": {"tool_calls": pieces}, "finish_reason": finish}],
        "usage": {"prompt_tokens": 7, "completion_tokens": tokens, "total_tokens": 7 + tokens},
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


async def test_tool_calls_streamed_in_pieces_are_joined_call_by_call():
    def fn(index: int, **function: str) -> dict[str, Any]:
        return {"index": index, "function": function}

    events = [
        event(0, None, 0),
        tool_event([{**fn(0, name="add", arguments=""), "id": "c1", "type": "function"}], 1),
        tool_event([fn(0, arguments='{"a": 1')], 2),
        tool_event([{**fn(1, name="mul", arguments='{"a"'), "id": "c2", "type": "function"}], 3),
        tool_event([fn(0, arguments=', "b": 2}'), fn(1, arguments=": 3}")], 4, "tool_calls"),
        final(4),
    ]
    sample = StreamedSample()
    async for chunk in backend_on(Server(sse(events))).stream(request(n=1)):
        sample.add(chunk)
    done = sample.completion()
    assert [(c["name"], c["args"], c["id"]) for c in done.tool_calls] == [
        ("add", {"a": 1, "b": 2}, "c1"),
        ("mul", {"a": 3}, "c2"),
    ]
    assert done.finish_reason == "tool_calls" and done.completion_tokens == 4


async def test_a_stream_with_a_malformed_event_is_an_error():
    server = Server(*(sse([*WHOLE[:2], b"data: {not json\n\n"]) for _ in range(2)))
    _, _, error = await drain(backend_on(server, max_retries=1))
    assert isinstance(error, BackendError) and "not a completion chunk" in str(error)
    assert len(server.posts) == 2


# -- the server's own endpoints ---------------------------------------------------------------


async def test_counting_prompt_tokens_is_retried_like_any_request():
    server = Server(
        tokenize=(
            httpx.Response(503, json={"error": {"message": "busy"}}),
            httpx.ConnectError("no"),
        )
    )
    backend = backend_on(server)
    assert await backend.count_prompt_tokens(request()) == 3
    assert server.tokenize_posts == 3
    assert await backend.tokenize("a b c") == [1, 2, 3]


async def test_tokenize_failures_are_classified():
    server = Server(tokenize=(httpx.Response(400, json={"error": {"message": "bad prompt"}}),))
    with pytest.raises(BackendError, match="HTTP 400") as info:
        await backend_on(server).tokenize("x")
    assert not info.value.retryable and server.tokenize_posts == 1

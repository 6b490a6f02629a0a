"""Fakes for testing graphs without a model server: yours and ours.

:class:`FakeBackend` is function-driven (as pydantic-ai's ``FunctionModel``): you decide what
each sample says, and it accounts usage the way a real server would (prompt counted once per
request, completion tokens per sample), counting whitespace-separated words as tokens.

>>> backend = FakeBackend(lambda request, i: f"Answer: {12 if i % 2 else 13}")
>>> graph = create_best_of_n_graph(backend, n=3).compile()  # doctest: +SKIP

:class:`FakeVerifier` and :class:`FakeJudge` stand in for a verifier and a tournament's pairwise
judge the same way, and let a test make them fail as real ones do: raise, or never return.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tts_graph.backends.base import (
    BaseBackend,
    Completion,
    Generation,
    GenerationRequest,
    StreamChunk,
    TokenLogprob,
    tool_call_chunks,
)
from tts_graph.budget import Usage, estimate_flops
from tts_graph.verifiers.base import DEFAULT_CALL_TIMEOUT_S, Problem, Verdict
from tts_graph.verifiers.judge import Preference

__all__ = [
    "FakeBackend",
    "FakeJudge",
    "FakeVerifier",
    "SampleFn",
    "completion_with_confidence",
    "never_returns",
]

SampleFn = Callable[[GenerationRequest, int], "str | Completion | Awaitable[str | Completion]"]
"""``(request, sample_index) -> text`` (or a full :class:`Completion`), sync or async."""


def _count(text: str) -> int:
    return len(text.split())


def _prompt_tokens(request: GenerationRequest) -> int:
    if request.messages is not None:
        return sum(_count(m["content"]) for m in request.messages)
    return _count(request.prompt or "")


@dataclass
class FakeBackend(BaseBackend):
    """A backend whose samples come from ``fn``; records every request it was sent in
    ``requests`` (after the budget cut it, as a server would see it).

    Text is cut to ``max_tokens`` words (``finish_reason="length"``), like a real server.
    Requests are charged to the run's budget like a real backend's. :meth:`stream` yields one
    word at a time, ``stream_delay_s`` apart, with the usage so far in every chunk, and counts
    in ``streamed_tokens`` the words it really sent (a stream closed early sends fewer).
    """

    fn: SampleFn
    model_params: int | None = None
    requests: list[GenerationRequest] = field(default_factory=list)
    stream_delay_s: float = 0.0
    streamed_tokens: int = 0

    async def _stream(self, request: GenerationRequest) -> AsyncGenerator[StreamChunk, None]:
        gen = await self._generate(request)
        prompt = gen.usage.prompt_tokens
        sent = 0
        # A sample with no text (only tool calls) still sends one chunk: its calls and finish.
        words = [c.text.split() or [""] for c in gen.completions]
        longest = max((len(w) for w in words), default=0)
        for position in range(longest):
            for c, ws in zip(gen.completions, words, strict=True):
                if position >= len(ws):
                    continue
                if self.stream_delay_s:
                    await asyncio.sleep(self.stream_delay_s)
                if ws[position]:
                    sent += 1
                    self.streamed_tokens += 1
                last = position == len(ws) - 1
                yield StreamChunk(
                    index=c.index,
                    text=ws[position] + ("" if last else " "),
                    logprobs=c.logprobs[position : position + 1] if c.logprobs else (),
                    finish_reason=c.finish_reason if last else None,
                    usage=Usage(
                        prompt_tokens=prompt, completion_tokens=sent, calls=1,
                        started_at=gen.usage.started_at, ended_at=time.time(),
                    ),
                    tool_calls=tool_call_chunks(c.tool_calls) if last else (),
                )  # fmt: skip

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        return _prompt_tokens(request)

    async def _generate(self, request: GenerationRequest) -> Generation:
        started = time.time()
        self.requests.append(request)
        completions = []
        for i in range(request.n):
            out = self.fn(request, i)
            if isinstance(out, Awaitable):
                out = await out
            if isinstance(out, Completion):
                completions.append(out)
                continue
            words = out.split()
            cap = request.sampling.max_tokens
            finish = "length" if len(words) > cap else "stop"
            text = " ".join(words[:cap]) if finish == "length" else out
            completions.append(
                Completion(
                    index=i, text=text, finish_reason=finish, completion_tokens=min(len(words), cap)
                )
            )
        prompt_tokens = _prompt_tokens(request)
        completion_tokens = sum(c.completion_tokens for c in completions)
        usage = Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            calls=1,
            flops=estimate_flops(self.model_params, prompt_tokens + completion_tokens),
            started_at=started,
            ended_at=time.time(),
        )
        return Generation(
            completions=tuple(completions), usage=usage, model="fake", seed=request.sampling.seed
        )

    async def tokenize(self, text: str) -> list[int]:
        return list(range(_count(text)))


def completion_with_confidence(
    text: str,
    confidence: float | Sequence[float],
    *,
    top_logprobs: int = 20,
    max_tokens: int | None = None,
) -> Completion:
    """A :class:`Completion` of ``text`` (one token per word, as :class:`FakeBackend` counts)
    whose every word carries ``top_logprobs`` alternatives, all at log-probability
    ``-confidence``: so its DeepConf token confidence (minus the mean top log-probability) is
    ``confidence``. Give one value for every word, or one per word (the last one repeats).
    ``max_tokens`` cuts the text like a server would (pass ``request.sampling.max_tokens``).
    Return it from a :class:`FakeBackend` function; its stream sends each word's logprobs with it.

    >>> backend = FakeBackend(lambda request, i: completion_with_confidence("Answer: 12", 8.0))
    >>> c = completion_with_confidence("so Answer: 12", [1.0, 9.0], max_tokens=2)
    >>> c.text, c.finish_reason, [t.top[0][1] for t in c.logprobs]
    ('so Answer:', 'length', [-1.0, -9.0])
    """
    words = text.split()
    finish = "stop"
    if max_tokens is not None and len(words) > max_tokens:
        words, finish = words[:max_tokens], "length"
    values = [confidence] if isinstance(confidence, int | float) else list(confidence)
    if not values:
        raise ValueError("confidence needs at least one value")
    logprobs = []
    for position, word in enumerate(words):
        value = -float(values[min(position, len(values) - 1)])
        top = ((word, value), *((f"alt{j}", value) for j in range(1, top_logprobs)))
        logprobs.append(TokenLogprob(token=word, logprob=value, top=top))
    return Completion(
        index=0,
        text=" ".join(words) if finish == "length" else text,
        finish_reason=finish,
        completion_tokens=len(words),
        logprobs=tuple(logprobs),
    )


async def never_returns(*args: Any) -> Any:
    """A check or a judgement that hangs, as one whose server accepted the request and never
    answered: it waits until it is cancelled.

    >>> verifier = FakeVerifier(never_returns, call_timeout_s=0.5)
    """
    await asyncio.Event().wait()


@dataclass
class FakeVerifier:
    """A verifier whose verdicts come from ``fn(problem, candidate)`` (sync or async), returning
    a bool (passed), a float (a score) or a :class:`~tts_graph.verifiers.base.Verdict`.

    Unlike :class:`~tts_graph.verifiers.registry.FunctionVerifier` it catches nothing: what
    ``fn`` raises comes out of :meth:`verify`, as from a verifier that crashed, so a test sees
    what the graph makes of it; :func:`never_returns` makes it hang. ``uses_model=True`` makes
    the verifier node check one candidate per call (as for LLM judges and reward models), and
    ``call_timeout_s`` is the bound the nodes put on one call. ``batches`` records the
    candidates of every call.

    >>> verifier = FakeVerifier(lambda problem, text: "12" in text)
    >>> graph = create_best_of_n_graph(backend, n=3, verifier=verifier)  # doctest: +SKIP
    """

    fn: Callable[[Problem, str], Any]
    name: str = "fake"
    uses_model: bool = False
    call_timeout_s: float | None = DEFAULT_CALL_TIMEOUT_S
    batches: list[list[str]] = field(default_factory=list)

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]:
        self.batches.append(list(candidates))
        verdicts = []
        for candidate in candidates:
            out = self.fn(problem, candidate)
            if inspect.isawaitable(out):
                out = await out
            verdicts.append(_as_verdict(out, self.name))
        return verdicts


def _as_verdict(out: Any, name: str) -> Verdict:
    if isinstance(out, Verdict):
        return out
    if isinstance(out, bool):
        return Verdict(passed=out, score=float(out), reason=f"{name} returned {out}")
    return Verdict(passed=None, score=float(out), reason=f"{name} scored {float(out):g}")


@dataclass
class FakeJudge:
    """A tournament's pairwise judge whose choice comes from ``decide(question, a, b)`` (sync or
    async), returning ``"A"``, ``"B"``, None (no vote) or a
    :class:`~tts_graph.verifiers.judge.Preference`; each judgement costs ``usage``.

    What ``decide`` raises comes out of :meth:`compare` (raise a
    :class:`~tts_graph.errors.BackendError` for a judge whose server failed);
    :func:`never_returns` makes it hang. ``calls`` records every ``(a, b)`` it was shown.

    >>> judge = FakeJudge(lambda question, a, b: "A" if len(a) >= len(b) else "B")
    >>> graph = create_tournament_graph(backend, judge, n=4)  # doctest: +SKIP
    """

    decide: Callable[[str, str, str], Any]
    usage: Usage = field(
        default_factory=lambda: Usage(prompt_tokens=10, completion_tokens=3, calls=1)
    )
    call_timeout_s: float | None = DEFAULT_CALL_TIMEOUT_S
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def compare(self, question: str, a: str, b: str) -> Preference:
        self.calls.append((a, b))
        out = self.decide(question, a, b)
        if inspect.isawaitable(out):
            out = await out
        if isinstance(out, Preference):
            return out
        return Preference(winner=out, raw=f"Winner: {out}", usage=self.usage)

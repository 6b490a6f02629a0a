"""The backend interface: what a node asks of a model server, and what comes back.

:class:`BaseBackend` is what implementations subclass (langchain-core style: override
``_generate``; the base class charges every request to the run's budget). Nodes accept anything
that satisfies the :class:`Backend` protocol and wrap a backend that does not subclass
:class:`BaseBackend` with :func:`metered`, so a budget holds for every backend.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import json
import math
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tts_graph.backends.tool_calls import bare_calls
from tts_graph.budget import Usage
from tts_graph.errors import (
    BackendError,
    BudgetExhausted,
    ConfigError,
    check_count,
    check_utf8,
)
from tts_graph.ledger import Grant
from tts_graph.metering import Spending, charge, current_spending
from tts_graph.seeds import with_seed_offset
from tts_graph.tracing import llm_run

__all__ = [
    "Backend",
    "BaseBackend",
    "Completion",
    "Generation",
    "GenerationRequest",
    "Message",
    "SamplingParams",
    "StreamChunk",
    "StreamedSample",
    "TokenLogprob",
    "metered",
]

Message = Mapping[str, Any]
"""A chat message in the chat-completions form: ``{"role": "user", "content": "..."}``, plus
``tool_calls`` or ``tool_call_id`` where a conversation with tools has them."""


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings. Every field is always sent: a vLLM server otherwise falls back to the
    model's generation config, which silently changes results from model to model.

    ``top_k=0`` and ``min_p=0`` mean "off". ``seed=None`` means unseeded.
    """

    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    max_tokens: int = 256
    min_tokens: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    stop_token_ids: tuple[int, ...] = ()
    include_stop_str_in_output: bool = False
    skip_special_tokens: bool = True
    ignore_eos: bool = False
    repetition_penalty: float = 1.0
    logprobs: bool = False
    top_logprobs: int = 0

    def __post_init__(self) -> None:
        problems = []
        if self.temperature < 0:
            problems.append(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            problems.append(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            problems.append(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if self.max_tokens < 1:
            problems.append(f"max_tokens must be >= 1, got {self.max_tokens}")
        if not 0 <= self.min_tokens <= self.max_tokens:
            problems.append(f"min_tokens must be in [0, max_tokens], got {self.min_tokens}")
        if not 0 <= self.top_logprobs <= 20:
            problems.append(f"top_logprobs must be in [0, 20], got {self.top_logprobs}")
        if problems:
            raise ConfigError("invalid sampling parameters: " + "; ".join(problems))


@dataclass(frozen=True)
class GenerationRequest:
    """One request: chat ``messages`` or a raw ``prompt`` (exactly one), asking for ``n``
    samples that share the prompt's KV cache on the server.

    ``continue_final_message=True`` continues the last (assistant) message instead of starting a
    new turn: the way budget forcing appends "Wait" and lets the model go on.
    ``tools`` (OpenAI function-tool format) are offered to the model, which may answer with tool
    calls (chat only). ``extra_body`` passes further server-specific fields through unchanged.
    """

    messages: tuple[Message, ...] | None = None
    prompt: str | None = None
    n: int = 1
    sampling: SamplingParams = field(default_factory=SamplingParams)
    continue_final_message: bool = False
    tools: tuple[Mapping[str, Any], ...] = ()
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.messages is None) == (self.prompt is None):
            raise ConfigError("a request needs exactly one of messages= (chat) or prompt= (raw)")
        if self.messages is not None and not self.messages:
            raise ConfigError("messages= is empty; give at least one chat message")
        check_count("n", self.n)
        if self.tools and self.messages is None:
            raise ConfigError("tools= needs a chat request (messages=)")
        # Text that cannot be encoded would only fail inside the HTTP client, without saying where.
        what = "messages" if self.messages is not None else "prompt"
        check_utf8(
            self.messages if self.messages is not None else self.prompt, f"the request's {what}"
        )
        check_utf8(self.tools, "the request's tools")
        if self.continue_final_message and (
            self.messages is None or self.messages[-1].get("role") != "assistant"
        ):
            raise ConfigError(
                "continue_final_message needs chat messages ending in an assistant message"
            )

    @classmethod
    def chat(
        cls, messages: Sequence[Message], *, tools: Sequence[Mapping[str, Any]] = (), **kwargs: Any
    ) -> GenerationRequest:
        return cls(
            messages=tuple(dict(m) for m in messages),
            tools=tuple(dict(t) for t in tools),
            **kwargs,
        )


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class Completion:
    """One sample. ``completion_tokens`` is the server's own count for this sample;
    ``stop_reason`` is the stop string or token id that ended it (None for EOS or length);
    ``tool_calls`` are the calls the model made, in LangChain's form
    (``{"name", "args", "id", "type": "tool_call"}``)."""

    index: int
    text: str
    finish_reason: str | None
    stop_reason: str | int | None = None
    completion_tokens: int = 0
    token_ids: tuple[int, ...] | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None
    reasoning: str | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()

    @property
    def mean_logprob(self) -> float | None:
        """Mean token log-probability (a cheap confidence signal), None without logprobs."""
        if not self.logprobs:
            return None
        values = [t.logprob for t in self.logprobs if math.isfinite(t.logprob)]
        return sum(values) / len(values) if values else None


@dataclass(frozen=True)
class Generation:
    """The reply to one request: its samples in index order and what the request cost.

    ``budget`` says what the run's budget changed in the request before it was sent
    (``{"limit": ..., "n": [asked, granted], "max_tokens": [asked, granted]}``), None when
    it was sent as asked.
    """

    completions: tuple[Completion, ...]
    usage: Usage
    model: str = ""
    seed: int | None = None
    budget: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class StreamChunk:
    """Part of a streamed reply: the new ``text`` of sample ``index`` with its tokens' log-probs,
    pieces of its tool calls, its ``finish_reason`` once it ends, and the request's ``usage`` so
    far (cumulative over all its samples) when the server reports it. A chunk with
    ``index=-1`` carries only usage.

    ``tool_calls`` are pieces in LangChain's ``ToolCallChunk`` form (``{"name", "args", "id",
    "index"}``, ``args`` a piece of the arguments' JSON text): the pieces with one ``index``
    make one call. :class:`StreamedSample` joins them.
    """

    index: int
    text: str = ""
    logprobs: tuple[TokenLogprob, ...] = ()
    finish_reason: str | None = None
    usage: Usage | None = None
    tool_calls: tuple[Mapping[str, Any], ...] = ()


def tool_call(name: str | None, arguments: str | None, call_id: str | None) -> dict[str, Any]:
    """A tool call in LangChain's form from a server's name, arguments (JSON text) and id;
    arguments that are not a JSON object are kept as text (``{"__raw__": ...}``) or as the value
    they are (``{"__value__": ...}``), so a vote can still tell calls apart.

    >>> tool_call("add", '{"a": 1}', "c1")
    {'name': 'add', 'args': {'a': 1}, 'id': 'c1', 'type': 'tool_call'}
    """
    raw = arguments or "{}"
    try:
        args = json.loads(raw)
    except ValueError:
        args = {"__raw__": raw}
    if not isinstance(args, dict):
        args = {"__value__": args}
    return {"name": name, "args": args, "id": call_id, "type": "tool_call"}


def tool_call_chunks(calls: Sequence[Mapping[str, Any]]) -> tuple[dict[str, Any], ...]:
    """Whole tool calls (LangChain's form) as stream pieces, one per call: what a backend that
    does not stream sends in its one chunk per sample."""
    return tuple(
        {"name": c.get("name"), "args": json.dumps(c.get("args", {})), "id": c.get("id"),
         "index": k}
        for k, c in enumerate(calls)
    )  # fmt: skip


@dataclass
class StreamedSample:
    """One sample put together from the chunks of its own stream: text, log-probs, finish reason, tool
    calls (their pieces joined by ``index`` as they arrive) and the tokens the server counted.

    ``offered`` names the tools the request offered. A small model often writes its call as a
    bare JSON object instead of in its chat template's tags; a server's tool parser can read
    that from a whole reply but not from a stream, where it arrives as text. A sample whose
    whole text is such a call of an offered tool is read as that call, with no text, as the
    server's parser would have made it (:func:`~tts_graph.backends.tool_calls.bare_calls`).

    >>> sample = StreamedSample()
    >>> sample.add(StreamChunk(0, tool_calls=({"name": "add", "args": '{"a": ', "id": "c1", "index": 0},)))
    >>> sample.add(StreamChunk(0, tool_calls=({"args": "1}", "index": 0},), finish_reason="tool_calls"))
    >>> sample.completion().tool_calls
    ({'name': 'add', 'args': {'a': 1}, 'id': 'c1', 'type': 'tool_call'},)
    """

    text: list[str] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    tokens: int = 0
    offered: frozenset[str] = frozenset()
    _calls: dict[int, list[Any]] = field(default_factory=dict)  # index -> [name, args, id]

    @classmethod
    def of(cls, request: GenerationRequest) -> StreamedSample:
        """An empty sample of ``request``, knowing which tools it offered."""
        names = (t.get("function", {}).get("name") for t in request.tools)
        return cls(offered=frozenset(n for n in names if isinstance(n, str)))

    def add(self, chunk: StreamChunk) -> None:
        """Add a chunk of a one-sample stream (so its usage is this sample's)."""
        if chunk.usage is not None:
            self.tokens = chunk.usage.completion_tokens
        if chunk.index < 0:
            return
        self.text.append(chunk.text)
        self.logprobs.extend(chunk.logprobs)
        self.finish_reason = chunk.finish_reason or self.finish_reason
        for piece in chunk.tool_calls:
            call = self._calls.setdefault(int(piece.get("index") or 0), [None, "", None])
            call[0] = call[0] or piece.get("name")
            call[1] += piece.get("args") or ""
            call[2] = call[2] or piece.get("id")

    def completion(self, index: int = 0) -> Completion:
        text = "".join(self.text)
        calls = tuple(tool_call(*self._calls[k]) for k in sorted(self._calls))
        if not calls and self.offered and (bare := bare_calls(text, set(self.offered))):
            calls = tuple(
                tool_call(c["name"], json.dumps(c["arguments"]), f"call_{uuid.uuid4().hex[:24]}")
                for c in bare
            )
            text = ""
        return Completion(
            index=index, text=text, finish_reason=self.finish_reason,
            completion_tokens=self.tokens, logprobs=tuple(self.logprobs) or None,
            tool_calls=calls,
        )  # fmt: skip


@runtime_checkable
class Backend(Protocol):
    """What nodes need from a model server. Implementations: :class:`~tts_graph.VLLMBackend`,
    :class:`~tts_graph.testing.FakeBackend`; write your own by subclassing
    :class:`BaseBackend`."""

    @property
    def model_params(self) -> int | None:
        """Parameter count of the served model, for the FLOPs estimate (None if unknown)."""
        ...

    async def generate(self, request: GenerationRequest) -> Generation: ...

    async def tokenize(self, text: str) -> list[int]: ...


# Chat templates wrap each message in a few tokens of their own, and some add a default system
# prompt; a backend that cannot count a templated prompt exactly reserves this much extra.
_TEMPLATE_TOKENS_PER_MESSAGE = 8
_TEMPLATE_TOKENS_EXTRA = 32


class BaseBackend(abc.ABC):
    """Base class of backends: implement :meth:`_generate` and :meth:`tokenize`; the base class's
    :meth:`generate` charges each request to the run's ledger (reserved, cut to what the budget
    has left or refused, bounded by the run's wall time, settled with the reply's usage).

    Override :meth:`count_prompt_tokens` when the server can count a templated prompt exactly:
    the default tokenizes the text and adds a per-message allowance for the chat template.
    """

    @property
    def model_params(self) -> int | None:
        """Parameter count of the served model, for the FLOPs estimate (None if unknown)."""
        return None

    @abc.abstractmethod
    async def _generate(self, request: GenerationRequest) -> Generation:
        """Send ``request`` as it is and return the reply (no budget logic here)."""

    @abc.abstractmethod
    async def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens)."""

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """How many prompt tokens ``request`` will cost (an upper bound where not exact)."""
        if request.prompt is not None:
            return len(await self.tokenize(request.prompt))
        messages = request.messages or ()
        text = "\n".join(str(m.get("content") or "") for m in messages)
        if request.tools:
            text += json.dumps(list(request.tools))
        allowance = _TEMPLATE_TOKENS_PER_MESSAGE * len(messages) + _TEMPLATE_TOKENS_EXTRA
        return len(await self.tokenize(text)) + allowance

    def trace_metadata(self) -> dict[str, Any]:
        """What the LangSmith run of each request says of the model behind this backend:
        ``ls_provider`` and ``ls_model_name``, with which LangSmith prices the request's tokens
        (the reply's model name, once it is in, takes precedence). The default gives the
        ``model`` attribute when it is a name; override it to name the provider too, e.g.
        ``{"ls_provider": "vllm", "ls_model_name": self.model}``."""
        model = getattr(self, "model", None)
        return {"ls_model_name": model} if isinstance(model, str) and model else {}

    async def generate(self, request: GenerationRequest) -> Generation:
        """Send ``request``, charged to the run's budget when called inside a node."""
        return await charged_generate(self, with_seed_offset(request), self._generate)

    async def _stream(self, request: GenerationRequest) -> AsyncGenerator[StreamChunk, None]:
        """Stream ``request`` as it is. The default waits for the whole reply and yields each
        sample as one chunk: override it where the server streams."""
        gen = await self._generate(request)
        for c in gen.completions:
            yield StreamChunk(
                c.index, c.text, c.logprobs or (), c.finish_reason, gen.usage,
                tool_calls=tool_call_chunks(c.tool_calls),
            )  # fmt: skip

    def stream(self, request: GenerationRequest) -> AsyncGenerator[StreamChunk, None]:
        """Stream ``request``, charged to the run's budget when called inside a node.

        Close the iterator to stop early (``contextlib.aclosing``): the server stops the request
        (vLLM aborts a request whose client disconnects), and the budget counts what the server
        had generated up to then. Each chunk is awaited within the run's wall time.
        """
        return charged_stream(self, with_seed_offset(request), self._stream)


async def _prompt_tokens(
    backend: BaseBackend, request: GenerationRequest, scope: Spending | None
) -> int:
    """The request's prompt length, counted only when the run's ledger limits tokens."""
    counts = scope is not None and scope.ledger.counts_tokens
    return await backend.count_prompt_tokens(request) if counts else 0


def _as_granted(request: GenerationRequest, grant: Grant | None) -> GenerationRequest:
    """``request`` cut to what the ledger granted (as asked when it cut nothing)."""
    if grant is None or grant.limit is None:
        return request
    return dataclasses.replace(
        request,
        n=grant.n,
        sampling=dataclasses.replace(request.sampling, max_tokens=grant.max_tokens),
    )


async def charged_generate(
    backend: BaseBackend,
    request: GenerationRequest,
    send: Callable[[GenerationRequest], Awaitable[Generation]],
) -> Generation:
    """``send(request)`` charged to the current run's ledger (see :mod:`tts_graph.metering`):
    the request is cut to what the ledger grants, and the reply says what was cut."""
    scope = current_spending()
    prompt_tokens = await _prompt_tokens(backend, request, scope)
    async with charge(
        prompt_tokens=prompt_tokens,
        n=request.n,
        max_tokens=request.sampling.max_tokens,
        model_params=backend.model_params,
        what=f"a request for {request.n} sample(s)",
    ) as bill:
        grant = bill.grant
        request = _as_granted(request, grant)
        # Traced as sent, after the budget's cut; untraced, this costs one lookup.
        trace = llm_run(backend, request, grant)
        gen = await send(request) if trace is None else await trace.generate(send, request)
        bill.settle(gen.usage)
        _check_complete(backend, request, gen)  # after settling: what came back is counted
    if bill.grant is not None and bill.grant.limit is not None:
        gen = dataclasses.replace(gen, budget=bill.grant.changes())
    return gen


def _check_complete(backend: BaseBackend, request: GenerationRequest, gen: Generation) -> None:
    """Raise :class:`~tts_graph.errors.BackendError` when ``gen`` has fewer samples than
    ``request`` asked for: a caller asking for ``n`` candidates is never given fewer silently."""
    if len(gen.completions) >= request.n:
        return
    have = {c.index for c in gen.completions}
    missing = [i for i in range(request.n) if i not in have]
    where = getattr(backend, "base_url", None)
    name = type(backend).__name__ + (f" at {where}" if isinstance(where, str) else "")
    raise BackendError(
        f"{name} returned {len(gen.completions)} of the {request.n} samples asked for "
        f"(missing: {missing}), also after asking again; the usage it reported is counted. "
        "Run again, or ask for fewer samples per request",
        retryable=False,
    )


async def charged_stream(
    backend: BaseBackend,
    request: GenerationRequest,
    send: Callable[[GenerationRequest], AsyncGenerator[StreamChunk, None]],
) -> AsyncGenerator[StreamChunk, None]:
    """``send(request)`` streamed and charged like :func:`charged_generate`; usage is settled
    from the last usage the stream reported, so a stream closed early counts what it got."""
    scope = current_spending()
    prompt_tokens = await _prompt_tokens(backend, request, scope)
    async with charge(
        prompt_tokens=prompt_tokens,
        n=request.n,
        max_tokens=request.sampling.max_tokens,
        model_params=backend.model_params,
        what=f"a streamed request for {request.n} sample(s)",
        deadline=False,
    ) as bill:
        grant = bill.grant
        request = _as_granted(request, grant)
        ledger = scope.ledger if scope is not None and bill.grant is not None else None
        trace = llm_run(backend, request, grant)
        chunks = send(request)
        failure: BaseException | None = None
        try:
            while True:
                left = None if ledger is None else ledger.time_left()
                try:
                    async with asyncio.timeout(left):
                        if trace is None:
                            chunk = await anext(chunks)
                        else:
                            chunk = await trace.next_chunk(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    assert ledger is not None and ledger.budget.max_wall_s is not None
                    assert scope is not None
                    scope.add(
                        Usage(), {"cancelled": f"a streamed request for {request.n} sample(s)"}
                    )
                    raise BudgetExhausted(
                        f"the run's wall time ({ledger.budget.max_wall_s:g} s) ran out during a "
                        "streamed request; the request was cancelled",
                        limit="wall time",
                    ) from None
                if chunk.usage is not None:
                    bill.settle(chunk.usage)
                yield chunk
        except BaseException as exc:
            failure = exc
            raise
        finally:
            await chunks.aclose()  # closes the HTTP stream: the server stops the request
            if trace is not None:
                trace.close_stream(failure)


class _Metered(BaseBackend):
    """A :class:`Backend` that does not subclass :class:`BaseBackend`, charged like one."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.trace_name = type(inner).__name__  # its requests' runs are named after it

    @property
    def model_params(self) -> int | None:
        return self.inner.model_params

    def trace_metadata(self) -> dict[str, Any]:
        describe = getattr(self.inner, "trace_metadata", None)
        return dict(describe()) if callable(describe) else {}

    async def _generate(self, request: GenerationRequest) -> Generation:
        return await self.inner.generate(request)

    async def tokenize(self, text: str) -> list[int]:
        return await self.inner.tokenize(text)


def metered(backend: Backend) -> BaseBackend:
    """``backend`` itself when it charges the run's budget (a :class:`BaseBackend`), else a
    wrapper that does. Node factories call this on the backend they are given."""
    if isinstance(backend, BaseBackend):
        return backend
    if not isinstance(backend, Backend):
        raise ConfigError(
            f"backend must have async generate(request) and tokenize(text) and a model_params "
            f"attribute (see tts_graph.backends.BaseBackend), got {type(backend).__name__}"
        )
    return _Metered(backend)

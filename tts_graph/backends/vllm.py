"""A backend that speaks to a vLLM server over its OpenAI-compatible API, with vLLM's extras.

Requests go through ``openai.AsyncOpenAI`` (vLLM-only fields ride in ``extra_body``); retries are
tenacity's, on retryable failures only (connection errors, timeouts, 429, 5xx, replies that are
broken in transit) with jittered exponential backoff and a cap. A 5xx is followed by a look at
``/health``: vLLM answers 503 there once its engine has died, and from then on every request
fails until a restart, so the client stops at once with
:class:`~tts_graph.errors.EngineDeadError` instead of retrying, unless ``retry_for_s`` asks it to
ride out restarts (then it retries for that long: a restarted server, or behind a router
another replica, takes the request). The first contact (``GET /v1/models``) is retried like
any request, so a client may start while its server is still loading.

What each transport fault does:

- **5xx, connection refused or dropped (before or during the reply), timeout**: retried; once
  the retries are spent, a retryable :class:`~tts_graph.errors.BackendError` that says how many
  attempts were made.
- **429 (or 503) with ``Retry-After``** (seconds or an HTTP date; OpenAI's ``retry-after-ms``
  too): the next attempt waits what the server asked, at most ``retry_after_max_s``; without
  the header, the usual backoff.
- **A 200 whose body is not a completion** (truncated or malformed JSON, an HTML error page,
  duplicate choice indices): a retryable ``BackendError`` naming what was wrong, retried.
- **A reply with fewer choices than the ``n`` asked for**: the missing samples are asked for
  again (each run of missing indices in one request, seeded ``seed + index`` as vLLM seeds the
  samples of one request, so they are the samples the whole reply would have had, up to the
  server's numerical noise); the usage of every reply is counted. A user asking for ``n``
  candidates expects ``n``, or an error: if some are still missing after ``max_retries``
  rounds, :meth:`~tts_graph.backends.base.BaseBackend.generate` counts what the server
  reported and raises a ``BackendError`` naming the missing samples. Never fewer silently.
- **A stream (``stream()``) that breaks off or ends before every sample finished**: when no
  text had been delivered yet it is sent again; after that, a retryable ``BackendError`` (a
  caller cannot take back text it was given; a graph's retry policy reruns the node). Usage
  comes from the last usage the stream delivered, counted once.

Usage is what the server reported in the replies received. A reply lost in transit (dropped,
timed out, malformed) is not known and not counted, though the server may have generated it;
attempts that failed before a reply are not calls.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import functools
import itertools
import json
import logging
import math
import random
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast

import httpx
import openai
from pydantic import SecretStr
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)
from tenacity.stop import stop_base

from tts_graph._loops import LoopLocal, run_sync
from tts_graph._secrets import auth_headers, cause_without, check_url, redact, resolve_api_key
from tts_graph.backends.base import (
    BaseBackend,
    Completion,
    Generation,
    GenerationRequest,
    StreamChunk,
    TokenLogprob,
    tool_call,
)
from tts_graph.backends.server import count_parameters
from tts_graph.budget import Usage, estimate_flops
from tts_graph.errors import BackendError, ConfigError, EngineDeadError

__all__ = ["VLLMBackend"]

logger = logging.getLogger(__name__)


_T = TypeVar("_T")


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, BackendError) and exc.retryable


# The wait (seconds) a refused request was told to observe before asking again, by error.
_ASKED_WAIT: weakref.WeakKeyDictionary[BaseException, float] = weakref.WeakKeyDictionary()


def _retry_after_s(headers: Mapping[str, str] | None) -> float | None:
    """The wait a reply asks for: OpenAI's ``retry-after-ms``, else ``Retry-After`` in seconds
    or as an HTTP date; None without one (or with one that is not a time)."""
    if headers is None:
        return None
    values = (
        (headers.get("retry-after-ms"), 1e-3),
        (headers.get("retry-after"), 1.0),
    )
    for value, unit in values:
        if value is None:
            continue
        try:
            seconds = float(value) * unit
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError, IndexError):
                continue
            if when.tzinfo is None:
                when = when.replace(tzinfo=UTC)
            seconds = (when - datetime.now(UTC)).total_seconds()
        if math.isfinite(seconds):
            return max(seconds, 0.0)
    return None


def _runs(indices: list[int]) -> Iterator[tuple[int, int]]:
    """Runs of consecutive ``indices`` as (first, length)."""
    for _, group in itertools.groupby(enumerate(indices), lambda p: p[1] - p[0]):
        run = [i for _, i in group]
        yield run[0], len(run)


def _missing_part(request: GenerationRequest, first: int, count: int) -> GenerationRequest:
    """``request`` for samples ``first .. first + count - 1`` only: vLLM seeds sample ``i`` of
    a request with ``seed + i``, so this asks for the very samples that went missing."""
    seed = request.sampling.seed
    return dataclasses.replace(
        request,
        n=count,
        sampling=dataclasses.replace(request.sampling, seed=None if seed is None else seed + first),
    )


def _why(exc: BaseException) -> str:
    """An error's message with the lower-level error it came from."""
    cause = exc.__cause__ or exc.__context__
    return f"{exc} ({type(cause).__name__}: {cause})" if cause is not None else str(exc)


@dataclass
class _StreamProgress:
    """What one stream has delivered: whether any text (or an end) reached the caller, which
    samples finished, and each sample's completion tokens so far."""

    delivered: bool = False
    finished: set[int] = dataclasses.field(default_factory=set)
    tokens: dict[int, int] = dataclasses.field(default_factory=dict)
    total: int | None = None

    @property
    def completion_tokens(self) -> int:
        return self.total if self.total is not None else sum(self.tokens.values())


@dataclass(frozen=True)
class _Reply:
    """One parsed reply of the server."""

    completions: tuple[Completion, ...]
    prompt_tokens: int
    completion_tokens: int
    model: str


# What to do about the server's refusals that come from how it was started.
_HINTS = (
    (
        "--enable-auto-tool-choice",
        "; this server was started without tool calling: serve a model that calls tools "
        "(tts-graph serve --model qwen2.5-coder-0.5b) or start vLLM with "
        "--enable-auto-tool-choice --tool-call-parser NAME",
    ),
    (
        "answered HTTP 404:",
        "; it has no such endpoint: is it a vLLM server? This backend needs vLLM's "
        "OpenAI-compatible API (base URL http://HOST:PORT/v1) and its /tokenize",
    ),
)


def _hint(message: str) -> str:
    return "".join(hint for needle, hint in _HINTS if needle in message)


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if body.get("message"):
            return str(body["message"])
    text = exc.response.text.strip() if exc.response is not None else ""
    return text[:500] or exc.message


def _token_logprobs(items: Any) -> tuple[TokenLogprob, ...]:
    """Chat-completions logprob entries (OpenAI's form) as :class:`TokenLogprob` values."""
    return tuple(
        TokenLogprob(
            token=t.token,
            logprob=float(t.logprob),
            top=tuple((x.token, float(x.logprob)) for x in (t.top_logprobs or ())),
        )
        for t in items or ()
    )


def _stream_chunk(choice: Any, *, chat: bool, usage: Usage | None) -> StreamChunk:
    calls: tuple[dict[str, Any], ...] = ()
    if chat:
        delta = choice.delta
        text = delta.content or "" if delta is not None else ""
        lp = choice.logprobs.content if choice.logprobs is not None else None
        logprobs = _token_logprobs(lp)
        calls = tuple(
            {
                "name": t.function.name if t.function else None,
                "args": t.function.arguments if t.function else None,
                "id": t.id,
                "index": t.index,
            }
            for t in (delta.tool_calls or () if delta is not None else ())
        )
    else:
        text = choice.text or ""
        logprobs = ()
    return StreamChunk(
        index=int(choice.index),
        text=text,
        logprobs=logprobs,
        finish_reason=choice.finish_reason,
        usage=usage,
        tool_calls=calls,
    )


def _local_parameters(root: str) -> int | None:
    path = Path(root)
    return count_parameters(path) if path.is_dir() else None


@dataclass(frozen=True)
class _Connection:
    http: httpx.AsyncClient
    client: openai.AsyncOpenAI
    semaphore: asyncio.Semaphore
    resolve_lock: asyncio.Lock


class VLLMBackend(BaseBackend):
    """Generate with a vLLM server.

    ``base_url`` is the OpenAI-compatible root, e.g. ``http://127.0.0.1:8000/v1``. ``model``
    defaults to the first model the server serves; a name it does not serve is a
    :class:`~tts_graph.errors.ConfigError` listing the ones it does. ``max_concurrency`` bounds
    the requests in flight from this backend (one semaphore, shared by every node using it).

    A request that fails in a way that may pass (connection refused or reset, timeout, 429,
    5xx) is retried ``max_retries`` times, with jittered backoff up to ``backoff_max_s``
    between attempts: about 15 s in all by default. ``retry_for_s`` keeps retrying until that
    many seconds have passed since the first attempt, so requests in flight ride out a server
    restart (30 s to a few minutes for a small model on a CPU) instead of failing; a dead
    engine's 5xx is then retried too, where without it it stops at once. A server
    that refuses with ``Retry-After`` is asked again after the wait it names, at most
    ``retry_after_max_s`` (the module docstring lists what every transport fault does).

    It is an async context manager; closing it closes the HTTP client it made itself, never
    one passed in as ``http_client``. ``api_key`` (a ``str`` or a ``SecretStr``; default: the
    ``TTS_GRAPH_API_KEY`` or ``VLLM_API_KEY`` environment variable) is sent as a bearer token
    with every request and shown nowhere else.

    >>> async with VLLMBackend("http://127.0.0.1:8000/v1") as backend:  # doctest: +SKIP
    ...     gen = await backend.generate(GenerationRequest.chat([{"role": "user", "content": "Hi"}], n=4))
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str | SecretStr | None = None,
        timeout_s: float = 300.0,
        max_retries: int = 4,
        retry_for_s: float | None = None,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        retry_after_max_s: float = 30.0,
        max_concurrency: int = 16,
        model_params: int | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}"
            )
        check_url(base_url)
        if max_retries < 0 or max_concurrency < 1 or timeout_s <= 0:
            raise ConfigError(
                "max_retries must be >= 0, max_concurrency >= 1 and timeout_s > 0 "
                f"(got {max_retries}, {max_concurrency}, {timeout_s})"
            )
        self.base_url = base_url.rstrip("/")
        self._root_url = self.base_url.removesuffix("/v1")
        self._model = model
        self._model_params = model_params
        self._timeout_s = timeout_s
        if retry_for_s is not None and not retry_for_s > 0:
            raise ConfigError(f"retry_for_s must be > 0 seconds, or None; got {retry_for_s}")
        self._max_retries = max_retries
        self._retry_for_s = retry_for_s
        self._backoff = (backoff_base_s, backoff_max_s)
        if not retry_after_max_s >= 0:
            raise ConfigError(f"retry_after_max_s must be >= 0 seconds, got {retry_after_max_s}")
        self._retry_after_max_s = retry_after_max_s
        self._owns_http = http_client is None
        # Sent in the Authorization header only; a SecretStr never shows in a repr or a dump.
        self._api_key = resolve_api_key(api_key)
        self._max_concurrency = max_concurrency
        self._given_http = http_client
        # Connection pools and semaphores belong to the event loop that uses them: one set per
        # loop, so the backend serves an async caller's loop and the sync portal's alike.
        self._conns: LoopLocal[_Connection] = LoopLocal(self._connect)
        self._resolved = False
        # Prompt token counts by request prompt: every round of a node re-sends the same prompt.
        self._prompt_counts: dict[str, int] = {}

    def _connect(self) -> _Connection:
        http = self._given_http or httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout_s, connect=10.0),
            limits=httpx.Limits(max_connections=self._max_concurrency * 2),
        )
        client = openai.AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._api_key.get_secret_value() if self._api_key else "EMPTY",
            timeout=self._timeout_s,
            max_retries=0,  # tenacity owns retries, so they are classified and counted once
            # openai>=3 is built on httpx2 and still takes an httpx client; sharing one
            # client keeps a single connection pool (and lets tests mock the transport).
            http_client=cast(Any, http),
        )
        return _Connection(http, client, asyncio.Semaphore(self._max_concurrency), asyncio.Lock())

    @property
    def _http(self) -> httpx.AsyncClient:
        return self._conns.get().http

    @property
    def _client(self) -> openai.AsyncOpenAI:
        return self._conns.get().client

    @property
    def _semaphore(self) -> asyncio.Semaphore:
        return self._conns.get().semaphore

    @property
    def _resolve_lock(self) -> asyncio.Lock:
        return self._conns.get().resolve_lock

    # -- server facts -------------------------------------------------------------------------

    @property
    def model(self) -> str | None:
        """The served model name (None until the first request or :meth:`check`)."""
        return self._model

    @property
    def model_params(self) -> int | None:
        return self._model_params

    def trace_metadata(self) -> dict[str, Any]:
        """Requests are priced in LangSmith as the vLLM-served model's."""
        return {"ls_provider": "vllm", **({"ls_model_name": self._model} if self._model else {})}

    async def check(self) -> str:
        """Make sure the server is reachable, OpenAI-compatible and serves our model; returns
        the model name. Called before the first request; call it yourself to fail early."""
        async with self._resolve_lock:
            if not self._resolved:
                # Retried like any request: a client may start while its server still loads.
                await self._retried(self._resolve_model)
                self._resolved = True
        assert self._model is not None
        return self._model

    async def _resolve_model(self) -> None:
        url = f"{self.base_url}/models"
        try:
            resp = await self._http.get(
                url, timeout=min(self._timeout_s, 30.0), headers=auth_headers(self._api_key)
            )
        except httpx.HTTPError as exc:
            raise BackendError(
                f"cannot reach a model server at {self.base_url} ({type(exc).__name__}: {exc}); "
                "start one with `tts-graph serve` or fix the base URL",
                retryable=True,
            ) from exc
        if resp.status_code == 429 or resp.status_code >= 500:
            raise await self._status_error(resp.status_code, resp.text[:200], resp.headers, url=url)
        if resp.status_code in (401, 403):
            raise ConfigError(
                f"the server at {self.base_url} refused the API key (HTTP {resp.status_code}): "
                "give the key it was started with as api_key= or in TTS_GRAPH_API_KEY"
            )
        try:
            data = resp.json()["data"]
            served = {str(m["id"]): m for m in data}
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{self.base_url} is not an OpenAI-compatible server: GET {url} answered "
                f"HTTP {resp.status_code} without a model list; the base URL of a vLLM server "
                "looks like http://HOST:PORT/v1"
            ) from exc
        if not served:
            raise ConfigError(f"the server at {self.base_url} serves no model")
        if self._model is None:
            self._model = next(iter(served))
        elif self._model not in served:
            raise ConfigError(
                f"the server at {self.base_url} does not serve the model {self._model!r}; "
                f"it serves: {', '.join(sorted(served))}"
            )
        if self._model_params is None:
            # A server on this machine reports the model folder as "root": count its weights.
            root = served[self._model].get("root")
            if isinstance(root, str):
                self._model_params = await asyncio.to_thread(_local_parameters, root)

    async def health(self) -> bool:
        """True when ``/health`` answers 200 (vLLM answers 503 once its engine is dead)."""
        try:
            resp = await self._http.get(
                f"{self._root_url}/health", timeout=10.0, headers=auth_headers(self._api_key)
            )
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    # -- requests -----------------------------------------------------------------------------

    def _retrying(self) -> AsyncRetrying:
        stop: stop_base = stop_after_attempt(self._max_retries + 1)
        if self._retry_for_s is not None:
            # Both must be spent: at least max_retries retries, and retrying until retry_for_s.
            stop = stop & stop_after_delay(self._retry_for_s)
        return AsyncRetrying(
            stop=stop,
            wait=functools.partial(
                self._wait,
                wait_random_exponential(multiplier=self._backoff[0], max=self._backoff[1]),
            ),
            retry=retry_if_exception(self._may_pass),
            reraise=True,
            before_sleep=self._log_retry,
        )

    def _may_pass(self, exc: BaseException) -> bool:
        """Whether a failure is worth another attempt. With ``retry_for_s`` a dead engine is
        too: the user asked to ride out restarts, and behind a router (whose ``/health`` fails
        while any replica is down) the next attempt may reach a live replica."""
        if isinstance(exc, EngineDeadError):
            return self._retry_for_s is not None
        return _is_retryable(exc)

    def _wait(self, backoff: Callable[[RetryCallState], float], state: RetryCallState) -> float:
        """The backoff, or the wait the server asked for (``Retry-After``), capped."""
        error = state.outcome.exception() if state.outcome is not None else None
        asked = _ASKED_WAIT.get(error) if error is not None else None
        if asked is None:
            return backoff(state)
        if asked > self._retry_after_max_s:
            logger.warning(
                "the server at %s asks to wait %g s before a retry; waiting %g s "
                "(retry_after_max_s)", self.base_url, asked, self._retry_after_max_s,
            )  # fmt: skip
        return min(asked, self._retry_after_max_s)

    async def _retried(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """``call()`` with retries; a retryable failure that outlasts them says so."""
        attempts = 0

        async def attempt() -> _T:
            nonlocal attempts
            attempts += 1
            return await call()

        try:
            return cast(_T, await self._retrying()(attempt))
        except BackendError as exc:
            if not exc.retryable or attempts < 2:
                raise
            raise BackendError(
                f"{exc} (gave up after {attempts} attempts)", retryable=True, status=exc.status
            ) from exc

    def _backoff_s(self, attempt: int) -> float:
        """Jittered exponential backoff before attempt ``attempt + 1`` (tenacity's formula)."""
        base, cap = self._backoff
        return random.uniform(0, min(cap, base * 2**attempt))

    async def _generate(self, request: GenerationRequest) -> Generation:
        """Send one request (``n`` samples), retrying retryable failures; usage comes from the
        server's own ``usage`` field and is counted once, however many attempts it took.
        Samples missing from the reply are asked for again (see the module docstring)."""
        await self.check()
        async with self._semaphore:
            started = time.time()
            reply = await self._retried(functools.partial(self._request, request))
            got = {c.index: c for c in reply.completions}
            prompt_tokens, completion_tokens, calls = (
                reply.prompt_tokens,
                reply.completion_tokens,
                1,
            )
            for _ in range(self._max_retries):
                missing = [i for i in range(request.n) if i not in got]
                if not missing:
                    break
                logger.warning(
                    "the server at %s answered %d of the %d samples asked for; asking again "
                    "for sample(s) %s", self.base_url, len(got), request.n, missing,
                )  # fmt: skip
                try:
                    for first, count in _runs(missing):
                        part_request = _missing_part(request, first, count)
                        part = await self._retried(functools.partial(self._request, part_request))
                        calls += 1
                        prompt_tokens += part.prompt_tokens
                        completion_tokens += part.completion_tokens
                        for c in part.completions:
                            got.setdefault(
                                first + c.index, dataclasses.replace(c, index=first + c.index)
                            )
                except BackendError as exc:
                    # What did come back is returned and counted; generate() reports the rest.
                    logger.warning("asking again for the missing samples failed: %s", exc)
                    break
            ended = time.time()
        return Generation(
            completions=tuple(got[i] for i in sorted(got)),
            usage=self._usage(prompt_tokens, completion_tokens, started, ended, calls=calls),
            model=reply.model,
            seed=request.sampling.seed,
        )

    async def _request(self, request: GenerationRequest) -> _Reply:
        """One attempt: send ``request`` and parse the reply."""
        return self._parse(await self._send(request), request)

    async def _stream(self, request: GenerationRequest) -> AsyncGenerator[StreamChunk, None]:
        """Stream one request with the server's usage in every chunk (vLLM's
        ``continuous_usage_stats``), so a stream closed early knows what it cost. Opening the
        stream is retried like a request; so is a stream that breaks off (or ends before every
        sample finished) before it delivered any text. Later, it raises a retryable
        :class:`~tts_graph.errors.BackendError`: the text already delivered cannot be taken
        back."""
        await self.check()
        async with self._semaphore:
            started = time.time()
            for attempt in itertools.count(1):
                stream = await self._retried(functools.partial(self._send, request, stream=True))
                progress = _StreamProgress()
                try:
                    async for part in self._chunks(stream, request, started, progress):
                        yield part
                    return
                except BackendError as exc:
                    if progress.delivered or attempt > self._max_retries:
                        raise
                    wait = self._backoff_s(attempt)
                    logger.warning(
                        "retrying a stream from %s in %.2g s after: %s", self.base_url, wait, exc
                    )
                    await asyncio.sleep(wait)
                finally:
                    await stream.close()

    async def _chunks(
        self, stream: Any, request: GenerationRequest, started: float, progress: _StreamProgress
    ) -> AsyncGenerator[StreamChunk, None]:
        """The chunks of one opened stream; raises a retryable ``BackendError`` when it breaks
        off, carries something that is not a chunk, or ends before every sample finished."""
        chat = request.messages is not None
        try:
            async for chunk in stream:
                usage = None
                if (raw := getattr(chunk, "usage", None)) is not None:
                    tokens = int(raw.completion_tokens or 0)
                    if chunk.choices:
                        # vLLM's continuous usage counts the tokens of the chunk's own sample.
                        progress.tokens[int(chunk.choices[-1].index)] = tokens
                    else:
                        progress.total = tokens  # the final usage chunk: every sample
                    usage = self._usage(int(raw.prompt_tokens), progress.completion_tokens, started)
                if not chunk.choices and usage is not None:
                    yield StreamChunk(-1, usage=usage)
                for choice in chunk.choices:
                    part = _stream_chunk(choice, chat=chat, usage=usage)
                    if part.finish_reason is not None:
                        progress.finished.add(part.index)
                    if (
                        part.text
                        or part.logprobs
                        or part.tool_calls
                        or part.finish_reason is not None
                    ):
                        progress.delivered = True
                    yield part
        except openai.APIError as exc:
            raise self._stream_error(f"broke off: {_why(exc)}", progress, request) from (
                cause_without(exc, self._api_key)
            )
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise self._stream_error(
                f"sent something that is not a completion chunk ({type(exc).__name__}: {exc})",
                progress,
                request,
            ) from cause_without(exc, self._api_key)
        unfinished = [i for i in range(request.n) if i not in progress.finished]
        if unfinished:
            raise self._stream_error(
                f"ended before sample(s) {unfinished} finished (no finish_reason): it was cut off",
                progress,
                request,
            )

    def _stream_error(
        self, what: str, progress: _StreamProgress, request: GenerationRequest
    ) -> BackendError:
        done = len(progress.finished)
        counted = (
            f"; {done} of {request.n} sample(s) had finished, and the "
            f"{progress.completion_tokens} token(s) it delivered are counted"
            if progress.delivered
            else ""
        )
        return BackendError(
            redact(f"the stream from {self.base_url} {what}{counted}", self._api_key),
            retryable=True,
        )

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning("retrying a request to %s in %.3g s after: %s", self.base_url, wait, error)

    async def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` from the server's own tokenizer (``POST /tokenize``)."""
        await self.check()
        body = {"model": self._model, "prompt": text, "add_special_tokens": False}
        reply = await self._post_root("/tokenize", body)
        try:
            return [int(t) for t in reply["tokens"]]
        except (KeyError, TypeError, ValueError) as exc:
            raise BackendError(
                f"tokenize failed at {self._root_url}/tokenize: the reply has no token list "
                f"({type(exc).__name__}: {exc})",
                retryable=False,
            ) from exc

    async def count_prompt_tokens(self, request: GenerationRequest) -> int:
        """The exact prompt size of ``request``: vLLM's ``/tokenize`` applies the chat template
        (with the same generation-prompt and continuation settings) to chat messages."""
        body: dict[str, Any]
        if request.messages is not None:
            body = {
                "messages": [dict(m) for m in request.messages],
                "add_generation_prompt": not request.continue_final_message,
                "continue_final_message": request.continue_final_message,
            }
            if request.tools:
                body["tools"] = [dict(t) for t in request.tools]
            for key in ("chat_template_kwargs",):
                if key in request.extra_body:
                    body[key] = request.extra_body[key]
        else:
            body = {"prompt": request.prompt or "", "add_special_tokens": True}
        key = json.dumps(body, sort_keys=True)
        if key not in self._prompt_counts:
            await self.check()
            reply = await self._post_root("/tokenize", {"model": self._model, **body})
            try:
                count = int(reply["count"])
            except (KeyError, TypeError, ValueError) as exc:
                raise BackendError(
                    f"counting prompt tokens failed at {self._root_url}/tokenize: the reply has "
                    f"no count ({type(exc).__name__}: {exc})",
                    retryable=False,
                ) from exc
            if len(self._prompt_counts) > 256:
                self._prompt_counts.clear()
            self._prompt_counts[key] = count
        return self._prompt_counts[key]

    async def _post_root(self, path: str, body: dict[str, Any]) -> Any:
        """POST ``body`` to ``path`` under the server root (vLLM's own endpoints) and return
        the JSON reply, retried and classified like a generation request."""
        url = f"{self._root_url}{path}"

        async def once() -> Any:
            try:
                # A request like any other: within max_concurrency (never called while this
                # task holds a slot, so it cannot wait on itself). Every run of a budgeted
                # graph counts its prompt first: under load these arrive all at once.
                async with self._semaphore:
                    resp = await self._http.post(
                        url, json=body, headers=auth_headers(self._api_key)
                    )
            except httpx.TimeoutException as exc:
                raise BackendError(
                    f"the request to {url} timed out after {self._timeout_s:g} s", retryable=True
                ) from exc
            except httpx.HTTPError as exc:
                raise BackendError(
                    redact(f"cannot reach {url}: {type(exc).__name__}: {exc}", self._api_key),
                    retryable=True,
                ) from cause_without(exc, self._api_key)
            if resp.status_code >= 400:
                text = resp.text.strip()[:500] or resp.reason_phrase
                raise await self._status_error(resp.status_code, text, resp.headers, url=url)
            try:
                return resp.json()
            except ValueError as exc:
                raise self._malformed(f"a body that is not JSON ({exc})", url=url) from exc

        return await self._retried(once)

    async def aclose(self) -> None:
        """Close the HTTP clients this backend made, one per event loop it served: the caller's
        and the one synchronous calls (``graph.invoke``) run on. A client passed in as
        ``http_client`` stays open. The backend can be used again afterwards."""
        if not self._owns_http:
            return
        running = asyncio.get_running_loop()
        for loop, conn in self._conns.take_all():
            if loop is running:
                await conn.http.aclose()
            elif loop.is_running():  # another thread's loop: close the client there
                closing = asyncio.run_coroutine_threadsafe(conn.http.aclose(), loop)
                await asyncio.wrap_future(closing)
            # A client on a loop that is not running can no longer be closed; it is dropped.

    def close(self) -> None:
        """:meth:`aclose` for synchronous code."""
        run_sync(self.aclose())

    async def __aenter__(self) -> VLLMBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __enter__(self) -> VLLMBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def _send(self, request: GenerationRequest, *, stream: bool = False) -> Any:
        s = request.sampling
        common: dict[str, Any] = {
            "model": self._model,
            "n": request.n,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": s.max_tokens,
        }
        if stream:
            common["stream"] = True
            common["stream_options"] = {"include_usage": True, "continuous_usage_stats": True}
        if s.seed is not None:
            common["seed"] = s.seed
        if s.stop:
            common["stop"] = list(s.stop)
        extra: dict[str, Any] = {
            "top_k": s.top_k,
            "min_p": s.min_p,
            "min_tokens": s.min_tokens,
            "stop_token_ids": list(s.stop_token_ids),
            "include_stop_str_in_output": s.include_stop_str_in_output,
            "skip_special_tokens": s.skip_special_tokens,
            "ignore_eos": s.ignore_eos,
            "repetition_penalty": s.repetition_penalty,
            "return_token_ids": True,  # exact per-sample token counts
        }
        try:
            if request.messages is not None:
                if s.logprobs:
                    common["logprobs"] = True
                    common["top_logprobs"] = s.top_logprobs
                extra["add_generation_prompt"] = not request.continue_final_message
                extra["continue_final_message"] = request.continue_final_message
                if request.tools:
                    common["tools"] = [dict(t) for t in request.tools]
                    common["tool_choice"] = "auto"
                return await self._client.chat.completions.create(
                    messages=[dict(m) for m in request.messages],  # type: ignore[misc]
                    extra_body={**extra, **request.extra_body},
                    **common,
                )
            if s.logprobs:
                common["logprobs"] = s.top_logprobs
            return await self._client.completions.create(
                prompt=request.prompt or "",
                extra_body={**extra, **request.extra_body},
                **common,
            )
        except openai.APITimeoutError as exc:
            raise BackendError(
                f"the request to {self.base_url} timed out after {self._timeout_s:g} s",
                retryable=True,
            ) from exc
        except openai.APIConnectionError as exc:
            # Refused, reset, or closed before the reply was whole (the cause says which).
            raise BackendError(
                redact(
                    f"cannot reach the model server at {self.base_url}: {_why(exc)}", self._api_key
                ),
                retryable=True,
            ) from cause_without(exc, self._api_key)
        except openai.APIStatusError as exc:
            raise await self._classify_status(exc) from cause_without(exc, self._api_key)
        except json.JSONDecodeError as exc:
            raise self._malformed(f"a body that is not JSON ({exc}): {exc.doc[:200]!r}") from exc

    async def _classify_status(self, exc: openai.APIStatusError) -> BackendError:
        headers = exc.response.headers if exc.response is not None else None
        return await self._status_error(exc.status_code, _server_message(exc), headers)

    async def _status_error(
        self,
        status: int,
        server_message: str,
        headers: Mapping[str, str] | None,
        *,
        url: str | None = None,
    ) -> BackendError:
        reply = redact(server_message, self._api_key)  # a server may echo the key
        message = f"the server at {url or self.base_url} answered HTTP {status}: {reply}"
        if status >= 500 and not await self.health():
            return EngineDeadError(
                message + "; its /health check fails too, so its engine is down: restart the "
                "server (see its log) and run again",
                status=status,
            )
        retryable = status == 429 or status >= 500
        error = BackendError(message + _hint(message), retryable=retryable, status=status)
        if retryable and (wait := _retry_after_s(headers)) is not None:
            _ASKED_WAIT[error] = wait
        return error

    def _malformed(self, what: str, *, url: str | None = None) -> BackendError:
        """A 200 reply that is broken (cut short in transit, or from something in between):
        retryable, the request itself was fine."""
        return BackendError(
            redact(f"the server at {url or self.base_url} answered with {what}", self._api_key),
            retryable=True,
        )

    def _parse(self, response: Any, request: GenerationRequest) -> _Reply:
        """The reply's samples (by index) and usage; a reply that is not a completion for
        ``request`` is a retryable ``BackendError`` naming what is wrong with it."""
        if isinstance(response, str):  # the client returns the text of a non-JSON reply
            raise self._malformed(f"a body that is not JSON: {response[:200]!r}")
        try:
            choices = response.choices
            if not isinstance(choices, list):
                raise TypeError(f"choices is {type(choices).__name__}, not a list")
            completions = sorted(
                (self._parse_choice(c, chat=request.messages is not None) for c in choices),
                key=lambda c: c.index,
            )
            indices = [c.index for c in completions]
            if len(set(indices)) != len(indices) or min(indices, default=0) < 0:
                raise ValueError(f"choice indices {indices} for n={request.n}")
            if extra := [i for i in indices if i >= request.n]:
                logger.warning(
                    "the server at %s answered sample(s) %s of a request for %d; ignored",
                    self.base_url, extra, request.n,
                )  # fmt: skip
                completions = [c for c in completions if c.index < request.n]
            counted = sum(c.completion_tokens for c in completions)
            usage = getattr(response, "usage", None)
            prompt_tokens = (
                int(usage.prompt_tokens)
                if usage
                else len(getattr(response, "prompt_token_ids", None) or ())
            )
            completion_tokens = int(usage.completion_tokens) if usage else counted
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            raise self._malformed(
                f"a reply that is not a completion ({type(exc).__name__}: {exc})"
            ) from exc
        return _Reply(
            completions=tuple(completions),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            model=str(getattr(response, "model", self._model) or ""),
        )

    def _usage(
        self,
        prompt_tokens: int,
        completion_tokens: int,
        started: float,
        ended: float | None = None,
        *,
        calls: int = 1,
    ) -> Usage:
        return Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            calls=calls,
            flops=estimate_flops(self._model_params, prompt_tokens + completion_tokens),
            started_at=started,
            ended_at=time.time() if ended is None else ended,
        )

    @staticmethod
    def _parse_choice(choice: Any, *, chat: bool) -> Completion:
        token_ids = getattr(choice, "token_ids", None)
        logprobs: tuple[TokenLogprob, ...] | None = None
        tool_calls: tuple[dict[str, Any], ...] = ()
        if chat:
            text = choice.message.content or ""
            reasoning = getattr(choice.message, "reasoning", None) or getattr(
                choice.message, "reasoning_content", None
            )
            tool_calls = tuple(
                tool_call(t.function.name, t.function.arguments, t.id)
                for t in choice.message.tool_calls or ()
            )
            if choice.logprobs is not None and choice.logprobs.content is not None:
                logprobs = _token_logprobs(choice.logprobs.content)
        else:
            text = choice.text or ""
            reasoning = None
            lp = choice.logprobs
            if lp is not None and lp.tokens is not None:
                tops = lp.top_logprobs or [None] * len(lp.tokens)
                logprobs = tuple(
                    TokenLogprob(
                        token=tok,
                        logprob=float(val) if val is not None else float("-inf"),
                        top=tuple((k, float(v)) for k, v in (top or {}).items()),
                    )
                    for tok, val, top in zip(lp.tokens, lp.token_logprobs or [], tops, strict=False)
                )
        if token_ids is not None:
            n_tokens = len(token_ids)
        elif logprobs is not None:
            n_tokens = len(logprobs)
        else:
            n_tokens = 0
        return Completion(
            index=int(choice.index),
            text=text,
            finish_reason=choice.finish_reason,
            stop_reason=getattr(choice, "stop_reason", None),
            completion_tokens=n_tokens,
            token_ids=tuple(int(t) for t in token_ids) if token_ids is not None else None,
            logprobs=logprobs,
            reasoning=reasoning if isinstance(reasoning, str) else None,
            tool_calls=tool_calls,
        )

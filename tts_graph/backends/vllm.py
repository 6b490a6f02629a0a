"""A backend that speaks to a vLLM server over its OpenAI-compatible API, with vLLM's extras.

Requests go through ``openai.AsyncOpenAI`` (vLLM-only fields ride in ``extra_body``); retries are
tenacity's, on retryable failures only (connection errors, timeouts, 429, 5xx) with jittered
exponential backoff and a cap. A 5xx is followed by a look at ``/health``: vLLM answers 503 there
once its engine has died, and from then on every request fails until a restart, so the client
stops at once with :class:`~tts_graph.errors.EngineDeadError` instead of retrying.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import openai
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from tts_graph._loops import LoopLocal
from tts_graph.backends.base import (
    BaseBackend,
    Completion,
    Generation,
    GenerationRequest,
    StreamChunk,
    TokenLogprob,
)
from tts_graph.backends.server import count_parameters
from tts_graph.budget import Usage, estimate_flops
from tts_graph.errors import BackendError, ConfigError, EngineDeadError

__all__ = ["VLLMBackend"]

logger = logging.getLogger(__name__)


def _is_retryable(exc: BaseException) -> bool:
    return isinstance(exc, BackendError) and exc.retryable


# What to do about the server's refusals that come from how it was started.
_HINTS = (
    (
        "--enable-auto-tool-choice",
        "; this server was started without tool calling: serve a model that calls tools "
        "(tts-graph serve --model qwen2.5-coder-0.5b) or start vLLM with "
        "--enable-auto-tool-choice --tool-call-parser NAME",
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
    if chat:
        text = choice.delta.content or "" if choice.delta is not None else ""
        lp = choice.logprobs.content if choice.logprobs is not None else None
        logprobs = _token_logprobs(lp)
    else:
        text = choice.text or ""
        logprobs = ()
    return StreamChunk(
        index=int(choice.index),
        text=text,
        logprobs=logprobs,
        finish_reason=choice.finish_reason,
        usage=usage,
    )


def _tool_call(call: Any) -> dict[str, Any]:
    """A server's tool call in LangChain's form; arguments that are not JSON are kept as text."""
    raw = call.function.arguments or "{}"
    try:
        args = json.loads(raw)
    except ValueError:
        args = {"__raw__": raw}
    if not isinstance(args, dict):
        args = {"__value__": args}
    return {"name": call.function.name, "args": args, "id": call.id, "type": "tool_call"}


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

    It is an async context manager; closing it closes the HTTP client it made itself, never
    one passed in as ``http_client``.

    >>> async with VLLMBackend("http://127.0.0.1:8000/v1") as backend:  # doctest: +SKIP
    ...     gen = await backend.generate(GenerationRequest.chat([{"role": "user", "content": "Hi"}], n=4))
    """

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        api_key: str = "EMPTY",
        timeout_s: float = 300.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        max_concurrency: int = 16,
        model_params: int | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(
                f"base_url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}"
            )
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
        self._max_retries = max_retries
        self._backoff = (backoff_base_s, backoff_max_s)
        self._owns_http = http_client is None
        self._api_key = api_key
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
            api_key=self._api_key,
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
                await self._resolve_model()
                self._resolved = True
        assert self._model is not None
        return self._model

    async def _resolve_model(self) -> None:
        url = f"{self.base_url}/models"
        try:
            resp = await self._http.get(url, timeout=min(self._timeout_s, 30.0))
        except httpx.HTTPError as exc:
            raise BackendError(
                f"cannot reach a model server at {self.base_url} ({type(exc).__name__}: {exc}); "
                "start one with `tts-graph serve` or fix the base URL",
                retryable=True,
            ) from exc
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
            resp = await self._http.get(f"{self._root_url}/health", timeout=10.0)
        except httpx.HTTPError:
            return False
        return resp.status_code == 200

    # -- requests -----------------------------------------------------------------------------

    def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self._max_retries + 1),
            wait=wait_random_exponential(multiplier=self._backoff[0], max=self._backoff[1]),
            retry=retry_if_exception(_is_retryable),
            reraise=True,
            before_sleep=self._log_retry,
        )

    async def _generate(self, request: GenerationRequest) -> Generation:
        """Send one request (``n`` samples), retrying retryable failures; usage comes from the
        server's own ``usage`` field and is counted once, however many attempts it took."""
        await self.check()
        async with self._semaphore:
            started = time.time()
            async for attempt in self._retrying():
                with attempt:
                    response = await self._send(request)
            ended = time.time()
        return self._parse(response, request, started, ended)

    async def _stream(self, request: GenerationRequest) -> AsyncGenerator[StreamChunk, None]:
        """Stream one request with the server's usage in every chunk (vLLM's
        ``continuous_usage_stats``), so a stream closed early knows what it cost. Opening the
        stream is retried like a request; a stream cut half-way is not (its samples are
        partial)."""
        await self.check()
        chat = request.messages is not None
        async with self._semaphore:
            started = time.time()
            async for attempt in self._retrying():
                with attempt:
                    stream = await self._send(request, stream=True)
            try:
                async for chunk in stream:
                    usage = None
                    if (raw := getattr(chunk, "usage", None)) is not None:
                        usage = self._usage(
                            int(raw.prompt_tokens), int(raw.completion_tokens or 0), started
                        )
                    if not chunk.choices and usage is not None:
                        yield StreamChunk(-1, usage=usage)
                    for choice in chunk.choices:
                        yield _stream_chunk(choice, chat=chat, usage=usage)
            except openai.APIError as exc:
                raise BackendError(
                    f"the stream from {self.base_url} broke off: {exc}", retryable=False
                ) from exc
            finally:
                await stream.close()

    def _log_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        logger.warning("retrying a request to %s after: %s", self.base_url, error)

    async def tokenize(self, text: str) -> list[int]:
        """Token ids of ``text`` from the server's own tokenizer (``POST /tokenize``)."""
        await self.check()
        try:
            resp = await self._http.post(
                f"{self._root_url}/tokenize",
                json={"model": self._model, "prompt": text, "add_special_tokens": False},
            )
            resp.raise_for_status()
            return [int(t) for t in resp.json()["tokens"]]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise BackendError(
                f"tokenize failed at {self._root_url}/tokenize: {exc}", retryable=False
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
            try:
                resp = await self._http.post(
                    f"{self._root_url}/tokenize", json={"model": self._model, **body}
                )
                resp.raise_for_status()
                count = int(resp.json()["count"])
            except (httpx.HTTPError, KeyError, ValueError, TypeError) as exc:
                raise BackendError(
                    f"counting prompt tokens failed at {self._root_url}/tokenize: {exc}",
                    retryable=False,
                ) from exc
            if len(self._prompt_counts) > 256:
                self._prompt_counts.clear()
            self._prompt_counts[key] = count
        return self._prompt_counts[key]

    async def aclose(self) -> None:
        """Close the HTTP client this backend made for the running event loop (a client passed
        in stays open)."""
        conn = self._conns.current()
        if self._owns_http and conn is not None:
            await conn.http.aclose()

    async def __aenter__(self) -> VLLMBackend:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

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
                f"the request to {self.base_url} timed out after {self._timeout_s:.0f} s",
                retryable=True,
            ) from exc
        except openai.APIConnectionError as exc:
            raise BackendError(
                f"cannot reach the model server at {self.base_url}: {exc}", retryable=True
            ) from exc
        except openai.APIStatusError as exc:
            raise await self._classify_status(exc) from exc

    async def _classify_status(self, exc: openai.APIStatusError) -> BackendError:
        status = exc.status_code
        message = f"the server at {self.base_url} answered HTTP {status}: {_server_message(exc)}"
        if status >= 500 and not await self.health():
            return EngineDeadError(
                message + "; its /health check fails too, so its engine is down: restart the "
                "server (see its log) and run again",
                status=status,
            )
        retryable = status == 429 or status >= 500
        return BackendError(message + _hint(message), retryable=retryable, status=status)

    def _parse(
        self, response: Any, request: GenerationRequest, started: float, ended: float
    ) -> Generation:
        completions = sorted(
            (self._parse_choice(c, chat=request.messages is not None) for c in response.choices),
            key=lambda c: c.index,
        )
        counted = sum(c.completion_tokens for c in completions)
        usage = getattr(response, "usage", None)
        prompt_tokens = (
            int(usage.prompt_tokens)
            if usage
            else len(getattr(response, "prompt_token_ids", None) or ())
        )
        completion_tokens = int(usage.completion_tokens) if usage else counted
        return Generation(
            completions=tuple(completions),
            usage=self._usage(prompt_tokens, completion_tokens, started, ended),
            model=str(getattr(response, "model", self._model) or ""),
            seed=request.sampling.seed,
        )

    def _usage(
        self, prompt_tokens: int, completion_tokens: int, started: float, ended: float | None = None
    ) -> Usage:
        return Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            calls=1,
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
            tool_calls = tuple(_tool_call(t) for t in choice.message.tool_calls or ())
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

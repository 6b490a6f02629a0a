r"""Reward models served by vLLM: process (PRM) and outcome (ORM) scorers.

Process reward (Qwen2.5-Math-PRM style, ``vllm serve Qwen/Qwen2.5-Math-PRM-7B``): the candidate is
split into steps (default separator ``"\n\n"``), the steps are joined with the model's step token
(``<extra_0>``) after each step, and the chat is sent to ``POST /pooling``. The reply carries one
``[p_bad, p_good]`` pair per step; the step score is ``p_good`` and the candidate's score is their
aggregate: ``last`` (the default, as in Snell et al.), ``min``, ``prod`` or ``mean``.

Outcome reward: ``POST /classify`` (a classifier head: the score is the probability of the positive
class, by default the last) or ``POST /pooling`` (a scalar reward head: the score is the raw
reward, optionally squashed by a sigmoid).

Failures never crash a graph: a server error (after retries), a timeout or a malformed reply gives
a failed verdict whose ``error`` says what went wrong.

A server started with ``--api-key`` takes ``api_key=`` (a ``str`` or a ``SecretStr``; default: the
``TTS_GRAPH_API_KEY`` or ``VLLM_API_KEY`` environment variable), sent as a bearer token with every
request and shown nowhere else: not in a repr, a verdict's reason or a log line, even when the
server echoes it.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import httpx
from pydantic import SecretStr
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from tts_graph._loops import LoopLocal
from tts_graph._secrets import auth_headers, check_url, redact, resolve_api_key
from tts_graph.budget import Usage
from tts_graph.errors import BackendError, ConfigError
from tts_graph.metering import charge
from tts_graph.verifiers.base import Problem, Verdict

__all__ = ["Aggregate", "OutcomeRewardVerifier", "ProcessRewardVerifier", "aggregate_steps"]

Aggregate = Literal["last", "min", "prod", "mean"]
_AGGREGATES: dict[str, Callable[[Sequence[float]], float]] = {
    "last": lambda s: s[-1],
    "min": min,
    "prod": math.prod,
    "mean": lambda s: sum(s) / len(s),
}

DEFAULT_PRM_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."


def aggregate_steps(scores: Sequence[float], how: Aggregate = "last") -> float:
    """Combine per-step scores into one.

    >>> aggregate_steps([0.9, 0.5, 0.8], "min")
    0.5
    """
    if not scores:
        raise ValueError("no step scores to aggregate")
    return float(_AGGREGATES[how](scores))


class _MalformedReply(Exception):
    pass


class _PoolingClient:
    """POSTs JSON to a vLLM server's root endpoints with the backend's retry rules."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None,
        timeout_s: float,
        max_retries: int,
        max_concurrency: int,
        backoff: tuple[float, float],
        http_client: httpx.AsyncClient | None,
        model_params: int | None = None,
        api_key: str | SecretStr | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must be an http(s) URL, got {base_url!r}")
        check_url(base_url)
        self.api_key = resolve_api_key(api_key)
        self.root = base_url.rstrip("/").removesuffix("/v1")
        self.model = model
        self._given_http = http_client
        # An HTTP connection pool and a semaphore belong to the loop that uses them.
        self._https = LoopLocal(lambda: http_client or httpx.AsyncClient(timeout=timeout_s))
        self._semaphores = LoopLocal(lambda: asyncio.Semaphore(max_concurrency))
        self._retries = max_retries
        self._backoff = backoff
        self._model_params = model_params

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        if self.model is not None:
            body = {"model": self.model, **body}
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retries + 1),
            wait=wait_random_exponential(multiplier=self._backoff[0], max=self._backoff[1]),
            retry=retry_if_exception(lambda e: isinstance(e, BackendError) and e.retryable),
            reraise=True,
        )
        # A pooling request reads its input and generates nothing. Its token count is not known
        # before the reply; the UTF-8 size of the body bounds it (a token is at least a byte).
        bound = len(json.dumps(body).encode())
        async with (
            charge(
                prompt_tokens=bound, model_params=self._model_params, what=f"a {path} request"
            ) as bill,
            self._semaphores.get(),
        ):
            started = time.time()
            async for attempt in retrying:
                with attempt:
                    reply = await self._post_once(path, body)
            bill.settle(_usage(reply, started, time.time()))
            return reply
        raise AssertionError("unreachable")  # pragma: no cover

    async def _post_once(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.root}{path}"
        try:
            resp = await self._https.get().post(url, json=body, headers=auth_headers(self.api_key))
        except httpx.TimeoutException as exc:
            raise BackendError(f"{url} timed out", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise BackendError(f"cannot reach {url}: {exc}", retryable=True) from exc
        # What the server answered is shown without the key, which a server may echo.
        if resp.status_code >= 400:
            retryable = resp.status_code == 429 or resp.status_code >= 500
            hint = (
                "; give the key the server was started with as api_key= or in TTS_GRAPH_API_KEY"
                if resp.status_code in (401, 403)
                else ""
            )
            raise BackendError(
                f"{url} answered HTTP {resp.status_code}: "
                f"{redact(resp.text[:300], self.api_key)}{hint}",
                retryable=retryable,
                status=resp.status_code,
            )
        try:
            data = resp.json()
        except ValueError:
            raise _MalformedReply(
                f"{url} answered non-JSON: {redact(repr(resp.text[:200]), self.api_key)}"
            ) from None
        if not isinstance(data, dict):
            raise _MalformedReply(f"{url} answered {type(data).__name__}, not a JSON object")
        return data

    async def aclose(self) -> None:
        http = self._https.current()
        if self._given_http is None and http is not None:
            await http.aclose()


def _usage(reply: dict[str, Any], started: float, ended: float) -> Usage:
    usage = reply.get("usage") or {}
    return Usage(
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        calls=1,
        started_at=started,
        ended_at=ended,
    )


def _first_item(reply: dict[str, Any]) -> dict[str, Any]:
    data = reply.get("data")
    if not isinstance(data, list) or not data or not isinstance(data[0], dict):
        raise _MalformedReply(f"reply has no data items: {str(reply)[:200]}")
    item: dict[str, Any] = data[0]
    return item


class _RewardVerifier:
    name = "reward"
    uses_model = True  # one model call per candidate, charged to the run's budget

    def __init__(
        self,
        base_url: str,
        *,
        model: str | None = None,
        threshold: float | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 3,
        max_concurrency: int = 8,
        backoff: tuple[float, float] = (0.5, 8.0),
        http_client: httpx.AsyncClient | None = None,
        model_params: int | None = None,
        api_key: str | SecretStr | None = None,
    ) -> None:
        self.threshold = threshold
        self._client = _PoolingClient(
            base_url,
            model=model,
            timeout_s=timeout_s,
            max_retries=max_retries,
            max_concurrency=max_concurrency,
            backoff=backoff,
            http_client=http_client,
            model_params=model_params,
            api_key=api_key,
        )

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]:
        return list(await asyncio.gather(*(self._safe(problem, c) for c in candidates)))

    async def _safe(self, problem: Problem, candidate: str) -> Verdict:
        try:
            return await self._score(problem, candidate)
        except BackendError as exc:
            why = f"{self.name} server failed: {exc}"
        except _MalformedReply as exc:
            why = f"{self.name} reply malformed: {exc}"
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            why = f"{self.name} reply malformed: {type(exc).__name__}: {exc}"
        # A reason quotes the server's reply, which may echo the key.
        return Verdict.verifier_error(redact(why, self._client.api_key))

    async def _score(self, problem: Problem, candidate: str) -> Verdict:
        raise NotImplementedError

    def _passed(self, score: float) -> bool | None:
        return None if self.threshold is None else score >= self.threshold

    async def aclose(self) -> None:
        await self._client.aclose()


class ProcessRewardVerifier(_RewardVerifier):
    """Score each step of a candidate with a process reward model served by vLLM.

    >>> prm = ProcessRewardVerifier("http://127.0.0.1:8001/v1", aggregate="min")  # doctest: +SKIP
    >>> [v.step_scores for v in await prm.verify(Problem("1+1?"), ["1+1=2\\n\\nAnswer: 2"])]
    [(0.98, 0.97)]
    """

    name = "prm"

    def __init__(
        self,
        base_url: str,
        *,
        aggregate: Aggregate = "last",
        step_separator: str = "\n\n",
        step_token: str = "<extra_0>",
        system_prompt: str | None = DEFAULT_PRM_SYSTEM,
        **options: Any,
    ) -> None:
        if aggregate not in _AGGREGATES:
            raise ConfigError(
                f"unknown aggregate {aggregate!r}; choose one of: {', '.join(_AGGREGATES)}"
            )
        super().__init__(base_url, **options)
        self.aggregate = aggregate
        self.step_separator = step_separator
        self.step_token = step_token
        self.system_prompt = system_prompt

    def steps(self, candidate: str) -> list[str]:
        """The candidate's reasoning steps (empty pieces dropped)."""
        return [s.strip() for s in candidate.split(self.step_separator) if s.strip()]

    def messages(self, question: str, steps: Sequence[str]) -> list[dict[str, str]]:
        """The chat a Qwen2.5-Math-PRM-style model scores: a step token after every step."""
        answer = "".join(step + self.step_token for step in steps)
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        if self.system_prompt:
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        return messages

    async def _score(self, problem: Problem, candidate: str) -> Verdict:
        steps = self.steps(candidate)
        if not steps:
            return Verdict.failure("empty candidate: no steps to score")
        started = time.time()
        reply = await self._client.post(
            "/pooling", {"messages": self.messages(problem.question, steps)}
        )
        usage = _usage(reply, started, time.time())
        rows = _first_item(reply)["data"]
        if isinstance(rows, str) or not isinstance(rows, list):
            raise _MalformedReply(f"step scores are not a list: {str(rows)[:100]}")
        # [[p_bad, p_good], ...] per step; a head with one output gives [p_good, ...].
        scores = tuple(float(r[-1]) if isinstance(r, list) else float(r) for r in rows)
        if len(scores) != len(steps):
            raise _MalformedReply(f"{len(scores)} step scores for {len(steps)} steps")
        if not all(0.0 <= s <= 1.0 for s in scores):
            raise _MalformedReply(f"step scores outside [0, 1]: {scores}")
        score = aggregate_steps(scores, self.aggregate)
        worst = min(range(len(scores)), key=scores.__getitem__)
        return Verdict(
            passed=self._passed(score),
            score=score,
            reason=f"{self.aggregate} of {len(scores)} step scores = {score:.3f}; "
            f"weakest step {worst + 1} ({scores[worst]:.3f})",
            step_scores=scores,
            usage=usage,
        )


class OutcomeRewardVerifier(_RewardVerifier):
    """Score a whole candidate with an outcome reward model served by vLLM.

    ``endpoint="classify"``: the probability of class ``positive_index`` (default: the last).
    ``endpoint="pooling"``: the raw scalar reward, squashed into (0, 1) with ``sigmoid=True``.

    >>> orm = OutcomeRewardVerifier("http://127.0.0.1:8002/v1", threshold=0.5)  # doctest: +SKIP
    """

    name = "orm"

    def __init__(
        self,
        base_url: str,
        *,
        endpoint: Literal["classify", "pooling"] = "classify",
        positive_index: int = -1,
        sigmoid: bool = False,
        **options: Any,
    ) -> None:
        if endpoint not in ("classify", "pooling"):
            raise ConfigError(f"unknown endpoint {endpoint!r}; choose one of: classify, pooling")
        super().__init__(base_url, **options)
        self.endpoint = endpoint
        self.positive_index = positive_index
        self.sigmoid = sigmoid

    async def _score(self, problem: Problem, candidate: str) -> Verdict:
        messages = [
            {"role": "user", "content": problem.question},
            {"role": "assistant", "content": candidate},
        ]
        started = time.time()
        reply = await self._client.post(f"/{self.endpoint}", {"messages": messages})
        usage = _usage(reply, started, time.time())
        item = _first_item(reply)
        if self.endpoint == "classify":
            score = float(item["probs"][self.positive_index])
            reason = f"P(positive) = {score:.3f} (top label {item.get('label')!r})"
        else:
            value: Any = item["data"]
            while isinstance(value, list):  # [[r]] or [r] -> r: the last position's reward
                value = value[-1]
            score = float(value)
            if self.sigmoid:
                score = 1.0 / (1.0 + math.exp(-score))
            reason = f"reward {score:.3f}"
        if not math.isfinite(score):
            raise _MalformedReply(f"non-finite score {score}")
        return Verdict(passed=self._passed(score), score=score, reason=reason, usage=usage)

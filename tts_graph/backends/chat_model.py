"""A backend over any LangChain chat model, so a graph runs on the model object you already have
(a hosted API, a local server, a fake in tests).

Chat models differ in what they offer, and this backend says which of the vLLM server's features
the model lacks, once, in the log and in :attr:`ChatModelBackend.degraded`, and degrades as
documented here, never silently:

- ``n`` samples in one request: a model with an ``n`` field gets them in one call; otherwise
  each sample is its own call (``"n"`` is degraded; usage counts every call).
- sampling settings: ``temperature``, ``top_p``, ``max_tokens``, ``seed`` and ``stop`` are set on
  the model where it has such a field; the rest (``top_k``, ``min_p``, ``min_tokens``,
  ``repetition_penalty``, ``stop_token_ids``, ...) have no LangChain equivalent and are dropped
  when set to anything but their neutral value (each is named in ``degraded``).
- logprobs: read from ``response_metadata["logprobs"]`` (OpenAI's form) when the model has a
  ``logprobs`` field; otherwise samples carry none (``"logprobs"``), so confidence-based
  estimators see no signal.
- continuing a partial assistant message (budget forcing) and raw-text prompts: not offered by
  chat models in general; such a request raises :class:`~tts_graph.errors.ConfigError`.
- token counts: ``usage_metadata`` of each reply; a model that reports none counts 0 (``"usage"``).
  ``tokenize`` has no tokenizer to ask: it returns the text's UTF-8 bytes, an upper bound on its
  tokens, which keeps budget reservations on the safe side.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, convert_to_messages

from tts_graph.backends.base import (
    BaseBackend,
    Completion,
    Generation,
    GenerationRequest,
    SamplingParams,
    TokenLogprob,
)
from tts_graph.budget import Usage
from tts_graph.errors import ConfigError

__all__ = ["ChatModelBackend"]

logger = logging.getLogger(__name__)

# SamplingParams fields a LangChain model may carry under the same name, and the value that
# needs no field (None: every value needs one).
_MAPPED: dict[str, Any] = {"temperature": None, "top_p": 1.0, "max_tokens": None, "seed": None}
# SamplingParams fields with no LangChain counterpart, and the value that means "unset".
_NEUTRAL: dict[str, Any] = {
    "top_k": 0,
    "min_p": 0.0,
    "min_tokens": 0,
    "stop_token_ids": (),
    "include_stop_str_in_output": False,
    "skip_special_tokens": True,
    "ignore_eos": False,
    "repetition_penalty": 1.0,
}


class ChatModelBackend(BaseBackend):
    """Generate with a LangChain ``BaseChatModel``.

    >>> from langchain_openai import ChatOpenAI  # doctest: +SKIP
    >>> backend = ChatModelBackend(ChatOpenAI(model="gpt-4o-mini"))  # doctest: +SKIP
    >>> graph = create_best_of_n_graph(backend, n=4).compile()  # doctest: +SKIP
    """

    def __init__(self, model: BaseChatModel, *, max_concurrency: int = 8) -> None:
        if not isinstance(model, BaseChatModel):
            raise ConfigError(
                f"ChatModelBackend needs a LangChain BaseChatModel, got {type(model).__name__}"
            )
        self.model = model
        self.max_concurrency = max_concurrency
        self.degraded: set[str] = set()

    def _degrade(self, feature: str, how: str) -> None:
        if feature not in self.degraded:
            self.degraded.add(feature)
            logger.warning("%s lacks %s: %s", type(self.model).__name__, feature, how)

    def _fields(self) -> set[str]:
        return set(type(self.model).model_fields)

    def _configured(
        self, sampling: SamplingParams, n: int, tools: list[dict[str, Any]]
    ) -> tuple[BaseChatModel, dict[str, Any], int]:
        """The model with this request's settings, the keyword arguments of its call, and how
        many samples one call returns."""
        fields = self._fields()
        update: dict[str, Any] = {}
        for name, neutral in _MAPPED.items():
            value = getattr(sampling, name)
            if name in fields:
                update[name] = value
            elif value is not None and value != neutral:
                self._degrade(name, f"{name}={value} is not sent; the model's own default applies")
        for name, neutral in _NEUTRAL.items():
            if getattr(sampling, name) != neutral:
                self._degrade(name, f"{name} has no LangChain equivalent and is not sent")
        if sampling.logprobs:
            if "logprobs" in fields:
                update["logprobs"] = True
                if sampling.top_logprobs and "top_logprobs" in fields:
                    update["top_logprobs"] = sampling.top_logprobs
            else:
                self._degrade("logprobs", "samples carry no token log-probabilities")
        per_call = n if "n" in fields else 1
        if per_call > 1:
            update["n"] = n
        elif n > 1:
            self._degrade("n", "each sample is a separate call")
        model = self.model.model_copy(update=update) if update else self.model
        kwargs: dict[str, Any] = {}
        if tools:
            try:
                bound = model.bind_tools(tools)
            except NotImplementedError as exc:
                raise ConfigError(
                    f"{type(self.model).__name__} does not take tools (bind_tools), but the "
                    "request offers some"
                ) from exc
            kwargs.update(getattr(bound, "kwargs", {}))
        if sampling.stop:
            kwargs["stop"] = list(sampling.stop)
        return model, kwargs, per_call

    async def _generate(self, request: GenerationRequest) -> Generation:
        if request.messages is None:
            raise ConfigError(
                "a chat model answers chat messages, not a raw-text prompt; use a chat request"
            )
        if request.continue_final_message:
            raise ConfigError(
                f"{type(self.model).__name__} cannot continue a partial assistant message "
                "(budget forcing needs that); run budget forcing on a vLLM server"
            )
        messages = convert_to_messages([dict(m) for m in request.messages])
        model, kwargs, per_call = self._configured(
            request.sampling, request.n, [dict(t) for t in request.tools]
        )
        calls = 1 if per_call > 1 else request.n
        semaphore = asyncio.Semaphore(self.max_concurrency)
        started = time.time()

        async def one() -> Any:
            async with semaphore:
                return await model.agenerate([messages], **kwargs)

        results = await asyncio.gather(*(one() for _ in range(calls)))
        ended = time.time()
        replies: list[BaseMessage] = [
            gen.message for result in results for gen in result.generations[0]
        ]
        completions = tuple(self._completion(i, m) for i, m in enumerate(replies[: request.n]))
        prompt_tokens = completion_tokens = 0
        reported = False
        for result in results:
            # One call's usage sits on each of its messages: count it once per call.
            first = result.generations[0][0].message
            usage = getattr(first, "usage_metadata", None)
            if usage:
                reported = True
                prompt_tokens += int(usage.get("input_tokens", 0))
                completion_tokens += int(usage.get("output_tokens", 0))
        if not reported:
            self._degrade("usage", "it reports no token usage; tokens count as 0")
        return Generation(
            completions=completions,
            usage=Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                calls=calls,
                started_at=started,
                ended_at=ended,
            ),
            model=str(getattr(self.model, "model_name", "") or type(self.model).__name__),
            seed=request.sampling.seed,
        )

    def _completion(self, index: int, message: BaseMessage) -> Completion:
        meta = message.response_metadata or {}
        usage = getattr(message, "usage_metadata", None) or {}
        tool_calls = tuple(
            {"name": t["name"], "args": t["args"], "id": t.get("id"), "type": "tool_call"}
            for t in (message.tool_calls if isinstance(message, AIMessage) else [])
        )
        return Completion(
            index=index,
            text=message.text,
            finish_reason=meta.get("finish_reason"),
            completion_tokens=int(usage.get("output_tokens", 0)),
            logprobs=_logprobs(meta.get("logprobs")),
            tool_calls=tool_calls,
        )

    async def tokenize(self, text: str) -> list[int]:
        return list(text.encode())

    def trace_metadata(self) -> dict[str, Any]:
        """The model's own LangSmith parameters (provider and model name), so its requests are
        priced as when the model is called directly."""
        try:
            params = self.model._get_ls_params()
        except Exception:  # a model that cannot describe itself is still usable
            return {}
        return {k: v for k, v in params.items() if k in ("ls_provider", "ls_model_name") and v}

    @property
    def features(self) -> dict[str, bool]:
        """Which of the vLLM server's features this model offers."""
        fields = self._fields()
        return {
            "n": "n" in fields,
            "logprobs": "logprobs" in fields,
            "continuation": False,
            "raw_prompt": False,
            "tools": type(self.model).bind_tools is not BaseChatModel.bind_tools,
        }


def _logprobs(raw: Any) -> tuple[TokenLogprob, ...] | None:
    content = raw.get("content") if isinstance(raw, dict) else None
    if not content:
        return None
    out = []
    for t in content:
        value = float(t.get("logprob", -math.inf))
        top = tuple((x["token"], float(x["logprob"])) for x in t.get("top_logprobs") or ())
        out.append(TokenLogprob(token=str(t.get("token", "")), logprob=value, top=top))
    return tuple(out)

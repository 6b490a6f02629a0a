"""Internal scaling: turn a reasoning model's own thinking dial, where the server offers one.

Controls sent (only those you set):

- ``thinking_budget`` → vLLM's ``thinking_token_budget`` (needs a server started with a
  reasoning parser / ``--reasoning-config``; version-dependent);
- ``enable_thinking`` → ``chat_template_kwargs={"enable_thinking": ...}`` (Qwen3-style templates);
- ``reasoning_effort`` → ``reasoning_effort`` ("low" / "medium" / "high").

The thinking is read back from ``message.reasoning`` (a server with a reasoning parser) or from
the text between the thinking markers, and its tokens are counted with the server's tokenizer;
they are part of the completion tokens the budget already counts. ``n`` samples come from one
request, so it composes with selection (best-of-N over thinking runs).

When the server refuses a control (HTTP 400 naming it), ``fallback="budget_forcing"`` runs the
client-side budget-forcing loop with the same thinking cap instead, and says so in the decision;
``fallback="error"`` raises :class:`~tts_graph.errors.ConfigError` with the server's reason.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from tts_graph.backends.base import Backend, GenerationRequest, SamplingParams, metered
from tts_graph.candidate import Candidate, next_index
from tts_graph.errors import (
    BackendError,
    BudgetExhausted,
    ConfigError,
    check_choice,
    check_count,
)
from tts_graph.metering import spending
from tts_graph.nodes._budget import run_ledger
from tts_graph.nodes._node import Node, make_node
from tts_graph.nodes._record import decision
from tts_graph.nodes.forcing import ThinkingMarkers, make_budget_forcing_node
from tts_graph.prompts import PromptFn, question_prompt, run_tools
from tts_graph.state import StateKeys
from tts_graph.verifiers.answer import AnswerExtractor, extract_answer, resolve_extractor

__all__ = ["make_thinking_node", "split_thinking"]

ReasoningEffort = Literal["low", "medium", "high"]
Fallback = Literal["budget_forcing", "error"]
_CONTROL_WORDS = ("thinking_token_budget", "reasoning", "chat_template_kwargs", "enable_thinking")


def split_thinking(text: str, markers: ThinkingMarkers = ThinkingMarkers()) -> tuple[str, str]:
    """Split a reply into (thinking, answer) at the markers; no markers: no thinking.

    >>> split_thinking("<think>7+5 is 12</think>Answer: 12")
    ('7+5 is 12', 'Answer: 12')
    """
    if markers.end not in text:
        return "", text
    head, answer = text.rsplit(markers.end, 1)
    thinking = head.split(markers.start, 1)[-1]
    return thinking.strip(), answer.strip()


def make_thinking_node(
    backend: Backend,
    *,
    n: int = 1,
    thinking_budget: int | None = None,
    enable_thinking: bool | None = None,
    reasoning_effort: ReasoningEffort | None = None,
    fallback: Fallback = "budget_forcing",
    markers: ThinkingMarkers = ThinkingMarkers(),
    answer_max_tokens: int = 128,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str = extract_answer,
    keys: StateKeys = StateKeys(),
    name: str = "thinking",
) -> Node:
    """Make a node that samples ``n`` thinking runs with the server-side controls set.

    >>> node = make_thinking_node(backend, n=4, thinking_budget=1024, enable_thinking=True)  # doctest: +SKIP
    """
    check_count("n", n)
    if thinking_budget is not None and thinking_budget < 1:
        raise ConfigError(f"thinking_budget must be >= 1, got {thinking_budget}")
    check_choice("fallback", fallback, Fallback)
    if reasoning_effort is not None:
        check_choice("reasoning_effort", reasoning_effort, ReasoningEffort)
    max_tokens = (thinking_budget or 0) + answer_max_tokens
    params = dataclasses.replace(
        sampling or SamplingParams(temperature=0.7, max_tokens=max(max_tokens, 256)), seed=seed
    )
    extra: dict[str, Any] = {}
    if thinking_budget is not None:
        extra["thinking_token_budget"] = thinking_budget
        params = dataclasses.replace(params, max_tokens=max_tokens)
    if enable_thinking is not None:
        extra["chat_template_kwargs"] = {"enable_thinking": enable_thinking}
    if reasoning_effort is not None:
        extra["reasoning_effort"] = reasoning_effort
    build_prompt = prompt or question_prompt(key=keys.question, messages_key=keys.messages)
    read_answer = resolve_extractor(extract)
    model = metered(backend)
    # The fallback asks for the caller's prompt when there is one; otherwise for a prompt that
    # tells a model without native markers to use them.
    forcing = make_budget_forcing_node(
        backend, n=n, max_thinking_tokens=thinking_budget or 512, markers=markers,
        answer_max_tokens=answer_max_tokens, sampling=sampling, seed=seed, prompt=prompt,
        extract=extract, keys=keys, name=name,
    )  # fmt: skip
    refused: list[str] = []  # the server's reason, remembered after the first refusal

    async def think(state: Mapping[str, Any]) -> dict[str, Any]:
        if refused:
            return await _fall_back(state, refused[0])
        messages = build_prompt(state)
        with spending(run_ledger(state, keys, name)) as spent:
            try:
                gen = await model.generate(
                    GenerationRequest.chat(
                        messages, n=n, sampling=params, extra_body=extra, tools=run_tools()
                    )
                )
            except BudgetExhausted as exc:
                reason = spent.stopped(exc)
                record = decision(name, "thinking", sampled=0, skipped=n, reason=reason)
                return {keys.decisions: [record]}
            except BackendError as exc:
                if exc.status == 400 and any(w in str(exc) for w in _CONTROL_WORDS):
                    refused.append(str(exc))
                    return await _fall_back(state, str(exc))
                raise
            offset = next_index(state.get(keys.candidates))
            candidates, runs = [], []
            for c in gen.completions:
                if c.reasoning is not None:
                    thinking, answer_text, source = c.reasoning, c.text, "server"
                else:
                    thinking, answer_text = split_thinking(c.text, markers)
                    source = "markers" if thinking else "none"
                thinking_tokens = len(await model.tokenize(thinking)) if thinking else 0
                runs.append({"thinking_tokens": thinking_tokens, "thinking_from": source,
                             "completion_tokens": c.completion_tokens})  # fmt: skip
                candidates.append(
                    Candidate.from_completion(
                        c, index=offset + c.index, answer=read_answer(answer_text), source=name,
                        seed=params.seed,
                        metadata={"thinking": thinking, "thinking_tokens": thinking_tokens},
                    )
                )  # fmt: skip
            record = decision(
                name, "thinking", controls=extra, sampled=len(candidates),
                skipped=n - len(candidates), fallback=None, runs=runs,
                usage=spent.usage.to_dict(),
            )  # fmt: skip
        return {keys.candidates: candidates, keys.usage: spent.usage, keys.decisions: [record]}

    async def _fall_back(state: Mapping[str, Any], reason: str) -> dict[str, Any]:
        if fallback == "error":
            raise ConfigError(
                f"the server does not offer the thinking controls {sorted(extra)}: {reason}; "
                "start it with a reasoning parser, or use fallback='budget_forcing'"
            )
        # Announce the fallback before running it, so the stream shows cause before effect.
        note = decision(
            name, "thinking", controls=extra, fallback="budget_forcing", reason=reason,
            max_thinking_tokens=thinking_budget or 512,
        )  # fmt: skip
        update: dict[str, Any] = await forcing(state)
        update[keys.decisions] = [note, *update[keys.decisions]]
        return update

    return make_node(think, name)

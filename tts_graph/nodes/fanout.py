"""Parallel fan-out in one request: ``n`` candidates from one ``n``-sample request, so vLLM reads
the prompt once and shares its KV cache across the samples. (For one ``Send`` branch per
candidate, see :mod:`tts_graph.nodes.send`.)

The request spends through the run's ledger: when it does not fit it is cut (a lower
``max_tokens``, fewer samples) or refused, and the decision records what the budget changed.
When a cut request costs less than reserved, the node asks again for the samples still missing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from tts_graph.backends.base import Backend, GenerationRequest, Message, SamplingParams, metered
from tts_graph.candidate import Candidate, next_index
from tts_graph.errors import BudgetExhausted, check_count
from tts_graph.metering import spending
from tts_graph.nodes._budget import run_ledger
from tts_graph.nodes._node import Node, make_node, require_keys
from tts_graph.nodes._record import decision
from tts_graph.prompts import PromptFn, question_prompt, run_tools
from tts_graph.state import StateKeys
from tts_graph.verifiers.answer import AnswerExtractor, extract_answer, resolve_extractor

__all__ = ["estimate_prompt_tokens", "make_fanout_node"]


async def estimate_prompt_tokens(backend: Backend, messages: Sequence[Message]) -> int:
    """The prompt size of a chat request on ``messages``, as the backend counts it."""
    return await metered(backend).count_prompt_tokens(GenerationRequest.chat(messages))


def make_fanout_node(
    backend: Backend,
    *,
    n: int = 8,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str = extract_answer,
    keys: StateKeys = StateKeys(),
    name: str = "fanout",
) -> Node:
    """Make a node that adds ``n`` sampled candidates to ``state[keys.candidates]``.

    The request carries ``seed``; new candidates are indexed after the ones already in state.
    When the budget cut the request and money is left once it is settled (samples are usually
    shorter than ``max_tokens``), the node asks again for the missing samples, with seed
    ``seed + 1``, ``seed + 2``, ...

    >>> graph.add_node("fanout", make_fanout_node(backend, n=8))  # doctest: +SKIP
    """
    check_count("n", n)
    params = dataclasses.replace(sampling or SamplingParams(logprobs=True), seed=seed)
    build_prompt = prompt or question_prompt(key=keys.question, messages_key=keys.messages)
    read_answer = resolve_extractor(extract)
    model = metered(backend)

    async def fanout(state: Mapping[str, Any]) -> dict[str, Any]:
        require_keys(state, name, keys.candidates, keys.decisions, keys.usage)
        ledger = run_ledger(state, keys, name)
        messages = build_prompt(state)
        tools = run_tools()
        offset = next_index(state.get(keys.candidates))
        new: list[Candidate] = []
        reason: str | None = None
        requests = 0
        with spending(ledger) as spent:
            # Each request yields at least one sample, so this makes at most n requests.
            while len(new) < n:
                wave = dataclasses.replace(params, seed=seed + requests)
                request = GenerationRequest.chat(
                    messages, n=n - len(new), sampling=wave, tools=tools
                )
                try:
                    gen = await model.generate(request)
                except BudgetExhausted as exc:
                    reason = spent.stopped(exc)
                    break
                requests += 1
                new += [
                    Candidate.from_completion(
                        c, index=offset + len(new) + i, answer=read_answer(c.text), source=name,
                        seed=wave.seed,
                    )
                    for i, c in enumerate(gen.completions)
                ]  # fmt: skip
                if gen.budget is None:
                    break
            record = decision(
                name, "fanout", requested=n, sampled=len(new), skipped=n - len(new),
                reason=reason or ("budget" if len(new) < n else None), seed=seed,
                requests=requests, usage=spent.usage.to_dict(),
            )  # fmt: skip
        update: dict[str, Any] = {keys.decisions: [record]}
        if new:
            update[keys.candidates] = new
        if spent.usage.calls:
            update[keys.usage] = spent.usage
        return update

    return make_node(fanout, name)

"""Parallel fan-out: sample ``n`` candidates for the question in one ``n``-sample request, so
vLLM reads the prompt once and shares its KV cache across the samples.

The node asks the budget first and requests only as many samples as it can afford (assuming each
may use all of ``max_tokens``); what it skipped is recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from tts_graph.backends.base import Backend, GenerationRequest, Message, SamplingParams
from tts_graph.budget import Budget
from tts_graph.errors import ConfigError
from tts_graph.nodes._record import decision
from tts_graph.prompts import PromptFn, question_prompt
from tts_graph.state import Candidate, NodeFn, StateKeys
from tts_graph.verifiers.answer import extract_answer

__all__ = ["make_fanout_node"]

# Chat templates add a few tokens per message around the content we can tokenize.
_TEMPLATE_TOKENS_PER_MESSAGE = 8


async def estimate_prompt_tokens(backend: Backend, messages: list[Message]) -> int:
    """Prompt size for budget checks, from the server's tokenizer (plus template overhead)."""
    text = "\n".join(m["content"] for m in messages)
    return len(await backend.tokenize(text)) + _TEMPLATE_TOKENS_PER_MESSAGE * len(messages)


def make_fanout_node(
    backend: Backend,
    *,
    n: int = 8,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: Callable[[str], str | None] = extract_answer,
    keys: StateKeys = StateKeys(),
    name: str = "fanout",
) -> NodeFn:
    """Make a node that adds ``n`` sampled candidates to ``state[keys.candidates]``.

    The request carries ``seed``; new candidates are indexed after the ones already in state.

    >>> graph.add_node("fanout", make_fanout_node(backend, n=8))  # doctest: +SKIP
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    params = dataclasses.replace(sampling or SamplingParams(logprobs=True), seed=seed)
    build_prompt = prompt or question_prompt(key=keys.question)

    async def fanout(state: Mapping[str, Any]) -> dict[str, Any]:
        budget: Budget = state.get(keys.budget) or Budget()
        usage = state.get(keys.usage)
        messages = build_prompt(state)
        wanted = n
        if not budget.unlimited:
            prompt_tokens = await estimate_prompt_tokens(backend, messages)
            wanted = budget.affordable_samples(
                usage,
                wanted=n,
                prompt_tokens=prompt_tokens,
                max_tokens=params.max_tokens,
                model_params=backend.model_params,
            )
        if wanted == 0:
            budget.exhausted(f"{name} could sample any candidate")
            record = decision(name, "fanout", requested=n, sampled=0, skipped=n, reason="budget")
            return {keys.decisions: [record]}
        gen = await backend.generate(GenerationRequest.chat(messages, n=wanted, sampling=params))
        existing = state.get(keys.candidates) or []
        offset = max((c.index for c in existing), default=-1) + 1
        new = [
            Candidate(
                index=offset + c.index,
                text=c.text,
                answer=extract(c.text),
                source=name,
                seed=params.seed,
                completion_tokens=c.completion_tokens,
                finish_reason=c.finish_reason,
                mean_logprob=c.mean_logprob,
            )
            for c in gen.completions
        ]
        record = decision(
            name,
            "fanout",
            requested=n,
            sampled=len(new),
            skipped=n - len(new),
            reason="budget" if len(new) < n else None,
            seed=params.seed,
            usage=gen.usage.to_dict(),
        )
        return {keys.candidates: new, keys.usage: gen.usage, keys.decisions: [record]}

    fanout.__name__ = name
    return fanout

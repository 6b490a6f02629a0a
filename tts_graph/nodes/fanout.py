"""Parallel fan-out, in two modes.

- :func:`make_fanout_node` (the default): ``n`` candidates in one ``n``-sample request, so vLLM
  reads the prompt once and shares its KV cache across the samples.
- :func:`add_send_fanout`: one LangGraph ``Send`` branch per candidate, for heterogeneous
  branches (temperatures, system prompts) and per-candidate verification.

Both ask the budget first and request only as many samples as they can afford (assuming each may
use all of ``max_tokens``); what they skipped is recorded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from langgraph.graph import END, START, StateGraph
from langgraph.types import Send

from tts_graph.backends.base import Backend, GenerationRequest, Message, SamplingParams
from tts_graph.budget import Budget, Usage, estimate_flops
from tts_graph.errors import ConfigError
from tts_graph.nodes._record import decision
from tts_graph.nodes.verify import run_verifier
from tts_graph.prompts import PromptFn, question_prompt
from tts_graph.state import Candidate, NodeFn, StateKeys, as_node, next_index
from tts_graph.verifiers.answer import extract_answer
from tts_graph.verifiers.base import Problem, Verifier

__all__ = [
    "Branch",
    "add_send_fanout",
    "affordable",
    "estimate_prompt_tokens",
    "make_fanout_node",
]

# Chat templates add a few tokens per message around the content we can tokenize.
_TEMPLATE_TOKENS_PER_MESSAGE = 8


async def estimate_prompt_tokens(backend: Backend, messages: list[Message]) -> int:
    """Prompt size for budget checks, from the server's tokenizer (plus template overhead)."""
    text = "\n".join(m["content"] for m in messages)
    return len(await backend.tokenize(text)) + _TEMPLATE_TOKENS_PER_MESSAGE * len(messages)


async def affordable(
    backend: Backend,
    budget: Budget,
    usage: Usage | None,
    messages: list[Message],
    *,
    wanted: int,
    max_tokens: int,
) -> int:
    """How many of ``wanted`` samples of one ``n``-request on ``messages`` the budget affords
    (the prompt is tokenized only when the budget has limits)."""
    if budget.unlimited:
        return wanted
    return budget.affordable_samples(
        usage,
        wanted=wanted,
        prompt_tokens=await estimate_prompt_tokens(backend, messages),
        max_tokens=max_tokens,
        model_params=backend.model_params,
    )


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
        messages = build_prompt(state)
        wanted = await affordable(
            backend, budget, state.get(keys.usage), messages, wanted=n, max_tokens=params.max_tokens
        )
        if wanted == 0:
            budget.exhausted(f"{name} could sample any candidate")
            record = decision(name, "fanout", requested=n, sampled=0, skipped=n, reason="budget")
            return {keys.decisions: [record]}
        gen = await backend.generate(GenerationRequest.chat(messages, n=wanted, sampling=params))
        offset = next_index(state.get(keys.candidates))
        new = [
            Candidate.from_completion(
                c, index=offset + c.index, answer=extract(c.text), source=name, seed=params.seed
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


@dataclass(frozen=True)
class Branch:
    """Settings of one ``Send`` branch; unset fields keep the fan-out's own."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    system: str | None = None


def add_send_fanout(
    builder: StateGraph[Any],
    backend: Backend,
    *,
    n: int,
    branches: Sequence[Branch] = (),
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    verifier: Verifier | None = None,
    extract: Callable[[str], str | None] = extract_answer,
    keys: StateKeys = StateKeys(),
    source: str = START,
    target: str = END,
    name: str = "fanout",
) -> None:
    """Wire a per-candidate fan-out into ``builder``: ``source → {name} ⇉ {name}_branch × n → target``.

    Use it when candidates differ (temperatures, system prompts: ``branches`` are cycled over the
    ``n`` candidates) or when each should be verified on its own as soon as it exists. The plan
    node ``name`` checks the budget first and plans only the branches it can afford (recording
    the rest as skipped); each planned branch runs as its own LangGraph ``Send``, makes one
    request with seed ``seed + i`` and adds candidate ``i``; the candidates reducer keeps them
    sorted by index whatever order they finish in.

    >>> add_send_fanout(builder, backend, n=4, branches=[Branch(temperature=0.3), Branch(temperature=1.0)],
    ...                 source=START, target="select")  # doctest: +SKIP
    """
    if n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    branches = tuple(branches) or (Branch(),)
    base = sampling or SamplingParams(logprobs=True)
    build_prompt = prompt or question_prompt(key=keys.question)
    branch_node = f"{name}_branch"

    def branch_params(i: int) -> tuple[SamplingParams, str | None]:
        b = branches[i % len(branches)]
        params = dataclasses.replace(
            base,
            seed=seed + i,
            temperature=base.temperature if b.temperature is None else b.temperature,
            top_p=base.top_p if b.top_p is None else b.top_p,
            max_tokens=base.max_tokens if b.max_tokens is None else b.max_tokens,
        )
        return params, b.system

    async def plan(state: Mapping[str, Any]) -> dict[str, Any]:
        budget: Budget = state.get(keys.budget) or Budget()
        messages = build_prompt(state)
        offset = next_index(state.get(keys.candidates))
        planned: list[dict[str, Any]] = []
        spent = state.get(keys.usage) or None
        prompt_tokens = 0 if budget.unlimited else await estimate_prompt_tokens(backend, messages)
        reserved = spent or Usage()
        for i in range(n):
            params, _ = branch_params(i)
            cost = Usage(
                prompt_tokens=prompt_tokens,
                completion_tokens=params.max_tokens,
                calls=1,
                flops=estimate_flops(backend.model_params, prompt_tokens + params.max_tokens),
            )
            if not budget.unlimited and not budget.can_afford(
                reserved, calls=1, prompt_tokens=cost.prompt_tokens,
                completion_tokens=cost.completion_tokens, flops=cost.flops,
            ):  # fmt: skip
                break
            reserved = reserved + cost
            planned.append({"index": offset + i, "seed": params.seed, "branch": i})
        if not planned:
            budget.exhausted(f"{name} could plan any branch")
        record = decision(
            name, "fanout", mode="send", requested=n, sampled=len(planned),
            skipped=n - len(planned), reason="budget" if len(planned) < n else None,
            seeds=[p["seed"] for p in planned],
        )  # fmt: skip
        return {keys.branches: planned, keys.decisions: [record]}

    def send(state: Mapping[str, Any]) -> list[Send]:
        context = {k: v for k, v in state.items() if k not in (keys.candidates, keys.decisions)}
        return [
            Send(branch_node, {**context, "_branch": p}) for p in state.get(keys.branches) or []
        ]

    async def one_branch(payload: Mapping[str, Any]) -> dict[str, Any]:
        spec = payload["_branch"]
        params, system = branch_params(spec["branch"])
        messages = build_prompt(payload)
        if system is not None:
            messages = [{"role": "system", "content": system}] + [
                m for m in messages if m["role"] != "system"
            ]
        gen = await backend.generate(GenerationRequest.chat(messages, sampling=params))
        c = gen.completions[0]
        candidate = Candidate.from_completion(
            c, index=spec["index"], answer=extract(c.text), source=name, seed=params.seed,
            metadata={"branch": spec["branch"] % len(branches), "temperature": params.temperature},
        )  # fmt: skip
        usage = gen.usage
        if verifier is not None:
            problem = Problem(str(payload.get(keys.question, "")), payload.get(keys.reference))
            (verdict,) = await run_verifier(verifier, problem, [candidate.text])
            candidate = dataclasses.replace(candidate, verdict=verdict, score=verdict.score)
            if verdict.usage is not None:
                usage = usage + verdict.usage
        return {keys.candidates: [candidate], keys.usage: usage}

    builder.add_node(name, as_node(plan))
    builder.add_node(branch_node, as_node(one_branch))
    builder.add_edge(source, name)
    builder.add_conditional_edges(name, send, [branch_node])
    builder.add_edge(branch_node, target)

"""Parallel fan-out with one LangGraph ``Send`` branch per candidate: for heterogeneous branches
(temperatures, system prompts) and for verifying each candidate as soon as it exists. (For ``n``
candidates in one request, see :mod:`tts_graph.nodes.fanout`.)

The plan node asks the run's ledger how many branches it could afford and sends only those; each
branch's request spends through the same ledger. When no branch is affordable the plan goes
straight to the target, so the graph still finishes with the best answer so far and says why.
"""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from langgraph.graph import END, START, StateGraph
from langgraph.types import CachePolicy, Command, Send

from tts_graph.backends.base import Backend, GenerationRequest, SamplingParams, metered
from tts_graph.candidate import Candidate, next_index
from tts_graph.errors import BudgetExhausted, check_count
from tts_graph.metering import spending
from tts_graph.nodes._budget import run_ledger
from tts_graph.nodes._node import make_node, require_keys
from tts_graph.nodes._record import decision
from tts_graph.nodes.verify import run_verifier
from tts_graph.prompts import PromptFn, question_of, question_prompt, run_tools
from tts_graph.state import StateKeys
from tts_graph.verifiers.answer import AnswerExtractor, resolve_extractor
from tts_graph.verifiers.base import Problem, Verifier

__all__ = ["Branch", "BranchTask", "add_send_fanout"]


@dataclass(frozen=True)
class Branch:
    """Settings of one ``Send`` branch; unset fields keep the fan-out's own."""

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    system: str | None = None


class BranchTask(TypedDict):
    """The payload of one ``Send`` branch: the graph state it works on and which candidate it
    makes (its index, seed and branch settings). Plumbing, not a state key.

    A plain dict, not a class of its own: a checkpointer stores pending ``Send`` payloads, and
    LangGraph loads only the classes it can find in the graph's schemas (strict msgpack mode
    refuses any other; the default mode warns that it will).
    """

    state: Mapping[str, Any]
    index: int
    seed: int
    branch: int


def _branch_cache(cache: CachePolicy[Any]) -> CachePolicy[Any]:
    """The cache policy of the branch node: the graph's key of the state it works on, and which
    candidate it makes."""
    state_key = cache.key_func

    def key(task: BranchTask) -> bytes:
        return pickle.dumps((state_key(task["state"]), task["index"], task["seed"]), protocol=5)

    return dataclasses.replace(cache, key_func=key)


def add_send_fanout(
    builder: StateGraph[Any],
    backend: Backend,
    *,
    n: int = 8,
    branches: Sequence[Branch] = (),
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    verifier: Verifier | None = None,
    extract: AnswerExtractor | str | None = None,
    keys: StateKeys = StateKeys(),
    source: str = START,
    target: str = END,
    name: str = "fanout",
    node_options: Mapping[str, Any] | None = None,
) -> None:
    """Wire a per-candidate fan-out into ``builder``: ``source → {name} ⇉ {name}_branch × n → target``.

    Use it when candidates differ (temperatures, system prompts: ``branches`` are cycled over the
    ``n`` candidates) or when each should be verified on its own as soon as it exists. The plan
    node ``name`` asks the run's ledger how many branches it could afford and sends only those
    (recording the rest as skipped); each branch makes one request with seed ``seed + i``, charged
    to the same ledger, and adds candidate ``i``. When no branch is affordable the plan goes
    straight to ``target``, so the graph still finishes with the best answer so far and the
    decision says why. ``node_options`` go to ``add_node`` for the branch node (a
    ``retry_policy``, a ``cache_policy``: its payload carries the candidate's index and seed,
    so two candidates of the same prompt are two cache entries, not one).

    >>> add_send_fanout(builder, backend, n=4, branches=[Branch(temperature=0.3), Branch(temperature=1.0)],
    ...                 source=START, target="select")  # doctest: +SKIP
    """
    check_count("n", n)
    branches = tuple(branches) or (Branch(),)
    base = sampling or SamplingParams(logprobs=True)
    build_prompt = prompt or question_prompt(key=keys.question, messages_key=keys.messages)
    read_answer = resolve_extractor(extract, verifier)
    branch_node = f"{name}_branch"
    model = metered(backend)

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

    async def affordable(state: Mapping[str, Any]) -> tuple[int, str | None]:
        """How many branches the ledger could grant if all were reserved now, and the limit
        that says so (branches run in parallel, so each holds its worst case at once)."""
        ledger = run_ledger(state, keys, name)
        prompt_tokens = 0
        if ledger.counts_tokens:
            request = GenerationRequest.chat(build_prompt(state), sampling=base)
            prompt_tokens = await model.count_prompt_tokens(request)
        k, limit = ledger.affordable_requests(
            n, prompt_tokens=prompt_tokens, max_tokens=base.max_tokens,
            model_params=model.model_params,
        )  # fmt: skip
        if k < n and ledger.strict:
            raise BudgetExhausted(
                f"{name}: the budget affords {k} of {n} branches ({ledger.budget.describe()})",
                limit=limit or "budget",
            )
        return k, limit

    async def plan(state: Mapping[str, Any]) -> Command[str]:
        require_keys(state, name, keys.candidates, keys.decisions, keys.usage)
        k, limit = await affordable(state)
        offset = next_index(state.get(keys.candidates))
        context = {
            key: v for key, v in state.items() if key not in (keys.candidates, keys.decisions)
        }
        tasks = [
            BranchTask(state=context, index=offset + i, seed=branch_params(i)[0].seed or 0, branch=i)
            for i in range(k)
        ]  # fmt: skip
        reason = None if k == n else ("wall time" if limit == "wall time" else "budget")
        record = decision(
            name, "fanout", mode="send", requested=n, sampled=k, skipped=n - k, reason=reason,
            limit=limit, seeds=[t["seed"] for t in tasks],
        )  # fmt: skip
        goto: Any = [Send(branch_node, t) for t in tasks] if tasks else target
        return Command(update={keys.decisions: [record]}, goto=goto)

    async def one_branch(task: BranchTask) -> dict[str, Any]:
        state, index, branch = task["state"], task["index"], task["branch"]
        params, system = branch_params(branch)
        messages = build_prompt(state)
        if system is not None:
            messages = [{"role": "system", "content": system}] + [
                m for m in messages if m["role"] != "system"
            ]
        ledger = run_ledger(state, keys, name)
        candidate: Candidate | None = None
        update: dict[str, Any] = {}
        with spending(ledger) as spent:
            try:
                request = GenerationRequest.chat(messages, sampling=params, tools=run_tools())
                gen = await model.generate(request)
                c = gen.completions[0]
                candidate = Candidate.from_completion(
                    c, index=index, answer=read_answer(c.text), source=name, seed=params.seed,
                    metadata={"branch": branch % len(branches),
                              "temperature": params.temperature},
                )  # fmt: skip
                if verifier is not None:
                    question = question_of(state, keys.question, keys.messages)
                    problem = Problem(question, state.get(keys.reference))
                    (verdict,) = await run_verifier(verifier, problem, [candidate.text])
                    candidate = dataclasses.replace(candidate, verdict=verdict, score=verdict.score)
            except BudgetExhausted as exc:
                reason = spent.stopped(exc)
                update[keys.decisions] = [
                    decision(
                        name, "fanout_branch", index=index, sampled=int(candidate is not None),
                        verified=False, reason=reason,
                    )
                ]  # fmt: skip
        if candidate is not None:
            update[keys.candidates] = [candidate]
        if spent.usage.calls:
            update[keys.usage] = spent.usage
        return update

    builder.add_node(name, make_node(plan, name), destinations=(branch_node, target))
    options = dict(node_options or {})
    if options.get("cache_policy") is not None:
        options["cache_policy"] = _branch_cache(options["cache_policy"])
    builder.add_node(
        branch_node, make_node(one_branch, branch_node, read=lambda task: task), **options
    )
    builder.add_edge(source, name)
    builder.add_edge(branch_node, target)

"""Property: whatever graph of parallel spending nodes and whatever limits, no run exceeds a limit,
and every run ends with an answer or says there was no candidate."""

import asyncio
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph.graph import END, START, StateGraph

from tts_graph import Budget, TTSState
from tts_graph.backends.base import SamplingParams
from tts_graph.nodes import (
    add_send_fanout,
    make_budget_forcing_node,
    make_consistency_node,
    make_difficulty_node,
    make_fanout_node,
    make_select_node,
    make_self_refine_node,
    make_thinking_node,
    make_tournament_node,
    make_verify_node,
)
from tts_graph.testing import FakeBackend
from tts_graph.verifiers.judge import LLMJudge

PARAMS = 1_000  # the fake model's parameter count, so FLOPs limits can be counted

PRODUCERS = ["fanout", "send", "consistency", "forcing", "refine", "difficulty", "thinking"]
FINISHERS = ["select", "verify", "tournament"]


def fake_server(seed: int) -> FakeBackend:
    rng = random.Random(seed)

    async def reply(request, i):
        await asyncio.sleep(rng.random() / 500)
        last = request.messages[-1]["content"] if request.messages else ""
        if "Winner" in (request.messages[0]["content"] if request.messages else ""):
            return rng.choice(["Winner: A", "Winner: B", "no idea"])
        if "Score" in (request.messages[0]["content"] if request.messages else ""):
            return f"Score: {rng.randint(1, 10)}"
        filler = " ".join(["w"] * rng.randint(0, 40))
        if last.endswith("Final Answer:"):
            return str(rng.randint(1, 3))
        return f"{filler} Answer: {rng.randint(1, 3)}"

    return FakeBackend(reply, model_params=PARAMS)


def producer(kind: str, backend: FakeBackend, i: int, builder: StateGraph) -> str:
    """Add producer ``kind`` to ``builder``; returns the node the join waits for."""
    sampling = SamplingParams(max_tokens=48, logprobs=True)
    name = f"{kind}{i}"
    nodes = {
        "fanout": lambda: make_fanout_node(backend, n=4, sampling=sampling, seed=i, name=name),
        "consistency": lambda: make_consistency_node(
            backend, max_samples=8, sampling=sampling, seed=i, name=name
        ),
        "forcing": lambda: make_budget_forcing_node(
            backend, n=3, max_thinking_tokens=60, answer_max_tokens=8, seed=i, name=name
        ),
        "refine": lambda: make_self_refine_node(
            backend, rounds=2, sampling=sampling, finalize=False, name=name
        ),
        "difficulty": lambda: make_difficulty_node(backend, n=4, sampling=sampling, name=name),
        "thinking": lambda: make_thinking_node(backend, n=2, sampling=sampling, name=name),
    }
    if kind == "send":
        add_send_fanout(builder, backend, n=4, sampling=sampling, seed=i, target="join", name=name)
        return f"{name}_branch"
    builder.add_node(name, nodes[kind]())
    builder.add_edge(START, name)
    builder.add_edge(name, "join")
    return name


def build(kinds: list[str], finisher: str, seed: int):
    backend = fake_server(seed)
    judge = LLMJudge(fake_server(seed + 1))
    builder = StateGraph(TTSState)
    builder.add_node("join", lambda state: {}, defer=True)
    for i, kind in enumerate(kinds):
        producer(kind, backend, i, builder)
    builder.add_node("select", make_select_node())
    if finisher == "verify":
        builder.add_node("verify", make_verify_node(judge))
        builder.add_edge("join", "verify")
        builder.add_edge("verify", "select")
        builder.add_edge("select", END)
    elif finisher == "tournament":
        builder.add_node("tournament", make_tournament_node(judge, judgements=2))
        builder.add_edge("join", "tournament")
        builder.add_edge("tournament", END)
    else:
        builder.add_edge("join", "select")
        builder.add_edge("select", END)
    return builder.compile()


limits = st.fixed_dictionaries(
    {},
    optional={
        "max_total_tokens": st.integers(1, 1500),
        "max_completion_tokens": st.integers(1, 800),
        "max_calls": st.integers(1, 12),
        "max_flops": st.integers(1, 1500).map(lambda t: float(2 * PARAMS * t)),
        "min_sample_tokens": st.integers(1, 48),
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kinds=st.lists(st.sampled_from(PRODUCERS), min_size=1, max_size=4, unique=True),
    finisher=st.sampled_from(FINISHERS),
    budget=limits,
    seed=st.integers(0, 1000),
)
def test_no_limit_is_exceeded_and_every_run_answers_or_says_why(kinds, finisher, budget, seed):
    graph = build(kinds, finisher, seed)
    state = asyncio.run(graph.ainvoke({"question": "What is 1+2?", "budget": Budget(**budget)}))
    usage = state.get("usage")
    spent = state["ledger"].spent
    if usage is not None:
        assert (usage.calls, usage.total_tokens, usage.flops) == (
            spent.calls,
            spent.total_tokens,
            spent.flops,
        )
    checks = {
        "max_total_tokens": spent.total_tokens,
        "max_completion_tokens": spent.completion_tokens,
        "max_calls": spent.calls,
        "max_flops": spent.flops,
    }
    for limit, used in checks.items():
        if limit in budget:
            assert used <= budget[limit], (limit, used, budget)
    assert state["ledger"].reserved.calls == 0  # nothing left held
    final = state["decisions"][-1]
    if state.get("response") is None:
        assert final.get("reason") == "no candidates", final

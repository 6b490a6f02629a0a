"""The budget's promises inside real graphs: one accounting shared by parallel nodes, branches and
subgraphs; every limit enforced; candidates from parallel producers all kept."""

import asyncio
import random

import pytest
from langgraph.graph import END, START, StateGraph

from tts_graph import Budget, BudgetExhausted, ConfigError, TTSState, create_best_of_n_graph
from tts_graph.candidate import Candidate
from tts_graph.errors import BackendError
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


def graph(*nodes, parallel=False):
    """START → nodes (in a chain, or all in parallel) → select → END."""
    builder = StateGraph(TTSState)
    builder.add_node("select", make_select_node())
    previous = START
    for i, node in enumerate(nodes):
        builder.add_node(f"n{i}", node)
        builder.add_edge(START if parallel else previous, f"n{i}")
        if parallel:
            builder.add_edge(f"n{i}", "select")
        previous = f"n{i}"
    if not parallel:
        builder.add_edge(previous, "select")
    builder.add_edge("select", END)
    return builder.compile()


def jittery(text_of):
    """A fake server whose replies arrive in random order, so parallel work interleaves."""
    rng = random.Random(0)

    async def reply(request, i):
        await asyncio.sleep(rng.random() / 200)
        return text_of(request, i)

    return reply


def thinker(request, i):
    # Thinks for 30 words and never closes the thinking on its own.
    if request.messages[-1]["content"].endswith("Final Answer:"):
        return "12"
    return " ".join(["hmm"] * 30)


async def test_budget_forcing_runs_in_parallel_stay_within_the_completion_limit():
    backend = FakeBackend(jittery(thinker))
    node = make_budget_forcing_node(backend, n=4, max_thinking_tokens=100, answer_max_tokens=8)
    state = await graph(node).ainvoke({"question": "q", "budget": Budget(max_completion_tokens=60)})
    assert state["usage"].completion_tokens <= 60
    # The four runs wanted 4 x (100 + 8) tokens: the budget cut or refused some of them.
    assert state["decisions"][0]["budget"]


async def test_budget_forcing_runs_in_parallel_stay_within_the_call_limit():
    backend = FakeBackend(jittery(thinker))
    node = make_budget_forcing_node(backend, n=4, max_thinking_tokens=100, answer_max_tokens=8)
    state = await graph(node).ainvoke({"question": "q", "budget": Budget(max_calls=2)})
    assert len(backend.requests) == state["usage"].calls <= 2
    assert state["answer"] == "12"  # a held answer call: thinking never eats the last call


@pytest.mark.parametrize("producers", [2, 16])
async def test_parallel_producers_keep_every_candidate_with_a_unique_index(producers):
    backend = FakeBackend(jittery(lambda r, i: f"Answer: {r.sampling.seed}"))
    nodes = [make_fanout_node(backend, n=4, seed=100 * p, name=f"f{p}") for p in range(producers)]
    state = await graph(*nodes, parallel=True).ainvoke({"question": "q"})
    candidates = state["candidates"]
    assert len(candidates) == 4 * producers
    assert [c.index for c in candidates] == list(range(4 * producers))
    assert len({c.id for c in candidates}) == 4 * producers
    assert {c.answer for c in candidates} == {str(100 * p) for p in range(producers)}


@pytest.mark.parametrize("producers", [2, 16])
async def test_parallel_producers_share_one_budget(producers):
    backend = FakeBackend(jittery(lambda r, i: "Answer: 1"))
    nodes = [make_fanout_node(backend, n=4, name=f"f{p}") for p in range(producers)]
    budget = Budget(max_calls=producers // 2 + 1, max_completion_tokens=20 * producers)
    state = await graph(*nodes, parallel=True).ainvoke({"question": "q", "budget": budget})
    assert state["usage"].calls == len(backend.requests) <= budget.max_calls
    assert state["usage"].completion_tokens <= budget.max_completion_tokens
    assert state["ledger"].spent.calls == state["usage"].calls


async def test_a_subgraph_spends_from_its_parents_budget():
    backend = FakeBackend(lambda r, i: "Answer: 1")
    inner = StateGraph(TTSState)
    inner.add_node("fan", make_fanout_node(backend, n=2, name="inner"))
    inner.add_edge(START, "fan")
    builder = StateGraph(TTSState)
    builder.add_node("outer", make_fanout_node(backend, n=2, name="outer"))
    builder.add_node("sub", inner.compile())
    builder.add_edge(START, "outer")
    builder.add_edge(START, "sub")
    state = await builder.compile().ainvoke({"question": "q", "budget": Budget(max_calls=1)})
    assert len(backend.requests) == state["usage"].calls == 1


async def test_a_send_fan_out_that_affords_no_branch_still_reaches_its_target():
    backend = FakeBackend(lambda r, i: "Answer: 1")
    builder = StateGraph(TTSState)
    builder.add_node("select", make_select_node())
    add_send_fanout(builder, backend, n=4, target="select")
    builder.add_edge("select", END)
    earlier = Candidate(index=0, text="Answer: 7", answer="7")
    state = await builder.compile().ainvoke(
        {"question": "q", "candidates": [earlier], "budget": Budget(max_total_tokens=5)}
    )
    assert backend.requests == []
    plan, select = state["decisions"]
    assert (plan["sampled"], plan["reason"], plan["limit"]) == (0, "budget", "total tokens")
    assert select["node"] == "select"
    assert state["answer"] == "7"  # the best answer so far


async def test_the_wall_time_limit_cancels_requests_and_keeps_the_best_answer_so_far():
    async def reply(request, i):
        if request.sampling.seed > 1:  # every sample after the first two hangs
            await asyncio.sleep(30)
        return f"Answer: {12 + request.sampling.seed}"

    backend = FakeBackend(reply)
    node = make_consistency_node(backend, max_samples=16)
    loop = asyncio.get_running_loop()
    started = loop.time()
    state = await graph(node).ainvoke({"question": "q", "budget": Budget(max_wall_s=0.5)})
    assert loop.time() - started < 5
    summary = state["decisions"][-2]
    assert summary["reason"] == "wall time" and summary["drawn"] == 2
    assert state["answer"] in ("12", "13")
    assert any(note.get("cancelled") for d in state["decisions"] for note in d.get("budget", []))


async def test_best_of_n_under_a_tiny_wall_time_samples_nothing():
    async def slow(request, i):
        await asyncio.sleep(5)
        return "Answer: 1"

    graph_ = create_best_of_n_graph(FakeBackend(slow), n=8).compile()
    state = await graph_.ainvoke({"question": "q", "budget": Budget(max_wall_s=0.01)})
    fanout, select = state["decisions"]
    assert fanout["sampled"] == 0 and fanout["reason"] == "wall time"
    assert state["answer"] is None and select["reason"] == "no candidates"


async def test_a_flops_limit_needs_the_parameter_count():
    backend = FakeBackend(lambda r, i: "Answer: 1")  # no model_params
    graph_ = create_best_of_n_graph(backend, n=2).compile()
    with pytest.raises(ConfigError, match="parameter count"):
        await graph_.ainvoke({"question": "q", "budget": Budget(max_flops=1e9)})
    counted = FakeBackend(lambda r, i: "Answer: 1", model_params=1000)
    graph_ = create_best_of_n_graph(counted, n=2).compile()
    state = await graph_.ainvoke({"question": "q", "budget": Budget(max_flops=2 * 1000 * 60)})
    assert 0 < state["usage"].flops <= 2 * 1000 * 60


async def test_self_refine_counts_prompt_tokens_against_the_total():
    backend = FakeBackend(lambda r, i: "Answer: 5 " + "w " * 20)
    node = make_self_refine_node(backend, rounds=5)
    state = await graph(node).ainvoke({"question": "q", "budget": Budget(max_total_tokens=150)})
    assert state["usage"].total_tokens <= 150
    assert state["usage"].prompt_tokens > 50  # the follow-up turns re-read the whole conversation


def judge_reply(request, i):
    return "Score: 9" if "Score" in request.messages[0]["content"] else "Winner: A"


def strict_cases():
    fake = FakeBackend(lambda r, i: "Answer: 1 " + "w " * 20)
    judge = LLMJudge(FakeBackend(judge_reply))
    existing = [Candidate(index=i, text=f"Answer: {i}", answer=str(i)) for i in range(4)]
    return {
        "fanout": (make_fanout_node(fake, n=8), []),
        "consistency": (make_consistency_node(fake, max_samples=16), []),
        "forcing": (make_budget_forcing_node(fake, n=4, max_thinking_tokens=64), []),
        "thinking": (make_thinking_node(fake, n=8), []),
        "self_refine": (make_self_refine_node(fake, rounds=4), []),
        "difficulty": (make_difficulty_node(fake, n=8), []),
        "tournament": (make_tournament_node(judge, judgements=4), existing),
        "verify": (make_verify_node(judge), existing),
    }


@pytest.mark.parametrize("kind", sorted(strict_cases()))
async def test_strict_budgets_raise_from_every_node(kind):
    node, existing = strict_cases()[kind]
    budget = Budget(max_total_tokens=90, strict=True)
    with pytest.raises(BudgetExhausted):
        await graph(node).ainvoke({"question": "q", "candidates": existing, "budget": budget})
    # The same budget without strict finishes, within the limit.
    state = await graph(node).ainvoke(
        {"question": "q", "candidates": existing, "budget": Budget(max_total_tokens=90)}
    )
    assert state["usage"].total_tokens <= 90


async def test_a_backend_error_is_not_mistaken_for_the_budget():
    def down(request, i):
        raise BackendError("server down", retryable=False)

    with pytest.raises(BackendError):
        await graph(make_fanout_node(FakeBackend(down))).ainvoke({"question": "q"})


async def test_samples_use_a_small_budget_fully():
    backend = FakeBackend(lambda r, i: f"Answer: {12 if i % 3 else 13}")
    graph_ = create_best_of_n_graph(backend, n=8).compile()
    state = await graph_.ainvoke(
        {"question": "What is 7+5?", "budget": Budget(max_total_tokens=400)}
    )
    assert len(state["candidates"]) == 8 and state["answer"] == "12"
    assert state["decisions"][0]["budget"][0]["max_tokens"][1] < 256


async def test_a_budget_given_as_json_is_read_as_a_budget():
    backend = FakeBackend(lambda r, i: "Answer: 1")
    graph = create_best_of_n_graph(backend, n=4).compile()
    state = await graph.ainvoke({"question": "q", "budget": {"max_calls": 1, "strict": False}})
    assert state["usage"].calls == 1 and state["ledger"].budget.max_calls == 1
    with pytest.raises(ConfigError, match="max_calls"):
        await graph.ainvoke({"question": "q", "budget": {"max_calls": -1}})

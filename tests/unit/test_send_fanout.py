"""Per-candidate fan-out with LangGraph Send, with a fake backend."""

import asyncio

import pytest
from langgraph.graph import END, START, StateGraph

from tts_graph import Budget, BudgetExhausted, SamplingParams, TTSState
from tts_graph.nodes import Branch, add_send_fanout
from tts_graph.nodes.select import make_select_node
from tts_graph.testing import FakeBackend
from tts_graph.verifiers.registry import FunctionVerifier


def build(backend, **options):
    builder = StateGraph(TTSState)
    add_send_fanout(builder, backend, source=START, target="select", **options)
    builder.add_node("select", make_select_node())
    builder.add_edge("select", END)
    return builder.compile()


async def slow_in_reverse(request, i):
    # Later seeds finish first, so branches complete out of order.
    await asyncio.sleep(0.01 * (10 - request.sampling.seed))
    return f"Answer: {request.sampling.seed}"


async def test_one_request_per_candidate_with_seed_base_plus_i_sorted_by_index():
    backend = FakeBackend(slow_in_reverse)
    state = await build(backend, n=5, seed=3).ainvoke({"question": "q"})
    assert len(backend.requests) == 5
    assert all(r.n == 1 for r in backend.requests)
    assert sorted(r.sampling.seed for r in backend.requests) == [3, 4, 5, 6, 7]
    assert [c.index for c in state["candidates"]] == [0, 1, 2, 3, 4]
    assert [c.answer for c in state["candidates"]] == ["3", "4", "5", "6", "7"]
    assert [c.seed for c in state["candidates"]] == [3, 4, 5, 6, 7]
    assert state["usage"].calls == 5


async def test_heterogeneous_branches_cycle_over_candidates():
    backend = FakeBackend(lambda r, i: "Answer: 1")
    branches = [Branch(temperature=0.2, system="Be terse."), Branch(temperature=1.1, max_tokens=7)]
    state = await build(
        backend, n=4, branches=branches, sampling=SamplingParams(temperature=0.7)
    ).ainvoke({"question": "q"})
    by_seed = {r.sampling.seed: r for r in backend.requests}
    assert [by_seed[s].sampling.temperature for s in range(4)] == [0.2, 1.1, 0.2, 1.1]
    assert by_seed[1].sampling.max_tokens == 7
    assert by_seed[0].messages[0] == {"role": "system", "content": "Be terse."}
    assert sum(m["role"] == "system" for m in by_seed[0].messages) == 1
    assert [c.metadata["branch"] for c in state["candidates"]] == [0, 1, 0, 1]


async def test_plan_respects_the_budget_and_records_the_skipped():
    backend = FakeBackend(lambda r, i: "Answer: 1")
    graph = build(backend, n=6, sampling=SamplingParams(max_tokens=10))
    # "q" = 1 word + 8 template tokens per message (system + user): about 26 prompt tokens with the
    # default system prompt, +10 answer tokens per branch.
    state = await graph.ainvoke({"question": "q", "budget": Budget(max_total_tokens=80)})
    planned = state["decisions"][0]
    assert planned["mode"] == "send"
    assert 0 < planned["sampled"] < 6
    assert planned["skipped"] == 6 - planned["sampled"]
    assert len(backend.requests) == planned["sampled"]
    with pytest.raises(BudgetExhausted):
        await graph.ainvoke({"question": "q", "budget": Budget(max_total_tokens=5, strict=True)})


async def test_each_branch_verifies_its_own_candidate():
    backend = FakeBackend(lambda r, i: f"Answer: {r.sampling.seed}")
    verifier = FunctionVerifier(lambda p, c: c.endswith(str(p.reference)), name="ends_with")
    state = await build(backend, n=4, verifier=verifier).ainvoke({"question": "q", "reference": 2})
    assert [c.verdict.passed for c in state["candidates"]] == [False, False, True, False]
    assert [c.score for c in state["candidates"]] == [0.0, 0.0, 1.0, 0.0]


async def test_index_continues_after_existing_candidates():
    from tts_graph.candidate import Candidate

    backend = FakeBackend(lambda r, i: "Answer: 1")
    state = await build(backend, n=2).ainvoke(
        {"question": "q", "candidates": [Candidate(index=0, text="probe")]}
    )
    assert [c.index for c in state["candidates"]] == [0, 1, 2]

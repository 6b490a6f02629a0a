"""Every graph factory end to end on fakes; composition under one budget; LangGraph's policies."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.cache.memory import InMemoryCache
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.errors import NodeTimeoutError
from langgraph.graph import MessagesState
from langgraph.types import CachePolicy, RetryPolicy
from test_forcing import ScriptedThinker
from test_tournament import FakeJudge, prefers_larger

from tts_graph import Budget, CandidatesState, ConfigError
from tts_graph.errors import BackendError
from tts_graph.graphs import (
    VOTE,
    Policies,
    create_adaptive_graph,
    create_best_of_n_graph,
    create_budget_forcing_graph,
    create_self_consistency_graph,
    create_self_refine_graph,
    create_tournament_graph,
)
from tts_graph.nodes import DifficultyBins
from tts_graph.testing import FakeBackend
from tts_graph.verifiers import FunctionVerifier


def answers(*values: Any) -> FakeBackend:
    return FakeBackend(lambda request, i: f"Answer: {values[i % len(values)]}")


def by_seed(request: Any, i: int) -> str:
    """A sample's answer is its request seed plus its index: every distinct seed shows."""
    return f"Answer: {(request.sampling.seed or 0) + i}"


def kinds(state: dict[str, Any]) -> list[str]:
    return [d["kind"] for d in state["decisions"]]


class State(MessagesState, CandidatesState):
    pass


# -- every factory, end to end -----------------------------------------------------------------


async def test_self_consistency_stops_early_and_votes():
    backend = answers(12)
    graph = create_self_consistency_graph(backend, stop="beta", max_samples=16).compile()
    state = await graph.ainvoke({"question": "What is 7+5?"})
    assert state["answer"] == "12" and state["strategy"] == "self_consistency"
    assert len(state["candidates"]) < 16  # unanimous samples settle the vote early
    assert kinds(state)[-1] == "select"


async def test_self_refine_keeps_every_draft_and_answers_with_the_last():
    def model(request, i):
        last = request.messages[-1]["content"]
        if last.startswith("Check your answer"):
            return "It is wrong, 7+5 is not 13."
        if last.startswith("Rewrite your answer"):
            return "Answer: 12"
        return "Answer: 13"

    graph = create_self_refine_graph(FakeBackend(model), rounds=1).compile()
    state = await graph.ainvoke({"question": "What is 7+5?"})
    assert [c.answer for c in state["candidates"]] == ["13", "12"]
    assert state["answer"] == "12" and state["usage"].calls == 3
    assert state["strategy"] == "self_refine"


async def test_budget_forcing_thinks_and_votes():
    thinker = ScriptedThinker(chunk=10)
    graph = create_budget_forcing_graph(
        thinker.backend, n=2, min_thinking_tokens=15, max_thinking_tokens=40
    ).compile()
    state = await graph.ainvoke({"question": "What is 7+5?"})
    assert state["answer"] == "12" and state["strategy"] == "budget_forcing"
    assert all(c.metadata["forcing"]["thinking_tokens"] >= 15 for c in state["candidates"])


async def test_tournament_picks_by_the_judge_not_by_the_majority():
    judge = FakeJudge(prefers_larger)
    graph = create_tournament_graph(answers(3, 3, 9, 3), judge, n=4, judgements=1).compile()
    state = await graph.ainvoke({"question": "Largest?"})
    assert state["answer"] == "9" and state["strategy"] == "tournament"
    assert judge.calls  # the judge decided


async def test_a_factory_on_messages_state_appends_the_answer():
    graph = create_self_consistency_graph(answers(12), state_schema=State).compile()
    state = await graph.ainvoke({"messages": [HumanMessage("What is 7+5?")]})
    assert isinstance(state["messages"][-1], AIMessage)
    assert state["messages"][-1].content == "Answer: 12"


@pytest.mark.parametrize(
    "factory",
    [create_self_consistency_graph, create_self_refine_graph, create_budget_forcing_graph],
)
def test_factories_check_the_schema(factory):
    with pytest.raises(ConfigError, match="lacks the key"):
        factory(answers(1), state_schema=MessagesState)


# -- composition ---------------------------------------------------------------------------------


async def test_best_of_n_over_self_refine_runs_independent_copies_under_one_budget():
    def model(request, i):
        last = request.messages[-1]["content"]
        if last.startswith("Check your answer"):
            return "CORRECT"
        return by_seed(request, i)

    backend = FakeBackend(model)
    refine = create_self_refine_graph(backend, rounds=1)
    graph = create_best_of_n_graph(None, n=3, candidates=refine, select="majority").compile()
    state = await graph.ainvoke({"question": "q"})
    # Three copies with shifted seeds: three different drafts, not one answer three times.
    assert len({c.answer for c in state["candidates"]}) == 3
    # Each copy drafted and critiqued: 6 requests, each counted once in state.
    assert len(backend.requests) == 6 and state["usage"].calls == 6
    assert kinds(state).count("self_refine") == 3 and kinds(state).count("runs") == 1
    assert kinds(state)[-1] == "select"


async def test_a_tournament_over_budget_forced_candidates():
    thinker = ScriptedThinker(chunk=10)
    forcing = create_budget_forcing_graph(thinker.backend, n=3, max_thinking_tokens=20)
    judge = FakeJudge(lambda a, b: "A")
    graph = create_tournament_graph(None, judge, candidates=forcing, judgements=1).compile()
    state = await graph.ainvoke({"question": "What is 7+5?"})
    assert [c.source for c in state["candidates"]] == ["budget_forcing"] * 3
    assert kinds(state) == ["budget_forcing", "select", "tournament"]
    assert state["strategy"] == "tournament" and state["answer"] == "12"
    assert state["usage"].calls == len(thinker.backend.requests)  # usage counted once


async def test_one_budget_covers_the_whole_composition():
    backend = FakeBackend(by_seed)
    inner = create_best_of_n_graph(backend, n=2)
    graph = create_best_of_n_graph(None, n=5, candidates=inner).compile()
    state = await graph.ainvoke({"question": "q", "budget": Budget(max_calls=3)})
    assert len(backend.requests) == 3 and state["usage"].calls == 3
    assert state["answer"] is not None  # the best answer of what the budget allowed


# -- the adaptive graph --------------------------------------------------------------------------


def adaptive(backend: FakeBackend, **options: Any) -> Any:
    return create_adaptive_graph(backend, probe_n=4, seed=0, **options).compile()


async def test_an_easy_question_is_answered_by_the_probes_vote_with_no_more_requests():
    backend = answers(12)
    state = await adaptive(backend).ainvoke({"question": "What is 7+5?"})
    route = next(d for d in state["decisions"] if d["kind"] == "route")
    assert route["bin"] == "easy" and route["branch"] == VOTE
    assert len(backend.requests) == 1  # the probe only
    assert state["answer"] == "12" and state["difficulty"]["bin"] == "easy"


async def test_a_hard_question_goes_down_another_branch_and_reuses_the_probe():
    backend = FakeBackend(by_seed)  # four different answers: the probe disagrees with itself
    state = await adaptive(backend).ainvoke({"question": "A hard one"})
    route = next(d for d in state["decisions"] if d["kind"] == "route")
    assert route["bin"] == "hard" and route["strategy"] == "best_of_n"
    assert route["candidates_reused"] == 4
    assert len(state["candidates"]) == 4 + 16  # the probe's samples were not drawn again
    assert len(backend.requests) == 2


async def test_a_route_never_draws_the_probes_samples_again():
    # Every factory defaults to seed 0, as the probe does: a route built that way must still
    # sample anew, or its first samples are the probe's (the same seed gives the same text).
    backend = FakeBackend(by_seed)
    routes = {"easy": VOTE, "medium": VOTE, "hard": create_best_of_n_graph(backend, n=4)}
    state = await adaptive(backend, routes=routes).ainvoke({"question": "A hard one"})
    assert state["difficulty"]["bin"] == "hard"
    probe, route = backend.requests
    assert probe.sampling.seed == 0 and route.sampling.seed is not None
    drawn = [{r.sampling.seed + i for i in range(r.n)} for r in (probe, route)]
    assert not set.intersection(*drawn)
    texts = [c.text for c in state["candidates"]]
    assert len(texts) == 8 and len(set(texts)) == 8


async def test_routes_may_be_any_graph_and_must_match_the_bins():
    bins = DifficultyBins(thresholds=(0.5,), labels=("easy", "hard"))
    judge = FakeJudge(prefers_larger)
    backend = FakeBackend(by_seed)
    routes = {"easy": VOTE, "hard": create_tournament_graph(backend, judge, n=2, judgements=1)}
    state = await adaptive(backend, bins=bins, routes=routes).ainvoke({"question": "q"})
    assert state["strategy"] == "tournament"
    with pytest.raises(ConfigError, match=r"missing: \['hard'\]"):
        create_adaptive_graph(backend, bins=bins, routes={"easy": VOTE})


async def test_with_a_verifier_the_probe_is_checked_once_and_bins_by_its_pass_rate():
    # Three of four probe samples say 13, one says 12; only 12 passes. A vote would pick 13.
    # The verified probe scores 1 - 1/4 (easy under a 0.8 threshold) and answers with the
    # sample that passed; each sample is checked once.
    checked: list[str] = []

    def passes(problem: Any, text: str) -> bool:
        checked.append(text)
        return text.endswith("12")

    backend = answers(13, 12, 13, 13)
    bins = DifficultyBins(thresholds=(0.8,), labels=("easy", "hard"))
    hard = create_best_of_n_graph(backend, n=2, verifier=FunctionVerifier(passes), seed=50)
    graph = adaptive(
        backend, bins=bins, routes={"easy": VOTE, "hard": hard},
        verifier=FunctionVerifier(passes), estimator="verifier",
    )  # fmt: skip
    state = await graph.ainvoke({"question": "q"})
    assert state["difficulty"]["score"] == 0.75 and state["difficulty"]["bin"] == "easy"
    assert state["answer"] == "12" and len(backend.requests) == 1
    assert len(checked) == 4
    assert [c.verdict.passed for c in state["candidates"]] == [False, True, False, False]
    assert kinds(state)[:3] == ["verify", "difficulty", "route"]

    # When none passes, the hard route draws more and checks only its own samples.
    checked.clear()
    backend = answers(13)
    graph = adaptive(
        backend, bins=bins, verifier=FunctionVerifier(passes), estimator="verifier",
        routes={"easy": VOTE, "hard": create_best_of_n_graph(
            backend, n=2, verifier=FunctionVerifier(passes), seed=50)},
    )  # fmt: skip
    state = await graph.ainvoke({"question": "q"})
    assert state["difficulty"]["bin"] == "hard" and len(checked) == 4 + 2


def test_the_verifier_estimator_needs_a_verifier():
    with pytest.raises(ConfigError, match="give verifier= too"):
        create_adaptive_graph(answers(1), estimator="verifier")


# -- policies --------------------------------------------------------------------------------


async def test_a_retryable_backend_failure_reruns_the_node():
    failures = [BackendError("connection refused", retryable=True)]

    def model(request, i):
        if failures:
            raise failures.pop()
        return "Answer: 12"

    fast = Policies(
        retry=RetryPolicy(max_attempts=2, initial_interval=0.01, retry_on=lambda e: True)
    )
    graph = create_best_of_n_graph(FakeBackend(model), n=2, policies=fast).compile()
    assert (await graph.ainvoke({"question": "q"}))["answer"] == "12"


async def test_a_client_error_is_not_retried():
    calls = []

    def model(request, i):
        calls.append(i)
        raise BackendError("HTTP 400", retryable=False)

    graph = create_best_of_n_graph(FakeBackend(model), n=1).compile()
    with pytest.raises(BackendError):
        await graph.ainvoke({"question": "q"})
    assert len(calls) == 1


async def test_a_node_timeout_fails_the_node():
    async def slow(request, i):
        await asyncio.sleep(5)
        return "Answer: 1"

    graph = create_best_of_n_graph(
        FakeBackend(slow), n=1, policies=Policies(retry=None, timeout=0.05)
    ).compile()
    with pytest.raises(NodeTimeoutError):
        await graph.ainvoke({"question": "q"})


async def test_a_judge_that_crashes_degrades_to_a_vote():
    class Crashing:
        async def compare(self, question, a, b):
            raise RuntimeError("judge crashed")

    graph = create_tournament_graph(answers(3, 9, 3), Crashing(), n=3, judgements=1).compile()
    state = await graph.ainvoke({"question": "q"})
    assert state["answer"] == "3"
    fallback = next(d for d in state["decisions"] if d["kind"] == "fallback")
    assert fallback["node"] == "tournament" and "judge crashed" in fallback["error"]


async def test_a_cached_run_sends_no_request_again():
    backend = FakeBackend(by_seed)
    graph = create_best_of_n_graph(backend, n=3, policies=Policies(cache=CachePolicy())).compile(
        cache=InMemoryCache()
    )
    first = await graph.ainvoke({"question": "q"})
    again = await graph.ainvoke({"question": "q"})
    assert len(backend.requests) == 1
    assert [c.answer for c in again["candidates"]] == [c.answer for c in first["candidates"]]
    assert len({c.answer for c in first["candidates"]}) == 3  # three samples, not one


async def test_cached_per_candidate_branches_stay_distinct_samples():
    backend = FakeBackend(by_seed)
    graph = create_best_of_n_graph(
        backend, n=4, fanout="send", policies=Policies(cache=CachePolicy())
    ).compile(cache=InMemoryCache())
    first = await graph.ainvoke({"question": "q"})
    again = await graph.ainvoke({"question": "q"})
    # Same prompt for every branch, but each branch's key has its index and seed.
    assert len({c.answer for c in first["candidates"]}) == 4
    assert len(backend.requests) == 4  # the second run came from the cache
    assert sorted(c.answer for c in again["candidates"]) == sorted(
        c.answer for c in first["candidates"]
    )


# -- nesting and checkpoints -------------------------------------------------------------------


async def test_a_nested_graph_keeps_the_outer_ledger_and_a_new_thread_turn_starts_afresh():
    backend = FakeBackend(by_seed)
    inner = create_best_of_n_graph(backend, n=1)
    graph = create_best_of_n_graph(None, n=2, candidates=inner).compile(
        checkpointer=InMemorySaver()
    )
    config = {"configurable": {"thread_id": "t"}}
    first = await graph.ainvoke({"question": "q", "budget": Budget(max_calls=1)}, config)
    assert len(backend.requests) == 1 and first["usage"].calls == 1  # nested runs shared it
    second = await graph.ainvoke({"question": "q2", "budget": Budget(max_calls=2)}, config)
    assert second["usage"].calls == 2 and len(second["candidates"]) == 2


async def interrupted_and_resumed() -> tuple[list[int], list[str | None]]:
    """A per-candidate fan-out of 4 cancelled while candidates 2 and 3 are running, then
    resumed from its checkpoint: the seeds each request was sent with, and the answers."""
    started: list[int] = []
    release = asyncio.Event()
    all_started = asyncio.Event()

    async def model(request, i):
        seed = request.sampling.seed
        started.append(seed)
        if len(started) == 4:
            all_started.set()
        if seed >= 2:  # candidates 2 and 3 hang until the run is interrupted
            await release.wait()
        return f"Answer: {seed}"

    backend = FakeBackend(model)
    graph = create_best_of_n_graph(backend, n=4, fanout="send").compile(
        checkpointer=InMemorySaver()
    )
    config = {"configurable": {"thread_id": "resume"}}
    run = asyncio.ensure_future(graph.ainvoke({"question": "q"}, config))
    await all_started.wait()

    async def checkpointed() -> int:  # branches whose candidate the checkpoint holds
        snapshot = await graph.aget_state(config)
        return sum(t.name == "fanout_branch" and t.result is not None for t in snapshot.tasks)

    # The checkpointer has no event to wait on: poll until candidates 0 and 1 are in it.
    while True:
        if await checkpointed() >= 2:
            break
        await asyncio.sleep(0.01)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    release.set()
    state = await graph.ainvoke(None, config)  # resume
    assert state["answer"] is not None
    return sorted(started), sorted(c.answer for c in state["candidates"])


async def test_a_per_candidate_fanout_resumes_without_redoing_finished_candidates():
    started, answers = await interrupted_and_resumed()
    assert started == [0, 1, 2, 2, 3, 3]  # only the unfinished candidates ran again
    assert answers == ["0", "1", "2", "3"]


def test_it_resumes_under_langgraphs_strict_checkpoint_loading():
    # LANGGRAPH_STRICT_MSGPACK=true loads only classes found in the graph's schemas; the
    # pending Send payloads of the unfinished branches are in the checkpoint too.
    script = (
        "import asyncio; from test_graphs import interrupted_and_resumed; "
        "print(asyncio.run(interrupted_and_resumed()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=Path(__file__).parent, capture_output=True,
        text=True, timeout=120, env={**os.environ, "LANGGRAPH_STRICT_MSGPACK": "true"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "([0, 1, 2, 2, 3, 3], ['0', '1', '2', '3'])"
    assert "Blocked deserialization" not in done.stderr

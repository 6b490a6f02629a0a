"""Beam search and DVTS over reasoning steps, with a scripted fake model and a fake PRM.

The fake model writes steps such as ``"step 0 q=0.9"``; the fake PRM scores each step by its
``q=`` value (an answer step by the step before it), so every test knows which partial
solutions are the better ones.
"""

import dataclasses
import json
import re

import httpx
import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.graph import MessagesState

from tts_graph import Budget, BudgetExhausted, CandidatesState, ConfigError, Usage
from tts_graph.backends.base import Completion, SamplingParams
from tts_graph.errors import BackendError
from tts_graph.graphs.search import create_beam_search_graph, create_dvts_graph
from tts_graph.nodes.search import make_step_search_node
from tts_graph.nodes.select import make_select_node
from tts_graph.testing import FakeBackend
from tts_graph.verifiers.base import Verdict
from tts_graph.verifiers.reward import ProcessRewardVerifier

SEP = "\n\n"
QUESTION = {"question": "What is 7+5?"}


def prefix_of(request):
    """The partial solution a request continues ("" for the first step)."""
    return request.messages[-1]["content"] if request.continue_final_message else ""


def fit(request, completion):
    """Cut a scripted sample to the request's max_tokens, as a server would."""
    cap = request.sampling.max_tokens
    if completion.completion_tokens <= cap:
        return completion
    words = completion.text.split()[:cap]
    return Completion(
        index=completion.index, text=" ".join(words), finish_reason="length", completion_tokens=cap
    )


def step(request, i, text, tokens=3):
    return fit(
        request,
        Completion(
            index=i,
            text=text + SEP,
            finish_reason="stop",
            stop_reason=SEP,
            completion_tokens=tokens,
        ),
    )


def end(request, i, text, tokens=2):
    return fit(
        request, Completion(index=i, text=text, finish_reason="stop", completion_tokens=tokens)
    )


def first_q(text):
    return re.search(r"q=(\d+(?:\.\d+)?)", text).group(1)


def scripted(qualities, answer_depth):
    """Sample ``i`` at depth ``d`` is the step ``q=qualities[d][i]``; at ``answer_depth`` the
    model answers with the first step's quality and ends its turn."""

    def fn(request, i):
        prefix = prefix_of(request)
        depth = prefix.count(SEP)
        if depth >= answer_depth:
            return end(request, i, f"Answer: {first_q(prefix)}")
        qs = qualities[depth]
        return step(request, i, f"step {depth} q={qs[i % len(qs)]}")

    return fn


class FakePRM:
    """Scores each step by its ``q=`` value (a step without one: the step before it); the
    verdict's score is the last step's. ``uses_model``: each verdict reports one call."""

    name = "fake_prm"

    def __init__(self, uses_model=False):
        self.uses_model = uses_model
        self.seen: list[tuple[str, str]] = []

    async def verify(self, problem, candidates):
        verdicts = []
        for text in candidates:
            self.seen.append((problem.question, text))
            scores: list[float] = []
            for s in (s for s in text.split(SEP) if s.strip()):
                m = re.search(r"q=(\d+(?:\.\d+)?)", s)
                scores.append(float(m.group(1)) if m else (scores[-1] if scores else 0.5))
            usage = Usage(prompt_tokens=len(text.split()), calls=1) if self.uses_model else None
            verdicts.append(
                Verdict(
                    passed=None, score=scores[-1], reason="", step_scores=tuple(scores), usage=usage
                )
            )
        return verdicts


def step_records(out):
    return [d for d in out["decisions"] if d["kind"] == "search_step"]


def final_record(out):
    return next(d for d in out["decisions"] if d["kind"] == "search")


# -- beam search ------------------------------------------------------------------------------


async def test_beam_search_continues_only_the_best_scored_partial_solutions():
    backend = FakeBackend(scripted([[0.1, 0.9, 0.5, 0.7], [0.3, 0.8]], answer_depth=2))
    node = make_step_search_node(backend, FakePRM(), n=4, width=2, aggregate="min")
    out = await node(QUESTION)
    first, *rest = backend.requests
    assert (first.n, first.continue_final_message) == (4, False)
    assert SEP in first.sampling.stop and first.sampling.include_stop_str_in_output
    step1 = rest[:2]
    # The two best of four (0.9 and 0.7) survive, each continued width=2 times in one request.
    assert sorted(prefix_of(r) for r in step1) == ["step 0 q=0.7" + SEP, "step 0 q=0.9" + SEP]
    assert all(r.n == 2 and r.continue_final_message for r in step1)
    record = step_records(out)[0]
    assert [b["score"] for b in record["kept"]] == [0.9, 0.7]
    assert sorted(b["score"] for b in record["pruned"]) == [0.1, 0.5]
    # Step 2 keeps min-scores 0.8 (from 0.9) and 0.7 (0.7, 0.8): lineages matter with "min".
    second = step_records(out)[1]
    assert [b["score"] for b in second["kept"]] == [0.8, 0.7]
    assert sorted(prefix_of(r) for r in rest[2:]) == sorted(
        [
            "step 0 q=0.9" + SEP + "step 1 q=0.8" + SEP,
            "step 0 q=0.7" + SEP + "step 1 q=0.8" + SEP,
        ]
    )
    assert len(out["candidates"]) == 4
    assert all(c.metadata["search"]["finished"] for c in out["candidates"])
    assert out["answer"] == "0.9"  # the finished beam with the highest PRM score
    best = max(out["candidates"], key=lambda c: c.score)
    assert out["response"] == best.text and best.score == pytest.approx(0.8)
    assert best.metadata["search"]["step_scores"] == [0.9, 0.8, 0.8]
    assert final_record(out)["reason"] == "finished"


async def test_finished_beams_are_kept_and_each_step_still_draws_n_continuations():
    def fn(request, i):
        prefix = prefix_of(request)
        if not prefix and i == 0:
            return end(request, i, "q=0.2. Answer: 5")  # finishes at once, with a low score
        return scripted([[0.0, 0.9, 0.6, 0.4], [0.5, 0.7]], answer_depth=2)(request, i)

    backend = FakeBackend(fn)
    out = await make_step_search_node(backend, FakePRM(), n=4, width=2)(QUESTION)
    first = step_records(out)[0]
    assert [b["score"] for b in first["finished"]] == [0.2]
    assert [b["score"] for b in first["kept"]] == [0.9, 0.6]  # the top 2 of the 3 open beams
    assert [r.n for r in backend.requests[1:3]] == [2, 2]
    texts = [c.text for c in out["candidates"]]
    assert "q=0.2. Answer: 5" in texts  # the early finisher is a final candidate
    assert len(texts) == 4  # search-and-learn stops once n beams have finished
    assert final_record(out)["finished"] == 4


async def test_a_lone_survivor_gets_all_n_continuations():
    def fn(request, i):
        if not prefix_of(request) and i > 0:
            return end(request, i, f"q=0.1. Answer: {i}")
        return scripted([[0.6], [0.7]], answer_depth=1)(request, i)

    backend = FakeBackend(fn)
    out = await make_step_search_node(backend, FakePRM(), n=4, width=2)(QUESTION)
    assert [r.n for r in backend.requests] == [4, 4]
    assert out["answer"] == "0.6"


async def test_an_answer_marked_step_finishes_its_beam():
    backend = FakeBackend(lambda request, i: step(request, i, f"q=0.{i + 1}. Answer: {i + 10}"))
    out = await make_step_search_node(backend, FakePRM(), n=2, width=1, max_steps=5)(QUESTION)
    assert len(backend.requests) == 1
    assert {c.metadata["search"]["status"] for c in out["candidates"]} == {"answer"}
    assert out["answer"] == "11"
    keep_going = FakeBackend(lambda request, i: step(request, i, f"q=0.5. Answer: {i}"))
    node = make_step_search_node(
        keep_going, FakePRM(), n=2, width=1, max_steps=3, stop_at_answer=False
    )
    await node(QUESTION)
    assert len(keep_going.requests) == 1 + 2 + 2  # one request, then one per kept beam


async def test_the_last_step_runs_to_the_end_and_seeds_never_repeat():
    backend = FakeBackend(scripted([[0.1, 0.2, 0.3, 0.4]] * 5, answer_depth=9))
    out = await make_step_search_node(backend, FakePRM(), n=4, width=2, max_steps=3, seed=7)(
        QUESTION
    )
    assert [SEP in r.sampling.stop for r in backend.requests] == [True, True, True, False, False]
    seeds = [r.sampling.seed for r in backend.requests]
    assert len(set(seeds)) == len(seeds)
    assert seeds[0] == 7 and sorted(seeds[1:3]) == [7 + 4, 7 + 5]
    assert final_record(out)["reason"] == "max_steps"
    assert final_record(out)["steps"] == 3


async def test_a_step_cut_at_step_max_tokens_finishes_the_beam():
    backend = FakeBackend(lambda request, i: step(request, i, "a b c d e q=0.5", tokens=9))
    out = await make_step_search_node(backend, FakePRM(), n=2, width=1, step_max_tokens=4)(QUESTION)
    assert backend.requests[0].sampling.max_tokens == 4
    assert {c.metadata["search"]["status"] for c in out["candidates"]} == {"length"}
    assert len(backend.requests) == 1


# -- DVTS -----------------------------------------------------------------------------------


def by_subtree(qualities, answer_depth):
    """Like :func:`scripted`, but the qualities depend on the subtree (read from the seed:
    step t of subtree j is seeded ``t·n + j``, here n=4)."""

    def fn(request, i):
        prefix = prefix_of(request)
        depth = prefix.count(SEP)
        tree = request.sampling.seed % 4
        if depth >= answer_depth:
            return end(request, i, f"Answer: {first_q(prefix)}")
        return step(request, i, f"tree {tree} step {depth} q={qualities[tree][depth][i]}")

    return fn


async def test_dvts_subtrees_stay_independent_and_each_is_greedy():
    # Subtree 1's samples beat all of subtree 0's: a global beam would take both from tree 1.
    qualities = {0: [[0.1, 0.2], [0.3, 0.15]], 1: [[0.8, 0.9], [0.6, 0.95]]}
    backend = FakeBackend(by_subtree(qualities, answer_depth=2))
    out = await make_step_search_node(backend, FakePRM(), mode="dvts", n=4, width=2)(QUESTION)
    step0, step1 = backend.requests[:2], backend.requests[2:4]
    assert all((r.n, r.continue_final_message) == (2, False) for r in step0)
    assert sorted(prefix_of(r) for r in step1) == [
        "tree 0 step 0 q=0.2" + SEP,
        "tree 1 step 0 q=0.9" + SEP,
    ]
    step2 = sorted(prefix_of(r) for r in backend.requests[4:6])
    assert step2 == [
        "tree 0 step 0 q=0.2" + SEP + "tree 0 step 1 q=0.3" + SEP,
        "tree 1 step 0 q=0.9" + SEP + "tree 1 step 1 q=0.95" + SEP,
    ]
    records = step_records(out)
    assert sorted((b["subtree"], b["score"]) for b in records[0]["kept"]) == [(0, 0.2), (1, 0.9)]
    assert sorted((b["subtree"], b["score"]) for b in records[0]["pruned"]) == [(0, 0.1), (1, 0.8)]
    # n final candidates: each subtree's last expansion, its chosen beam first.
    cands = out["candidates"]
    assert [c.metadata["search"]["subtree"] for c in cands] == [0, 0, 1, 1]
    assert all(c.text.startswith(f"tree {c.metadata['search']['subtree']} ") for c in cands)
    assert out["answer"] == "0.9"
    assert final_record(out)["reason"] == "finished"


async def test_a_finished_subtree_closes_while_the_others_go_on():
    def fn(request, i):
        prefix = prefix_of(request)
        tree = request.sampling.seed % 4
        depth = prefix.count(SEP)
        if tree == 0 and depth == 1:
            return end(request, i, f"q=0.{i + 1}. Answer: {i}")
        if depth == 3:
            return end(request, i, "Answer: 12")
        return step(request, i, f"tree {tree} q=0.{i + 4}")

    backend = FakeBackend(fn)
    out = await make_step_search_node(backend, FakePRM(), mode="dvts", n=4, width=2)(QUESTION)
    per_step = [r["requests"] for r in step_records(out)]
    assert per_step == [2, 2, 1, 1]
    assert step_records(out)[1]["open_subtrees"] == [1]
    assert len(out["candidates"]) == 4


# -- failures and budget ---------------------------------------------------------------------------------


async def test_a_backend_failure_raises_at_once_and_stops_a_search_under_way():
    def failing_at(depth):
        def fn(request, i):
            if prefix_of(request).count(SEP) == depth:
                raise BackendError("the server is gone", retryable=False)
            return scripted([[0.2, 0.8]] * 5, answer_depth=5)(request, i)

        return fn

    with pytest.raises(BackendError, match="gone"):
        await make_step_search_node(FakeBackend(failing_at(0)), FakePRM(), n=2, width=1)(QUESTION)
    out = await make_step_search_node(FakeBackend(failing_at(2)), FakePRM(), n=2, width=1)(QUESTION)
    assert final_record(out)["reason"] == "backend_error"
    assert [c.metadata["search"]["steps"] for c in out["candidates"]] == [2, 2]
    assert out["response"] == "step 0 q=0.8" + SEP + "step 1 q=0.2"  # the best beam so far


async def test_running_out_of_calls_stops_with_the_best_beam_so_far():
    backend = FakeBackend(scripted([[0.1, 0.9, 0.5, 0.7], [0.3, 0.8]] * 3, answer_depth=5))
    prm = FakePRM(uses_model=True)
    node = make_step_search_node(backend, prm, n=4, width=2)
    # Step 1: one request and four PRM calls; step 2: two requests, then one PRM call is left.
    out = await node({**QUESTION, "budget": Budget(max_calls=8)})
    assert out["usage"].calls == 8
    record = final_record(out)
    assert record["reason"] == "budget"
    assert record["finished"] == 0
    assert out["response"] is not None
    assert all(c.metadata["search"]["finished"] is False for c in out["candidates"])
    assert {c.finish_reason for c in out["candidates"]} == {"unfinished"}
    refused = [n for d in out["decisions"] for n in d.get("budget", []) if "refused" in n]
    assert refused
    chosen = next(c for c in out["candidates"] if c.text == out["response"])
    assert chosen.score == max(c.score for c in out["candidates"])


async def test_token_budget_is_never_exceeded():
    backend = FakeBackend(scripted([[0.1, 0.9, 0.5, 0.7]] * 9, answer_depth=9))
    budget = Budget(max_completion_tokens=20)
    out = await make_step_search_node(backend, FakePRM(), n=4, width=2, step_max_tokens=3)(
        {**QUESTION, "budget": budget}
    )
    assert out["usage"].completion_tokens <= 20
    assert final_record(out)["reason"] == "budget"
    assert out["candidates"]


async def test_strict_budget_raises():
    backend = FakeBackend(scripted([[0.5]] * 9, answer_depth=9))
    node = make_step_search_node(backend, FakePRM(uses_model=True), n=2, width=1)
    with pytest.raises(BudgetExhausted):
        await node({**QUESTION, "budget": Budget(max_calls=2, strict=True)})


async def test_nothing_scored_gives_no_answer_and_says_why():
    backend = FakeBackend(scripted([[0.5]], answer_depth=1))
    node = make_step_search_node(backend, FakePRM(uses_model=True), n=2, width=1)
    # The one call the budget allows samples the first step; the PRM gets none.
    out = await node({**QUESTION, "budget": Budget(max_calls=1)})
    assert out["answer"] is None and "candidates" not in out
    assert final_record(out)["reason"] == "budget"
    assert step_records(out)[0]["unscored"] == 2
    assert len(backend.requests) == 1


# -- state shapes, graphs, the real PRM client ---------------------------------------------


class ChatSearchState(MessagesState, CandidatesState):
    pass


async def test_beam_search_graph_answers_in_a_conversation():
    backend = FakeBackend(scripted([[0.1, 0.9], [0.4, 0.3]], answer_depth=2))
    prm = FakePRM()
    graph = create_beam_search_graph(
        backend, prm, n=2, width=1, state_schema=ChatSearchState
    ).compile()
    conversation = [SystemMessage("You are terse."), HumanMessage("What is 7+5?")]
    state = await graph.ainvoke({"messages": conversation})
    reply = state["messages"][-1]
    assert isinstance(reply, AIMessage)
    assert reply.text == state["response"] and state["answer"] == "0.9"
    assert reply.response_metadata["tts_graph"]["answer"] == "0.9"
    kinds = [d["kind"] for d in reply.response_metadata["tts_graph"]["decisions"]]
    assert kinds == ["search_step"] * 3 + ["search"]
    assert reply.usage_metadata["output_tokens"] == state["usage"].completion_tokens
    later = backend.requests[1]
    assert [m["role"] for m in later.messages] == ["system", "user", "assistant"]
    assert later.messages[1]["content"] == "What is 7+5?"
    assert {q for q, _ in prm.seen} == {"What is 7+5?"}
    assert state["strategy"] == "beam_search"


async def test_dvts_graph_streams_its_decisions():
    backend = FakeBackend(by_subtree({0: [[0.1, 0.2]], 1: [[0.3, 0.4]]}, answer_depth=1))
    graph = create_dvts_graph(backend, FakePRM(), n=4, width=2, max_steps=4).compile()
    events = [e["tts_graph"] async for e in graph.astream(QUESTION, stream_mode="custom")]
    assert [e["kind"] for e in events] == ["search_step", "search_step", "search"]
    state = await graph.ainvoke(QUESTION)
    assert state["strategy"] == "dvts"
    assert state["answer"] == "0.4"
    assert len(state["candidates"]) == 4


async def test_select_none_leaves_the_choice_to_a_select_node():
    backend = FakeBackend(scripted([[0.2, 0.8]], answer_depth=1))
    node = make_step_search_node(backend, FakePRM(), n=2, width=1, select=None)
    out = await node(QUESTION)
    assert "answer" not in out
    chosen = await make_select_node(select="best_score")(
        {**QUESTION, "candidates": out["candidates"]}
    )
    assert chosen["answer"] == "0.8"


def test_invalid_options_fail_at_build_time():
    backend = FakeBackend(lambda request, i: "x")
    with pytest.raises(ConfigError, match="multiple of width"):
        make_step_search_node(backend, FakePRM(), n=6, width=4)
    with pytest.raises(ConfigError, match="beam, dvts"):
        make_step_search_node(backend, FakePRM(), mode="mcts")
    with pytest.raises(ConfigError, match="same separator"):
        make_step_search_node(
            backend, ProcessRewardVerifier("http://127.0.0.1:9/v1", step_separator="\n")
        )
    with pytest.raises(ConfigError, match="min_tokens"):
        make_step_search_node(
            backend, FakePRM(), sampling=SamplingParams(min_tokens=8), step_max_tokens=4
        )
    with pytest.raises(ConfigError, match="lacks the key"):
        create_dvts_graph(backend, FakePRM(), state_schema=MessagesState)


async def test_the_real_prm_client_scores_partial_solutions_step_by_step():
    bodies = []

    def pooling(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        bodies.append((request.url.path, body))
        steps = body["messages"][-1]["content"].split("<extra_0>")[:-1]
        rows = [[1 - float(first_q(s)), float(first_q(s))] for s in steps]
        usage = {"prompt_tokens": 7, "total_tokens": 7}
        return httpx.Response(200, json={"data": [{"index": 0, "data": rows}], "usage": usage})

    client = httpx.AsyncClient(transport=httpx.MockTransport(pooling))
    prm = ProcessRewardVerifier("http://prm.test/v1", http_client=client, aggregate="min")
    backend = FakeBackend(scripted([[0.1, 0.9, 0.5, 0.7], [0.3, 0.8]], answer_depth=2))
    node = make_step_search_node(
        backend, prm, n=4, width=2, max_steps=2, stop_at_answer=False, aggregate="min"
    )
    out = await node(QUESTION)
    await client.aclose()
    assert {path for path, _ in bodies} == {"/pooling"}
    # Step 1 scores four one-step partial solutions; step 2 four two-step ones.
    contents = [b["messages"][-1]["content"] for _, b in bodies]
    assert sorted(c.count("<extra_0>") for c in contents) == [1] * 4 + [2] * 4
    assert "step 0 q=0.9<extra_0>step 1 q=0.8<extra_0>" in contents
    assert out["usage"].calls == len(backend.requests) + 8  # every PRM call is charged
    assert out["usage"].prompt_tokens >= 8 * 7
    assert out["candidates"][0].verdict.step_scores == pytest.approx((0.9, 0.8))


async def test_candidates_follow_existing_ones_and_keep_their_tokens():
    backend = FakeBackend(scripted([[0.2, 0.8], [0.5]], answer_depth=2))
    existing = dataclasses.replace(
        (await make_step_search_node(backend, FakePRM(), n=1, width=1)(QUESTION))["candidates"][0],
        index=4,
    )
    out = await make_step_search_node(backend, FakePRM(), n=2, width=1)(
        {**QUESTION, "candidates": [existing]}
    )
    assert [c.index for c in out["candidates"]] == [5, 6]
    assert all(c.completion_tokens == 3 + 3 + 2 for c in out["candidates"])

"""Fan-out, selection and the best-of-N graph with the function-driven fake backend."""

import dataclasses

import pytest

from tts_graph import Budget, BudgetExhausted, ConfigError, create_best_of_n_graph
from tts_graph.backends.base import SamplingParams
from tts_graph.candidate import vote_key
from tts_graph.nodes.fanout import make_fanout_node
from tts_graph.nodes.select import majority_vote, make_select_node
from tts_graph.state import Candidate, StateKeys, merge_candidates
from tts_graph.testing import FakeBackend
from tts_graph.verifiers.code import CodeTests, CodeVerifier


def answers(*values):
    return FakeBackend(lambda request, i: f"I think so. Answer: {values[i % len(values)]}")


def test_merge_candidates_replaces_by_id_keeps_the_index_and_sorts():
    c = Candidate(index=2, text="c")
    a = [c, Candidate(index=0, text="a")]
    updated = dataclasses.replace(c, text="C", index=7)  # an update of candidate c
    merged = merge_candidates(a, [Candidate(index=1, text="b"), updated])
    assert [(m.index, m.text) for m in merged] == [(0, "a"), (1, "b"), (2, "C")]


def test_merge_candidates_renumbers_new_candidates_whose_index_is_taken():
    first = [Candidate(index=i, text=f"x{i}") for i in range(3)]
    second = [Candidate(index=i, text=f"y{i}") for i in range(3)]  # same snapshot, same indices
    merged = merge_candidates(merge_candidates(None, first), second)
    assert [m.text for m in merged] == ["x0", "x1", "x2", "y0", "y1", "y2"]
    assert [m.index for m in merged] == list(range(6))


async def test_best_of_n_graph_votes_for_the_majority_answer():
    backend = answers(12, 13, 12, 12, 7)
    graph = create_best_of_n_graph(backend, n=5, seed=42).compile()
    state = await graph.ainvoke({"question": "What is 7+5?"})
    assert state["answer"] == "12"
    assert state["strategy"] == "best_of_n"
    assert [c.index for c in state["candidates"]] == [0, 1, 2, 3, 4]
    assert backend.requests[0].n == 5
    assert backend.requests[0].sampling.seed == 42
    select = state["decisions"][-1]
    assert select["votes"] == {"12": 3, "13": 1, "7": 1}
    assert select["chosen_index"] in (0, 2, 3)
    assert state["usage"].calls == 1
    assert state["usage"].completion_tokens == sum(c.completion_tokens for c in state["candidates"])


async def test_decisions_are_streamed_as_custom_events():
    graph = create_best_of_n_graph(answers(1, 2, 2), n=3).compile()
    events = [e async for e in graph.astream({"question": "q"}, stream_mode="custom")]
    kinds = [e["tts_graph"]["kind"] for e in events]
    assert kinds == ["fanout", "select"]
    assert events[1]["tts_graph"]["answer"] == "2"


def test_majority_tie_goes_to_the_higher_summed_score_then_first_seen():
    c = [
        Candidate(index=0, text="", answer="5", mean_logprob=-2.0),
        Candidate(index=1, text="", answer="6", mean_logprob=-0.1),
    ]
    best, _, tie = majority_vote(c)
    assert best.answer == "6" and tie == "summed score"
    same = [Candidate(index=3, text="", answer="5"), Candidate(index=1, text="", answer="6")]
    best, _, tie = majority_vote(same)
    assert best.answer == "6" and tie == "first seen"


def test_majority_groups_equivalent_spellings():
    c = [Candidate(index=i, text="", answer=a) for i, a in enumerate(["12", "12.0", "13"])]
    best, votes, _ = majority_vote(c)
    assert best.answer in ("12", "12.0")
    assert sorted(votes.values()) == [1, 2]


async def test_select_best_score_prefers_verifier_score_over_logprob():
    node = make_select_node(select="best_score")
    cands = [
        Candidate(index=0, text="a", answer="1", mean_logprob=-0.01),
        Candidate(index=1, text="b", answer="2", score=0.9, mean_logprob=-3.0),
    ]
    out = await node({"candidates": cands})
    assert out["answer"] == "2"


async def test_select_without_candidates_answers_none_and_says_why():
    out = await make_select_node()({"candidates": []})
    assert out["answer"] is None
    assert out["decisions"][0]["reason"] == "no candidates"


async def test_select_falls_back_to_best_score_when_nothing_votes():
    cands = [
        Candidate(index=0, text="no idea", mean_logprob=-1.0),
        Candidate(index=1, text="unsure", mean_logprob=-0.2),
    ]
    out = await make_select_node()({"candidates": cands})
    assert out["response"] == "unsure"
    assert out["decisions"][0]["fallback"] == "best_score"


def test_unknown_select_rule_fails_at_build_time_listing_choices():
    with pytest.raises(ConfigError, match="majority, best_score, weighted, verified"):
        create_best_of_n_graph(answers(1), select="vote")


async def test_fanout_cuts_to_what_the_budget_affords_and_asks_again_for_the_rest():
    backend = answers(3)  # each sample is 5 words ("tokens")
    node = make_fanout_node(backend, n=8, sampling=SamplingParams(max_tokens=10))
    # The prompt is 21 words: 79 tokens are left, not enough for 8 x 10. The first request is
    # cut to 7 samples; they cost 35, so the eighth fits in a second request.
    state = {"question": "What is 1+2?", "budget": Budget(max_total_tokens=100)}
    out = await node(state)
    assert [r.n for r in backend.requests] == [7, 1]
    record = out["decisions"][0]
    assert (record["sampled"], record["skipped"], record["reason"]) == (8, 0, None)
    assert record["budget"] == [{"limit": "total tokens", "n": [8, 7], "max_tokens": [10, 10]}]
    assert out["usage"].total_tokens <= 100


async def test_a_small_budget_lowers_max_tokens_rather_than_drawing_one_sample():
    backend = answers(3)
    node = make_fanout_node(backend, n=8, sampling=SamplingParams(max_tokens=256))
    out = await node({"question": "What is 1+2?", "budget": Budget(max_total_tokens=400)})
    assert [(r.n, r.sampling.max_tokens) for r in backend.requests] == [(8, 47)]
    assert len(out["candidates"]) == 8
    assert out["decisions"][0]["budget"][0]["max_tokens"] == [256, 47]


async def test_fanout_skips_entirely_when_nothing_fits_and_raises_in_strict_mode():
    backend = answers(3)
    node = make_fanout_node(backend, n=4, sampling=SamplingParams(max_tokens=50))
    out = await node({"question": "q", "budget": Budget(max_total_tokens=19)})
    assert backend.requests == []
    assert out["decisions"][0]["sampled"] == 0
    assert out["decisions"][0]["reason"] == "budget"
    assert "candidates" not in out
    # Strict: a request that would have to be cut is refused too.
    with pytest.raises(BudgetExhausted, match="total tokens"):
        await node({"question": "q", "budget": Budget(max_total_tokens=100, strict=True)})
    assert backend.requests == []


async def test_fanout_indexes_after_existing_candidates_and_honours_renamed_keys():
    keys = StateKeys(question="task", candidates="drafts")
    node = make_fanout_node(answers(1, 2), n=2, keys=keys)
    out = await node({"task": "q", "drafts": [Candidate(index=0, text="probe")]})
    assert [c.index for c in out["drafts"]] == [1, 2]
    assert [c.answer for c in out["drafts"]] == ["1", "2"]


async def test_graph_with_exhausted_budget_finishes_without_an_answer_and_says_why():
    graph = create_best_of_n_graph(
        answers(1), n=4, sampling=SamplingParams(max_tokens=64)
    ).compile()
    state = await graph.ainvoke({"question": "q", "budget": Budget(max_total_tokens=19)})
    assert state["answer"] is None
    assert state.get("candidates", []) == []
    fanout, select = state["decisions"]
    assert fanout["reason"] == "budget" and select["reason"] == "no candidates"


def scored(index, answer, score, passed=None):
    from tts_graph.verifiers.base import Verdict

    verdict = None if passed is None else Verdict(passed=passed, score=score, reason="")
    return Candidate(
        index=index, text=f"Answer: {answer}", answer=answer, score=score, verdict=verdict
    )


async def test_weighted_vote_sums_scores_per_answer():
    # "13" has more votes but "12" has more total reward.
    cands = [scored(0, "13", 0.2), scored(1, "13", 0.2), scored(2, "13", 0.2), scored(3, "12", 0.9)]
    out = await make_select_node(select="weighted")({"candidates": cands})
    assert out["answer"] == "12"
    assert out["decisions"][0]["weights"] == pytest.approx({"13": 0.6, "12": 0.9})


async def test_weighted_vote_ties_go_to_more_votes_then_first_seen():
    cands = [scored(0, "7", 0.5), scored(1, "8", 0.25), scored(2, "8", 0.25)]
    out = await make_select_node(select="weighted")({"candidates": cands})
    assert out["answer"] == "8"


async def test_verified_takes_the_best_passing_candidate_else_majority():
    cands = [scored(0, "13", 0.9, passed=False), scored(1, "12", 0.6, passed=True),
             scored(2, "12", 0.8, passed=True), scored(3, "13", 0.1, passed=False)]  # fmt: skip
    out = await make_select_node(select="verified")({"candidates": cands})
    assert out["decisions"][0]["chosen_index"] == 2
    assert out["decisions"][0]["passed"] == [1, 2]
    none_pass = [scored(0, "5", 0.0, passed=False), scored(1, "6", 0.0, passed=False),
                 scored(2, "6", 0.0, passed=False)]  # fmt: skip
    out = await make_select_node(select="verified")({"candidates": none_pass})
    assert out["answer"] == "6"
    assert out["decisions"][0]["fallback"] == "majority"


async def test_nodes_take_an_extractor_by_name():
    backend = FakeBackend(lambda r, i: "Answer: 12, or maybe \\boxed{13}")
    boxed = await make_fanout_node(backend, n=1, extract="boxed")({"question": "q"})
    assert boxed["candidates"][0].answer == "13"
    with pytest.raises(ConfigError, match="boxed"):
        make_fanout_node(backend, n=1, extract="no-such-extractor")


def program(body: str) -> str:
    return f"from math import *\n\n\ndef inc(x):\n    return {body}"


async def test_a_graph_with_the_code_verifier_answers_with_the_program():
    # The answer (and the vote key) of a code candidate is its program, not a line the
    # default extractor picked out of it: both wrong programs below begin alike.
    bodies = ["x - 1", "x + 1", "x * 1"]
    backend = FakeBackend(lambda r, i: f"Sure:\n```python\n{program(bodies[i % 3])}\n```\nDone.")
    verifier = CodeVerifier(concurrency=2, sandbox="unsafe-subprocess")
    graph = create_best_of_n_graph(backend, n=3, verifier=verifier).compile()
    tests = CodeTests(test="assert inc(1) == 2", entry_point="inc")
    state = await graph.ainvoke({"question": "inc?", "reference": tests})
    assert [c.answer for c in state["candidates"]] == [program(b) for b in bodies]
    assert state["answer"] == program("x + 1")
    assert len({vote_key(c) for c in state["candidates"]}) == 3
    # A named extractor still wins over the verifier's.
    named = create_best_of_n_graph(backend, n=3, verifier=verifier, extract="last_number")
    state = await named.compile().ainvoke({"question": "inc?", "reference": tests})
    assert [c.answer for c in state["candidates"]] == ["1", "1", "1"]

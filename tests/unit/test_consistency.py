"""Early-stopping self-consistency with the function-driven fake backend."""

import itertools
from fractions import Fraction

import pytest
from langgraph.graph import END, START, StateGraph

from tts_graph import (
    Budget,
    BudgetExhausted,
    ConfigError,
    SamplingParams,
    StateKeys,
    TTSState,
    Usage,
)
from tts_graph.candidate import Candidate
from tts_graph.errors import BackendError
from tts_graph.nodes.consistency import (
    _regularized_beta,
    make_consistency_node,
    prob_top_stays_on_top,
)
from tts_graph.nodes.select import make_select_node
from tts_graph.testing import FakeBackend


def sequence(*texts):
    """Samples cycle through ``texts`` across requests, in the order they are drawn."""
    counter = itertools.count()
    return FakeBackend(lambda request, i: texts[next(counter) % len(texts)])


def rounds(out):
    return [d for d in out["decisions"] if d["kind"] == "consistency_round"]


def summary(out):
    (last,) = [d for d in out["decisions"] if d["kind"] == "consistency"]
    return last


@pytest.mark.parametrize(
    ("v1", "v2", "expected"),
    [
        (3, 0, 1 - 1 / 16),
        (4, 0, 0.96875),
        (0, 0, 0.5),
        (2, 2, 0.5),
        (1, 0, 0.75),
        (2, 0, 0.875),
        (5, 1, 120 / 128),  # P(Bin(7, 1/2) <= 5) = (128 - 1 - 7) / 128
    ],
)
def test_prob_top_stays_on_top_matches_hand_computed_values(v1, v2, expected):
    assert prob_top_stays_on_top(v1, v2) == expected


def test_prob_top_stays_on_top_is_complementary_under_swapping():
    for v1, v2 in itertools.product(range(12), repeat=2):
        assert prob_top_stays_on_top(v1, v2) + prob_top_stays_on_top(v2, v1) == pytest.approx(1)
    assert prob_top_stays_on_top(200, 150) > 0.99


def test_regularized_beta_matches_closed_forms():
    x = Fraction(1, 3)
    for n in range(1, 7):
        assert _regularized_beta(x, n, 1) == x**n
        assert _regularized_beta(x, 1, n) == 1 - (1 - x) ** n
    assert _regularized_beta(Fraction(1, 2), 3, 3) == Fraction(1, 2)


def test_prob_top_stays_on_top_rejects_negative_votes():
    with pytest.raises(ValueError, match=">= 0"):
        prob_top_stays_on_top(-1, 0)


async def test_beta_stops_after_four_agreeing_samples():
    backend = sequence("Answer: 12")
    out = await make_consistency_node(backend, stop="beta", seed=7)({"question": "q"})
    assert [r.n for r in backend.requests] == [2, 2]
    assert [r.sampling.seed for r in backend.requests] == [7, 8]
    recorded = rounds(out)
    assert [r["statistic"] for r in recorded] == [0.875, 0.96875]
    assert [r["decision"] for r in recorded] == ["continue", "stop"]
    assert recorded[0]["votes"] == {"12": 2}
    assert summary(out)["drawn"] == 4 and summary(out)["skipped"] == 12
    assert summary(out)["reason"] == "threshold"
    assert [c.index for c in out["candidates"]] == [0, 1, 2, 3]
    assert [c.seed for c in out["candidates"]] == [7, 7, 8, 8]
    assert "answer" not in out


async def test_beta_runs_to_max_samples_when_answers_split():
    backend = sequence("Answer: 12", "Answer: 13")
    out = await make_consistency_node(backend, stop="beta", max_samples=8)({"question": "q"})
    assert [r.n for r in backend.requests] == [2, 2, 2, 2]
    assert all(r["statistic"] == 0.5 for r in rounds(out))
    assert summary(out)["reason"] == "max_samples" and summary(out)["skipped"] == 0
    assert rounds(out)[-1]["why"] == "drew max_samples=8"


async def test_beta_ignores_unextractable_samples_and_honours_initial():
    backend = sequence("Answer: 12", "no idea")
    node = make_consistency_node(backend, stop="beta", initial=3, max_samples=12)
    out = await node({"question": "q"})
    # Draws 12, -, 12 | -, 12, - | 12, -, 12: v1 = 5 at 9 samples → 1 − I(6, 1) = 63/64.
    assert [r.n for r in backend.requests] == [3, 3, 3]
    assert [r["votes"] for r in rounds(out)][-1] == {"12": 5}
    assert rounds(out)[-1]["statistic"] == 63 / 64
    assert summary(out)["skipped"] == 3


async def test_adaptive_stops_at_once_when_the_first_samples_agree():
    backend = sequence("Answer: 12")
    out = await make_consistency_node(backend)({"question": "q"})
    assert [r.n for r in backend.requests] == [2]
    assert rounds(out)[0]["statistic"] == 1.0
    assert summary(out)["skipped"] == 14


async def test_adaptive_stops_when_the_top_answer_reaches_the_threshold():
    backend = sequence("Answer: 12", "Answer: 13", "Answer: 12", "Answer: 12")
    out = await make_consistency_node(backend)({"question": "q"})
    assert [r.n for r in backend.requests] == [2, 2]
    assert [r["statistic"] for r in rounds(out)] == [0.5, 0.75]
    assert summary(out)["reason"] == "threshold"
    strict = make_consistency_node(
        sequence("Answer: 12", "Answer: 13", "Answer: 12"), threshold=0.8
    )
    out = await strict({"question": "q"})
    assert summary(out)["drawn"] == 16


async def test_adaptive_doubles_the_total_and_counts_unextractable_samples():
    # The first sample has no answer; if it did not count, 1 of 1 voters at round 2 would stop.
    backend = sequence("no idea", *["Answer: 12", "Answer: 13"] * 20)
    out = await make_consistency_node(backend, initial=1)({"question": "q"})
    assert [r.n for r in backend.requests] == [1, 1, 2, 4, 8]
    assert [r["statistic"] for r in rounds(out)] == [0.0, 0.5, 0.5, 0.5, 0.5]
    assert [r.sampling.seed for r in backend.requests] == [0, 1, 2, 3, 4]
    assert summary(out)["reason"] == "max_samples" and summary(out)["drawn"] == 16


async def test_adaptive_default_schedule_is_capped_by_max_samples():
    backend = sequence("Answer: 12", "Answer: 13")
    out = await make_consistency_node(backend, max_samples=10)({"question": "q"})
    assert [r.n for r in backend.requests] == [2, 2, 4, 2]
    assert summary(out)["skipped"] == 0
    assert len(rounds(out)) == 4


async def test_budget_cuts_a_round_and_then_refuses_the_next():
    backend = sequence("Answer: 12", "Answer: 13")
    node = make_consistency_node(
        backend,
        sampling=SamplingParams(max_tokens=10),
        prompt=lambda state: [{"role": "user", "content": "q"}],
    )
    # A round holds 1 prompt token + 10 per sample until it is settled; a sample costs 2.
    # Rounds 1 and 2 fit (2 samples each, 10 tokens spent); round 3 wants 4 samples and gets
    # 2 (29 tokens left). Later rounds get ever less, until not one token is left.
    out = await node({"question": "q", "budget": Budget(max_total_tokens=40)})
    assert [r.n for r in backend.requests][:3] == [2, 2, 2]
    assert [r.sampling.max_tokens for r in backend.requests][-1] < 10
    cut = rounds(out)[2]
    assert (cut["requested"], cut["sampled"]) == (4, 2)
    assert cut["budget"] == [{"limit": "total tokens", "n": [4, 2], "max_tokens": [10, 10]}]
    assert summary(out)["reason"] == "budget"
    assert out["usage"].total_tokens <= 40
    with pytest.raises(BudgetExhausted, match="total tokens"):
        await node({"question": "q", "budget": Budget(max_total_tokens=40, strict=True)})


async def test_budget_with_no_room_left_stops_before_requesting():
    backend = sequence("Answer: 12", "Answer: 13")
    node = make_consistency_node(backend, stop="beta")
    out = await node({"question": "q", "budget": Budget(max_calls=3), "usage": Usage(calls=1)})
    assert len(backend.requests) == 2
    assert len(rounds(out)) == out["usage"].calls == 2
    assert summary(out)["reason"] == "budget" and summary(out)["skipped"] == 12


async def test_candidates_are_indexed_after_existing_ones_and_keys_renamed():
    keys = StateKeys(question="task", candidates="drafts", decisions="log")
    node = make_consistency_node(sequence("Answer: 3"), keys=keys, name="sc", count_existing=False)
    out = await node({"task": "q", "drafts": [Candidate(index=5, text="probe")]})
    assert [c.index for c in out["drafts"]] == [6, 7]
    assert [c.answer for c in out["drafts"]] == ["3", "3"]
    assert {d["node"] for d in out["log"]} == {"sc"}


async def test_candidates_already_in_state_vote_and_count_towards_max_samples():
    backend = sequence("Answer: 3")
    probe = [Candidate(index=i, text="Answer: 3", answer="3") for i in range(2)]
    probe.append(Candidate(index=2, text="Answer: 4", answer="4"))
    out = await make_consistency_node(backend, max_samples=8)(
        {"question": "q", "candidates": probe}
    )
    # 2 of 3 agree (0.67 < 0.75): draw 3 more (double to 6); 5 of 6 agree: stop.
    assert [r.n for r in backend.requests] == [3]
    assert summary(out)["reused"] == 3 and summary(out)["drawn"] == 3
    assert summary(out)["votes"] == {"3": 5, "4": 1}
    assert summary(out)["reason"] == "threshold"


async def test_a_settled_probe_needs_no_more_samples():
    backend = sequence("Answer: 3")
    probe = [Candidate(index=i, text="Answer: 3", answer="3") for i in range(4)]
    out = await make_consistency_node(backend, stop="beta")({"question": "q", "candidates": probe})
    assert backend.requests == []
    assert summary(out)["reason"] == "threshold" and "candidates" not in out


async def test_a_backend_failure_after_the_first_round_keeps_the_samples():
    calls = itertools.count()

    def flaky(request, i):
        if next(calls) >= 2:
            raise BackendError("server went away", retryable=True)
        return "Answer: 12" if i == 0 else "Answer: 13"

    out = await make_consistency_node(FakeBackend(flaky))({"question": "q"})
    assert len(out["candidates"]) == 2
    assert summary(out)["reason"] == "backend_error"

    def dead(request, i):
        raise BackendError("down", retryable=False)

    with pytest.raises(BackendError):
        await make_consistency_node(FakeBackend(dead))({"question": "q"})


async def test_in_a_graph_selection_votes_and_rounds_are_streamed():
    def build(backend):
        builder = StateGraph(TTSState)
        builder.add_node("sample", make_consistency_node(backend, stop="beta"))
        builder.add_node("vote", make_select_node(select="majority"))
        builder.add_edge(START, "sample")
        builder.add_edge("sample", "vote")
        builder.add_edge("vote", END)
        return builder.compile()

    texts = ("Answer: 12", "Answer: 12", "Answer: 13", "Answer: 12")
    events = [
        e["tts_graph"]["kind"]
        async for e in build(sequence(*texts)).astream({"question": "q"}, stream_mode="custom")
    ]
    assert events[-2:] == ["consistency", "select"]
    assert set(events[:-2]) == {"consistency_round"}
    state = await build(sequence(*texts)).ainvoke({"question": "q"})
    assert state["answer"] == "12"
    assert state["usage"].calls == len(events) - 2


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"stop": "patience"}, "adaptive, beta"),
        ({"max_samples": 0}, "max_samples must be >= 1"),
        ({"max_samples": 4, "initial": 5}, r"initial must be in \[1, max_samples=4\]"),
        ({"initial": 0}, "initial must be"),
        ({"threshold": 1.5}, r"threshold must be in \(0, 1\]"),
        ({"threshold": 0.0}, "threshold must be"),
    ],
)
def test_bad_options_fail_at_build_time(options, needle):
    with pytest.raises(ConfigError, match=needle):
        make_consistency_node(sequence("x"), **options)


async def test_max_samples_of_one_defaults_initial_to_one():
    backend = sequence("Answer: 12")
    out = await make_consistency_node(backend, max_samples=1)({"question": "q"})
    assert [r.n for r in backend.requests] == [1]
    assert summary(out)["skipped"] == 0

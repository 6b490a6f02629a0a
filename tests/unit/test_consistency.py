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


def by_seed(*texts, words=1, delay=0.0):
    """Sample ``i`` (seed ``i``) says ``texts[i % len(texts)]``, padded to ``words`` words, one
    word streamed every ``delay`` seconds."""

    def reply(request, i):
        text = texts[request.sampling.seed % len(texts)]
        return " ".join(["so"] * (words - len(text.split())) + [text])

    return FakeBackend(reply, stream_delay_s=delay)


def checks(out):
    return [d for d in out["decisions"] if d["kind"] == "consistency_check"]


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


async def test_beta_stops_after_four_agreeing_samples_and_cancels_the_rest():
    # Seeds 7-10 answer in 5 words, the other twelve take 40: all run at once, the short ones
    # settle the vote, and the long ones are cancelled half-way.
    def reply(request, i):
        words = 5 if request.sampling.seed < 11 else 40
        return " ".join(["so"] * (words - 2) + ["Answer:", "12"])

    backend = FakeBackend(reply, stream_delay_s=0.001)
    out = await make_consistency_node(backend, stop="beta", seed=7)({"question": "q"})
    assert [c["statistic"] for c in checks(out)] == [0.875, 0.9375, 0.96875]
    assert [c["decision"] for c in checks(out)] == ["continue", "continue", "stop"]
    assert checks(out)[0]["votes"] == {"12": 2}
    assert summary(out)["drawn"] == 4 and summary(out)["skipped"] == 12
    assert summary(out)["reason"] == "threshold"
    assert [c.index for c in out["candidates"]] == [0, 1, 2, 3]
    assert {c.seed for c in out["candidates"]} <= set(range(7, 7 + 8))
    assert "answer" not in out
    # Samples still running were cancelled, and only what they streamed is counted.
    assert summary(out)["cancelled"] == 12 and summary(out)["cancelled_tokens"] >= 12
    assert out["usage"].completion_tokens == backend.streamed_tokens < 4 * 5 + 12 * 40
    assert out["usage"].calls == len(backend.requests)


async def test_beta_runs_to_max_samples_when_answers_split():
    backend = by_seed("Answer: 12", "Answer: 13")
    out = await make_consistency_node(backend, stop="beta", max_samples=8, concurrency=2)(
        {"question": "q"}
    )
    assert len(backend.requests) == 8
    assert summary(out)["reason"] == "max_samples" and summary(out)["skipped"] == 0
    assert checks(out)[-1]["why"] == "drew max_samples=8"
    assert summary(out)["cancelled"] == 0


async def test_beta_ignores_unextractable_samples_and_honours_initial():
    backend = by_seed("Answer: 12", "no idea")
    node = make_consistency_node(backend, stop="beta", initial=3, max_samples=12, concurrency=1)
    out = await node({"question": "q"})
    # 12, -, 12, -, 12, -, 12: checked from 3 samples on; v1 = 4 at 7 samples, 1 - I(5, 1) =
    # 31/32 >= 0.95 (at 5 and 6 samples v1 = 3 gives 15/16, not enough).
    assert [c["drawn"] for c in checks(out)] == [3, 4, 5, 6, 7]
    assert checks(out)[-1]["votes"] == {"12": 4}
    assert checks(out)[-1]["statistic"] == 31 / 32
    assert summary(out)["drawn"] == 7 and summary(out)["skipped"] == 5


async def test_adaptive_stops_at_once_when_the_first_samples_agree():
    out = await make_consistency_node(by_seed("Answer: 12"), concurrency=1)({"question": "q"})
    assert [c["drawn"] for c in checks(out)] == [2]
    assert checks(out)[0]["statistic"] == 1.0
    assert summary(out)["skipped"] == 14


async def test_adaptive_checks_when_the_count_doubles():
    backend = by_seed("Answer: 12", "Answer: 13", "Answer: 12", "Answer: 12")
    out = await make_consistency_node(backend, concurrency=1)({"question": "q"})
    assert [c["drawn"] for c in checks(out)] == [2, 4]
    assert [c["statistic"] for c in checks(out)] == [0.5, 0.75]
    assert summary(out)["reason"] == "threshold"
    strict = make_consistency_node(by_seed("Answer: 12", "Answer: 13", "Answer: 12"), threshold=0.8)
    out = await strict({"question": "q"})
    assert summary(out)["drawn"] == 16


async def test_adaptive_counts_unextractable_samples():
    # The first sample has no answer; if it did not count, 1 of 1 voters at 2 samples would stop.
    backend = by_seed("no idea", *["Answer: 12", "Answer: 13"] * 20)
    out = await make_consistency_node(backend, initial=1, concurrency=1)({"question": "q"})
    assert [c["drawn"] for c in checks(out)] == [1, 2, 4, 8, 16]
    assert [c["statistic"] for c in checks(out)][:2] == [0.0, 0.5]
    assert summary(out)["reason"] == "max_samples" and summary(out)["drawn"] == 16


async def test_adaptive_checks_at_max_samples_when_it_is_no_power_of_two():
    out = await make_consistency_node(by_seed("Answer: 12", "Answer: 13"), max_samples=10)(
        {"question": "q"}
    )
    assert [c["drawn"] for c in checks(out)] == [2, 4, 8, 10]
    assert summary(out)["skipped"] == 0


async def test_the_budget_refuses_samples_and_the_node_keeps_what_it_drew():
    backend = by_seed("Answer: 12", "Answer: 13")
    node = make_consistency_node(backend, stop="beta", concurrency=1)
    out = await node({"question": "q", "budget": Budget(max_calls=3), "usage": Usage(calls=1)})
    assert len(backend.requests) == out["usage"].calls == 2
    assert summary(out)["reason"] == "budget" and summary(out)["drawn"] == 2
    with pytest.raises(BudgetExhausted, match="calls"):
        await node({"question": "q", "budget": Budget(max_calls=1, strict=True)})


async def test_a_small_token_budget_is_shared_by_concurrent_samples():
    backend = by_seed("Answer: 12", "Answer: 13", words=6)
    node = make_consistency_node(
        backend, sampling=SamplingParams(max_tokens=10), stop="beta",
        prompt=lambda state: [{"role": "user", "content": "q"}],
    )  # fmt: skip
    out = await node({"question": "q", "budget": Budget(max_total_tokens=40)})
    assert out["usage"].total_tokens <= 40
    assert summary(out)["reason"] == "budget"
    assert any("budget" in d for d in out["decisions"])


async def test_candidates_are_indexed_after_existing_ones_and_keys_renamed():
    keys = StateKeys(question="task", candidates="drafts", decisions="log")
    node = make_consistency_node(by_seed("Answer: 3"), keys=keys, name="sc", count_existing=False)
    out = await node({"task": "q", "drafts": [Candidate(index=5, text="probe")]})
    assert [c.index for c in out["drafts"]] == [6, 7]
    assert [c.answer for c in out["drafts"]] == ["3", "3"]
    assert {d["node"] for d in out["log"]} == {"sc"}


async def test_candidates_already_in_state_vote_and_count_towards_max_samples():
    probe = [Candidate(index=i, text="Answer: 3", answer="3") for i in range(2)]
    probe.append(Candidate(index=2, text="Answer: 4", answer="4"))
    out = await make_consistency_node(by_seed("Answer: 3"), max_samples=8, concurrency=1)(
        {"question": "q", "candidates": probe}
    )
    # 2 of 3 agree (0.67 < 0.75) when the node starts; at 4 samples 3 of 4 agree: stop.
    assert summary(out)["reused"] == 3 and summary(out)["drawn"] == 1
    assert summary(out)["votes"] == {"3": 3, "4": 1}
    assert summary(out)["reason"] == "threshold"


async def test_a_settled_probe_needs_no_more_samples():
    backend = by_seed("Answer: 3")
    probe = [Candidate(index=i, text="Answer: 3", answer="3") for i in range(4)]
    out = await make_consistency_node(backend, stop="beta")({"question": "q", "candidates": probe})
    assert backend.requests == []
    assert summary(out)["reason"] == "threshold" and "candidates" not in out


async def test_a_backend_failure_after_the_first_sample_keeps_the_samples():
    def flaky(request, i):
        if request.sampling.seed >= 2:
            raise BackendError("server went away", retryable=True)
        return "Answer: 12" if request.sampling.seed == 0 else "Answer: 13"

    out = await make_consistency_node(FakeBackend(flaky), concurrency=1)({"question": "q"})
    assert len(out["candidates"]) == 2
    assert summary(out)["reason"] == "backend_error"

    def dead(request, i):
        raise BackendError("down", retryable=False)

    with pytest.raises(BackendError):
        await make_consistency_node(FakeBackend(dead))({"question": "q"})


async def test_in_a_graph_selection_votes_and_checks_are_streamed():
    def build(backend):
        builder = StateGraph(TTSState)
        builder.add_node("sample", make_consistency_node(backend, stop="beta", concurrency=1))
        builder.add_node("vote", make_select_node(select="majority"))
        builder.add_edge(START, "sample")
        builder.add_edge("sample", "vote")
        builder.add_edge("vote", END)
        return builder.compile()

    texts = ("Answer: 12", "Answer: 12", "Answer: 13", "Answer: 12")
    events = [
        e["tts_graph"]["kind"]
        async for e in build(by_seed(*texts)).astream({"question": "q"}, stream_mode="custom")
    ]
    assert events[-2:] == ["consistency", "select"]
    assert set(events[:-2]) == {"consistency_check"}
    state = await build(by_seed(*texts)).ainvoke({"question": "q"})
    assert state["answer"] == "12"


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"stop": "patience"}, "adaptive, beta"),
        ({"max_samples": 0}, "max_samples must be >= 1"),
        ({"max_samples": 4, "initial": 5}, r"initial must be in \[1, max_samples=4\]"),
        ({"initial": 0}, "initial must be"),
        ({"threshold": 1.5}, r"threshold must be in \(0, 1\]"),
        ({"threshold": 0.0}, "threshold must be"),
        ({"concurrency": 0}, "concurrency must be >= 1"),
    ],
)
def test_bad_options_fail_at_build_time(options, needle):
    with pytest.raises(ConfigError, match=needle):
        make_consistency_node(by_seed("x"), **options)


async def test_max_samples_of_one_defaults_initial_to_one():
    backend = by_seed("Answer: 12")
    out = await make_consistency_node(backend, max_samples=1)({"question": "q"})
    assert [r.n for r in backend.requests] == [1]
    assert summary(out)["skipped"] == 0

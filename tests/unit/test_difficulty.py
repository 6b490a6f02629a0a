"""Difficulty estimation: estimators, bins, fitting and the node, with fakes."""

import math

import pytest

from tts_graph import Budget, BudgetExhausted, ConfigError
from tts_graph.backends.base import Completion, TokenLogprob
from tts_graph.candidate import Candidate
from tts_graph.nodes.difficulty import (
    DifficultyBins,
    Probe,
    SelfRating,
    agreement_score,
    auroc,
    combined_score,
    entropy_score,
    logprob_score,
    make_difficulty_node,
)
from tts_graph.testing import FakeBackend


def probe(*answers, logprob=None):
    comps = tuple(
        Completion(
            index=i,
            text=str(a),
            finish_reason="stop",
            logprobs=None if logprob is None else (TokenLogprob("x", logprob),),
        )
        for i, a in enumerate(answers)
    )
    return Probe("q", comps, tuple(answers))


def test_agreement_counts_unextractable_answers_as_distinct():
    assert agreement_score(probe("12", "12", "12", "12")) == 0.0
    assert agreement_score(probe("12", "12.0", "13", "14")) == 0.5  # 12 and 12.0 agree
    assert agreement_score(probe(None, None, None, None)) == 0.75


def test_entropy_score_spans_zero_to_one():
    assert entropy_score(probe("a", "a", "a", "a")) == 0.0
    assert entropy_score(probe("a", "b", "c", "d")) == pytest.approx(1.0)
    assert 0 < entropy_score(probe("a", "a", "b", "c")) < 1


def test_logprob_and_combined_scores():
    confident = probe("1", "1", logprob=-0.01)
    unsure = probe("1", "1", logprob=-2.0)
    assert logprob_score(confident) == pytest.approx(1 - math.exp(-0.01))
    assert logprob_score(unsure) > logprob_score(confident)
    assert logprob_score(probe("1")) == 1.0  # no logprobs: no confidence
    assert combined_score(unsure) == pytest.approx((0.0 + logprob_score(unsure)) / 2)


def test_bins_and_their_validation():
    bins = DifficultyBins((0.25, 0.5), ("easy", "medium", "hard"))
    assert [bins.bin(s) for s in (0.0, 0.25, 0.49, 0.5, 1.0)] == [
        "easy",
        "medium",
        "medium",
        "hard",
        "hard",
    ]
    with pytest.raises(ConfigError, match="2 thresholds make 3 bins"):
        DifficultyBins((0.2, 0.4), ("easy", "hard"))
    with pytest.raises(ConfigError, match="ascending"):
        DifficultyBins((0.5, 0.2), ("a", "b", "c"))


def test_fit_puts_thresholds_at_quantiles():
    scores = [i / 10 for i in range(10)]
    bins = DifficultyBins.fit(scores)
    assert bins.thresholds == (0.3, 0.6)
    # Equal-mass: each bin gets about a third of the calibration set.
    counts = [sum(bins.bin(s) == label for s in scores) for label in bins.labels]
    assert counts == [3, 3, 4]
    five = DifficultyBins.fit(scores, labels=("1", "2", "3", "4", "5"))
    assert five.thresholds == (0.1, 0.3, 0.5, 0.7)
    with pytest.raises(ConfigError, match="at least 3 calibration scores"):
        DifficultyBins.fit([0.1, 0.2])


def test_auroc():
    assert auroc([0.9, 0.8, 0.1, 0.2], [True, True, False, False]) == 1.0
    assert auroc([0.1, 0.2, 0.9, 0.8], [True, True, False, False]) == 0.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    with pytest.raises(ValueError, match="positive and one negative"):
        auroc([0.1], [True])


async def test_node_probes_once_scores_bins_and_keeps_the_samples():
    backend = FakeBackend(lambda r, i: f"Answer: {[12, 12, 12, 13][i]}")
    node = make_difficulty_node(backend, n=4, seed=9)
    out = await node({"question": "7+5?", "candidates": [Candidate(index=0, text="old")]})
    assert len(backend.requests) == 1
    assert backend.requests[0].n == 4
    assert backend.requests[0].sampling.seed == 9
    assert out["difficulty"]["score"] == 0.25
    assert out["difficulty"]["bin"] == "easy"  # default thresholds (0.5, 0.75): 3 of 4 agree
    assert [c.index for c in out["candidates"]] == [1, 2, 3, 4]
    assert {c.source for c in out["candidates"]} == {"difficulty"}
    assert out["usage"].calls == 1
    assert out["decisions"][0]["answers"] == ["12", "12", "12", "13"]


async def test_node_with_a_custom_async_estimator_and_no_kept_candidates():
    async def always_hard(p):
        return 0.9

    node = make_difficulty_node(
        FakeBackend(lambda r, i: "x"), estimator=always_hard, keep_candidates=False
    )
    out = await node({"question": "q"})
    assert out["difficulty"]["bin"] == "hard"
    assert out["difficulty"]["estimator"] == "always_hard"
    assert "candidates" not in out


async def test_estimator_outside_unit_interval_is_an_error():
    node = make_difficulty_node(FakeBackend(lambda r, i: "x"), estimator=lambda p: 3.0)
    with pytest.raises(ConfigError, match="scores are in"):
        await node({"question": "q"})


def rating_backend():
    def fn(request, i):
        return (
            "Difficulty: 10" if "Rate how hard" in request.messages[-1]["content"] else "Answer: 1"
        )

    return FakeBackend(fn)


async def test_self_rating_adds_its_call_to_the_run_not_to_the_estimator():
    backend = rating_backend()
    node = make_difficulty_node(backend, n=2, estimator=SelfRating(backend))
    for _ in range(3):  # the same estimator object in three runs: two calls each
        out = await node({"question": "q"})
        assert out["difficulty"]["score"] == 1.0
        assert out["usage"].calls == 2
    # The rating follows the caller's prompt: its question and system prompt come first.
    rating = backend.requests[1].messages
    assert rating[-2] == {"role": "user", "content": "q"} and rating[0]["role"] == "system"


async def test_self_rating_is_held_to_the_budget():
    backend = rating_backend()
    node = make_difficulty_node(backend, n=2, estimator=SelfRating(backend))
    out = await node({"question": "q", "budget": Budget(max_calls=1)})
    assert len(backend.requests) == 1 and out["usage"].calls == 1
    assert out["difficulty"]["score"] is None and out["difficulty"]["bin"] is None
    assert out["decisions"][0]["reason"] == "budget"
    assert len(out["candidates"]) == 2  # the probe's samples are kept all the same


async def test_budget_cut_and_strict_mode():
    backend = FakeBackend(lambda r, i: "Answer: 1")
    node = make_difficulty_node(backend, n=4)
    out = await node({"question": "q", "budget": Budget(max_total_tokens=20)})
    assert out["difficulty"] is None
    assert backend.requests == []
    with pytest.raises(BudgetExhausted):
        await node({"question": "q", "budget": Budget(max_total_tokens=20, strict=True)})


def test_unknown_estimator_lists_choices():
    with pytest.raises(ConfigError, match="agreement, logprob, entropy, combined"):
        make_difficulty_node(FakeBackend(lambda r, i: ""), estimator="vibes")

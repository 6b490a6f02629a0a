"""The evaluation metrics: pass@k against hand-computed values and the combinatorial formula,
the power-law fit and the knee on curves with known answers, selectors by subsampling on
hand-computed cases, bootstrap intervals, and the summary of a run."""

import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tts_graph.eval.metrics import (
    accuracy_by_thinking_cap,
    bootstrap_ci,
    compute_curve,
    coverage_curve,
    default_ks,
    find_knee,
    find_turnover,
    fit_power_law,
    pass_at_k,
    per_problem,
    selector_curves,
    summarize,
    thinking_cap,
    totals,
    verification_gap,
)


def exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def cand(answer, correct, **extra):
    return {"answer": answer, "correct": correct, **extra}


def problem(*cands, kind="math", **extra):
    return {"id": extra.pop("id", "p"), "kind": kind, "correct": False, "error": None,
            "candidates": [{"index": i, **c} for i, c in enumerate(cands)], **extra}  # fmt: skip


def values(curve):
    return [round(p["value"], 10) for p in curve]


# --- pass@k ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (5, 2, 4, 1.0),  # k > n - c: every 4-subset holds a correct sample
        (10, 3, 1, 0.3),
        (10, 3, 2, 1 - 21 / 45),
        (10, 0, 1, 0.0),
        (10, 0, 10, 0.0),  # c = 0
        (10, 10, 1, 1.0),  # c = n
        (1, 1, 1, 1.0),
        (1, 0, 1, 0.0),
        (4, 1, 4, 1.0),
        (100, 1, 1, 0.01),
        (100, 1, 50, 0.5),
    ],
)
def test_pass_at_k_hand_computed(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_large_n_stays_finite():
    # C(10000, 5000) has thousands of digits; the product form never forms it.
    assert pass_at_k(10_000, 3, 5_000) == pytest.approx(float(exact_pass_at_k(10_000, 3, 5_000)))
    assert pass_at_k(10_000, 1, 1) == pytest.approx(1e-4)


@pytest.mark.parametrize(
    ("n", "c", "k"),
    [(5, 2, 6), (5, 2, 0), (5, 6, 1), (5, -1, 1), (0, 0, 1), (5, 2, -1), (5.0, 2, 1),
     (5, 2, 1.5), (True, 1, 1), ("5", 2, 1)],
)  # fmt: skip
def test_pass_at_k_rejects_bad_inputs(n, c, k):
    with pytest.raises(ValueError, match=r"n|c|k"):
        pass_at_k(n, c, k)


def test_pass_at_k_takes_numpy_integers():
    assert pass_at_k(np.int64(10), np.int32(3), np.int64(1)) == pytest.approx(0.3)


@st.composite
def nck(draw, max_n=40):
    n = draw(st.integers(1, max_n))
    return n, draw(st.integers(0, n)), draw(st.integers(1, n))


@settings(max_examples=150, deadline=None)
@given(nck())
def test_pass_at_k_is_a_probability_equal_to_the_formula(args):
    n, c, k = args
    p = pass_at_k(n, c, k)
    assert 0.0 <= p <= 1.0
    assert p == pytest.approx(float(exact_pass_at_k(n, c, k)), abs=1e-12)


@settings(max_examples=120, deadline=None)
@given(nck())
def test_pass_at_k_is_monotone_in_k_and_c(args):
    n, c, k = args
    p = pass_at_k(n, c, k)
    if k < n:
        assert pass_at_k(n, c, k + 1) >= p - 1e-12
    if c < n:
        assert pass_at_k(n, c + 1, k) >= p - 1e-12


def test_default_ks():
    assert default_ks(1) == [1]
    assert default_ks(16) == [1, 2, 4, 8, 16]
    assert default_ks(12) == [1, 2, 4, 8, 12]
    assert default_ks(0) == []


# --- coverage ---------------------------------------------------------------------------------


def test_coverage_curve_by_hand_with_an_error_counting_zero():
    recs = [
        problem(cand("1", True), cand("1", True), cand("2", False), cand("3", False)),  # c=2
        problem(cand("1", True), cand("2", False), cand("2", False), cand("2", False)),  # c=1
        {"id": "e", "error": "BackendError: down", "candidates": [], "correct": False},
    ]
    curve = coverage_curve(recs, resamples=200)
    assert [p["k"] for p in curve] == [1, 2, 4]
    expected = [(0.5 + 0.25) / 3, (5 / 6 + 0.5) / 3, 2 / 3]
    assert [p["value"] for p in curve] == pytest.approx(expected)
    for p in curve:
        assert p["ci"][0] <= p["value"] <= p["ci"][1]


def test_coverage_of_k_above_a_problems_samples_is_its_pass_at_n():
    recs = [problem(cand("1", True), cand("2", False)), problem(*[cand("2", False)] * 3 +
            [cand("1", True)])]  # fmt: skip
    curve = coverage_curve(recs, [4], resamples=10)
    assert curve[0]["value"] == pytest.approx((1.0 + 1.0) / 2)


# --- the exponentiated power law ----------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [(-2.0, -0.5), (-0.7, -0.9), (-4.0, -0.25)])
def test_fit_recovers_known_parameters(a, b):
    ks = [1, 2, 4, 8, 16, 32, 64, 128]
    fit = fit_power_law(ks, [math.exp(a * k**b) for k in ks])
    assert fit is not None
    assert fit.a == pytest.approx(a, rel=1e-9)
    assert fit.b == pytest.approx(b, rel=1e-9)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.max_abs_error < 1e-9
    assert fit.predict(1000) == pytest.approx(math.exp(a * 1000**b))


def test_fit_on_noisy_coverage_stays_close():
    rng = np.random.default_rng(1)
    ks = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256])
    true = np.exp(-1.5 * ks**-0.6)
    fit = fit_power_law(ks.tolist(), np.clip(true + rng.normal(0, 0.005, len(ks)), 0, 1).tolist())
    assert fit is not None
    assert fit.a == pytest.approx(-1.5, rel=0.1)
    assert fit.b == pytest.approx(-0.6, rel=0.1)
    assert fit.r2 > 0.95
    assert fit.max_abs_error < 0.03


def test_fit_leaves_out_coverage_zero_and_one():
    ks = [1, 2, 4, 8, 16]
    coverage = [0.0, math.exp(-2 * 2**-0.5), math.exp(-2 * 4**-0.5), math.exp(-2 * 8**-0.5), 1.0]
    fit = fit_power_law(ks, coverage)
    assert fit is not None
    assert fit.excluded == (1, 16)
    assert fit.points == 3
    assert (fit.a, fit.b) == (pytest.approx(-2.0), pytest.approx(-0.5))
    # The error is measured at every point, the left-out ones included.
    assert fit.max_abs_error == pytest.approx(max(math.exp(-2.0), 1 - math.exp(-2 * 16**-0.5)))


def test_fit_needs_two_usable_points():
    assert fit_power_law([1, 2, 4], [0.0, 0.5, 1.0]) is None
    assert fit_power_law([1, 2], [1.0, 1.0]) is None
    assert fit_power_law([], []) is None
    with pytest.raises(ValueError, match="same length"):
        fit_power_law([1, 2], [0.5])
    with pytest.raises(ValueError, match="k must be > 0"):
        fit_power_law([0, 1], [0.1, 0.2])


# --- the knee and the turn-over -----------------------------------------------------------


def test_knee_of_a_saturating_curve_is_where_kneedle_puts_it():
    # y = 1 − exp(−x) on [0, 10]: the scaled difference y − x peaks at x = ln(10 / (1 − e^−10)).
    xs = np.linspace(0, 10, 1001)
    knee = find_knee(xs.tolist(), (1 - np.exp(-xs)).tolist())
    assert knee is not None
    assert knee.x == pytest.approx(math.log(10 / (1 - math.exp(-10))), abs=0.011)
    assert 0 < knee.strength < 1


def test_knee_on_accuracy_against_tokens():
    tokens = [100, 200, 400, 800, 1600, 3200]
    accuracy = [0.30, 0.42, 0.50, 0.53, 0.54, 0.545]
    knee = find_knee(tokens, accuracy)
    assert knee is not None and knee.x == 400
    # Order does not matter; the index refers to the input.
    shuffled = find_knee(tokens[::-1], accuracy[::-1])
    assert shuffled is not None and shuffled.x == 400 and shuffled.index == 3


def test_no_knee_on_straight_convex_flat_or_short_curves():
    assert find_knee([1, 2, 3, 4], [1, 2, 3, 4]) is None
    assert find_knee([1, 2, 3, 4], [1, 4, 9, 16]) is None
    assert find_knee([1, 2, 3], [0.5, 0.5, 0.5]) is None
    assert find_knee([1, 2], [0.1, 0.9]) is None


def test_knee_uses_the_curve_up_to_its_peak_and_the_turnover_past_it():
    tokens = [100, 200, 400, 800, 1600, 3200]
    accuracy = [0.30, 0.45, 0.52, 0.54, 0.50, 0.46]
    knee = find_knee(tokens, accuracy)  # on [100, 800] only: scaled y − x is 0.48, 0.49, 0
    assert knee is not None and knee.x == 400
    turn = find_turnover(tokens, accuracy)
    assert turn == {"x_peak": 800.0, "y_peak": 0.54, "x_low": 3200.0, "y_low": 0.46,
                    "drop": pytest.approx(0.08)}  # fmt: skip
    assert find_turnover(tokens, [0.3, 0.4, 0.5, 0.55, 0.545, 0.55]) is None  # within tolerance
    assert find_turnover([1, 2], [0.5, 0.6]) is None


# --- selectors by subsampling -------------------------------------------------------------


def test_majority_by_subsampling_matches_a_hand_computed_case():
    # Answers A (right), A (right), B, C. Pairs: {A,A} right; four {A,B}/{A,C} ties, right half
    # the time; {B,C} wrong: (1 + 4 * 0.5 + 0) / 6. Triples: {A,A,B}, {A,A,C} right; two
    # {A,B,C} three-way ties: (2 + 2/3) / 4.
    recs = [problem(cand("A", True), cand("A", True), cand("B", False), cand("C", False))]
    curve = selector_curves(recs, [1, 2, 3, 4], selectors=["majority"], resamples=10)
    assert [p["value"] for p in curve["majority"]] == pytest.approx([0.5, 0.5, 2 / 3, 1.0])


def test_answers_are_normalised_before_the_vote():
    recs = [problem(cand("12", True), cand("$12.0$", True), cand("13", False))]
    curve = selector_curves(recs, [3], selectors=["majority"], resamples=10)
    assert curve["majority"][0]["value"] == 1.0


def test_sampled_subsets_approach_the_exact_value_and_repeat_with_the_seed():
    rng = np.random.default_rng(7)
    answers = rng.choice(["1", "2", "3"], size=14, p=[0.45, 0.35, 0.2])
    recs = [problem(*[cand(str(a), a == "1") for a in answers])]
    exact = selector_curves(recs, [6], selectors=["majority"], trials=10_000, resamples=10)
    sampled = selector_curves(recs, [6], selectors=["majority"], trials=400, seed=3, resamples=10)
    again = selector_curves(recs, [6], selectors=["majority"], trials=400, seed=3, resamples=10)
    assert math.comb(14, 6) > 400  # so the second one samples
    assert sampled == again
    assert sampled["majority"][0]["value"] == pytest.approx(exact["majority"][0]["value"], abs=0.06)


def test_weighted_vote_follows_the_summed_score():
    recs = [problem(cand("A", False, score=0.9), cand("B", True, score=0.3),
                    cand("B", True, score=0.3))]  # fmt: skip
    curves = selector_curves(recs, [3], resamples=10)
    assert set(curves) == {"majority", "weighted", "verifier"}
    assert curves["majority"][0]["value"] == 1.0
    assert curves["weighted"][0]["value"] == 0.0  # 0.9 for A against 0.6 for B
    assert curves["verifier"][0]["value"] == 0.0  # no verdicts: the best score, A


def test_confidence_filter_keeps_the_top_fraction_before_weighing():
    recs = [problem(cand("A", True, confidence=3.0), cand("B", False, confidence=2.0),
                    cand("B", False, confidence=2.0))]  # fmt: skip
    keep_all = selector_curves(recs, [3], selectors=["confidence"], keep_top=1.0, resamples=10)
    assert keep_all["confidence"][0]["value"] == 0.0  # weights: A 3 against B 4
    # The 0.66 quantile of [2, 2, 3] is 2.32: only A is kept.
    top = selector_curves(recs, [3], selectors=["confidence"], keep_top=0.34, resamples=10)
    assert top["confidence"][0]["value"] == 1.0


def test_confidence_vote_leaves_out_candidates_without_one_and_else_is_the_majority():
    recs = [problem(cand("A", True), cand("A", True), cand("B", False, confidence=9.0))]
    curves = selector_curves(recs, [2, 3], selectors=["majority", "confidence"], resamples=10)
    assert values(curves["majority"]) == [pytest.approx(2 / 3), 1.0]
    # {A, A} has no confidence: majority, right. {A, B} twice and {A, A, B}: only B votes.
    assert values(curves["confidence"]) == [pytest.approx(1 / 3), 0.0]


def test_verifier_takes_the_best_scored_pass_and_else_the_majority():
    recs = [
        problem(cand("A", False, passed_public=True, score=0.2),
                cand("B", True, passed_public=True, score=0.8),
                cand("C", False, passed_public=False, score=0.9)),
        problem(cand("A", True, passed_public=False), cand("A", True, passed_public=False),
                cand("B", False, passed_public=False)),
    ]  # fmt: skip
    curves = selector_curves(recs, [3], selectors=["verifier"], resamples=10)
    assert curves["verifier"][0]["value"] == 1.0


def test_code_votes_over_programs_and_scores_the_chosen_candidates_correctness():
    same = "def f(x):\n    return x + 1\n"
    recs = [problem(
        {"text": same, "answer": None, "correct": True},
        {"text": same.replace("\n", "   \n") + "\n\n", "answer": None, "correct": True},
        {"text": "def f(x):\n    return x\n", "answer": None, "correct": False},
        kind="code",
    )]  # fmt: skip
    curve = selector_curves(recs, [3], selectors=["majority"], resamples=10)
    assert curve["majority"][0]["value"] == 1.0


def test_code_votes_over_the_program_in_the_text_not_the_recorded_answer():
    # Runs recorded before code answers were programs hold one line of the program as the
    # answer; two different programs that share that line must not vote together.
    def reply(body: str) -> str:
        return f"Here:\n```python\ndef f(x):\n    y = 1\n    return {body}\n```\nIt works."

    recs = [problem(
        {"text": reply("x - y"), "answer": "y = 1", "correct": False},
        {"text": reply("x - y"), "answer": "y = 1", "correct": False},
        {"text": reply("x + y"), "answer": "y = 1", "correct": True},
        {"text": reply("x + y") + "\n", "answer": "y = 1", "correct": True},
        {"text": reply("x + y"), "answer": "y = 1", "correct": True},
        kind="code",
    )]  # fmt: skip
    curve = selector_curves(recs, [5], selectors=["majority"], resamples=10)
    assert curve["majority"][0]["value"] == 1.0


def test_a_problem_that_failed_is_wrong_for_every_selector():
    recs = [problem(cand("A", True), cand("A", True)),
            {"id": "e", "error": "TimeoutError", "candidates": [], "correct": False}]  # fmt: skip
    curves = selector_curves(recs, resamples=10)
    assert values(curves["majority"]) == [0.5, 0.5]


def test_selector_arguments_are_checked():
    recs = [problem(cand("A", True))]
    with pytest.raises(ValueError, match="unknown selectors"):
        selector_curves(recs, selectors=["oracle"])
    with pytest.raises(ValueError, match="keep_top"):
        selector_curves(recs, keep_top=0.0)
    with pytest.raises(ValueError, match="trials"):
        selector_curves(recs, trials=0)


# --- bootstrap ------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from([0.0, 1.0]), min_size=1, max_size=60), st.integers(0, 1000))
def test_bootstrap_interval_contains_the_mean(data, seed):
    ci = bootstrap_ci(data, resamples=300, seed=seed)
    assert ci is not None
    assert 0.0 <= ci[0] <= float(np.mean(data)) <= ci[1] <= 1.0


def test_bootstrap_is_seeded_and_narrows_with_more_problems():
    small = [1, 0] * 10
    large = [1, 0] * 500
    assert bootstrap_ci(small, seed=5) == bootstrap_ci(small, seed=5)
    lo_s, hi_s = bootstrap_ci(small)
    lo_l, hi_l = bootstrap_ci(large)
    assert hi_l - lo_l < hi_s - lo_s
    # A binomial mean's 95 % interval is about ±1.96·sqrt(p(1−p)/m).
    assert hi_l - lo_l == pytest.approx(2 * 1.96 * math.sqrt(0.25 / 1000), rel=0.15)


def test_bootstrap_edge_cases():
    assert bootstrap_ci([]) is None
    assert bootstrap_ci([1.0, 1.0, 1.0]) == (1.0, 1.0)
    with pytest.raises(ValueError, match="level"):
        bootstrap_ci([0, 1], level=1.0)
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci([0, 1], resamples=0)


# --- accuracy, cost, caps and the verification gap ----------------------------------------


def usage(total, flops=0.0, calls=1, prompt=10):
    return {"prompt_tokens": prompt, "completion_tokens": total - prompt, "total_tokens": total,
            "calls": calls, "flops": flops, "wall_s": 1.0}  # fmt: skip


def test_totals_and_per_problem():
    recs = [
        {"id": "a", "correct": True, "usage": usage(100, 2e9), "wall_s": 2.0},
        {"id": "b", "correct": False, "usage": usage(300, 6e9), "wall_s": 1.0},
        {"id": "c", "correct": True, "error": "BackendError", "usage": usage(0, 0.0, 0, 0)},
    ]
    t = totals(recs, resamples=100)
    assert (t["problems"], t["correct"], t["errors"]) == (3, 1, 1)  # an error is never correct
    assert t["accuracy"] == pytest.approx(1 / 3)
    assert (t["total_tokens"], t["flops"], t["calls"]) == (400, 8e9, 2)
    assert t["mean_tokens"] == pytest.approx(400 / 3)
    assert t["ci"][0] <= t["accuracy"] <= t["ci"][1]
    rows = per_problem(recs)
    assert [(r["id"], r["correct"], r["tokens"], r["flops"]) for r in rows] == [
        ("a", True, 100, 2e9), ("b", False, 300, 6e9), ("c", False, 0, 0.0)]  # fmt: skip
    assert totals([{"correct": True, "usage": usage(5)}])["flops"] is None


def test_thinking_cap_is_read_from_the_record_or_its_decisions():
    assert thinking_cap({"thinking_cap": 128}) == 128
    assert thinking_cap({"metadata": {"thinking_cap": 64}}) == 64
    assert thinking_cap({"decisions": [{"kind": "fanout"},
                                       {"kind": "budget_forcing", "max_thinking_tokens": 256}]}) == 256  # fmt: skip
    assert thinking_cap({"decisions": [{"kind": "thinking",
                                        "controls": {"thinking_budget": 512}}]}) == 512  # fmt: skip
    assert thinking_cap({"decisions": [{"kind": "thinking", "controls": {}}]}) is None
    rows = accuracy_by_thinking_cap(
        [{"correct": True, "thinking_cap": 256}, {"correct": False, "thinking_cap": 64},
         {"correct": True, "thinking_cap": 64}, {"correct": True}], resamples=50)  # fmt: skip
    assert [(r["cap"], r["problems"], r["accuracy"]) for r in rows] == [(64, 2, 0.5), (256, 1, 1.0)]


def test_verification_gap_of_code():
    recs = [
        problem({"passed_public": True, "correct": True}, {"passed_public": True, "correct": False},
                kind="code", public_passed=True, correct=True),
        problem({"passed_public": True, "correct": False}, {"passed_public": False, "correct": True},
                kind="code", public_passed=True, correct=False),
        problem({"passed_public": False, "correct": False}, kind="code", public_passed=False,
                correct=False),
        problem(cand("1", True), public_passed=True, correct=True),  # math: not counted
    ]  # fmt: skip
    gap = verification_gap(recs, resamples=100)
    assert gap is not None
    assert (gap["problems"], gap["n"]) == (3, 3)
    assert gap["public"] == pytest.approx(2 / 3)
    assert gap["hidden"] == pytest.approx(1 / 3)
    assert gap["gap"] == pytest.approx(1 / 3)
    assert (gap["false_pass"], gap["missed"], gap["false_pass_rate"]) == (1, 0, 0.5)
    c = gap["candidates"]
    assert (c["n"], c["public_passes"], c["hidden_passes"], c["false_pass"], c["missed"]) == (
        5, 3, 2, 2, 1)  # fmt: skip
    assert verification_gap([problem(cand("1", True))]) is None


# --- compute curve and summary ------------------------------------------------------------


def test_compute_curve_estimates_tokens_for_k_samples():
    recs = [
        problem(cand("A", True, completion_tokens=10), cand("A", True, completion_tokens=30),
                cand("B", False, completion_tokens=20), usage=usage(70, flops=7e3, prompt=10)),
    ]  # fmt: skip
    curve = compute_curve(recs)
    # Prompt per call 10, plus k times the mean completion (20); FLOPs at 100 per token.
    assert [(p["k"], p["tokens"], p["flops"]) for p in curve["points"]] == [
        (1, 30.0, pytest.approx(3e3)), (2, 50.0, pytest.approx(5e3)),
        (3, 70.0, pytest.approx(7e3))]  # fmt: skip
    assert [p["accuracy"] for p in curve["points"]] == pytest.approx([2 / 3, 2 / 3, 1.0])


def synthetic_run(m=40, n=8, seed=0):
    rng = np.random.default_rng(seed)
    recs = []
    for i in range(m):
        p = rng.random()
        cands = []
        for j in range(n):
            ok = bool(rng.random() < p)
            answer = "42" if ok else str(rng.choice([1, 2, 3]))
            cands.append({"index": j, "text": answer, "answer": answer, "correct": ok,
                          "score": float(ok) * 0.5 + float(rng.random()) * 0.6,
                          "confidence": 5 + 2 * ok + float(rng.random()),
                          "passed_public": None, "completion_tokens": int(rng.integers(20, 80))})  # fmt: skip
        recs.append({"id": f"q{i}", "dataset": "a" if i % 2 else "b", "kind": "math",
                     "correct": cands[0]["correct"], "strategy": "best_of_n",
                     "difficulty": {"score": 1 - p, "bin": "easy" if p > 0.5 else "hard"},
                     "candidates": cands, "usage": usage(400, 4e9), "error": None})  # fmt: skip
    return recs


def test_summarize_holds_every_section_as_json():
    recs = synthetic_run()
    recs.append({"id": "bad", "dataset": "a", "kind": "math", "correct": False, "candidates": [],
                 "usage": usage(0, 0.0, 0, 0), "error": "BackendError: engine dead"})  # fmt: skip
    s = summarize(recs, resamples=200, trials=64)
    json.dumps(s)  # plain values only
    assert s["errors"] == [{"id": "bad", "error": "BackendError: engine dead"}]
    assert s["totals"]["problems"] == 41
    assert s["settings"]["ks"] == [1, 2, 4, 8]
    assert set(s["selectors"]) == {"majority", "weighted", "confidence", "verifier"}
    cov = [p["value"] for p in s["coverage"]["points"]]
    assert cov == sorted(cov)
    for name, curve in s["selectors"].items():
        for point, ceiling in zip(curve, cov, strict=True):
            assert point["value"] <= ceiling + 1e-12, name  # no selector beats coverage
    assert s["selectors"]["majority"][0]["value"] == pytest.approx(cov[0])  # k=1: pass@1
    assert s["coverage"]["fit"]["r2"] > 0.9
    assert set(s["compute"]) == {"all", "a", "b"}
    # Uniform best-of-k by the verifier (here the scores): its accuracies are the selector's,
    # at the same costs as majority's.
    verified = s["compute_verified"]
    assert verified["selector"] == "verifier"
    assert [p["accuracy"] for p in verified["points"]] == pytest.approx(
        [p["value"] for p in s["selectors"]["verifier"]]
    )
    assert [p["tokens"] for p in verified["points"]] == [
        p["tokens"] for p in s["compute"]["all"]["points"]
    ]
    assert [r["group"] for r in s["by_difficulty"]] == ["easy", "hard"]
    assert s["verification_gap"] is None
    assert s["samples"] == {"min": 8, "max": 8, "mean": 8.0, "histogram": {"8": 40}}


def test_summarize_of_nothing():
    s = summarize([], resamples=10)
    assert s["totals"]["accuracy"] is None
    assert s["coverage"] == {"points": [], "fit": None}
    assert s["compute"] == {} and s["compute_verified"] is None

"""The tournament node (knockout and league) with fake pairwise judges."""

import math
from collections import Counter

import pytest
from langgraph.graph import END, START, StateGraph

from tts_graph import Budget, BudgetExhausted, ConfigError, StateKeys, TTSState, Usage
from tts_graph.candidate import Candidate
from tts_graph.errors import BackendError
from tts_graph.nodes.tournament import make_tournament_node
from tts_graph.testing import FakeBackend
from tts_graph.verifiers.answer import extract_answer
from tts_graph.verifiers.judge import LLMJudge, Preference

CALL_USAGE = Usage(prompt_tokens=10, completion_tokens=3, calls=1)


class FakeJudge:
    """Decides by ``decide(a, b) -> "A" | "B" | None``; records every (a, b) it was shown."""

    def __init__(self, decide):
        self.decide = decide
        self.calls: list[tuple[str, str]] = []

    async def compare(self, question, a, b):
        self.calls.append((a, b))
        return Preference(winner=self.decide(a, b), raw="", usage=CALL_USAGE)


def value(text):
    return int(extract_answer(text))


def prefers_larger(a, b):
    return "A" if value(a) > value(b) else "B"


def always_a(a, b):
    return "A"


def cands(*answers):
    return [
        Candidate(index=i, text=f"I think it is {a}.", answer=str(a)) for i, a in enumerate(answers)
    ]


async def run(node, candidates, **state):
    return await node({"question": "What is 7+5?", "candidates": candidates, **state})


@pytest.mark.parametrize("n", range(2, 10))
@pytest.mark.parametrize("k", range(1, 5))
async def test_knockout_makes_exactly_n_minus_1_times_k_calls_in_log2_rounds(n, k):
    judge = FakeJudge(prefers_larger)
    out = await run(make_tournament_node(judge, judgements=k), cands(*range(n)))
    record = out["decisions"][0]
    assert len(judge.calls) == record["judge_calls"] == (n - 1) * k
    assert len(record["bracket"]) == math.ceil(math.log2(n))
    assert out["answer"] == str(n - 1)  # a consistent judge crowns the best
    assert out["usage"].calls == (n - 1) * k
    assert out["usage"].prompt_tokens == 10 * (n - 1) * k


@pytest.mark.parametrize("k", [1, 2, 3, 4])
async def test_each_pair_sees_both_orders_half_the_time(k):
    judge = FakeJudge(prefers_larger)
    candidates = cands(*range(6))
    await run(make_tournament_node(judge, judgements=k), candidates)
    index_of = {c.text: c.index for c in candidates}
    shown = Counter((index_of[a], index_of[b]) for a, b in judge.calls)
    pairs = {tuple(sorted(p)) for p in shown}
    assert len(pairs) == 5
    for low, high in pairs:
        assert shown[(low, high)] == (k + 1) // 2  # the lower index is A in the extra call
        assert shown[(high, low)] == k // 2


@pytest.mark.parametrize(
    ("n", "shape"),
    [(5, [(2, True), (1, True), (1, False)]), (7, [(3, True), (2, False), (1, False)])],
)
async def test_odd_candidates_get_byes(n, shape):
    out = await run(make_tournament_node(FakeJudge(prefers_larger), judgements=1), cands(*range(n)))
    bracket = out["decisions"][0]["bracket"]
    seen = []
    for rnd in bracket:
        byes = [m for m in rnd["matches"] if m["bye"]]
        games = [m for m in rnd["matches"] if not m["bye"]]
        seen.append((len(games), bool(byes)))
        assert all(len(m["pair"]) == 1 and m["votes"] == [] for m in byes)
    assert seen == shape
    assert bracket[0]["matches"][-1] == {
        "pair": [n - 1], "votes": [], "no_votes": 0, "winner": n - 1,
        "identical": False, "bye": True, "tie_break": None,
    }  # fmt: skip
    assert out["answer"] == str(n - 1)


async def test_identical_answers_advance_without_judging_when_the_task_names_an_extractor():
    judge = FakeJudge(prefers_larger)
    candidates = [
        Candidate(index=0, text="7 + 5 = 12", answer="12"),
        Candidate(index=1, text="The answer is 12.0", answer="12.0"),
        Candidate(index=2, text="13", answer="13"),
        Candidate(index=3, text="11", answer="11"),
    ]
    out = await run(make_tournament_node(judge, judgements=2, extract=extract_answer), candidates)
    first = out["decisions"][0]["bracket"][0]["matches"][0]
    assert first["identical"] is True and first["winner"] == 0 and first["votes"] == [0, 0]
    assert len(judge.calls) == 2 * 2  # 2 of the 3 games judged
    assert out["answer"] == "13"


async def test_different_texts_with_the_same_extracted_answer_are_judged_by_default():
    # Two programs that both "extract" to 1: only the judge can tell the buggy one.
    good = "def f(x):\n    return x - 1\n\nf(2) gives 1"
    buggy = "def f(x):\n    return 1\n\nf(2) gives 1"
    candidates = [
        Candidate(index=0, text=buggy, answer="1"),
        Candidate(index=1, text=good, answer="1"),
    ]
    judge = FakeJudge(lambda a, b: "A" if "x - 1" in a else "B")
    out = await run(make_tournament_node(judge, judgements=2), candidates)
    assert len(judge.calls) == 2
    assert out["decisions"][0]["bracket"][0]["matches"][0]["identical"] is False
    assert out["response"] == good


async def test_texts_equal_up_to_case_spacing_and_final_period_are_identical():
    judge = FakeJudge(always_a)
    candidates = [
        Candidate(index=0, text="The answer is 12."),
        Candidate(index=1, text="the  answer is 12"),
    ]
    out = await run(make_tournament_node(judge, judgements=2), candidates)
    assert judge.calls == []
    assert out["decisions"][0]["bracket"][0]["matches"][0]["identical"] is True


async def test_identity_falls_back_to_stripped_text_without_answers():
    judge = FakeJudge(always_a)
    candidates = [Candidate(index=0, text="same "), Candidate(index=1, text=" same")]
    out = await run(make_tournament_node(judge, judgements=2), candidates)
    assert judge.calls == []
    assert out["response"] == "same "


async def test_same_texts_meeting_again_are_served_from_the_cache():
    # 0 and 3 share a text; 1 beats 0 in round 1, so round 2 (1 vs 3) is the same comparison.
    texts = ["Answer: 5", "Answer: 9", "Answer: 1", "Answer: 5"]
    candidates = [Candidate(index=i, text=t) for i, t in enumerate(texts)]
    judge = FakeJudge(prefers_larger)
    out = await run(make_tournament_node(judge, judgements=2), candidates)
    record = out["decisions"][0]
    assert len(judge.calls) == len(set(judge.calls)) == 4
    assert record["cache_hits"] == 2 and record["judge_calls"] == 4
    assert record["bracket"][1]["matches"][0]["pair"] == [1, 3]
    assert out["answer"] == "9"
    assert out["usage"].calls == 4


async def test_position_biased_judge_ties_every_game_and_scores_zero_consistency():
    judge = FakeJudge(always_a)
    out = await run(make_tournament_node(judge, judgements=2, seed=3), cands(*range(8)))
    record = out["decisions"][0]
    games = [m for rnd in record["bracket"] for m in rnd["matches"]]
    assert all(m["votes"] == [1, 1] and m["tie_break"] == "random" for m in games)
    assert record["consistency"] == 0.0


async def test_random_tie_breaks_are_reproducible_and_depend_on_the_seed():
    async def winner(seed):
        node = make_tournament_node(FakeJudge(always_a), judgements=2, seed=seed)
        return (await run(node, cands(*range(8))))["decisions"][0]["winner"]

    first = [await winner(s) for s in range(10)]
    assert first == [await winner(s) for s in range(10)]
    assert len(set(first)) > 1


async def test_consistent_judge_picks_the_correct_answer_with_consistency_one():
    def correct_first(a, b):
        if "12" in a or "12" in b:
            return "A" if "12" in a else "B"
        return prefers_larger(a, b)

    out = await run(
        make_tournament_node(FakeJudge(correct_first), judgements=4), cands(13, 15, 12, 11)
    )
    record = out["decisions"][0]
    assert out["answer"] == "12"
    assert out["response"] == "I think it is 12."
    assert record["winner"] == 2
    assert record["consistency"] == 1.0


async def test_mixed_judge_consistency_is_the_agreeing_fraction():
    # Consistent when 0 is involved, position-biased otherwise: rounds 1 (0v1, 2v3) and 2 (0v2).
    def decide(a, b):
        if value(a) == 0 or value(b) == 0:
            return "A" if value(a) == 0 else "B"
        return "A"

    out = await run(make_tournament_node(FakeJudge(decide), judgements=2), cands(0, 1, 2, 3))
    assert out["decisions"][0]["consistency"] == pytest.approx(2 / 3)


async def test_unparseable_replies_are_no_votes():
    judge = FakeJudge(lambda a, b: None)
    out = await run(make_tournament_node(judge, judgements=3), cands(1, 2))
    record = out["decisions"][0]
    (game,) = record["bracket"][0]["matches"]
    assert game["votes"] == [0, 0] and game["no_votes"] == 3 and game["tie_break"] == "random"
    assert record["consistency"] is None
    assert out["answer"] in ("1", "2")


async def test_one_sided_no_votes_leave_the_remaining_votes_to_decide():
    # Only the (B, A) order parses: 2 shown as A wins one vote; the other calls are no votes.
    judge = FakeJudge(lambda a, b: "A" if value(a) == 2 else None)
    out = await run(make_tournament_node(judge, judgements=3), cands(1, 2))
    (game,) = out["decisions"][0]["bracket"][0]["matches"]
    assert game["votes"] == [0, 1] and game["no_votes"] == 2
    assert out["answer"] == "2"


async def test_a_failing_judge_is_recorded_and_never_crashes_the_graph():
    class Broken(FakeJudge):
        async def compare(self, question, a, b):
            self.calls.append((a, b))
            if value(a) == 3 or value(b) == 3:
                raise BackendError("judge server down", retryable=True)
            return Preference(winner=prefers_larger(a, b), raw="", usage=CALL_USAGE)

    judge = Broken(prefers_larger)
    out = await run(make_tournament_node(judge, judgements=2), cands(0, 1, 2, 3))
    record = out["decisions"][0]
    errors = record["judge_errors"]
    assert len(errors) >= 2 and errors[0] == {"error": "judge server down", "retryable": True}
    assert record["judge_calls"] == 6
    # Failed calls report no usage; the others do.
    assert out["usage"].calls == 6 - len(errors)
    assert record["bracket"][0]["matches"][1]["no_votes"] == 2
    assert out["answer"] is not None


def metered_judge(decide, words=3):
    """An LLMJudge over a fake server: ``decide(a, b)`` picks, the reply is ``words`` long."""

    def reply(request, i):
        _, a, b = request.messages[-1]["content"].split("Answer ")
        winner = decide(a[2:].strip(), b[2:].strip())
        return " ".join(["so"] * (words - 2) + ["Winner:", winner])

    backend = FakeBackend(reply)
    return LLMJudge(backend), backend


def graph_of(node):
    builder = StateGraph(TTSState)
    builder.add_node("tournament", node)
    builder.add_edge(START, "tournament")
    builder.add_edge("tournament", END)
    return builder.compile()


async def test_budget_stops_the_knockout_mid_bracket_and_the_best_survivor_wins():
    judge, backend = metered_judge(prefers_larger)
    graph = graph_of(make_tournament_node(judge, judgements=2))
    # Round 1 needs 4 calls, round 2 two more: 5 calls fit round 1 and half of round 2.
    state = await graph.ainvoke(
        {"question": "q", "candidates": cands(5, 1, 2, 7), "budget": Budget(max_calls=5)}
    )
    record = state["decisions"][0]
    assert record["reason"] == "budget"
    assert len(backend.requests) == state["usage"].calls == 5
    assert record["bracket"][-1]["cut"] is True
    assert record["winner"] == 0  # survivors 0 and 3 have one win each: the lower index
    assert state["answer"] == "5"


async def test_token_budget_holds_across_a_concurrent_round_of_judge_calls():
    # Sixteen candidates: eight games of four judgements run at once in round one.
    judge, _backend = metered_judge(prefers_larger, words=40)
    graph = graph_of(make_tournament_node(judge, judgements=4))
    budget = Budget(max_total_tokens=500)
    state = await graph.ainvoke(
        {"question": "q", "candidates": cands(*range(16)), "budget": budget}
    )
    assert state["usage"].total_tokens <= 500
    assert state["decisions"][0]["reason"] == "budget"
    assert state["answer"] is not None


async def test_a_game_the_budget_leaves_unfinished_decides_nothing():
    judge, backend = metered_judge(prefers_larger)
    state = await graph_of(make_tournament_node(judge, judgements=2)).ainvoke(
        {"question": "q", "candidates": cands(5, 9), "budget": Budget(max_calls=1)}
    )
    # One of the game's two judgements fits: the game is not played, the lower index wins.
    record = state["decisions"][0]
    assert state["usage"].calls == len(backend.requests) == 1
    assert record["reason"] == "budget" and record["bracket"][0]["matches"] == []
    assert state["answer"] == "5"


async def test_strict_budget_raises_mid_tournament():
    judge, backend = metered_judge(prefers_larger)
    graph = graph_of(make_tournament_node(judge, judgements=2))
    with pytest.raises(BudgetExhausted, match="calls"):
        await graph.ainvoke(
            {
                "question": "q",
                "candidates": cands(5, 1, 2, 7),
                "budget": Budget(max_calls=5, strict=True),
            }
        )
    assert len(backend.requests) == 5


async def test_a_judge_that_spends_outside_the_library_is_counted_and_stopped_between_rounds():
    judge = FakeJudge(prefers_larger)  # reports CALL_USAGE per call, charges nothing itself
    node = make_tournament_node(judge, judgements=2)
    out = await run(node, cands(5, 1, 2, 7), budget=Budget(max_calls=4))
    record = out["decisions"][0]
    assert len(judge.calls) == 4 and out["usage"].calls == 4
    assert out["usage"].prompt_tokens == 4 * CALL_USAGE.prompt_tokens
    assert record["reason"] == "budget" and record["winner"] == 0


async def test_league_win_rates_rank_the_candidates():
    judge = FakeJudge(prefers_larger)
    out = await run(
        make_tournament_node(judge, mode="league", judgements=2, opponents=2), cands(1, 3, 2)
    )
    record = out["decisions"][0]
    standings = {s["index"]: s["score"] for s in record["standings"]}
    assert standings == {0: 0.0, 1: 1.0, 2: 0.5}
    assert all(s["games"] == 2 for s in record["standings"])
    assert len(judge.calls) == 3 * 2
    assert out["answer"] == "3"


async def test_league_plays_each_drawn_pair_once_even_when_drawn_by_both():
    # With opponents = N - 1 every pair is drawn by both players: judged once each.
    judge = FakeJudge(prefers_larger)
    node = make_tournament_node(judge, mode="league", judgements=2, opponents=9)
    out = await run(node, cands(*range(5)))
    record = out["decisions"][0]
    assert record["opponents"] == 4
    assert len(judge.calls) == len(set(judge.calls)) == 10 * 2
    assert len(record["games"]) == 10
    assert out["answer"] == "4"


async def test_league_schedule_is_seeded_and_each_candidate_plays_enough():
    async def schedule(seed):
        node = make_tournament_node(FakeJudge(prefers_larger), mode="league", judgements=1, opponents=2,
                                    seed=seed)  # fmt: skip
        record = (await run(node, cands(*range(8))))["decisions"][0]
        assert all(s["games"] >= 2 for s in record["standings"])
        return [tuple(g["pair"]) for g in record["games"]]

    assert await schedule(1) == await schedule(1)
    assert len({tuple(await schedule(s)) for s in range(5)}) > 1


async def test_league_reuses_cached_judgements_for_duplicate_texts():
    texts = ["Answer: 5", "Answer: 9", "Answer: 5"]
    candidates = [Candidate(index=i, text=t) for i, t in enumerate(texts)]
    judge = FakeJudge(prefers_larger)
    node = make_tournament_node(judge, mode="league", judgements=2, opponents=2)
    out = await run(node, candidates)
    record = out["decisions"][0]
    assert len(judge.calls) == 2  # 0 v 1 judged; 1 v 2 from the cache; 0 v 2 identical
    assert record["cache_hits"] == 2
    standings = {s["index"]: s["score"] for s in record["standings"]}
    assert standings == {0: 0.25, 1: 1.0, 2: 0.25}


async def test_league_cut_by_the_budget_ranks_by_the_games_judged_in_full():
    judge, backend = metered_judge(prefers_larger)
    graph = graph_of(make_tournament_node(judge, mode="league", judgements=2, opponents=2))
    state = await graph.ainvoke(
        {"question": "q", "candidates": cands(1, 3, 2), "budget": Budget(max_calls=3)}
    )
    record = state["decisions"][0]
    assert record["reason"] == "budget"
    assert len(backend.requests) == 3
    assert len(record["games"]) == 1  # three calls finish one game of two judgements
    with pytest.raises(BudgetExhausted):
        await graph.ainvoke(
            {
                "question": "q",
                "candidates": cands(1, 3, 2),
                "budget": Budget(max_calls=3, strict=True),
            }
        )


async def test_no_candidates_and_a_single_candidate():
    judge = FakeJudge(prefers_larger)
    node = make_tournament_node(judge)
    empty = await run(node, [])
    assert empty["answer"] is None and empty["response"] is None
    assert empty["decisions"][0]["reason"] == "no candidates"
    single = await run(node, cands(42))
    assert single["answer"] == "42"
    assert single["decisions"][0]["bracket"] == [] and judge.calls == []


async def test_renamed_keys_strategy_and_answer_extraction_from_text():
    keys = StateKeys(question="task", candidates="drafts", answer="final", decisions="log")
    judge = FakeJudge(prefers_larger)
    node = make_tournament_node(judge, judgements=1, keys=keys, strategy="tournament", name="duel")
    drafts = [Candidate(index=4, text="So 3"), Candidate(index=2, text="Then 8")]
    out = await node({"task": "q", "drafts": drafts})
    assert out["final"] == "8"
    assert out["strategy"] == "tournament"
    assert out["log"][0]["node"] == "duel" and out["log"][0]["bracket"][0]["matches"][0][
        "pair"
    ] == [2, 4]


async def test_llm_judge_fits_and_the_decision_is_streamed_in_a_graph():
    def reply(request, i):
        # Prefers 12, then the larger number: the same verdict in either order.
        _, a, b = request.messages[-1]["content"].split("Answer ")
        key_a, key_b = ((value(x) == 12, value(x)) for x in (a[2:], b[2:]))
        return "Winner: A" if key_a > key_b else "Winner: B"

    builder = StateGraph(TTSState)
    builder.add_node("judge", make_tournament_node(LLMJudge(FakeBackend(reply)), judgements=2))
    builder.add_edge(START, "judge")
    builder.add_edge("judge", END)
    graph = builder.compile()
    inputs = {"question": "What is 7+5?", "candidates": cands(11, 13, 12)}
    events = [e async for e in graph.astream(inputs, stream_mode="custom")]
    assert [e["tts_graph"]["kind"] for e in events] == ["tournament"]
    state = await graph.ainvoke(inputs)
    assert state["answer"] == "12"
    assert state["usage"].calls == 2 * 2
    assert state["decisions"][0]["consistency"] == 1.0


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"mode": "swiss"}, "knockout, league"),
        ({"judgements": 0}, r"judgements \(per pair\) must be >= 1"),
        ({"opponents": 0}, "opponents"),
    ],
)
def test_bad_options_fail_at_build_time(options, needle):
    with pytest.raises(ConfigError, match=needle):
        make_tournament_node(FakeJudge(always_a), **options)


def test_a_judge_without_compare_is_refused():
    with pytest.raises(ConfigError, match="compare"):
        make_tournament_node(object())

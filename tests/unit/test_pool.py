"""Choosing among a fixed pool of answers: the draw, the graph, as a tournament's source, in a
spec, and in the eval harness (CHAMP-style problems that carry their pool)."""

from __future__ import annotations

import pytest

from tts_graph.budget import Usage
from tts_graph.errors import ConfigError
from tts_graph.eval.datasets import EvalProblem
from tts_graph.eval.harness import run_eval
from tts_graph.graphs import create_pool_graph, create_tournament_graph
from tts_graph.nodes.pool import draw_from_pool
from tts_graph.spec import load_spec
from tts_graph.spec.cost import worst_case
from tts_graph.testing import FakeBackend
from tts_graph.verifiers.judge import Preference

POOL = [f"I think the answer is {v}. Answer: {v}" for v in (7, 3, 7, 9, 7, 3, 1, 2, 7, 3)]


def test_a_draw_is_fixed_by_its_seed_and_nests():
    first = draw_from_pool(POOL, 6, seed=1)
    assert first == draw_from_pool(POOL, 6, seed=1)
    assert len(set(first)) == 6  # without replacement
    assert draw_from_pool(POOL, 3, seed=1) == first[:3]
    assert draw_from_pool(POOL, 6, seed=2) != first
    assert sorted(draw_from_pool(POOL, 50, seed=1)) == list(range(len(POOL)))


async def test_the_graph_votes_over_the_drawn_answers_and_spends_nothing():
    out = await create_pool_graph(n=4, seed=5).compile().ainvoke({"question": "q", "pool": POOL})
    drawn = draw_from_pool(POOL, 4, seed=5)
    assert [c.text for c in out["candidates"]] == [POOL[p] for p in drawn]
    assert [c.answer for c in out["candidates"]] == [POOL[p].rsplit(" ", 1)[-1] for p in drawn]
    answers = [c.answer for c in out["candidates"]]
    assert answers.count(out["answer"]) == max(answers.count(a) for a in answers)
    assert out["usage"] == Usage()
    (record,) = [d for d in out["decisions"] if d["kind"] == "pool"]
    assert record["pool_size"] == len(POOL) and record["positions"] == drawn


@pytest.mark.parametrize("pool", [None, [], "one answer", [1, 2]])
async def test_a_missing_or_malformed_pool_says_what_to_give(pool):
    state = {"question": "q"} if pool is None else {"question": "q", "pool": pool}
    with pytest.raises(ConfigError, match=r"pool=\['first answer'"):
        await create_pool_graph(n=2).compile().ainvoke(state)


class LargerWins:
    def __init__(self) -> None:
        self.shown: set[str] = set()

    async def compare(self, question, a, b):
        self.shown |= {a, b}
        winner = "A" if int(a.rsplit(" ", 1)[-1]) > int(b.rsplit(" ", 1)[-1]) else "B"
        return Preference(winner=winner, raw="", usage=Usage(calls=1, completion_tokens=1))


async def test_a_tournament_judges_only_the_drawn_answers():
    judge = LargerWins()
    graph = create_tournament_graph(None, judge, candidates=create_pool_graph(n=4, seed=3))
    out = await graph.compile().ainvoke({"question": "q", "pool": POOL})
    drawn = {POOL[p] for p in draw_from_pool(POOL, 4, seed=3)}
    assert {c.text for c in out["candidates"]} == drawn
    assert judge.shown == drawn
    assert out["answer"] == str(max(int(t.rsplit(" ", 1)[-1]) for t in drawn))


def test_a_spec_names_the_pool_as_a_strategy_and_as_a_tournament_source():
    alone = load_spec({"strategy": {"kind": "pool", "n": 8}})
    assert worst_case(alone).calls == 0  # nothing is generated
    judged = load_spec({"strategy": {"kind": "tournament", "candidates": {"kind": "pool", "n": 4}}})
    assert worst_case(judged).calls == 3 * 2  # a knockout over 4: 3 games, judged twice
    with pytest.raises(ConfigError, match=r"strategy\.n"):
        load_spec({"strategy": {"kind": "pool", "n": 0}})


async def test_the_eval_harness_gives_each_problem_its_pool(tmp_path):
    class Exact:
        async def correct(self, problem, text):
            return text.rsplit(" ", 1)[-1] == problem.gold

        async def close(self):
            pass

    problems = [
        EvalProblem(id="p/1", dataset="pools", kind="math", question="q1", gold="7", pool=tuple(POOL)),
        EvalProblem(id="p/2", dataset="pools", kind="math", question="q2", gold="5",
                    pool=("Answer: 5", "Answer: 6", "Answer: 5")),
    ]  # fmt: skip
    spec = load_spec({"strategy": {"kind": "pool", "n": 10}})
    unused = FakeBackend(lambda request, i: pytest.fail("a pool strategy must not generate"))
    records = await run_eval(spec, problems, unused, tmp_path, dataset="pools", judge=Exact())
    by_id = {r["id"]: r for r in records}
    assert [c["text"] for c in by_id["p/2"]["candidates"]] == [
        ("Answer: 5", "Answer: 6", "Answer: 5")[p] for p in draw_from_pool(["", "", ""], 3, 0)
    ]
    assert by_id["p/1"]["correct"] and by_id["p/2"]["correct"]
    assert sum(c["correct"] for c in by_id["p/1"]["candidates"]) == POOL.count(POOL[0])

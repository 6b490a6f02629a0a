"""The verifier node and best-of-N with a verifier, with fakes."""

import pytest

from tts_graph import Budget, create_best_of_n_graph
from tts_graph.budget import Usage
from tts_graph.candidate import Candidate
from tts_graph.nodes.verify import make_verify_node
from tts_graph.testing import FakeBackend
from tts_graph.verifiers.base import Problem, Verdict
from tts_graph.verifiers.registry import FunctionVerifier


class Recorder:
    name = "recorder"

    def __init__(self, uses_model=False, result=None, boom=False):
        self.uses_model = uses_model
        self.seen = []
        self.result = result
        self.boom = boom

    async def verify(self, problem, candidates):
        self.seen.append((problem, list(candidates)))
        if self.boom:
            raise RuntimeError("verifier crashed")
        if self.result is not None:
            return self.result
        return [
            Verdict(
                passed="12" in c,
                score=float("12" in c),
                reason="checked",
                usage=Usage(calls=1, prompt_tokens=3) if self.uses_model else None,
            )
            for c in candidates
        ]


def cands(*texts):
    return [Candidate(index=i, text=t) for i, t in enumerate(texts)]


async def test_verdicts_and_scores_are_written_to_the_candidates():
    rec = Recorder()
    out = await make_verify_node(rec)(
        {"question": "7+5?", "reference": "12", "candidates": cands("12", "13")}
    )
    problem, texts = rec.seen[0]
    assert problem == Problem("7+5?", reference="12")
    assert texts == ["12", "13"]
    assert [c.verdict.passed for c in out["candidates"]] == [True, False]
    assert [c.score for c in out["candidates"]] == [1.0, 0.0]
    record = out["decisions"][0]
    assert (record["checked"], record["passed"], record["skipped"]) == (2, 1, 0)
    assert "usage" not in out  # a local verifier costs no model calls


async def test_already_verified_candidates_are_not_checked_again():
    rec = Recorder()
    done = Candidate(index=0, text="12", verdict=Verdict(passed=True, score=1.0, reason="earlier"))
    await make_verify_node(rec)(
        {"question": "q", "candidates": [done, Candidate(index=1, text="x")]}
    )
    assert rec.seen[0][1] == ["x"]


async def test_model_verifiers_stop_at_the_budget_and_report_usage():
    rec = Recorder(uses_model=True)
    state = {
        "question": "q",
        "candidates": cands("12", "13", "12"),
        "budget": Budget(max_calls=3),
        "usage": Usage(calls=1),
    }
    out = await make_verify_node(rec)(state)
    # One check per candidate, each holding a call: 2 calls left, 2 checks.
    assert [texts for _, texts in rec.seen] == [["12"], ["13"]]
    assert out["decisions"][0]["skipped"] == 1
    assert out["decisions"][0]["reason"] == "budget"
    assert [c.index for c in out["candidates"]] == [0, 1]
    # The recorder spends through no backend: the usage it reports is counted.
    assert out["usage"].calls == 2
    assert out["usage"].prompt_tokens == 6


@pytest.mark.parametrize(
    ("rec", "needle"),
    [
        (Recorder(boom=True), "RuntimeError: verifier crashed"),
        (Recorder(result=[]), "returned 0 verdicts for 2"),
    ],
)
async def test_a_broken_verifier_fails_the_candidates_not_the_graph(rec, needle):
    out = await make_verify_node(rec)({"question": "q", "candidates": cands("a", "b")})
    assert all(c.verdict.passed is False and needle in c.verdict.reason for c in out["candidates"])


async def test_best_of_n_with_a_verifier_selects_a_passing_candidate():
    backend = FakeBackend(lambda r, i: ["Answer: 13", "Answer: 13", "Answer: 12"][i])
    verifier = FunctionVerifier(lambda p, c: "12" in c, name="has12")
    graph = create_best_of_n_graph(backend, n=3, verifier=verifier).compile()
    state = await graph.ainvoke({"question": "7+5?"})
    # Majority would say 13; the verifier picks the passing candidate.
    assert state["answer"] == "12"
    assert [d["kind"] for d in state["decisions"]] == ["fanout", "verify", "select"]
    assert state["decisions"][-1]["rule"] == "best_score"

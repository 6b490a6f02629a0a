"""Self-refine with a scripted fake model."""

import pytest

from tts_graph import Budget, BudgetExhausted, ConfigError
from tts_graph.candidate import Candidate
from tts_graph.nodes.revision import make_self_refine_node
from tts_graph.testing import FakeBackend
from tts_graph.verifiers.registry import FunctionVerifier


class Model:
    """Drafts 'Answer: 13', critiques from a script, revises to 'Answer: 12'."""

    def __init__(self, critiques=("It is wrong: 7+5 is not 13.", "CORRECT")):
        self.critiques = list(critiques)
        self.backend = FakeBackend(self)
        self.kinds = []

    def __call__(self, request, i):
        turn = request.messages[-1]["content"]
        if turn.startswith("Check your answer"):
            self.kinds.append("critique")
            return self.critiques.pop(0)
        if turn.startswith("Rewrite your answer"):
            self.kinds.append("revise")
            return "7 + 5 = 12\nAnswer: 12"
        self.kinds.append("draft")
        return "7 + 5 = 13\nAnswer: 13"


async def test_critique_loop_stops_when_the_critique_says_correct():
    model = Model()
    out = await make_self_refine_node(model.backend, rounds=3)({"question": "What is 7+5?"})
    assert model.kinds == ["draft", "critique", "revise", "critique"]
    record = out["decisions"][0]
    assert record["stop"] == "critique says correct"
    assert [r["says_correct"] for r in record["rounds"]] == [False, True]
    assert out["answer"] == "12"
    assert [c.answer for c in out["candidates"]] == ["13", "12"]
    assert [c.metadata["round"] for c in out["candidates"]] == [0, 1]
    assert out["usage"].calls == 4
    # The revision saw the critique as feedback, after the draft, in the caller's conversation.
    revise = model.backend.requests[2].messages
    assert "Feedback:\nIt is wrong: 7+5 is not 13." in revise[-1]["content"]
    assert revise[-2] == {"role": "assistant", "content": "7 + 5 = 13\nAnswer: 13"}
    assert revise[:-2] == model.backend.requests[0].messages
    # Each call has its own seed.
    assert len({r.sampling.seed for r in model.backend.requests}) == 4


async def test_rounds_bound_the_loop():
    model = Model(critiques=["wrong"] * 5)
    out = await make_self_refine_node(model.backend, rounds=2)({"question": "q"})
    assert model.kinds == ["draft", "critique", "revise", "critique", "revise"]
    assert out["decisions"][0]["stop"] == "rounds done"
    assert len(out["candidates"]) == 3


async def test_verifier_feedback_replaces_the_critique_and_stops_on_pass():
    model = Model()
    verifier = FunctionVerifier(lambda p, c: c.strip().endswith(str(p.reference)), name="ends_with")
    out = await make_self_refine_node(model.backend, rounds=3, verifier=verifier)(
        {"question": "q", "reference": 12}
    )
    assert model.kinds == ["draft", "revise"]  # no critiques: the verifier checks
    record = out["decisions"][0]
    assert record["stop"] == "verifier passed"
    assert [r["passed"] for r in record["rounds"]] == [False, True]
    assert "ends_with returned False" in model.backend.requests[1].messages[-1]["content"]
    assert out["candidates"][-1].verdict.passed is True


async def test_starts_from_the_best_candidate_in_state():
    model = Model(critiques=["CORRECT"])
    existing = [
        Candidate(index=0, text="Answer: 9", score=0.1),
        Candidate(index=1, text="Answer: 12", score=0.9),
    ]
    out = await make_self_refine_node(model.backend)({"question": "q", "candidates": existing})
    assert model.kinds == ["critique"]
    assert model.backend.requests[0].messages[-2]["content"] == "Answer: 12"
    assert out["answer"] == "12"
    assert "candidates" not in out  # no new drafts


async def test_every_call_follows_the_callers_prompt():
    model = Model()
    few_shot = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is 1+1?"},
        {"role": "assistant", "content": "Answer: 2"},
    ]

    def prompt(state):
        return [*few_shot, {"role": "user", "content": state["question"]}]

    await make_self_refine_node(model.backend, rounds=1, prompt=prompt)({"question": "7+5?"})
    assert model.kinds == ["draft", "critique", "revise"]
    for request in model.backend.requests:
        assert list(request.messages[:4]) == [*few_shot, {"role": "user", "content": "7+5?"}]


async def test_budget_stops_refinement_gracefully_or_strictly():
    model = Model(critiques=["wrong"] * 5)
    out = await make_self_refine_node(model.backend, rounds=3)(
        {"question": "q", "budget": Budget(max_calls=2)}
    )
    assert model.kinds == ["draft", "critique"]
    assert out["decisions"][0]["stop"] == "budget"
    assert out["answer"] == "13"  # the best so far
    assert out["usage"].calls == 2
    with pytest.raises(BudgetExhausted, match="calls"):
        await make_self_refine_node(Model().backend, rounds=3)(
            {"question": "q", "budget": Budget(max_calls=2, strict=True)}
        )


def test_rounds_must_be_positive():
    with pytest.raises(ConfigError, match="rounds"):
        make_self_refine_node(FakeBackend(lambda r, i: ""), rounds=0)


async def test_a_crashing_verifier_fails_the_draft_not_the_graph():

    class Raising:
        name = "raising"

        async def verify(self, problem, candidates):
            raise RuntimeError("verifier down")

    model = Model()
    out = await make_self_refine_node(model.backend, rounds=1, verifier=Raising())(
        {"question": "q"}
    )
    verdict = out["candidates"][-1].verdict
    assert verdict.passed is False
    assert "RuntimeError: verifier down" in verdict.reason
    assert out["decisions"][0]["stop"] == "rounds done"

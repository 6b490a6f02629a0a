"""The LLM judge with a function-driven fake backend."""

import pytest

from tts_graph.errors import BackendError, ConfigError
from tts_graph.testing import FakeBackend
from tts_graph.verifiers.base import Problem
from tts_graph.verifiers.judge import LLMJudge


def judge_saying(reply_for):
    """A backend whose reply depends on the answer being judged."""

    def fn(request, i):
        user = request.messages[-1]["content"]
        return reply_for(user)

    return FakeBackend(fn)


async def test_pointwise_scores_are_normalised_and_thresholded():
    backend = judge_saying(
        lambda user: "Correct.\nScore: 9" if "12" in user else "Wrong.\nScore: 2"
    )
    judge = LLMJudge(backend, threshold=0.7)
    right, wrong = await judge.verify(Problem("What is 7+5?"), ["12", "13"])
    assert (right.passed, right.score) == (True, pytest.approx(0.9))
    assert (wrong.passed, wrong.score) == (False, pytest.approx(0.2))
    assert right.usage.calls == 1
    assert "Question:\nWhat is 7+5?" in backend.requests[0].messages[-1]["content"]
    assert backend.requests[0].sampling.temperature == 0.0


async def test_last_score_line_counts_and_bold_markup_is_accepted():
    judge = LLMJudge(judge_saying(lambda u: "Score: 3 at first... on reflection **Score: 8**"))
    (v,) = await judge.verify(Problem("q"), ["a"])
    assert v.score == pytest.approx(0.8)
    assert v.passed is None


@pytest.mark.parametrize(
    ("reply", "needle"), [("I like it.", "no 'Score: N' line"), ("Score: 42", "outside 1..10")]
)
async def test_unparseable_output_is_a_failed_verdict_with_the_raw_text(reply, needle):
    (v,) = await LLMJudge(judge_saying(lambda u: reply)).verify(Problem("q"), ["a"])
    assert v.passed is False
    assert needle in v.reason
    assert v.details["raw"] == reply


async def test_backend_failure_is_a_failed_verdict():
    async def broken(request, i):
        raise BackendError("server down", retryable=False)

    (v,) = await LLMJudge(FakeBackend(broken)).verify(Problem("q"), ["a"])
    assert v.passed is False
    assert "server down" in v.reason


async def test_rubric_is_configurable():
    backend = judge_saying(lambda u: "Score: 4")
    judge = LLMJudge(backend, rubric="Be harsh. Scale 1-{scale}.", scale=5)
    (v,) = await judge.verify(Problem("q"), ["a"])
    assert backend.requests[0].messages[0]["content"] == "Be harsh. Scale 1-5."
    assert v.score == pytest.approx(0.8)


@pytest.mark.parametrize(
    ("reply", "winner"),
    [
        ("A is right.\nWinner: B", "B"),
        ("Winner: (A)", "A"),
        ("winner = b", "B"),
        ("Both are fine.", None),
    ],
)
async def test_pairwise_preference(reply, winner):
    backend = judge_saying(lambda u: reply)
    pref = await LLMJudge(backend).compare("q", "first", "second")
    assert pref.winner == winner
    assert pref.raw == reply
    user = backend.requests[0].messages[-1]["content"]
    assert user.index("Answer A:\nfirst") < user.index("Answer B:\nsecond")


def test_bad_options():
    with pytest.raises(ConfigError, match="threshold"):
        LLMJudge(FakeBackend(lambda r, i: ""), threshold=7)
    with pytest.raises(ConfigError, match="scale"):
        LLMJudge(FakeBackend(lambda r, i: ""), scale=1)

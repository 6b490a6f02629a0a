"""Verifiers by name, and user-registered ones."""

import pytest

from tts_graph.errors import ConfigError
from tts_graph.verifiers import registry
from tts_graph.verifiers.base import Problem, Verdict
from tts_graph.verifiers.registry import (
    FunctionVerifier,
    available_verifiers,
    create_verifier,
    register_verifier,
)


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_builtins_are_available():
    assert {"math", "exact", "numeric", "regex", "code", "judge", "prm", "orm"} <= set(
        available_verifiers()
    )
    assert create_verifier("numeric").name == "numeric"


def test_unknown_name_lists_the_choices():
    with pytest.raises(ConfigError, match="unknown verifier 'mathz'; choose one of: code, exact"):
        create_verifier("mathz")


def test_bad_options_are_a_config_error():
    with pytest.raises(ConfigError, match="bad options for verifier 'numeric'"):
        create_verifier("numeric", tolerance_of_fools=3)


async def test_register_a_check_function_as_decorator():
    @register_verifier("contains_reference")
    def contains(problem, candidate):
        return str(problem.reference) in candidate

    v = create_verifier("contains_reference")
    verdicts = await v.verify(Problem("q", reference=12), ["it is 12", "it is 13"])
    assert [x.passed for x in verdicts] == [True, False]
    assert [x.score for x in verdicts] == [1.0, 0.0]


async def test_register_a_class():
    class Length:
        name = "length"

        def __init__(self, limit=5):
            self.limit = limit

        async def verify(self, problem, candidates):
            return [
                Verdict(passed=len(c) <= self.limit, score=0.0, reason="len") for c in candidates
            ]

    register_verifier("length", Length)
    v = create_verifier("length", limit=3)
    assert [x.passed for x in await v.verify(Problem("q"), ["ab", "abcd"])] == [True, False]


def test_duplicate_names_need_replace():
    register_verifier("mine", lambda p, c: True)
    with pytest.raises(ConfigError, match="already registered"):
        register_verifier("mine", lambda p, c: False)
    register_verifier("mine", lambda p, c: False, replace=True)
    with pytest.raises(ConfigError, match="identifier"):
        register_verifier("not a name", lambda p, c: True)


async def test_function_verifier_async_scores_and_crashes():
    async def score(problem, candidate):
        if candidate == "boom":
            raise ValueError("cannot parse")
        return 0.25

    verdicts = await FunctionVerifier(score).verify(Problem("q"), ["x", "boom"])
    assert verdicts[0].score == 0.25
    assert verdicts[0].passed is None
    assert verdicts[1].passed is False
    assert "ValueError: cannot parse" in verdicts[1].reason


async def test_function_verifier_rejects_a_wrong_return_type():
    (v,) = await FunctionVerifier(lambda p, c: "yes", name="bad").verify(Problem("q"), ["x"])
    assert v.passed is False
    assert "return a bool, a float or a Verdict" in v.reason

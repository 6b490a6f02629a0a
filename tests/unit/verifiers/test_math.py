"""Math verifiers: math-verify equivalence, the worker pool's failure handling, simple checks.

Every expectation in ``CASES`` was checked against math-verify 0.9 through ``math_equal``.
"""

from __future__ import annotations

import asyncio
import doctest
import os
import signal
import time
from collections.abc import Iterator

import math_verify  # type: ignore[import-untyped]
import pytest

from tts_graph.errors import ConfigError
from tts_graph.verifiers import math as math_module
from tts_graph.verifiers.base import Problem, Verdict, Verifier
from tts_graph.verifiers.math import (
    ExactMatchVerifier,
    MathVerifier,
    NumericVerifier,
    RegexVerifier,
    math_equal,
)

# (gold, prediction, equivalent?)
CASES: list[tuple[str, str, bool]] = [
    # fractions, decimals, percentages
    ("1/2", "0.5", True),
    (r"\frac{1}{2}", "0.5", True),
    (r"\frac{1}{2}", r"\frac{2}{4}", True),
    (r"\dfrac{3}{4}", "0.75", True),
    (r"\tfrac{3}{4}", "3/4", True),
    ("3/4", "0.7", False),
    (r"\frac{3}{4}", r"\frac{4}{3}", False),
    ("1/3", "0.33", False),
    ("1/3", "0.3333", False),
    ("1/3", "0.333333", True),  # math-verify rounds floats to 6 places
    ("2/3", "0.67", False),
    ("0.1", "1/10", True),
    ("0.5", "0.05", False),
    (r"-\frac{1}{2}", "-0.5", True),
    (r"-\frac{1}{2}", r"\frac{-1}{2}", True),
    (r"-\frac{1}{2}", "0.5", False),
    (r"\frac{7}{2}", r"3\frac{1}{2}", True),
    ("3.5", r"3 \frac{1}{2}", True),
    (r"50\%", "0.5", True),
    (r"50\%", "50", True),  # a percentage matches both its number and its fraction
    (r"10\%", "0.1", True),
    (r"10\%", "0.2", False),
    # integers, negatives, number formatting
    ("10", "10.0", True),
    ("10", "10.01", False),
    ("100", "99.9999999", False),
    ("-5", "-5.0", True),
    ("-5", "5", False),
    ("-7", "7", False),
    ("1,234", "1234", True),
    ("1234", "1,234", True),
    ("1234567", "1,234,567", True),
    ("1,2", "12", False),
    (r"\$12", "12", True),
    # \boxed and whole replies
    (r"\boxed{5}", "5", True),
    ("5", r"The answer is \boxed{5}.", True),
    (r"\boxed{\frac{1}{2}}", "0.5", True),
    (r"\boxed{6}", "5", False),
    # equations
    ("3", "x=3", True),
    ("3", "x = 3", True),
    ("x=3", "3", True),
    ("-3", "x=-3", True),
    ("3", "x=4", False),
    ("x=3", "x=-3", False),
    ("y = 2x + 1", "2x+1", True),
    # radicals
    (r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2", True),
    (r"\frac{1}{\sqrt{3}}", r"\frac{\sqrt3}{3}", True),
    (r"2\sqrt{2}", r"\sqrt{8}", True),
    (r"3+2\sqrt{2}", r"2\sqrt2+3", True),
    (r"\sqrt{3}", "1.7320508", True),
    (r"\sqrt{3}", "1.732", False),
    # pi, e, degrees
    (r"\pi/2", r"\frac{\pi}{2}", True),
    (r"\frac{5\pi}{4}", r"\frac54\pi", True),
    (r"4\pi", r"4 \pi", True),
    (r"\pi", "3.14159", False),
    (r"2\pi", "6.28", False),
    (r"\frac{\pi}{2}", "90", False),
    (r"\frac{\pi}{3}", r"60^\circ", False),
    (r"30^\circ", "30", True),
    (r"30^{\circ}", "30", True),
    ("e", "2.718281828", True),
    # scientific notation and powers
    ("1500", "1.5e3", True),
    ("0.001", "1e-3", True),
    ("1500", r"1.5\times 10^{3}", True),
    (r"1.2 \times 10^{-3}", "0.0012", True),
    (r"6.02\times10^{23}", r"6.02\times 10^{22}", False),
    ("1024", "2^{10}", True),
    ("120", "5!", True),
    ("10", r"\binom{5}{2}", True),
    ("3", r"\log_2 8", True),
    (r"\frac{1}{2}", r"\sin(\pi/6)", True),
    # intervals, inequalities, sets, tuples
    ("[1, 2)", "[1,2)", True),
    ("[1, 2)", "(1,2)", False),
    ("[1,2]", "[1,2)", False),
    (r"(-\infty, 3]", r"(-\infty,3]", True),
    (r"x \le 3", r"(-\infty, 3]", True),
    ("x > 2", r"(2, \infty)", True),
    (r"x \in [2, 5]", "[2,5]", True),
    (r"-\infty", r"\infty", False),
    (r"\{1, 2\}", r"\{2, 1\}", True),
    (r"\{1,2\}", r"\{1,3\}", False),
    (r"\{1,2\}", r"\{1,2,3\}", False),
    ("2, 3", "3, 2", True),
    (r"\{2, 3\}", "2, 3", True),
    ("(1,2)", "(2,1)", False),
    # complex numbers, algebra, matrices
    ("1+i", "i+1", True),
    ("1+i", "1-i", False),  # without the $...$ wrapping math-verify says True
    ("x^2+2x+1", "(x+1)^2", True),
    ("x^2 - 1", "(x-1)(x+1)", True),
    ("x^2 - 1", "(x-1)^2", False),
    ("2x", r"x \cdot 2", True),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", True),
    (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 2 \\ 1 \end{pmatrix}", False),
    # units and text
    (r"12 \text{ cm}", "12", True),
    ("12", r"\mathrm{12}", True),
    ("12", "13 apples", False),
    ("1/2", "one half", False),
]


def test_cases_cover_both_outcomes() -> None:
    assert len(CASES) >= 60
    assert sum(expected for *_, expected in CASES) >= 20
    assert sum(not expected for *_, expected in CASES) >= 20


@pytest.mark.parametrize(
    ("gold", "pred", "expected"), CASES, ids=[f"{g} ~ {p}" for g, p, _ in CASES]
)
def test_math_equal(gold: str, pred: str, expected: bool) -> None:
    assert math_equal(gold, pred) is expected


@pytest.mark.parametrize(
    ("gold", "pred"), [(r"x \le 3", r"(-\infty, 3]"), ("x > 2", r"(2, \infty)")]
)
def test_math_equal_is_gold_first(gold: str, pred: str) -> None:
    # math-verify compares a relation with a set only when the prediction is the set.
    assert math_equal(gold, pred)
    assert not math_equal(pred, gold)


async def test_math_equal_works_outside_the_main_thread() -> None:
    # math-verify's own signal-based timeout raises ValueError here; ours is skipped instead.
    assert await asyncio.to_thread(math_equal, "1/2", "0.5")
    assert not await asyncio.to_thread(math_equal, "1/2", "0.6")


def test_math_equal_timer_raises_and_restores_the_signal_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def slow_parse(text: str, **kwargs: object) -> list[object]:
        time.sleep(10)
        return []

    monkeypatch.setattr(math_verify, "parse", slow_parse)
    before = signal.getsignal(signal.SIGALRM)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"0\.2 s"):
        math_equal("x + 1", "y", timeout_s=0.2)
    assert time.monotonic() - started < 5
    assert signal.getsignal(signal.SIGALRM) is before


def test_math_equal_hands_back_a_running_alarm() -> None:
    # pytest-timeout (and any host) may own SIGALRM: its timer must survive our checks.
    def outer(signum: int, frame: object) -> None:
        raise AssertionError("the outer alarm is not due yet")

    previous = signal.signal(signal.SIGALRM, outer)
    outer_timer = signal.setitimer(signal.ITIMER_REAL, 100)
    try:
        assert math_equal("1/2", "0.5", timeout_s=3)
        assert signal.getsignal(signal.SIGALRM) is outer
        remaining, _ = signal.getitimer(signal.ITIMER_REAL)
        assert 90 < remaining <= 100
    finally:
        signal.setitimer(signal.ITIMER_REAL, *outer_timer)
        signal.signal(signal.SIGALRM, previous)


def test_docstring_examples_hold() -> None:
    results = doctest.testmod(math_module)
    assert results.attempted > 5
    assert results.failed == 0


# --- MathVerifier --------------------------------------------------------------------------


def scripted_check(gold: str, pred: str, *, timeout_s: float | None) -> bool:
    """A check for the pool's failure paths, run in the workers (so it lives at module level)."""
    if pred.startswith("sleep "):
        time.sleep(float(pred.removeprefix("sleep ")))
        return False
    if pred == "crash":
        os._exit(1)
    if pred == "raise":
        raise ValueError("bad input")
    if pred == "own timeout":
        raise TimeoutError("worker timer fired")
    return gold == pred


@pytest.fixture(scope="module")
def verifier() -> Iterator[MathVerifier]:
    shared = MathVerifier(max_workers=2)
    yield shared
    shared.close()


async def test_verifier_agrees_with_the_table(verifier: MathVerifier) -> None:
    batches = await asyncio.gather(
        *(verifier.verify(Problem("q", gold), [rf"\boxed{{{pred}}}"]) for gold, pred, _ in CASES)
    )
    assert [verdicts[0].passed for verdicts in batches] == [expected for *_, expected in CASES]


async def test_verdicts_follow_candidate_order_and_explain_themselves(
    verifier: MathVerifier,
) -> None:
    candidates = [
        r"So it is \boxed{0.75}.",
        "Answer: 0.7",
        "I do not know.",
        "The answer is $\\frac{3}{4}$.",
        r"\boxed{0.75}",
    ]
    verdicts = await verifier.verify(Problem("3/4 as a decimal?", "3/4"), candidates)
    assert [v.passed for v in verdicts] == [True, False, False, True, True]
    assert [v.score for v in verdicts] == [1.0, 0.0, 0.0, 1.0, 1.0]
    assert verdicts[0].reason == "extracted '0.75' is equivalent to gold '3/4'"
    assert verdicts[1].reason == "extracted '0.7' is not equivalent to gold '3/4'"
    assert verdicts[2].reason == "no final answer found"
    assert verdicts[3].details == {"extracted": r"\frac{3}{4}", "gold": "3/4"}


async def test_missing_gold_gives_unjudged_verdicts(verifier: MathVerifier) -> None:
    for reference in (None, "  "):
        verdicts = await verifier.verify(Problem("q", reference), ["Answer: 1", "Answer: 2"])
        assert [v.passed for v in verdicts] == [None, None]
        assert all(v.score == 0.0 and "no gold answer" in v.reason for v in verdicts)


async def test_empty_batch(verifier: MathVerifier) -> None:
    assert await verifier.verify(Problem("q", "1"), []) == []


async def test_an_extractor_that_raises_fails_only_its_candidate() -> None:
    def picky(text: str, /) -> str | None:
        if "boom" in text:
            raise RuntimeError("cannot read")
        return text

    async with MathVerifier(max_workers=1, extractor=picky) as custom:
        verdicts = await custom.verify(Problem("q", "2"), ["2", "boom"])
    assert verdicts[0].passed is True
    assert verdicts[1].passed is False
    assert "RuntimeError" in verdicts[1].reason


async def test_timeout_fails_the_candidate_and_keeps_a_pool_that_recovers() -> None:
    async with MathVerifier(max_workers=2, timeout_s=2.0, check=scripted_check) as custom:
        # Warm both workers first: a worker's first check imports this module, which on a busy
        # machine can take longer than the timeout under test.
        await custom.verify(Problem("q", "1"), ["1", "1"])
        verdicts = await custom.verify(Problem("q", "1"), ["Answer: 1", "Answer: sleep 2.5"])
        pool = custom._pool
        assert verdicts[0].passed is True
        assert verdicts[1] == Verdict.failure(
            "math check timed out after 2 s", extracted="sleep 2.5", gold="1"
        )
        # The slow check finished within the grace period, so its pool was kept.
        assert pool is not None
        assert [v.passed for v in await custom.verify(Problem("q", "1"), ["1"])] == [True]
        assert custom._pool is pool


async def test_a_stuck_worker_is_killed_and_its_pool_replaced() -> None:
    async with MathVerifier(max_workers=1, timeout_s=0.5, check=scripted_check) as custom:
        await custom.verify(Problem("q", "1"), ["1"])
        stuck_pool = custom._pool
        started = time.monotonic()
        verdicts = await custom.verify(Problem("q", "1"), ["Answer: sleep 60"])
        assert time.monotonic() - started < 10
        assert verdicts[0].passed is False
        assert "timed out" in verdicts[0].reason
        assert custom._pool is not stuck_pool
        # With one worker, this check could only run if the sleeping worker was replaced.
        later = await custom.verify(Problem("q", "1"), ["1", "2"])
        assert [v.passed for v in later] == [True, False]
        assert custom._pool is not None
        assert custom._pool is not stuck_pool


async def test_a_crashed_worker_fails_its_candidate_and_the_pool_is_replaced() -> None:
    async with MathVerifier(max_workers=2, check=scripted_check) as custom:
        await custom.verify(Problem("q", "1"), ["1"])
        first_pool = custom._pool
        verdicts = await custom.verify(
            Problem("q", "1"), ["Answer: 1", "Answer: crash", "Answer: 2"]
        )
        assert [v.passed for v in verdicts] == [True, False, False]
        assert verdicts[1].reason == "math check crashed its worker process"
        assert verdicts[2].reason == "extracted '2' is not equivalent to gold '1'"
        assert custom._pool is not first_pool
        assert [v.passed for v in await custom.verify(Problem("q", "1"), ["1"])] == [True]


async def test_check_errors_become_failed_verdicts() -> None:
    async with MathVerifier(max_workers=1, check=scripted_check) as custom:
        verdicts = await custom.verify(
            Problem("q", "1"), ["Answer: raise", "Answer: own timeout", "Answer: 1"]
        )
    assert verdicts[0].passed is False
    assert verdicts[0].reason.startswith("math check raised ValueError")
    assert verdicts[1].reason == "math check timed out after 5 s"
    assert verdicts[2].passed is True


async def test_a_pool_that_cannot_start_in_time_fails_the_batch_and_is_dropped() -> None:
    async with MathVerifier(max_workers=1, startup_timeout_s=0.001) as custom:
        verdicts = await custom.verify(Problem("q", "1"), ["Answer: 1", "Answer: 2"])
        assert [v.passed for v in verdicts] == [False, False]
        assert all(v.reason.startswith("math worker pool failed to start") for v in verdicts)
        assert custom._pool is None


async def test_a_cancelled_verify_leaves_the_verifier_usable() -> None:
    async with MathVerifier(max_workers=1, check=scripted_check) as custom:
        task = asyncio.create_task(custom.verify(Problem("q", "1"), ["Answer: sleep 0.5"]))
        await asyncio.sleep(0.05)  # still starting the pool: cancel in the middle of start-up
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        verdicts = await custom.verify(Problem("q", "1"), ["Answer: 1", "Answer: 3"])
        assert [v.passed for v in verdicts] == [True, False]


async def test_close_then_reuse_starts_a_new_pool() -> None:
    custom = MathVerifier(max_workers=1)
    try:
        assert (await custom.verify(Problem("q", "2"), ["2"]))[0].passed is True
        custom.close()
        assert custom._pool is None
        assert (await custom.verify(Problem("q", "2"), ["3"]))[0].passed is False
    finally:
        custom.close()


def test_worker_processes_are_not_forked() -> None:
    # The parent runs threads (event loop helpers, pool manager): fork would copy held locks.
    assert MathVerifier()._context.get_start_method() in ("forkserver", "spawn")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"start_method": "fork"}, "start_method must be one of"),
        ({"timeout_s": 0}, "must be > 0"),
        ({"max_workers": 0}, "max_workers"),
        ({"check": lambda gold, pred, *, timeout_s: True}, "picklable"),
    ],
)
def test_bad_options_fail_at_build_time(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        MathVerifier(**options)  # type: ignore[arg-type]


def test_all_verifiers_satisfy_the_protocol() -> None:
    for made in (MathVerifier(), ExactMatchVerifier(), RegexVerifier("x"), NumericVerifier()):
        assert isinstance(made, Verifier)
    names = [MathVerifier.name, ExactMatchVerifier.name, RegexVerifier.name, NumericVerifier.name]
    assert names == ["math", "exact_match", "regex", "numeric"]


# --- simple verifiers ----------------------------------------------------------------------


async def test_exact_match_normalises_both_sides() -> None:
    verdicts = await ExactMatchVerifier().verify(
        Problem("q", "12"), ["Answer: 12.0", r"\boxed{12}", "Answer: 13", "Paris"]
    )
    assert [v.passed for v in verdicts] == [True, True, False, False]
    assert verdicts[0].reason == "answer '12.0' matches '12'"


async def test_exact_match_falls_back_to_the_whole_reply_and_can_ignore_case() -> None:
    problem = Problem("capital of France?", "Paris")
    assert [v.passed for v in await ExactMatchVerifier().verify(problem, ["Paris", "paris"])] == [
        True,
        False,
    ]
    relaxed = ExactMatchVerifier(ignore_case=True)
    assert [v.passed for v in await relaxed.verify(problem, ["paris", "Rome"])] == [True, False]
    unjudged = await ExactMatchVerifier().verify(Problem("q"), ["x"])
    assert unjudged[0].passed is None


async def test_regex_verifier_on_answer_and_on_text() -> None:
    on_answer = RegexVerifier(r"-?\d+")
    verdicts = await on_answer.verify(Problem("q"), ["Answer: -42", "Answer: 4.5", "none"])
    assert [v.passed for v in verdicts] == [True, False, False]
    assert verdicts[2].reason == "no final answer found"
    on_text = RegexVerifier(r"\bdone\b", on="text")
    assert [v.passed for v in await on_text.verify(Problem("q"), ["all done.", "undone"])] == [
        True,
        False,
    ]


async def test_regex_verifier_takes_its_pattern_from_the_reference() -> None:
    verifier = RegexVerifier()
    assert [
        v.passed for v in await verifier.verify(Problem("q", r"[AB]"), ["Answer: B", "Answer: C"])
    ] == [
        True,
        False,
    ]
    assert (await verifier.verify(Problem("q"), ["x"]))[0].passed is None
    broken = await verifier.verify(Problem("q", "("), ["x"])
    assert broken[0].passed is False
    assert "invalid pattern" in broken[0].reason


def test_regex_verifier_rejects_bad_options() -> None:
    with pytest.raises(ConfigError, match="invalid pattern"):
        RegexVerifier("(")
    with pytest.raises(ConfigError, match="'answer' or 'text'"):
        RegexVerifier("x", on="reply")  # type: ignore[arg-type]


async def test_numeric_verifier() -> None:
    verdicts = await NumericVerifier().verify(
        Problem("q", "3/4"),
        [
            "Answer: 0.75",
            r"\boxed{\frac{3}{4}}",
            "x = 0.7500000001",
            "Answer: 0.76",
            "Answer: abc",
            "none",
        ],
    )
    assert [v.passed for v in verdicts] == [True, True, True, False, False, False]
    assert verdicts[3].reason == "extracted '0.76' does not equal 3/4"
    assert verdicts[4].reason == "extracted 'abc' is not a number"
    assert verdicts[5].reason == "no final answer found"


async def test_numeric_verifier_tolerances_and_huge_numbers() -> None:
    strict = NumericVerifier(rel_tol=0.0, abs_tol=0.0)
    assert [
        v.passed for v in await strict.verify(Problem("q", "1,000"), ["1000.0", "1000.001"])
    ] == [
        True,
        False,
    ]
    loose = NumericVerifier(rel_tol=0.01)
    assert (await loose.verify(Problem("q", "100"), ["Answer: 100.5"]))[0].passed is True
    huge = await NumericVerifier().verify(Problem("q", "1e400"), ["Answer: 1e400", "Answer: 2e400"])
    assert [v.passed for v in huge] == [True, False]


async def test_numeric_verifier_without_a_numeric_reference() -> None:
    for reference, reason in ((None, "no reference number given"), ("seven", "is not a number")):
        verdicts = await NumericVerifier().verify(Problem("q", reference), ["7"])
        assert verdicts[0].passed is None
        assert reason in verdicts[0].reason


async def test_simple_verifiers_turn_extractor_errors_into_failures() -> None:
    def broken(text: str, /) -> str | None:
        raise RuntimeError("nope")

    for made in (
        ExactMatchVerifier(extractor=broken),
        RegexVerifier("x", extractor=broken),
        NumericVerifier(extractor=broken),
    ):
        verdicts = await made.verify(Problem("q", "1"), ["1"])
        assert verdicts[0].passed is False
        assert "RuntimeError" in verdicts[0].reason


def test_same_spelling_skips_math_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_parse(text: str, **kwargs: object) -> list[object]:
        raise AssertionError("math-verify should not be asked")

    monkeypatch.setattr(math_verify, "parse", no_parse)
    assert math_equal("1,234", "1234.0")
    assert math_equal(r"\dfrac{1}{2}", r"\frac{1}{2}")


def test_unparseable_answers_are_not_equal() -> None:
    assert not math_equal(r"\frac{1}{", r"\frac{1}{2}")
    assert not math_equal("3", "")
    assert not math_equal("", "")


@pytest.mark.parametrize(
    ("gold", "pred"),
    [("12", "13"), ("12", "12.0"), ("1/2", "0.5"), ("3/4", "0.7"), ("1/3", "0.333333"),
     ("1/3", "0.33"), ("-5", "5"), ("1,234", "1234"), ("0.1", "0.10001"), ("1000000", "1000001"),
     ("7", "7/1"), ("2/4", "1/2"), ("0", "0.0001"), ("-0.5", "-1/2")],
)  # fmt: skip
def test_the_numeric_shortcut_agrees_with_math_verify(gold, pred):
    from tts_graph.verifiers.math import _math_verify_equal, _numbers_clearly_compare

    shortcut = _numbers_clearly_compare(gold, pred)
    if shortcut is not None:
        assert shortcut == _math_verify_equal(gold, pred)


# --- expressions that start with a number are not that number --------------------------------


@pytest.mark.parametrize(
    ("gold", "pred", "expected"),
    [
        ("10", "10^{10^{10}}", False),
        ("10", "$10^{10^{10}}$", False),
        ("6", "6!", False),
        ("720", "6!", True),
        ("120", r"\frac{6!}{3!}", True),
        ("4", r"\sqrt{4}", False),
        ("2", r"\sqrt{4}", True),
        ("2", "(x+1)^2", False),
        ("10^{10^{10}}", "10^{10000000000}", True),
        ("10^{10^{10}}", "100^{5000000000}", True),
        ("10^{10^{10}}", "10^{10^{10}}+1", False),
        ("2^{10^{10}}", "-2^{10^{10}}", False),
        ("x+1", "10^{10^{10}}", False),
        ("-7", "\u22127", True),
        ("7", "\u22127", False),
    ],
)
def test_expressions_are_compared_whole(gold: str, pred: str, expected: bool) -> None:
    assert math_equal(gold, pred, timeout_s=5) is expected


def test_a_huge_power_never_reaches_math_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    # sympy writes 10^(10^10) out digit by digit: asked, it would hang past any timer.
    def no_parse(text: str, **kwargs: object) -> list[object]:
        raise AssertionError(f"math-verify was asked about {text!r}")

    monkeypatch.setattr(math_verify, "parse", no_parse)
    started = time.monotonic()
    assert not math_equal("10", "10^{10^{10}}")
    assert not math_equal("x+1", "10^{10^{10}}")
    assert not math_equal("10^{10^{11}}", "10^{10^{10}}")
    assert math_equal("(10^{10})^{10^{10}}", "10^{10^{11}}")
    assert not math_equal("6", "6!")
    assert not math_equal("2", "2^{3^{4^{5}}}")  # an exponent with 489 digits
    assert not math_equal("-10^{10^{10}}", "10^{10^{10}}")
    assert math_equal("-10^{10^{10}}", "-(10^{10000000000})")
    assert time.monotonic() - started < 1.0


async def test_math_verifier_judges_the_whole_expression(verifier: MathVerifier) -> None:
    verdicts = await verifier.verify(
        Problem("q", "10"),
        ["The count is $10^{10^{10}}$.", "The answer is 10.", "There are 10! ways."],
    )
    assert [v.passed for v in verdicts] == [False, True, False]
    assert verdicts[0].details["extracted"] == "10^{10^{10}}"
    assert "timed out" not in verdicts[0].reason


async def test_numeric_verifier_reads_no_number_out_of_an_expression() -> None:
    verdicts = await NumericVerifier().verify(
        Problem("q", "6"), ["The number of orderings is 6!.", "It is \u22126.", "So it is 6."]
    )
    assert [v.passed for v in verdicts] == [False, False, True]
    assert verdicts[0].reason == "extracted '6!' is not a number"


# --- choosing the extractor by name ----------------------------------------------------------


async def test_verifiers_take_an_extractor_by_name() -> None:
    reply = r"We get 7, so the answer is \boxed{8}. Checking: 8 - 1 = 7"
    problem = Problem("q", "7")
    by_name = {
        "last_number": [True, True, True],
        "boxed": [False, False, False],
    }
    for name, expected in by_name.items():
        simple = (
            ExactMatchVerifier(extractor=name),
            NumericVerifier(extractor=name),
            RegexVerifier("7", extractor=name),
        )
        passed = [(await v.verify(problem, [reply]))[0].passed for v in simple]
        assert passed == expected, name
    async with MathVerifier(max_workers=1, extractor="last_number") as math_verifier:
        assert (await math_verifier.verify(problem, [reply]))[0].passed is True


def test_an_unknown_extractor_name_fails_at_build_time() -> None:
    for make in (
        lambda: MathVerifier(extractor="boxd"),
        lambda: ExactMatchVerifier(extractor="boxd"),
        lambda: NumericVerifier(extractor="boxd"),
        lambda: RegexVerifier("x", extractor="boxd"),
    ):
        with pytest.raises(ConfigError, match="unknown answer extractor 'boxd'; choose one of"):
            make()


def test_the_verifier_registry_passes_an_extractor_name_through() -> None:
    from tts_graph.verifiers.registry import create_verifier

    numeric = create_verifier("numeric", extractor="boxed")
    assert isinstance(numeric, NumericVerifier)
    assert numeric.extractor == "boxed"
    with pytest.raises(ConfigError, match="unknown answer extractor"):
        create_verifier("exact", extractor="nope")

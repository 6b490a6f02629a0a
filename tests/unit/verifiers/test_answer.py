"""Final-answer extraction and normalisation."""

from __future__ import annotations

import doctest
import re
from fractions import Fraction

import pytest

from tts_graph.verifiers import answer
from tts_graph.verifiers.answer import (
    AnswerExtractor,
    RegexExtractor,
    canonical_number,
    chain_extractors,
    extract_answer,
    extract_answer_line,
    extract_boxed,
    extract_final_answer_line,
    extract_last_number,
    extract_the_answer_is,
    normalize_answer,
    parse_number,
)


def test_docstring_examples_hold() -> None:
    results = doctest.testmod(answer)
    assert results.attempted > 10
    assert results.failed == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"so \boxed{12}", "12"),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
        (r"first \boxed{1} then \boxed{2}", "2"),
        (r"\boxed{a} and an empty \boxed{}", "a"),
        (r"\boxed {7}", "7"),
        (r"\fbox{3}", "3"),
        (r"unbalanced \boxed{1", None),
        ("no box here", None),
    ],
)
def test_extract_boxed(text: str, expected: str | None) -> None:
    assert extract_boxed(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Final Answer: 12", "12"),
        ("Final Answer: The final answer is 12. I hope it is correct.", "12"),
        ("**Final Answer:** $x = 5$", "5"),  # an equation gives its right-hand side
        ("**Final Answer**: 3.5.", "3.5"),
        ("### Final Answer\n7", "7"),
        ("The final answer is $$\\frac{1}{2}$$.", "\\frac{1}{2}"),
        ("We need the final answer quickly.", None),
    ],
)
def test_extract_final_answer_line(text: str, expected: str | None) -> None:
    assert extract_final_answer_line(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("So the answer is 42.", "42"),
        ("Therefore, the answer is **-4**.", "-4"),
        ("the answer is: 1,234.", "1,234"),
        ("The answer is \\(\\frac{3}{4}\\).", "\\frac{3}{4}"),
        ("The answer is 3. Next, the answer is 4. Done", "4"),
        ("No conclusion", None),
    ],
)
def test_extract_the_answer_is(text: str, expected: str | None) -> None:
    assert extract_the_answer_is(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Answer: 7", "7"),
        ("**Answer:** 7", "7"),
        ("Answer:\n42", "42"),
        ("answer\uff1a 9", "9"),  # full-width colon
        ("Answer: 5\nAnswer: 6", "6"),
        ("no line", None),
    ],
)
def test_extract_answer_line(text: str, expected: str | None) -> None:
    assert extract_answer_line(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7 + 5 = 12", "12"),
        ("it costs 1,234 dollars", "1,234"),
        ("a half is 0.5", "0.5"),
        ("score .5", ".5"),
        ("it is -3 degrees", "-3"),
        ("x-5", "5"),  # a minus after a word is subtraction, not a sign
        ("it is 3/4.", "3/4"),
        ("then 3/4.5", "4.5"),
        ("totals 1,2345 and 12,345", "12,345"),
        ("about 1.5e-3 m", "1.5e-3"),
        ("nothing numeric", None),
    ],
)
def test_extract_last_number(text: str, expected: str | None) -> None:
    assert extract_last_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected", "why"),
    [
        (r"Final Answer: 1. The answer is 2. Answer: 3. \boxed{4} and 5", "4", "boxed first"),
        ("Answer: 3. The answer is 2. Final Answer: 1. Then 5", "1", "final answer line second"),
        ("Answer: 3. So the answer is 2, then 5", "2, then 5", "'the answer is' third"),
        ("Answer: 3\nthen 5", "3", "answer line fourth"),
        ("only 5 and 6", "6", "last number last"),
        (r"\boxed{4} then later Answer: 3", "4", "order is by kind, not position"),
        ("The answer is 2.\nAnswer: 3", "2", "'the answer is' beats a later answer line"),
        ("", None, "nothing"),
    ],
)
def test_extract_answer_order(text: str, expected: str | None, why: str) -> None:
    assert extract_answer(text) == expected, why


def test_regex_extractor_takes_last_match_and_cleans_it() -> None:
    extract = RegexExtractor(r"RESULT=(\S+)")
    assert extract("RESULT=1 ... result=$2$.") == "2"  # case-insensitive by default
    assert RegexExtractor(r"RESULT=(\S+)", flags=0)("result=2") is None
    assert RegexExtractor(re.compile(r"<(?P<v>\w+)>"), group="v")("<a> <b>") == "b"


def test_chain_extractors_returns_first_hit_in_order() -> None:
    calls: list[str] = []

    def never(text: str, /) -> str | None:
        calls.append("never")
        return None

    def upper(text: str, /) -> str | None:
        calls.append("upper")
        return text.upper()

    chained: AnswerExtractor = chain_extractors(never, upper, extract_last_number)
    assert chained("abc 1") == "ABC 1"
    assert calls == ["never", "upper"]
    assert chain_extractors(never)("x") is None


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("12", "12"),
        ("12.0", "12"),
        (" 12.00 ", "12"),
        ("$12$.", "12"),
        ("\\boxed{12}", "12"),
        ("\\text{ 12 }", "12"),
        ("\\$12", "12"),
        ("+12", "12"),
        ("-0", "0"),
        ("0.50", "0.5"),
        (".5", "0.5"),
        ("1,234", "1234"),
        ("1,234,567.0", "1234567"),
        ("1.5e3", "1500"),
        ("1,2", "1,2"),  # not a thousands separator: a list
        ("\\dfrac{1}{2}", "1/2"),
        ("\\frac{6}{8}", "6/8"),  # keys are spellings, not values
        ("\\left( 1, 2 \\right)", "(1,2)"),
        ("30^\\circ", "30"),
        ("30^{\\circ}", "30"),
        ("x = 3", "3"),
        ("Paris", "Paris"),
    ],
)
def test_normalize_answer(raw: str, key: str) -> None:
    assert normalize_answer(raw) == key


def test_normalize_answer_merges_vote_spellings() -> None:
    spellings = ["12", "12.0", "$12$", "\\boxed{12}", "12.", " 12 "]
    assert {normalize_answer(s) for s in spellings} == {"12"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("007", "7"),
        ("-1.250", "-1.25"),
        ("1e2", "100"),
        ("2.5E-1", "0.25"),
        ("abc", None),
        ("1,23", None),
    ],
)
def test_canonical_number(text: str, expected: str | None) -> None:
    assert canonical_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3/4", Fraction(3, 4)),
        ("\\frac{3}{4}", Fraction(3, 4)),
        ("-\\frac{3}{4}", Fraction(-3, 4)),
        ("x = 0.25", Fraction(1, 4)),
        ("1,234", Fraction(1234)),
        ("50%", Fraction(50)),
        ("50\\%", Fraction(50)),
        ("1/0", None),
        ("seven", None),
    ],
)
def test_parse_number(text: str, expected: Fraction | None) -> None:
    assert parse_number(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Final Answer: 12+19 = 31", "31"),
        ("Answer: x = 3", "3"),
        ("The answer is 2 + 2 = 4.", "4"),
        ("Answer: x <= 3", "x <= 3"),
        ("Answer: a == b", "a == b"),
        ("Answer: 7 + 5 = ", "7 + 5 ="),
    ],
)
def test_line_answers_keep_the_right_hand_side_of_an_equation(text, expected):
    assert extract_answer(text) == expected

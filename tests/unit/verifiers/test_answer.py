"""Final-answer extraction and normalisation."""

from __future__ import annotations

import doctest
import json
import re
import textwrap
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest

from tts_graph.errors import ConfigError
from tts_graph.verifiers import answer
from tts_graph.verifiers.answer import (
    DEFAULT_EXTRACTOR,
    AnswerExtractor,
    RegexExtractor,
    available_extractors,
    canonical_number,
    chain_extractors,
    extract_answer,
    extract_answer_line,
    extract_boxed,
    extract_final_answer_line,
    extract_final_statement,
    extract_last_number,
    extract_marked_answer,
    extract_program,
    extract_the_answer_is,
    extract_yes_no,
    get_extractor,
    normalize_answer,
    parse_number,
    register_extractor,
    resolve_extractor,
)
from tts_graph.verifiers.code import CodeVerifier
from tts_graph.verifiers.math import MathVerifier, math_equal

LABELLED = Path(__file__).parents[2] / "data" / "champ_answers_labelled.jsonl"


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
        (r"$\boxed{2}$ and $\boxed{3}$", "2, 3"),  # one answer written as two boxes
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
    ("text", "expected"),
    [
        # A clause that announces its computation closes with the result, even after a clause
        # that ends in mathematics ("To find 7+5,").
        ("To find 7+5, we add 7 + 5 = 12.", "12"),
        ("First 3 boxes, then we multiply 3 * 4 = 12.", "12"),
        ("To find 7+5, which gives 7 + 5 = 12.", "12"),
        # Without such a clause, an equation after one that ends in mathematics is restated data.
        ("Given 2+3, 4 + 1 = 5.", None),
        ("We start from a = 2, b = 5.", None),
    ],
)
def test_a_closing_computation_states_its_result(text: str, expected: str | None) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected", "why"),
    [
        (r"Final Answer: 1. The answer is 2. Answer: 3. \boxed{4} and 5", "4", "boxed first"),
        ("Answer: 3. The answer is 2. Final Answer: 1. Then 5", "1", "final answer line second"),
        ("Answer: 3. So the answer is 2, then 5", "2", "'the answer is' third, cut at 'then'"),
        ("Answer: 3\nthen 5", "3", "answer line fourth"),
        ("No, 4 is not prime. So the sum is 9.", "No", "a leading yes/no fifth"),
        ("We add them. The total is 11, then we stop.", "11", "the final statement sixth"),
        ("only 5 and 6", None, "no statement: no answer, not the last number"),
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


# --- the failure classes of the last-number fallback, one test each --------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("There are 377 ways to tile a 2 x 13 strip with dominoes.", "377"),
        ("There are 56 ways to seat 3 guests on 8 chairs.", "56"),
        ("The remainder when 7^100 is divided by 9 is 7, since 7^3 = 1 mod 9.", "7"),
        ("A total of 12 handshakes happen among 4 people.", "12"),
    ],
)
def test_numbers_restated_from_the_question_are_not_the_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 0 because 12 is even.", "0"),
        ("The answer is 3, since 1 + 2 = 3 and 3 > 2.", "3"),
        ("The maximum is 8, which occurs when x = 2 and y = 6.", "8"),
        ("Answer: 5 (because 25 has 3 divisors)", "5"),
    ],
)
def test_a_reason_after_the_answer_is_cut(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The two-digit automorphic numbers are 25 and 76.", "25, 76"),
        ("The possible residues are $0$, $1$, and $4$.", "0, 1, 4"),
        ("The roots are x = 2 and x = -7.", "2, -7"),
        ("The coefficients are p = 1 and q = -6.", "p = 1, q = -6"),
        ("The solutions are (1, 2) and (2, 1).", "(1, 2), (2, 1)"),
    ],
)
def test_a_list_answer_is_kept_whole(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


def test_list_spellings_share_a_key() -> None:
    assert normalize_answer("25 and 76") == normalize_answer("25, 76") == "25,76"
    assert normalize_answer("1, 4, and 9") == normalize_answer("1,4,9")
    assert normalize_answer("25, 76") != normalize_answer("76")


def test_a_unicode_minus_keeps_its_sign() -> None:
    assert extract_answer("The minimum value is \u22127.") == "-7"
    assert extract_answer("Answer: \u22123/4") == "-3/4"
    assert extract_last_number("it drops to \u221212") == "-12"
    assert normalize_answer("\u22127") == normalize_answer("-7") == "-7"
    assert parse_number("\u22120.5") == Fraction(-1, 2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The remainder is (x-3)^2.", "(x-3)^2"),
        ("The distance is $\\sqrt{8}$.", "\\sqrt{8}"),
        ("So the area is 9\\pi.", "9\\pi"),
        ("The remainder of the division is 2x + 1.", "2x + 1"),
    ],
)
def test_the_whole_final_expression_is_the_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected", "not_equal_to"),
    [
        ("The count is $10^{10^{10}}$.", "10^{10^{10}}", "10"),
        ("The number of orderings is 7!.", "7!", "7"),
        ("There are 7! orderings of the books.", "7!", "7"),
    ],
)
def test_towers_and_factorials_are_not_their_first_number(
    text: str, expected: str, not_equal_to: str
) -> None:
    extracted = extract_answer(text)
    assert extracted == expected
    assert normalize_answer(expected) != normalize_answer(not_equal_to)
    assert parse_number(expected) is None
    assert not math_equal(not_equal_to, expected, timeout_s=2)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (r"So $x = \boxed{6}$ or $x = \boxed{5}$.", "6, 5"),
        (r"\boxed{6} or \boxed{5}", "6, 5"),
        (r"\boxed{6} \text{ or } \boxed{5}", "6, 5"),
    ],
)
def test_a_hedge_between_boxes_is_not_a_vote_for_the_last(text: str, expected: str) -> None:
    assert extract_answer(text) == expected
    assert normalize_answer(expected) != normalize_answer("5")


@pytest.mark.parametrize(
    "text",
    [
        "The expression 2^61 - 1 is not divisible by 5.",
        "There is no maximum for 1/x on the interval (0, 3).",
        "The sequence 2, 4, 8, ... is strictly increasing.",
        "No value of k in {1, 2, 3} works.",
        "It is impossible to tile a 5 x 5 board with 2 x 1 dominoes.",
        "The period is at least 3 but we could not find it.",
        "The value is 4 for even n and 2 for odd n.",
        "We cannot determine the value of a_7 from 3 terms.",
    ],
)
def test_a_reply_that_states_no_answer_gets_none(text: str) -> None:
    assert extract_answer(text) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("7 + 5 = 12", "12"),
        ("7 + 5 = 12.", "12"),
        ("Answer: 12", "12"),
        ("Final Answer: 12", "12"),
        ("The answer is 12.0", "12.0"),
        ("So 3", "3"),
        ("Then 8", "8"),
        ("12", "12"),
        (" 12", "12"),
        ("The sum of 7 and 5 is 12.", "12"),
        ("5 + 7 equals 12", "12"),
        ("Let me add: 23 + 45 = 68", "68"),
        ("To add 23 and 45, we get 68.", "68"),
        ("What is 7+5? 12", "12"),
        ("**12**", "12"),
    ],
)
def test_short_model_replies_keep_their_answer(text: str, expected: str) -> None:
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes, every such sum is even.", "Yes"),
        ("No. The equation 3x = 7 has no integer root.", "No"),
        ("**No**, it cannot.", "No"),
        ("Nothing changes when n = 4.", None),
        ("No problem: x = 4.", None),
    ],
)
def test_extract_yes_no(text: str, expected: str | None) -> None:
    assert extract_yes_no(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("The answer is 5 because 2 + 3 = 5.", None),  # a marker is not a statement
        ("There are 6 values of n, namely 1 to 6.", "6"),
        ("The equation has only one solution, $(x, y) = (0, 3)$.", "(0, 3)"),
        ("The sequence defined by a_1 = 2, a_2 = 5 is periodic.", None),
        ("The expression vanishes if and only if $k = -4$.", "-4"),
        ("The polynomial has two real roots.", "2"),
        ("All 12 edges have the same length.", "12"),
        ("The number of subsets is $2^{n}$, where $n$ is the size of the set.", "2^{n}"),
        ("For example, 3 is prime. The count is 10.", "10"),
    ],
)
def test_extract_final_statement(text: str, expected: str | None) -> None:
    got = extract_final_statement(text)
    if expected is None and "answer is" in text:
        assert got == "5"  # the statement reader sees a predicate; extract_answer uses the marker
    else:
        assert got == expected


def test_marked_answers_only() -> None:
    assert extract_marked_answer(r"so $\boxed{4}$") == "4"
    assert extract_marked_answer("The answer is 4 because 2 + 2 = 4.") == "4"
    assert extract_marked_answer("The total is 4.") is None
    assert extract_the_answer_is("The answer is not determined by the data.") is None


# --- extractors by name ----------------------------------------------------------------------


def test_every_named_extractor_is_registered() -> None:
    names = available_extractors()
    assert DEFAULT_EXTRACTOR == "default"
    assert {"default", "boxed", "marked", "statement", "yes_no", "last_number"} <= set(names)
    assert names == sorted(names)
    assert get_extractor("default") is extract_answer
    assert get_extractor("boxed")(r"\boxed{3} and 4") == "3"
    assert get_extractor("last_number")("it is 3 or 4") == "4"
    assert get_extractor("statement")("Answer: 4") is None


def test_an_unknown_extractor_name_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="unknown answer extractor 'boxd'") as info:
        get_extractor("boxd")
    for name in available_extractors():
        assert name in str(info.value)


@pytest.fixture
def scratch_names() -> Iterator[list[str]]:
    added: list[str] = []
    yield added
    for name in added:
        answer._EXTRACTORS.pop(name, None)


def test_register_extractor_directly_and_as_decorator(scratch_names: list[str]) -> None:
    scratch_names.extend(["shout", "first_letter"])

    def shout(text: str, /) -> str | None:
        return text.upper() or None

    assert register_extractor("shout", shout) is shout
    assert get_extractor("shout")("ok") == "OK"

    @register_extractor("first_letter")
    def first_letter(text: str, /) -> str | None:
        return text[:1] or None

    assert get_extractor("first_letter")("xyz") == "x"
    assert {"shout", "first_letter"} <= set(available_extractors())


def test_register_extractor_refuses_duplicates_and_bad_names(scratch_names: list[str]) -> None:
    scratch_names.append("twice")
    register_extractor("twice", extract_boxed)
    with pytest.raises(ConfigError, match="already registered"):
        register_extractor("twice", extract_last_number)
    assert get_extractor("twice") is extract_boxed
    register_extractor("twice", extract_last_number, replace=True)
    assert get_extractor("twice") is extract_last_number
    with pytest.raises(ConfigError, match="identifier"):
        register_extractor("not a name", extract_boxed)
    with pytest.raises(ConfigError, match="not callable"):
        register_extractor("number", 3)  # type: ignore[call-overload]
    with pytest.raises(ConfigError, match="already registered"):
        register_extractor("default", extract_boxed)


def test_resolve_extractor_takes_a_function_or_a_name() -> None:
    assert resolve_extractor(extract_boxed) is extract_boxed
    assert resolve_extractor("last_number") is extract_last_number
    with pytest.raises(ConfigError, match="choose one of"):
        resolve_extractor("nope")


def test_resolve_extractor_defaults_to_the_verifiers_own() -> None:
    # What a graph votes on must be what its verifier checks: a program for the code verifier,
    # the math verifier's own extractor when it was given one.
    assert resolve_extractor(None, CodeVerifier(sandbox="unsafe-subprocess")) is extract_program
    assert resolve_extractor(None, MathVerifier(extractor="boxed")) is extract_boxed
    assert resolve_extractor(None, object()) is extract_answer
    assert resolve_extractor(None) is extract_answer
    assert resolve_extractor("last_number", CodeVerifier(sandbox="unsafe-subprocess")) is (
        extract_last_number
    )  # a named extractor wins


PROGRAM = "from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    return sum(xs)"


def test_a_program_is_the_answer_of_a_reply_that_writes_one() -> None:
    reply = f"Here you go:\n\n```python\n{PROGRAM}\n```\n\nIt returns 1 for [1]."
    assert get_extractor("code") is extract_program
    assert extract_program(reply) == PROGRAM
    assert extract_program("   \n") is None
    # The default extractor reads a line out of the program: the bug this extractor fixes.
    assert extract_answer(f"```python\n{PROGRAM}\n```") != PROGRAM


def test_programs_vote_line_by_line_with_their_indentation() -> None:
    spaced = PROGRAM.replace("\n\n\n", "\n\n\n\n").replace("int:", "int:   ")
    assert normalize_answer(spaced) == normalize_answer(PROGRAM)
    assert normalize_answer(textwrap.indent(PROGRAM, "    ")) == normalize_answer(PROGRAM)
    # Two programs that share their first line are still two answers...
    other = PROGRAM.replace("sum(xs)", "max(xs)")
    assert normalize_answer(other) != normalize_answer(PROGRAM)
    # ...and so are two that differ only in where a line is indented.
    loop = "for x in xs:\n    f(x)\ng()"
    assert normalize_answer(loop) != normalize_answer(loop.replace("\ng()", "\n    g()"))


# --- agreement with hand labels on real model answers ----------------------------------------


def _labelled() -> list[dict[str, object]]:
    with LABELLED.open(encoding="utf-8") as rows:
        return [json.loads(line) for line in rows]


def _agrees(extracted: str | None, labels: list[str | None]) -> bool:
    if labels[0] is None:
        return extracted is None
    if extracted is None:
        return False
    keys = {normalize_answer(label) for label in labels if label is not None}
    if normalize_answer(extracted) in keys:
        return True
    # Spellings that normalisation keeps apart ("\{1, 4\}" and "{1, 4}") but mean the same.
    return any(math_equal(label, extracted, timeout_s=5) for label in labels if label is not None)


def test_the_labelled_set_is_what_the_benchmark_describes() -> None:
    rows = _labelled()
    assert len(rows) >= 300
    assert len({row["id"] for row in rows}) == len(rows)
    splits = [row["split"] for row in rows]
    assert {name: splits.count(name) for name in set(splits)} == {
        "dev": 320,
        "holdout1": 100,
        "holdout2": 100,
    }
    for row in rows:
        assert isinstance(row["text"], str) and row["text"].strip()
        assert row["label"] is None or (isinstance(row["label"], str) and row["label"].strip())
        assert isinstance(row["gold"], str)


def test_extraction_agrees_with_the_hand_labels() -> None:
    rows = _labelled()
    wrong = [
        (row["id"], row["text"], row["label"])
        for row in rows
        if not _agrees(extract_answer(str(row["text"])), [row["label"], *row.get("also", [])])  # type: ignore[list-item]
    ]
    agreement = 1 - len(wrong) / len(rows)
    assert agreement >= 0.97, f"agreement {agreement:.3f}; disagreements: {wrong}"

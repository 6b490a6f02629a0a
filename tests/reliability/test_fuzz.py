"""Bounded fuzzing of the two parsers that read untrusted text: the spec loader and the answer
extractor.

Whatever the text (random bytes, deep nesting, huge numbers, values of the wrong type, YAML
alias bombs and self-referencing anchors; replies thousands of characters long, boxes and
braces nested thousands deep, any code point including NUL), the loader returns a spec or raises
:class:`SpecError`, and the extractor returns an answer or None. Neither may hang: a catastrophic
backtracking or quadratic regression turns the long inputs here into minutes, which the timeout
mark turns into a failure (the bound is generous; it is not what is tested).
"""

from __future__ import annotations

import string
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tts_graph.spec import SpecError, load_spec
from tts_graph.spec.models import Spec
from tts_graph.verifiers.answer import (
    available_extractors,
    extract_answer,
    get_extractor,
    normalize_answer,
    parse_number,
)

pytestmark = pytest.mark.timeout(120)

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------------------------------------
# The spec loader


def load_text(raw: bytes | str, suffix: str = ".yaml") -> Spec:
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / f"spec{suffix}"
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogatepass")
        path.write_bytes(raw)
        return load_spec(path)


def loads_or_explains(raw: bytes | str, suffix: str = ".yaml") -> SpecError | None:
    """Load ``raw``: a Spec, or a SpecError whose every problem is a message with a path;
    anything else raised fails the test."""
    try:
        spec = load_text(raw, suffix)
    except SpecError as error:
        explained(error)
        return error
    assert isinstance(spec, Spec)
    return None


def explained(error: SpecError) -> None:
    assert error.problems, error
    assert all(isinstance(p.message, str) and p.message.strip() for p in error.problems), error


@FUZZ
@given(st.binary(max_size=2000), st.sampled_from([".yaml", ".json"]))
def test_random_bytes_are_a_spec_error(raw: bytes, suffix: str) -> None:
    loads_or_explains(raw, suffix)


YAML_PIECES = st.sampled_from(
    [
        "strategy:", " kind:", " best_of_n", " n:", " select:", "budget:", " max_calls:",
        "&a", "*a", "<<:", "!!str", "!!binary", "!!python/object:os.system", "? ",
        "- ", "[", "]", "{", "}", ",", ":", "\n", "  ", "\t", "'", '"', "#", "|", ">",
        "${HOME}", "${NOPE_UNSET}", "1e999", ".nan", "-.inf", "0x1F", "0o17", "~", "null",
        "9" * 50, "---", "...", "%YAML 1.2", "\x00", "\ufeff", "é",
    ]
)  # fmt: skip


@FUZZ
@given(st.lists(st.one_of(YAML_PIECES, st.text(max_size=5)), max_size=60).map("".join))
def test_random_yaml_text_is_a_spec_or_a_spec_error(text: str) -> None:
    loads_or_explains(text)


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("strategy: !!int kind", 11),
        ("strategy: !!int", 11),
        ("strategy: {kind: best_of_n, n: !!int x}", 32),
        ("strategy: {kind: best_of_n, n: !!int 0b}", 32),
        ("strategy: !!float ''", 11),
        ("strategy: !!bool maybe", 11),
        ("strategy: !!timestamp soon", 11),
        ("strategy: best_of_n\nname: 2024-13-45", 7),
        ("strategy: best_of_n\nname: 2001-12-14t21:59:43.10-99:00", 7),
    ],
)
def test_a_tag_that_cannot_construct_its_value_is_a_spec_error(text: str, column: int) -> None:
    # PyYAML's constructors raise ValueError, IndexError, KeyError... here, not a YAMLError.
    error = loads_or_explains(text)
    assert error is not None
    line = text.count("\n") + 1
    assert f"line {line}, column {column}" in str(error), error
    assert "cannot be read as !!" in str(error), error


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.sampled_from(["best_of_n", "adaptive", "majority", "math", "vote", "{question}"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "kind",
                    "n",
                    "select",
                    "verifier",
                    "candidates",
                    "routes",
                    "labels",
                    "thresholds",
                    "sampling",
                    "temperature",
                    "stop",
                    "budget",
                    "max_calls",
                    "judge",
                    "name",
                    "x",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=30,
)


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["strategy", "budget", "sampling", "prompt", "backend", "name", "extract"]),
        JSON_VALUES,
        max_size=5,
    ),
    st.sampled_from(["data", "yaml", "json"]),
)
def test_values_of_any_type_anywhere_are_a_spec_or_a_spec_error(
    data: dict[str, Any], form: str
) -> None:
    if form == "data":
        try:
            spec = load_spec(data)
        except SpecError as error:
            explained(error)
        else:
            assert isinstance(spec, Spec)
    elif form == "yaml":
        loads_or_explains(yaml.safe_dump(data))
    else:
        import json

        try:
            text = json.dumps(data)
        except ValueError:
            return
        loads_or_explains(text, ".json")


@pytest.mark.parametrize("depth", [100, 3_000, 50_000])
@pytest.mark.parametrize(
    "shape",
    [
        lambda d: "strategy: " + "[" * d + "]" * d,
        lambda d: "strategy: " + "{a: " * d + "1" + "}" * d,
        lambda d: "strategy:\n" + "".join("  " * i + "- \n" for i in range(min(d, 3_000))),
        lambda d: "[" * d,
    ],
    ids=["flow-lists", "flow-maps", "block-lists", "unclosed"],
)
def test_deep_nesting_is_a_spec_error(shape: Any, depth: int) -> None:
    error = loads_or_explains(shape(depth))
    assert error is not None


@pytest.mark.parametrize("wrap", [lambda d: {"kind": d}, lambda d: [d], lambda d: {"a": [d]}])
def test_deep_nesting_given_as_data_is_a_spec_error(wrap: Any) -> None:
    deep: Any = "best_of_n"
    for _ in range(20_000):
        deep = wrap(deep)
    with pytest.raises(SpecError) as caught:
        load_spec({"strategy": deep})
    (problem,) = caught.value.problems
    assert problem.path.startswith("strategy") and "nested more than 100 levels" in problem.message


@pytest.mark.parametrize("depth", [101, 150])
def test_the_file_and_the_data_share_one_depth_check(depth: int) -> None:
    # Deep enough for the check, not for the YAML parser's own stack.
    data: Any = {"name": "math"}
    for _ in range(depth):
        data = {"x": data}
    spec = {"strategy": {"kind": "best_of_n", "verifier": {"name": "math", "deep": data}}}
    with pytest.raises(SpecError) as from_data:
        load_spec(spec)
    from_file = loads_or_explains(yaml.safe_dump(spec))
    assert from_file is not None
    assert from_file.problems == from_data.value.problems
    assert "nested more than 100 levels" in from_file.problems[0].message


BOUNDED_FIELDS = {
    "n": "strategy: {kind: best_of_n, n: %s}",
    "threshold": "strategy: {kind: self_consistency, threshold: %s}",
    "top_p": "strategy: best_of_n\nsampling: {top_p: %s}",
    "thresholds": "strategy: {kind: adaptive, thresholds: [%s, 0.5]}",
}
HUGE = {
    "5000-digits": "9" * 5_000,
    "negative-100000-digits": "-" + "9" * 100_000,
    "hex-5000-digits": "0x" + "f" * 5_000,
    "1e999": "1e999",
    "-1e999": "-1e999",
    ".inf": ".inf",
    ".nan": ".nan",
    "exponent-400-digits": "1.0e" + "9" * 400,
}


@pytest.mark.parametrize("field", BOUNDED_FIELDS)
@pytest.mark.parametrize("name", HUGE)
def test_huge_and_non_finite_numbers_are_a_spec_error(field: str, name: str) -> None:
    # Every field here has bounds, which no huge or non-finite number is within.
    text = BOUNDED_FIELDS[field] % HUGE[name]
    error = loads_or_explains(text)
    assert error is not None, text
    if "digits" in name and not name.startswith("exponent"):
        # Too long for Python to write: said where it is, in a spec author's terms.
        line = text.count("\n") + 1
        assert f"more than 4300 digits at line {line}" in str(error), error
        assert "set_int_max_str_digits" not in str(error), error


NON_FINITE = ["1e999", "-1e999", ".inf", "-.inf", ".nan", "1.0e" + "9" * 400]
FLOAT_OPTIONS = {
    "temperature": "strategy: best_of_n\nsampling: {temperature: %s}",
    "judge-top_p": "strategy: {kind: tournament, judge: {sampling: {top_p: %s}}}",
    "keep_top": "strategy: {kind: confidence, keep_top: %s}",
    "threshold": "strategy: {kind: self_consistency, threshold: %s}",
    "thresholds": "strategy: {kind: adaptive, thresholds: [0.2, %s]}",
    "max_wall_s-negative": "strategy: best_of_n\nbudget: {max_wall_s: -%s}",
}


@pytest.mark.parametrize("option", FLOAT_OPTIONS)
@pytest.mark.parametrize("value", NON_FINITE)
def test_no_option_takes_a_number_that_is_not_finite(option: str, value: str) -> None:
    text = FLOAT_OPTIONS[option] % value
    error = loads_or_explains(text)
    assert error is not None, text
    (problem,) = error.problems
    assert option.split("-")[0] in f"{problem.path} {problem.message}", problem


@pytest.mark.parametrize(
    ("limit", "value"),
    [
        ("max_calls", "0x" + "f" * 3_000),
        ("max_total_tokens", "9" * 4_300),
        ("max_flops", "1" + "0" * 300),
        ("max_flops", "1e999"),
        ("max_flops", ".inf"),
        ("max_wall_s", ".inf"),
    ],
)
def test_a_huge_limit_is_a_limit(limit: str, value: str) -> None:
    # A budget's limits have no upper bound: a huge one is valid, it is just never reached
    # (an infinite one is none); the spec is written out and read back the same.
    text = f"strategy: best_of_n\nbudget: {{{limit}: {value}}}"
    error = loads_or_explains(text)
    assert error is None
    spec = load_text(text)
    assert load_spec(spec.model_dump(mode="json", by_alias=True, exclude_none=True)) == spec
    assert load_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True))) == spec


@pytest.mark.parametrize("limit", ["max_calls", "max_flops", "max_wall_s"])
@pytest.mark.parametrize(
    "value", ["9" * 4_301, "0x" + "f" * 5_000, "-0b" + "1" * 20_000, "1" + ":0" * 2_200]
)
def test_a_limit_too_long_to_write_is_a_spec_error(limit: str, value: str) -> None:
    # Python writes no int over 4300 digits: such a spec could not be shown nor saved.
    error = loads_or_explains(f"strategy: best_of_n\nbudget:\n  {limit}: {value}")
    assert error is not None
    message = str(error)
    assert "more than 4300 digits at line 3, column" in message, message
    assert "set_int_max_str_digits" not in message, message


@pytest.mark.parametrize(
    "data",
    [
        {"strategy": {"kind": "best_of_n", "n": 16**5000}},
        {"strategy": "best_of_n", "budget": {"max_flops": -(10**5000)}},
        {"strategy": {"kind": "best_of_n", "verifier": {"name": "math", "x": [2**20_000]}}},
    ],
    ids=["n", "max_flops", "verifier-option"],
)
def test_a_number_too_long_to_write_given_as_data_is_a_spec_error(data: dict[str, Any]) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(data)
    (problem,) = caught.value.problems
    assert problem.path.startswith(("strategy.", "budget.")), problem
    assert "more than 4300 digits" in problem.message


@pytest.mark.parametrize("levels", [3, 9, 12])
def test_an_alias_bomb_is_a_spec_error_without_expanding_it(levels: int) -> None:
    # Each level holds ten of the previous: 10**levels values from a few hundred bytes.
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]")
    lines.append(f"strategy: {{kind: best_of_n, verifier: {{name: math, data: *l{levels - 1}}}}}")
    error = loads_or_explains("\n".join(lines))
    assert error is not None


@pytest.mark.parametrize(
    "text",
    ["a: &a [*a]\nstrategy: best_of_n", "&s {strategy: best_of_n, x: *s}",
     "strategy: &s {kind: best_of_n, candidates: *s}",
     "strategy: {kind: best_of_n, verifier: &v {name: math, self: *v}}"],
)  # fmt: skip
def test_a_structure_that_contains_itself_is_a_spec_error(text: str) -> None:
    error = loads_or_explains(text)
    assert error is not None


# ---------------------------------------------------------------------------------------------
# The answer extractor


def extract_everything(text: str) -> None:
    """Every extractor, normalisation and number reading on ``text``: each returns its type."""
    for name in available_extractors():
        answer = get_extractor(name)(text)
        assert answer is None or isinstance(answer, str), name
    assert isinstance(normalize_answer(text), str)
    number = parse_number(text)
    assert number is None or number.denominator > 0


ADVERSARIAL = st.sampled_from(
    ["\\boxed{", "\\fbox{", "{", "}", "(", ")", "[", "]", "$", "$$", "\\(", "\\)", "\\[", "\\]",
     "\\", " is ", " are ", " and ", " or ", ", ", ". ", "! ", "?", "\n", "x", "12", "1,234",
     "-", " = ", "the answer is ", "Answer: ", "Final Answer: ", " because ", " for ", " if ",
     " not ", "there are ", "has ", " with ", "\\frac{1}{2}", "\\text{", "\u2212", "\u00a0",
     "\x00", "Yes, ", "**", "_", ":", " -- ", "\u2014", "...", "e.g.", "\\left(", "^",
     "1e999", "3/4", "%", "\ud800", "\U0001f600"]
)  # fmt: skip


@FUZZ
@given(st.lists(st.one_of(ADVERSARIAL, st.characters()), max_size=300).map("".join))
def test_any_reply_gives_an_answer_or_none(text: str) -> None:
    extract_everything(text)


@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(ADVERSARIAL, min_size=1, max_size=4), st.integers(0, 2**32))
def test_long_replies_of_repeated_pieces_finish(pieces: list[str], seed: int) -> None:
    # A runaway generation repeats itself until max_tokens: 20,000 characters of a few pieces.
    import random

    rng = random.Random(seed)
    text = "".join(rng.choice(pieces) for _ in range(20_000 // max(map(len, pieces))))
    extract_everything(text)


LONG = 60_000


@pytest.mark.parametrize(
    "text",
    [
        "\\boxed{" * (LONG // 7),
        "\\boxed{" * (LONG // 14) + "7" + "}" * (LONG // 14),
        "{" * LONG,
        "(" * LONG + ")" * LONG,
        "$" * LONG,
        "x is " * (LONG // 5),
        "the answer is not " * (LONG // 18),
        "Answer: " * (LONG // 8),
        "there are " * (LONG // 10),
        " for x and" * (LONG // 10),
        "a = b, " * (LONG // 7),
        "1" * LONG,
        "1," * (LONG // 2),
        "a! b " * (LONG // 5),
        "\x00" * LONG,
        "\u2212\u0663 " * (LONG // 3),
        string.printable * (LONG // len(string.printable)),
    ],
    ids=[
        "open-boxes", "nested-boxes", "open-braces", "nested-parens", "dollars", "copulas",
        "negated-answers", "answer-lines", "counts", "piecewise", "equations", "digits",
        "thousands", "factorials", "nul", "unicode-digits", "printable",
    ],
)  # fmt: skip
def test_long_adversarial_replies_finish(text: str) -> None:
    extract_everything(text)


def test_a_box_after_a_long_runaway_is_still_found() -> None:
    # Long input is read whole, not cut: the answer after 100,000 characters still counts.
    assert extract_answer("x is " * 20_000 + "\n\\boxed{42}") == "42"
    assert extract_answer("\\boxed{" * 10_000 + "\\boxed{42}") == "42"

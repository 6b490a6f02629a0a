"""Properties that hold for every input, checked on generated ones (hypothesis).

- Answer extraction: an answer written in any of the marked forms, after any preamble, is the
  answer extracted; no text makes extraction raise; normalising an answer is idempotent, and a
  number reads as its exact value however it is written.
- Votes: the selectors do not depend on the order candidates arrive in; the winner has the most
  votes (or weight); ties go as documented (summed score, then first seen).
- pass@k: exact against the combinatorial definition in fractions, for large ``n`` as well as
  small, and exactly 0 or 1 at the boundaries.
- Specs: every valid spec survives a dump and a load (from data and from YAML text); a bad value
  anywhere gives a :class:`SpecError` that names the field.

The small-``n`` pass@k properties (a probability, monotone) live with the metrics' unit tests.
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, reject, settings
from hypothesis import strategies as st

from tts_graph.candidate import Candidate, candidate_score, vote_key
from tts_graph.errors import MAX_SAMPLES, ConfigError
from tts_graph.eval.metrics import pass_at_k
from tts_graph.nodes.fanout import make_fanout_node
from tts_graph.nodes.pool import make_pool_node
from tts_graph.nodes.select import choose, group_votes, majority_vote, weighted_vote
from tts_graph.spec import SpecError, load_spec
from tts_graph.spec.models import Spec
from tts_graph.spec.variables import escape_variables, expand_variables
from tts_graph.testing import FakeBackend
from tts_graph.verifiers.answer import (
    available_extractors,
    canonical_number,
    extract_answer,
    extract_boxed,
    get_extractor,
    normalize_answer,
    parse_number,
)
from tts_graph.verifiers.base import Verdict

pytestmark = pytest.mark.timeout(300)

PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------
# Answer extraction


@st.composite
def answers(draw: st.DrawFn) -> tuple[str, Fraction]:
    """A numeric answer as a model writes it, with its exact value."""
    kind = draw(st.sampled_from(["int", "thousands", "decimal", "fraction", "latex", "negative"]))
    n = draw(st.integers(0, 10**9))
    if kind == "int":
        return str(n), Fraction(n)
    if kind == "thousands":
        return f"{n:,}", Fraction(n)
    if kind == "negative":
        return f"-{n}", Fraction(-n)
    if kind == "decimal":
        d = Decimal(n).scaleb(-draw(st.integers(1, 6)))
        return str(d), Fraction(d)
    den = draw(st.integers(1, 10**4))
    if kind == "fraction":
        return f"{n}/{den}", Fraction(n, den)
    return f"\\frac{{{n}}}{{{den}}}", Fraction(n, den)


# Prose and working that a reply may open with: no marker, and no sentence that ends in a value.
PREAMBLE = st.lists(
    st.sampled_from(
        [
            "Let me think step by step.",
            "First, we compute the sum of the two parts.",
            "We have $x^2 + 3x + 2 = 0$ to consider, so we factor it.",
            "Hmm, wait, that is not right.",
            "Let's check: (3 + 4) * 2 = 14 is only an intermediate value.",
            "Consider the set {1, 2, 3} and its subsets.",
            "Résumé: ünïcode — and a typeset minus \u2212 here.",
            "There are many ways to approach this.",
            "\n\n",
        ]
    ),
    max_size=6,
).map(" ".join)

MARKED = [
    "\\boxed{{{a}}}",
    "$\\boxed{{{a}}}$.",
    "Answer: {a}",
    "**Answer:** {a}",
    "The answer is {a}.",
    "So the final answer is {a}.",
    "Final Answer: The final answer is ${a}$. I hope it is correct.",
]


@PROPERTY
@given(answers(), PREAMBLE, st.sampled_from(MARKED), st.sampled_from(["", "\n", "\n\nDone."]))
def test_a_marked_answer_after_any_preamble_is_extracted(
    answer: tuple[str, Fraction], preamble: str, form: str, after: str
) -> None:
    written, value = answer
    text = f"{preamble}\n{form.format(a=written)}{after}"
    extracted = extract_answer(text)
    assert extracted is not None, text
    assert normalize_answer(extracted) == normalize_answer(written), text
    assert parse_number(extracted) == value, text


@PROPERTY
@given(st.lists(answers(), min_size=1, max_size=4), PREAMBLE)
def test_the_last_box_wins_and_boxes_listed_with_and_are_all_kept(
    boxed: list[tuple[str, Fraction]], preamble: str
) -> None:
    earlier = " ".join(f"first \\boxed{{{a}}}, then" for a, _ in boxed[:-1])
    last = boxed[-1][0]
    assert extract_boxed(f"{preamble} {earlier} \\boxed{{{last}}}.") == last
    listed = " and ".join(f"\\boxed{{{a}}}" for a, _ in boxed)
    assert extract_boxed(f"{preamble} so x is {listed}.") == ", ".join(a for a, _ in boxed)


TEXT = st.lists(
    st.one_of(
        st.characters(),  # any code point, surrogates and NUL included
        st.sampled_from(list("{}()[]$\\=,.!?:;*_-\n ")),
        st.sampled_from(["\\boxed{", "Answer:", " is ", " the answer is ", "\\frac{1}{2}", "12"]),
    ),
    max_size=200,
).map("".join)


@settings(max_examples=400, deadline=None)
@given(TEXT)
def test_no_text_makes_extraction_raise_and_answers_are_trimmed(text: str) -> None:
    for name in available_extractors():
        answer = get_extractor(name)(text)
        assert answer is None or (isinstance(answer, str) and answer == answer.strip() != ""), name
    key = normalize_answer(text)
    assert isinstance(key, str)
    if "\n" in text.strip():  # a program: kept line by line, less blank lines and trailing space
        assert all(line.strip() and line == line.rstrip() for line in key.split("\n"))
    else:
        assert not any(c.isspace() for c in key)
    number = parse_number(text)
    assert number is None or isinstance(number, Fraction)


@settings(max_examples=300, deadline=None)
@given(answers(), PREAMBLE, st.sampled_from(MARKED))
def test_normalising_an_answer_is_idempotent(
    answer: tuple[str, Fraction], preamble: str, form: str
) -> None:
    # A vote key is an answer too: normalising it again must not move it to another key.
    # (Arbitrary text is not always a fixed point: "\\$,0" -> ",0" -> "0".)
    written = answer[0]
    extracted = extract_answer(f"{preamble}\n{form.format(a=written)}") or ""
    for text in (written, extracted):
        key = normalize_answer(text)
        assert normalize_answer(key) == key


@PROPERTY
@given(st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(lambda d: d == d))
def test_a_number_reads_as_its_exact_value_however_it_is_written(d: Decimal) -> None:
    assume(abs(d.adjusted()) < 60)
    value = Fraction(d)
    spellings = [str(d), format(d, "f"), f"${d}$", f"\\boxed{{{d}}}", f" {d}. "]
    if d == d.to_integral_value():
        spellings.append(f"{int(d):,}")
    for spelling in spellings:
        assert parse_number(spelling) == value, spelling
        assert canonical_number(normalize_answer(spelling)) == normalize_answer(spelling)


PLAIN_NUMBERS = st.one_of(
    st.integers(-(10**40), 10**40).map(str),
    st.from_regex(r"[+-]?0*[0-9]{1,25}(\.[0-9]{1,8})?", fullmatch=True),
)


@PROPERTY
@given(PLAIN_NUMBERS, st.sampled_from(["", " ", "  \n"]))
def test_a_plain_number_is_read_as_the_same_answer_bare_or_in_math(number: str, space: str) -> None:
    # A bare number takes a shortcut past the sentence and list reading; wrapped in math
    # delimiters it takes the full path. Both must give one answer and one vote key.
    assert extract_answer(f"Answer: {space}{number}{space}") == extract_answer(
        f"Answer: ${number}$"
    )
    assert normalize_answer(f"{space}{number}{space}") == normalize_answer(f"${number}$")
    assert normalize_answer(number) == canonical_number(f"{number}e0")  # the Decimal path


# ---------------------------------------------------------------------------------------------
# Votes

SCORES = st.one_of(
    st.none(),
    st.floats(-10, 10, allow_nan=False),
    st.sampled_from([0.0, 1.0, float("nan"), float("inf"), float("-inf")]),
)


@st.composite
def candidate_lists(draw: st.DrawFn) -> list[Candidate]:
    size = draw(st.integers(0, 12))
    indices = draw(st.lists(st.integers(0, 1000), min_size=size, max_size=size, unique=True))
    out = []
    for index in indices:
        verdict = draw(st.none() | st.builds(Verdict, passed=st.booleans(), score=SCORES))
        out.append(
            Candidate(
                index=index,
                text=f"reply {index}",
                # Few distinct answers, in several spellings, so votes tie and merge.
                answer=draw(st.sampled_from([None, "", "1", "1.0", "$1$", "2", "2, 3", "x"])),
                score=draw(SCORES),
                mean_logprob=draw(st.none() | st.floats(-5, 0)),
                verdict=verdict,
                id=f"c{index}",
                run=None,
            )
        )
    return out


def shuffled(candidates: list[Candidate], seed: int) -> list[Candidate]:
    out = list(candidates)
    random.Random(seed).shuffle(out)
    return out


RULES = ["majority", "best_score", "weighted", "verified"]


@PROPERTY
@given(candidate_lists(), st.integers(0, 2**32), st.sampled_from(RULES))
def test_every_rule_ignores_the_order_candidates_arrive_in(
    candidates: list[Candidate], seed: int, rule: str
) -> None:
    chosen, info = choose(rule, candidates)
    again, info_again = choose(rule, shuffled(candidates, seed))
    assert (chosen and chosen.index) == (again and again.index)
    assert _comparable(info) == _comparable(info_again)


def _comparable(info: dict[str, Any]) -> dict[str, Any]:
    # NaN != NaN: compare what the decision records by its text.
    return {k: repr(v) for k, v in info.items()}


def _ranked_sum(values: Any) -> float:
    total = sum(values)
    return float("-inf") if math.isnan(total) else total


@PROPERTY
@given(candidate_lists())
def test_the_majority_winner_has_the_most_votes_and_ties_go_as_documented(
    candidates: list[Candidate],
) -> None:
    chosen, votes, tie_break = majority_vote(candidates)
    keys = [k for c in candidates if (k := vote_key(c)) is not None]
    assert votes == dict(Counter(keys))
    if not keys:
        assert chosen is None
        return
    assert chosen is not None
    winner = vote_key(chosen)
    assert winner is not None
    assert votes[winner] == max(votes.values())
    leaders = [k for k, v in votes.items() if v == votes[winner]]
    assert (tie_break == "none") == (len(leaders) == 1)
    groups = group_votes(candidates)
    # +inf and -inf together sum to NaN, which ranks lowest (else the order would decide).
    summed = {k: _ranked_sum(candidate_score(c) for c in groups[k]) for k in leaders}
    first_seen = {k: min(c.index for c in groups[k]) for k in leaders}
    if len(leaders) > 1:
        best = max(summed.values())
        # The winner's summed score is the highest; among equal sums the earliest answer wins.
        assert summed[winner] == best
        level = [k for k in leaders if summed[k] == best]
        assert first_seen[winner] == min(first_seen[k] for k in level)
        assert tie_break == ("first seen" if len(level) > 1 else "summed score")
    # The representative is the winning answer's best-scored candidate, ties to the lowest index.
    top = max(candidate_score(c) for c in groups[winner])
    assert chosen.index == min(c.index for c in groups[winner] if candidate_score(c) == top)


@PROPERTY
@given(candidate_lists())
def test_the_weighted_winner_has_the_most_weight_then_votes_then_comes_first(
    candidates: list[Candidate],
) -> None:
    chosen, weights = weighted_vote(candidates)
    groups = group_votes(candidates)
    if not groups:
        assert chosen is None
        return
    assert chosen is not None
    winner = vote_key(chosen)
    assert winner is not None

    def rank(k: str) -> tuple[float, int, int]:
        return (weights[k], len(groups[k]), -min(c.index for c in groups[k]))

    assert all(rank(winner) >= rank(k) for k in groups)


@PROPERTY
@given(candidate_lists())
def test_best_score_and_verified_pick_the_best_scored_lowest_index(
    candidates: list[Candidate],
) -> None:
    chosen, _ = choose("best_score", candidates)
    if not candidates:
        assert chosen is None
        return
    assert chosen is not None
    top = max(candidate_score(c) for c in candidates)
    assert candidate_score(chosen) == top
    assert chosen.index == min(c.index for c in candidates if candidate_score(c) == top)
    passing = [c for c in candidates if c.verdict is not None and c.verdict.passed]
    verified, info = choose("verified", candidates)
    if passing:
        assert verified in passing
        assert candidate_score(verified) == max(candidate_score(c) for c in passing)
    else:
        assert info["fallback"] == "majority"


# ---------------------------------------------------------------------------------------------
# pass@k


@st.composite
def large_nck(draw: st.DrawFn) -> tuple[int, int, int]:
    n = draw(st.integers(1, 3000))
    return n, draw(st.integers(0, n)), draw(st.integers(1, n))


@PROPERTY
@given(large_nck())
def test_pass_at_k_matches_the_exact_combinatorial_definition_at_any_size(
    args: tuple[int, int, int],
) -> None:
    n, c, k = args
    miss = Fraction(math.comb(n - c, k), math.comb(n, k))  # every one of the k is wrong
    p = pass_at_k(n, c, k)
    assert 0.0 <= p <= 1.0
    assert p == pytest.approx(float(1 - miss), rel=1e-9, abs=1e-12)
    if k > n - c:
        assert p == 1.0
    if c == 0:
        assert p == 0.0
    if k == 1:
        assert p == pytest.approx(c / n, rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Specs

# Text with every form of variable: set ones (whose values hold "${" themselves), defaults
# (with braces, and "${" inside), the "$${" escape, and a "${" of no form, which stays text.
VARIABLE_PIECES = st.sampled_from(
    ["${", "$${", "$", "{", "}", ":-", "${PROPERTY_SET}", "${PROPERTY_SET:-x}", "${1}",
     "${PROPERTY_UNSET:-", "${PROPERTY_UNSET:-${PROPERTY_OTHER}}", "${PROPERTY_UNSET:-}", "a"]
)  # fmt: skip
ENVIRONMENT = {"PROPERTY_SET": "${PROPERTY_OTHER} and $${ and }"}
NAMES = st.lists(
    st.text(st.characters(exclude_categories=("Cs",)), max_size=10) | VARIABLE_PIECES, max_size=6
).map("".join)
SEL = st.sampled_from(["majority", "best_score", "weighted", "verified"])


def sampling() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "temperature": st.floats(0, 2),
            "top_p": st.floats(0.01, 1),
            "max_tokens": st.integers(1, 4096),
            "logprobs": st.booleans(),
            "top_logprobs": st.integers(0, 20),
            "stop": st.lists(st.text(min_size=1, max_size=5), max_size=3),
        },
    )


LEAVES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "best_of_n": st.fixed_dictionaries(
        {"kind": st.just("best_of_n")},
        optional={"n": st.integers(1, 1024), "select": SEL, "verifier": st.just("math")},
    ),
    "self_consistency": st.fixed_dictionaries(
        {"kind": st.just("self_consistency")},
        optional={
            "max_samples": st.integers(1, 1024),
            "threshold": st.floats(0.01, 1),
            "stop": st.sampled_from(["adaptive", "beta"]),
            "initial": st.integers(1, 64),
        },
    ),
    "self_refine": st.fixed_dictionaries(
        {"kind": st.just("self_refine")}, optional={"rounds": st.integers(1, 16)}
    ),
    "budget_forcing": st.integers(1, 4096).flatmap(
        lambda hi: st.fixed_dictionaries(
            {
                "kind": st.just("budget_forcing"),
                "max_thinking_tokens": st.just(hi),
                "min_thinking_tokens": st.integers(0, hi),
            },
            optional={"n": st.integers(1, 256), "max_waits": st.integers(0, 32)},
        )
    ),
    "tournament": st.fixed_dictionaries(
        {"kind": st.just("tournament")},
        optional={
            "mode": st.sampled_from(["knockout", "league"]),
            "n": st.integers(2, 256),
            "judgements": st.integers(1, 16),
            "judge": st.fixed_dictionaries({}, optional={"sampling": sampling()}),
        },
    ),
    "confidence": st.fixed_dictionaries(
        {"kind": st.just("confidence")},
        optional={"n": st.integers(1, 512), "keep_top": st.floats(0.01, 1)},
    ),
}


@st.composite
def strategies(draw: st.DrawFn, depth: int = 0) -> dict[str, Any]:
    if depth < 2 and draw(st.booleans()):
        bins = draw(st.integers(1, 3))
        thresholds = sorted(draw(st.lists(st.floats(0, 1), min_size=bins, max_size=bins)))
        labels = [f"bin{i}" for i in range(bins + 1)]
        routes = {label: draw(strategies(depth + 1) | st.just("vote")) for label in labels}
        return {"kind": "adaptive", "thresholds": thresholds, "labels": labels, "routes": routes}
    leaf = draw(st.sampled_from(sorted(LEAVES)).flatmap(LEAVES.__getitem__))
    if leaf["kind"] in ("best_of_n", "tournament") and depth < 2 and draw(st.booleans()):
        leaf["candidates"] = draw(strategies(depth + 1))
    return {**leaf, **draw(st.fixed_dictionaries({}, optional={"seed": st.integers(0, 2**31)}))}


SPECS = st.fixed_dictionaries(
    {"strategy": strategies()},
    optional={
        "name": NAMES,
        "description": NAMES,
        "sampling": sampling(),
        "budget": st.fixed_dictionaries(
            {},
            optional={
                "max_total_tokens": st.integers(1, 10**9),
                "max_calls": st.integers(1, 10**4),
                "max_flops": st.floats(1, 1e30),
                "max_wall_s": st.floats(0.01, 1e5),
                "strict": st.booleans(),
            },
        ),
        "prompt": st.fixed_dictionaries(
            {"template": NAMES.map(lambda t: t.replace("{", "").replace("}", "") + " {question}")},
            optional={"system": NAMES},
        ),
        "extract": st.sampled_from(["default", "boxed", "last_number"]),
    },
)


def _dumped(spec: Spec) -> dict[str, Any]:
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def _load_text(text: str) -> Spec:
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_text(text, encoding="utf-8")
        return load_spec(path)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(SPECS)
def test_a_valid_spec_survives_dump_and_load(data: dict[str, Any]) -> None:
    # Variables are expanded once, on load; what they bring in ("${...}" too) is kept, and a
    # dumped spec writes it so that it loads back as itself.
    with mock.patch.dict(os.environ, ENVIRONMENT):
        os.environ.pop("PROPERTY_UNSET", None)
        os.environ.pop("PROPERTY_OTHER", None)
        try:
            spec = load_spec(data)
        except SpecError as exc:
            # Pieces joined can name an unset variable ("$" + "${A:-${B}}" is "$${A:-" then
            # "${B}"): not a valid spec, and the error says so; any other error is a failure.
            if "is not set" not in str(exc):
                raise
            reject()
    assert load_spec(_dumped(spec)) == spec
    # Non-ASCII escaped: PyYAML reads back a NEL (U+0085) it wrote raw as a line break.
    assert _load_text(yaml.safe_dump(_dumped(spec))) == spec


@settings(max_examples=300, deadline=None)
@given(
    NAMES,
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20),
)
def test_variables_expand_once_and_escaping_undoes_it(text: str, value: str) -> None:
    with mock.patch.dict(os.environ, {"PROPERTY_SET": value}):
        os.environ.pop("PROPERTY_UNSET", None)
        assert expand_variables(escape_variables(text)) == text
        # A variable's value is taken whole, whatever it holds.
        assert expand_variables("<${PROPERTY_SET}>") == f"<{value}>"
        assert expand_variables("${PROPERTY_UNSET:-${PROPERTY_SET}}") == "${PROPERTY_SET}"


@pytest.mark.parametrize(
    "make",
    [make_pool_node, lambda n: make_fanout_node(FakeBackend(lambda r, i: "Answer: 1"), n=n)],
    ids=["pool", "fanout"],
)
@settings(max_examples=50, deadline=None)
@given(
    st.one_of(
        st.integers(max_value=0),
        st.integers(min_value=MAX_SAMPLES + 1),
        st.sampled_from([True, 2.0, "8", None, 16**5000, -(10**5000)]),
    )
)
def test_a_node_refuses_a_count_out_of_range_naming_it(make: Any, n: Any) -> None:
    with pytest.raises(ConfigError) as caught:
        make(n=n)
    message = str(caught.value)
    assert message.startswith("n must be >= 1 and <= 1024, got "), message
    assert len(message) < 200, message


# Where each generated bad value goes, and the field its problem must name.
BAD_VALUES: list[tuple[str, Any, str]] = [
    ("strategy.n", "many", "strategy.n"),
    ("strategy.n", 0, "strategy.n"),
    ("strategy.n", 10**6, "strategy.n"),
    ("strategy.n", [1], "strategy.n"),
    ("strategy.n", {"a": 1}, "strategy.n"),
    ("strategy.n", 2.5, "strategy.n"),
    ("strategy.seed", "x", "strategy.seed"),
    ("strategy.select", 3, "strategy.select"),
    ("strategy.select", "best_of_all", "strategy.select"),
    ("strategy.verifier", 7, "strategy.verifier"),
    ("strategy.verifier", "no_such_verifier", "strategy.verifier"),
    ("strategy.candidates", "no_such_kind", "strategy.candidates"),
    ("strategy.candidates.n", -1, "strategy.candidates.n"),
    ("strategy.nn", 3, "strategy.nn"),
    ("sampling.temperature", -1.0, "sampling.temperature"),
    ("sampling.temperature", float("nan"), "sampling.temperature"),
    ("sampling.top_p", 2, "sampling.top_p"),
    ("sampling.max_tokens", "lots", "sampling.max_tokens"),
    ("sampling.stop", [""], "sampling.stop"),
    ("sampling.stop", "END", "sampling.stop"),
    ("budget.max_calls", -3, "max_calls"),
    ("budget.max_total_tokens", "x", "max_total_tokens"),
    ("budget.max_wall_s", float("nan"), "max_wall_s"),
    ("budget", 5, "budget"),
    ("prompt.template", "no placeholder", "prompt.template"),
    ("extract", "no_such_extractor", "extract"),
    ("name", ["a"], "name"),
    ("backend.model_params", 0, "backend.model_params"),
    ("unknown_top_level", 1, "unknown_top_level"),
]


def _put(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {"kind": "best_of_n"} if part in ("strategy", "candidates") else {}
            node[part] = child
        node = child
    node[last] = value


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(BAD_VALUES), st.sampled_from(["data", "yaml"]), st.integers(1, 1024))
def test_a_bad_value_is_a_spec_error_naming_its_field(
    bad: tuple[str, Any, str], form: str, n: int
) -> None:
    path, value, field = bad
    data: dict[str, Any] = {"name": "t", "strategy": {"kind": "best_of_n", "n": n}}
    _put(data, path, value)
    load = (
        (lambda: load_spec(data)) if form == "data" else (lambda: _load_text(yaml.safe_dump(data)))
    )
    with pytest.raises(SpecError) as caught:
        load()
    problems = caught.value.problems
    assert problems, caught.value
    assert any(field in f"{p.path} {p.message}" for p in problems), str(caught.value)
    assert field in str(caught.value)

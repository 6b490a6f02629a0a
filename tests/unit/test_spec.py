"""Specs: loading with every error by path, the shipped JSON Schema, building and running a spec's
graph, the static worst case (checked against what runs really spend), drawing, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from tts_graph.cli import app
from tts_graph.nodes.select import register_selector
from tts_graph.spec import SpecError, build_graph, load_spec, worst_case
from tts_graph.spec.draw import to_mermaid
from tts_graph.spec.schema import SCHEMA_PATH, render
from tts_graph.testing import FakeBackend

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "specs").rglob("*.yaml"))
# The benchmarks' specs are checked like the examples: a figure must come from a valid spec.
SPECS = EXAMPLES + sorted((ROOT / "bench" / "specs").rglob("*.yaml"))


def by_seed(request: Any, i: int) -> str:
    return f"Answer: {(request.sampling.seed or 0) + i}"


def agreeing(request: Any, i: int) -> str:
    return "Answer: 12"


# -- loading ---------------------------------------------------------------------------------


def test_there_is_an_example_spec_per_task():
    kinds = {load_spec(p).strategy.kind for p in EXAMPLES}
    assert {"self_consistency", "confidence", "best_of_n", "tournament", "beam_search",
            "adaptive"} <= kinds  # fmt: skip


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_every_example_names_the_schema_and_passes_it(path):
    data = yaml.safe_load(path.read_text())
    assert (path.parent / data["$schema"]).resolve() == SCHEMA_PATH.resolve()
    schema = json.loads(SCHEMA_PATH.read_text())
    assert not list(jsonschema.Draft202012Validator(schema).iter_errors(data))


def test_the_shipped_schema_is_up_to_date():
    assert SCHEMA_PATH.read_text() == render(), "run: .venv/bin/python -m tts_graph.spec.schema"


def test_the_schema_accepts_the_short_forms_and_refuses_unknown_kinds():
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))
    short = {"strategy": {"kind": "best_of_n", "verifier": "math", "candidates": "self_refine"}}
    assert not list(validator.iter_errors(short))
    assert list(validator.iter_errors({"strategy": {"kind": "best_of_m"}}))


def test_short_forms_expand():
    spec = load_spec(
        {"strategy": {"kind": "adaptive", "routes": {"easy": "vote", "medium": "self_refine",
                                                     "hard": {"kind": "best_of_n", "verifier": "math"}}}}
    )  # fmt: skip
    routes = spec.strategy.routes
    assert routes["easy"].kind == "vote" and routes["medium"].kind == "self_refine"
    assert routes["hard"].verifier.name == "math"


def test_every_problem_is_listed_by_its_path_with_the_valid_choices():
    data = {
        "bogus": 1,
        "extract": "nope",
        "budget": {"max_calls": 0},
        "strategy": {
            "kind": "adaptive",
            "routes": {
                "easy": "vote",
                "medium": {"kind": "self_consistency", "stop": "gamma"},
                "hard": {"kind": "best_of_n", "n": 0, "verifier": "mathh", "select": "best"},
            },
        },
    }
    with pytest.raises(SpecError) as info:
        load_spec(data)
    problems = {p.path: p.message for p in info.value.problems}
    assert problems["bogus"] == "unknown option (misspelt?)"
    assert "boxed, code, default" in problems["extract"]
    assert "max_calls" in problems["budget"]
    assert "'adaptive' or 'beta'" in problems["strategy.routes.medium.stop"]
    assert "greater than or equal to 1" in problems["strategy.routes.hard.n"]
    assert "math, numeric" in problems["strategy.routes.hard.verifier"]
    assert "majority, best_score" in problems["strategy.routes.hard.select"]
    assert len(problems) == 7


def test_binning_by_the_probe_pass_rate_needs_a_verifier():
    strategy = {"kind": "adaptive", "estimator": "verifier", "thresholds": [0.5],
                "labels": ["easy", "hard"]}  # fmt: skip
    with pytest.raises(SpecError) as info:
        load_spec({"strategy": strategy})
    (problem,) = info.value.problems
    assert problem.path == "strategy" and "verifier: code" in problem.message
    assert load_spec({"strategy": {**strategy, "verifier": "code"}}).strategy.verifier


def test_files_wrong_types_missing_files_and_environment_variables(tmp_path, monkeypatch):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "missing.yaml")
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="a spec is a mapping, got list"):
        load_spec(listed)
    url = tmp_path / "url.yaml"
    url.write_text("backend: {base_url: '${SPEC_TEST_URL}'}\nstrategy: best_of_n\n")
    monkeypatch.delenv("SPEC_TEST_URL", raising=False)
    with pytest.raises(SpecError, match="SPEC_TEST_URL is not set"):
        load_spec(url)
    monkeypatch.setenv("SPEC_TEST_URL", "http://127.0.0.1:1234/v1")
    assert load_spec(url).backend.base_url == "http://127.0.0.1:1234/v1"


@pytest.mark.parametrize(
    ("text", "expanded"),
    [
        ("${SPEC_TEST_SET}", "${X}"),  # a variable's value is not expanded again
        ("${SPEC_TEST_UNSET:-${SPEC_TEST_SET}}", "${SPEC_TEST_SET}"),  # nor a default
        ("${SPEC_TEST_UNSET:-{a}, {b}}!", "{a}, {b}!"),  # a default may hold braces
        ("${SPEC_TEST_SET:-ignored}", "${X}"),
        ("costs $${5} and $5", "costs ${5} and $5"),  # $${ is a literal ${
        ("$$${SPEC_TEST_SET}", "$${SPEC_TEST_SET}"),
        ("${1} ${ ${SPEC_TEST_UNSET:-never closed", "${1} ${ ${SPEC_TEST_UNSET:-never closed"),
        ("$$ LaTeX $$ and {braces}", "$$ LaTeX $$ and {braces}"),
    ],
)
def test_variables_are_expanded_once(monkeypatch, text, expanded):
    monkeypatch.setenv("SPEC_TEST_SET", "${X}")
    monkeypatch.delenv("SPEC_TEST_UNSET", raising=False)
    monkeypatch.delenv("X", raising=False)
    spec = load_spec({"name": text, "strategy": "best_of_n"})
    assert spec.name == expanded
    # Written out (an eval run's run.json, a YAML file), the spec loads back the same.
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    assert load_spec(dumped) == spec
    assert load_spec(json.loads(spec.model_dump_json(by_alias=True, exclude_none=True))) == spec
    # The values themselves are left as they are.
    assert spec.model_dump()["name"] == expanded


def test_a_dumped_run_spec_loads_back_with_its_defaults(tmp_path, monkeypatch):
    monkeypatch.delenv("SPEC_TEST_A", raising=False)
    monkeypatch.delenv("SPEC_TEST_B", raising=False)
    path = tmp_path / "spec.yaml"
    path.write_text('name: "${SPEC_TEST_A:-${SPEC_TEST_B}}"\nstrategy: best_of_n\n')
    spec = load_spec(path)
    assert spec.name == "${SPEC_TEST_B}"
    run = tmp_path / "run.json"
    run.write_text(json.dumps({"spec": spec.model_dump(mode="json", by_alias=True)}))
    assert load_spec(json.loads(run.read_text())["spec"]) == spec
    again = tmp_path / "again.yaml"
    again.write_text(yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True)))
    assert load_spec(again) == spec


@pytest.mark.parametrize(
    ("strategy", "field"),
    [
        ({"kind": "adaptive", "thresholds": [float("nan"), 0.5]}, "strategy.thresholds.0"),
        ({"kind": "adaptive", "thresholds": [0.2, float("inf")]}, "strategy.thresholds.1"),
        ({"kind": "adaptive", "thresholds": [float("-inf"), 0.5]}, "strategy.thresholds.0"),
        ({"kind": "adaptive", "thresholds": ["-1e999", 0.5]}, "strategy.thresholds.0"),
        ({"kind": "self_consistency", "threshold": float("nan")}, "strategy.threshold"),
        ({"kind": "confidence", "keep_top": float("nan")}, "strategy.keep_top"),
        ({"kind": "best_of_n", "sampling": {"temperature": float("inf")}}, "sampling.temperature"),
        ({"kind": "tournament", "judge": {"sampling": {"top_p": float("nan")}}}, "top_p"),
    ],
)
def test_numbers_that_are_not_finite_are_refused(strategy, field):
    with pytest.raises(SpecError) as info:
        load_spec({"strategy": strategy})
    (problem,) = info.value.problems
    assert problem.path.startswith("strategy") and problem.path.endswith(field.split(".")[-1])
    assert "finite" in problem.message


@pytest.mark.parametrize("infinite", [float("inf"), "1e999", "inf"])
def test_an_infinite_budget_limit_is_no_limit_but_nan_is_refused(infinite):
    # An infinite limit is never reached: it is held as no limit, so the spec is written out
    # (JSON has no infinity) and read back the same.
    spec = load_spec({"strategy": "best_of_n", "budget": {"max_flops": infinite, "max_calls": 3}})
    assert spec.budget is not None and spec.budget.max_flops is None
    assert spec.budget.max_calls == 3
    assert load_spec(spec.model_dump(mode="json", exclude_none=True)) == spec
    with pytest.raises(SpecError, match="max_wall_s"):
        load_spec({"strategy": "best_of_n", "budget": {"max_wall_s": float("nan")}})


def test_a_number_too_long_to_write_is_refused_where_it_is(tmp_path):
    huge = 16**5000  # Python will not write it in decimal
    with pytest.raises(SpecError) as info:
        load_spec({"strategy": "best_of_n", "budget": {"max_calls": huge}})
    (problem,) = info.value.problems
    assert problem.path == "budget.max_calls"
    assert "more than 4300 digits" in problem.message and "sys." not in problem.message
    for suffix, text in [
        (".yaml", "strategy: {kind: best_of_n, n: " + "9" * 5000 + "}"),
        (".yaml", "strategy: best_of_n\nbudget:\n  max_flops: 0x" + "f" * 5000),
        (".json", '{"strategy": "best_of_n", "budget": {"max_calls": ' + "9" * 5000 + "}}"),
    ]:
        path = tmp_path / f"spec{suffix}"
        path.write_text(text)
        with pytest.raises(SpecError) as info:
            load_spec(path)
        message = str(info.value)
        line = text.count("\n", 0, text.index("9" * 100 if "9" * 100 in text else "0x")) + 1
        assert f"more than 4300 digits at line {line}" in message, message
        assert "set_int_max_str_digits" not in message


def test_a_budget_shows_any_value_it_refuses():
    from tts_graph.budget import Budget
    from tts_graph.errors import ConfigError

    with pytest.raises(ConfigError, match="got a number of 6021 digits"):
        Budget(max_flops=16**5000)
    with pytest.raises(ConfigError, match="got a negative number of 5001 digits"):
        Budget(max_calls=-(10**5000))
    assert "max_calls=a number of 6021 digits" in Budget(max_calls=16**5000).describe()


def test_a_registered_selector_is_valid_by_name():
    with pytest.raises(SpecError, match="shortest_text"):
        load_spec({"strategy": {"kind": "best_of_n", "select": "shortest_text"}})
    register_selector("shortest_text", lambda cs: min(cs, key=lambda c: len(c.text)), replace=True)
    assert load_spec({"strategy": {"kind": "best_of_n", "select": "shortest_text"}})


# -- building and running ----------------------------------------------------------------------


async def test_a_spec_runs_with_its_prompt_sampling_and_budget():
    spec = load_spec({
        "budget": {"max_calls": 3},
        "sampling": {"temperature": 0.3, "max_tokens": 40, "stop": ["```\n"]},
        "prompt": {"system": "Be terse.", "template": "Q: {question}"},
        "strategy": {"kind": "self_consistency", "max_samples": 8, "sampling": {"max_tokens": 20}},
    })  # fmt: skip
    backend = FakeBackend(by_seed)
    graph = build_graph(spec, backend).compile()
    state = await graph.ainvoke({"question": "What is 7+5?", "budget": spec.budget})
    first = backend.requests[0]
    assert first.messages[0] == {"role": "system", "content": "Be terse."}
    assert first.messages[-1]["content"] == "Q: What is 7+5?"
    assert (first.sampling.temperature, first.sampling.max_tokens) == (0.3, 20)
    assert first.sampling.stop == ("```\n",)
    assert state["usage"].calls == 3  # the budget held


def code_reply(request: Any, i: int) -> str:
    body = ["x - 1", "x + 1"][i % 2]
    return f"```python\nimport math\n\n\ndef inc(x):\n    return {body}\n```\nAnswer: {i}"


@pytest.mark.parametrize(
    "strategy",
    [
        {"kind": "best_of_n", "n": 2},
        {"kind": "adaptive", "probe_n": 2, "estimator": "verifier", "thresholds": [0.75],
         "labels": ["easy", "hard"], "routes": {"easy": "vote", "hard": {
             "kind": "best_of_n", "n": 2, "verifier": {"name": "code", "sandbox": "unsafe-subprocess"}}}},
    ],
    ids=lambda s: s["kind"],
)  # fmt: skip
async def test_a_spec_with_the_code_verifier_reads_programs_unless_it_names_an_extractor(strategy):
    from tts_graph.verifiers.code import CodeTests

    verifier = {"name": "code", "sandbox": "unsafe-subprocess"}
    tests = CodeTests(test="assert inc(1) == 2", entry_point="inc")
    spec = load_spec({"strategy": {**strategy, "verifier": verifier}})
    state = (
        await build_graph(spec, FakeBackend(code_reply))
        .compile()
        .ainvoke({"question": "inc?", "reference": tests})
    )
    assert state["answer"] == "import math\n\n\ndef inc(x):\n    return x + 1"
    assert all(c.answer.startswith("import math") for c in state["candidates"])
    named = load_spec({"extract": "default", "strategy": {**strategy, "verifier": verifier}})
    state = (
        await build_graph(named, FakeBackend(code_reply))
        .compile()
        .ainvoke({"question": "inc?", "reference": tests})
    )
    assert {c.answer for c in state["candidates"]} <= {"0", "1", "2", "3"}


def test_a_stop_string_must_not_be_empty():
    with pytest.raises(SpecError, match=r"sampling\.stop\.0"):
        load_spec({"sampling": {"stop": [""]}, "strategy": "best_of_n"})


async def test_nested_specs_build_nested_graphs():
    spec = load_spec({"strategy": {"kind": "best_of_n", "n": 2,
                                   "candidates": {"kind": "best_of_n", "n": 3}}})  # fmt: skip
    backend = FakeBackend(by_seed)
    state = await build_graph(spec, backend).compile().ainvoke({"question": "q"})
    assert len(backend.requests) == 2 and len(state["candidates"]) == 6
    drawing = to_mermaid(build_graph(spec, backend))
    assert 'subgraph fanout["fanout"]' in drawing and "fanout__fanout" in drawing


# The worst case must bound what a run really spends, for each kind of strategy: a model that
# never stops early and always writes max_tokens words is the worst case itself.
def long_answers(request: Any, i: int) -> str:
    return " ".join(["word"] * (request.sampling.max_tokens - 2)) + " Answer: " + str(i)


@pytest.mark.parametrize(
    "strategy",
    [
        {"kind": "best_of_n", "n": 4},
        {"kind": "best_of_n", "n": 2, "candidates": {"kind": "best_of_n", "n": 3}},
        {"kind": "self_consistency", "max_samples": 6, "stop": "adaptive", "threshold": 1.0},
        {"kind": "self_refine", "rounds": 2},
        {"kind": "adaptive", "probe_n": 4},
    ],
    ids=lambda s: s["kind"] + ("+nested" if "candidates" in s else ""),
)
async def test_the_worst_case_bounds_what_a_run_spends(strategy):
    spec = load_spec({"sampling": {"max_tokens": 12}, "strategy": strategy})
    backend = FakeBackend(long_answers)
    state = await build_graph(spec, backend).compile().ainvoke({"question": "What is 7+5?"})
    prompt = max(sum(len(m["content"].split()) for m in r.messages) for r in backend.requests[:1])
    bound = worst_case(spec, prompt_tokens=prompt)
    spent = state["usage"]
    assert spent.calls <= bound.calls
    assert spent.completion_tokens <= bound.completion_tokens
    assert spent.calls >= 1 and bound.calls < 10 * spent.calls  # a bound, not a guess


def test_the_budget_caps_the_worst_case():
    spec = load_spec({"budget": {"max_calls": 5, "max_total_tokens": 1000},
                      "strategy": {"kind": "self_consistency", "max_samples": 16}})  # fmt: skip
    cost = worst_case(spec, prompt_tokens=100, model_params=1000)
    assert cost.calls == 5 and cost.total_tokens <= 1000
    assert cost.flops == pytest.approx(2 * 1000 * cost.total_tokens)
    assert any("caps requests at 5" in n for n in cost.notes)


# -- the command line ------------------------------------------------------------------------


runner = CliRunner()


def test_validate_exits_0_for_a_valid_spec_and_prints_the_cost():
    result = runner.invoke(app, ["validate", str(EXAMPLES[0]), "--cost", "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["valid"] and out["worst_case"]["calls"] >= 1


def test_validate_exits_2_and_lists_every_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("strategy: {kind: tournament, n: 1}\nextract: nope\n")
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "strategy.n" in result.stderr and "extract" in result.stderr


def test_validate_reports_what_only_the_factory_checks(tmp_path):
    spec = tmp_path / "bins.yaml"
    spec.write_text("strategy: {kind: adaptive, estimator: no_such_estimator}\n")
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2 and "no_such_estimator" in result.stderr


@pytest.mark.parametrize("suffix", [".mmd", ".png"])
def test_draw_writes_mermaid_or_png(tmp_path, suffix):
    adaptive = next(p for p in EXAMPLES if "adaptive" in p.name)
    out = tmp_path / f"graph{suffix}"
    result = runner.invoke(app, ["draw", str(adaptive), "--out", str(out)])
    assert result.exit_code == 0, result.output
    if suffix == ".mmd":
        text = out.read_text()
        assert "flowchart TD" in text and "difficulty -.-> hard" in text
        assert 'subgraph medium["medium"]' in text and "medium__consistency" in text
    else:
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_draw_refuses_other_formats(tmp_path):
    result = runner.invoke(app, ["draw", str(EXAMPLES[0]), "--out", str(tmp_path / "g.svg")])
    assert result.exit_code == 2 and ".mmd" in result.stderr

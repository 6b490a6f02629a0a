"""Bad input: every case fails with an error that names what was wrong and what would be right,
before any work is done where the library can see it coming, and a run of many problems keeps
every result it had when one of them is bad.

Checked through what users touch: the graph factories, the spec loader and builder, the command
line and the eval harness. Cases that need a server's answer (a prompt beyond the model's
context, a model the server does not serve, a URL that is not a vLLM server) use a real one: the
embedded vLLM server, or a tiny HTTP server started here that is not vLLM.
"""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.messages import HumanMessage
from typer.testing import CliRunner

from tts_graph import graphs
from tts_graph.backends.base import GenerationRequest, SamplingParams
from tts_graph.backends.vllm import VLLMBackend
from tts_graph.budget import Budget
from tts_graph.cli import app
from tts_graph.errors import MAX_SAMPLES, BackendError, BudgetExhausted, ConfigError
from tts_graph.eval.datasets import EvalProblem, load_dataset
from tts_graph.eval.harness import RESULTS, run_eval
from tts_graph.spec import SpecError, load_spec
from tts_graph.state import ChatState, TTSState
from tts_graph.testing import FakeBackend
from tts_graph.verifiers.judge import LLMJudge
from tts_graph.verifiers.registry import create_verifier

runner = CliRunner()
DEAD_URL = "http://127.0.0.1:9/v1"  # nothing listens there: a test that reaches it has failed
SPEC_TEXT = "sampling: {max_tokens: 16}\nstrategy: {kind: best_of_n, n: 2}\n"


@pytest.fixture(autouse=True)
def _quiet_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The command line's run logs land in this test's folder; no server from the environment.
    monkeypatch.setenv("TTS_GRAPH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TTS_GRAPH_BASE_URL", raising=False)


def answering() -> FakeBackend:
    return FakeBackend(lambda request, i: "7 + 5 = 12. Answer: 12")


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stderr


def one_line_error(code: int, stderr: str, *needles: str) -> str:
    """Status 2 and a single ``error:`` line holding every needle; never a traceback."""
    assert code == 2, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    for needle in needles:
        assert needle in stderr, (needle, stderr)
    return errors[0]


# Every strategy's factory, over a backend, with the options a bad input does not depend on.
FACTORIES: dict[str, Callable[..., Any]] = {
    "best_of_n": lambda b, **kw: graphs.create_best_of_n_graph(b, **kw),
    "best_of_n_send": lambda b, **kw: graphs.create_best_of_n_graph(b, fanout="send", **kw),
    "self_consistency": lambda b, n=4, **kw: graphs.create_self_consistency_graph(
        b, max_samples=n, **kw
    ),
    "budget_forcing": lambda b, **kw: graphs.create_budget_forcing_graph(b, **kw),
    "confidence": lambda b, **kw: graphs.create_confidence_graph(b, **kw),
    "tournament": lambda b, n=2, **kw: graphs.create_tournament_graph(b, LLMJudge(b), n=n, **kw),
    "adaptive": lambda b, n=2, **kw: graphs.create_adaptive_graph(b, probe_n=n, **kw),
    "self_refine": lambda b, **kw: graphs.create_self_refine_graph(b, **kw),
}


# -- prompts -----------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", sorted(FACTORIES))
async def test_an_empty_question_is_refused_by_every_strategy_before_any_request(strategy):
    backend = answering()
    graph = FACTORIES[strategy](backend).compile()
    with pytest.raises(ConfigError, match=r"the question \('question'\) is empty; give"):
        await graph.ainvoke({"question": ""})
    assert backend.requests == []


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"question": " \n\t"}, r"the question \('question'\) is empty"),
        ({"question": None}, r"the question \('question'\) is empty"),
        ({"messages": [HumanMessage(""), HumanMessage("  ")]}, "every message in 'messages'"),
        ({}, "neither a 'question' key nor a non-empty 'messages' list"),
        ({"messages": []}, "neither a 'question' key nor a non-empty 'messages' list"),
    ],
)
async def test_a_blank_missing_or_empty_prompt_is_a_config_error(inputs, message):
    backend = answering()
    schema = ChatState if "messages" in inputs else TTSState
    graph = graphs.create_best_of_n_graph(backend, n=2, state_schema=schema).compile()
    with pytest.raises(ConfigError, match=message):
        await graph.ainvoke(inputs)
    assert backend.requests == []


class ModelsOnly:
    """A fake vLLM (httpx MockTransport) that serves a model list and counts what else is
    sent: text that cannot be encoded must be refused before anything is."""

    def __init__(self) -> None:
        self.posts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "tiny"}]})
        self.posts += 1
        return httpx.Response(500, json={"error": {"message": "must not be reached"}})


def mocked_vllm(server: ModelsOnly) -> VLLMBackend:
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    return VLLMBackend("http://vllm.test/v1", http_client=client, max_retries=0)


@pytest.mark.parametrize(
    ("inputs", "where"),
    [
        ({"question": "caf\udce9 au lait?"}, r"the question \('question'\)"),
        ({"messages": [HumanMessage("hi"), HumanMessage("x\ud800y")]}, r"messages\[1\]\.content"),
    ],
)
async def test_text_that_is_not_utf8_is_refused_naming_where_before_anything_is_sent(inputs, where):
    server = ModelsOnly()
    backend = mocked_vllm(server)
    schema = ChatState if "messages" in inputs else TTSState
    graph = graphs.create_best_of_n_graph(backend, n=2, state_schema=schema).compile()
    with pytest.raises(ConfigError, match=rf"{where} is not valid UTF-8 text: .*lone surrogate"):
        await graph.ainvoke(inputs)
    assert server.posts == 0


async def test_a_custom_prompt_or_raw_request_with_broken_text_is_refused_too():
    # Any prompt function, not only the default one: the request itself is checked.
    server = ModelsOnly()
    graph = graphs.create_best_of_n_graph(
        mocked_vllm(server), n=2, prompt=lambda state: [{"role": "user", "content": "\udcff"}]
    ).compile()
    with pytest.raises(ConfigError, match=r"messages\[0\]\.content is not valid UTF-8"):
        await graph.ainvoke({"question": "fine"})
    with pytest.raises(ConfigError, match="the request's prompt is not valid UTF-8"):
        GenerationRequest(prompt="ok \ud83d then cut")
    assert server.posts == 0


def test_the_command_line_refuses_a_question_that_is_not_utf8_before_contacting_anything():
    # Bytes that are not UTF-8 on the command line arrive as lone surrogates.
    out = subprocess.run(
        [sys.executable, "-m", "tts_graph.cli", "solve", b"caf\xff?", "--base-url", DEAD_URL],
        capture_output=True,
        timeout=120,
        check=False,
    )
    stderr = out.stderr.decode("utf-8", "replace")
    one_line_error(out.returncode, stderr, "the question is not valid UTF-8 text")
    assert "cannot reach" not in stderr


def test_a_dataset_file_with_bytes_that_are_not_utf8_names_the_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(
        b'{"question": "1+1?", "answer": "2"}\n{"question": "caf\xe9?", "answer": "3"}\n'
    )
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: not UTF-8 text \(byte 0xe9 at column 18"):
        load_dataset(bad)
    code, stderr = cli(
        "eval", "--spec", str(spec_file(tmp_path)), "--dataset", str(bad),
        "--out", str(tmp_path / "run"), "--base-url", DEAD_URL,
    )  # fmt: skip
    one_line_error(code, stderr, "bad.jsonl:2: not UTF-8 text", "save the file as UTF-8")


def test_a_dataset_line_with_a_lone_surrogate_escape_names_the_line_and_field(tmp_path):
    path = tmp_path / "escaped.jsonl"
    path.write_text(
        '{"question": "1+1?", "answer": "2"}\n{"question": "x\\ud800", "answer": "3"}\n'
    )
    with pytest.raises(ConfigError, match=r"escaped\.jsonl:2\.question is not valid UTF-8"):
        load_dataset(path)


def test_a_dataset_file_may_start_with_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"question": "1+1?", "answer": "2"}\n')
    assert [p.question for p in load_dataset(path)] == ["1+1?"]


def test_a_spec_file_that_is_not_utf8_names_the_line_and_column(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: arithmetic\ndescription: caf\xe9\nstrategy: best_of_n\n")
    with pytest.raises(SpecError, match=r"not UTF-8 text: byte 0xe9 at line 2, column 17"):
        load_spec(path)
    code, stderr = cli("validate", str(path))
    one_line_error(code, stderr, "byte 0xe9 at line 2")


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("escaped.json", '{"strategy": "best_of_n", "prompt": {"system": "x\\ud800"}}'),
        ("escaped.yaml", 'strategy: best_of_n\nprompt: {system: "x\\ud800"}\n'),
    ],
)
def test_a_spec_with_a_lone_surrogate_escape_names_the_field(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    [problem] = info.value.problems
    assert problem.path == "prompt.system" and "not valid UTF-8 text" in problem.message


# -- prompts a server refuses ------------------------------------------------------------------


class Counting:
    """Counts the generation requests a backend sends (an httpx event hook)."""

    def __init__(self) -> None:
        self.generations = 0

    async def __call__(self, request: httpx.Request) -> None:
        if request.url.path.endswith(("/chat/completions", "/completions")):
            self.generations += 1


async def test_a_prompt_beyond_the_context_is_one_clear_error_that_is_not_retried(vllm_server):
    counter = Counting()
    client = httpx.AsyncClient(event_hooks={"request": [counter]}, timeout=300)
    backend = VLLMBackend(vllm_server.base_url, http_client=client)
    graph = graphs.create_best_of_n_graph(
        backend, n=2, sampling=SamplingParams(max_tokens=16, temperature=0.0)
    ).compile()
    long_question = "Add up these numbers: " + " + ".join(str(i) for i in range(3000))
    try:
        with pytest.raises(BackendError) as info:
            await graph.ainvoke({"question": long_question})
    finally:
        await client.aclose()
    error = info.value
    assert error.status == 400 and error.retryable is False
    assert "maximum context length" in str(error) and "reduce the length" in str(error)
    # Neither the backend's retries nor the graph's retry policy sent it again.
    assert counter.generations == 1


def test_the_command_line_shows_the_context_error_as_one_line(vllm_server):
    question = "Add up these numbers: " + " + ".join(str(i) for i in range(3000))
    code, stderr = cli("solve", question, "--base-url", vllm_server.base_url, "--n", "1")
    one_line_error(code, stderr, "HTTP 400", "maximum context length")


# -- budgets -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "needles"),
    [
        ({"max_calls": 0}, ("max_calls", "greater than 0", "got 0")),
        ({"max_total_tokens": -5}, ("max_total_tokens", "greater than 0", "got -5")),
        ({"max_calls": True}, ("max_calls", "a number, not true/false")),
        ({"max_total_tokens": 1.5}, ("max_total_tokens", "got 1.5")),
        ({"max_tokens": 64}, ("unknown limit 'max_tokens'", "max_total_tokens, max_completion")),
        (5, ("a Budget or a mapping of its limits", "max_calls", "got int 5")),
        ("lots", ("a Budget or a mapping of its limits", "got str 'lots'")),
    ],
)
async def test_an_invalid_budget_in_the_input_names_the_limit_and_the_valid_ones(budget, needles):
    # A budget arrives as a Budget, or as JSON (LangGraph Server, a spec): both are checked.
    backend = answering()
    graph = graphs.create_best_of_n_graph(backend, n=2).compile()
    with pytest.raises(ConfigError) as info:
        await graph.ainvoke({"question": "What is 7+5?", "budget": budget})
    for needle in needles:
        assert needle in str(info.value)
    assert backend.requests == []


@pytest.mark.parametrize(
    ("strategy", "limit"),
    [("best_of_n", "total tokens"), ("self_consistency", "total tokens")],
)
async def test_a_strict_budget_that_cannot_hold_one_call_fails_naming_the_limit(strategy, limit):
    # max_tokens per call (64) above the whole token budget (50): nothing is sent.
    backend = answering()
    graph = FACTORIES[strategy](backend, sampling=SamplingParams(max_tokens=64)).compile()
    budget = Budget(max_total_tokens=50, strict=True)
    with pytest.raises(
        BudgetExhausted, match=rf"its {limit} limit is reached .*max_total_tokens=50"
    ):
        await graph.ainvoke({"question": "What is 7+5?", "budget": budget})
    assert backend.requests == []


async def test_a_budget_without_room_for_a_prompt_finishes_and_says_which_limit():
    # Not strict: the run finishes with no answer, and the decisions say why, by limit.
    backend = answering()
    graph = graphs.create_best_of_n_graph(backend, n=2).compile()
    state = await graph.ainvoke({"question": "What is 7+5?", "budget": Budget(max_total_tokens=3)})
    assert state["answer"] is None and backend.requests == []
    fanout = state["decisions"][0]
    assert fanout["reason"] == "budget" and fanout["budget"] == [{"refused": "total tokens"}]


class _CountingFake(FakeBackend):
    async def check(self) -> str:
        return "fake-model"

    async def aclose(self) -> None:
        pass


def test_the_command_line_refuses_a_budget_too_small_for_one_call_up_front(monkeypatch):
    from tts_graph import cli as cli_module

    fake = _CountingFake(lambda request, i: "Answer: 12")
    monkeypatch.setattr(cli_module, "_make_backend", lambda *args: fake)
    code, stderr = cli(
        "solve", "What is 7+5?", "--base-url", DEAD_URL, "--max-tokens", "100",
        "--max-total-tokens", "10",
    )  # fmt: skip
    one_line_error(code, stderr, "too small for a single call", "raise the budget")
    assert fake.requests == []


# -- sizes and names ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, -3, MAX_SAMPLES + 1, 10**9])
@pytest.mark.parametrize("strategy", sorted(set(FACTORIES) - {"self_refine"}))
def test_a_zero_or_huge_sample_count_is_refused_when_the_graph_is_built(strategy, n):
    with pytest.raises(ConfigError, match=rf"must be >= 1 and <= {MAX_SAMPLES}, got {n}"):
        FACTORIES[strategy](answering(), n=n)


def test_a_huge_n_is_refused_for_nested_strategies_requests_specs_and_the_command_line():
    inner = graphs.create_self_refine_graph(answering())
    with pytest.raises(ConfigError, match=r"n must be >= 1 and <= 1024, got 1000000000"):
        graphs.create_best_of_n_graph(None, n=10**9, candidates=inner)
    with pytest.raises(ConfigError, match=r"n must be >= 1 and <= 1024"):
        GenerationRequest.chat([{"role": "user", "content": "q"}], n=10**9)
    with pytest.raises(SpecError, match=r"strategy\.n: .*less than or equal to 1024"):
        load_spec({"strategy": {"kind": "best_of_n", "n": 10**9}})
    code, stderr = cli("solve", "q", "--n", str(10**9), "--base-url", DEAD_URL)
    one_line_error(code, stderr, "'--n'", "less than or equal to 1024")
    code, stderr = cli("solve", "q", "--n", "0", "--base-url", DEAD_URL)
    one_line_error(code, stderr, "'--n'", "greater than or equal to 1")


@pytest.mark.parametrize(
    ("build", "listed"),
    [
        (lambda: graphs.create_best_of_n_graph(answering(), select="best"), "majority, best_score"),
        (
            lambda: graphs.create_best_of_n_graph(answering(), extract="boxd"),
            "boxed, code, default",
        ),
        (lambda: create_verifier("mathh"), "code, exact, judge, math"),
        (
            lambda: graphs.create_adaptive_graph(answering(), estimator="vibes"),
            "agreement, logprob",
        ),
        (lambda: graphs.create_best_of_n_graph(answering(), fanout="threads"), "request, send"),
        (lambda: load_spec({"strategy": "best_of_m"}), "'best_of_n', 'self_consistency'"),
        (
            lambda: load_spec({"strategy": {"kind": "best_of_n", "verifier": "mathh"}}),
            "math, numeric",
        ),
        (lambda: load_spec({"strategy": "vote_all", "extract": "boxd"}), "boxed, code, default"),
    ],
)
def test_an_unknown_name_lists_the_known_ones(build, listed):
    with pytest.raises(ConfigError) as info:
        build()
    assert "unknown" in str(info.value) or "does not match any of the expected" in str(info.value)
    assert listed in str(info.value)


# -- specs -------------------------------------------------------------------------------------


def spec_file(folder: Path, text: str = SPEC_TEXT, name: str = "spec.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_wrong_types_in_a_spec_are_each_listed_by_path_with_what_was_given(tmp_path):
    path = spec_file(
        tmp_path,
        "name: [not, a, name]\n"
        "budget: {max_calls: many}\n"
        "sampling: {temperature: hot, max_tokens: 1.5}\n"
        "strategy: {kind: best_of_n, n: eight, verifier: {name: 3}}\n",
    )
    with pytest.raises(SpecError) as info:
        load_spec(path)
    problems = {p.path: p.message for p in info.value.problems}
    assert "valid string" in problems["name"]
    assert "max_calls" in problems["budget"] and "'many'" in problems["budget"]
    assert (
        "valid number" in problems["sampling.temperature"]
        and "'hot'" in problems["sampling.temperature"]
    )
    assert "got 1.5" in problems["sampling.max_tokens"]
    assert "valid integer" in problems["strategy.n"] and "'eight'" in problems["strategy.n"]
    assert "valid string" in problems["strategy.verifier.name"]
    code, stderr = cli("validate", str(path))
    assert code == 2 and "Traceback" not in stderr
    assert all(p in stderr for p in problems)


@pytest.mark.parametrize(
    "text",
    [
        # A strategy nested in itself through a YAML alias inside its own anchor.
        "strategy: &s {kind: best_of_n, n: 2, candidates: *s}\n",
        "strategy: &s {kind: adaptive, routes: {easy: vote, medium: vote, hard: *s}}\n",
        "strategy: best_of_n\ndescription: &d [*d]\n",
    ],
)
def test_a_spec_that_contains_itself_is_refused_by_path(tmp_path, text):
    path = spec_file(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    [problem] = info.value.problems
    assert "refers to itself" in problem.message and "write the nested part out" in problem.message
    code, stderr = cli("validate", str(path))
    assert code == 2 and "refers to itself" in stderr and "Traceback" not in stderr


def test_yaml_aliases_that_multiply_are_refused_without_walking_them(tmp_path):
    # Six levels of ten aliases: a few hundred bytes that stand for a million values.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, 7):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    path = spec_file(tmp_path, "\n".join(lines) + "\nstrategy: best_of_n\n")
    with pytest.raises(SpecError, match=r"more than 100000 values \(YAML aliases"):
        load_spec(path)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("strategy: {kind: best_of_n, candidates: refine.yaml}\n", "strategy.candidates"),
        ("strategy: other-spec.yml\n", "strategy"),
        (
            "strategy: {kind: adaptive, routes: {easy: vote, medium: vote, "
            "hard: {$ref: hard.yaml}}}\n",
            "strategy.routes.hard",
        ),
    ],
)
def test_specs_have_no_file_references_and_say_so(tmp_path, text, where):
    with pytest.raises(SpecError) as info:
        load_spec(spec_file(tmp_path, text))
    [problem] = info.value.problems
    assert problem.path == where
    assert "cannot refer to another file" in problem.message and "no include or $ref" in (
        problem.message
    )


def test_a_yaml_include_tag_is_explained(tmp_path):
    with pytest.raises(SpecError, match=r"a spec is plain YAML: no tags such as !include"):
        load_spec(spec_file(tmp_path, "strategy: !include best.yaml\n"))


def test_a_missing_spec_file_fails_clearly_everywhere(tmp_path):
    missing = tmp_path / "nowhere" / "spec.yaml"
    with pytest.raises(SpecError, match=r"no such file \(looked for .*nowhere/spec\.yaml\)"):
        load_spec(missing)
    for args in (
        ["validate", str(missing)],
        ["draw", str(missing), "--out", str(tmp_path / "g.mmd")],
        ["solve", "q", "--spec", str(missing), "--base-url", DEAD_URL],
        ["eval", "--spec", str(missing), "--dataset", "basic_arithmetic",
         "--out", str(tmp_path / "run"), "--base-url", DEAD_URL],
    ):  # fmt: skip
        code, stderr = cli(*args)
        assert code == 2, (args, stderr)
        assert "no such file" in stderr and "Traceback" not in stderr, (args, stderr)
    assert not (tmp_path / "run").exists()  # nothing was started


# -- servers -----------------------------------------------------------------------------------


def _reply(handler: http.server.BaseHTTPRequestHandler, status: int, body: bytes, kind: str):
    handler.send_response(status)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class NotVLLM(http.server.BaseHTTPRequestHandler):
    """A loopback HTTP server that is not vLLM: a web page, a 404 for everything, or an
    OpenAI-compatible list of models with none of vLLM's endpoints behind it."""

    kind = "page"

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        if self.kind == "page":
            _reply(self, 200, b"<html><body>Welcome</body></html>", "text/html")
        elif self.kind == "openai" and self.path == "/v1/models":
            body = json.dumps({"object": "list", "data": [{"id": "other-model"}]}).encode()
            _reply(self, 200, body, "application/json")
        else:
            _reply(self, 404, b'{"detail": "Not Found"}', "application/json")

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def not_vllm(request: pytest.FixtureRequest) -> Iterator[str]:
    handler = type("Handler", (NotVLLM,), {"kind": request.param})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


@pytest.mark.parametrize("not_vllm", ["page", "missing"], indirect=True)
async def test_a_url_that_is_not_a_model_server_is_a_config_error_saying_what_one_looks_like(
    not_vllm,
):
    backend = VLLMBackend(not_vllm)
    graph = graphs.create_best_of_n_graph(backend, n=2).compile()
    try:
        with pytest.raises(ConfigError, match="is not an OpenAI-compatible server") as info:
            await graph.ainvoke({"question": "What is 7+5?"})
    finally:
        await backend.aclose()
    assert not_vllm in str(info.value) and "looks like http://HOST:PORT/v1" in str(info.value)


@pytest.mark.parametrize("not_vllm", ["page", "missing", "openai"], indirect=True)
def test_the_command_line_names_a_server_that_is_not_vllm_in_one_line(not_vllm):
    code, stderr = cli("solve", "What is 7+5?", "--base-url", not_vllm)
    line = one_line_error(code, stderr, not_vllm.removesuffix("/v1"))
    assert "is not an OpenAI-compatible server" in line or "is it a vLLM server?" in line


@pytest.mark.parametrize("not_vllm", ["openai"], indirect=True)
@pytest.mark.parametrize("budget", [None, Budget(max_total_tokens=1000)])
async def test_an_openai_compatible_server_that_is_not_vllm_is_named_as_such(not_vllm, budget):
    # Its model list passes; the first request (or the prompt count a budget needs) does not.
    backend = VLLMBackend(not_vllm, max_retries=0)
    graph = graphs.create_best_of_n_graph(backend, n=2).compile()
    inputs: dict[str, Any] = {"question": "What is 7+5?"}
    if budget is not None:
        inputs["budget"] = budget
    try:
        with pytest.raises(BackendError) as info:
            await graph.ainvoke(inputs)
    finally:
        await backend.aclose()
    assert info.value.status == 404 and info.value.retryable is False
    assert "is it a vLLM server?" in str(info.value)


async def test_a_model_the_server_does_not_serve_lists_the_ones_it_does(vllm_server):
    async with VLLMBackend(vllm_server.base_url) as default:
        served = await default.check()
    backend = VLLMBackend(vllm_server.base_url, model="no-such-model")
    graph = graphs.create_best_of_n_graph(backend, n=2).compile()
    try:
        with pytest.raises(ConfigError) as info:
            await graph.ainvoke({"question": "What is 7+5?"})
    finally:
        await backend.aclose()
    assert "does not serve the model 'no-such-model'" in str(info.value)
    assert f"it serves: {served}" in str(info.value)


def test_the_command_line_lists_the_served_models_for_one_it_does_not_serve(vllm_server):
    code, stderr = cli(
        "solve", "What is 7+5?", "--base-url", vllm_server.base_url, "--model", "no-such-model"
    )
    one_line_error(code, stderr, "does not serve the model 'no-such-model'", "it serves: ")


async def test_the_server_root_without_v1_is_refused_saying_what_the_url_looks_like(vllm_server):
    backend = VLLMBackend(vllm_server.root_url)
    try:
        with pytest.raises(ConfigError, match=r"looks like http://HOST:PORT/v1"):
            await backend.check()
    finally:
        await backend.aclose()


# -- losing nothing ----------------------------------------------------------------------------


class ExactJudge:
    async def correct(self, problem: EvalProblem, text: str) -> bool:
        return text.rsplit("Answer:", 1)[-1].strip() == problem.hidden

    async def close(self) -> None:
        pass


def problem(pid: str, question: str, gold: str = "12") -> EvalProblem:
    return EvalProblem(id=pid, dataset="mixed", kind="math", question=question, gold=gold,
                       hidden=gold)  # fmt: skip


async def test_an_eval_run_keeps_every_good_result_and_records_each_bad_input(tmp_path):
    # A backend that encodes requests as a real one does: before the checks, the broken text
    # failed inside the HTTP client and ended the whole run.
    def reply(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "tiny"}]})
        body = json.loads(request.content)
        choices = [
            {"index": i, "message": {"role": "assistant", "content": "Answer: 12"},
             "finish_reason": "stop"}
            for i in range(body["n"])
        ]  # fmt: skip
        usage = {"prompt_tokens": 9, "completion_tokens": 2 * body["n"], "total_tokens": 0}
        return httpx.Response(200, json={"id": "x", "object": "chat.completion", "created": 0,
                                         "model": "tiny", "choices": choices, "usage": usage})  # fmt: skip

    client = httpx.AsyncClient(transport=httpx.MockTransport(reply))
    backend = VLLMBackend("http://vllm.test/v1", http_client=client, max_retries=0)
    spec = load_spec({"sampling": {"max_tokens": 8}, "strategy": {"kind": "best_of_n", "n": 2}})
    problems = [
        problem("good/1", "What is 7+5?"),
        problem("empty", "   "),
        problem("broken", "What is 7+\udcff5?"),
        problem("good/2", "What is 6+6?"),
    ]
    records = await run_eval(spec, problems, backend, tmp_path, dataset="mixed",
                             judge=ExactJudge(), concurrency=2)  # fmt: skip
    by_id = {r["id"]: r for r in records}
    assert sorted(by_id) == ["broken", "empty", "good/1", "good/2"]
    for good in ("good/1", "good/2"):
        assert by_id[good]["error"] is None and by_id[good]["correct"] is True
    assert "ConfigError" in by_id["empty"]["error"] and "is empty" in by_id["empty"]["error"]
    assert "not valid UTF-8 text" in by_id["broken"]["error"]
    assert not by_id["broken"]["correct"] and not by_id["empty"]["correct"]
    # Every line of the results file is whole JSON, the bad problems' included.
    lines = (tmp_path / RESULTS).read_text(encoding="utf-8").splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)


async def test_a_live_eval_keeps_the_results_around_a_prompt_the_server_refuses(
    vllm_server, tmp_path
):
    spec = load_spec(
        {"sampling": {"max_tokens": 8, "temperature": 0.0}, "strategy": {"kind": "best_of_n",
                                                                         "n": 1}}
    )  # fmt: skip
    long_question = "Add up: " + " + ".join(str(i) for i in range(3000))
    problems = [problem("short", "What is 7+5?"), problem("too-long", long_question)]
    backend = VLLMBackend(vllm_server.base_url)
    try:
        records = await run_eval(spec, problems, backend, tmp_path, dataset="mixed",
                                 judge=ExactJudge(), concurrency=2)  # fmt: skip
    finally:
        await backend.aclose()
    by_id = {r["id"]: r for r in records}
    assert by_id["short"]["error"] is None and len(by_id["short"]["candidates"]) == 1
    assert by_id["short"]["usage"]["calls"] == 1
    assert "HTTP 400" in by_id["too-long"]["error"]
    assert "maximum context length" in by_id["too-long"]["error"]

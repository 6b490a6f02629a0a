"""The command line: bad input is one line on stderr with status 2 and never a traceback; the
verifier options; --strict; progress on stderr and a clean stdout; library output in a log file;
and a start-up that does not import the heavy libraries."""

import http.server
import json
import logging
import subprocess
import sys
import threading
import typing
import warnings
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tts_graph import cli
from tts_graph.backends.server import free_port
from tts_graph.cli import app
from tts_graph.errors import BackendError, BudgetExhausted
from tts_graph.nodes.select import SelectRule
from tts_graph.testing import FakeBackend
from tts_graph.verifiers.registry import available_verifiers

runner = CliRunner()
DEAD_URL = "http://127.0.0.1:9/v1"


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    # Run logs (and any model conversion) land in a folder of this test.
    monkeypatch.setenv("TTS_GRAPH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TTS_GRAPH_BASE_URL", raising=False)
    return tmp_path / "cache"


def run(*args):
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code, stderr, *needles):
    """Exactly one ``error:`` line, last on stderr (progress lines may come before it)."""
    assert code == 2
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert lines[-1] == errors[0], stderr
    for needle in needles:
        assert needle in errors[0]
    return errors[0]


class Fake(FakeBackend):
    """The fake backend with the two server calls ``solve`` makes besides generating."""

    closed = False

    async def check(self):
        return "fake-model"

    async def aclose(self):
        self.closed = True


@pytest.fixture
def backend(monkeypatch):
    """``solve`` talks to a fake server; set ``backend.fn`` to decide what it samples."""
    fake = Fake(lambda request, i: f"7 + 5 = 12. Answer: {12 if i % 3 else 13}")
    monkeypatch.setattr(
        cli, "_make_backend", lambda base_url, model, model_params, retry_for_s=None: fake
    )
    return fake


def solve(*args):
    return run("solve", "What is 7+5?", "--base-url", DEAD_URL, *args)


# -- argument errors --------------------------------------------------------------------------


def test_empty_question():
    code, _, stderr = run("solve", "   ", "--base-url", DEAD_URL)
    assert_one_line_error(code, stderr, "question is empty")


@pytest.mark.parametrize(
    ("option", "value", "needles"),
    [
        # Counts are checked by the option itself (and shown in --help), fast.
        ("--max-calls", "-1", ("'--max-calls'", "greater than or equal to 1")),
        ("--max-total-tokens", "0", ("'--max-total-tokens'", "greater than or equal to 1")),
        (
            "--max-completion-tokens",
            "0",
            ("'--max-completion-tokens'", "greater than or equal to 1"),
        ),
        # The rest by the library's Budget, with its message.
        ("--max-wall-s", "-3", ("invalid budget", "max_wall_s")),
        ("--max-flops", "0", ("invalid budget", "max_flops")),
    ],
)
def test_invalid_budget(option, value, needles):
    code, _, stderr = solve(option, value)
    assert_one_line_error(code, stderr, *needles)


def test_bad_options_fail_before_contacting_anything():
    code, _, stderr = solve("--select", "vote")
    assert_one_line_error(code, stderr, "'vote'", "majority", "best_score", "--help")
    code, _, stderr = solve("--temperature", "-1")
    assert_one_line_error(code, stderr, "temperature")
    code, _, stderr = solve("--n", "0")
    assert_one_line_error(code, stderr, "--n", "greater than or equal to 1")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("solve", "q", "--n", "many"), "'--n'"),
        (("solve", "q", "--bogus"), "--bogus"),
        (("solve",), "Missing argument"),
        (("solve", "q", "--port", "70000"), "--port"),
        (("frobnicate",), "No such command"),
    ],
)
def test_usage_errors_are_one_line_too(args, needle):
    code, _, stderr = run(*args)
    line = assert_one_line_error(code, stderr, needle)
    assert "--help" in line  # where to look next


def test_select_choices_are_the_librarys():
    assert typing.get_args(cli.SelectName) == typing.get_args(SelectRule)


def test_the_builtin_verifier_names_are_the_registrys():
    assert list(cli._BUILTIN_VERIFIERS) == available_verifiers()


def test_port_and_base_url_together():
    code, _, stderr = run("solve", "q", "--port", "8123", "--base-url", DEAD_URL)
    assert_one_line_error(code, stderr, "--port", "--base-url")


# -- the verifier options ---------------------------------------------------------------------


def test_select_verified_without_a_verifier_is_refused(backend):
    code, _, stderr = solve("--select", "verified")
    assert_one_line_error(code, stderr, "--select verified", "add --verifier", "math")
    assert backend.requests == []


def test_unknown_verifier_lists_the_valid_ones(backend):
    code, _, stderr = solve("--verifier", "oracle")
    line = assert_one_line_error(code, stderr, "unknown verifier 'oracle'")
    for name in available_verifiers():
        assert name in line
    assert backend.requests == []


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("--verifier", "math"), ("--verifier math", "add --reference")),
        (("--verifier", "numeric"), ("add --reference",)),
        (("--verifier", "code", "--reference", "assert f(1) == 1"), ("add --entry-point",)),
        (("--verifier", "prm"), ("add --verifier-url",)),
        (("--verifier", "judge", "--reference", "12"), ("does not use a reference",)),
        (("--reference", "12"), ("--reference", "add --verifier")),
        (("--verifier", "math", "--reference", "12", "--entry-point", "f"), ("--entry-point",)),
        (("--verifier", "math", "--reference", "12", "--verifier-url", DEAD_URL), ("drop it",)),
        (
            ("--verifier", "code", "--reference", "assert 1", "--entry-point", "not a name"),
            ("entry_point",),
        ),
    ],
)
def test_verifier_options_are_checked_together(backend, args, needles):
    code, _, stderr = solve(*args)
    assert_one_line_error(code, stderr, *needles)
    assert backend.requests == []


def test_a_verifier_checks_against_the_reference(backend):
    # Two of three samples say 12, so majority alone would answer 12; the verifier is told 13.
    code, stdout, stderr = solve(
        "--n", "3", "--verifier", "exact", "--reference", "13", "--select", "verified", "--json"
    )
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["answer"] == "13"
    verdicts = {c["answer"]: c["verdict"]["passed"] for c in result["candidates"]}
    assert verdicts == {"13": True, "12": False}
    assert [d["node"] for d in result["decisions"]] == ["fanout", "verify", "select"]


def test_with_a_verifier_the_default_selection_uses_its_scores(backend):
    code, stdout, stderr = solve("--n", "3", "--verifier", "exact", "--reference", "13")
    assert code == 0, stderr
    assert stdout.strip() == "13"


@pytest.mark.skipif(not Path("/usr/bin/bwrap").exists(), reason="needs bubblewrap")
def test_code_verifier_runs_the_tests(backend):
    backend.fn = lambda request, i: (
        "```python\ndef inc(x):\n    return x + 1\n```"
        if i == 0
        else "```python\ndef inc(x):\n    return x\n```"
    )
    code, stdout, stderr = solve(
        "--n",
        "2",
        "--verifier",
        "code",
        "--reference",
        "assert inc(1) == 2",
        "--entry-point",
        "inc",
        "--json",
    )
    assert code == 0, stderr
    passed = [c["verdict"]["passed"] for c in json.loads(stdout)["candidates"]]
    assert passed == [True, False]


def test_code_verifier_never_falls_back_to_an_unisolated_run(backend, monkeypatch):
    from tts_graph.verifiers import sandbox

    async def unusable():
        return False

    monkeypatch.setattr(sandbox, "bwrap_available", unusable)
    code, _, stderr = solve(
        "--verifier", "code", "--reference", "assert inc(1) == 2", "--entry-point", "inc"
    )
    assert_one_line_error(code, stderr, "bubblewrap", "install")
    assert backend.requests == []


def test_the_code_verifier_never_gets_the_unisolated_sandbox():
    choice = cli._VerifierChoice("code", "assert inc(1) == 2", "inc")
    assert cli._make_verifier(choice, backend=None).sandbox in ("auto", "bwrap")


# -- --strict ---------------------------------------------------------------------------------


def test_strict_budget_carries_strict(backend):
    code, stdout, stderr = solve("--n", "2", "--strict", "--max-calls", "5", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["budget"]["strict"] is True
    code, stdout, _ = solve("--n", "2", "--max-calls", "5", "--json")
    assert json.loads(stdout)["budget"]["strict"] is False


def test_budget_exhausted_is_one_line_with_status_2(backend):
    def refuse(request, i):
        raise BudgetExhausted("budget exhausted before fanout (max_calls=1)", limit="calls")

    backend.fn = refuse
    code, stdout, stderr = solve("--strict", "--max-calls", "1")
    assert_one_line_error(code, stderr, "budget exhausted", "--strict")
    assert stdout == ""


def test_strict_refuses_a_request_the_budget_cannot_hold_whole(backend):
    # One 256-token answer fits 300 tokens; four do not, and --strict must not shrink them.
    code, stdout, stderr = solve("--n", "4", "--strict", "--max-total-tokens", "300")
    assert_one_line_error(code, stderr, "total tokens", "--strict")
    assert stdout == ""
    code, stdout, stderr = solve("--n", "4", "--max-total-tokens", "300")
    assert code == 0, stderr


# -- what the user sees -----------------------------------------------------------------------


def test_json_stdout_is_clean_and_progress_is_on_stderr(backend):
    code, stdout, stderr = solve("--n", "3", "--json")
    assert code == 0, stderr
    assert json.loads(stdout)["answer"] == "12"
    assert "sampling 3 candidates from fake-model ..." in stderr
    assert "sampled 3 candidates (" in stderr
    assert backend.closed


def test_plain_output_is_only_the_answer(backend):
    code, stdout, _ = solve("--n", "3")
    assert code == 0
    assert stdout == "12\n"


def noisy(request, i):
    logging.getLogger("tts_graph.nodes").warning("a library warning nobody can act on")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("a deprecation deep inside a dependency", DeprecationWarning, stacklevel=1)
    return "Answer: 12"


def logs(cache_dir):
    return sorted((cache_dir / "logs").glob("tts-graph-solve-*.log"))


def test_library_warnings_go_to_the_log_not_the_terminal(backend, cache_dir):
    backend.fn = noisy
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    code, stdout, stderr = solve("--n", "1")
    assert (root.level, root.handlers) == (level, handlers)  # put back after the run
    assert code == 0, stderr
    assert stdout == "12\n"
    assert "warning" not in stderr.lower()
    [log] = logs(cache_dir)
    text = log.read_text()
    assert "a library warning nobody can act on" in text
    assert "a deprecation deep inside a dependency" in text


def test_verbose_shows_the_log_on_stderr(backend):
    backend.fn = noisy
    code, _, stderr = solve("--n", "1", "--verbose")
    assert code == 0
    assert "a library warning nobody can act on" in stderr


def test_a_runtime_failure_names_the_log(backend, cache_dir):
    def fail(request, i):
        raise BackendError("the server answered 500 to everything", retryable=False)

    backend.fn = fail
    code, _, stderr = solve()
    line = assert_one_line_error(code, stderr, "answered 500", "log: ")
    [log] = logs(cache_dir)
    assert str(log) in line


def test_a_bug_is_one_line_and_its_traceback_is_in_the_log(backend, cache_dir):
    def crash(request, i):
        raise RuntimeError("kaboom")

    backend.fn = crash
    result = runner.invoke(app, ["solve", "q", "--base-url", DEAD_URL])
    assert result.exit_code == 1  # not bad input
    assert "Traceback" not in result.stderr
    assert "unexpected RuntimeError: kaboom" in result.stderr.strip().splitlines()[-1]
    [log] = logs(cache_dir)
    assert "Traceback" in log.read_text()


def test_help_and_argument_errors_import_no_heavy_module():
    heavy = ("langgraph", "langchain_core", "openai", "httpx", "torch", "vllm", "transformers")
    script = f"""
import json, sys
from typer.testing import CliRunner
from tts_graph.cli import app
codes = [CliRunner().invoke(app, args).exit_code for args in (
    ["--help"], ["solve", "--help"], ["serve", "--help"], ["solve", "q", "--n", "x"],
    ["solve", "q", "--select", "verified"], ["solve", "q", "--verifier", "oracle"],
    ["solve", "q", "--max-calls", "-1"], ["solve", "q", "--max-wall-s", "-1"],
    ["solve", "q", "--temperature", "-1"],
)]
loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps({{"codes": codes, "heavy": loaded}}))
"""
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(out.stdout)
    assert report["codes"] == [0, 0, 0, 2, 2, 2, 2, 2, 2]
    assert report["heavy"] == []


# -- server errors ----------------------------------------------------------------------------


def test_unreachable_server():
    url = f"http://127.0.0.1:{free_port()}/v1"
    code, _, stderr = run("solve", "What is 7+5?", "--base-url", url)
    assert_one_line_error(code, stderr, "cannot reach", url, "tts-graph serve")


def test_base_url_from_the_environment(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/v1"
    monkeypatch.setenv("TTS_GRAPH_BASE_URL", url)
    code, _, stderr = run("solve", "What is 7+5?")
    assert_one_line_error(code, stderr, url)


class NotOpenAI(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html>hello</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_url_that_is_not_an_openai_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotOpenAI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        code, _, stderr = run("solve", "What is 7+5?", "--base-url", url)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert_one_line_error(code, stderr, "not an OpenAI-compatible server", "/v1")


def test_serve_on_a_port_in_use():
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        code, _, stderr = run("serve", "--port", str(port))
    assert_one_line_error(code, stderr, f"port {port}", "already in use", "--port")
    assert "converting" not in stderr  # refused before the slow model preparation


def test_serve_without_vllm_installed(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    code, _, stderr = run("serve", "--port", str(free_port()))
    assert_one_line_error(code, stderr, "vLLM is not installed", "pip install")


def test_solve_without_a_server_and_without_vllm(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    code, _, stderr = run("solve", "What is 7+5?")
    assert_one_line_error(code, stderr, "vLLM is not installed", "--base-url")


def test_eval_of_several_specs_needs_distinct_names_and_one_server(tmp_path):
    spec = tmp_path / "a.yaml"
    spec.write_text("name: same\nstrategy: {kind: best_of_n, n: 2}\n")
    other = tmp_path / "b.yaml"
    other.write_text("name: same\nstrategy: {kind: best_of_n, n: 4}\n")
    code, _, stderr = run("eval", "--spec", str(spec), "--spec", str(other),
                          "--dataset", "humaneval", "--out", str(tmp_path / "out"))  # fmt: skip
    assert_one_line_error(code, stderr, "both named 'same'", "different names")

    other.write_text(
        "name: elsewhere\nbackend: {embedded: smollm2-135m}\nstrategy: {kind: best_of_n, n: 4}\n"
    )
    code, _, stderr = run("eval", "--spec", str(spec), "--spec", str(other),
                          "--dataset", "humaneval", "--out", str(tmp_path / "out"))  # fmt: skip
    assert_one_line_error(code, stderr, "the same server or embedded model", "--compare")
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


# -- options shared by solve, eval and calibrate ------------------------------------------------


def _params(command):
    import typer

    group = typer.main.get_command(app)
    return {p.opts[0]: p for p in group.commands[command].params}


@pytest.mark.parametrize(
    ("flag", "commands"),
    [
        ("--base-url", ("solve", "eval", "calibrate")),
        ("--retry-for", ("solve", "eval", "calibrate")),
        ("--verbose", ("serve", "solve", "eval", "calibrate")),
        ("--limit", ("eval", "calibrate")),
        ("--concurrency", ("eval", "calibrate")),
        ("--seed", ("eval", "calibrate")),
        ("--dataset", ("eval", "calibrate")),
        ("--dataset-option", ("eval", "calibrate")),
    ],
)
def test_a_shared_option_has_one_name_and_one_help_text(flag, commands):
    declared = [_params(command)[flag] for command in commands]
    assert len({(tuple(p.opts), tuple(p.secondary_opts), p.help) for p in declared}) == 1
    assert len({(p.envvar, p.metavar, p.multiple) for p in declared}) == 1


class Backends:
    """Every VLLMBackend the command line makes, as the keyword options it got; each is a fake
    that samples ``fn`` (the right answer of the problems below by default)."""

    def __init__(self):
        self.made = []
        self.fn = lambda request, i: "The answer is 2."

    def __call__(self, base_url, **options):
        self.made.append({"base_url": base_url, **options})
        fake = ContextFake(lambda request, i: self.fn(request, i))
        self.fakes.append(fake)
        return fake

    fakes: list


class ContextFake(Fake):
    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()


class ExactJudge:
    """The gold answer somewhere in the text is right (no math worker pool, no sandbox)."""

    async def correct(self, problem, text):
        return problem.gold in text

    async def close(self):
        pass


@pytest.fixture
def backends(monkeypatch):
    from tts_graph.backends import vllm
    from tts_graph.eval import datasets

    made = Backends()
    made.fakes = []
    monkeypatch.setattr(vllm, "VLLMBackend", made)
    monkeypatch.setattr(datasets, "Judge", ExactJudge)
    return made


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text("name: pair\nstrategy: {kind: best_of_n, n: 2}\n")
    return path


TWO_TERMS = ("--dataset-option", "min_terms=2", "--dataset-option", "max_terms=2")


def evaluate(spec_file, out, *args):
    return run("eval", "--spec", str(spec_file), "--dataset", "basic_arithmetic", "--limit", "3",
               "--out", str(out), "--base-url", DEAD_URL, *args)  # fmt: skip


def calibrate_run(out, *args):
    return run("calibrate", "--dataset", "basic_arithmetic", "--limit", "8", "--probe-n", "2",
               "--label-n", "2", "--out", str(out), "--base-url", DEAD_URL, *args)  # fmt: skip


@pytest.mark.parametrize("retry_for", [None, "300", "0.5"])
def test_retry_for_reaches_the_backend_solve_makes(backends, retry_for):
    args = () if retry_for is None else ("--retry-for", retry_for)
    code, _, stderr = solve("--n", "2", *args)
    assert code == 0, stderr
    [made] = backends.made
    assert made["base_url"] == DEAD_URL
    assert made["retry_for_s"] == (None if retry_for is None else float(retry_for))


def test_retry_for_reaches_the_backend_eval_makes_for_every_spec(backends, spec_file, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text("name: single\nstrategy: {kind: best_of_n, n: 1}\n")
    code, _, stderr = evaluate(spec_file, tmp_path / "out", "--spec", str(other),
                               "--retry-for", "600")  # fmt: skip
    assert code == 0, stderr
    assert [m["retry_for_s"] for m in backends.made] == [600.0, 600.0]
    assert all(f.closed for f in backends.fakes)


def test_retry_for_reaches_the_backend_calibrate_makes(backends, tmp_path):
    code, _, stderr = calibrate_run(tmp_path / "thresholds.json", "--retry-for", "45")
    assert code == 0, stderr
    assert [m["retry_for_s"] for m in backends.made] == [45.0]


@pytest.mark.parametrize("command", ["solve", "eval", "calibrate"])
@pytest.mark.parametrize("value", ["0", "-5", "nan", "inf", "soon"])
def test_retry_for_must_be_a_positive_number_of_seconds(backends, spec_file, tmp_path, command,
                                                        value):  # fmt: skip
    out = tmp_path / "out.json"
    args = {
        "solve": ("solve", "q", "--base-url", DEAD_URL),
        "eval": ("eval", "--spec", str(spec_file), "--dataset", "basic_arithmetic",
                 "--out", str(out)),
        "calibrate": ("calibrate", "--dataset", "basic_arithmetic", "--out", str(out)),
    }[command]  # fmt: skip
    code, _, stderr = run(*args, "--retry-for", value)
    line = assert_one_line_error(code, stderr, "'--retry-for'", "--help")
    if value != "soon":  # not a number at all: click says so
        assert "seconds greater than 0" in line
    assert backends.made == []
    assert not out.exists()


def test_dataset_options_reach_the_dataset_and_are_recorded(backends, spec_file, tmp_path):
    from tts_graph.eval.datasets import load_dataset
    from tts_graph.eval.harness import read_results

    out = tmp_path / "out"
    code, _, stderr = evaluate(spec_file, out, *TWO_TERMS)
    assert code == 0, stderr
    expected = load_dataset("basic_arithmetic", limit=3, min_terms=2, max_terms=2)
    assert expected != load_dataset("basic_arithmetic", limit=3)  # the options matter
    assert [r["question"] for r in read_results(out)] == [p.question for p in expected]
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["options"] == {"seed": 0, "dataset_options": {"min_terms": 2, "max_terms": 2}}


def test_a_run_without_dataset_options_records_none(backends, spec_file, tmp_path):
    code, _, stderr = evaluate(spec_file, tmp_path / "out")
    assert code == 0, stderr
    assert json.loads((tmp_path / "out" / "run.json").read_text())["options"] == {"seed": 0}


def test_a_resume_with_the_same_dataset_options_redoes_nothing(backends, spec_file, tmp_path):
    out = tmp_path / "out"
    assert evaluate(spec_file, out, *TWO_TERMS)[0] == 0
    lines = (out / "results.jsonl").read_text()
    # The same options in another order and spelling are the same options.
    code, _, stderr = evaluate(spec_file, out, "--dataset-option", "max_terms=2",
                               "--dataset-option", "min_terms= 2")  # fmt: skip
    assert code == 0, stderr
    assert (out / "results.jsonl").read_text() == lines
    assert backends.fakes[-1].requests == []


@pytest.mark.parametrize(
    ("first", "then", "needles"),
    [
        (TWO_TERMS, ("--dataset-option", "min_terms=3", "--dataset-option", "max_terms=3"),
         ("dataset_options: {'min_terms': 2, 'max_terms': 2} in the run",
          "{'min_terms': 3, 'max_terms': 3} now")),
        (TWO_TERMS, (), ("dataset_options: {'min_terms': 2, 'max_terms': 2} in the run",
                         "none now")),
        ((), TWO_TERMS, ("dataset_options: none in the run", "{'min_terms': 2, 'max_terms': 2}")),
    ],
)  # fmt: skip
def test_a_resume_with_other_dataset_options_is_refused(backends, spec_file, tmp_path, first,
                                                        then, needles):  # fmt: skip
    out = tmp_path / "out"
    assert evaluate(spec_file, out, *first)[0] == 0
    lines = (out / "results.jsonl").read_text()
    made = len(backends.made)
    code, _, stderr = evaluate(spec_file, out, *then)
    assert_one_line_error(code, stderr, str(out), *needles, "new --out", "same")
    assert (out / "results.jsonl").read_text() == lines
    assert all(f.requests == [] for f in backends.fakes[made:])


def test_calibrate_passes_and_records_dataset_options(backends, tmp_path):
    from tts_graph.eval.datasets import load_dataset
    from tts_graph.eval.harness import read_results

    out = tmp_path / "thresholds.json"
    code, _, stderr = calibrate_run(out, *TWO_TERMS)
    assert code == 0, stderr
    samples = out.with_suffix(".samples")
    expected = load_dataset("basic_arithmetic", limit=8, min_terms=2, max_terms=2)
    assert [r["question"] for r in read_results(samples)] == [p.question for p in expected]
    options = {"min_terms": 2, "max_terms": 2}
    assert json.loads((samples / "run.json").read_text())["options"]["dataset_options"] == options
    assert json.loads(out.read_text())["dataset_options"] == options
    code, _, stderr = calibrate_run(out, "--dataset-option", "min_terms=3")
    assert_one_line_error(code, stderr, "dataset_options", "in the run", "new --out")


@pytest.mark.parametrize(
    ("pair", "needles"),
    [
        ("min_terms", ("'min_terms' is not KEY=VALUE", "checkable=true")),
        ("=2", ("'=2' is not KEY=VALUE",)),
        ("min terms=2", ("'min terms=2' is not KEY=VALUE",)),
        ("min_terms=", ("'min_terms=' is not KEY=VALUE",)),
        ("limit=3", ("has a flag of its own", "--limit")),
        ("seed=3", ("has a flag of its own", "--seed")),
        ("operators=[+, -", ("operators=[+, -", "YAML scalar or list")),
        ("operators={a: 1}", ("reads as a dict", "a list of them")),
        ("min_terms=.nan", ("reads as a float",)),
        ("when=2024-01-01", ("reads as a date", "when='2024-01-01'")),
    ],
)
@pytest.mark.parametrize("command", ["eval", "calibrate"])
def test_a_malformed_dataset_option_is_one_clear_line(backends, spec_file, tmp_path, command,
                                                      pair, needles):  # fmt: skip
    out = tmp_path / "out"
    args = ("--dataset-option", pair)
    if command == "eval":
        code, _, stderr = evaluate(spec_file, out, *args)
    else:
        code, _, stderr = calibrate_run(out.with_suffix(".json"), *args)
    assert_one_line_error(code, stderr, "--dataset-option", *needles)
    assert backends.made == []
    assert not out.exists() and not out.with_suffix(".samples").exists()


def test_a_dataset_option_given_twice_is_refused(backends, spec_file, tmp_path):
    code, _, stderr = evaluate(spec_file, tmp_path / "out", *TWO_TERMS, "--dataset-option",
                               "min_terms=3")  # fmt: skip
    assert_one_line_error(code, stderr, "min_terms is given twice")


@pytest.mark.parametrize("command", ["eval", "calibrate"])
def test_an_unknown_dataset_option_gets_the_datasets_own_error(backends, spec_file, tmp_path,
                                                               command):  # fmt: skip
    out = tmp_path / "out"
    args = ("--dataset-option", "colour=blue")
    if command == "eval":
        code, _, stderr = evaluate(spec_file, out, *args)
    else:
        code, _, stderr = calibrate_run(out.with_suffix(".json"), *args)
    assert_one_line_error(code, stderr, "unknown option(s) colour", "basic_arithmetic",
                          "max_terms")  # fmt: skip
    assert backends.made == []


@pytest.mark.parametrize(
    ("pairs", "options"),
    [
        (["checkable=true"], {"checkable": True}),
        (["models=[GPT-4]"], {"models": ["GPT-4"]}),
        (["models=[GPT-4, 'GPT-4 Turbo']", "pool=solution"],
         {"models": ["GPT-4", "GPT-4 Turbo"], "pool": "solution"}),
        (["difficulty=2", "timeout_s=2.5"], {"difficulty": 2, "timeout_s": 2.5}),
        (["format_style='2'", "operators=null"], {"format_style": "2", "operators": None}),
        (["expression=a=b"], {"expression": "a=b"}),  # only the first = splits
        ([], {}),
        (None, {}),
    ],
)  # fmt: skip
def test_dataset_option_values_are_yaml(pairs, options):
    from tts_graph.cli.options import parse_dataset_options

    assert parse_dataset_options(pairs) == options


def test_champ_takes_its_options_from_the_command_line(monkeypatch, spec_file, tmp_path):
    from tts_graph.cli import evaluate as evaluate_module
    from tts_graph.eval.datasets import load_dataset

    seen = {}

    def fake_run_specs(command, specs, runs, problems, **kwargs):
        seen["problems"], seen["options"] = problems, kwargs["dataset_options"]
        raise SystemExit(0)

    monkeypatch.setattr(evaluate_module, "run_specs", fake_run_specs)
    pytest.importorskip("champ_dataset")
    code, _, stderr = run("eval", "--spec", str(spec_file), "--dataset", "champ",
                          "--dataset-option", "checkable=true", "--dataset-option",
                          "models=[GPT-4]", "--dataset-option", "pool=solution",
                          "--out", str(tmp_path / "out"))  # fmt: skip
    assert code == 0, stderr
    options = {"checkable": True, "models": ["GPT-4"], "pool": "solution"}
    assert seen["options"] == options
    assert seen["problems"] == load_dataset("champ", **options)
    assert seen["problems"] != load_dataset("champ")


def test_a_dataset_option_that_is_not_utf8_is_one_clear_line(backends, spec_file, tmp_path):
    code, _, stderr = evaluate(spec_file, tmp_path / "out", "--dataset-option", "pool=caf\udcff")
    assert_one_line_error(code, stderr, "--dataset-option is not valid UTF-8 text")
    assert backends.made == []

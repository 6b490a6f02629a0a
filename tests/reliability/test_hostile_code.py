"""Hostile candidates against CodeVerifier.

None may pass without solving its problem, and nothing a candidate does may reach the network,
files outside its temporary directory, other processes, or the tests it is judged by. Where
possible a hostile candidate computes the right answer only if its attack worked, so a broken
sandbox shows up as a pass and fails the test.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import json
import platform
import re
import secrets
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tts_graph.verifiers import code as code_module
from tts_graph.verifiers.base import Problem, Verdict
from tts_graph.verifiers.code import CodeTests, CodeVerifier
from tts_graph.verifiers.sandbox import SandboxLimits, bwrap_available, run_python

BWRAP = asyncio.run(bwrap_available())
needs_bwrap = pytest.mark.skipif(not BWRAP, reason="bubblewrap cannot run here")
BOTH = pytest.mark.parametrize(
    "sandbox", [pytest.param("bwrap", marks=needs_bwrap), "unsafe-subprocess"]
)

ADD = CodeTests(
    test="def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(-1, 1) == 0\n",
    entry_point="add",
    timeout_s=5,
)
GOOD_ADD = "def add(a, b):\n    return a + b\n"


async def check(candidate: str, *, sandbox: str = "auto", tests: CodeTests = ADD) -> Verdict:
    verifier = CodeVerifier(sandbox=sandbox, concurrency=2)  # type: ignore[arg-type]
    [verdict] = await verifier.verify(Problem("add two numbers", reference=tests), [candidate])
    return verdict


async def still_works(sandbox: str) -> None:
    verdict = await check(GOOD_ADD, sandbox=sandbox)
    assert verdict.passed, verdict.reason


def running(token: str) -> list[int]:
    """Host pids whose command line contains ``token`` (zombies have an empty one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if token.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


# ---------------------------------------------------------------- the tests and the nonce
# The candidate's process must never hold the tests, the nonce, or anything derived from them,
# nor the harness that holds them. Each attack below hunts for them through one channel and
# reports what it found on stderr; a test file's secret is returned, which makes the check pass.

HUNT = r'''
import re, sys
_SECRET = re.compile("tts-secret-[0-9a-f]{32}")
_HEX = re.compile("(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
_HARNESS = re.compile(r"def candi[d]ate\(\*args")  # a line only the harness's source has
_found = {"secret": [], "hex": set(), "harness": False}

def _look(value):
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    if isinstance(value, str):
        _found["secret"] += _SECRET.findall(value)
        _found["hex"].update(_HEX.findall(value))
        _found["harness"] = _found["harness"] or bool(_HARNESS.search(value))

_ATTRS = ("__dict__", "__globals__", "__closure__", "__defaults__", "__kwdefaults__", "__code__",
          "__wrapped__", "__self__", "__traceback__", "__context__", "__cause__", "cell_contents",
          "co_consts", "f_locals", "f_globals", "f_back", "f_code", "tb_frame", "tb_next",
          "gi_frame", "cr_frame")

def _deep(root, limit=300000):
    """Every string reachable from root through containers, functions, frames and objects."""
    seen, todo = set(), [root]
    while todo and len(seen) < limit:
        obj = todo.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        _look(obj)
        if isinstance(obj, (str, bytes, bytearray, int, float, complex, type(None))):
            continue
        if isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            todo.extend(obj)
        for attr in _ATTRS:
            try:
                todo.append(getattr(obj, attr))
            except Exception:
                pass

def _answer():
    sys.stderr.write("FOUND %s\n" % repr((sorted(set(_found["secret"])), sorted(_found["hex"]),
                                          _found["harness"])))
    return _found["secret"][0] if _found["secret"] else None
'''

ATTACKS = {
    "stack frames": "def secret():\n    _deep(sys._getframe())\n    return _answer()\n",
    "all threads' frames": "def secret():\n    _deep(sys._current_frames())\n    return _answer()\n",
    "traceback frames": (
        "def secret():\n    try:\n        raise ValueError\n    except ValueError as e:\n"
        "        _deep(e)\n    return _answer()\n"
    ),
    "gc object scan": (
        "import gc\ndef secret():\n    _deep(gc.get_objects() + gc.garbage)\n    return _answer()\n"
    ),
    # sys.argv, sys.orig_argv and os.environ are module globals too.
    "globals of imported modules": "def secret():\n    _deep(sys.modules)\n    return _answer()\n",
    # Freed memory keeps its bytes: read every readable page near the heap, the arenas and the
    # interpreter's data. write() to a pipe copies a page out, or fails with EFAULT for an
    # unmapped one instead of crashing.
    "inherited memory": r"""
import ctypes, os
def secret():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.write.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    r, w = os.pipe()
    page, tail = 4096, b""
    for anchor in (id(None), id(b"x" * 100000), id(object())):
        base = anchor & ~(page - 1)
        for addr in range(base - 16 * 2**20, base + 16 * 2**20, page):
            if addr <= 0 or libc.write(w, addr, page) != page:
                tail = b""
                continue
            chunk = os.read(r, page)
            _look(tail + chunk)
            tail = chunk[-64:]
    return _answer()
""",
}


@contextlib.contextmanager
def harness_inputs(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Records what the verifier sends to the harness (the tests and the nonce)."""
    sent: list[bytes] = []
    real = code_module.start_python

    @contextlib.asynccontextmanager
    async def spy(code: str, **options: Any) -> AsyncIterator[Any]:
        if code is code_module._HARNESS:
            sent.append(options["stdin"])
        async with real(code, **options) as run:
            yield run

    monkeypatch.setattr(code_module, "start_python", spy)
    yield sent


def found_in(verdict: Verdict) -> tuple[list[str], list[str], bool]:
    line = re.search(r"FOUND (.*)", verdict.details["stderr"])
    assert line, verdict.details["stderr"]
    secret, hexes, harness = ast.literal_eval(line[1])
    return secret, hexes, harness


def assert_nothing_leaked(verdict: Verdict, sent: list[bytes]) -> None:
    # Ran, found nothing, returned None: the tests then failed on their assertion.
    assert verdict.reason.startswith("AssertionError in tests"), verdict.reason
    secret, hexes, harness = found_in(verdict)
    [stdin] = sent
    nonce = stdin[-32:].decode()
    held = set(re.findall(r"[0-9a-f]{32}", stdin.decode("latin-1")))
    assert nonce in held
    assert secret == []
    assert set(hexes) & held == set()  # neither the nonce nor the secret in the tests
    assert harness is False


def secret_tests(prelude: str = "") -> CodeTests:
    """Tests that expect a random secret; ``{secret}`` in ``prelude`` becomes its literal."""
    token = repr("tts-secret-" + secrets.token_hex(16))
    test = prelude.format(secret=token) + f"def check(f):\n    assert f() == {token}\n"
    return CodeTests(test=test, entry_point="secret", timeout_s=30)


@needs_bwrap
@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_the_candidate_cannot_find_the_tests_the_nonce_or_the_harness(attack, monkeypatch):
    tests = secret_tests()
    with harness_inputs(monkeypatch) as sent:
        verdict = await check(HUNT + ATTACKS[attack], sandbox="bwrap", tests=tests)
    assert_nothing_leaked(verdict, sent)


@needs_bwrap
async def test_no_channel_to_the_parent_carries_the_tests(monkeypatch):
    # Inherited descriptors, /proc, the environment, argv, /dev/stdin and every file it can walk.
    candidate = (
        HUNT
        + r"""
import os
for fd in range(1024):
    try:
        blocking = os.get_blocking(fd)
    except OSError:
        continue
    for read in (lambda: os.read(fd, 1 << 20), lambda: os.pread(fd, 1 << 20, 0)):
        try:
            os.set_blocking(fd, False)
            _look(read())
        except OSError:
            pass
        finally:
            os.set_blocking(fd, blocking)
paths = ["/dev/stdin", "/dev/fd/0", "/proc/self/fd/0", "/proc/self/environ"]
for pid in range(1, 300):
    paths += ["/proc/%d/%s" % (pid, name) for name in ("cmdline", "environ", "fd/0", "fd/1")]
for path in paths:
    try:
        with open(path, "rb") as f:
            _look(f.read(1 << 20))
    except OSError:
        pass
_look(repr(dict(os.environ)))
_look(repr(sys.argv))
_look(repr(sys.orig_argv))
def secret():
    for top in ("/tmp", "/dev/shm", "/run", "/var/tmp", os.getcwd()):
        for root, dirs, files in os.walk(top):
            for name in files:
                try:
                    with open(os.path.join(root, name), "rb") as f:
                        _look(f.read(1 << 20))
                except OSError:
                    pass
    return _answer()
"""
    )
    # The tests leave their expected value in files, where the harness runs them.
    tests = secret_tests(
        "for _path in ('expected.txt', '/tmp/expected.txt', '/dev/shm/expected.txt'):\n"
        "    try:\n        open(_path, 'w').write({secret})\n    except OSError:\n"
        "        pass\n"
    )
    with harness_inputs(monkeypatch) as sent:
        verdict = await check(candidate, sandbox="bwrap", tests=tests)
    assert_nothing_leaked(verdict, sent)


@needs_bwrap
async def test_the_candidate_cannot_signal_or_even_see_another_process():
    candidate = (
        """
import os, signal, sys
def visible(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    return True
seen = [pid for pid in range(1, 1 << 15) if pid != os.getpid() and visible(pid)]
sys.stderr.write("SEEN %r ppid %d\\n" % (seen, os.getppid()))
for target in (os.getppid(), 0, -1):
    try:
        os.kill(target, signal.SIGKILL)
    except OSError:
        pass
"""
        + GOOD_ADD
    )
    verdict = await check(candidate, sandbox="bwrap")
    assert "SEEN [] ppid 0\n" in verdict.details["stderr"]
    assert verdict.passed, verdict.reason  # the harness did not notice a thing
    await still_works("bwrap")


@needs_bwrap
async def test_ptrace_process_vm_readv_and_perf_event_open_are_refused():
    if platform.machine() not in ("x86_64", "aarch64"):
        pytest.skip("the seccomp filter covers x86-64 and aarch64")
    candidate = """
import ctypes, os, platform, struct, sys, time
libc = ctypes.CDLL(None, use_errno=True)
child = os.fork()
if child == 0:
    time.sleep(60)
    os._exit(0)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
attached = libc.ptrace(16, child, None, None) == 0  # PTRACE_ATTACH
errnos = [ctypes.get_errno()]
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
buf = ctypes.create_string_buffer(64)
local, remote = iovec(ctypes.addressof(buf), 64), iovec(id(None), 64)  # same address in a fork
libc.process_vm_readv.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
read = libc.process_vm_readv(child, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0) > 0
errnos.append(ctypes.get_errno())
attr = ctypes.create_string_buffer(128)
struct.pack_into("=II", attr, 0, 1, 128)  # PERF_TYPE_SOFTWARE, sizeof(perf_event_attr)
libc.syscall.restype = ctypes.c_long
nr = {"x86_64": 298, "aarch64": 241}[platform.machine()]
perf = libc.syscall(ctypes.c_long(nr), attr, child, -1, -1, 0) >= 0
errnos.append(ctypes.get_errno())
os.kill(child, 9)
os.waitpid(child, 0)
sys.stderr.write("errnos %r\\n" % errnos)
def add(a, b):
    return a + b if attached or read or perf else None
"""
    verdict = await check(candidate, sandbox="bwrap")
    assert verdict.reason.startswith("AssertionError in tests"), verdict.reason
    assert "errnos [1, 1, 1]" in verdict.details["stderr"]  # EPERM from the seccomp filter


# ---------------------------------------------------------------- every process is reaped

REAPER = r"""
import asyncio, ctypes, json, os, signal, sys
# Orphans of whatever the verifier starts come here instead of the host's init: a process it
# leaves behind shows up as a child of this one.
assert ctypes.CDLL(None).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
from tts_graph.verifiers.base import Problem
from tts_graph.verifiers.code import CodeTests, CodeVerifier

def children():
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % entry) as f:
                stat = f.read()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        state, ppid = rest.split()[:2]
        if int(ppid) == os.getpid():
            found.append((int(entry), state, name))
    return found

async def main():
    sandbox, candidates = sys.argv[1], json.loads(sys.argv[2])
    # 10 s, not 1: on a busy machine importing ctypes alone can take seconds, and a crash that
    # times out first is not the crash this test is about.
    tests = CodeTests(test="assert add(2, 3) == 5", entry_point="add", timeout_s=10)
    verifier = CodeVerifier(sandbox=sandbox, concurrency=2)
    fds = len(os.listdir("/proc/self/fd"))
    verdicts = await verifier.verify(Problem("", reference=tests), candidates)
    left = children()
    for pid, state, _ in left:  # leave nothing behind for the host either
        if state != "Z":
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    print(json.dumps({"reasons": [v.reason for v in verdicts], "children": left,
                      "fds": [fds, len(os.listdir("/proc/self/fd"))]}))

asyncio.run(main())
"""

REAP_CANDIDATES = [
    ("passed all tests", GOOD_ADD),
    ("AssertionError in tests", "def add(a, b):\n    return 0\n"),
    ("timed out after 10s", "def add(a, b):\n    while True:\n        pass\n"),
    ("output limit exceeded", "while True:\n    print('y' * 4096)\n"),
    ("(SIGSEGV)", "import ctypes\ndef add(a, b):\n    ctypes.string_at(0)\n"),
    ("the candidate raised SystemExit", "import sys\ndef add(a, b):\n    sys.exit(0)\n"),
]
DETACHING = (
    """
import os, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(60)
    os._exit(0)
if os.fork() == 0:
    time.sleep(60)
"""
    + GOOD_ADD
)


@BOTH
async def test_every_process_a_check_starts_is_reaped(sandbox):
    cases = list(REAP_CANDIDATES)
    if sandbox == "bwrap":  # unsafe-subprocess kills what the code starts, but cannot reap it
        cases.append(("passed all tests", DETACHING))
    cases *= 3
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        REAPER,
        sandbox,
        json.dumps([candidate for _, candidate in cases]),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-3000:]
    report = json.loads(out)
    assert len(report["reasons"]) == len(cases)
    for (wanted, _), reason in zip(cases, report["reasons"], strict=True):
        assert wanted in reason
    assert report["children"] == []
    assert report["fds"][0] == report["fds"][1]  # no pipe left open either


# ---------------------------------------------------------------- limits and floods


@BOTH
async def test_infinite_loop_and_sleep_time_out(sandbox):
    tests = CodeTests(test=ADD.test, entry_point="add", timeout_s=1)
    for body in ("while True:\n        pass", "import time\n    time.sleep(60)"):
        verdict = await check(f"def add(a, b):\n    {body}\n", tests=tests, sandbox=sandbox)
        assert verdict.reason in ("timed out after 1s", "timed out after 1s (CPU time limit)")
    await still_works(sandbox)


@BOTH
async def test_huge_output_is_cut(sandbox):
    verdict = await check(
        "import sys\nwhile True:\n    sys.stdout.write('spam' * 4096)\n", sandbox=sandbox
    )
    assert verdict.reason == "output limit exceeded"
    assert len(verdict.details["stderr"]) <= 2000
    await still_works(sandbox)


@BOTH
async def test_memory_bomb(sandbox):
    verdict = await check(
        "blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 2**20))\n", sandbox=sandbox
    )
    assert verdict.reason == "memory limit exceeded"
    await still_works(sandbox)


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
    verdict = await check(bomb, sandbox="bwrap")
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
    verdict = await check(candidate, sandbox="bwrap", tests=CodeTests(ADD.test, "add", timeout_s=2))
    assert not verdict.passed
    assert running(token) == []
    await still_works("bwrap")


@BOTH
async def test_detached_double_forked_child_is_gone_afterwards(sandbox):
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
    verdict = await check(candidate, sandbox=sandbox)
    assert verdict.passed, verdict.reason  # a correct answer still counts; the child does not
    assert running(token) == []


@needs_bwrap
async def test_recursion_bomb_fails_contained():
    candidate = (
        "import sys\nsys.setrecursionlimit(10**8)\ndef add(a, b):\n    return add(a, b) + 1\n"
    )
    tests = CodeTests(ADD.test, "add", timeout_s=2)
    verdict = await check(candidate, sandbox="bwrap", tests=tests)
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


# ---------------------------------------------------------------- files, network, isolation


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
        "try:\n    os.setuid(0)\nexcept OSError as e:\n    print(e.errno)\n"
    )
    r = await run_python(probe, sandbox="bwrap")
    # EROFS, not just EACCES: also read-only for a non-root caller, who owns bwrap's / and /dev.
    assert r.stdout == "True False False\n['lo']\n" + "30\n" * 4 + "-1 1\n1\n"


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
    verdict = await check(candidate, sandbox="bwrap")
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
    verdict = await check(candidate, sandbox="bwrap")
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
        verdict = await check(candidate, sandbox="bwrap")
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()  # nothing ever connected
    assert verdict.reason.startswith("AssertionError in tests")


# ---------------------------------------------------------------- forging a pass


@BOTH
async def test_printed_fake_results_mean_nothing(sandbox):
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
    verdict = await check(candidate, sandbox=sandbox)
    assert not verdict.passed


@needs_bwrap
async def test_forging_through_proc_or_its_own_frames_fails():
    candidate = """
import os, sys
fake = ("\\n" + repr(("0" * 32, "passed", "", "")) + "\\n").encode()
for path in ("/proc/%d/fd/1" % os.getppid(), "/proc/%d/mem" % os.getppid(), "/proc/1/fd/1"):
    try:
        with open(path, "wb") as f:
            f.write(fake)
    except OSError:
        pass
frame = sys._getframe()
while frame is not None:  # descriptors in its frames are its own RPC pipes
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
    verdict = await check(candidate, sandbox="bwrap")
    assert not verdict.passed


@BOTH
async def test_ctypes_exit_and_memory_corruption_fail(sandbox):
    exits = "import ctypes\ndef add(a, b):\n    ctypes.CDLL(None).exit(0)\n"
    verdict = await check(exits, sandbox=sandbox)
    assert verdict.reason == "the candidate's process died or closed its pipe (exit code 0)"
    # Zeroes the header (refcount, type) of the small int 2: the next use of it dereferences NULL.
    corrupts = "import ctypes\ndef add(a, b):\n    ctypes.memset(id(a), 0, 16)\n    return a + b\n"
    verdict = await check(corrupts, sandbox=sandbox)
    assert verdict.reason == "the candidate's process died or closed its pipe (SIGSEGV)"
    await still_works(sandbox)


@BOTH
async def test_exiting_before_or_during_the_tests_fails(sandbox):
    cases = {
        "import sys\nsys.exit(0)\n" + GOOD_ADD: "SystemExit while loading the candidate: 0",
        "import os\nos._exit(0)\n"
        + GOOD_ADD: "the candidate's process ended before the tests ran (exit code 0)",
        "import sys\ndef add(a, b):\n    sys.exit(0)\n": "the candidate raised SystemExit",
        "import os\ndef add(a, b):\n    os._exit(0)\n": "the candidate's process died or closed its pipe (exit code 0)",
    }
    for candidate, reason in cases.items():
        assert (await check(candidate, sandbox=sandbox)).reason == reason


@BOTH
async def test_overriding_check_assert_and_builtins_changes_nothing(sandbox):
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
    verdict = await check(candidate, sandbox=sandbox)
    assert verdict.reason.startswith("AssertionError in tests")


@BOTH
async def test_objects_that_equal_everything_cannot_leave_the_worker(sandbox):
    always = "class Yes:\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Yes()\n"
    verdict = await check(always, sandbox=sandbox)
    assert (
        verdict.reason
        == "TypeError in tests: the candidate returned a Yes, which is not a plain built-in value"
    )
    subclass = "class Yes(int):\n    def __eq__(self, other):\n        return True\ndef add(a, b):\n    return Yes(0)\n"
    assert not (await check(subclass, sandbox=sandbox)).passed


@BOTH
async def test_closing_its_own_stdout_does_not_hide_a_correct_answer(sandbox):
    candidate = "import os, sys\nsys.stdout.close()\nos.close(1)\nos.close(2)\n" + GOOD_ADD
    assert (await check(candidate, sandbox=sandbox)).passed
    assert not (await check(candidate.replace("a + b", "a * b"), sandbox=sandbox)).passed


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
    verdict = await check(candidate, sandbox="bwrap")
    assert verdict.reason.startswith("AssertionError in tests")


@BOTH
async def test_stop_iteration_cannot_end_the_tests_loop_early(sandbox):
    # Raised into map() or zip(), a StopIteration would end the loop as if every check had run.
    looping = CodeTests(
        test="def check(candidate):\n"
        "    for got, want in zip(map(candidate, [2, -1], [3, 1]), [5, 0]):\n"
        "        assert got == want\n"
        "    for _ in iter(lambda: candidate(2, 2), 4):\n"
        "        assert False\n",
        entry_point="add",
        timeout_s=5,
    )
    for exc in ("StopIteration", "StopAsyncIteration"):
        verdict = await check(f"def add(a, b):\n    raise {exc}\n", tests=looping, sandbox=sandbox)
        assert verdict.reason == f"RuntimeError in tests: the candidate raised {exc}: "
    assert (await check(GOOD_ADD, tests=looping, sandbox=sandbox)).passed


# ---------------------------------------------------------------- secrets of the caller

CALLER_SECRET_HUNT = r"""
import ctypes, os, re, sys
found = []
_KEY = re.compile(rb"sk-canary-[0-9a-f]{32}")
def look(data):
    found.extend(m.decode() for m in _KEY.findall(data))
look(repr(dict(os.environ)).encode())
paths = ["/proc/self/environ", "/proc/self/cmdline"]
paths += ["/proc/%d/%s" % (pid, name) for pid in range(1, 4096) for name in ("environ", "cmdline")]
for path in paths:
    try:
        with open(path, "rb") as f:
            look(f.read())
    except OSError:
        pass
# No /proc to read: mount one (it needs a user namespace of its own first).
libc = ctypes.CDLL(None, use_errno=True)
os.makedirs("proc", exist_ok=True)
unshared = libc.unshare(0x10000000 | 0x00020000)  # CLONE_NEWUSER | CLONE_NEWNS
mounted = libc.mount(b"proc", b"proc", b"proc", 0, None)
for pid in os.listdir("proc") if mounted == 0 else []:
    try:
        with open("proc/%s/environ" % pid, "rb") as f:
            look(f.read())
    except OSError:
        pass
sys.stderr.write("FOUND %r unshare %d mount %d\n" % (found, unshared, mounted))
def secret():
    return found[0] if found else None
"""


@needs_bwrap
async def test_the_callers_environment_holds_nothing_to_find(monkeypatch):
    # An API key in the caller's environment (the model server's) is the kind of secret a
    # candidate hunts for: through its own environment, /proc, or a /proc it mounts itself.
    key = "sk-canary-" + secrets.token_hex(16)
    for name in ("TTS_GRAPH_API_KEY", "VLLM_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.setenv(name, key)
    tests = CodeTests(f"def check(f):\n    assert f() == {key!r}\n", "secret", timeout_s=30)
    verdict = await check(CALLER_SECRET_HUNT, sandbox="bwrap", tests=tests)
    assert verdict.reason.startswith("AssertionError in tests"), verdict.reason
    assert "FOUND [] unshare -1 mount -1" in verdict.details["stderr"]
    assert key not in repr(verdict)


# ---------------------------------------------------------------- memory and disk past the limits

HOARD = r"""
import ctypes, os, sys
MB = 1 << 20
WANT = %(want)d
libc = ctypes.CDLL(None, use_errno=True)
held = {}
keep = []

def fill(fd):
    total = 0
    try:
        while total < WANT * MB:
            total += os.write(fd, b"x" * MB)
    except OSError:
        pass
    return total // MB

# Files: the run's /tmp, then a tmpfs of its own in a user and mount namespace of its own.
def files(folder):
    total = 0
    for i in range(WANT):
        try:
            fd = os.open(os.path.join(folder, "f%%d" %% i), os.O_WRONLY | os.O_CREAT)
        except OSError:
            break
        got = fill(fd)
        os.close(fd)
        total += got
        if total >= WANT or not got:
            break
    return total
held["tmp"] = files("/tmp")
os.makedirs("/tmp/own", exist_ok=True)
if libc.unshare(0x10000000 | 0x00020000) == 0 and libc.mount(b"t", b"/tmp/own", b"tmpfs", 0, None) == 0:
    held["own tmpfs"] = files("/tmp/own")
# Memory no address-space limit counts: memfd files, System V shared memory and messages.
held["memfd"] = 0
while held["memfd"] < WANT:
    try:
        fd = os.memfd_create("hoard")
    except OSError:
        break
    keep.append(fd)
    got = fill(fd)
    held["memfd"] += got
    if not got:
        break
libc.shmat.restype = ctypes.c_void_p
libc.shmat.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
libc.shmdt.argtypes = [ctypes.c_void_p]
held["shm"] = 0
while held["shm"] < WANT:
    sid = libc.shmget(0, 64 * MB, 0o1600)
    addr = libc.shmat(sid, None, 0) if sid >= 0 else None
    if addr in (None, ctypes.c_void_p(-1).value):
        break
    ctypes.memset(addr, 1, 64 * MB)
    libc.shmdt(addr)
    held["shm"] += 64
queue = libc.msgget(0, 0o1600)
held["msg"] = 0 if queue < 0 else -1  # a queue at all: its messages add up past any limit
sys.stderr.write("HELD %%r\n" %% sorted(held.items()))
over = max(held.values()) > %(limit)d or held["msg"]
def add(a, b):
    return a + b if over else None
"""


@needs_bwrap
async def test_no_run_holds_more_memory_or_disk_than_its_limits():
    limits = SandboxLimits(memory_mb=256, file_size=1 << 20)
    verifier = CodeVerifier(sandbox="bwrap", limits=limits, concurrency=1)
    candidate = HOARD % {"want": 320, "limit": 256}
    [verdict] = await verifier.verify(Problem("add", reference=ADD), [candidate])
    assert verdict.reason.startswith("AssertionError in tests"), verdict.reason
    held = dict(ast.literal_eval(verdict.details["stderr"].split("HELD ")[1].splitlines()[0]))
    # The run's /tmp holds at most its file_size; nothing else holds anything.
    assert held == {"tmp": 1, "memfd": 0, "shm": 0, "msg": 0}
    await still_works("bwrap")


@needs_bwrap
async def test_threads_processes_and_forks_still_work_under_the_filter():
    candidate = """
import concurrent.futures, ctypes, os, subprocess, threading
with concurrent.futures.ThreadPoolExecutor(2) as pool:
    doubled = list(pool.map(lambda x: 2 * x, [1, 2]))
echoed = subprocess.run(["/bin/echo", "ok"], capture_output=True).stdout
child = os.fork()
if child == 0:
    os._exit(3)
status = os.waitpid(child, 0)[1] >> 8
CMP = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
values = (ctypes.c_int * 3)(3, 1, 2)
ctypes.CDLL(None).qsort(values, 3, ctypes.sizeof(ctypes.c_int), CMP(lambda a, b: a[0] - b[0]))
works = doubled == [2, 4] and echoed == b"ok\\n" and status == 3 and list(values) == [1, 2, 3]
def add(a, b):
    return a + b if works else None
"""
    verdict = await check(candidate, sandbox="bwrap")
    assert verdict.passed, verdict.reason


# ---------------------------------------------------------------- files, sockets, processes


@needs_bwrap
async def test_symlinks_and_hard_links_cannot_reach_outside_the_sandbox(tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    candidate = f"""
import os
wrote = 0
for target, link in (({str(victim)!r}, "dir"), ({str(victim / "keep.txt")!r}, "file"),
                     ("/proc/1/root" + {str(victim)!r}, "via_proc"), ("/", "root")):
    try:
        os.symlink(target, link)
    except OSError:
        continue
    for path in (os.path.join(link, "pwned"), link, os.path.join(link, {str(victim)!r}[1:], "pwned")):
        try:
            with open(path, "w") as f:
                f.write("pwned")
            wrote += os.path.exists({str(victim / "pwned")!r}) or path == link and os.path.exists({str(victim / "keep.txt")!r})
        except OSError:
            pass
try:
    os.link({str(victim / "keep.txt")!r}, "hard")
    wrote += 1
except OSError:
    pass
def add(a, b):
    return a + b if wrote else None
"""
    verdict = await check(candidate, sandbox="bwrap")
    assert verdict.reason.startswith("AssertionError in tests"), verdict.reason
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]
    assert (victim / "keep.txt").read_text() == "keep"


async def test_cleanup_never_follows_a_link_out_of_the_run_directory(tmp_path):
    # unsafe-subprocess runs in a temporary directory of the host, removed afterwards: links
    # the code leaves there are removed, never what they point to.
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("keep")
    candidate = (
        f"""
import os
os.symlink({str(victim)!r}, "dir")
os.symlink({str(victim / "keep.txt")!r}, "file")
try:
    os.link({str(victim / "keep.txt")!r}, "hard")
except OSError:
    pass
os.makedirs("deep/er")
os.symlink({str(victim)!r}, "deep/er/dir")
os.chmod("deep", 0)
"""
        + GOOD_ADD
    )
    verdict = await check(candidate, sandbox="unsafe-subprocess")
    assert verdict.passed, verdict.reason
    assert sorted(p.name for p in victim.iterdir()) == ["keep.txt"]
    assert (victim / "keep.txt").read_text() == "keep"


@needs_bwrap
async def test_unix_sockets_of_the_host_are_out_of_reach(tmp_path):
    name = f"tts-canary-{secrets.token_hex(8)}"
    path = tmp_path / "host.sock"
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as abstract,
        socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as named,
    ):
        abstract.bind("\0" + name)
        named.bind(str(path))
        for listener in (abstract, named):
            listener.listen()
            listener.setblocking(False)
        candidate = f"""
import socket
connected = []
for address in ("\\0{name}", {str(path)!r}):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(address)
        connected.append(address)
    except OSError:
        pass
a, b = socket.socketpair()  # its own sockets work
a.sendall(b"x")
own = b.recv(1) == b"x"
def add(a, b):
    return a + b if connected or not own else None
"""
        verdict = await check(candidate, sandbox="bwrap")
        for listener in (abstract, named):
            with pytest.raises(BlockingIOError):
                listener.accept()  # nothing ever connected
    assert verdict.reason.startswith("AssertionError in tests"), verdict.reason


@BOTH
async def test_threads_that_outlive_the_call_leave_nothing_behind(sandbox):
    # A thread started at load keeps starting processes (some in sessions of their own) while
    # the tests run and after: none survives the check.
    token = f"{secrets.randbelow(10**8) + 10**8}.75"
    candidate = (
        f"""
import subprocess, threading, time
def spawn():
    while True:
        for detach in (False, True):
            try:
                subprocess.Popen(["/bin/sleep", "{token}"], start_new_session=detach)
            except OSError:
                pass
        time.sleep(0.05)
threading.Thread(target=spawn).start()  # not a daemon: it would keep the process alive
time.sleep(0.3)
"""
        + GOOD_ADD
    )
    verdict = await check(candidate, sandbox=sandbox)
    assert verdict.passed, verdict.reason
    assert running(token) == []


@BOTH
async def test_hooks_handlers_and_patched_internals_change_nothing(sandbox):
    candidate = """
import atexit, builtins, marshal, os, signal, sys, threading
atexit.register(os._exit, 0)
sys.excepthook = lambda *args: os._exit(0)
threading.excepthook = lambda *args: os._exit(0)
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGPIPE, signal.SIGXCPU):
    signal.signal(sig, signal.SIG_IGN)
real_dumps = marshal.dumps
def forged(value, *args):
    # Whatever the worker sends, send "ok 5" (or a report that claims a pass).
    if type(value) is tuple and value and value[0] in ("ok", "raise"):
        return real_dumps(("ok", 5))
    return real_dumps(value, *args)
marshal.dumps = forged
frame = sys._getframe()
while frame is not None:  # the worker's own helpers, in its globals
    for key in ("_send", "_recv", "_text"):
        if key in frame.f_globals:
            frame.f_globals[key + "_real"] = frame.f_globals[key]
    frame = frame.f_back
builtins.print = lambda *args, **kwargs: os.write(2, b"passed all tests\\n")
def add(a, b):
    raise SystemExit(0)
"""
    verdict = await check(candidate, sandbox=sandbox)
    # Its only effect: every answer is 5, which is right once and wrong once.
    assert verdict.reason.startswith("AssertionError in tests"), verdict.reason
    await still_works(sandbox)

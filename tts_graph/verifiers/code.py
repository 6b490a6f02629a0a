"""Check generated code against unit tests, in a sandbox, with the verdict decided by the caller.

>>> import asyncio
>>> from tts_graph.verifiers.base import Problem
>>> tests = CodeTests(test="def check(f):\\n    assert f(2) == 4\\n", entry_point="double")
>>> [v] = asyncio.run(CodeVerifier().verify(
...     Problem("Write double(x).", reference=tests),
...     ["```python\\ndef double(x):\\n    return 2 * x\\n```"]))
>>> v.passed, v.reason
(True, 'passed all tests')

Threat model
------------
The candidate is hostile: it may monkeypatch builtins, redefine ``check`` or ``AssertionError``,
return objects whose ``__eq__`` always says yes, call ``sys.exit(0)`` or ``os._exit(0)``, print a
fake result, close its stdout, kill its parent, fork, use ``ctypes``, or just loop and allocate.
None of that may yield a pass, harm the host, or stop the other candidates from being checked.

How a check runs. Inside one sandbox (:mod:`tts_graph.verifiers.sandbox`) a trusted *harness*
reads the problem from stdin, runs the prompt (trusted: imports, and helpers such as HumanEval's
``poly``), and forks a *worker* before it reads anything secret. The worker points its stdin at
/dev/null and its stdout at stderr, closes every descriptor but its two RPC pipes, and only then
executes the candidate. The harness never executes candidate code: it runs the tests itself, and
the function they receive is a proxy that sends the arguments to the worker and returns its
reply. Replies cross the pipe as ``marshal`` data, so only plain built-in values arrive (no
subclass, no custom ``__eq__``); an exception the candidate raises is re-raised as the builtin
of that name. After the fork the harness reads a random nonce from stdin, runs the tests, kills
the worker, and writes ``(nonce, outcome)`` to its stdout. The worker cannot reach that stdout
or the harness's memory: the descriptor is gone, there is no ``/proc``, and ``ptrace``,
``process_vm_readv`` and ``pidfd_getfd`` are refused by seccomp (and, for a root caller, by the
processes being non-dumpable after the uid drop).

The caller decides: a pass needs exit code 0, no timeout, no output overflow, and a last stdout
line that names this check's nonce and says "passed". What the candidate prints is never read
as a result. A worker that dies, exits, or breaks the protocol during the tests makes the check
fail even if the tests swallow the error.

Residual risks:

- Under the fallback backend the worker runs as the caller's user with no seccomp filter and
  with ``/proc``: it can ``ptrace`` the harness, read the nonce and forge a pass, besides
  touching the filesystem and network. The fallback is for trusted code only; it logs a warning.
- The harness decodes worker replies with ``marshal``, which is not hardened against malicious
  bytes; a crafted reply crashes the harness (a failed check) unless it exploits a
  memory-safety bug in CPython's unmarshaller.
- Tests are only as strong as their assertions: the proxy stops fake objects, not hard-coded
  answers to weak tests. Arguments and results must be marshal-able built-in values (true of
  HumanEval and MBPP; a bytearray arrives as bytes); arguments are copied, so in-place mutation
  by the candidate is not seen by the tests.
- Harness and worker share a uid, so the worker can kill the harness: that fails the check.
  Kernel exploits and timing side channels are out of scope.
"""

from __future__ import annotations

import ast
import asyncio
import functools
import hmac
import logging
import marshal
import os
import re
import secrets
import textwrap
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tts_graph.errors import ConfigError
from tts_graph.verifiers.base import Problem, Verdict
from tts_graph.verifiers.sandbox import BackendName, SandboxLimits, run_python

__all__ = ["CodeTests", "CodeVerifier", "extract_code"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodeTests:
    """Unit tests for one coding problem (the ``reference`` of its :class:`Problem`).

    ``test`` is HumanEval-style code that defines ``check(candidate)``; plain top-level
    ``assert entry_point(...) == ...`` lines (MBPP style) work too. ``prompt`` is the trusted
    code the candidate completes: prepended when the candidate is only a function body, executed
    before it otherwise (for imports and helpers), and available to the tests. Both ``test`` and
    ``prompt`` are trusted: they run in the harness, outside the candidate's process (still
    inside the sandbox). ``timeout_s`` is the wall-clock and CPU limit for the whole check.

    >>> CodeTests(test="assert inc(1) == 2", entry_point="inc").timeout_s
    10.0
    """

    test: str
    entry_point: str
    prompt: str = ""
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.entry_point.isidentifier():
            raise ConfigError(f"entry_point must be a function name, got {self.entry_point!r}")
        if not self.timeout_s > 0:
            raise ConfigError(f"timeout_s must be > 0, got {self.timeout_s}")


_FENCE = re.compile(r"^[ \t]*```[ \t]*([\w+.-]*)[^\n]*\n(.*?)(?:^[ \t]*```|\Z)", re.M | re.S)


def _defines(code: str, name: str) -> bool:
    return (
        re.search(rf"^(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", code, re.M) is not None
    )


def extract_code(text: str, *, entry_point: str | None = None) -> str:
    """The code in a model's reply: the last ```python block, else the last fenced block of any
    language, else the whole text. With ``entry_point``, a block that defines that function is
    preferred over later ones (such as a usage example).

    >>> extract_code("Here:\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
    'def f():\\n    return 1\\n'
    >>> extract_code("    return x + 1\\n")
    '    return x + 1\\n'
    """
    blocks = [(lang.lower(), textwrap.dedent(body)) for lang, body in _FENCE.findall(text)]
    if not blocks:
        return text
    python = [body for lang, body in blocks if lang in ("python", "py", "python3")]
    pool = python or [body for _, body in blocks]
    if entry_point is not None:
        defining = [body for body in pool if _defines(body, entry_point)]
        pool = defining or pool
    return pool[-1]


# Runs inside the sandbox. Trusted: it never executes candidate code (the forked worker does).
_HARNESS = r'''
import _signal, builtins, marshal, os

# _signal, not signal: importing signal pulls in enum, a few ms per check
_SIGNALS = {getattr(_signal, n): n for n in reversed(dir(_signal)) if n[:3] == "SIG" and n[3] != "_"}

def _read(fd, n):
    data = b""
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            raise EOFError
        data += chunk
    return data

def _send(fd, data):
    data = len(data).to_bytes(4, "big") + data
    while data:
        data = data[os.write(fd, data):]

def _recv(fd):
    size = int.from_bytes(_read(fd, 4), "big")
    if size > 1 << 26:  # garbage on the pipe: fail now rather than wait for 4 GB
        raise ValueError("oversized frame")
    return marshal.loads(_read(fd, size))

def _text(exc):
    try:
        return "".join(str(exc))[:1000]
    except BaseException:
        return "<unprintable>"

def _worker(prompt, program, entry, calls, replies):
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)
    for fd in range(3, 256):
        if fd not in (calls, replies):
            try:
                os.close(fd)
            except OSError:
                pass
    ns = {"__name__": "__candidate__"}
    try:
        if prompt:
            exec(compile(prompt, "<prompt>", "exec"), ns)
        exec(compile(program, "<candidate>", "exec"), ns)
        if entry not in ns:
            raise NameError("the candidate does not define %s" % entry)
        fn = ns[entry]
    except BaseException as exc:
        _send(replies, marshal.dumps(("load", type(exc).__name__, _text(exc))))
        os._exit(0)
    _send(replies, marshal.dumps(("ready",)))
    while True:
        try:
            args, kwargs = _recv(calls)
        except EOFError:
            os._exit(0)
        try:
            result = fn(*args, **kwargs)
            try:
                data = marshal.dumps(("ok", result))
            except ValueError:
                data = marshal.dumps(("raise", "TypeError", "the candidate returned a %s, "
                                      "which is not a plain built-in value" % type(result).__name__))
        except BaseException as exc:
            try:
                data = marshal.dumps(("raise", type(exc).__name__, _text(exc)))
            except BaseException:
                data = marshal.dumps(("raise", "Exception", "<unprintable>"))
        _send(replies, data)

_DIED = "the candidate's process died or closed its pipe"
_ENDED = "the candidate's process ended before the tests ran"

class _Gone(BaseException):
    """The worker died or broke the protocol; not an Exception, so tests cannot swallow it."""

def _main():
    size = int.from_bytes(_read(0, 8), "big")
    harness_prompt, worker_prompt, program, test, entry = marshal.loads(_read(0, size))
    ns = {"__name__": "__tests__"}
    try:  # before the fork, so that the worker inherits the modules the prompt imports
        exec(compile(harness_prompt, "<prompt>", "exec"), ns)
        broken = None
    except BaseException as exc:
        broken = ("tests", type(exc).__name__, _text(exc))
    calls_r, calls_w = os.pipe()
    replies_r, replies_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            _worker(worker_prompt, program, entry, calls_r, replies_w)
        finally:
            os._exit(1)
    os.close(calls_r)
    os.close(replies_w)
    nonce = b""
    while chunk := os.read(0, 256):  # read only now: the worker never had the nonce in memory
        nonce += chunk
    gone = []

    def candidate(*args, **kwargs):
        if gone:
            raise _Gone()
        try:
            request = marshal.dumps((args, kwargs))
        except ValueError:
            raise TypeError("an argument is not a plain built-in value") from None
        try:
            _send(calls_w, request)
            reply = _recv(replies_r)
        except BaseException:
            gone.append(_DIED)
            raise _Gone() from None
        if type(reply) is tuple and len(reply) == 2 and reply[0] == "ok":
            return reply[1]
        if (type(reply) is tuple and len(reply) == 3 and reply[0] == "raise"
                and type(reply[1]) is str and type(reply[2]) is str):
            cls = getattr(builtins, reply[1], None)
            if isinstance(cls, type) and issubclass(cls, Exception):
                try:
                    exc = cls(reply[2])
                except BaseException:
                    exc = RuntimeError("%s: %s" % (reply[1], reply[2]))
                raise exc
            if isinstance(cls, type) and issubclass(cls, BaseException):
                gone.append("the candidate raised %s" % reply[1])
                raise _Gone()
            raise RuntimeError("%s: %s" % (reply[1], reply[2]))
        gone.append("the candidate's process broke the protocol")
        raise _Gone()

    try:
        first = _recv(replies_r)
    except BaseException:
        first = None
    if first == ("ready",) and broken:
        outcome = broken
    elif first == ("ready",):
        try:
            ns[entry] = candidate
            exec(compile(test, "<tests>", "exec"), ns)
            if callable(ns.get("check")):
                ns["check"](candidate)
            outcome = ("passed", "", "")
        except _Gone:
            outcome = ("died", "", "")
        except BaseException as exc:
            outcome = ("tests", type(exc).__name__, _text(exc))
        if gone:
            outcome = ("died", "", gone[0])
    elif (type(first) is tuple and len(first) == 3 and first[0] == "load"
          and type(first[1]) is str and type(first[2]) is str):
        outcome = first
    else:
        outcome = ("died", "", _ENDED)
    os.close(calls_w)
    try:
        os.kill(pid, _signal.SIGKILL)
    except OSError:
        pass
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if outcome[0] == "died" and outcome[2] in (_DIED, _ENDED):  # it ended on its own: say how
        if status == -_signal.SIGXCPU:
            outcome = ("died", "", "CPU time limit exceeded")
        elif status < 0 and status != -_signal.SIGKILL:
            outcome = ("died", "", "%s (%s)" % (outcome[2], _SIGNALS.get(-status, -status)))
        elif status >= 0:
            outcome = ("died", "", "%s (exit code %d)" % (outcome[2], status))
    os.write(1, ("\n" + repr((nonce.decode(),) + outcome) + "\n").encode())
    os._exit(0)

_main()
'''


@functools.lru_cache(maxsize=256)
def _runnable(prompt: str) -> str:
    """The prompt as a module of its own: a signature with no docstring gets a ``pass`` body."""
    for attempt in (prompt, prompt.rstrip() + " pass\n"):
        try:
            compile(attempt, "<prompt>", "exec")
        except SyntaxError:
            continue
        return attempt
    return prompt  # broken beyond repair: let the tests report the SyntaxError


def _reason(outcome: tuple[str, str, str], timeout_s: float) -> str:
    kind, error, message = outcome
    if error == "MemoryError":
        return "memory limit exceeded"
    if kind == "died" and message == "CPU time limit exceeded":
        return f"timed out after {timeout_s:g}s (CPU time limit)"
    detail = f": {message}" if message else ""
    if kind == "tests":
        return f"{error} in tests{detail}"
    if kind == "load":
        return f"{error} while loading the candidate{detail}"
    return message or "the candidate's process died"


def _outcome(stdout: str, nonce: str) -> tuple[str, str, str] | None:
    lines = stdout.rstrip("\n").rsplit("\n", 1)
    try:
        report = ast.literal_eval(lines[-1])
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not (
        isinstance(report, tuple)
        and len(report) == 4
        and all(isinstance(x, str) for x in report)
        and hmac.compare_digest(report[0].encode(), nonce.encode())
    ):
        return None
    return report[1], report[2], report[3]


class CodeVerifier:
    """Runs each candidate's code against :class:`CodeTests` in a sandbox (name ``"code"``).

    ``problem.reference`` must be a :class:`CodeTests`. At most ``concurrency`` sandboxes run at
    once (default: the CPU count). ``limits`` sets memory, processes, output and file size; the
    time limits come from :attr:`CodeTests.timeout_s`. Reasons include ``"passed all tests"``,
    ``"AssertionError in tests: ..."``, ``"timed out after 10s"``, ``"memory limit exceeded"``,
    ``"output limit exceeded"`` and ``"no code found"``.

    >>> import asyncio
    >>> from tts_graph.verifiers.base import Problem
    >>> p = Problem("inc", reference=CodeTests(test="assert inc(1) == 2", entry_point="inc"))
    >>> [v.passed for v in asyncio.run(CodeVerifier(concurrency=2).verify(
    ...     p, ["def inc(x):\\n    return x + 1", "def inc(x):\\n    return x"]))]
    [True, False]
    """

    name = "code"

    def __init__(
        self,
        *,
        limits: SandboxLimits = SandboxLimits(),
        concurrency: int | None = None,
        backend: BackendName = "auto",
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        if backend not in ("auto", "bwrap", "fallback"):
            raise ConfigError(f"unknown backend {backend!r}; choose 'auto', 'bwrap' or 'fallback'")
        self.limits = limits
        self.backend: BackendName = backend
        self.concurrency = concurrency or os.cpu_count() or 1
        # One semaphore per event loop: an asyncio.Semaphore is bound to the loop it first waits in.
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._semaphores = weakref.WeakKeyDictionary()

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]:
        """One verdict per candidate, in order; a hostile or broken candidate just fails.

        Raises :class:`~tts_graph.errors.ConfigError` if ``problem.reference`` is not
        :class:`CodeTests` (a wiring mistake, not a bad candidate).
        """
        tests = problem.reference
        if not isinstance(tests, CodeTests):
            raise ConfigError(
                f"CodeVerifier needs problem.reference to be CodeTests, got {type(tests).__name__}"
            )
        return list(await asyncio.gather(*(self._check(tests, text) for text in candidates)))

    async def _check(self, tests: CodeTests, text: str) -> Verdict:
        try:
            return await self._run(tests, text)
        except ConfigError:
            raise
        except Exception as exc:  # a verifier crash must not crash the graph
            logger.exception("code verification crashed")
            return Verdict.failure(f"verifier error: {exc!r}")

    async def _run(self, tests: CodeTests, text: str) -> Verdict:
        code = extract_code(text, entry_point=tests.entry_point)
        if not code.strip():
            return Verdict.failure("no code found")
        prompt = _runnable(tests.prompt)
        if _defines(code, tests.entry_point) or not tests.prompt:
            worker_prompt, program = prompt, code
        else:  # a bare body that continues the prompt's signature
            worker_prompt, program = "", tests.prompt + code
        payload = marshal.dumps((prompt, worker_prompt, program, tests.test, tests.entry_point))
        nonce = secrets.token_hex(16)
        stdin = len(payload).to_bytes(8, "big") + payload + nonce.encode()
        limits = replace(self.limits, wall_s=tests.timeout_s, cpu_s=tests.timeout_s)
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.setdefault(loop, asyncio.Semaphore(self.concurrency))
        async with semaphore:
            result = await run_python(_HARNESS, stdin=stdin, limits=limits, backend=self.backend)
        details = {
            "backend": result.backend,
            "duration_s": round(result.duration_s, 4),
            "exit_code": result.exit_code,
            "stderr": result.stderr[-2000:],
        }
        if result.timed_out:
            return Verdict.failure(f"timed out after {tests.timeout_s:g}s", **details)
        if result.output_exceeded:
            return Verdict.failure("output limit exceeded", **details)
        outcome = _outcome(result.stdout, nonce)
        if outcome is None or result.exit_code != 0:
            return Verdict.failure(
                f"the sandbox ended without a result (exit code {result.exit_code})", **details
            )
        if outcome[0] == "passed":
            return Verdict(passed=True, score=1.0, reason="passed all tests", details=details)
        return Verdict.failure(_reason(outcome, tests.timeout_s), **details)

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
fake result, close its stdout, signal or trace other processes, fork, use ``ctypes``, walk its
own stack, scan the garbage collector's objects or raw memory, read every descriptor, file,
variable and argument it can reach, or just loop and allocate. None of that may yield a pass,
harm the host, reach the tests or the nonce it is judged by, or stop the other candidates from
being checked.

How a check runs. The caller starts two sandboxes (:mod:`tts_graph.verifiers.sandbox`), joined
only by two pipes:

- The *worker* gets on stdin the prompt (trusted and public: imports, and helpers such as
  HumanEval's ``poly``), the candidate's code and the function's name, nothing else. It points
  its stdin at /dev/null and its stdout at stderr, runs the prompt and the candidate, then
  answers calls over its pipes. It is a fresh interpreter that never held the tests, the nonce
  or the harness's code: not in memory (it is not forked from a process that read them), nor in
  a descriptor, its environment, its argv or a file. Under bubblewrap it is PID 1 of a PID
  namespace of its own, on a tmpfs of its own, and (for a root caller) under a uid of its own:
  there is no other process it could name, signal or trace, and no file of the harness's to
  read. The seccomp filter (no ``ptrace``, ``process_vm_readv``, ``pidfd_getfd`` or
  ``perf_event_open``) is a second wall; it also refuses new namespaces and the memory no rlimit
  counts (``memfd_create``, System V shared memory and message queues).
- The *harness* gets the prompt, the tests and a random nonce on stdin. It never executes
  candidate code: it runs the tests itself, and the function they receive is a proxy that sends
  the arguments to the worker and returns its reply. Replies cross the pipe as ``marshal`` data,
  so only plain built-in values arrive (no subclass, no custom ``__eq__``); an exception the
  candidate raises is re-raised as the builtin of that name, except ``StopIteration`` and
  ``StopAsyncIteration``, which become a ``RuntimeError`` (as PEP 479 does for generators): a
  test that loops over ``map(candidate, ...)`` would otherwise end its loop early and pass. At
  the end the harness writes ``(nonce, outcome)`` to its stdout, which only the caller reads.

The caller decides: a pass needs the harness to exit with code 0, in time, within the output
limit, with a last stdout line that names this check's nonce and says "passed". What the
candidate prints goes to the verdict's details, never into the result. A worker that dies,
exits, or breaks the protocol during the tests makes the check fail even if the tests swallow
the error; how it ended (exit code, signal, CPU limit, output flood) is in the reason. Every
process of both sandboxes is reaped before the verdict is returned.

Residual risks:

- ``sandbox="unsafe-subprocess"`` isolates nothing: the worker runs as the caller's user and
  sees ``/proc``, so it can ``ptrace`` the harness, read the tests and the nonce and forge a
  pass, or reach files, the network and other processes, the caller's included. It runs only
  when named, for trusted code, and logs a warning.
- The candidate sees every argument the tests pass it: tests that pass the expected value (or
  anything derived from it) as an argument give it away.
- The harness decodes worker replies with ``marshal``, which is not hardened against malicious
  bytes; a crafted reply crashes the harness (a failed check) unless it exploits a
  memory-safety bug in CPython's unmarshaller.
- Tests are only as strong as their assertions: the proxy stops fake objects, not hard-coded
  answers to weak tests. Arguments and results must be marshal-able built-in values (true of
  HumanEval and MBPP; a bytearray arrives as bytes); arguments are copied, so in-place mutation
  by the candidate is not seen by the tests.
- Kernel exploits and timing side channels (such as how long a call takes) are out of scope.
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
import signal
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tts_graph._loops import LoopLocal
from tts_graph.errors import ConfigError
from tts_graph.verifiers.base import Problem, Verdict
from tts_graph.verifiers.sandbox import (
    SandboxLimits,
    SandboxName,
    SandboxResult,
    check_sandbox,
    start_python,
)

__all__ = ["CodeTests", "CodeVerifier", "extract_code"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodeTests:
    """Unit tests for one coding problem (the ``reference`` of its :class:`Problem`).

    ``test`` is HumanEval-style code that defines ``check(candidate)``; plain top-level
    ``assert entry_point(...) == ...`` lines (MBPP style) work too. ``prompt`` is the trusted
    code the candidate completes: prepended when the candidate is only a function body, executed
    before it otherwise (for imports and helpers), and available to the tests. Both ``test`` and
    ``prompt`` are trusted. ``test`` runs in a sandbox of its own and never reaches the
    candidate's process; ``prompt`` is public and runs in both. ``timeout_s`` is the
    wall-clock and CPU limit for the whole check.

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


# Framing and error text, shared by the worker and the harness.
_PROTOCOL = r"""
import marshal, os

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
"""

# Runs the candidate, in a sandbox of its own. Its stdin holds only what the candidate may see:
# the prompt, its own code, the function's name and the numbers of its two RPC descriptors.
_WORKER = (
    _PROTOCOL
    + r"""
def _serve():
    data = b""
    while chunk := os.read(0, 1 << 16):
        data += chunk
    prompt, program, entry, calls, replies = marshal.loads(data)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(2, 1)  # what the candidate prints is never read as a result
    os.close(null)
    import sys
    sys.stdout.reconfigure(line_buffering=True)  # the worker is killed, not flushed, at the end
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

_serve()
"""
)

_DIED = "the candidate's process died or closed its pipe"
_ENDED = "the candidate's process ended before the tests ran"

# Runs the tests, in another sandbox. Trusted: it never executes candidate code, and reaches the
# candidate only through the worker's pipes.
_HARNESS = (
    _PROTOCOL
    + f"_DIED = {_DIED!r}\n_ENDED = {_ENDED!r}\n"
    + r"""
import builtins

class _Gone(BaseException):
    # The worker died or broke the protocol; not an Exception, so tests cannot swallow it.
    pass

def _main():
    size = int.from_bytes(_read(0, 8), "big")
    prompt, test, entry, calls_w, replies_r = marshal.loads(_read(0, size))
    nonce = b""
    while chunk := os.read(0, 256):
        nonce += chunk
    ns = {"__name__": "__tests__"}
    try:
        exec(compile(prompt, "<prompt>", "exec"), ns)
        broken = None
    except BaseException as exc:
        broken = ("tests", type(exc).__name__, _text(exc))
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
            if cls is StopIteration or cls is StopAsyncIteration:
                # Raised into map(), zip(), filter() or iter(f, sentinel), it would end the
                # tests' loop early, as if every check in it had passed (PEP 479's reason).
                raise RuntimeError("the candidate raised %s: %s" % (reply[1], reply[2]))
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
    os.write(1, ("\n" + repr((nonce.decode(),) + outcome) + "\n").encode())
    os._exit(0)

_main()
"""
)

# How long a worker that closed its pipe may take to exit, so that the verdict can say how it
# ended; also how much longer than the harness a worker may live at most.
_GRACE_S = 1.0


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


def _how_it_ended(message: str, worker: SandboxResult) -> str:
    """What the worker's own end says about a pipe that closed under the harness."""
    if worker.output_exceeded:
        return "output limit exceeded"
    if worker.stopped or worker.timed_out:  # still running when the harness ended: no news
        return message
    sig = worker.signal
    # No one here sent it SIGKILL, and as PID 1 of its namespace under bubblewrap it cannot get
    # one from its own processes: it came from the kernel, at the hard CPU limit (SIGXCPU, the
    # soft one, does not reach a namespace's PID 1).
    if sig == signal.SIGXCPU or (sig == signal.SIGKILL and worker.sandbox == "bwrap"):
        return "CPU time limit exceeded"
    if sig is not None:
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = f"signal {sig}"
        return f"{message} ({name})"
    return f"{message} (exit code {worker.exit_code})"


class CodeVerifier:
    """Runs each candidate's code against :class:`CodeTests` in a sandbox (name ``"code"``).

    ``problem.reference`` must be a :class:`CodeTests`. At most ``concurrency`` checks run at
    once (default: the CPU count; each check uses two sandboxes). ``limits`` sets memory,
    processes, output and file size; the time limits come from :attr:`CodeTests.timeout_s`.
    Reasons include ``"passed all tests"``, ``"AssertionError in tests: ..."``, ``"timed out
    after 10s"``, ``"memory limit exceeded"``, ``"output limit exceeded"`` and ``"no code
    found"``.

    ``sandbox`` is ``"auto"`` or ``"bwrap"`` (bubblewrap; without a usable one, construction or
    the first check raises :class:`~tts_graph.errors.ConfigError` saying how to install it) or
    ``"unsafe-subprocess"``, which isolates nothing and is only for trusted code: no default,
    spec or CLI option picks it unless it is named.

    >>> import asyncio
    >>> from tts_graph.verifiers.base import Problem
    >>> p = Problem("inc", reference=CodeTests(test="assert inc(1) == 2", entry_point="inc"))
    >>> [v.passed for v in asyncio.run(CodeVerifier(concurrency=2).verify(
    ...     p, ["def inc(x):\\n    return x + 1", "def inc(x):\\n    return x"]))]
    [True, False]
    """

    name = "code"
    extractor = "code"  # a candidate's answer is its program (see resolve_extractor)

    def __init__(
        self,
        *,
        limits: SandboxLimits = SandboxLimits(),
        concurrency: int | None = None,
        sandbox: SandboxName = "auto",
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        check_sandbox(sandbox)
        self.limits = limits
        self.sandbox: SandboxName = sandbox
        self.concurrency = concurrency or os.cpu_count() or 1
        self._semaphores = LoopLocal(lambda: asyncio.Semaphore(self.concurrency))

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]:
        """One verdict per candidate, in order; a hostile or broken candidate just fails.

        Raises :class:`~tts_graph.errors.ConfigError` if ``problem.reference`` is not
        :class:`CodeTests` (a wiring mistake, not a bad candidate), or if the sandbox cannot run.
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
        nonce = secrets.token_hex(16)
        limits = replace(self.limits, wall_s=tests.timeout_s, cpu_s=tests.timeout_s)
        async with self._semaphores.get():
            harness, worker = await self._sandboxed(
                (worker_prompt, program, tests.entry_point),
                (prompt, tests.test, tests.entry_point),
                nonce,
                limits,
            )
        details = {
            "sandbox": harness.sandbox,
            "duration_s": round(harness.duration_s, 4),
            "exit_code": harness.exit_code,
            "worker_exit_code": worker.exit_code,
            "stderr": (worker.stderr + harness.stderr)[-2000:],
        }
        if harness.timed_out:
            return Verdict.failure(f"timed out after {tests.timeout_s:g}s", **details)
        if harness.output_exceeded:
            return Verdict.failure("output limit exceeded", **details)
        outcome = _outcome(harness.stdout, nonce)
        if outcome is None or harness.exit_code != 0:
            return Verdict.failure(
                f"the sandbox ended without a result (exit code {harness.exit_code})", **details
            )
        if outcome[0] == "passed":
            return Verdict(passed=True, score=1.0, reason="passed all tests", details=details)
        if outcome[0] == "died" and outcome[2] in (_DIED, _ENDED):
            outcome = ("died", "", _how_it_ended(outcome[2], worker))
        return Verdict.failure(_reason(outcome, tests.timeout_s), **details)

    async def _sandboxed(
        self,
        worker_input: tuple[str, str, str],
        harness_input: tuple[str, str, str],
        nonce: str,
        limits: SandboxLimits,
    ) -> tuple[SandboxResult, SandboxResult]:
        # The candidate runs in a sandbox of its own, started from here: its process never holds
        # the tests or the nonce, not even in memory inherited from a fork, and shares no PID
        # namespace, filesystem or descriptor with the harness except its two RPC pipes.
        calls_r, calls_w = os.pipe()
        replies_r, replies_w = os.pipe()
        ours = {calls_r, calls_w, replies_r, replies_w}

        def close(*fds: int) -> None:  # each exactly once: a reused number may be someone else's
            for fd in fds:
                if fd in ours:
                    ours.discard(fd)
                    os.close(fd)

        worker_stdin = marshal.dumps((*worker_input, calls_r, replies_w))
        payload = marshal.dumps((*harness_input, calls_w, replies_r))
        harness_stdin = len(payload).to_bytes(8, "big") + payload + nonce.encode()
        try:
            async with start_python(
                _WORKER,
                stdin=worker_stdin,
                limits=replace(limits, wall_s=limits.wall_s + _GRACE_S),
                sandbox=self.sandbox,
                pass_fds=(calls_r, replies_w),
            ) as worker:
                close(calls_r, replies_w)
                async with start_python(
                    _HARNESS,
                    stdin=harness_stdin,
                    limits=limits,
                    sandbox=self.sandbox,
                    pass_fds=(calls_w, replies_r),
                ) as run:
                    close(calls_w, replies_r)
                    harness = await run.wait()
                outcome = _outcome(harness.stdout, nonce)
                # A worker whose pipe closed is likely exiting: its exit status explains the
                # verdict. Otherwise the tests are over and it has nothing left to do.
                died = (
                    outcome is not None and outcome[0] == "died" and outcome[2] in (_DIED, _ENDED)
                )
                return harness, await worker.wait(stop_after=_GRACE_S if died else 0)
        finally:
            close(*list(ours))

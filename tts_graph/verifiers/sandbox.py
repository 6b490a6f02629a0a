"""Run untrusted Python with limits, inside bubblewrap.

>>> import asyncio
>>> asyncio.run(run_python("print(6 * 7)")).stdout
'42\\n'

Every run starts ``python -I -S -B`` (the interpreter behind ``sys.executable``; no site-packages,
no ``PYTHON*`` variables) with a fresh empty working directory. A short trusted prologue closes
every inherited descriptor except stdin, stdout, stderr and the ``pass_fds`` the caller named,
sets the resource limits, then executes the code as ``__main__``. The caller reads at most
``output_bytes`` of stdout and stderr together, and kills the run on a wall-clock timeout or when
the output cap is hit. Under bubblewrap every process a run starts is reaped before its result
is returned.

Choosing the sandbox
--------------------
``sandbox="auto"`` (the default) and ``"bwrap"`` run the code under bubblewrap and raise
:class:`~tts_graph.errors.ConfigError` when bubblewrap is missing or cannot run here, saying how
to install it (``apt-get install bubblewrap``, or the project's ``scripts/setup.sh``). Nothing
falls back silently. ``sandbox="unsafe-subprocess"`` runs the code in a plain subprocess, as the
caller's user: only a caller that names it gets it.

What each sandbox actually enforces
-----------------------------------
**bwrap** (bubblewrap; probed once per process by running a program inside it):

- no network (``--unshare-net``: only a private loopback), no IPC/UTS sharing;
- a read-only view of ``/usr`` (and the ``/lib*``, ``/bin`` links), the interpreter's prefix,
  two files of ``/etc`` and a minimal ``/dev``; the only writable place is a ``file_size``-bytes
  tmpfs at ``/tmp`` (the working directory), private to the run; no ``/proc``, ``/sys`` or home
  directories;
- its own PID namespace in which the program is PID 1 (``--unshare-pid --as-pid-1``): when it
  ends or is killed, every process it started dies with it, including detached (``setsid``)
  ones, and other processes on the host have no PID it could name. bubblewrap itself reaps the
  program (with its own init process in between, bubblewrap would exit first and leave that init
  as a zombie for the host's PID 1 to reap); to stop a run, the program is killed first and
  bubblewrap then exits by itself;
- a seccomp filter (x86-64 and aarch64) that refuses ``ptrace``, ``process_vm_readv/writev``,
  ``pidfd_getfd`` and ``perf_event_open``, so one sandboxed process cannot read or steer
  another's memory or descriptors; new namespaces (``unshare``, ``setns``, ``clone`` with a
  ``CLONE_NEW*`` flag), so the code gets no capabilities in a user namespace of its own (no
  mounts, no more of the kernel to attack); and memory outside every rlimit (``memfd_create``, System V shared memory and message
  queues), so a run cannot hold more of the host's memory than its limits allow;
- rlimits on CPU seconds, address space, file size, open files and core size (0), and
  ``RLIMIT_NPROC``. The kernel never applies RLIMIT_NPROC to root, so when the caller is root
  the prologue first drops to a random, otherwise unused uid (all capabilities go with it);
  RLIMIT_NPROC then counts exactly that run's processes and threads. For a non-root caller
  bubblewrap makes a user namespace (nested ones disabled), where the count is also per run.
  Memory is limited per process: a run can hold up to ``max_processes * memory_mb`` in the worst
  case (no cgroups are used).

**unsafe-subprocess** (only when named; a warning is logged once): the same prologue and limits
except RLIMIT_NPROC, in a temporary directory, with a minimal environment, in its own session.
It does **not** isolate the network, the filesystem or other processes: the code can read and
write whatever the caller can (as root: every file), signal the caller, and raise its own limits
as root. After the run its process group and the stray processes that still carry the run's
environment marker are killed; a process that re-executes itself with a clean environment
escapes this sweep, and the processes the program itself started are reaped by the host's init
once killed, not by this module (the program itself is). Use it for trusted code only.

Linux only. Exit codes: a signal shows as ``-N`` under unsafe-subprocess and as ``128 + N`` under
bubblewrap (which reports its child's death that way); :attr:`SandboxResult.signal` decodes both.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import logging
import math
import os
import platform
import re
import secrets
import shutil
import signal
import struct
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from tts_graph.errors import ConfigError

__all__ = [
    "SandboxLimits",
    "SandboxName",
    "SandboxResult",
    "SandboxRun",
    "bwrap_available",
    "check_sandbox",
    "run_python",
    "start_python",
]

logger = logging.getLogger(__name__)

#: Which sandbox runs the code: ``"auto"`` and ``"bwrap"`` use bubblewrap (and raise
#: :class:`~tts_graph.errors.ConfigError` without it); ``"unsafe-subprocess"`` is an unisolated
#: subprocess, used only when named.
SandboxName = Literal["auto", "bwrap", "unsafe-subprocess"]
UNSAFE_SUBPROCESS: Literal["unsafe-subprocess"] = "unsafe-subprocess"

_INSTALL_HINT = (
    "install bubblewrap (`apt-get install bubblewrap`, or run the project's scripts/setup.sh), "
    f"or pass sandbox={UNSAFE_SUBPROCESS!r} to run the code without any isolation, as this "
    "user (only for trusted code)"
)

# Runs first inside the child, before any untrusted code. Descriptors the caller did not name
# are closed first (the caller's pipes must never reach the code); limits are set with
# hard == soft so the code cannot raise them back; for a root caller under bubblewrap, root is
# dropped.
_PROLOGUE = """\
import os, resource as r, sys
_cfg = [int(x) for x in sys.argv[1].split(",")]
_src = sys.argv[2]
del sys.argv[1:]
_lo = 3
for _fd in sorted(_cfg[7:]):
    os.closerange(_lo, _fd)
    _lo = _fd + 1
os.closerange(_lo, os.sysconf("SC_OPEN_MAX"))
if _cfg[6] >= 0:
    os.setgroups([]); os.setgid(_cfg[6]); os.setuid(_cfg[6])
for _k, _v in zip((r.RLIMIT_CPU, r.RLIMIT_AS, r.RLIMIT_NPROC, r.RLIMIT_FSIZE, r.RLIMIT_CORE,
                   r.RLIMIT_NOFILE), _cfg):
    if _v >= 0:
        r.setrlimit(_k, (_v, _v + 1 if _k == r.RLIMIT_CPU else _v))
del os, r, sys, _cfg, _k, _v, _lo
exec(compile(_src, "<sandbox>", "exec"), {"__name__": "__main__"})
"""

_ENV_MARKER = "TTS_SANDBOX_RUN"
_MAX_FDS = 256
# A random uid from a range no distribution allocates, so RLIMIT_NPROC counts only this run.
_UID_RANGE = (1 << 30, 1 << 31)
_REAP_S = 2.0  # how long a killed run may take to exit before its process group is killed


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one sandboxed run.

    ``cpu_s`` is CPU seconds per process (SIGXCPU, then SIGKILL a second later; the program
    itself, being PID 1 of its namespace under bubblewrap, only gets the SIGKILL); ``wall_s`` is
    the wall-clock time of the whole run; ``memory_mb`` is the address-space limit per process;
    ``max_processes`` counts processes and threads (bubblewrap only); ``output_bytes`` caps
    stdout + stderr together; ``file_size`` caps one written file and, under bubblewrap, the
    whole writable tmpfs.

    >>> SandboxLimits(wall_s=2, memory_mb=256).cpu_s
    5.0
    """

    cpu_s: float = 5.0
    wall_s: float = 10.0
    memory_mb: int = 512
    max_processes: int = 16
    output_bytes: int = 64 * 1024
    file_size: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        bad = [f"{k}={v}" for k, v in vars(self).items() if not v > 0]
        if bad:
            raise ConfigError(f"sandbox limits must be positive: {', '.join(bad)}")


@dataclass(frozen=True)
class SandboxResult:
    """What a sandboxed run did. A signal shows in ``exit_code`` as ``-N`` (unsafe-subprocess) or
    ``128 + N`` (bubblewrap); ``timed_out`` and ``output_exceeded`` runs were killed, as were
    ``stopped`` ones (the caller ended them, see :meth:`SandboxRun.wait`).

    Output is cut at ``output_bytes`` and decoded leniently (invalid UTF-8 becomes U+FFFD).

    >>> r = SandboxResult(0, "hi\\n", "", timed_out=False, output_exceeded=False,
    ...                   duration_s=0.02, sandbox="bwrap")
    >>> r.ok, r.signal
    (True, None)
    """

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    output_exceeded: bool
    duration_s: float
    sandbox: Literal["bwrap", "unsafe-subprocess"]
    stopped: bool = False

    @property
    def ok(self) -> bool:
        """Exited with code 0, in time, within the output limit."""
        return self.exit_code == 0 and not (self.timed_out or self.output_exceeded or self.stopped)

    @property
    def signal(self) -> int | None:
        """The signal that ended the program, if one did. Under bubblewrap an exit code above 128
        reads as a signal, since bubblewrap reports a signal that way.

        >>> SandboxResult(139, "", "", False, False, 0.1, "bwrap").signal
        11
        """
        code = self.exit_code
        if code is None:
            return None
        if self.sandbox == "bwrap":
            return code - 128 if 128 < code < 128 + 65 else None
        return -code if code < 0 else None


_bwrap_state: tuple[bool, str | None, str] | None = None  # (usable, path, why not): probed once
_warned = False


def _validate(sandbox: str) -> None:
    choices = get_args(SandboxName)
    if sandbox not in choices:
        hint = (
            f" (it was renamed {UNSAFE_SUBPROCESS!r}: it does not isolate anything)"
            if sandbox == "fallback"
            else ""
        )
        raise ConfigError(
            f"unknown sandbox {sandbox!r}{hint}; choose one of: {', '.join(map(repr, choices))}"
        )


def _unusable(why: str) -> ConfigError:
    return ConfigError(
        f"the code sandbox needs bubblewrap, which cannot run here ({why}): {_INSTALL_HINT}"
    )


def check_sandbox(sandbox: SandboxName) -> None:
    """Raise :class:`~tts_graph.errors.ConfigError` now if ``sandbox`` is not a valid name or
    surely cannot work here: bubblewrap missing from ``PATH``, or found unusable by an earlier
    probe. Cheap (runs nothing); a ``bwrap`` that is installed but cannot run is reported by the
    first run.

    >>> check_sandbox("unsafe-subprocess")  # named, so always allowed
    >>> check_sandbox("docker")
    Traceback (most recent call last):
    ...
    tts_graph.errors.ConfigError: unknown sandbox 'docker'; choose one of: 'auto', 'bwrap', 'unsafe-subprocess'
    """
    _validate(sandbox)
    if sandbox == UNSAFE_SUBPROCESS:
        return
    if _bwrap_state is not None and not _bwrap_state[0]:
        raise _unusable(_bwrap_state[2])
    if _bwrap_state is None and shutil.which("bwrap") is None:
        raise _unusable("bwrap was not found on PATH")


async def bwrap_available() -> bool:
    """Whether bubblewrap can actually run a sandbox here (probed once, then cached).

    ``bwrap`` may be installed and still unusable (a container without user namespaces), so the
    probe runs a trivial program inside it instead of only looking for the binary.

    >>> import asyncio
    >>> isinstance(asyncio.run(bwrap_available()), bool)
    True
    """
    global _bwrap_state
    if _bwrap_state is None:
        path = shutil.which("bwrap")
        if path is None:
            ok, why = False, "bwrap was not found on PATH"
        else:
            async with _started("print('ok')", None, SandboxLimits(), path, ()) as run:
                probe = await run.wait()
            ok = probe.exit_code == 0 and probe.stdout == "ok\n"
            why = f"the bwrap probe failed (exit code {probe.exit_code}): {probe.stderr[-300:]!r}"
        _bwrap_state = (ok, path, "" if ok else why)
        if not ok:
            logger.warning("bubblewrap cannot run here, so the code sandbox is unusable: %s", why)
    return _bwrap_state[0]


def _warn_unsafe() -> None:
    global _warned
    if not _warned:
        _warned = True
        logger.warning(
            "sandbox=%r: code runs WITHOUT network, filesystem or process isolation, as this "
            "user. Use it for trusted code only; %s.",
            UNSAFE_SUBPROCESS,
            "install bubblewrap to isolate untrusted code",
        )


async def run_python(
    code: str,
    *,
    stdin: str | bytes | None = None,
    limits: SandboxLimits = SandboxLimits(),
    sandbox: SandboxName = "auto",
) -> SandboxResult:
    """Run ``code`` as a Python program under ``limits`` and return what happened.

    ``sandbox`` is ``"auto"``/``"bwrap"`` (bubblewrap, else
    :class:`~tts_graph.errors.ConfigError` saying how to install it) or ``"unsafe-subprocess"``
    (no isolation; only when named). Never raises for what the code does: crashes, timeouts and
    floods are in the result.

    >>> import asyncio
    >>> r = asyncio.run(run_python("import time; time.sleep(5)", limits=SandboxLimits(wall_s=0.5)))
    >>> r.timed_out
    True
    """
    async with start_python(code, stdin=stdin, limits=limits, sandbox=sandbox) as run:
        return await run.wait()


@contextlib.asynccontextmanager
async def start_python(
    code: str,
    *,
    stdin: str | bytes | None = None,
    limits: SandboxLimits = SandboxLimits(),
    sandbox: SandboxName = "auto",
    pass_fds: Sequence[int] = (),
) -> AsyncIterator[SandboxRun]:
    """Start ``code`` like :func:`run_python` and hand back the running program.

    Use it to connect sandboxed programs to each other: the program inherits ``pass_fds`` at the
    same numbers (every other descriptor is closed). The caller keeps its own copies, and should
    close them once inside the block, or a pipe's other end never sees EOF. Leaving the block
    kills the program if it still runs and reaps every process of the run.

    >>> import asyncio, os
    >>> async def pipe_through_a_sandbox():
    ...     r, w = os.pipe()
    ...     async with start_python(f"import os; os.write({w}, b'hi')", pass_fds=[w]) as run:
    ...         os.close(w)
    ...         await run.wait()
    ...     with os.fdopen(r, "rb") as f:
    ...         return f.read()
    >>> asyncio.run(pipe_through_a_sandbox())
    b'hi'
    """
    _validate(sandbox)
    bwrap: str | None = None
    if sandbox == UNSAFE_SUBPROCESS:
        _warn_unsafe()
    else:
        usable = await bwrap_available()
        state = _bwrap_state
        bwrap = state[1] if state is not None and usable else None
        if bwrap is None:  # never run unisolated unless that was asked for by name
            raise _unusable(state[2] if state is not None else "bwrap was not found on PATH")
    async with _started(code, stdin, limits, bwrap, tuple(pass_fds)) as run:
        yield run


class SandboxRun:
    """A sandboxed program that has started (see :func:`start_python`)."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        *,
        stdin: bytes | None,
        limits: SandboxLimits,
        bwrap: str | None,
        info_fd: int | None,
        marker: bytes,
        start: float,
    ) -> None:
        self._proc = proc
        self._limits = limits
        self._bwrap = bwrap
        self._marker = marker
        self._start = start
        self._bufs = (bytearray(), bytearray())
        self._overflow = asyncio.Event()
        self._result: SandboxResult | None = None
        self._ending = asyncio.Lock()
        self._io = asyncio.gather(
            self._pump(proc.stdout, self._bufs[0]),
            self._pump(proc.stderr, self._bufs[1]),
            self._feed(stdin),
        )
        # bwrap reports the program's host PID here: a stop must kill the program before bwrap.
        self._init_pid = (
            asyncio.ensure_future(_read_child_pid(info_fd)) if info_fd is not None else None
        )
        self._watcher = asyncio.ensure_future(self._watch())

    async def _pump(self, stream: asyncio.StreamReader | None, buf: bytearray) -> None:
        assert stream is not None
        while chunk := await stream.read(65536):
            room = self._limits.output_bytes - len(self._bufs[0]) - len(self._bufs[1])
            buf += chunk[: max(room, 0)]
            if len(chunk) > room:
                self._overflow.set()
            # keep draining after the kill: a paused pipe would never see EOF and never close

    async def _feed(self, stdin: bytes | None) -> None:
        pipe = self._proc.stdin
        if stdin is None or pipe is None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            pipe.write(stdin)
            await pipe.drain()
            pipe.close()

    async def wait(self, *, stop_after: float | None = None) -> SandboxResult:
        """Wait until the program exits, then return what happened (every process of the run
        reaped).

        The run enforces its limits whether or not anyone waits: it is killed when its
        wall-clock limit passes (``timed_out``) or its output exceeds the cap
        (``output_exceeded``). With ``stop_after``, it is also killed if it still runs that many
        seconds from now (``stopped``; ``stop_after=0`` stops it now). Every call returns the
        same result.
        """
        if self._result is not None:
            return self._result
        if stop_after is None:
            return await asyncio.shield(self._watcher)
        if stop_after > 0:
            await asyncio.wait((self._watcher,), timeout=stop_after)
        if self._result is not None:
            return self._result
        result = await self._end("stopped")
        self._watcher.cancel()
        await asyncio.wait((self._watcher,))
        return result

    async def _watch(self) -> SandboxResult:
        exited = asyncio.ensure_future(_exited(self._proc))
        overflow = asyncio.ensure_future(self._overflow.wait())
        try:
            done, _ = await asyncio.wait(
                (exited, overflow),
                timeout=self._start + self._limits.wall_s - time.monotonic(),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            exited.cancel()
            overflow.cancel()
            await asyncio.wait((exited, overflow))
        return await self._end(
            "exited" if exited in done else "overflow" if overflow in done else "timed out"
        )

    async def _end(self, why: str) -> SandboxResult:
        async with self._ending:
            if self._result is not None:
                return self._result
            if why == "stopped" and _has_exited(self._proc.pid):
                why = "exited"
            exceeded = self._overflow.is_set()
            if why != "exited" or exceeded:
                await self._kill()
            if self._bwrap is None:  # stray processes: the group, then the marker sweep
                _kill_group(self._proc.pid)
                await asyncio.to_thread(_sweep, self._marker)
            done, _ = await asyncio.wait((self._io,), timeout=_REAP_S)
            if not done:  # only an unsafe-subprocess process that escaped both kills
                logger.warning("a sandboxed process escaped and holds its output pipe open")
            elif self._io.exception() is not None:
                logger.warning("talking to a sandboxed program failed: %r", self._io.exception())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._proc.wait(), _REAP_S)
            await self._forget_init_pid()
            self._result = SandboxResult(
                exit_code=self._proc.returncode,
                stdout=self._bufs[0].decode("utf-8", "replace"),
                stderr=self._bufs[1].decode("utf-8", "replace"),
                timed_out=why == "timed out" and not exceeded,
                output_exceeded=exceeded,
                duration_s=time.monotonic() - self._start,
                sandbox="unsafe-subprocess" if self._bwrap is None else "bwrap",
                stopped=why == "stopped" and not exceeded,
            )
            return self._result

    async def _forget_init_pid(self) -> None:
        # Its reader must be gone before the caller closes (and the process reuses) its descriptor.
        if self._init_pid is not None:
            self._init_pid.cancel()
            await asyncio.wait((self._init_pid,))

    async def _kill(self) -> None:
        proc = self._proc
        if self._bwrap is None or self._init_pid is None:
            _kill_group(proc.pid)
            return
        if proc.returncode is not None:
            return
        try:
            pid = await asyncio.wait_for(asyncio.shield(self._init_pid), _REAP_S)
        except TimeoutError:
            pid = None
        # Killing bwrap first would orphan the program (--die-with-parent kills it, but nobody
        # here can reap it): kill the program, which bwrap then reaps before it exits.
        if pid is not None:
            _kill_child(pid, parent=proc.pid)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_exited(proc), _REAP_S)
                return
        logger.debug("killing bubblewrap itself: its program's PID was not known")
        _kill_group(proc.pid)


@contextlib.asynccontextmanager
async def _started(
    code: str,
    stdin: str | bytes | None,
    limits: SandboxLimits,
    bwrap: str | None,
    pass_fds: tuple[int, ...],
) -> AsyncIterator[SandboxRun]:
    drop_uid = -1
    if bwrap is not None and os.geteuid() == 0:
        drop_uid = secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0]) + _UID_RANGE[0]
    nproc = limits.max_processes if bwrap is not None else -1
    cfg = ",".join(
        map(
            str,
            (
                math.ceil(limits.cpu_s),
                limits.memory_mb * 1024 * 1024,
                nproc,
                limits.file_size,
                0,
                _MAX_FDS,
                drop_uid,
                *pass_fds,
            ),
        )
    )
    python_cmd = [_python(), "-I", "-S", "-B", "-c", _PROLOGUE, cfg, code]
    token = secrets.token_hex(16)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    tmp: tempfile.TemporaryDirectory[str] | None = None
    ours: list[int] = []  # descriptors of ours the child inherits; closed once it has them
    info_r: int | None = None
    run: SandboxRun | None = None
    try:
        if bwrap is None:
            tmp = tempfile.TemporaryDirectory(prefix="tts-sandbox-", ignore_cleanup_errors=True)
            cwd, argv = tmp.name, python_cmd
            env.update(HOME=tmp.name, **{_ENV_MARKER: token})
        else:
            seccomp_fd: int | None = None
            program = _seccomp_program()
            if program is not None:
                seccomp_fd, write_end = os.pipe()
                ours.append(seccomp_fd)
                os.write(write_end, program)  # tiny: fits in the pipe buffer
                os.close(write_end)
            info_r, info_w = os.pipe()
            ours.append(info_w)
            cwd = "/"
            argv = [*_bwrap_argv(bwrap, limits, env, seccomp_fd, info_w), *python_cmd]
        start = time.monotonic()
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
            pass_fds=(*pass_fds, *ours),
            start_new_session=True,  # one process group to kill
        )
        for fd in ours:
            os.close(fd)
        ours.clear()
        run = SandboxRun(
            proc,
            stdin=stdin.encode() if isinstance(stdin, str) else stdin,
            limits=limits,
            bwrap=bwrap,
            info_fd=info_r,
            marker=f"{_ENV_MARKER}={token}".encode(),
            start=start,
        )
        yield run
    finally:
        try:
            if run is not None:
                try:
                    await run.wait(stop_after=0)
                finally:
                    await run._forget_init_pid()
        finally:
            for fd in ours:
                os.close(fd)
            if info_r is not None:
                os.close(info_r)
            if tmp is not None:
                tmp.cleanup()


async def _read_child_pid(fd: int) -> int | None:
    """The ``child-pid`` that bwrap writes to its ``--info-fd`` (None if it never does)."""
    os.set_blocking(fd, False)
    data = b""
    while True:
        await _readable(fd)
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            continue
        data += chunk
        found = re.search(rb'"child-pid"\s*:\s*(\d+)\s*[,}]', data)
        if found:
            return int(found[1])
        if not chunk or len(data) > 65536:
            return None


def _has_exited(pid: int) -> bool:
    try:  # WNOWAIT: look without reaping, which stays asyncio's job
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # already reaped
        return True


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (2nd field) may hold spaces and parentheses: split after the last ')'.
    fields = stat.rsplit(b")", 1)[-1].split()
    return int(fields[1]) if len(fields) > 1 else None


def _kill_child(pid: int, *, parent: int) -> None:
    # The PID came from bwrap, which may have reaped the program by now: act only on a process
    # that is still bwrap's child (a pidfd pins the process while its parent is checked).
    pidfd = None
    with contextlib.suppress(OSError):
        pidfd = os.pidfd_open(pid)
    try:
        if _parent_of(pid) != parent:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if pidfd is not None:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
    finally:
        if pidfd is not None:
            os.close(pidfd)


def _python() -> str:
    return os.path.realpath(sys.executable)


@functools.cache
def _bwrap_fs_args() -> tuple[str, ...]:
    args = ["--ro-bind", "/usr", "/usr", "--dev", "/dev"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for extra in ("/etc/ld.so.cache", "/etc/localtime"):
        args += ["--ro-bind-try", extra, extra]
    roots = {os.path.realpath(sys.base_prefix), os.path.dirname(os.path.dirname(_python()))}
    made: set[str] = set()
    for root in sorted(roots):
        if (
            root == "/usr"
            or root.startswith("/usr/")
            or any(root.startswith(r + "/") for r in roots)
        ):
            continue
        # bwrap copies the host's modes for parent directories it creates (/root is 0700), which
        # would lock out the unprivileged uid the code runs as: create them world-traversable.
        parts = root.strip("/").split("/")
        for i in range(1, len(parts)):
            parent = "/" + "/".join(parts[:i])
            if parent not in made:
                made.add(parent)
                args += ["--perms", "0755", "--dir", parent]
        args += ["--ro-bind", root, root]
    return tuple(args)


# Syscalls the seccomp filter refuses, by architecture: (AUDIT_ARCH, {name: number}).
_SYSCALLS = {
    "x86_64": (0xC000003E, {
        "ptrace": 101, "perf_event_open": 298, "process_vm_readv": 310, "process_vm_writev": 311,
        "pidfd_getfd": 438, "unshare": 272, "setns": 308, "memfd_create": 319, "shmget": 29,
        "msgget": 68, "clone": 56, "clone3": 435,
    }),
    "aarch64": (0xC00000B7, {
        "ptrace": 117, "perf_event_open": 241, "process_vm_readv": 270, "process_vm_writev": 271,
        "pidfd_getfd": 438, "unshare": 97, "setns": 268, "memfd_create": 279, "shmget": 194,
        "msgget": 186, "clone": 220, "clone3": 435,
    }),
}  # fmt: skip
# clone() flags that make a namespace (NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET).
_CLONE_NEW_NAMESPACES = 0x7E020000


@functools.cache
def _seccomp_program() -> bytes | None:
    """Classic BPF for seccomp (x86-64 and aarch64; other architectures run without it).

    Refused with EPERM: the calls that let one process read or steer another (``ptrace``,
    ``process_vm_readv/writev``, ``pidfd_getfd``, ``perf_event_open``); new namespaces
    (``unshare``, ``setns``, ``clone`` with a ``CLONE_NEW*`` flag), where a user namespace would
    give the code capabilities (mounts) and more of the kernel to attack; and memory that no rlimit counts
    (``memfd_create``, System V shared memory and message queues), which would let a run hold
    any amount of the host's memory. ``clone3`` passes its flags in memory a filter cannot read:
    it answers ENOSYS, on which the C library falls back to ``clone`` (threads, ``fork``).
    """
    if platform.machine() not in _SYSCALLS:
        return None
    audit_arch, numbers = _SYSCALLS[platform.machine()]
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, deny, enosys = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
    refused = [n for name, n in numbers.items() if name not in ("clone", "clone3")]
    # (opcode, jump-if-true label, jump-if-false label, k); a label is the name of an
    # instruction below, None the next one.
    prog: list[tuple[int, str | None, str | None, int]] = [
        (ld, None, None, 4),  # seccomp_data.arch
        (jeq, None, "deny", audit_arch),
        (ld, None, None, 0),  # seccomp_data.nr
        (jge, "deny", None, 0x40000000),  # the x32 ABI
        *((jeq, "deny", None, n) for n in refused),
        (jeq, "enosys", None, numbers["clone3"]),
        (jeq, "clone", None, numbers["clone"]),
        (ret, None, None, allow),
        (ld, None, None, 16),  # "clone": the low half of args[0], its flags
        (jset, "deny", None, _CLONE_NEW_NAMESPACES),
        (ret, None, None, allow),
        (ret, None, None, deny),  # "deny"
        (ret, None, None, enosys),  # "enosys"
    ]
    at = {"clone": len(prog) - 5, "deny": len(prog) - 2, "enosys": len(prog) - 1}

    def offset(i: int, label: str | None) -> int:
        return 0 if label is None else at[label] - i - 1

    return b"".join(
        struct.pack("=HBBI", op, offset(i, jt), offset(i, jf), k)
        for i, (op, jt, jf, k) in enumerate(prog)
    )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _sweep(marker: bytes) -> None:
    # unsafe-subprocess only: kill leftovers that left the process group but kept the marker.
    for _ in range(5):  # a dying fork loop can add processes between scans
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker not in f.read():
                        continue
                os.kill(int(entry), signal.SIGKILL)
                found = True
            except OSError:
                continue
        if not found:
            return


async def _exited(proc: asyncio.subprocess.Process) -> None:
    # Python 3.11's Process.wait() also waits for every pipe to close, which a detached grandchild
    # can delay forever; a pidfd becomes readable when the process itself exits.
    try:
        pidfd = os.pidfd_open(proc.pid)
    except ProcessLookupError:  # already exited and reaped
        return
    except (AttributeError, OSError):  # no pidfd (not Linux >= 5.3)
        await proc.wait()
        return
    try:
        await _readable(pidfd)
    finally:
        os.close(pidfd)


async def _readable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _bwrap_argv(
    bwrap: str, limits: SandboxLimits, env: dict[str, str], seccomp_fd: int | None, info_fd: int
) -> list[str]:
    argv = [bwrap, *_bwrap_fs_args()]
    argv += ["--perms", "1777", "--size", str(limits.file_size), "--tmpfs", "/tmp"]
    # bwrap's own / and /dev are unbounded tmpfs that a non-root caller's sandbox user owns.
    argv += ["--remount-ro", "/", "--remount-ro", "/dev"]
    argv += ["--chdir", "/tmp", "--clearenv", "--setenv", "HOME", "/tmp"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    argv += ["--unshare-pid", "--as-pid-1", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    argv += ["--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    argv += ["--info-fd", str(info_fd)]
    if os.geteuid() == 0:  # CAP_SETUID/SETGID only for the prologue's drop to a random uid
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--disable-userns"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return argv

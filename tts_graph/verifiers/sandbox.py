"""Run untrusted Python with limits: inside bubblewrap when it works, in a plain subprocess otherwise.

>>> import asyncio
>>> asyncio.run(run_python("print(6 * 7)")).stdout
'42\\n'

Every run starts ``python -I -S -B`` (the interpreter behind ``sys.executable``; no site-packages,
no ``PYTHON*`` variables) with a fresh empty working directory. A short trusted prologue sets the
resource limits, then executes the code as ``__main__``. The caller reads at most
``output_bytes`` of stdout and stderr together, and kills the whole run (its process group, and
under bubblewrap its PID namespace) on a wall-clock timeout or when the output cap is hit.

What each backend actually enforces
-----------------------------------
**bubblewrap** (used when ``bwrap`` runs a probe program successfully; probed once per process):

- no network (``--unshare-net``: only a private loopback), no IPC/UTS sharing;
- a read-only view of ``/usr`` (and the ``/lib*``, ``/bin`` links), the interpreter's prefix,
  two files of ``/etc`` and a minimal ``/dev``; the only writable place is a ``file_size``-bytes
  tmpfs at ``/tmp`` (the working directory); no ``/proc``, ``/sys`` or home directories;
- its own PID namespace (``--unshare-pid --die-with-parent``): when the run ends or is killed,
  every process it started dies with it, including detached (``setsid``) ones;
- a seccomp filter (x86-64 and aarch64) that refuses ``ptrace``, ``process_vm_readv/writev`` and
  ``pidfd_getfd``, so one sandboxed process cannot read or steer another's memory or descriptors;
- rlimits on CPU seconds, address space, file size, open files and core size (0), and
  ``RLIMIT_NPROC``. The kernel never applies RLIMIT_NPROC to root, so when the caller is root
  the prologue first drops to a random, otherwise unused uid (all capabilities go with it);
  RLIMIT_NPROC then counts exactly that run's processes and threads. For a non-root caller
  bubblewrap makes a user namespace (nested ones disabled), where the count is also per run and
  includes bubblewrap's own init. Memory is limited per process: a run can hold up to
  ``max_processes * memory_mb`` in the worst case (no cgroups are used).

**fallback** (no usable bubblewrap; a warning is logged once): the same prologue and limits except
RLIMIT_NPROC, in a temporary directory, with a minimal environment, in its own session. It does
**not** isolate the network or the filesystem (the code can read and write whatever the caller
can), does not cap the number of processes, and as root the code can raise its own limits. After
the run, stray processes that still carry the run's environment marker are killed; a process
that re-executes itself with a clean environment escapes this sweep. Use it for trusted code or
to develop on machines without bubblewrap, not for untrusted model output.

Linux only. Exit codes: a signal shows as ``-N`` under the fallback and as ``128 + N`` under
bubblewrap (which reports its child's death that way).
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
import secrets
import shutil
import signal
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Literal

from tts_graph.errors import ConfigError

__all__ = ["BackendName", "SandboxLimits", "SandboxResult", "bwrap_available", "run_python"]

logger = logging.getLogger(__name__)

#: Which sandbox runs the code: ``"auto"`` (bubblewrap if usable), ``"bwrap"`` or ``"fallback"``.
BackendName = Literal["auto", "bwrap", "fallback"]

# Runs first inside the child, before any untrusted code: limits are set (hard == soft, so the
# code cannot raise them back) and, for a root caller under bubblewrap, root is dropped.
_PROLOGUE = """\
import os, resource as r, sys
_cfg = [int(x) for x in sys.argv[1].split(",")]
_src = sys.argv[2]
del sys.argv[1:]
if _cfg[6] >= 0:
    os.setgroups([]); os.setgid(_cfg[6]); os.setuid(_cfg[6])
for _k, _v in zip((r.RLIMIT_CPU, r.RLIMIT_AS, r.RLIMIT_NPROC, r.RLIMIT_FSIZE, r.RLIMIT_CORE,
                   r.RLIMIT_NOFILE), _cfg):
    if _v >= 0:
        r.setrlimit(_k, (_v, _v + 1 if _k == r.RLIMIT_CPU else _v))
del os, r, sys, _cfg, _k, _v
exec(compile(_src, "<sandbox>", "exec"), {"__name__": "__main__"})
"""

_ENV_MARKER = "TTS_SANDBOX_RUN"
_MAX_FDS = 256
# A random uid from a range no distribution allocates, so RLIMIT_NPROC counts only this run.
_UID_RANGE = (1 << 30, 1 << 31)


@dataclass(frozen=True)
class SandboxLimits:
    """Resource limits for one sandboxed run.

    ``cpu_s`` is CPU seconds per process (SIGXCPU, then SIGKILL a second later); ``wall_s`` is
    the wall-clock time of the whole run; ``memory_mb`` is the address-space limit per process;
    ``max_processes`` counts processes and threads (bubblewrap backend only); ``output_bytes``
    caps stdout + stderr together; ``file_size`` caps one written file and, under bubblewrap,
    the whole writable tmpfs.

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
    """What a sandboxed run did. A signal shows in ``exit_code`` as ``-N`` (fallback) or
    ``128 + N`` (bubblewrap); ``timed_out`` and ``output_exceeded`` runs were killed with SIGKILL.

    Output is cut at ``output_bytes`` and decoded leniently (invalid UTF-8 becomes U+FFFD).

    >>> r = SandboxResult(0, "hi\\n", "", timed_out=False, output_exceeded=False,
    ...                   duration_s=0.02, backend="bwrap")
    >>> r.ok
    True
    """

    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool
    output_exceeded: bool
    duration_s: float
    backend: Literal["bwrap", "fallback"]

    @property
    def ok(self) -> bool:
        """Exited with code 0, in time, within the output limit."""
        return self.exit_code == 0 and not self.timed_out and not self.output_exceeded


_bwrap_state: tuple[bool, str | None] | None = None  # (usable, path): probed once per process
_warned = False


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
            probe = await _run("print('ok')", None, SandboxLimits(), bwrap=path)
            ok = probe.exit_code == 0 and probe.stdout == "ok\n"
            why = f"the bwrap probe failed (exit code {probe.exit_code}): {probe.stderr[-300:]!r}"
        _bwrap_state = (ok, path)
        if not ok:
            _warn_fallback(why)
    return _bwrap_state[0]


def _warn_fallback(why: str) -> None:
    global _warned
    if not _warned:
        _warned = True
        logger.warning(
            "Sandboxed code runs WITHOUT network or filesystem isolation (%s): the fallback "
            "backend is a plain subprocess with rlimits. Install bubblewrap to isolate it.",
            why,
        )


async def run_python(
    code: str,
    *,
    stdin: str | bytes | None = None,
    limits: SandboxLimits = SandboxLimits(),
    backend: BackendName = "auto",
) -> SandboxResult:
    """Run ``code`` as a Python program under ``limits`` and return what happened.

    ``backend="auto"`` uses bubblewrap when :func:`bwrap_available`, else the fallback (with a
    warning, once). ``"bwrap"`` raises :class:`~tts_graph.errors.ConfigError` if bubblewrap is
    unusable. Never raises for what the code does: crashes, timeouts and floods are in the result.

    >>> import asyncio
    >>> r = asyncio.run(run_python("import time; time.sleep(5)", limits=SandboxLimits(wall_s=0.5)))
    >>> r.timed_out
    True
    """
    if backend not in ("auto", "bwrap", "fallback"):
        raise ConfigError(
            f"unknown sandbox backend {backend!r}; choose 'auto', 'bwrap' or 'fallback'"
        )
    if backend != "fallback" and await bwrap_available():
        assert _bwrap_state is not None
        return await _run(code, stdin, limits, bwrap=_bwrap_state[1])
    if backend == "bwrap":
        raise ConfigError("backend='bwrap' was requested but bubblewrap cannot run here")
    _warn_fallback("the fallback backend was requested")  # "auto" has warned with its reason
    return await _run(code, stdin, limits, bwrap=None)


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


@functools.cache
def _seccomp_program() -> bytes | None:
    # Classic BPF for seccomp: deny (EPERM) the calls that let one process read or steer another.
    # Syscall numbers: x86-64 ptrace 101, process_vm_readv/writev 310/311; aarch64 117, 270/271;
    # pidfd_getfd is 438 on both. Other architectures run without the filter.
    table = {
        "x86_64": (0xC000003E, (101, 310, 311, 438)),
        "aarch64": (0xC00000B7, (117, 270, 271, 438)),
    }
    if platform.machine() not in table:
        return None
    audit_arch, numbers = table[platform.machine()]
    ld, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    allow, deny = 0x7FFF0000, 0x00050000 | errno.EPERM
    checks = [(jge, 0x40000000), *((jeq, n) for n in numbers)]  # >= 0x40000000: the x32 ABI
    prog = [(ld, 0, 0, 4), (jeq, 1, 0, audit_arch), (ret, 0, 0, deny), (ld, 0, 0, 0)]
    prog += [(op, len(checks) - i, 0, k) for i, (op, k) in enumerate(checks)]
    prog += [(ret, 0, 0, allow), (ret, 0, 0, deny)]
    return b"".join(struct.pack("=HBBI", *insn) for insn in prog)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _sweep(marker: bytes) -> None:
    # Fallback only: kill leftovers that left the process group (setsid) but kept the marker.
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
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await done
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)


async def _run(
    code: str, stdin: str | bytes | None, limits: SandboxLimits, *, bwrap: str | None
) -> SandboxResult:
    drop_uid = -1
    if bwrap is not None and os.geteuid() == 0:
        drop_uid = secrets.randbelow(_UID_RANGE[1] - _UID_RANGE[0]) + _UID_RANGE[0]
    nproc = limits.max_processes if bwrap is not None else -1
    cfg = (
        f"{math.ceil(limits.cpu_s)},{limits.memory_mb * 1024 * 1024},{nproc},"
        f"{limits.file_size},0,{_MAX_FDS},{drop_uid}"
    )
    python_cmd = [_python(), "-I", "-S", "-B", "-c", _PROLOGUE, cfg, code]
    token = secrets.token_hex(16)
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    tmp: tempfile.TemporaryDirectory[str] | None = None
    seccomp_fd: int | None = None
    try:
        if bwrap is None:
            tmp = tempfile.TemporaryDirectory(prefix="tts-sandbox-", ignore_cleanup_errors=True)
            cwd, argv = tmp.name, python_cmd
            env.update(HOME=tmp.name, **{_ENV_MARKER: token})
        else:
            program = _seccomp_program()
            if program is not None:
                seccomp_fd, write_end = os.pipe()
                os.write(write_end, program)  # tiny: fits in the pipe buffer
                os.close(write_end)
            cwd, argv = "/", [*_bwrap_argv(bwrap, limits, env, seccomp_fd), *python_cmd]
        pass_fds = () if seccomp_fd is None else (seccomp_fd,)
        marker = f"{_ENV_MARKER}={token}".encode()
        return await _supervise(argv, env, cwd, pass_fds, stdin, limits, bwrap, marker)
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)
        if tmp is not None:
            tmp.cleanup()


def _bwrap_argv(
    bwrap: str, limits: SandboxLimits, env: dict[str, str], seccomp_fd: int | None
) -> list[str]:
    argv = [bwrap, *_bwrap_fs_args()]
    argv += ["--perms", "1777", "--size", str(limits.file_size), "--tmpfs", "/tmp"]
    # bwrap's own / and /dev are unbounded tmpfs that a non-root caller's sandbox user owns.
    argv += ["--remount-ro", "/", "--remount-ro", "/dev"]
    argv += ["--chdir", "/tmp", "--clearenv", "--setenv", "HOME", "/tmp"]
    for key, value in env.items():
        argv += ["--setenv", key, value]
    argv += ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts"]
    argv += ["--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    if os.geteuid() == 0:  # CAP_SETUID/SETGID only for the prologue's drop to a random uid
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--disable-userns"]
    if seccomp_fd is not None:
        argv += ["--seccomp", str(seccomp_fd)]
    return argv


async def _supervise(
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    pass_fds: tuple[int, ...],
    stdin: str | bytes | None,
    limits: SandboxLimits,
    bwrap: str | None,
    marker: bytes,
) -> SandboxResult:
    start = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        pass_fds=pass_fds,
        start_new_session=True,  # one process group to kill
    )
    bufs = (bytearray(), bytearray())
    exceeded = False

    async def pump(stream: asyncio.StreamReader | None, buf: bytearray) -> None:
        nonlocal exceeded
        assert stream is not None
        while chunk := await stream.read(65536):
            room = limits.output_bytes - len(bufs[0]) - len(bufs[1])
            buf += chunk[: max(room, 0)]
            if len(chunk) > room and not exceeded:
                exceeded = True
                _kill_group(proc.pid)
            # keep draining after the kill: a paused pipe would never see EOF and never close

    async def feed() -> None:
        if stdin is None or proc.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(stdin.encode() if isinstance(stdin, str) else stdin)
            await proc.stdin.drain()
            proc.stdin.close()

    io = asyncio.gather(pump(proc.stdout, bufs[0]), pump(proc.stderr, bufs[1]), feed())
    timed_out = False
    try:
        await asyncio.wait_for(_exited(proc), limits.wall_s)
    except TimeoutError:
        timed_out = not exceeded
    finally:
        _kill_group(proc.pid)  # leftovers in the group; under bwrap the PID namespace is gone
        if bwrap is None:
            await asyncio.to_thread(_sweep, marker)
        try:
            await asyncio.wait_for(io, 2.0)
            await asyncio.wait_for(proc.wait(), 2.0)
        except TimeoutError:  # only a fallback process that escaped both kills can hold a pipe
            logger.warning("a sandboxed process escaped and holds its output pipe open")
    return SandboxResult(
        exit_code=proc.returncode,
        stdout=bufs[0].decode("utf-8", "replace"),
        stderr=bufs[1].decode("utf-8", "replace"),
        timed_out=timed_out,
        output_exceeded=exceeded,
        duration_s=time.monotonic() - start,
        backend="fallback" if bwrap is None else "bwrap",
    )

"""Keeps a server from outliving the process that started it.

:class:`~tts_graph.backends.server.VLLMServer` runs vLLM under this guard::

    python -m tts_graph.backends.server_guard PARENT_PID COMMAND...

The guard leads the server's process group (the server starts it in a new session) and runs
``COMMAND`` as its child. It watches for the process ``PARENT_PID`` to go: when its parent
changes, the one that started it has died, however it died (a SIGKILL runs no cleanup, so
nothing in the starter could stop the server then). The guard then stops the group as
:meth:`VLLMServer.stop` would, SIGTERM and then SIGKILL, so a killed test run or script leaves
no model server eating the machine's cores.

Signals the starter sends to the group (SIGINT, SIGTERM) reach the server directly; the guard
only waits for it and exits with its exit code, so the starter sees the server's own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

__all__ = ["guarded_command", "main"]

POLL_S = 0.5
"""How often the guard checks its parent: the longest an orphaned server runs on."""

GRACE_S = 10.0
"""How long the server has to stop after SIGTERM before the group is killed."""


def guarded_command(command: list[str]) -> list[str]:
    """``command`` run under the guard, watching this process."""
    return [sys.executable, "-m", __name__, str(os.getpid()), *command]


def _stop_group(server: subprocess.Popen[bytes]) -> None:
    os.killpg(0, signal.SIGTERM)  # the guard ignores it
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(timeout=GRACE_S)
    os.killpg(0, signal.SIGKILL)  # workers that outlived the server, and the guard


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2 or not args[0].isdigit():
        sys.stderr.write(f"usage: python -m {__name__} PARENT_PID COMMAND...\n")
        return 2
    parent, command = int(args[0]), args[1:]
    # The group's signals are for the server; the guard outlives it only to report its code.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    if os.getppid() != parent:  # the starter died before the guard ran
        return 1
    child = subprocess.Popen(command, preexec_fn=_default_signals)
    while True:
        try:
            code = child.wait(timeout=POLL_S)
            return code if code >= 0 else 128 - code  # killed by signal N: the shell's 128 + N
        except subprocess.TimeoutExpired:
            pass
        if os.getppid() != parent:
            _stop_group(child)
            return 1


def _default_signals() -> None:
    # The server handles SIGINT and SIGTERM as usual (an ignored signal stays ignored in a child).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())

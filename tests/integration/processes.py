"""The processes a command under test started, found by what it started them with: never the
machine's whole process table or every listening port, which other work shares."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

LAUNCHER = "vllm.entrypoints.launchers.api_server.entry"


def processes() -> dict[int, tuple[list[str], int, str]]:
    """Every process: pid -> (command line, process group, state)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            stat = (entry / "stat").read_text()
        except OSError:  # it exited meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        table[int(entry.name)] = (args, int(fields[2]), fields[0])
    return table


def server_on(port: int) -> set[int]:
    """The vLLM API server started with ``--port PORT`` and every process of its group (its
    engine workers): what one command started, whatever else runs on the machine."""
    table = processes()
    leaders = {
        pid
        for pid, (args, _, _) in table.items()
        if LAUNCHER in args and "--port" in args and args[args.index("--port") + 1] == str(port)
    }
    groups = {table[pid][1] for pid in leaders}
    return leaders | {pid for pid, (_, group, _) in table.items() if group in groups}


def still_running(pids: set[int]) -> set[int]:
    table = processes()
    return {pid for pid in pids if pid in table and table[pid][2] != "Z"}


def assert_nothing_listens(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

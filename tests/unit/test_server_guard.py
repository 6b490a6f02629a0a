"""The guard that stops a server whose starter died, with stand-in servers (no vLLM).

Each test watches only the processes it started."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tts_graph.backends.server_guard import guarded_command, main

# A stand-in for vLLM: an API process with an engine worker of its own, both sleeping.
SERVER = textwrap.dedent("""
    import json, subprocess, sys, time
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    with open(sys.argv[1], "w") as out:
        json.dump({"server": __import__("os").getpid(), "worker": worker.pid}, out)
    time.sleep(600)
""")

# A starter that starts the stand-in under the guard as VLLMServer does, then waits.
STARTER = textwrap.dedent("""
    import subprocess, sys, time
    from tts_graph.backends.server_guard import guarded_command
    command = guarded_command([sys.executable, "-c", sys.argv[1], sys.argv[2]])
    subprocess.Popen(command, start_new_session=True)
    time.sleep(600)
""")


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie has stopped: only its exit status is left)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_for(predicate, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


def test_a_server_stops_when_its_starter_is_killed(tmp_path: Path) -> None:
    pids_file = tmp_path / "pids.json"
    starter = subprocess.Popen([sys.executable, "-c", STARTER, SERVER, str(pids_file)])
    try:
        assert wait_for(lambda: pids_file.exists() and pids_file.stat().st_size > 0)
        pids = json.loads(pids_file.read_text())
        assert alive(pids["server"]) and alive(pids["worker"])
        starter.kill()  # SIGKILL: the starter runs no cleanup at all
        starter.wait()
        assert wait_for(lambda: not alive(pids["server"]) and not alive(pids["worker"]))
    finally:
        starter.kill()
        if pids_file.exists() and pids_file.stat().st_size:
            for pid in json.loads(pids_file.read_text()).values():
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def test_the_guard_reports_the_servers_exit_code() -> None:
    exits = [sys.executable, "-c", "import sys; sys.exit(3)"]
    assert subprocess.run(guarded_command(exits), check=False).returncode == 3
    killed = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]
    assert subprocess.run(guarded_command(killed), check=False).returncode == 128 + 9


def test_signals_to_the_group_stop_the_server_and_the_guard_reports_it(tmp_path: Path) -> None:
    # VLLMServer.stop signals the group: the server stops, the guard outlives it to report it.
    ready = tmp_path / "ready"
    server = f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(600)"
    guard = subprocess.Popen(
        guarded_command([sys.executable, "-c", server]), start_new_session=True
    )
    try:
        assert wait_for(ready.exists)
        os.killpg(guard.pid, signal.SIGTERM)
        assert guard.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if guard.poll() is None:
            os.killpg(guard.pid, signal.SIGKILL)


def test_a_guard_called_wrongly_says_how_to_call_it(capsys) -> None:
    assert main(["not-a-pid", "true"]) == 2
    assert "PARENT_PID COMMAND" in capsys.readouterr().err

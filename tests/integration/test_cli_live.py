"""The `tts-graph` command against a real server, run as a user would (a subprocess)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import httpx
import pytest

from tts_graph.backends.server import free_port
from tts_graph.nodes.select import majority_vote
from tts_graph.state import Candidate

CLI = [sys.executable, "-m", "tts_graph.cli"]


def tts_graph(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def check_solve_json(out: subprocess.CompletedProcess[str], n: int) -> dict:
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["strategy"] == "best_of_n"
    assert len(result["candidates"]) == n
    usage = result["usage"]
    assert usage["calls"] == 1
    assert usage["prompt_tokens"] > 0
    assert (
        usage["completion_tokens"] == sum(c["completion_tokens"] for c in result["candidates"]) > 0
    )
    assert usage["flops"] == 2 * 134_515_008 * (usage["prompt_tokens"] + usage["completion_tokens"])
    assert usage["wall_s"] > 0
    # The printed answer is the majority of the candidates' own extracted answers.
    cands = [
        Candidate(
            index=c["index"], text=c["text"], answer=c["answer"], mean_logprob=c["mean_logprob"]
        )
        for c in result["candidates"]
    ]
    winner, _, _ = majority_vote(cands)
    assert result["answer"] == (winner.answer if winner else result["answer"])
    return result


def test_solve_json_against_a_running_server(vllm_server):
    if vllm_server.server is None:
        pytest.skip("needs the session's own embedded server (FLOPs check uses its size)")
    out = tts_graph(
        "solve",
        "What is 7+5?",
        "--json",
        "--n",
        "4",
        "--max-tokens",
        "48",
        env={"TTS_GRAPH_BASE_URL": vllm_server.base_url},
    )
    check_solve_json(out, 4)


def test_solve_plain_prints_only_the_answer(vllm_server):
    out = tts_graph(
        "solve",
        "What is 7+5?",
        "--n",
        "2",
        "--max-tokens",
        "32",
        "--base-url",
        vllm_server.base_url,
    )
    assert out.returncode == 0, out.stderr
    assert len(out.stdout.strip().splitlines()) == 1


def test_solve_with_a_budget_that_cuts_the_samples(vllm_server):
    out = tts_graph(
        "solve",
        "What is 7+5?",
        "--json",
        "--n",
        "8",
        "--max-tokens",
        "32",
        "--max-total-tokens",
        "200",
        "--base-url",
        vllm_server.base_url,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert 0 < len(result["candidates"]) < 8
    assert result["usage"]["total_tokens"] <= 200
    assert result["decisions"][0]["reason"] == "budget"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--model", "gpt-17"), "does not serve the model 'gpt-17'"),
        (("--max-total-tokens", "20"), "too small for a single call"),
    ],
)
def test_solve_bad_input_against_the_server(vllm_server, args, needle):
    out = tts_graph("solve", "What is 7+5?", "--base-url", vllm_server.base_url, *args)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert needle in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def server_ports() -> set[int]:
    """Ports of the vLLM API servers running on this machine."""
    out = subprocess.run(
        ["pgrep", "-af", "api_server.entry"], capture_output=True, text=True
    ).stdout
    ports = set()
    for line in out.splitlines():
        args = line.split()
        if "--port" in args:
            ports.add(int(args[args.index("--port") + 1]))
    return ports


def test_solve_without_a_server_starts_and_stops_the_embedded_one(vllm_server):
    # The main path of the quick start: no URL given, so the command runs its own server.
    before = server_ports()
    env = {k: v for k, v in os.environ.items() if k != "TTS_GRAPH_BASE_URL"}
    out = subprocess.run(
        [*CLI, "solve", "What is 7+5?", "--json", "--n", "4", "--max-tokens", "48"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    check_solve_json(out, 4)
    assert server_ports() == before  # its own server is gone again


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_its_url_when_healthy_and_stops_cleanly(sig):
    port = free_port()
    with subprocess.Popen(
        [*CLI, "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            url = proc.stdout.readline().strip()  # printed only once /health answers
            assert url == f"http://127.0.0.1:{port}/v1"
            assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
            models = httpx.get(f"{url}/models", timeout=10).json()
            assert models["data"][0]["id"] == "SmolLM2-135M-Instruct"
            proc.send_signal(sig)
            assert proc.wait(timeout=120) == 0
            assert "stopped" in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert port not in server_ports()  # the vLLM process group is gone too
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)

"""The `tts-graph` command against a real server, run as a user would (a subprocess)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import httpx
import pytest
from processes import assert_nothing_listens, server_on, still_running

from tts_graph.backends.embedded import EMBEDDED_MODELS, embedded_model_dir
from tts_graph.backends.server import free_port
from tts_graph.candidate import Candidate
from tts_graph.nodes.select import majority_vote

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


def embedded_params(served_name: str) -> int:
    """The parameter count of the embedded model served as ``served_name``, as its conversion
    recorded it: what the FLOPs estimate must use, whichever model answered."""
    (model,) = [m for m in EMBEDDED_MODELS.values() if m.served_name == served_name]
    meta = json.loads((embedded_model_dir(model.name) / "tts_graph_model.json").read_text())
    return int(meta["parameters"])


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
    params = embedded_params(result["model"])
    assert usage["flops"] == 2 * params * (usage["prompt_tokens"] + usage["completion_tokens"])
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


# Every line `solve` may print on stderr: its own progress, nothing from a library.
PROGRESS = re.compile(
    r"^(converting|converted|starting the vLLM server|vLLM server ready|sampling|sampled"
    r"|stopping the vLLM server|stopped the vLLM server)\b"
)


def test_solve_without_a_server_starts_and_stops_the_embedded_one():
    # The main path of the quick start: no URL given, so the command runs its own server, on
    # the port it is told to use, and must leave nothing of it behind.
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "TTS_GRAPH_BASE_URL"}
    cmd = [*CLI, "solve", "What is 7+5?", "--json", "--n", "4", "--max-tokens", "48"]
    with subprocess.Popen(
        [*cmd, "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        try:
            stderr = []
            for line in proc.stderr:  # progress arrives line by line while it works
                stderr.append(line)
                if line.startswith("vLLM server ready"):
                    break
            started = server_on(port)  # snapshot while its server is up
            stdout, rest = proc.communicate(timeout=900)
            stderr.append(rest)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    stderr_text = "".join(stderr)
    out = subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr_text)
    check_solve_json(out, 4)
    assert started, f"no vLLM server on port {port} while solve ran:\n{stderr_text}"
    assert f"starting the vLLM server on 127.0.0.1:{port}" in stderr_text
    assert still_running(started) == set()  # the server and its workers are gone
    assert_nothing_listens(port)
    # Silent waits are gone and so is library noise: each stderr line is solve's progress.
    lines = [line for line in stderr_text.splitlines() if line.strip()]
    assert [line for line in lines if not PROGRESS.match(line)] == []
    assert any(line.startswith("sampling 4 candidates") for line in lines)


def test_solve_with_a_verifier_against_the_server(vllm_server):
    out = tts_graph(
        "solve",
        "What is 7+5?",
        "--json",
        "--n",
        "4",
        "--max-tokens",
        "48",
        "--verifier",
        "math",
        "--reference",
        "12",
        "--select",
        "verified",
        "--base-url",
        vllm_server.base_url,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert [d["node"] for d in result["decisions"]] == ["fanout", "verify", "select"]
    for candidate in result["candidates"]:
        assert candidate["verdict"]["passed"] == (candidate["answer"] == "12")
    if any(c["verdict"]["passed"] for c in result["candidates"]):
        assert result["answer"] == "12"
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert [line for line in lines if not PROGRESS.match(line)] == []


def test_strict_budget_fails_in_one_line(vllm_server):
    out = tts_graph(
        "solve",
        "What is 7+5?",
        "--n",
        "8",
        "--max-tokens",
        "32",
        "--max-total-tokens",
        "200",
        "--strict",
        "--base-url",
        vllm_server.base_url,
    )
    assert out.returncode == 2, out.stderr
    assert out.stdout == ""
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("error:") and "--strict" in lines[-1]
    assert "Traceback" not in out.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_prints_its_url_when_healthy_and_stops_cleanly(sig):
    port = free_port()
    with subprocess.Popen(
        [*CLI, "serve", "--model", "smollm2-135m", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            url = proc.stdout.readline().strip()  # printed only once /health answers
            assert url == f"http://127.0.0.1:{port}/v1"
            started = server_on(port)
            assert started
            assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).status_code == 200
            models = httpx.get(f"{url}/models", timeout=10).json()
            assert models["data"][0]["id"] == "SmolLM2-135M-Instruct"
            proc.send_signal(sig)
            assert proc.wait(timeout=120) == 0
            assert "stopped the vLLM server" in proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert still_running(started) == set()  # the vLLM process group is gone too
    assert_nothing_listens(port)


def test_solve_a_spec_reports_difficulty_strategy_decisions_and_budget_left(vllm_server, tmp_path):
    spec = tmp_path / "adaptive.yaml"
    spec.write_text(
        "budget: {max_total_tokens: 6000}\n"
        "sampling: {temperature: 0.8, max_tokens: 32}\n"
        "strategy:\n"
        "  kind: adaptive\n"
        "  probe_n: 4\n"
        "  routes: {easy: vote, medium: {kind: self_consistency, max_samples: 6},\n"
        "           hard: {kind: best_of_n, n: 6}}\n"
    )
    out = tts_graph(
        "solve", "What is 7+5?", "--spec", str(spec), "--json", "--base-url", vllm_server.base_url
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    difficulty = result["difficulty"]
    assert difficulty["bin"] in ("easy", "medium", "hard") and 0 <= difficulty["score"] <= 1
    kinds = [d["kind"] for d in result["decisions"]]
    assert kinds[0] == "difficulty" and "route" in kinds
    [route] = [d for d in result["decisions"] if d["kind"] == "route"]
    assert route["bin"] == difficulty["bin"] and result["strategy"] == route["strategy"]
    used = result["usage"]["total_tokens"]
    assert result["budget_left"]["total_tokens"] == 6000 - used
    # Strategy flags belong to the spec.
    clash = tts_graph("solve", "q", "--spec", str(spec), "--n", "4")
    assert clash.returncode == 2 and "--n is set by the spec" in clash.stderr

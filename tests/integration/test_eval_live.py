"""`tts-graph eval` on the real server, as a user runs it: a real SIGINT mid-run, then the same
command resumes without redoing a finished problem, and writes the report."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from processes import assert_nothing_listens, server_on, still_running

from server_metrics import RUNNING, WAITING, metric

pytestmark = pytest.mark.integration

SPEC = """\
name: sums-best-of-2
budget: {max_total_tokens: 4000}
sampling: {temperature: 0.7, max_tokens: 32}
prompt:
  system: 'Answer with a last line "Answer: <number>".'
strategy: {kind: best_of_n, n: 2}
"""


CLI = [sys.executable, "-m", "tts_graph.cli"]


def lines(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_eval_resumes_after_a_real_sigint_and_writes_the_report(vllm_server, tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    out = tmp_path / "run"
    args = [sys.executable, "-m", "tts_graph.cli", "eval", "--spec", str(spec),
            "--dataset", "basic_arithmetic", "--limit", "8", "--concurrency", "1",
            "--out", str(out), "--base-url", vllm_server.base_url]  # fmt: skip
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    first = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    results = out / "results.jsonl"
    for _ in range(1200):  # until two problems are written
        if len(lines(results)) >= 2 or first.returncode is not None:
            break
        await asyncio.sleep(0.1)
    first.send_signal(signal.SIGINT)
    _, err = await first.communicate()
    assert first.returncode == 130, err.decode()[-2000:]
    assert "run the same command to resume" in err.decode()
    before = lines(results)
    assert 2 <= len(before) < 8

    second = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    report, err = await second.communicate()
    assert second.returncode == 0, err.decode()[-2000:]
    after = lines(results)
    assert [r["id"] for r in after[: len(before)]] == [r["id"] for r in before]
    assert sorted(r["id"] for r in after) == sorted({r["id"] for r in after})  # none twice
    assert len(after) == 8
    assert all(r["candidates"] and r["usage"]["calls"] >= 1 for r in after)
    assert Path(report.decode().strip()) == out / "report.md"
    assert (out / "report.md").read_text().strip()


def test_the_main_job_compares_three_ways_on_humaneval_with_the_evaluation_model(
    qwen_server, tmp_path
):
    # The README's main job (scripts/demo.sh) on two problems: the three shipped HumanEval specs
    # side by side on one server, hidden tests as the judge, a table and a comparison at the end.
    specs = Path(__file__).resolve().parents[2] / "examples" / "specs" / "humaneval"
    names = ["single-pass", "best-of-8", "adaptive"]
    out = tmp_path / "main"
    args = [sys.executable, "-m", "tts_graph.cli", "eval",
            *[a for name in names for a in ("--spec", str(specs / f"{name}.yaml"))],
            "--dataset", "humaneval", "--limit", "2", "--concurrency", "2",
            "--out", str(out), "--base-url", qwen_server.base_url]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run(args, capture_output=True, text=True, timeout=900,
                          env={**env, "PYTHONWARNINGS": "ignore"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert "…" not in done.stdout + done.stderr  # 80 columns: progress and table cut nothing
    table = done.stdout
    assert "accuracy against compute on 2 problems" in table  # two problems each
    for name in names:
        (row,) = [line for line in table.splitlines() if f" {name} " in line]
        assert row.split("│")[2].strip().endswith("%")  # an accuracy for each
        records = lines(out / name / "results.jsonl")
        assert [r["id"] for r in records] and len(records) == 2
        run = json.loads((out / name / "run.json").read_text())
        assert run["elapsed_s"] > 0
    single = lines(out / "single-pass" / "results.jsonl")
    best = lines(out / "best-of-8" / "results.jsonl")
    adaptive = lines(out / "adaptive" / "results.jsonl")
    assert all(len(r["candidates"]) == 1 for r in single)
    assert all(len(r["candidates"]) == 8 for r in best)
    for r in best + adaptive:  # every sample was run against the public tests
        assert all(c["passed_public"] is not None for c in r["candidates"])
    for r in adaptive:
        (difficulty,) = [d for d in r["decisions"] if d["kind"] == "difficulty"]
        passed = sum(c["passed_public"] for c in r["candidates"][:2])
        assert difficulty["score"] == 1 - passed / 2
        assert len(r["candidates"]) == (2 if passed else 16)
    assert Path(table.strip().splitlines()[-1]) == out / "comparison.md"


def test_ctrl_c_stops_the_server_the_eval_started_and_keeps_what_finished(tmp_path):
    # No URL: the command starts its own server, and a Ctrl-C mid-run must take it down with it.
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC + "backend: {embedded: smollm2-135m}\n")
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "TTS_GRAPH_BASE_URL"}
    args = [*CLI, "eval", "--spec", str(spec), "--dataset", "basic_arithmetic", "--limit", "40",
            "--concurrency", "1", "--out", str(out)]  # fmt: skip
    err: list[str] = []
    with subprocess.Popen(args, stderr=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          env={**env, "PYTHONWARNINGS": "ignore"}) as proc:  # fmt: skip
        reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
        reader.start()
        try:
            deadline = time.monotonic() + 600
            while not lines(out / "results.jsonl") and proc.poll() is None:
                assert time.monotonic() < deadline, "".join(err)[-2000:]
                time.sleep(0.2)
            (port,) = {
                int(m[1]) for m in re.finditer(r"server ready on [\d.]+:(\d+)", "".join(err))
            }
            started = server_on(port)
            assert started, "".join(err)[-2000:]
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=120) == 130
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.join(timeout=10)
    said = "".join(err)
    assert "run the same command to resume" in said and "stopped the vLLM server" in said
    assert still_running(started) == set()  # the server and its engine processes are gone
    assert_nothing_listens(port)
    assert 1 <= len(lines(out / "results.jsonl")) < 40


LONG = "Write the numbers from 1 to 3000 in words, separated by commas, and nothing else."


async def test_ctrl_c_leaves_no_request_running_on_the_server(vllm_server, tmp_path):
    # Long samples (n > 1, not streamed) are in flight when Ctrl-C lands: the server must stop
    # generating them, not finish them for a client that has gone.
    data = tmp_path / "long.jsonl"
    data.write_text("".join(json.dumps({"question": f"{LONG} ({i})", "answer": "0"}) + "\n"
                            for i in range(4)))  # fmt: skip
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: long\nsampling: {temperature: 1.0, max_tokens: 1800}\n"
                    "strategy: {kind: best_of_n, n: 4}\n")  # fmt: skip
    args = [*CLI, "eval", "--spec", str(spec), "--dataset", str(data), "--concurrency", "2",
            "--out", str(tmp_path / "run"), "--base-url", vllm_server.base_url]  # fmt: skip
    root = vllm_server.root_url
    assert await metric(root, RUNNING, WAITING) == 0
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )  # fmt: skip
    for _ in range(600):  # until the samples are being generated
        if await metric(root, RUNNING, WAITING) >= 2 or proc.returncode is not None:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = await proc.communicate()
    assert proc.returncode == 130, err.decode()[-2000:]
    for _ in range(50):  # an abort takes effect within a scheduler step or two
        if await metric(root, RUNNING, WAITING) == 0:
            break
        await asyncio.sleep(0.1)
    assert await metric(root, RUNNING, WAITING) == 0


def test_calibrate_fits_thresholds_and_budgets_and_resumes(vllm_server, tmp_path):
    out = tmp_path / "thresholds.json"
    args = [*CLI, "calibrate", "--dataset", "basic_arithmetic", "--limit", "12",
            "--probe-n", "2", "--label-n", "4", "--labels", "easy,hard", "--concurrency", "4",
            "--out", str(out), "--base-url", vllm_server.base_url]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    done = subprocess.run(args, capture_output=True, text=True, timeout=900, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(out)
    assert "held-out problems" in done.stdout and "…" not in done.stdout
    result = json.loads(out.read_text())
    assert result["estimator"] == "agreement" and result["labels"] == ["easy", "hard"]
    assert len(result["thresholds"]) == 1 and 0 <= result["thresholds"][0] <= 1
    assert result["fit_problems"] + result["heldout_problems"] + result["skipped"] == 12
    assert set(result["budget"]) == {"easy", "hard"}
    for b in result["budget"].values():
        assert b["n"] is None or 1 <= b["n"] <= 4
    assert set(result["heldout"]) >= {"agreement", "logprob", "entropy", "combined"}
    samples = lines(tmp_path / "thresholds.samples" / "results.jsonl")
    assert len(samples) == 12 and all(len(r["candidates"]) == 6 for r in samples)
    assert all(c["mean_logprob"] is not None for r in samples for c in r["candidates"])
    # The same command again draws nothing new: every problem's samples are on disk.
    again = subprocess.run(args, capture_output=True, text=True, timeout=900, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert lines(tmp_path / "thresholds.samples" / "results.jsonl") == samples
    assert json.loads(out.read_text()) == result

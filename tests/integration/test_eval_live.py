"""`tts-graph eval` on the real server, as a user runs it: a real SIGINT mid-run, then the same
command resumes without redoing a finished problem, and writes the report."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SPEC = """\
name: sums-best-of-2
budget: {max_total_tokens: 4000}
sampling: {temperature: 0.7, max_tokens: 32}
prompt:
  system: 'Answer with a last line "Answer: <number>".'
strategy: {kind: best_of_n, n: 2}
"""


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
    done = subprocess.run(args, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "200"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    table = done.stdout
    for name in names:
        (row,) = [line for line in table.splitlines() if f" {name} " in line]
        assert "2" in row.split("│")[2]  # two problems each
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
        assert len(r["candidates"]) == (2 if passed else 8)
    assert Path(table.strip().splitlines()[-1]) == out / "comparison.md"

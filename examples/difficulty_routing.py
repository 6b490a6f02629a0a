"""Estimate a question's difficulty with a cheap probe, then route: easy questions take the
probe's majority answer, hard ones get 6 more samples. The probe's samples are kept as candidates.

Start a server with `tts-graph serve` (it listens on http://127.0.0.1:8000/v1), then run

    python examples/difficulty_routing.py [--base-url URL]

The URL comes from --base-url, else $TTS_GRAPH_BASE_URL, else the default above. Every node's
decision is printed as it streams.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any, Literal

from langgraph.graph import END, START, StateGraph

from tts_graph import SamplingParams, TTSState, VLLMBackend
from tts_graph.nodes import make_difficulty_node, make_fanout_node, make_select_node


def route(state: TTSState) -> Literal["more", "vote"]:
    difficulty = state.get("difficulty") or {}
    return "vote" if difficulty.get("bin") == "easy" else "more"


async def main(base_url: str) -> None:
    async with VLLMBackend(base_url) as backend:
        short = SamplingParams(temperature=0.7, max_tokens=48, logprobs=True)
        builder = StateGraph(TTSState)
        builder.add_node("probe", make_difficulty_node(backend, n=4, sampling=short))
        builder.add_node("more", make_fanout_node(backend, n=6, sampling=short))
        builder.add_node("vote", make_select_node())
        builder.add_edge(START, "probe")
        builder.add_conditional_edges("probe", route)
        builder.add_edge("more", "vote")
        builder.add_edge("vote", END)
        graph = builder.compile()

        final: dict[str, Any] = {}
        inputs: TTSState = {"question": "What is 23+58+11?"}
        async for mode, chunk in graph.astream(inputs, stream_mode=["custom", "values"]):
            if mode == "custom":
                print("decision:", chunk["tts_graph"])
            else:
                final = chunk
        print(f"answer {final['answer']!r} from {len(final['candidates'])} candidates")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--base-url", default=os.environ.get("TTS_GRAPH_BASE_URL", "http://127.0.0.1:8000/v1")
    )
    asyncio.run(main(parser.parse_args().base_url))

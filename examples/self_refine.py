"""Self-refine inside your own graph: draft, critique, revise (at most two rounds), stopping when
the critique says the draft is correct.

Start a server with `tts-graph serve` (it listens on http://127.0.0.1:8000/v1), then run

    python examples/self_refine.py [--base-url URL]

The URL comes from --base-url, else $TTS_GRAPH_BASE_URL, else the default above. Every node's
decision is printed as it streams.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from langgraph.graph import END, START, StateGraph

from tts_graph import SamplingParams, TTSState, VLLMBackend
from tts_graph.nodes import make_self_refine_node


async def main(base_url: str) -> None:
    async with VLLMBackend(base_url) as backend:
        builder = StateGraph(TTSState)
        builder.add_node(
            "refine",
            make_self_refine_node(
                backend, rounds=2, sampling=SamplingParams(temperature=0.7, max_tokens=64)
            ),
        )
        builder.add_edge(START, "refine")
        builder.add_edge("refine", END)
        graph = builder.compile()

        final: dict[str, Any] = {}
        inputs: TTSState = {"question": "What is 14+27?"}
        async for mode, chunk in graph.astream(inputs, stream_mode=["custom", "values"]):
            if mode == "custom":
                print("decision:", chunk["tts_graph"])
            else:
                final = chunk
        print("final draft:", final["response"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--base-url", default=os.environ.get("TTS_GRAPH_BASE_URL", "http://127.0.0.1:8000/v1")
    )
    asyncio.run(main(parser.parse_args().base_url))

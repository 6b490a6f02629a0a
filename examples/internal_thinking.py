"""Internal scaling: ask the server for a thinking budget of 64 tokens over 3 runs, then vote.
A server without a reasoning parser (like the embedded one) refuses the control; the node then
falls back to client-side budget forcing and says so in its decision.

Start a server with `tts-graph serve` (it listens on http://127.0.0.1:8000/v1), then run

    python examples/internal_thinking.py [--base-url URL]

The URL comes from --base-url, else $TTS_GRAPH_BASE_URL, else the default above. Every node's
decision is printed as it streams.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from langgraph.graph import END, START, StateGraph

from tts_graph import TTSState, VLLMBackend
from tts_graph.nodes import make_select_node, make_thinking_node


async def main(base_url: str) -> None:
    async with VLLMBackend(base_url) as backend:
        builder = StateGraph(TTSState)
        builder.add_node(
            "think", make_thinking_node(backend, n=3, thinking_budget=64, answer_max_tokens=24)
        )
        builder.add_node("vote", make_select_node())
        builder.add_edge(START, "think")
        builder.add_edge("think", "vote")
        builder.add_edge("vote", END)
        graph = builder.compile()

        final: dict[str, Any] = {}
        inputs: TTSState = {"question": "What is 8+15?"}
        async for mode, chunk in graph.astream(inputs, stream_mode=["custom", "values"]):
            if mode == "custom":
                print("decision:", chunk["tts_graph"])
            else:
                final = chunk
        print("answer:", final["answer"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--base-url", default=os.environ.get("TTS_GRAPH_BASE_URL", "http://127.0.0.1:8000/v1")
    )
    asyncio.run(main(parser.parse_args().base_url))

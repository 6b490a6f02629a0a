"""Budget forcing (s1): make the model think at least 80 tokens ("Wait" when it stops early) and
at most 160, then force a final answer. The embedded model has no thinking markers of its own:
the prompt asks it to use <think> ... </think>, and the decision says if it ignores them.

Start a server with `tts-graph serve` (it listens on http://127.0.0.1:8000/v1), then run

    python examples/budget_forcing.py [--base-url URL]

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
from tts_graph.nodes import make_budget_forcing_node, make_select_node


async def main(base_url: str) -> None:
    async with VLLMBackend(base_url) as backend:
        builder = StateGraph(TTSState)
        builder.add_node(
            "think",
            make_budget_forcing_node(backend, n=2, min_thinking_tokens=80, max_thinking_tokens=160,
                                     max_waits=3, answer_max_tokens=24),
        )  # fmt: skip
        builder.add_node("vote", make_select_node())
        builder.add_edge(START, "think")
        builder.add_edge("think", "vote")
        builder.add_edge("vote", END)
        graph = builder.compile()

        final: dict[str, Any] = {}
        inputs: TTSState = {"question": "What is 12+19?"}
        async for mode, chunk in graph.astream(inputs, stream_mode=["custom", "values"]):
            if mode == "custom":
                print("decision:", chunk["tts_graph"])
            else:
                final = chunk
        for c in final["candidates"]:
            print(c.index, c.metadata["forcing"])
        print("answer:", final["answer"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--base-url", default=os.environ.get("TTS_GRAPH_BASE_URL", "http://127.0.0.1:8000/v1")
    )
    asyncio.run(main(parser.parse_args().base_url))

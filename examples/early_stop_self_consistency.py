"""Self-consistency that stops sampling once the vote is settled, inside your own graph.

Samples come in small rounds; after each round the custom stream shows the votes, the Beta
statistic (the chance the leading answer really leads) and whether sampling goes on. An easy
question usually stops after 4 of the 8 allowed samples; the skipped ones are compute saved.

Start a server with `tts-graph serve` (it listens on http://127.0.0.1:8000/v1), then run

    python examples/early_stop_self_consistency.py [--base-url URL]

The URL comes from --base-url, else $TTS_GRAPH_BASE_URL, else the default above. Every node's
decision is printed as it streams.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping
from typing import Any

from langgraph.graph import END, START, StateGraph

from tts_graph import Budget, SamplingParams, TTSState, VLLMBackend
from tts_graph.nodes import make_consistency_node, make_select_node


def brief(state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The prompt: a system message that keeps answers short, then the question."""
    return [
        {"role": "system", "content": "Answer briefly. End with 'Answer: <number>'."},
        {"role": "user", "content": state["question"]},
    ]


async def main(base_url: str) -> None:
    async with VLLMBackend(base_url) as backend:
        builder = StateGraph(TTSState)
        builder.add_node(
            "sample",
            make_consistency_node(
                backend, stop="beta", max_samples=8, sampling=SamplingParams(max_tokens=32),
                prompt=brief,
            ),
        )  # fmt: skip
        builder.add_node("vote", make_select_node(select="majority"))
        builder.add_edge(START, "sample")
        builder.add_edge("sample", "vote")
        builder.add_edge("vote", END)
        graph = builder.compile()

        final: dict[str, Any] = {}
        inputs: TTSState = {"question": "What is 7+5?", "budget": Budget(max_total_tokens=4_000)}
        async for mode, chunk in graph.astream(inputs, stream_mode=["custom", "values"]):
            if mode == "custom":
                print("decision:", chunk["tts_graph"])
            else:
                final = chunk
        calls = final["usage"].calls
        print(f"answer {final['answer']!r} from {len(final['candidates'])} samples, {calls} calls")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--base-url", default=os.environ.get("TTS_GRAPH_BASE_URL", "http://127.0.0.1:8000/v1")
    )
    asyncio.run(main(parser.parse_args().base_url))

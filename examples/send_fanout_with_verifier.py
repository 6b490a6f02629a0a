"""Fan out with one LangGraph Send per candidate (two temperatures), verify each candidate as soon
as it exists, then pick the best verified one.

Start a server with `tts-graph serve` (it listens on http://127.0.0.1:8000/v1), then run

    python examples/send_fanout_with_verifier.py [--base-url URL]

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
from tts_graph.nodes import Branch, add_send_fanout, make_select_node
from tts_graph.verifiers import NumericVerifier


async def main(base_url: str) -> None:
    async with VLLMBackend(base_url) as backend:
        builder = StateGraph(TTSState)
        add_send_fanout(
            builder, backend, n=6, branches=[Branch(temperature=0.2), Branch(temperature=1.0)],
            sampling=SamplingParams(max_tokens=48, logprobs=True), verifier=NumericVerifier(),
            source=START, target="select",
        )  # fmt: skip
        builder.add_node("select", make_select_node(select="best_score"))
        builder.add_edge("select", END)
        graph = builder.compile()

        final: dict[str, Any] = {}
        inputs: TTSState = {"question": "What is 9+6?", "reference": "15"}
        async for mode, chunk in graph.astream(inputs, stream_mode=["custom", "values"]):
            if mode == "custom":
                print("decision:", chunk["tts_graph"])
            else:
                final = chunk
        for c in final["candidates"]:
            passed = c.verdict.passed if c.verdict else None
            print(c.index, c.metadata["temperature"], c.answer, passed)
        print("answer:", final["answer"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--base-url", default=os.environ.get("TTS_GRAPH_BASE_URL", "http://127.0.0.1:8000/v1")
    )
    asyncio.run(main(parser.parse_args().base_url))

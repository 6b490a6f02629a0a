"""Drop best-of-N into your own LangGraph graph, with your own state and a budget.

Start a server with `tts-graph serve` (it listens on http://127.0.0.1:8000/v1), then run

    python examples/best_of_n_in_your_graph.py [--base-url URL]

The URL comes from --base-url, else $TTS_GRAPH_BASE_URL, else the default above. Every node's
decision is printed as it streams.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from langgraph.graph import END, START, StateGraph

from tts_graph import Budget, CandidatesState, SamplingParams, StateKeys, VLLMBackend
from tts_graph.nodes import make_fanout_node, make_select_node


class MyState(CandidatesState, total=False):
    """An existing graph's state: the question lives under "task", and the graph writes its own
    "report". The mixin brings the keys the nodes need (candidates, usage, budget, decisions,
    answer, ...) with their reducers."""

    task: str
    report: str


def report(state: MyState) -> dict[str, Any]:
    usage = state["usage"]
    drafts = len(state["candidates"])
    return {"report": f"{state['answer']!r} from {drafts} drafts, {usage.total_tokens} tokens"}


async def main(base_url: str) -> None:
    keys = StateKeys(question="task")  # the nodes read the question from "task"
    async with VLLMBackend(base_url) as backend:
        builder = StateGraph(MyState)
        builder.add_node(
            "sample",
            make_fanout_node(
                backend, n=6, sampling=SamplingParams(max_tokens=48, logprobs=True), keys=keys
            ),
        )
        builder.add_node("vote", make_select_node(select="majority", keys=keys))
        builder.add_node("report", report)
        builder.add_edge(START, "sample")
        builder.add_edge("sample", "vote")
        builder.add_edge("vote", "report")
        builder.add_edge("report", END)
        graph = builder.compile()

        inputs: MyState = {"task": "What is 12+30?", "budget": Budget(max_total_tokens=2_000)}
        final: dict[str, Any] = {}
        async for mode, chunk in graph.astream(inputs, stream_mode=["custom", "values"]):
            if mode == "custom":
                print("decision:", chunk["tts_graph"])
            else:
                final = chunk
        print(final["report"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--base-url", default=os.environ.get("TTS_GRAPH_BASE_URL", "http://127.0.0.1:8000/v1")
    )
    asyncio.run(main(parser.parse_args().base_url))

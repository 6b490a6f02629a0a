"""Let an LLM judge pick among sampled drafts with a knockout tournament, inside your own graph.

The custom stream shows what each node decided: the drafts sampled, then the bracket (who met
whom, the votes, byes and ties) and the judge's consistency across the two presentation orders.
The embedded 135M model is a poor judge: it rarely ends with a "Winner:" line in 48 tokens, so
expect no votes and seeded tie-breaks here; a larger model on a GPU makes the same code useful.

Start a server with `tts-graph serve` (it listens on http://127.0.0.1:8000/v1), then run

    python examples/tournament_in_your_graph.py [--base-url URL]

The URL comes from --base-url, else $TTS_GRAPH_BASE_URL, else the default above.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Mapping
from typing import Any

from langgraph.graph import END, START, StateGraph

from tts_graph import Budget, SamplingParams, TTSState, VLLMBackend
from tts_graph.nodes import make_fanout_node, make_tournament_node
from tts_graph.verifiers import LLMJudge


def brief(state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The prompt: a system message that keeps drafts short, then the question."""
    return [
        {"role": "system", "content": "Answer briefly. End with 'Answer: <number>'."},
        {"role": "user", "content": state["question"]},
    ]


async def main(base_url: str) -> None:
    async with VLLMBackend(base_url) as backend:
        judge = LLMJudge(backend, sampling=SamplingParams(temperature=0.0, max_tokens=48))
        builder = StateGraph(TTSState)
        builder.add_node(
            "sample",
            make_fanout_node(backend, n=4, sampling=SamplingParams(max_tokens=32), prompt=brief),
        )
        builder.add_node("tournament", make_tournament_node(judge, mode="knockout", judgements=2))
        builder.add_edge(START, "sample")
        builder.add_edge("sample", "tournament")
        builder.add_edge("tournament", END)
        graph = builder.compile()

        final: dict[str, Any] = {}
        inputs: TTSState = {"question": "What is 8+7+6?", "budget": Budget(max_calls=10)}
        async for mode, chunk in graph.astream(inputs, stream_mode=["custom", "values"]):
            if mode == "custom":
                print("decision:", chunk["tts_graph"])
            else:
                final = chunk
        drafts, calls = len(final["candidates"]), final["usage"].calls
        print(f"{final['answer']!r} won among {drafts} drafts ({calls} calls)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--base-url", default=os.environ.get("TTS_GRAPH_BASE_URL", "http://127.0.0.1:8000/v1")
    )
    asyncio.run(main(parser.parse_args().base_url))

"""Test-time scaling inside a conversation: a `MessagesState` graph whose state mixes in
`CandidatesState`, with the library's nodes in it. The conversation is the prompt (its own system
message included), and the chosen response is appended to it as an `AIMessage` that carries the
decisions behind it (`response_metadata["tts_graph"]`) and the run's usage (`usage_metadata`).

Start a server with `tts-graph serve` (it listens on http://127.0.0.1:8000/v1), then run

    python examples/messages_graph.py [--base-url URL]

The URL comes from --base-url, else $TTS_GRAPH_BASE_URL, else the default above. Every node's
decision is printed as it streams.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from tts_graph import Budget, CandidatesState, SamplingParams, VLLMBackend
from tts_graph.nodes import make_fanout_node, make_select_node


class State(MessagesState, CandidatesState):
    """An agent's conversation plus the keys the nodes need (tts_graph.ChatState is the same)."""


def build(backend: VLLMBackend) -> Any:
    builder = StateGraph(State)
    builder.add_node(
        "sample", make_fanout_node(backend, n=4, sampling=SamplingParams(max_tokens=48))
    )
    builder.add_node("vote", make_select_node(select="majority"))
    builder.add_edge(START, "sample")
    builder.add_edge("sample", "vote")
    builder.add_edge("vote", END)
    return builder.compile()


async def turn(graph: Any, messages: list[AnyMessage]) -> list[AnyMessage]:
    final: dict[str, Any] = {}
    inputs = {"messages": messages, "budget": Budget(max_total_tokens=1_500)}
    async for mode, chunk in graph.astream(inputs, stream_mode=["custom", "values"]):
        if mode == "custom":
            print("decision:", chunk["tts_graph"])
        else:
            final = chunk
    reply = final["messages"][-1]
    assert isinstance(reply, AIMessage)
    meta = reply.response_metadata["tts_graph"]
    print(f"reply: {reply.text!r} (answer {meta['answer']!r}, {reply.usage_metadata})")
    return list(final["messages"])


async def main(base_url: str) -> None:
    async with VLLMBackend(base_url) as backend:
        graph = build(backend)
        conversation: list[AnyMessage] = [
            SystemMessage("Answer briefly. End with 'Answer: <number>'."),
            HumanMessage("What is 7+5?"),
        ]
        conversation = await turn(graph, conversation)
        # The next turn sends the whole conversation again, the chosen reply included.
        conversation = await turn(graph, [*conversation, HumanMessage("And 3 more than that?")])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--base-url", default=os.environ.get("TTS_GRAPH_BASE_URL", "http://127.0.0.1:8000/v1")
    )
    asyncio.run(main(parser.parse_args().base_url))

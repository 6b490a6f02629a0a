"""Test-time scaling for an agent you already have: swap its chat model for
`TTSChatModel.best_of_n(...)`. Every model call of the agent then samples n responses from one
request and answers with the majority: tool calls are voted on like answers and kept intact, so
the agent's tools run as before.

Start a server whose model calls tools with `tts-graph serve --model qwen2.5-coder-0.5b` (it
listens on http://127.0.0.1:8000/v1), then run

    python examples/agent_with_tts_chat_model.py [--base-url URL]

The URL comes from --base-url, else $TTS_GRAPH_BASE_URL, else the default above. The default
`tts-graph serve` model (SmolLM2-135M) cannot call tools, and its server refuses requests that
offer them: the example then says so and runs the same agent without tools. Either way it prints
every decision behind each model call and what the agent did.
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, tool

from tts_graph import BackendError, Budget, SamplingParams, TTSChatModel, VLLMBackend

SYSTEM = "You are a calculator. To add two numbers, call the add tool."


# return_direct: the tool's result is the answer, so the agent stops after one model call
# instead of asking a small model to restate it.
@tool(return_direct=True)
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


async def run_agent(model: TTSChatModel, tools: list[BaseTool]) -> None:
    agent = create_agent(model, tools=tools, system_prompt=SYSTEM)
    question = HumanMessage("What is 1234 + 4321?")
    # The best-of-N graph runs inside the agent's model node: subgraphs=True brings its custom
    # events (each node's decision) into the agent's stream.
    async for namespace, mode, chunk in agent.astream(
        {"messages": [question]}, stream_mode=["custom", "updates"], subgraphs=True
    ):
        if mode == "custom":
            print("decision:", chunk["tts_graph"])
        elif not namespace:  # the agent's own steps, not the graph's inside its model
            for update in chunk.values():
                for message in (update or {}).get("messages", []):
                    describe(message)


def describe(message: Any) -> None:
    if isinstance(message, AIMessage) and message.tool_calls:
        for call in message.tool_calls:
            print(f"agent: calls {call['name']}({call['args']})")
    elif isinstance(message, AIMessage):
        print(f"agent: answers {message.text!r}")
    elif isinstance(message, ToolMessage):
        print(f"tool {message.name}: returns {message.content!r}")


async def main(base_url: str) -> None:
    async with VLLMBackend(base_url) as backend:
        # The one line that changes in an existing agent: its model.
        model = TTSChatModel.best_of_n(
            backend,
            n=3,
            sampling=SamplingParams(temperature=0.7, max_tokens=64),
            budget=Budget(max_total_tokens=4_000),
        )
        try:
            await run_agent(model, [add])
        except BackendError as exc:
            if exc.status != 400:
                raise
            print(f"the server refused the tool: {exc}")
            print("(`tts-graph serve --model qwen2.5-coder-0.5b` serves a model that calls tools)")
            print("the same agent without the tool:")
            await run_agent(model, [])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--base-url", default=os.environ.get("TTS_GRAPH_BASE_URL", "http://127.0.0.1:8000/v1")
    )
    asyncio.run(main(parser.parse_args().base_url))

"""Internal scaling: ask the server for a thinking budget of 64 tokens over 3 runs, then vote.
A server without a reasoning parser (like the embedded one) refuses the control; the node then
falls back to client-side budget forcing and says so in its decision.

    .venv/bin/python examples/internal_thinking.py [--base-url http://127.0.0.1:8000/v1]
"""

from langgraph.graph import END, START, StateGraph

from tts_graph import TTSState, VLLMBackend
from tts_graph.nodes import make_select_node
from tts_graph.nodes.thinking import make_thinking_node

from _run import run, stream


async def main(base_url: str) -> None:
    backend = VLLMBackend(base_url)
    builder = StateGraph(TTSState)
    builder.add_node(
        "think", make_thinking_node(backend, n=3, thinking_budget=64, answer_max_tokens=24)
    )
    builder.add_node("vote", make_select_node())
    builder.add_edge(START, "think")
    builder.add_edge("think", "vote")
    builder.add_edge("vote", END)
    final = await stream(builder.compile(), {"question": "What is 8+15?"})
    print("answer:", final["answer"])
    await backend.aclose()


if __name__ == "__main__":
    run(main)

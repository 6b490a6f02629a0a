"""Budget forcing (s1): make the model think at least 80 tokens ("Wait" when it stops early) and
at most 160, then force a final answer. The embedded model has no thinking markers of its own:
the prompt asks it to use <think> ... </think>, and the decision says if it ignores them.

    .venv/bin/python examples/budget_forcing.py [--base-url http://127.0.0.1:8000/v1]
"""

from langgraph.graph import END, START, StateGraph

from tts_graph import TTSState, VLLMBackend
from tts_graph.nodes import make_select_node
from tts_graph.nodes.forcing import make_budget_forcing_node

from _run import run, stream


async def main(base_url: str) -> None:
    backend = VLLMBackend(base_url)
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
    final = await stream(builder.compile(), {"question": "What is 12+19?"})
    for c in final["candidates"]:
        print(c.index, c.metadata["forcing"])
    print("answer:", final["answer"])
    await backend.aclose()


if __name__ == "__main__":
    run(main)

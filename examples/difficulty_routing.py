"""Estimate a question's difficulty with a cheap probe, then route: easy questions take the
probe's majority answer, hard ones get 8 more samples. The probe's samples are kept as candidates.

    .venv/bin/python examples/difficulty_routing.py [--base-url http://127.0.0.1:8000/v1]
"""

from typing import Any, Literal

from langgraph.graph import END, START, StateGraph

from tts_graph import SamplingParams, TTSState, VLLMBackend
from tts_graph.nodes import make_fanout_node, make_select_node
from tts_graph.nodes.difficulty import make_difficulty_node

from _run import run, stream


def route(state: dict[str, Any]) -> Literal["more", "vote"]:
    return "vote" if state["difficulty"]["bin"] == "easy" else "more"


async def main(base_url: str) -> None:
    backend = VLLMBackend(base_url)
    short = SamplingParams(temperature=0.7, max_tokens=64, logprobs=True)
    builder = StateGraph(TTSState)
    builder.add_node("probe", make_difficulty_node(backend, n=4, sampling=short))
    builder.add_node("more", make_fanout_node(backend, n=8, sampling=short))
    builder.add_node("vote", make_select_node())
    builder.add_edge(START, "probe")
    builder.add_conditional_edges("probe", route)
    builder.add_edge("more", "vote")
    builder.add_edge("vote", END)
    final = await stream(builder.compile(), {"question": "What is 23+58+11?"})
    print(f"answer {final['answer']!r} from {len(final['candidates'])} candidates")
    await backend.aclose()


if __name__ == "__main__":
    run(main)

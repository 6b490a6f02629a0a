"""Self-refine inside your own graph: draft, critique, revise (at most two rounds), stopping when
the critique says the draft is correct.

    .venv/bin/python examples/self_refine.py [--base-url http://127.0.0.1:8000/v1]
"""

from langgraph.graph import END, START, StateGraph

from tts_graph import SamplingParams, TTSState, VLLMBackend
from tts_graph.nodes.revision import make_self_refine_node

from _run import run, stream


async def main(base_url: str) -> None:
    backend = VLLMBackend(base_url)
    builder = StateGraph(TTSState)
    builder.add_node(
        "refine",
        make_self_refine_node(
            backend, rounds=2, sampling=SamplingParams(temperature=0.7, max_tokens=64)
        ),
    )
    builder.add_edge(START, "refine")
    builder.add_edge("refine", END)
    final = await stream(builder.compile(), {"question": "What is 14+27?"})
    print("final draft:", final["response"])
    await backend.aclose()


if __name__ == "__main__":
    run(main)

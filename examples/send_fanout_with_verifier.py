"""Fan out with one LangGraph Send per candidate (two temperatures), verify each candidate as soon
as it exists, then pick the best verified one.

    .venv/bin/python examples/send_fanout_with_verifier.py [--base-url http://127.0.0.1:8000/v1]
"""

from langgraph.graph import END, START, StateGraph

from tts_graph import SamplingParams, TTSState, VLLMBackend
from tts_graph.nodes import Branch, add_send_fanout, make_select_node
from tts_graph.verifiers.math import NumericVerifier

from _run import run, stream


async def main(base_url: str) -> None:
    backend = VLLMBackend(base_url)
    builder = StateGraph(TTSState)
    add_send_fanout(
        builder, backend, n=6, branches=[Branch(temperature=0.2), Branch(temperature=1.0)],
        sampling=SamplingParams(max_tokens=48, logprobs=True), verifier=NumericVerifier(),
        source=START, target="select",
    )  # fmt: skip
    builder.add_node("select", make_select_node(select="best_score"))
    builder.add_edge("select", END)
    final = await stream(builder.compile(), {"question": "What is 9+6?", "reference": "15"})
    for c in final["candidates"]:
        print(c.index, c.metadata["temperature"], c.answer, c.verdict.passed)
    print("answer:", final["answer"])
    await backend.aclose()


if __name__ == "__main__":
    run(main)

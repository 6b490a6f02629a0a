"""Self-consistency that stops sampling once the vote is settled, inside your own graph.

    .venv/bin/python examples/early_stop_self_consistency.py [--base-url http://127.0.0.1:8000/v1]

Without --base-url it starts the embedded vLLM server (about a minute) and stops it afterwards.
Samples come in small rounds; after each round the custom stream shows the votes, the Beta
statistic (the chance the leading answer really leads) and whether sampling goes on. An easy
question usually stops after 4 of the 8 allowed samples; the skipped ones are compute saved.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from tts_graph import Budget, SamplingParams, TTSState, VLLMBackend
from tts_graph.nodes import make_select_node
from tts_graph.nodes.consistency import make_consistency_node
from tts_graph.prompts import question_prompt

from _run import run, stream


async def main(base_url: str) -> None:
    backend = VLLMBackend(base_url)
    builder = StateGraph(TTSState)
    builder.add_node(
        "sample",
        make_consistency_node(
            backend,
            stop="beta",
            max_samples=8,
            sampling=SamplingParams(max_tokens=32),
            prompt=question_prompt(system="Answer briefly. End with 'Answer: <number>'."),
        ),
    )
    builder.add_node("vote", make_select_node(select="majority"))
    builder.add_edge(START, "sample")
    builder.add_edge("sample", "vote")
    builder.add_edge("vote", END)
    final = await stream(
        builder.compile(), {"question": "What is 7+5?", "budget": Budget(max_total_tokens=4_000)}
    )
    usage = final["usage"]
    print(
        f"answer {final['answer']!r} from {len(final['candidates'])} samples, {usage.calls} calls"
    )
    await backend.aclose()


if __name__ == "__main__":
    run(main)

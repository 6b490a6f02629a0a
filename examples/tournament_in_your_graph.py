"""Let an LLM judge pick among sampled drafts with a knockout tournament, inside your own graph.

    .venv/bin/python examples/tournament_in_your_graph.py [--base-url http://127.0.0.1:8000/v1]

Without --base-url it starts the embedded vLLM server (about a minute) and stops it afterwards.
The custom stream shows what each node decided: the drafts sampled, then the bracket (who met
whom, the votes, byes and ties) and the judge's consistency across the two presentation orders.
The embedded 135M model is a poor judge: it rarely ends with a "Winner:" line in 48 tokens, so
expect no votes and seeded tie-breaks here; a larger model on a GPU makes the same code useful.
"""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from tts_graph import Budget, SamplingParams, TTSState, VLLMBackend
from tts_graph.nodes import make_fanout_node
from tts_graph.nodes.tournament import make_tournament_node
from tts_graph.prompts import question_prompt
from tts_graph.verifiers.judge import LLMJudge

from _run import run, stream


async def main(base_url: str) -> None:
    backend = VLLMBackend(base_url)
    judge = LLMJudge(backend, sampling=SamplingParams(temperature=0.0, max_tokens=48))
    brief = question_prompt(system="Answer briefly. End with 'Answer: <number>'.")
    builder = StateGraph(TTSState)
    builder.add_node(
        "sample",
        make_fanout_node(backend, n=4, sampling=SamplingParams(max_tokens=32), prompt=brief),
    )
    builder.add_node("tournament", make_tournament_node(judge, mode="knockout", judgements=2))
    builder.add_edge(START, "sample")
    builder.add_edge("sample", "tournament")
    builder.add_edge("tournament", END)
    final = await stream(
        builder.compile(), {"question": "What is 8+7+6?", "budget": Budget(max_calls=10)}
    )
    usage = final["usage"]
    print(f"{final['answer']!r} won among {len(final['candidates'])} drafts ({usage.calls} calls)")
    await backend.aclose()


if __name__ == "__main__":
    run(main)

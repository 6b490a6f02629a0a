"""Let an LLM judge pick among sampled drafts with a knockout tournament, inside your own graph.

    .venv/bin/python examples/tournament_in_your_graph.py [--base-url http://127.0.0.1:8000/v1]

Without --base-url it starts the embedded vLLM server (about a minute) and stops it afterwards.
The custom stream shows what each node decided: the drafts sampled, then the bracket (who met
whom, the votes, byes and ties) and the judge's consistency across the two presentation orders.
The embedded 135M model is a poor judge: it rarely ends with a "Winner:" line in 48 tokens, so
expect no votes and seeded tie-breaks here; a larger model on a GPU makes the same code useful.
"""

from __future__ import annotations

import argparse
import asyncio
import operator
from typing import Annotated, Any

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from tts_graph import (
    Budget,
    Candidate,
    SamplingParams,
    StateKeys,
    Usage,
    VLLMBackend,
    VLLMServer,
    make_fanout_node,
)
from tts_graph.budget import add_usage
from tts_graph.nodes.tournament import make_tournament_node
from tts_graph.prompts import question_prompt
from tts_graph.state import merge_candidates
from tts_graph.verifiers.judge import LLMJudge


class MyState(TypedDict, total=False):
    """An existing agent's state: the question lives under "task", not "question"."""

    task: str
    budget: Budget
    usage: Annotated[Usage, add_usage]
    drafts: Annotated[list[Candidate], merge_candidates]
    answer: str | None
    response: str | None
    decisions: Annotated[list[dict[str, Any]], operator.add]
    report: str


def report(state: MyState) -> dict[str, Any]:
    usage = state["usage"]
    return {
        "report": f"{state['answer']!r} won among {len(state['drafts'])} drafts "
        f"({usage.calls} calls, {usage.total_tokens} tokens)"
    }


async def main(base_url: str) -> None:
    backend = VLLMBackend(base_url)
    keys = StateKeys(question="task", candidates="drafts")
    judge = LLMJudge(backend, sampling=SamplingParams(temperature=0.0, max_tokens=48))
    builder = StateGraph(MyState)
    brief = question_prompt(system="Answer briefly. End with 'Answer: <number>'.", key="task")
    sampling = SamplingParams(max_tokens=32)
    builder.add_node(
        "sample", make_fanout_node(backend, n=4, sampling=sampling, prompt=brief, keys=keys)
    )
    builder.add_node("tournament", make_tournament_node(judge, mode="knockout", k=2, keys=keys))
    builder.add_node("report", report)
    builder.add_edge(START, "sample")
    builder.add_edge("sample", "tournament")
    builder.add_edge("tournament", "report")
    builder.add_edge("report", END)
    graph = builder.compile()

    inputs: MyState = {"task": "What is 8+7+6?", "budget": Budget(max_calls=10)}
    async for mode, chunk in graph.astream(inputs, stream_mode=["custom", "values"]):
        if mode == "custom":
            print("decision:", chunk["tts_graph"])
        elif "report" in chunk:
            print(chunk["report"])
    await backend.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url")
    args = parser.parse_args()
    if args.base_url:
        asyncio.run(main(args.base_url))
    else:
        with VLLMServer() as server:
            asyncio.run(main(server.base_url))

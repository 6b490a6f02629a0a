"""Drop best-of-N into your own LangGraph graph, with your own state keys and a budget.

    .venv/bin/python examples/best_of_n_in_your_graph.py [--base-url http://127.0.0.1:8000/v1]

Without --base-url it starts the embedded vLLM server (about a minute) and stops it afterwards.
The custom stream shows what each node decided.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from tts_graph import Budget, Candidate, SamplingParams, StateKeys, Usage, VLLMBackend
from tts_graph.budget import add_usage
from tts_graph.ledger import Ledger, share_ledger
from tts_graph.nodes import make_fanout_node, make_select_node
from tts_graph.state import merge_candidates

from _run import run, stream


class MyState(TypedDict, total=False):
    """An existing agent's state: the question lives under "task", not "question"."""

    task: str
    budget: Budget
    ledger: Annotated[Ledger, share_ledger]  # the run's accounting, shared by its nodes
    usage: Annotated[Usage, add_usage]
    drafts: Annotated[list[Candidate], merge_candidates]
    answer: str | None
    response: str | None
    decisions: Annotated[list[dict[str, Any]], operator.add]
    report: str


def report(state: MyState) -> dict[str, Any]:
    usage = state["usage"]
    return {
        "report": f"{state['answer']!r} from {len(state['drafts'])} drafts, {usage.total_tokens} tokens"
    }


async def main(base_url: str) -> None:
    backend = VLLMBackend(base_url)
    keys = StateKeys(question="task", candidates="drafts")
    builder = StateGraph(MyState)
    builder.add_node(
        "sample",
        make_fanout_node(
            backend, n=6, sampling=SamplingParams(max_tokens=64, logprobs=True), keys=keys
        ),
    )
    builder.add_node("vote", make_select_node(select="majority", keys=keys))
    builder.add_node("report", report)
    builder.add_edge(START, "sample")
    builder.add_edge("sample", "vote")
    builder.add_edge("vote", "report")
    builder.add_edge("report", END)
    graph = builder.compile()

    inputs: MyState = {"task": "What is 12+30?", "budget": Budget(max_total_tokens=2_000)}
    final = await stream(graph, dict(inputs))
    print(final["report"])
    await backend.aclose()


if __name__ == "__main__":
    run(main)

"""A test-time-scaling graph as a LangChain tool, so an agent decides when to think harder."""

from __future__ import annotations

from typing import Any

from langchain_core.runnables import Runnable
from langchain_core.tools import StructuredTool

from tts_graph.budget import Budget

__all__ = ["graph_as_tool"]


def graph_as_tool(
    graph: Runnable[Any, Any],
    *,
    name: str = "think_harder",
    description: str = (
        "Answer a hard, self-contained question by sampling several solutions and choosing the "
        "best. Give the full question; it returns the chosen answer."
    ),
    budget: Budget | None = None,
) -> StructuredTool:
    """``graph`` (compiled, over a ``question``, such as :class:`~tts_graph.state.TTSState`'s
    graphs) as a tool that takes ``question`` and returns the chosen response; the answer, usage
    and decisions are its artifact.

    >>> tool = graph_as_tool(create_best_of_n_graph(backend, n=8).compile())  # doctest: +SKIP
    >>> agent = create_agent(model, tools=[tool])  # doctest: +SKIP
    """

    def summary(state: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        response = state.get("response")
        content = response if response is not None else "No answer within the budget."
        usage = state.get("usage")
        artifact = {
            "answer": state.get("answer"),
            "usage": usage.to_dict() if usage is not None else {},
            "decisions": state.get("decisions") or [],
        }
        return content, artifact

    def run(question: str) -> tuple[str, dict[str, Any]]:
        return summary(graph.invoke({"question": question, "budget": budget}))

    async def arun(question: str) -> tuple[str, dict[str, Any]]:
        return summary(await graph.ainvoke({"question": question, "budget": budget}))

    return StructuredTool.from_function(
        func=run,
        coroutine=arun,
        name=name,
        description=description,
        response_format="content_and_artifact",
    )

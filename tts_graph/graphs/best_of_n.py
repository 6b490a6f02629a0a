"""Best-of-N: sample N candidates in one request, then choose one."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from tts_graph.backends.base import Backend, SamplingParams
from tts_graph.nodes.fanout import make_fanout_node
from tts_graph.nodes.select import SelectRule, make_select_node
from tts_graph.prompts import PromptFn
from tts_graph.state import TTSState

__all__ = ["create_best_of_n_graph"]


def create_best_of_n_graph(
    backend: Backend,
    *,
    n: int = 8,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    select: SelectRule = "majority",
    prompt: PromptFn | None = None,
) -> StateGraph[TTSState]:
    """Build (uncompiled) ``START → fanout → select → END``.

    ``select="majority"`` votes over the candidates' final answers (self-consistency);
    ``"best_score"`` takes the highest-scored candidate (mean token logprob unless a verifier
    scored them). Invalid options raise :class:`~tts_graph.errors.ConfigError` here, at build time.

    >>> graph = create_best_of_n_graph(backend, n=8).compile()  # doctest: +SKIP
    >>> result = await graph.ainvoke({"question": "What is 7+5?"})
    >>> result["answer"]
    '12'
    """
    builder: StateGraph[TTSState] = StateGraph(TTSState)
    # mypy cannot match a TypedDict against langgraph's TypedDict-like protocol bound, so
    # add_node's overloads never fit a typed node; the nodes take any state mapping.
    builder.add_node(  # type: ignore[call-overload]
        "fanout", make_fanout_node(backend, n=n, sampling=sampling, seed=seed, prompt=prompt)
    )
    builder.add_node("select", make_select_node(rule=select, strategy="best_of_n"))  # type: ignore[call-overload]
    builder.add_edge(START, "fanout")
    builder.add_edge("fanout", "select")
    builder.add_edge("select", END)
    return builder

"""Best-of-N: sample N candidates in one request, optionally verify them, then choose one."""

from __future__ import annotations

from langgraph.graph import END, START, StateGraph

from tts_graph.backends.base import Backend, SamplingParams
from tts_graph.nodes.fanout import make_fanout_node
from tts_graph.nodes.select import SelectRule, make_select_node
from tts_graph.nodes.verify import make_verify_node
from tts_graph.prompts import PromptFn
from tts_graph.state import TTSState, as_node
from tts_graph.verifiers.base import Verifier

__all__ = ["create_best_of_n_graph"]


def create_best_of_n_graph(
    backend: Backend,
    *,
    n: int = 8,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    verifier: Verifier | None = None,
    select: SelectRule | None = None,
    prompt: PromptFn | None = None,
) -> StateGraph[TTSState]:
    """Build (uncompiled) ``START → fanout [→ verify] → select → END``.

    Without a verifier the answer is chosen by majority vote over the candidates' final answers
    (self-consistency); with one, by the best verifier score (``select="best_score"``, ties to the
    lowest index). ``select`` overrides either default. Invalid options raise
    :class:`~tts_graph.errors.ConfigError` here, at build time.

    >>> graph = create_best_of_n_graph(backend, n=8).compile()  # doctest: +SKIP
    >>> result = await graph.ainvoke({"question": "What is 7+5?"})
    >>> result["answer"]
    '12'
    """
    rule: SelectRule = select or ("best_score" if verifier is not None else "majority")
    builder: StateGraph[TTSState] = StateGraph(TTSState)
    builder.add_node(
        "fanout",
        as_node(make_fanout_node(backend, n=n, sampling=sampling, seed=seed, prompt=prompt)),
    )
    builder.add_node("select", as_node(make_select_node(rule=rule, strategy="best_of_n")))
    builder.add_edge(START, "fanout")
    if verifier is not None:
        builder.add_node("verify", as_node(make_verify_node(verifier)))
        builder.add_edge("fanout", "verify")
        builder.add_edge("verify", "select")
    else:
        builder.add_edge("fanout", "select")
    builder.add_edge("select", END)
    return builder

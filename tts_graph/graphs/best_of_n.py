"""Best-of-N: sample N candidates in one request, optionally verify them, then choose one."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from tts_graph.backends.base import Backend, SamplingParams
from tts_graph.graphs._schema import check_schema
from tts_graph.nodes.fanout import make_fanout_node
from tts_graph.nodes.select import SelectRule, make_select_node
from tts_graph.nodes.start import make_start_node
from tts_graph.nodes.verify import make_verify_node
from tts_graph.prompts import PromptFn
from tts_graph.state import StateKeys, TTSState
from tts_graph.verifiers.answer import AnswerExtractor, extract_answer
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
    extract: AnswerExtractor | str = extract_answer,
    state_schema: Any = TTSState,
    keys: StateKeys = StateKeys(),
) -> StateGraph[Any]:
    """Build (uncompiled) ``START → start → fanout [→ verify] → select → END`` (``start``
    clears what earlier runs on a checkpointed thread left behind: see
    :mod:`tts_graph.nodes.start`).

    Without a verifier the answer is chosen by majority vote over the candidates' final answers
    (self-consistency); with one, by the best verifier score (``select="best_score"``, ties to the
    lowest index). ``select`` overrides either default. ``state_schema`` may be your own (for
    example ``class State(MessagesState, CandidatesState)``: the conversation is the prompt and
    the answer is appended to it); the keys the nodes need are checked here. Invalid options
    raise :class:`~tts_graph.errors.ConfigError` here, at build time.

    >>> graph = create_best_of_n_graph(backend, n=8).compile()  # doctest: +SKIP
    >>> result = await graph.ainvoke({"question": "What is 7+5?"})
    >>> result["answer"]
    '12'
    """
    check_schema(state_schema, keys, "create_best_of_n_graph")
    rule: SelectRule = select or ("best_score" if verifier is not None else "majority")
    builder: StateGraph[Any] = StateGraph(state_schema)
    builder.add_node(
        "fanout",
        make_fanout_node(
            backend, n=n, sampling=sampling, seed=seed, prompt=prompt, extract=extract, keys=keys
        ),
    )
    builder.add_node("select", make_select_node(select=rule, strategy="best_of_n", keys=keys))
    builder.add_node("start", make_start_node(keys=keys))
    builder.add_edge(START, "start")
    builder.add_edge("start", "fanout")
    if verifier is not None:
        builder.add_node("verify", make_verify_node(verifier, keys=keys))
        builder.add_edge("fanout", "verify")
        builder.add_edge("verify", "select")
    else:
        builder.add_edge("fanout", "select")
    builder.add_edge("select", END)
    return builder

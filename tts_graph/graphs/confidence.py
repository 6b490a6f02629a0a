"""Confidence-filtered voting (DeepConf): sample traces with their token logprobs, keep or stop
them by confidence, and vote with confidence weights."""

from __future__ import annotations

from typing import Any

from langgraph.graph import END, START, StateGraph

from tts_graph.backends.base import Backend, SamplingParams
from tts_graph.graphs._schema import check_schema
from tts_graph.nodes.confidence import (
    DEFAULT_WINDOW,
    ConfidenceMode,
    TraceConfidence,
    make_confidence_node,
)
from tts_graph.nodes.start import make_start_node
from tts_graph.prompts import PromptFn
from tts_graph.state import StateKeys, TTSState
from tts_graph.verifiers.answer import AnswerExtractor, extract_answer

__all__ = ["create_confidence_graph"]


def create_confidence_graph(
    backend: Backend,
    *,
    mode: ConfidenceMode = "offline",
    n: int = 16,
    keep_top: float = 0.9,
    confidence: TraceConfidence = "lowest",
    window: int = DEFAULT_WINDOW,
    top_logprobs: int = 20,
    warmup: int | None = None,
    concurrency: int | None = None,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str = extract_answer,
    state_schema: Any = TTSState,
    keys: StateKeys = StateKeys(),
) -> StateGraph[Any]:
    """Build (uncompiled) ``START → start → confidence → END`` (``start`` clears what earlier
    runs on a checkpointed thread left behind: see :mod:`tts_graph.nodes.start`).

    ``mode="offline"`` samples ``n`` traces and votes over the most confident ``keep_top``
    fraction; ``mode="online"`` lets ``warmup`` traces set a confidence threshold and stops
    every later trace whose confidence falls below it. The options are those of
    :func:`~tts_graph.nodes.confidence.make_confidence_node`, which documents them; the graph
    writes ``strategy="confidence"``. ``state_schema`` may be your own (for example
    ``class State(MessagesState, CandidatesState)``: the conversation is the prompt and the
    answer is appended to it); the keys the nodes need are checked here. Invalid options raise
    :class:`~tts_graph.errors.ConfigError` here, at build time.

    >>> graph = create_confidence_graph(backend, mode="online", keep_top=0.1).compile()  # doctest: +SKIP
    >>> result = await graph.ainvoke({"question": "What is 7+5?"})  # doctest: +SKIP
    >>> result["answer"], result["decisions"][-1]["kind"]  # doctest: +SKIP
    ('12', 'confidence')
    """
    check_schema(state_schema, keys, "create_confidence_graph")
    node = make_confidence_node(
        backend, mode=mode, n=n, keep_top=keep_top, confidence=confidence, window=window,
        top_logprobs=top_logprobs, warmup=warmup, concurrency=concurrency, sampling=sampling,
        seed=seed, prompt=prompt, extract=extract, strategy="confidence", keys=keys,
    )  # fmt: skip
    builder: StateGraph[Any] = StateGraph(state_schema)
    builder.add_node("start", make_start_node(keys=keys))
    builder.add_node("confidence", node)
    builder.add_edge(START, "start")
    builder.add_edge("start", "confidence")
    builder.add_edge("confidence", END)
    return builder

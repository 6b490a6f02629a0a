"""Beam search and DVTS over reasoning steps scored by a process reward model.

Both graphs are ``START → start → <search> → END``: the search node
(:func:`~tts_graph.nodes.search.make_step_search_node`) generates step by step, prunes with the
PRM's scores, adds the final candidates to state and chooses the answer itself (``select``,
default ``"best_score"``), so no separate select node follows. The search node calls the model,
so it gets the graph's ``policies`` (retry, timeout, cache).
"""

from __future__ import annotations

from typing import Any

from langgraph.graph import StateGraph

from tts_graph.backends.base import Backend, SamplingParams
from tts_graph.graphs._build import Policies, Steps
from tts_graph.nodes.search import SearchMode, make_step_search_node
from tts_graph.nodes.select import SelectOption
from tts_graph.prompts import PromptFn
from tts_graph.state import StateKeys, TTSState
from tts_graph.verifiers.answer import AnswerExtractor, extract_answer
from tts_graph.verifiers.base import Verifier
from tts_graph.verifiers.reward import Aggregate

__all__ = ["create_beam_search_graph", "create_dvts_graph"]


def _create(
    factory: str,
    mode: SearchMode,
    backend: Backend,
    prm: Verifier,
    *,
    policies: Policies | None,
    state_schema: Any,
    keys: StateKeys,
    **options: Any,
) -> StateGraph[Any]:
    steps = Steps(factory, state_schema, keys, policies)
    node = "beam_search" if mode == "beam" else "dvts"
    steps.model(
        node,
        make_step_search_node(
            backend, prm, mode=mode, strategy=node, keys=keys, name=node, **options
        ),
    )
    return steps.done()


def create_beam_search_graph(
    backend: Backend,
    prm: Verifier,
    *,
    n: int = 8,
    width: int = 4,
    max_steps: int = 40,
    separator: str = "\n\n",
    step_max_tokens: int | None = None,
    aggregate: Aggregate | None = None,
    stop_at_answer: bool = True,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str = extract_answer,
    select: SelectOption = "best_score",
    policies: Policies | None = None,
    state_schema: Any = TTSState,
    keys: StateKeys = StateKeys(),
) -> StateGraph[Any]:
    """Build (uncompiled) ``START → start → beam_search → END``: PRM-guided beam search over
    reasoning steps that keeps the ``n / width`` best partial solutions each step and continues
    each ``width`` times (the options are those of
    :func:`~tts_graph.nodes.search.make_step_search_node`). ``state_schema`` may be your own
    (``class State(MessagesState, CandidatesState)``: the conversation is the prompt and the
    answer is appended to it); its keys are checked here, as are the options. ``policies``:
    LangGraph's retry, timeout and cache policies for the search node
    (:class:`~tts_graph.graphs.Policies`).

    >>> prm = ProcessRewardVerifier("http://127.0.0.1:8001/v1")  # doctest: +SKIP
    >>> graph = create_beam_search_graph(backend, prm, n=8, width=4).compile()  # doctest: +SKIP
    >>> (await graph.ainvoke({"question": "What is 7+5?"}))["answer"]  # doctest: +SKIP
    '12'
    """
    return _create(
        "create_beam_search_graph", "beam", backend, prm, n=n, width=width,
        max_steps=max_steps, separator=separator, step_max_tokens=step_max_tokens,
        aggregate=aggregate, stop_at_answer=stop_at_answer, sampling=sampling, seed=seed,
        prompt=prompt, extract=extract, select=select, policies=policies,
        state_schema=state_schema, keys=keys,
    )  # fmt: skip


def create_dvts_graph(
    backend: Backend,
    prm: Verifier,
    *,
    n: int = 8,
    width: int = 4,
    max_steps: int = 40,
    separator: str = "\n\n",
    step_max_tokens: int | None = None,
    aggregate: Aggregate | None = None,
    stop_at_answer: bool = True,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str = extract_answer,
    select: SelectOption = "best_score",
    policies: Policies | None = None,
    state_schema: Any = TTSState,
    keys: StateKeys = StateKeys(),
) -> StateGraph[Any]:
    """Build (uncompiled) ``START → start → dvts → END``: diverse verifier tree search, ``n /
    width`` independent subtrees, each continued ``width`` times per step and greedy on the
    PRM's score (the options are those of
    :func:`~tts_graph.nodes.search.make_step_search_node`). ``state_schema`` may be your own;
    its keys are checked here, as are the options. ``policies``: as for
    :func:`create_beam_search_graph`.

    >>> prm = ProcessRewardVerifier("http://127.0.0.1:8001/v1")  # doctest: +SKIP
    >>> graph = create_dvts_graph(backend, prm, n=8, width=4).compile()  # doctest: +SKIP
    >>> (await graph.ainvoke({"question": "What is 7+5?"}))["answer"]  # doctest: +SKIP
    '12'
    """
    return _create(
        "create_dvts_graph", "dvts", backend, prm, n=n, width=width, max_steps=max_steps,
        separator=separator, step_max_tokens=step_max_tokens, aggregate=aggregate,
        stop_at_answer=stop_at_answer, sampling=sampling, seed=seed, prompt=prompt,
        extract=extract, select=select, policies=policies, state_schema=state_schema,
        keys=keys,
    )  # fmt: skip

"""Budget forcing (s1): make the model think at least, and at most, so long; then vote."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langgraph.graph import StateGraph

from tts_graph.backends.base import Backend, Message, SamplingParams
from tts_graph.graphs._build import Policies, Steps
from tts_graph.nodes.forcing import ThinkingMarkers, make_budget_forcing_node
from tts_graph.nodes.select import SelectOption, make_select_node
from tts_graph.state import StateKeys, TTSState
from tts_graph.verifiers.answer import AnswerExtractor, extract_answer

__all__ = ["create_budget_forcing_graph"]


def create_budget_forcing_graph(
    backend: Backend,
    *,
    n: int = 1,
    min_thinking_tokens: int = 0,
    max_thinking_tokens: int = 512,
    max_waits: int = 2,
    wait: str = "Wait",
    markers: ThinkingMarkers = ThinkingMarkers(),
    answer_max_tokens: int = 64,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: Callable[[Mapping[str, Any]], Sequence[Message] | str] | None = None,
    extract: AnswerExtractor | str = extract_answer,
    select: SelectOption = "majority",
    policies: Policies | None = None,
    state_schema: Any = TTSState,
    keys: StateKeys = StateKeys(),
) -> StateGraph[Any]:
    """Build (uncompiled) ``START → start → budget_forcing → select → END``.

    ``n`` traces think for at least ``min_thinking_tokens`` ("Wait" is appended up to
    ``max_waits`` times when one stops early) and at most ``max_thinking_tokens`` (then the
    end marker and "Final Answer:" are forced), and the answers are voted on. See
    :func:`~tts_graph.nodes.forcing.make_budget_forcing_node`.

    >>> graph = create_budget_forcing_graph(backend, n=4, max_thinking_tokens=256)  # doctest: +SKIP
    """
    steps = Steps("create_budget_forcing_graph", state_schema, keys, policies)
    steps.model(
        "budget_forcing",
        make_budget_forcing_node(
            backend, n=n, min_thinking_tokens=min_thinking_tokens,
            max_thinking_tokens=max_thinking_tokens, max_waits=max_waits, wait=wait,
            markers=markers, answer_max_tokens=answer_max_tokens, sampling=sampling, seed=seed,
            prompt=prompt, extract=extract, keys=keys,
        ),
    )  # fmt: skip
    steps.step("select", make_select_node(select=select, strategy="budget_forcing", keys=keys))
    return steps.done()

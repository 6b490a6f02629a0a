"""Self-consistency with an early stop: sample until the vote is settled, then take the majority."""

from __future__ import annotations

from typing import Any

from langgraph.graph import StateGraph

from tts_graph.backends.base import Backend, SamplingParams
from tts_graph.graphs._build import Policies, Steps
from tts_graph.nodes.consistency import StopRule, make_consistency_node
from tts_graph.nodes.select import make_select_node
from tts_graph.prompts import PromptFn
from tts_graph.state import StateKeys, TTSState
from tts_graph.verifiers.answer import AnswerExtractor, extract_answer

__all__ = ["create_self_consistency_graph"]


def create_self_consistency_graph(
    backend: Backend,
    *,
    stop: StopRule = "beta",
    max_samples: int = 16,
    initial: int | None = None,
    threshold: float | None = None,
    concurrency: int | None = None,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str = extract_answer,
    policies: Policies | None = None,
    state_schema: Any = TTSState,
    keys: StateKeys = StateKeys(),
) -> StateGraph[Any]:
    """Build (uncompiled) ``START → start → consistency → select → END``.

    The consistency node samples concurrently and stops once ``stop`` holds (``"beta"``: the
    top answer stays on top with probability ``threshold``, default 0.95; ``"adaptive"``: it
    holds ``threshold`` of the votes, default 0.75, checked as the count doubles), cancelling
    the requests still running; at most ``max_samples``. Candidates already in state (a
    difficulty probe's) vote too. Then the majority answer is chosen. See
    :func:`~tts_graph.nodes.consistency.make_consistency_node` for every option.

    >>> graph = create_self_consistency_graph(backend, max_samples=16).compile()  # doctest: +SKIP
    """
    steps = Steps("create_self_consistency_graph", state_schema, keys, policies)
    steps.model(
        "consistency",
        make_consistency_node(
            backend, stop=stop, max_samples=max_samples, initial=initial, threshold=threshold,
            concurrency=concurrency, sampling=sampling, seed=seed, prompt=prompt,
            extract=extract, keys=keys,
        ),
    )  # fmt: skip
    steps.step(
        "select", make_select_node(select="majority", strategy="self_consistency", keys=keys)
    )
    return steps.done()

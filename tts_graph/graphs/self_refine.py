"""Self-refine: draft, critique (or verify), revise; the last draft is the answer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from langgraph.graph import StateGraph

from tts_graph.backends.base import Backend, SamplingParams
from tts_graph.graphs._build import Policies, Steps
from tts_graph.nodes.revision import CRITIQUE_PROMPT, REVISE_PROMPT, make_self_refine_node
from tts_graph.prompts import PromptFn
from tts_graph.state import StateKeys, TTSState
from tts_graph.verifiers.answer import AnswerExtractor, resolve_extractor
from tts_graph.verifiers.base import Verifier

__all__ = ["create_self_refine_graph"]


def create_self_refine_graph(
    backend: Backend,
    *,
    rounds: int = 2,
    verifier: Verifier | None = None,
    critique_prompt: str = CRITIQUE_PROMPT,
    revise_prompt: str = REVISE_PROMPT,
    says_correct: Callable[[str], bool] | None = None,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str | None = None,
    policies: Policies | None = None,
    state_schema: Any = TTSState,
    keys: StateKeys = StateKeys(),
) -> StateGraph[Any]:
    """Build (uncompiled) ``START → start → self_refine → END``.

    Up to ``rounds`` rounds of checking the draft (by ``verifier``, else by the model's own
    critique) and revising it; it stops early when the check passes or the budget runs out.
    Every draft is kept as a candidate and the last one is the answer. Nested in another graph
    (``candidates=`` of :func:`~tts_graph.graphs.best_of_n.create_best_of_n_graph`), it refines
    the best candidate it is given. See
    :func:`~tts_graph.nodes.revision.make_self_refine_node`.

    >>> graph = create_self_refine_graph(backend, rounds=2).compile()  # doctest: +SKIP
    """
    options: dict[str, Any] = {} if says_correct is None else {"says_correct": says_correct}
    extract = resolve_extractor(extract, verifier)
    steps = Steps("create_self_refine_graph", state_schema, keys, policies)
    steps.model(
        "self_refine",
        make_self_refine_node(
            backend, rounds=rounds, verifier=verifier, critique_prompt=critique_prompt,
            revise_prompt=revise_prompt, sampling=sampling, seed=seed, prompt=prompt,
            extract=extract, strategy="self_refine", keys=keys, **options,
        ),
    )  # fmt: skip
    return steps.done()

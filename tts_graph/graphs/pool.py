"""Choosing among a fixed pool of answers: no generation, only the choice (see
:mod:`tts_graph.nodes.pool`)."""

from __future__ import annotations

from typing import Any

from langgraph.graph import StateGraph

from tts_graph.graphs._build import Policies, Steps
from tts_graph.nodes.pool import make_pool_node
from tts_graph.nodes.select import SelectOption, make_select_node
from tts_graph.nodes.verify import make_verify_node
from tts_graph.state import StateKeys, TTSState
from tts_graph.verifiers.answer import AnswerExtractor, resolve_extractor
from tts_graph.verifiers.base import Verifier

__all__ = ["create_pool_graph"]


def create_pool_graph(
    *,
    n: int = 8,
    seed: int = 0,
    verifier: Verifier | None = None,
    select: SelectOption | None = None,
    extract: AnswerExtractor | str | None = None,
    policies: Policies | None = None,
    state_schema: Any = TTSState,
    keys: StateKeys = StateKeys(),
) -> StateGraph[Any]:
    """Build (uncompiled) ``START → start → pool [→ verify] → select → END``: ``n`` answers
    drawn from the input's ``pool`` (fixed texts: see :mod:`tts_graph.nodes.pool`), then chosen
    by ``select`` (majority vote by default; the best verifier score with a verifier).

    As ``candidates=`` of a tournament (or of best-of-N), it is the source the judge chooses
    from: ``create_tournament_graph(None, judge, candidates=create_pool_graph(n=8))``.

    >>> graph = create_pool_graph(n=8).compile()
    >>> result = await graph.ainvoke(  # doctest: +SKIP
    ...     {"question": "2+2?", "pool": ["Answer: 4", "Answer: 5", "Answer: 4"]})
    >>> result["answer"]  # doctest: +SKIP
    '4'
    """
    rule: SelectOption = select or ("best_score" if verifier is not None else "majority")
    extract = resolve_extractor(extract, verifier)
    steps = Steps("create_pool_graph", state_schema, keys, policies, writes=[keys.pool])
    steps.step("pool", make_pool_node(n=n, seed=seed, extract=extract, keys=keys))
    if verifier is not None:
        steps.step("verify", make_verify_node(verifier, keys=keys))
    steps.step("select", make_select_node(select=rule, strategy="pool", keys=keys))
    return steps.done()

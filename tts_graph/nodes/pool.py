"""Candidates from a fixed pool: answers that already exist (another system's, a benchmark's
recorded model answers, a human's), given with the input under ``pool`` as texts, so selectors,
verifiers and judges can choose among them with no generation.

The node draws ``n`` texts from the pool without replacement, in an order fixed by ``seed`` (a
pool of ``n`` or fewer is taken whole), and adds them as candidates with their extracted answers.
It makes no request and spends nothing, so strategies over a pool are compared on the choice
alone: majority over eight pooled answers against a knockout tournament over the same eight.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from tts_graph.candidate import Candidate, next_index
from tts_graph.errors import ConfigError, check_count
from tts_graph.nodes._node import Node, make_node, require_keys
from tts_graph.nodes._record import decision
from tts_graph.state import StateKeys
from tts_graph.verifiers.answer import AnswerExtractor, extract_answer, resolve_extractor

__all__ = ["draw_from_pool", "make_pool_node"]


def draw_from_pool(pool: list[str], n: int, seed: int) -> list[int]:
    """The positions of the ``n`` pool texts drawn with ``seed``: the same every time, and the
    first ``k`` of a draw of ``n`` are the draw of ``k`` (so nested sizes nest)."""
    order = list(range(len(pool)))
    random.Random(seed).shuffle(order)
    return order[:n]


def make_pool_node(
    *,
    n: int = 8,
    seed: int = 0,
    extract: AnswerExtractor | str = extract_answer,
    keys: StateKeys = StateKeys(),
    name: str = "pool",
) -> Node:
    """Make a node that adds ``n`` candidates drawn from ``state[keys.pool]`` (see the module
    docs).

    >>> graph.add_node("pool", make_pool_node(n=8))  # doctest: +SKIP
    >>> await graph.compile().ainvoke({"question": q, "pool": ["42", "41", "42"]})  # doctest: +SKIP
    """
    check_count("n", n)
    read_answer = resolve_extractor(extract)

    async def pool_node(state: Mapping[str, Any]) -> dict[str, Any]:
        require_keys(state, name, keys.candidates, keys.decisions)
        pool = state.get(keys.pool)
        if not pool or isinstance(pool, str) or not all(isinstance(t, str) for t in pool):
            raise ConfigError(
                f"node {name!r} chooses among a fixed pool of answers: give them with the input "
                f"as {keys.pool}=['first answer', 'second answer', ...] (a non-empty list of "
                f"strings), got {type(pool).__name__ if pool is not None else 'nothing'}"
            )
        texts = list(pool)
        offset = next_index(state.get(keys.candidates))
        drawn = draw_from_pool(texts, n, seed)
        new = [
            Candidate(
                index=offset + i, text=texts[p], answer=read_answer(texts[p]), source=name,
                metadata={"pool_position": p},
            )
            for i, p in enumerate(drawn)
        ]  # fmt: skip
        record = decision(
            name, "pool", pool_size=len(texts), requested=n, drawn=len(new), seed=seed,
            positions=drawn,
        )  # fmt: skip
        return {keys.candidates: new, keys.decisions: [record]}

    return make_node(pool_node, name)

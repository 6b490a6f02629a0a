"""Degrading instead of failing: what a graph does when a node that only improves the choice
fails for good (a judge or a reward model that crashes or hangs past its timeout).

The candidates are already paid for, so the run still answers: by majority vote over them, with
a decision that names the failed node, the error and what was done instead.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from langgraph.errors import NodeError

from tts_graph.nodes._node import read_state
from tts_graph.nodes._record import decision
from tts_graph.nodes.select import make_select_node
from tts_graph.state import StateKeys

__all__ = ["vote_instead"]


def vote_instead(
    keys: StateKeys, strategy: str
) -> Callable[[Any, NodeError], Coroutine[Any, Any, dict[str, Any]]]:
    """An ``error_handler`` for ``add_node``: choose by majority vote and record why."""
    select = make_select_node(select="majority", keys=keys, strategy=strategy, name="fallback")

    async def fallback(state: Any, error: NodeError) -> dict[str, Any]:
        record = decision(
            error.node, "fallback", error=f"{type(error.error).__name__}: {error.error}",
            instead="majority vote over the candidates",
        )  # fmt: skip
        update: dict[str, Any] = await select.ainvoke(read_state(state))
        update[keys.decisions] = [record, *update.get(keys.decisions, [])]
        return update

    return fallback

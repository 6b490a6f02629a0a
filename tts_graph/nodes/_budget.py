"""How a node finds its run's ledger in state."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from tts_graph.budget import Budget, Usage
from tts_graph.ledger import Ledger
from tts_graph.state import StateKeys

logger = logging.getLogger(__name__)

_warned: set[str] = set()


def run_ledger(state: Mapping[str, Any], keys: StateKeys, node: str) -> Ledger:
    """The run's :class:`~tts_graph.ledger.Ledger`, bound to the state's budget.

    A state schema without the ledger key (a user's own TypedDict) cannot share one accounting
    between nodes: the node then accounts alone, starting from the state's usage, which holds
    for nodes that run one after another but not for parallel ones, and says so once.
    """
    # A budget may arrive as JSON (LangGraph Server, a spec); anything else is refused by name.
    budget = Budget.coerce(state.get(keys.budget))
    ledger = state.get(keys.ledger)
    if isinstance(ledger, Ledger):
        return ledger.bind(budget)
    if budget is not None and not budget.unlimited and node not in _warned:
        _warned.add(node)
        logger.warning(
            "node %s: the state has no %r key, so parallel nodes cannot share the budget's "
            "accounting and together may exceed it; add `%s: Annotated[Ledger, share_ledger]` "
            "to the state schema (TTSState has it)",
            node,
            keys.ledger,
            keys.ledger,
        )
    return Ledger(budget=budget or Budget(), spent=state.get(keys.usage) or Usage())

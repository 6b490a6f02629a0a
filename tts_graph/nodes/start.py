"""The start of a run: what a graph factory's first node does.

On a thread with a checkpointer, the state a new run starts from holds what earlier runs left
behind: their candidates, decisions, usage and budget accounting. A new question (or a new turn
of a conversation) must not vote over the last one's candidates or inherit its spent budget.
The start node clears them: it keeps only candidates given as input to this run (those no node
made), and starts a new ledger. A run resumed after an interruption does not pass through it
again, so a resumed run keeps what it had done.

Nested in another graph's run (a strategy composed into another, a branch of a router, your own
graph calling this one), the start node changes nothing: the enclosing run owns the state, its
candidates are this graph's to work on, and its ledger covers both.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.config import get_config
from langgraph.types import Overwrite

from tts_graph.budget import Usage
from tts_graph.candidate import Candidate
from tts_graph.ledger import Ledger
from tts_graph.nodes._node import Node, make_node
from tts_graph.state import StateKeys

__all__ = ["make_start_node"]


def make_start_node(*, keys: StateKeys = StateKeys(), name: str = "start") -> Node:
    """Make the node a run starts with (see the module docs).

    >>> builder.add_node("start", make_start_node())  # doctest: +SKIP
    >>> builder.add_edge(START, "start")  # doctest: +SKIP
    """

    async def start(state: Mapping[str, Any]) -> dict[str, Any]:
        if _nested():
            return {}
        given: list[Candidate] = [c for c in state.get(keys.candidates) or [] if c.run is None]
        update: dict[str, Any] = {
            keys.candidates: Overwrite(given),
            keys.decisions: Overwrite([]),
            keys.usage: Overwrite(Usage()),
        }
        if keys.ledger in state:
            update[keys.ledger] = Ledger()
        return update

    return make_node(start, name)


def _nested() -> bool:
    """Whether this node runs inside a graph that is itself a step of another graph's run
    (LangGraph joins the namespaces of nested runs with "|")."""
    try:
        namespace = get_config().get("configurable", {}).get("checkpoint_ns", "")
    except RuntimeError:  # called outside a graph
        return False
    return "|" in str(namespace)

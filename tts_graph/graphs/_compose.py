"""Strategies inside strategies: a graph as one step of another graph's run.

A composed graph runs an inner graph (any of this library's, or yours over the same keys) as one
node. The inner run sees the outer state: its candidates to work on, and the run's ledger, so one
budget covers the whole composition (its start node leaves a nested run's state alone). The node
returns only what the inner run added: its candidates, its decisions and its usage (the inner
run starts from no decisions and no usage, so nothing is counted twice). Two uses:

- ``result="candidates"``: the inner graph is a source of candidates for the outer one to choose
  among (a tournament over budget-forced answers); the inner run's own choice is dropped.
- ``result="all"``: the inner graph answers (a branch of a router): its answer, response,
  strategy and the messages it appended come back too.

``runs`` > 1 runs the inner graph that many times concurrently, copy ``k`` with its request seeds
shifted by ``k * seed_stride`` (:mod:`tts_graph.seeds`), so the copies are independent samples
(best-of-N over self-refined answers).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.runnables import Runnable
from langgraph.graph import StateGraph

from tts_graph.budget import Usage
from tts_graph.errors import ConfigError, check_choice, check_count
from tts_graph.nodes._node import Node, make_node
from tts_graph.nodes._record import decision
from tts_graph.seeds import offset_seeds
from tts_graph.state import StateKeys

__all__ = ["Result", "compiled", "make_graph_node"]

Result = Literal["candidates", "all"]

# Far enough apart that the seeds of two copies (seed + i for a few hundred candidates) differ.
SEED_STRIDE = 1_000


def compiled(graph: Any, what: str) -> Runnable[Any, Any]:
    """``graph`` compiled if it is a builder; a compiled graph or runnable as it is."""
    if isinstance(graph, StateGraph):
        return graph.compile()
    if isinstance(graph, Runnable):
        return graph
    raise ConfigError(
        f"{what} must be a graph (a StateGraph from a create_<strategy>_graph factory, compiled "
        f"or not), got {type(graph).__name__}"
    )


def make_graph_node(
    graph: Any,
    *,
    result: Result = "all",
    runs: int = 1,
    seed_stride: int = SEED_STRIDE,
    keys: StateKeys = StateKeys(),
    name: str = "graph",
) -> Node:
    """Make a node that runs ``graph`` as a step of the current run (see the module docs).

    >>> builder.add_node("drafts", make_graph_node(create_self_refine_graph(backend),
    ...                  result="candidates", runs=4))  # doctest: +SKIP
    """
    check_choice("result", result, Result)
    check_count("runs", runs)
    if runs > 1 and result == "all":
        raise ConfigError("runs > 1 needs result='candidates': several runs have no one answer")
    inner = compiled(graph, f"the graph of node {name!r}")
    answer_keys = (keys.answer, keys.response, keys.strategy, keys.difficulty)

    async def run(state: Mapping[str, Any]) -> dict[str, Any]:
        start = {**state, keys.decisions: [], keys.usage: Usage()}

        async def copy(k: int) -> Mapping[str, Any]:
            with offset_seeds(k * seed_stride):
                out = await inner.ainvoke(start)
            return out if isinstance(out, Mapping) else vars(out)

        outs = await asyncio.gather(*(copy(k) for k in range(runs)))
        usage = Usage()
        update: dict[str, Any] = {keys.candidates: [], keys.decisions: []}
        for out in outs:
            update[keys.candidates] += list(out.get(keys.candidates) or [])
            update[keys.decisions] += list(out.get(keys.decisions) or [])
            usage = usage + (out.get(keys.usage) or Usage())
        if runs > 1:
            update[keys.decisions].append(
                decision(name, "runs", runs=runs, seed_stride=seed_stride,
                         candidates=len(update[keys.candidates]), usage=usage.to_dict())
            )  # fmt: skip
        if usage.calls or usage.total_tokens:
            update[keys.usage] = usage
        if result == "all":
            (out,) = outs
            update.update({k: out[k] for k in answer_keys if k in out})
            before = {m.id for m in state.get(keys.messages) or () if getattr(m, "id", None)}
            added = [m for m in out.get(keys.messages) or () if m.id not in before]
            if added:
                update[keys.messages] = added
        return update

    node = make_node(run, name)
    node.inner = inner  # so a drawing can show the graph inside the step
    return node

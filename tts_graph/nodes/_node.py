"""What every node shares: the runnable it is made into, how it reads any shape of state, and
how a node that chooses the answer writes it (including into a conversation).

Nodes are :class:`Node` objects: LangChain runnables, so ``add_node`` takes them under
``mypy --strict`` and they run under ``invoke`` and ``ainvoke``, ``stream`` and ``astream``
alike. They are the runnable LangGraph itself makes of a function node (its
``RunnableCallable``, which langgraph's prebuilt nodes also build on): it reads the function's
signature once, where LangChain's ``RunnableLambda`` reads it again on every call; a no-op
node cost 1.5–1.6 times the CPU time that way (``bench/bench_node_overhead.py``). The
synchronous path hands the node's coroutine to the library's portal loop
(:func:`tts_graph._loops.run_sync`). A node can also be awaited directly: ``await node(state)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph._internal._runnable import RunnableCallable
from langgraph.config import get_stream_writer
from pydantic import BaseModel

from tts_graph._loops import run_sync
from tts_graph.budget import Usage
from tts_graph.candidate import Candidate
from tts_graph.errors import ConfigError
from tts_graph.state import Decision, StateKeys
from tts_graph.tracing import label_node

__all__ = ["Node", "chosen_update", "make_node", "read_state", "require_keys"]


class Node(RunnableCallable):
    """A LangGraph node made by one of this library's factories.

    >>> graph.add_node("fanout", make_fanout_node(backend, n=8))  # doctest: +SKIP
    >>> update = await make_select_node()({"candidates": []})  # doctest: +SKIP
    """

    inner: Runnable[Any, Any] | None = None
    """The graph this node runs as one step (a composed strategy, a route), if any."""

    async def __call__(self, state: Any) -> Any:
        return await self.ainvoke(state)


def make_node(
    fn: Callable[[Any], Awaitable[Any]],
    name: str,
    *,
    read: Callable[[Any], Any] | None = None,
) -> Node:
    """Wrap an async node function. It gets the state as a mapping whatever its shape
    (:func:`read_state`), or its input passed through ``read`` (a ``Send`` branch's payload)."""
    prepare = read_state if read is None else read

    async def afunc(state: Any, config: RunnableConfig | None = None) -> Any:
        label_node(config)  # the strategy its metadata names, on its runs when tracing
        return await fn(prepare(state))

    def func(state: Any, config: RunnableConfig) -> Any:
        return run_sync(afunc(state, config))

    return Node(func, afunc, name=name)


def read_state(state: Any) -> Mapping[str, Any]:
    """The state as a read-only mapping: a dict as it is, a pydantic model or a dataclass by
    its fields (as langgraph's prebuilt ``ToolNode`` reads them)."""
    if isinstance(state, Mapping):
        return state
    if isinstance(state, BaseModel):
        return {name: getattr(state, name) for name in type(state).model_fields}
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        return {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    raise ConfigError(
        f"a node got state of type {type(state).__name__}; state must be a dict (TypedDict), "
        "a pydantic model or a dataclass"
    )


def _in_graph() -> bool:
    # A node called on its own (``await node(state)``) has a runnable config but no graph run.
    try:
        get_stream_writer()
    except (RuntimeError, KeyError):
        return False
    return True


def require_keys(state: Mapping[str, Any], node: str, *keys: str) -> None:
    """Inside a graph, fail with the missing key's name when the state schema lacks a key this
    node writes (LangGraph would drop the update silently). Channels with reducers, such as the
    :class:`~tts_graph.state.CandidatesState` keys, are always present in a node's state."""
    if not _in_graph():
        return
    missing = [k for k in keys if k not in state]
    if missing:
        raise ConfigError(
            f"node {node!r} writes the state key(s) {', '.join(map(repr, missing))}, which the "
            "graph's state schema does not have; add them with the mixin of your schema's kind: "
            "class State(MessagesState, CandidatesState) for a TypedDict, tts_graph."
            "CandidatesModel for a pydantic model, CandidatesDataclass for a dataclass"
        )


def conversation(state: Mapping[str, Any], keys: StateKeys) -> list[BaseMessage] | None:
    """The conversation when the node works on one: the state has messages and no question."""
    if keys.question in state:
        return None
    messages = state.get(keys.messages)
    return list(messages) if isinstance(messages, list) else None


def chosen_update(
    state: Mapping[str, Any],
    keys: StateKeys,
    chosen: Candidate | None,
    record: Decision,
    *,
    usage: Usage | None = None,
) -> dict[str, Any]:
    """What a node that chose the answer writes: ``answer`` and ``response``, and, when the
    state is a conversation, the chosen response appended to it as an ``AIMessage`` (its tool
    calls kept, the run's decisions in ``response_metadata["tts_graph"]``, its usage in
    ``usage_metadata``)."""
    update: dict[str, Any] = {
        keys.answer: None if chosen is None else chosen.answer,
        keys.response: None if chosen is None else chosen.text,
    }
    if conversation(state, keys) is None or chosen is None:
        return update
    spent = (state.get(keys.usage) or Usage()) + (usage or Usage())
    decisions = [*(state.get(keys.decisions) or []), record]
    update[keys.messages] = [
        AIMessage(
            content=chosen.text,
            tool_calls=[dict(t) for t in chosen.tool_calls],
            response_metadata={
                "tts_graph": {
                    "answer": chosen.answer,
                    "candidate": chosen.index,
                    "decisions": decisions,
                    "usage": spent.to_dict(),
                }
            },
            usage_metadata={
                "input_tokens": spent.prompt_tokens,
                "output_tokens": spent.completion_tokens,
                "total_tokens": spent.total_tokens,
            },
        )
    ]
    return update

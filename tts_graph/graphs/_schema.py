"""Build-time checks of the state schema a graph factory is given."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any, get_type_hints

from pydantic import BaseModel

from tts_graph.errors import ConfigError
from tts_graph.state import StateKeys

__all__ = ["check_schema", "schema_keys"]


def schema_keys(schema: Any) -> set[str]:
    """The keys of a state schema: a TypedDict, a pydantic model or a dataclass."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return set(schema.model_fields)
    if dataclasses.is_dataclass(schema):
        return {f.name for f in dataclasses.fields(schema)}
    try:
        return set(get_type_hints(schema, include_extras=True))
    except TypeError as exc:
        raise ConfigError(
            f"state_schema must be a TypedDict, a pydantic model or a dataclass, got {schema!r}"
        ) from exc


def check_schema(schema: Any, keys: StateKeys, factory: str, *, writes: Iterable[str] = ()) -> None:
    """Raise :class:`ConfigError` naming every key ``factory``'s nodes need that ``schema``
    lacks: the candidates, usage, decisions and ledger keys (the
    :class:`~tts_graph.state.CandidatesState` mixin), ``writes``, and a question or a
    conversation to answer."""
    have = schema_keys(schema)
    needed = [keys.candidates, keys.usage, keys.decisions, keys.ledger, *writes]
    missing = [k for k in needed if k not in have]
    if keys.question not in have and keys.messages not in have:
        missing.append(f"{keys.question} (or {keys.messages})")
    if missing:
        name = getattr(schema, "__name__", repr(schema))
        raise ConfigError(
            f"{factory}: the state schema {name} lacks the key(s) {', '.join(missing)}; "
            f"{_mixin_hint(schema)} or rename keys with keys=StateKeys(...)"
        )


def _mixin_hint(schema: Any) -> str:
    """How to give ``schema`` the keys, in its own kind of schema."""
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return "subclass tts_graph.CandidatesModel (class State(CandidatesModel): ...)"
    if dataclasses.is_dataclass(schema):
        return (
            "subclass tts_graph.CandidatesDataclass (@dataclass class State(CandidatesDataclass))"
        )
    return "mix tts_graph.CandidatesState into it (class State(MessagesState, CandidatesState))"

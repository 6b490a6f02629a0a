"""Graph state: the keys nodes read and write, with the reducers that merge parallel updates.

Three ways in, as LangGraph users write state:

- :class:`TTSState`, this library's own (a ``question`` in, an ``answer`` out);
- your own schema with the :class:`CandidatesState` mixin, e.g.
  ``class State(MessagesState, CandidatesState)``: the conversation is the prompt and the chosen
  response is appended to ``messages`` as an ``AIMessage``;
- a pydantic model or a dataclass: subclass :class:`CandidatesModel` or
  :class:`CandidatesDataclass`, which carry the same keys and reducers (and are read the way
  langgraph's prebuilt ``ToolNode`` reads such states).

Every node factory lets the caller rename the keys it uses
(``make_fanout_node(..., keys=StateKeys(candidates="drafts"))``).
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from langgraph.graph import MessagesState
from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

from tts_graph.budget import Budget, Usage, add_usage
from tts_graph.candidate import Candidate
from tts_graph.ledger import Ledger, share_ledger

__all__ = [
    "CandidatesDataclass",
    "CandidatesModel",
    "CandidatesState",
    "ChatState",
    "Decision",
    "StateKeys",
    "TTSState",
    "add_usage",
    "merge_candidates",
    "share_ledger",
]

Decision = dict[str, Any]
"""What a node decided and why: ``{"node": ..., "kind": ..., ...}``; also streamed as a custom
event and attached to the run's metadata."""


def merge_candidates(
    left: Sequence[Candidate] | None, right: Sequence[Candidate] | None
) -> list[Candidate]:
    """Reducer: merge by ``id`` (an update replaces the candidate with the same id and keeps its
    index) and keep the list sorted by index.

    Producers that run in parallel each number their new candidates from the same snapshot, so
    their indices can collide: a new candidate whose index is taken gets the next free one.
    LangGraph applies parallel writes in a fixed order, so the numbering is reproducible.
    """
    merged = {c.id: c for c in (left or ())}
    taken = {c.index for c in merged.values()}
    free = max(taken, default=-1) + 1
    for c in right or ():
        old = merged.get(c.id)
        if old is not None:
            merged[c.id] = c if c.index == old.index else dataclasses.replace(c, index=old.index)
            continue
        if c.index in taken:
            c = dataclasses.replace(c, index=free)
        taken.add(c.index)
        free = max(free, c.index + 1)
        merged[c.id] = c
    return sorted(merged.values(), key=lambda c: c.index)


class CandidatesState(TypedDict, total=False):
    """The keys the nodes need, with their reducers: mix it into your own state.

    >>> from langgraph.graph import MessagesState
    >>> class AgentState(MessagesState, CandidatesState):
    ...     pass

    - ``budget``: limits for this run (input; unlimited when absent).
    - ``ledger``: the run's live accounting of the budget, shared by every node, branch and
      subgraph (created fresh for each run; not an input).
    - ``usage``: what the run has spent, summed across nodes.
    - ``candidates``: every candidate generated, sorted by index.
    - ``decisions``: what each node decided and why, in order.
    - ``reference``: optional ground truth for verifiers (a gold answer, code tests).
    - ``answer``: the chosen final answer (extracted); ``response``: the chosen candidate's text.
    - ``strategy``: which strategy produced the answer.
    - ``difficulty``: the difficulty probe's score and bin, when a graph estimates it.
    - ``pool``: fixed answers to choose among with no generation (input, for
      :func:`~tts_graph.graphs.create_pool_graph`).
    """

    budget: Budget | None
    ledger: Annotated[Ledger, share_ledger]
    usage: Annotated[Usage, add_usage]
    candidates: Annotated[list[Candidate], merge_candidates]
    decisions: Annotated[list[Decision], operator.add]
    reference: Any
    answer: str | None
    response: str | None
    strategy: str
    difficulty: dict[str, Any] | None
    pool: list[str]


class CandidatesModel(BaseModel):
    """:class:`CandidatesState` as a pydantic model: subclass it for a pydantic state schema.

    >>> from typing import Annotated
    >>> from langchain_core.messages import AnyMessage
    >>> from langgraph.graph.message import add_messages
    >>> class AgentState(CandidatesModel):
    ...     messages: Annotated[list[AnyMessage], add_messages]
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    budget: Budget | None = None
    ledger: Annotated[Ledger, share_ledger] = Field(default_factory=Ledger)
    usage: Annotated[Usage, add_usage] = Field(default_factory=Usage)
    candidates: Annotated[list[Candidate], merge_candidates] = Field(default_factory=list)
    decisions: Annotated[list[Decision], operator.add] = Field(default_factory=list)
    reference: Any = None
    answer: str | None = None
    response: str | None = None
    strategy: str | None = None
    difficulty: dict[str, Any] | None = None
    pool: list[str] = Field(default_factory=list)


@dataclass(kw_only=True)
class CandidatesDataclass:
    """:class:`CandidatesState` as a dataclass: subclass it (with ``@dataclass``) for a
    dataclass state schema. Its fields are keyword-only, so yours may come without defaults.

    >>> @dataclass
    ... class QuizState(CandidatesDataclass):
    ...     question: str
    """

    budget: Budget | None = None
    ledger: Annotated[Ledger, share_ledger] = dataclasses.field(default_factory=Ledger)
    usage: Annotated[Usage, add_usage] = dataclasses.field(default_factory=Usage)
    candidates: Annotated[list[Candidate], merge_candidates] = dataclasses.field(
        default_factory=list
    )
    decisions: Annotated[list[Decision], operator.add] = dataclasses.field(default_factory=list)
    reference: Any = None
    answer: str | None = None
    response: str | None = None
    strategy: str | None = None
    difficulty: dict[str, Any] | None = None
    pool: list[str] = dataclasses.field(default_factory=list)


class ChatState(MessagesState, CandidatesState):
    """A conversation plus the keys the nodes need: the state of
    :class:`~tts_graph.integrations.chat_model.TTSChatModel`'s graphs, and a ready-made schema
    for test-time scaling inside an agent."""


class TTSState(CandidatesState, total=False):
    """The default state of every graph in this library: :class:`CandidatesState` plus the
    ``question`` (input)."""

    question: str


@dataclass(frozen=True)
class StateKeys:
    """Names of the state keys a node reads and writes; rename to fit your own schema.

    ``messages`` is read when the state has no ``question``: the conversation is then the
    prompt, and a node that chooses the answer appends it there as an ``AIMessage``.
    """

    question: str = "question"
    messages: str = "messages"
    reference: str = "reference"
    budget: str = "budget"
    ledger: str = "ledger"
    usage: str = "usage"
    candidates: str = "candidates"
    answer: str = "answer"
    response: str = "response"
    strategy: str = "strategy"
    difficulty: str = "difficulty"
    decisions: str = "decisions"
    pool: str = "pool"

"""Graph state: what nodes read and write, with the reducers that merge parallel updates.

Nodes read and write these keys by default; every node factory lets the caller rename them
(``make_fanout_node(..., keys=StateKeys(candidates="drafts"))``) so the nodes drop into a user's
own state schema.
"""

from __future__ import annotations

import dataclasses
import operator
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from typing_extensions import TypedDict

from tts_graph.budget import Budget, Usage, add_usage
from tts_graph.ledger import Ledger, share_ledger
from tts_graph.verifiers.base import Verdict

if TYPE_CHECKING:
    from tts_graph.backends.base import Completion

__all__ = [
    "Candidate",
    "Decision",
    "NodeFn",
    "StateKeys",
    "TTSState",
    "as_node",
    "merge_candidates",
    "next_index",
]

NodeFn = Callable[[Any], Awaitable[dict[str, Any]]]
"""An async LangGraph node: takes the state, returns a partial update."""


def as_node(fn: Callable[..., Any]) -> Any:
    """Hand a node to ``StateGraph.add_node``. Our nodes accept any state mapping, which mypy
    cannot match against langgraph's TypedDict-like bound on ``add_node``; this keeps that one
    typing gap in one place instead of an ignore at every call."""
    return fn


Decision = dict[str, Any]
"""What a node decided and why: ``{"node": ..., "kind": ..., ...}``; also streamed as a custom
event and attached to the run's metadata."""


@dataclass(frozen=True)
class Candidate:
    """One candidate answer, kept with everything later nodes and the final result need.

    ``seed`` is the request seed that produced it (in one ``n``-sample request all samples share
    it and vLLM derives each sequence from it). ``id`` is its identity, unique across parallel
    producers; ``index`` is its position in the run, which the candidates reducer keeps unique
    (a node that updates a candidate keeps its ``id`` with :func:`dataclasses.replace`).
    """

    index: int
    text: str
    answer: str | None = None
    source: str = ""
    seed: int | None = None
    completion_tokens: int = 0
    finish_reason: str | None = None
    mean_logprob: float | None = None
    score: float | None = None
    verdict: Verdict | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def from_completion(
        cls,
        completion: Completion,
        *,
        index: int,
        answer: str | None,
        source: str,
        seed: int | None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Candidate:
        """A candidate from one server sample, keeping its token count, finish and confidence."""
        return cls(
            index=index,
            text=completion.text,
            answer=answer,
            source=source,
            seed=seed,
            completion_tokens=completion.completion_tokens,
            finish_reason=completion.finish_reason,
            mean_logprob=completion.mean_logprob,
            metadata=metadata or {},
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "id": self.id,
            "text": self.text,
            "answer": self.answer,
            "source": self.source,
            "seed": self.seed,
            "completion_tokens": self.completion_tokens,
            "finish_reason": self.finish_reason,
            "mean_logprob": self.mean_logprob,
            "score": self.score,
            "verdict": None
            if self.verdict is None
            else {
                "passed": self.verdict.passed,
                "score": self.verdict.score,
                "reason": self.verdict.reason,
            },
        }


def next_index(candidates: Sequence[Candidate] | None) -> int:
    """The index a new candidate gets after ``candidates`` (0 when there are none)."""
    return max((c.index for c in candidates or ()), default=-1) + 1


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


class TTSState(TypedDict, total=False):
    """The default state of every graph in this library.

    - ``question``: the user's question (input).
    - ``reference``: optional ground truth for verifiers (a gold answer, code tests).
    - ``budget``: limits for this run (input; unlimited when absent).
    - ``ledger``: the run's live accounting of the budget, shared by every node, branch and
      subgraph (created fresh for each run; not an input).
    - ``usage``: what the run has spent, summed across nodes.
    - ``candidates``: every candidate generated, sorted by index.
    - ``answer``: the chosen final answer (extracted); ``response``: the chosen candidate's text.
    - ``strategy``: which strategy produced the answer.
    - ``difficulty``: the difficulty probe's score and bin, when a graph estimates it.
    - ``decisions``: what each node decided and why, in order.
    """

    question: str
    reference: Any
    budget: Budget | None
    ledger: Annotated[Ledger, share_ledger]
    usage: Annotated[Usage, add_usage]
    candidates: Annotated[list[Candidate], merge_candidates]
    answer: str | None
    response: str | None
    strategy: str
    difficulty: dict[str, Any] | None
    decisions: Annotated[list[Decision], operator.add]


@dataclass(frozen=True)
class StateKeys:
    """Names of the state keys a node reads and writes; rename to fit your own schema."""

    question: str = "question"
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

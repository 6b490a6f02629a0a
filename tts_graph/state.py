"""Graph state: what nodes read and write, with the reducers that merge parallel updates.

Nodes read and write these keys by default; every node factory lets the caller rename them
(``make_fanout_node(..., keys=StateKeys(candidates="drafts"))``) so the nodes drop into a user's
own state schema.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

from typing_extensions import TypedDict

from tts_graph.budget import Budget, Usage, add_usage
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
    it and vLLM derives each sequence from it).
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
    """Reducer: merge by ``index`` (an update replaces the candidate with the same index) and
    keep the list sorted by index, whatever order parallel branches finish in."""
    merged = {c.index: c for c in (left or ())}
    merged.update({c.index: c for c in (right or ())})
    return [merged[i] for i in sorted(merged)]


class TTSState(TypedDict, total=False):
    """The default state of every graph in this library.

    - ``question``: the user's question (input).
    - ``reference``: optional ground truth for verifiers (a gold answer, code tests).
    - ``budget``: limits for this run (input; unlimited when absent).
    - ``usage``: what the run has spent, summed across nodes.
    - ``candidates``: every candidate generated, sorted by index.
    - ``answer``: the chosen final answer (extracted); ``response``: the chosen candidate's text.
    - ``strategy``: which strategy produced the answer.
    - ``difficulty``: the difficulty probe's score and bin, when a graph estimates it.
    - ``branches``: the planned per-candidate branches of a ``Send`` fan-out.
    - ``decisions``: what each node decided and why, in order.
    """

    question: str
    reference: Any
    budget: Budget | None
    usage: Annotated[Usage, add_usage]
    candidates: Annotated[list[Candidate], merge_candidates]
    answer: str | None
    response: str | None
    strategy: str
    difficulty: dict[str, Any] | None
    branches: list[dict[str, Any]]
    decisions: Annotated[list[Decision], operator.add]


@dataclass(frozen=True)
class StateKeys:
    """Names of the state keys a node reads and writes; rename to fit your own schema."""

    question: str = "question"
    reference: str = "reference"
    budget: str = "budget"
    usage: str = "usage"
    candidates: str = "candidates"
    answer: str = "answer"
    response: str = "response"
    strategy: str = "strategy"
    difficulty: str = "difficulty"
    branches: str = "branches"
    decisions: str = "decisions"

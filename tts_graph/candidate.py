"""A candidate answer, and how candidates are ranked and grouped into votes."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tts_graph.metering import current_spending
from tts_graph.verifiers.answer import normalize_answer
from tts_graph.verifiers.base import Verdict

if TYPE_CHECKING:
    from tts_graph.backends.base import Completion

__all__ = ["Candidate", "best_candidate", "candidate_score", "next_index", "vote_key"]


def _current_run() -> str | None:
    scope = current_spending()
    return None if scope is None else scope.ledger.run_id


@dataclass(frozen=True)
class Candidate:
    """One candidate answer, kept with everything later nodes and the final result need.

    ``seed`` is the request seed that produced it (in one ``n``-sample request all samples share
    it and vLLM derives each sequence from it). ``id`` is its identity, unique across parallel
    producers; ``index`` is its position in the run, which the candidates reducer keeps unique
    (a node that updates a candidate keeps its ``id`` with :func:`dataclasses.replace`).
    ``tool_calls`` are the tool calls the model made in this sample, in LangChain's form
    (``{"name", "args", "id", "type": "tool_call"}``). ``run`` is the id of the run whose node
    made it (None for a candidate given as input), so a run on a thread with a checkpointer
    can tell its own candidates from those of earlier runs.
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
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    run: str | None = field(default_factory=_current_run)

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
        """A candidate from one server sample, keeping its token count, finish, confidence and
        tool calls."""
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
            tool_calls=completion.tool_calls,
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
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
            "tool_calls": [dict(t) for t in self.tool_calls],
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


def candidate_score(candidate: Candidate) -> float:
    """A candidate's score: the verifier's when set, else its mean token logprob, else -inf.

    A NaN is no score: it compares false with everything, so ranking by it would make the
    choice depend on the order the candidates arrived in.
    """
    if candidate.score is not None and not math.isnan(candidate.score):
        return candidate.score
    if candidate.mean_logprob is not None and not math.isnan(candidate.mean_logprob):
        return candidate.mean_logprob
    return float("-inf")


def best_candidate(candidates: Iterable[Candidate]) -> Candidate | None:
    """The highest-scored candidate (:func:`candidate_score`), ties to the lowest index; None
    when there is none.

    >>> best_candidate([Candidate(index=1, text="b", score=0.5), Candidate(index=0, text="a", score=0.5)]).text
    'a'
    """
    return max(candidates, key=lambda c: (candidate_score(c), -c.index), default=None)


def vote_key(candidate: Candidate) -> str | None:
    """What a candidate votes for: its tool calls (names and arguments) when it made any, else
    its normalised final answer; None when it has neither.

    >>> vote_key(Candidate(index=0, text="", answer="12.0"))
    '12'
    >>> vote_key(Candidate(index=0, text="", tool_calls=({"name": "add", "args": {"b": 2, "a": 1}},)))
    'tool:[["add", {"a": 1, "b": 2}]]'
    """
    if candidate.tool_calls:
        calls = [[t.get("name"), t.get("args", {})] for t in candidate.tool_calls]
        return "tool:" + json.dumps(calls, sort_keys=True, default=str)
    if candidate.answer is not None and candidate.answer.strip():
        return normalize_answer(candidate.answer)
    return None

"""The verifier interface: async, batch-first, one verdict per candidate.

A verifier never raises for a bad candidate: a crash, a timeout or an unparseable output becomes a
failed :class:`Verdict` whose ``reason`` says what happened, so one broken candidate cannot crash a
graph that is judging sixteen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tts_graph.budget import Usage

__all__ = ["Problem", "Verdict", "Verifier"]


@dataclass(frozen=True)
class Problem:
    """What a candidate answers: the question and, when known, a reference to check against.

    ``reference`` is verifier-specific: a gold answer string for math, a
    :class:`~tts_graph.verifiers.code.CodeTests` for code, nothing for an LLM judge.
    """

    question: str
    reference: Any = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Verdict:
    """A verifier's judgement of one candidate.

    ``passed`` is None when the verifier only scores (a reward model, a pointwise judge).
    ``score`` is in [0, 1] where the verifier can say so (1.0 = certainly right).
    ``step_scores`` holds a process reward model's per-step scores; ``score`` is their aggregate.
    ``usage`` is what checking this candidate cost on a model server (LLM judges, reward models),
    so the verifier node can add it to the run's budget.
    """

    passed: bool | None
    score: float
    reason: str
    step_scores: tuple[float, ...] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    usage: Usage | None = None

    @classmethod
    def failure(cls, reason: str, **details: Any) -> Verdict:
        """A failed verdict for a candidate that could not be checked (crash, timeout, parse)."""
        return cls(passed=False, score=0.0, reason=reason, details=details)


@runtime_checkable
class Verifier(Protocol):
    """Anything with a name and an async batch ``verify``; returns one verdict per candidate,
    in the candidates' order."""

    name: str

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]: ...

"""The verifier interface: async, batch-first, one verdict per candidate.

A verifier never raises for a bad candidate: a crash, a timeout or an unparseable output becomes a
failed :class:`Verdict` whose ``reason`` says what happened, so one broken candidate cannot crash a
graph that is judging sixteen.

A verifier that fails itself (it raises, never returns, or its model server is down) says nothing
about the candidates: their verdicts are failed ones whose ``error`` names the failure, so a run
goes on without the verifier and its result shows why. One call to a verifier (or to a judge's
``compare``) is bounded by :func:`call_timeout`: the verifier's ``call_timeout_s`` attribute, or
:data:`DEFAULT_CALL_TIMEOUT_S`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tts_graph.budget import Usage
from tts_graph.errors import ConfigError

__all__ = [
    "DEFAULT_CALL_TIMEOUT_S",
    "Problem",
    "Verdict",
    "Verifier",
    "call_timeout",
    "check_call_timeout",
]

DEFAULT_CALL_TIMEOUT_S = 300.0
"""How long one call to a verifier or judge may take when it does not say (its
``call_timeout_s``): as long as one request to a model server may (``VLLMBackend``'s
``timeout_s``), so it bounds a verifier that hangs without cutting short one that works."""


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
    ``error`` is set when the verifier itself failed (it raised, timed out, or its server could
    not be reached), so the verdict says nothing about the candidate: it names the failure.
    """

    passed: bool | None
    score: float
    reason: str
    step_scores: tuple[float, ...] | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    usage: Usage | None = None
    error: str | None = None

    @classmethod
    def failure(cls, reason: str, **details: Any) -> Verdict:
        """A failed verdict for a candidate that could not be checked (crash, timeout, parse)."""
        return cls(passed=False, score=0.0, reason=reason, details=details)

    @classmethod
    def verifier_error(cls, reason: str, **details: Any) -> Verdict:
        """A failed verdict because the verifier failed, not the candidate: ``error`` is
        ``reason``.

        >>> Verdict.verifier_error("judge request failed: connection refused").error
        'judge request failed: connection refused'
        """
        return cls(passed=False, score=0.0, reason=reason, details=details, error=reason)


@runtime_checkable
class Verifier(Protocol):
    """Anything with a name and an async batch ``verify``; returns one verdict per candidate,
    in the candidates' order.

    Optional attributes the nodes read: ``uses_model = True`` (one model call per candidate,
    charged to the run's budget), ``call_timeout_s`` (see :func:`call_timeout`) and
    ``extractor``, the answer extractor (or its registered name) that reads what this verifier
    checks, which a graph given the verifier reads its answers with unless told otherwise
    (see :func:`~tts_graph.verifiers.answer.resolve_extractor`)."""

    name: str

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]: ...


def check_call_timeout(value: float | None, *, option: str = "call_timeout_s") -> float | None:
    """``value`` checked: seconds > 0 (infinity means no bound), or None for no bound."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(
            f"{option} is the seconds one verifier or judge call may take: a number > 0, or "
            f"None for no bound; got {value!r}"
        )
    return None if math.isinf(value) else float(value)


def call_timeout(verifier: object) -> float | None:
    """How long one call to ``verifier`` (its ``verify``, or a judge's ``compare``) may take,
    retries included: its ``call_timeout_s`` attribute when it has one (None: no bound), else
    :data:`DEFAULT_CALL_TIMEOUT_S`. A verifier past it fails the candidates it was given with
    that reason, and the run goes on.

    The bound works by cancelling the call, so it reaches anything that awaits (requests,
    subprocesses, worker threads); a verifier that blocks the event loop itself cannot be cut
    short: run such work in a thread (``FunctionVerifier`` does for a plain function).

    >>> call_timeout(object())
    300.0
    """
    value = getattr(verifier, "call_timeout_s", DEFAULT_CALL_TIMEOUT_S)
    return check_call_timeout(value)

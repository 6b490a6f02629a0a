"""The verifier node: run a verifier over the candidates in state and keep its verdicts.

Each candidate gets its :class:`~tts_graph.verifiers.base.Verdict` and its ``score`` (which
selection then uses). Candidates that already carry a verdict are not checked again. A verifier
that calls a model (``uses_model = True``: LLM judges, reward models) costs one call per
candidate; the node checks only as many as the budget affords and records the rest as skipped.
A verifier that raises, or returns the wrong number of verdicts, fails every candidate it was
given with the reason; it never crashes the graph.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from tts_graph.budget import Budget, Usage
from tts_graph.nodes._record import decision
from tts_graph.state import Candidate, NodeFn, StateKeys
from tts_graph.verifiers.base import Problem, Verdict, Verifier

__all__ = ["make_verify_node", "run_verifier"]

logger = logging.getLogger(__name__)


def _affordable(budget: Budget, usage: Usage | None, wanted: int) -> int:
    for k in range(wanted, 0, -1):
        if budget.can_afford(usage, calls=k):
            return k
    return 0


def make_verify_node(
    verifier: Verifier,
    *,
    keys: StateKeys = StateKeys(),
    name: str = "verify",
) -> NodeFn:
    """Make a node that verifies ``state[keys.candidates]`` against ``state[keys.reference]``.

    >>> graph.add_node("verify", make_verify_node(MathVerifier()))  # doctest: +SKIP
    """
    verifier_name = getattr(verifier, "name", type(verifier).__name__)

    async def verify(state: Mapping[str, Any]) -> dict[str, Any]:
        candidates: list[Candidate] = list(state.get(keys.candidates) or [])
        pending = [c for c in candidates if c.verdict is None]
        skipped = 0
        if getattr(verifier, "uses_model", False):
            budget: Budget = state.get(keys.budget) or Budget()
            k = _affordable(budget, state.get(keys.usage), len(pending))
            if k < len(pending):
                budget.exhausted(f"{name} could verify every candidate")
                skipped = len(pending) - k
                pending = pending[:k]
        problem = Problem(
            question=str(state.get(keys.question, "")), reference=state.get(keys.reference)
        )
        verdicts = await run_verifier(verifier, problem, [c.text for c in pending])
        checked = [
            dataclasses.replace(c, verdict=v, score=v.score)
            for c, v in zip(pending, verdicts, strict=True)
        ]
        usage = sum((v.usage for v in verdicts if v.usage is not None), Usage())
        record = decision(
            name,
            "verify",
            verifier=verifier_name,
            checked=len(checked),
            passed=sum(1 for v in verdicts if v.passed),
            skipped=skipped,
            reason="budget" if skipped else None,
            verdicts=[
                {"index": c.index, "passed": v.passed, "score": v.score, "reason": v.reason}
                for c, v in zip(pending, verdicts, strict=True)
            ],
        )
        update: dict[str, Any] = {keys.candidates: checked, keys.decisions: [record]}
        if usage.calls:
            update[keys.usage] = usage
        return update

    verify.__name__ = name
    return verify


async def run_verifier(verifier: Verifier, problem: Problem, texts: Sequence[str]) -> list[Verdict]:
    """``verifier.verify`` that never raises: a crash, or a wrong number of verdicts, fails
    every text with the reason. Every node that runs a verifier goes through here."""
    if not texts:
        return []
    name = getattr(verifier, "name", type(verifier).__name__)
    try:
        verdicts = list(await verifier.verify(problem, texts))
    except Exception as exc:
        logger.warning("verifier %s raised: %r", name, exc)
        return [Verdict.failure(f"verifier {name} raised {type(exc).__name__}: {exc}")] * len(texts)
    if len(verdicts) != len(texts):
        reason = f"verifier {name} returned {len(verdicts)} verdicts for {len(texts)} candidates"
        return [Verdict.failure(reason)] * len(texts)
    return verdicts

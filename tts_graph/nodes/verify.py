"""The verifier node: run a verifier over the candidates in state and keep its verdicts.

Each candidate gets its :class:`~tts_graph.verifiers.base.Verdict` and its ``score`` (which
selection then uses). Candidates that already carry a verdict are not checked again. A verifier
that calls a model (``uses_model = True``: LLM judges, reward models) has its requests charged to
the run's ledger, one candidate per call, so the budget decides candidate by candidate: what it
refuses stays unchecked and is recorded as skipped. A verifier that raises, never returns (one
call is bounded by its ``call_timeout_s``, see :func:`~tts_graph.verifiers.base.call_timeout`), or
returns the wrong number of verdicts, fails every candidate it was given with the reason in the
verdict's ``error``; it never crashes or stalls the graph. The decision counts those
(``verifier_errors``) and names the first (``error``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from tts_graph.budget import Usage
from tts_graph.candidate import Candidate
from tts_graph.errors import BudgetExhausted, ConfigError
from tts_graph.metering import charge_call, spending
from tts_graph.nodes._budget import run_ledger
from tts_graph.nodes._node import Node, make_node, require_keys
from tts_graph.nodes._record import decision
from tts_graph.prompts import question_of
from tts_graph.state import StateKeys
from tts_graph.verifiers.base import Problem, Verdict, Verifier, call_timeout

__all__ = ["make_verify_node", "run_verifier"]

logger = logging.getLogger(__name__)


def make_verify_node(
    verifier: Verifier,
    *,
    keys: StateKeys = StateKeys(),
    name: str = "verify",
) -> Node:
    """Make a node that verifies ``state[keys.candidates]`` against ``state[keys.reference]``.

    >>> graph.add_node("verify", make_verify_node(MathVerifier()))  # doctest: +SKIP
    """
    verifier_name = getattr(verifier, "name", type(verifier).__name__)
    one_per_call = bool(getattr(verifier, "uses_model", False))
    call_timeout(verifier)  # a bad call_timeout_s is a ConfigError now, at build time

    async def verify(state: Mapping[str, Any]) -> dict[str, Any]:
        candidates: list[Candidate] = list(state.get(keys.candidates) or [])
        pending = [c for c in candidates if c.verdict is None]
        require_keys(state, name, keys.candidates, keys.decisions, keys.usage)
        question = question_of(state, keys.question, keys.messages)
        problem = Problem(question=question, reference=state.get(keys.reference))
        reasons: list[str] = []
        with spending(run_ledger(state, keys, name)) as spent:

            async def check(batch: list[Candidate]) -> list[Verdict] | None:
                try:
                    return await run_verifier(verifier, problem, [c.text for c in batch])
                except BudgetExhausted as exc:
                    reasons.append(spent.stopped(exc))
                    return None

            async def check_with_model(candidate: Candidate) -> list[Verdict] | None:
                try:
                    async with charge_call(what=f"verifying candidate {candidate.index}") as bill:
                        verdicts = await check([candidate])
                        bill.settle(_reported(verdicts))
                except BudgetExhausted as exc:
                    reasons.append(spent.stopped(exc))
                    return None
                return verdicts

            if one_per_call:
                results = await asyncio.gather(*(check_with_model(c) for c in pending))
                pairs = [(c, r[0]) for c, r in zip(pending, results, strict=True) if r]
            else:
                verdicts = await check(pending)
                pairs = list(zip(pending, verdicts or [], strict=False))
            checked = [dataclasses.replace(c, verdict=v, score=v.score) for c, v in pairs]
            skipped = len(pending) - len(checked)
            errors = [v.error for _, v in pairs if v.error is not None]
            record = decision(
                name,
                "verify",
                verifier=verifier_name,
                checked=len(checked),
                passed=sum(1 for _, v in pairs if v.passed),
                skipped=skipped,
                reason=(reasons[0] if reasons else "budget") if skipped else None,
                verifier_errors=len(errors),
                error=errors[0] if errors else None,
                verdicts=[
                    {"index": c.index, "passed": v.passed, "score": v.score, "reason": v.reason}
                    for c, v in pairs
                ],
            )
        update: dict[str, Any] = {keys.candidates: checked, keys.decisions: [record]}
        if spent.usage.calls:
            update[keys.usage] = spent.usage
        return update

    return make_node(verify, name)


def _reported(verdicts: list[Verdict] | None) -> Usage | None:
    used = [v.usage for v in verdicts or () if v.usage is not None]
    return sum(used, Usage()) if used else None


async def run_verifier(verifier: Verifier, problem: Problem, texts: Sequence[str]) -> list[Verdict]:
    """``verifier.verify`` that never raises or hangs for a broken verifier: a crash, a call
    past the verifier's :func:`~tts_graph.verifiers.base.call_timeout`, or a wrong number of
    verdicts fails every text with the reason (a verdict whose ``error`` names it). Every node
    that runs a verifier goes through here.

    :class:`~tts_graph.errors.BudgetExhausted` and :class:`~tts_graph.errors.ConfigError` do
    propagate: a refused model call or a wrong configuration says nothing about the candidates,
    so the node (or the caller) decides what to do."""
    if not texts:
        return []
    name = getattr(verifier, "name", type(verifier).__name__)
    limit = call_timeout(verifier)
    timer = asyncio.timeout(limit)
    try:
        async with timer:
            verdicts = list(await verifier.verify(problem, texts))
    except (BudgetExhausted, ConfigError):
        raise
    except TimeoutError as exc:
        if not timer.expired():
            return _all_failed(name, texts, f"verifier {name} raised TimeoutError: {exc}")
        return _all_failed(
            name, texts,
            f"verifier {name} did not finish within {limit:g} s (its call_timeout_s) and was "
            "cancelled",
        )  # fmt: skip
    except Exception as exc:
        return _all_failed(name, texts, f"verifier {name} raised {type(exc).__name__}: {exc}")
    if len(verdicts) != len(texts):
        reason = f"verifier {name} returned {len(verdicts)} verdicts for {len(texts)} candidates"
        return _all_failed(name, texts, reason)
    return verdicts


def _all_failed(name: str, texts: Sequence[str], reason: str) -> list[Verdict]:
    logger.warning("verifier %s failed on %d candidate(s): %s", name, len(texts), reason)
    return [Verdict.verifier_error(reason)] * len(texts)

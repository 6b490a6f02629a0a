"""Selection: pick the final answer from the candidates in state.

Rules:

- ``"majority"`` (self-consistency): vote over normalised final answers; candidates without an
  extractable answer do not vote. Ties go to the answer whose voters have the higher summed
  score (``score`` when a verifier set it, else mean token logprob), then to the answer that
  appeared first (lowest candidate index). Deterministic: the same candidates give the same
  answer.
- ``"best_score"``: the candidate with the highest score (verifier/reward score when set, else
  mean token logprob); ties go to the lowest index.
- ``"weighted"``: weighted vote: each distinct answer scores the sum of its candidates' verifier
  or reward scores (unscored candidates weigh 0); ties go to more votes, then first seen. The
  answer's highest-scored candidate represents it.
- ``"verified"``: verifier-first: the best-scored candidate whose verdict passed (ties to the
  lowest index); when none passed, majority vote decides.

With no candidates at all (e.g. the budget allowed none), the answer is None and the decision
says why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from tts_graph.errors import ConfigError
from tts_graph.nodes._record import decision
from tts_graph.state import Candidate, NodeFn, StateKeys
from tts_graph.verifiers.answer import normalize_answer

__all__ = ["SelectRule", "candidate_score", "majority_vote", "make_select_node", "weighted_vote"]

SelectRule = Literal["majority", "best_score", "weighted", "verified"]
_RULES: tuple[str, ...] = ("majority", "best_score", "weighted", "verified")


def candidate_score(candidate: Candidate) -> float:
    """A candidate's score: the verifier's when set, else its mean token logprob, else -inf."""
    if candidate.score is not None:
        return candidate.score
    if candidate.mean_logprob is not None:
        return candidate.mean_logprob
    return float("-inf")


def majority_vote(
    candidates: Sequence[Candidate],
) -> tuple[Candidate | None, dict[str, int], str]:
    """Return (a representative of the winning answer, votes per normalised answer, tie-break).

    The representative is the winning answer's highest-scored candidate.
    """
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        if c.answer is not None and c.answer.strip():
            groups.setdefault(normalize_answer(c.answer), []).append(c)
    votes = {key: len(members) for key, members in groups.items()}
    if not groups:
        return None, votes, "no candidate has an extractable answer"
    top = max(votes.values())
    leaders = [k for k in groups if votes[k] == top]
    tie_break = "none"
    if len(leaders) > 1:

        def strength(key: str) -> tuple[float, int]:
            members = groups[key]
            return (sum(candidate_score(m) for m in members), -min(m.index for m in members))

        leaders.sort(key=strength, reverse=True)
        tie_break = (
            "summed score" if strength(leaders[0])[0] != strength(leaders[1])[0] else "first seen"
        )
    winners = groups[leaders[0]]
    best = max(winners, key=lambda c: (candidate_score(c), -c.index))
    return best, votes, tie_break


def weighted_vote(
    candidates: Sequence[Candidate],
) -> tuple[Candidate | None, dict[str, float]]:
    """Return (the winning answer's best candidate, summed score per normalised answer)."""
    groups: dict[str, list[Candidate]] = {}
    for c in candidates:
        if c.answer is not None and c.answer.strip():
            groups.setdefault(normalize_answer(c.answer), []).append(c)
    weights = {k: sum(m.score or 0.0 for m in members) for k, members in groups.items()}
    if not groups:
        return None, weights
    key = max(
        groups,
        key=lambda k: (weights[k], len(groups[k]), -min(m.index for m in groups[k])),
    )
    best = max(groups[key], key=lambda c: (candidate_score(c), -c.index))
    return best, weights


def make_select_node(
    *,
    rule: SelectRule = "majority",
    keys: StateKeys = StateKeys(),
    strategy: str | None = None,
    name: str = "select",
) -> NodeFn:
    """Make a node that writes the chosen ``answer`` and ``response`` from the candidates.

    >>> graph.add_node("select", make_select_node(rule="majority"))  # doctest: +SKIP
    """
    if rule not in _RULES:
        raise ConfigError(f"unknown selection rule {rule!r}; choose one of: {', '.join(_RULES)}")

    async def select(state: Mapping[str, Any]) -> dict[str, Any]:
        candidates: list[Candidate] = list(state.get(keys.candidates) or [])
        chosen: Candidate | None
        info: dict[str, Any] = {"rule": rule, "n_candidates": len(candidates)}
        if rule == "majority":
            chosen, votes, tie_break = majority_vote(candidates)
            info.update(votes=votes, tie_break=tie_break)
            if chosen is None and candidates:
                # Nothing to vote on: fall back to the best-scored text rather than no answer.
                chosen = max(candidates, key=lambda c: (candidate_score(c), -c.index))
                info["fallback"] = "best_score"
        elif rule == "weighted":
            chosen, weights = weighted_vote(candidates)
            info["weights"] = weights
        elif rule == "verified":
            passing = [c for c in candidates if c.verdict is not None and c.verdict.passed]
            info["passed"] = [c.index for c in passing]
            if passing:
                chosen = max(passing, key=lambda c: (candidate_score(c), -c.index))
            else:
                chosen, votes, tie_break = majority_vote(candidates)
                info.update(fallback="majority", votes=votes, tie_break=tie_break)
        else:
            chosen = max(candidates, key=lambda c: (candidate_score(c), -c.index), default=None)
        if chosen is not None:
            info.update(chosen_index=chosen.index, answer=chosen.answer)
        else:
            info["reason"] = "no candidates"
        update: dict[str, Any] = {
            keys.answer: chosen.answer if chosen else None,
            keys.response: chosen.text if chosen else None,
            keys.decisions: [decision(name, "select", **info)],
        }
        if strategy is not None:
            update[keys.strategy] = strategy
        return update

    select.__name__ = name
    return select

"""Selection: pick the final answer from the candidates in state.

Rules:

- ``"majority"`` (self-consistency): vote over what the candidates say — their normalised final
  answers, or, for candidates that made tool calls, the tool names and arguments (so an agent's
  step is chosen by vote too). Candidates with neither do not vote. Ties go to the answer whose
  voters have the higher summed score (``score`` when a verifier set it, else mean token
  logprob), then to the answer that appeared first (lowest candidate index). Deterministic: the
  same candidates give the same answer.
- ``"best_score"``: the candidate with the highest score (verifier/reward score when set, else
  mean token logprob); ties go to the lowest index.
- ``"weighted"``: weighted vote: each distinct answer scores the sum of its candidates' verifier
  or reward scores (unscored candidates weigh 0); ties go to more votes, then first seen. The
  answer's highest-scored candidate represents it.
- ``"verified"``: verifier-first: the best-scored candidate whose verdict passed (ties to the
  lowest index); when none passed, majority vote decides.

Your own rule is a function ``candidates -> chosen candidate (or None)``, registered by name with
:func:`register_selector` (so a spec can name it) or passed as ``select=`` directly.

With no candidates at all (e.g. the budget allowed none), the answer is None and the decision
says why. In a conversation, the chosen response is appended to ``messages``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, get_args

from tts_graph.candidate import Candidate, best_candidate, candidate_score, vote_key
from tts_graph.errors import ConfigError
from tts_graph.nodes._node import Node, chosen_update, make_node
from tts_graph.nodes._record import decision
from tts_graph.state import StateKeys

__all__ = [
    "SelectOption",
    "SelectRule",
    "Selector",
    "available_selectors",
    "group_votes",
    "majority_vote",
    "make_select_node",
    "register_selector",
    "weighted_vote",
]

SelectRule = Literal["majority", "best_score", "weighted", "verified"]

Selector = Callable[[Sequence[Candidate]], "Candidate | None"]
"""A selection rule of your own: the candidates (sorted by index) in, the chosen one out."""

SelectOption = SelectRule | str | Selector
"""What ``select=`` takes: a built-in rule, a registered rule's name, or a rule function."""

_SELECTORS: dict[str, Selector] = {}


def register_selector(name: str, selector: Selector, *, replace: bool = False) -> Selector:
    """Register ``selector`` under ``name``, for ``make_select_node(select=name)`` and specs.

    >>> def shortest(candidates):
    ...     return min(candidates, key=lambda c: len(c.text), default=None)
    >>> _ = register_selector("shortest", shortest, replace=True)
    >>> "shortest" in available_selectors()
    True
    """
    if name in get_args(SelectRule):
        raise ConfigError(f"{name!r} is a built-in selection rule; register under another name")
    if name in _SELECTORS and not replace:
        raise ConfigError(f"a selector named {name!r} is registered already; pass replace=True")
    _SELECTORS[name] = selector
    return selector


def available_selectors() -> list[str]:
    """The built-in rules, then the registered ones: what ``select=`` accepts by name."""
    return [*get_args(SelectRule), *sorted(_SELECTORS)]


def group_votes(candidates: Sequence[Candidate]) -> dict[str, list[Candidate]]:
    """The candidates grouped by what they vote for (:func:`~tts_graph.candidate.vote_key`), in
    order of first appearance; candidates that vote for nothing are left out."""
    groups: dict[str, list[Candidate]] = {}
    for c in sorted(candidates, key=lambda c: c.index):
        if (key := vote_key(c)) is not None:
            groups.setdefault(key, []).append(c)
    return groups


def _weight(candidate: Candidate) -> float:
    # Unscored candidates weigh 0; so does a NaN score, which no ordering can place.
    score = candidate.score
    return 0.0 if score is None or math.isnan(score) else score


def _total(values: Iterable[float]) -> float:
    """A sum to rank answers by; +inf and -inf together make NaN, which ranks as the lowest
    (a NaN compares false with everything, and the choice would depend on the order)."""
    total = sum(values)
    return float("-inf") if math.isnan(total) else total


def majority_vote(
    candidates: Sequence[Candidate],
) -> tuple[Candidate | None, dict[str, int], str]:
    """Return (a representative of the winning answer, votes per answer, tie-break).

    The representative is the winning answer's highest-scored candidate.
    """
    groups = group_votes(candidates)
    votes = {key: len(members) for key, members in groups.items()}
    if not groups:
        return None, votes, "no candidate has an extractable answer"
    top = max(votes.values())
    leaders = [k for k in groups if votes[k] == top]
    tie_break = "none"
    if len(leaders) > 1:

        def strength(key: str) -> tuple[float, int]:
            members = groups[key]
            return (_total(candidate_score(m) for m in members), -min(m.index for m in members))

        leaders.sort(key=strength, reverse=True)
        tie_break = (
            "summed score" if strength(leaders[0])[0] != strength(leaders[1])[0] else "first seen"
        )
    return best_candidate(groups[leaders[0]]), votes, tie_break


def weighted_vote(
    candidates: Sequence[Candidate],
) -> tuple[Candidate | None, dict[str, float]]:
    """Return (the winning answer's best candidate, summed score per answer)."""
    groups = group_votes(candidates)
    weights = {k: _total(_weight(m) for m in members) for k, members in groups.items()}
    if not groups:
        return None, weights
    key = max(
        groups,
        key=lambda k: (weights[k], len(groups[k]), -min(m.index for m in groups[k])),
    )
    return best_candidate(groups[key]), weights


def choose(
    rule: SelectOption, candidates: Sequence[Candidate]
) -> tuple[Candidate | None, dict[str, Any]]:
    """Apply ``rule``; returns the chosen candidate and what the decision records."""
    custom = _SELECTORS.get(rule) if isinstance(rule, str) else rule
    name = rule if isinstance(rule, str) else getattr(rule, "__name__", type(rule).__name__)
    info: dict[str, Any] = {"rule": name, "n_candidates": len(candidates)}
    chosen: Candidate | None
    if custom is not None:
        chosen = custom(sorted(candidates, key=lambda c: c.index))
    elif rule == "majority":
        chosen, votes, tie_break = majority_vote(candidates)
        info.update(votes=votes, tie_break=tie_break)
        if chosen is None and candidates:
            # Nothing to vote on: fall back to the best-scored text rather than no answer.
            chosen = best_candidate(candidates)
            info["fallback"] = "best_score"
    elif rule == "weighted":
        chosen, weights = weighted_vote(candidates)
        info["weights"] = weights
    elif rule == "verified":
        passing = sorted(
            (c for c in candidates if c.verdict is not None and c.verdict.passed),
            key=lambda c: c.index,
        )
        info["passed"] = [c.index for c in passing]
        chosen = best_candidate(passing)
        if chosen is None:
            chosen, votes, tie_break = majority_vote(candidates)
            info.update(fallback="majority", votes=votes, tie_break=tie_break)
    else:
        chosen = best_candidate(candidates)
    if chosen is not None:
        info.update(chosen_index=chosen.index, answer=chosen.answer)
    else:
        info["reason"] = "no candidates"
    return chosen, info


def resolve_selector(select: SelectOption) -> SelectOption:
    """``select`` checked: a built-in rule, a registered name, or a function."""
    if callable(select):
        return select
    if select not in get_args(SelectRule) and select not in _SELECTORS:
        raise ConfigError(
            f"unknown selection rule {select!r}; choose one of: "
            f"{', '.join(available_selectors())}, or register one with register_selector"
        )
    return select


def make_select_node(
    *,
    select: SelectOption = "majority",
    keys: StateKeys = StateKeys(),
    strategy: str | None = None,
    name: str = "select",
) -> Node:
    """Make a node that writes the chosen ``answer`` and ``response`` from the candidates (and,
    in a conversation, appends the chosen response to ``messages``).

    >>> graph.add_node("select", make_select_node(select="majority"))  # doctest: +SKIP
    """
    rule = resolve_selector(select)

    async def select_node(state: Mapping[str, Any]) -> dict[str, Any]:
        candidates: list[Candidate] = list(state.get(keys.candidates) or [])
        chosen, info = choose(rule, candidates)
        record = decision(name, "select", **info)
        update = chosen_update(state, keys, chosen, record)
        update[keys.decisions] = [record]
        if strategy is not None:
            update[keys.strategy] = strategy
        return update

    return make_node(select_node, name)

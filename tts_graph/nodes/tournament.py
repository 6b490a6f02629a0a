"""Pairwise tournaments: pick the final answer by letting a judge compare candidates in pairs.

Rules follow Chen et al. 2024 (arXiv 2411.19477):

- ``"knockout"``: survivors are paired in index order each round; each pair is judged ``judgements``
  times (K), ``⌈K/2⌉`` with the lower-index candidate shown as A and ``⌊K/2⌋`` shown as B,
  which cancels a judge's position bias; the majority of votes advances. A tie (including no
  votes at all) is broken at random by ``random.Random(seed)``, so a run is reproducible. An
  odd survivor gets a bye. Two identical candidates need no judge: the lower index advances.
  Identical means the same text after normalisation (case, whitespace and a trailing period
  ignored); with ``extract=`` set (the task names an answer extractor), the same extracted,
  normalised answer. Extracted answers do not define equivalence by default: two different
  programs, or two essays, that both "extract" to ``1`` are not the same. For ``N`` distinct candidates this is
  exactly ``⌈log2 N⌉`` rounds and ``(N − 1) · K`` judge calls; the calls of one round run
  concurrently.
- ``"league"``: every candidate draws ``opponents`` others at random (``random.Random(seed)``);
  the drawn pairs, without repeats, are the schedule (so each candidate plays at least
  ``opponents`` games). A game is judged like a knockout pair; a candidate's game score is its
  share of the game's votes (0.5 when nobody got one, or when the two are identical) and its
  standing is the average over its games. The best standing wins, ties to the lower index.

Every judgement is cached by (text shown as A, text shown as B, repetition), so the same pair
is never judged twice, even when duplicate texts meet again later. A reply without a parseable
winner, a judge call that raises :class:`~tts_graph.errors.BackendError`, or one that outlasts
the judge's ``call_timeout_s`` (:func:`~tts_graph.verifiers.base.call_timeout`; it is cancelled)
is no vote (the error is recorded; failed calls report no usage). When every judge call failed
(the judge's server is down, say), the tournament decided nothing: the answer is chosen by
majority vote over the candidates instead, and the decision says so (``fallback`` and
``error``). Judge calls are charged to the run's ledger like any request; when it refuses one,
the tournament stops after that round: a game that got all its votes counts, and the best
survivor so far wins (most wins, then lower index), with ``reason="budget"`` or ``"wall
time"`` (:class:`~tts_graph.errors.BudgetExhausted` in strict mode). A league cut short ranks candidates by the games that were judged in full.

The decision records the bracket (or the league's games and standings), judge calls, cache
hits, errors and the judge's consistency: among judgements of the same pair in both orders,
the fraction of (A,B)/(B,A) pairs in which both votes name the same candidate (pairs where
either call gave no vote are left out; None when there is no such pair). A judge that always
says "A" scores 0.0.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tts_graph.candidate import Candidate
from tts_graph.errors import BackendError, BudgetExhausted, ConfigError, check_choice
from tts_graph.metering import Spending, charge_call, spending
from tts_graph.nodes._budget import run_ledger
from tts_graph.nodes._node import Node, chosen_update, make_node
from tts_graph.nodes._record import decision
from tts_graph.nodes.select import majority_vote
from tts_graph.prompts import question_of
from tts_graph.state import StateKeys
from tts_graph.verifiers.answer import (
    AnswerExtractor,
    extract_answer,
    normalize_answer,
    resolve_extractor,
)
from tts_graph.verifiers.base import call_timeout
from tts_graph.verifiers.judge import Preference

__all__ = [
    "PairwiseJudge",
    "TournamentMode",
    "answer_identity",
    "make_tournament_node",
    "text_identity",
]

logger = logging.getLogger(__name__)

TournamentMode = Literal["knockout", "league"]

# A judgement: (text shown as A, text shown as B, repetition of that ordering).
_Key = tuple[str, str, int]


class PairwiseJudge(Protocol):
    """Anything that says which of two answers to a question is better, such as
    :class:`~tts_graph.verifiers.judge.LLMJudge`.

    >>> class Longer:
    ...     async def compare(self, question: str, a: str, b: str) -> Preference:
    ...         return Preference("A" if len(a) >= len(b) else "B", raw="", usage=Usage())
    >>> judge: PairwiseJudge = Longer()
    """

    async def compare(self, question: str, a: str, b: str) -> Preference: ...


Identity = Callable[[Candidate], str]


def text_identity(c: Candidate) -> str:
    """Two candidates are the same when their texts are, up to case, whitespace and a final
    period."""
    return "text:" + re.sub(r"\s+", " ", c.text).strip().rstrip(".").casefold()


def answer_identity(extract: Callable[[str], str | None]) -> Identity:
    """Two candidates are the same when ``extract`` finds the same normalised answer in both
    (else, when it finds none, the same text)."""

    def identity(c: Candidate) -> str:
        answer = extract(c.text)
        if answer is not None and answer.strip():
            return "answer:" + normalize_answer(answer)
        return text_identity(c)

    return identity


def _plan(x: Candidate, y: Candidate, k: int) -> list[tuple[_Key, bool]]:
    """The ``k`` judgements of a pair, each with whether ``x`` is shown as A (extra one: A)."""
    return [((x.text, y.text, j), True) for j in range((k + 1) // 2)] + [
        ((y.text, x.text, j), False) for j in range(k // 2)
    ]


@dataclass
class _Game:
    x: Candidate
    y: Candidate
    votes_x: int = 0
    votes_y: int = 0
    no_votes: int = 0
    identical: bool = False

    def record(
        self, winner: Candidate | None = None, tie_break: str | None = None
    ) -> dict[str, Any]:
        return {
            "pair": [self.x.index, self.y.index],
            "votes": [self.votes_x, self.votes_y],
            "no_votes": self.no_votes,
            "winner": None if winner is None else winner.index,
            "identical": self.identical,
            "bye": False,
            "tie_break": tie_break,
        }


@dataclass
class _Session:
    """One node run: the judge, its cache and what it has cost."""

    judge: PairwiseJudge
    question: str
    k: int
    identity: Identity
    spent: Spending
    timeout: float | None = None  # one judge call, cancelled past it
    cache: dict[_Key, str | None] = field(default_factory=dict)
    calls: int = 0
    cache_hits: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    stopped: str | None = None  # why the budget stopped the tournament

    async def _ask(self, key: _Key) -> None:
        a, b, _ = key
        timer = asyncio.timeout(self.timeout)
        try:
            async with charge_call(what="a judge call") as bill:
                async with timer:
                    pref = await self.judge.compare(self.question, a, b)
                bill.settle(pref.usage)
        except BackendError as exc:
            self._failed(key, str(exc), retryable=exc.retryable)
            return
        except TimeoutError:
            if not timer.expired():
                raise
            why = f"the judge did not answer within {self.timeout:g} s (its call_timeout_s)"
            self._failed(key, why, retryable=True)
            return
        except BudgetExhausted as exc:
            self.stopped = self.spent.stopped(exc)
            return  # not cached: this judgement was never made
        self.calls += 1
        self.cache[key] = pref.winner if pref.winner in ("A", "B") else None

    def _failed(self, key: _Key, error: str, *, retryable: bool) -> None:
        self.calls += 1
        logger.warning("judge call failed, counted as no vote: %s", error)
        self.errors.append({"error": error, "retryable": retryable})
        self.cache[key] = None

    def all_failed(self) -> bool:
        """Whether the judge was asked and every call failed: the bracket decided nothing."""
        return self.calls > 0 and len(self.errors) == self.calls

    async def play(self, pairs: Sequence[tuple[Candidate, Candidate]]) -> list[_Game]:
        """Judge ``pairs``; a game whose judgements the budget refused is left out."""
        if self.stopped is not None:
            return []
        games = [_Game(x, y, identical=self.identity(x) == self.identity(y)) for x, y in pairs]
        plans = [[] if g.identical else _plan(g.x, g.y, self.k) for g in games]
        wanted = {key for plan in plans for key, _ in plan}
        fresh = [key for key in sorted(wanted) if key not in self.cache]
        await asyncio.gather(*(self._ask(key) for key in fresh))
        self.cache_hits += sum(len(plan) for plan in plans) - len(fresh)
        played = []
        for game, plan in zip(games, plans, strict=True):
            if any(key not in self.cache for key, _ in plan):
                continue
            played.append(game)
            for key, x_is_a in plan:
                vote = self.cache[key]
                if vote is None:
                    game.no_votes += 1
                elif (vote == "A") == x_is_a:
                    game.votes_x += 1
                else:
                    game.votes_y += 1
        return played

    def consistency(self) -> float | None:
        agree = total = 0
        for (a, b, j), first in self.cache.items():
            second = self.cache.get((b, a, j))
            if a < b and first is not None and second is not None:
                total += 1
                agree += first != second  # "A" then "B" names the same text
        return None if total == 0 else agree / total


def make_tournament_node(
    judge: PairwiseJudge,
    *,
    mode: TournamentMode = "knockout",
    judgements: int = 4,
    opponents: int = 3,
    seed: int = 0,
    extract: AnswerExtractor | str | None = None,
    keys: StateKeys = StateKeys(),
    strategy: str | None = None,
    name: str = "tournament",
) -> Node:
    """Make a node that picks ``answer`` and ``response`` by a pairwise tournament among the
    candidates in state (see the module docs for the rules).

    ``judgements`` per pair; ``opponents`` is the league's games per candidate; ``seed``
    drives knockout tie-breaks and the league's schedule. ``extract``: the task's answer
    extractor, when two candidates with the same final answer are the same candidate (math);
    leave it None for code and open text. Judge usage is added to ``state[keys.usage]``. One
    judge call is bounded by the judge's ``call_timeout_s``
    (:func:`~tts_graph.verifiers.base.call_timeout`).

    >>> node = make_tournament_node(LLMJudge(backend), mode="knockout", judgements=4)  # doctest: +SKIP
    >>> graph.add_node("tournament", node)  # doctest: +SKIP
    """
    check_choice("tournament mode", mode, TournamentMode)
    if judgements < 1:
        raise ConfigError(f"judgements (per pair) must be >= 1, got {judgements}")
    if opponents < 1:
        raise ConfigError(f"opponents must be >= 1, got {opponents}")
    if not callable(getattr(judge, "compare", None)):
        raise ConfigError(
            f"judge must have an async compare(question, a, b) method, got {type(judge).__name__}"
        )
    identity = text_identity if extract is None else answer_identity(resolve_extractor(extract))
    timeout = call_timeout(judge)

    async def tournament(state: Mapping[str, Any]) -> dict[str, Any]:
        candidates = sorted(state.get(keys.candidates) or [], key=lambda c: c.index)
        info: dict[str, Any] = {
            "mode": mode,
            "judgements": judgements,
            "n_candidates": len(candidates),
        }
        winner: Candidate | None = None
        with spending(run_ledger(state, keys, name)) as spent:
            question = question_of(state, keys.question, keys.messages)
            session = _Session(judge, question, judgements, identity, spent, timeout)
            if not candidates:
                info["reason"] = "no candidates"
            elif mode == "knockout":
                winner = await _knockout(session, candidates, seed, info)
            else:
                winner = await _league(session, candidates, opponents, seed, info)
            if session.all_failed():
                # The bracket is coin flips: the candidates' own vote is a better choice.
                first = session.errors[0]["error"]
                info["error"] = f"all {session.calls} judge calls failed; the first: {first}"
                voted, votes, _ = majority_vote(candidates)
                if voted is not None:
                    winner = voted
                    info.update(fallback="majority", votes=votes)
            answer = None
            if winner is not None:
                answer = winner.answer if winner.answer is not None else extract_answer(winner.text)
                info.update(winner=winner.index, answer=answer)
            info.update(
                judge_calls=session.calls,
                cache_hits=session.cache_hits,
                judge_errors=session.errors,
                consistency=session.consistency(),
                usage=spent.usage.to_dict(),
            )
            info.setdefault("reason", session.stopped)
            record = decision(name, "tournament", **info)
        chosen = None if winner is None else dataclasses.replace(winner, answer=answer)
        update = chosen_update(state, keys, chosen, record, usage=spent.usage)
        update[keys.decisions] = [record]
        if spent.usage.calls:
            update[keys.usage] = spent.usage
        if strategy is not None:
            update[keys.strategy] = strategy
        return update

    return make_node(tournament, name)


async def _knockout(
    session: _Session, candidates: list[Candidate], seed: int, info: dict[str, Any]
) -> Candidate:
    rng = random.Random(seed)
    survivors = candidates
    wins = {c.index: 0 for c in candidates}
    bracket: list[dict[str, Any]] = []
    info.update(rounds_planned=math.ceil(math.log2(len(candidates))), bracket=bracket)
    while len(survivors) > 1 and session.stopped is None:
        pairs = list(zip(survivors[0::2], survivors[1::2], strict=False))
        matches = []
        advancing = []
        for game in await session.play(pairs):
            tie_break = None
            if game.identical or game.votes_x > game.votes_y:
                won = game.x
            elif game.votes_y > game.votes_x:
                won = game.y
            else:
                won = game.x if rng.random() < 0.5 else game.y
                tie_break = "random"
            wins[won.index] += 1
            advancing.append(won)
            matches.append(game.record(won, tie_break))
        if session.stopped is not None:
            # The budget cut this round: its finished games count as wins, but nobody advances
            # on an unfinished bracket.
            bracket.append({"round": len(bracket) + 1, "matches": matches, "cut": True})
            break
        if len(survivors) % 2:
            bye = survivors[-1]
            advancing.append(bye)
            matches.append(
                {
                    "pair": [bye.index],
                    "votes": [],
                    "no_votes": 0,
                    "winner": bye.index,
                    "identical": False,
                    "bye": True,
                    "tie_break": None,
                }
            )
        bracket.append({"round": len(bracket) + 1, "matches": matches})
        survivors = advancing
    # Survivors that a budget stop left behind are ranked by what they have won so far.
    return max(survivors, key=lambda c: (wins[c.index], -c.index))


async def _league(
    session: _Session,
    candidates: list[Candidate],
    opponents: int,
    seed: int,
    info: dict[str, Any],
) -> Candidate:
    rng = random.Random(seed)
    n = len(candidates)
    drawn = min(opponents, n - 1)
    schedule = sorted(
        {
            (min(i, j), max(i, j))
            for i in range(n)
            for j in rng.sample([o for o in range(n) if o != i], drawn)
        }
    )
    pairs = [(candidates[i], candidates[j]) for i, j in schedule]
    shares: dict[int, list[float]] = {c.index: [] for c in candidates}
    games: list[dict[str, Any]] = []
    info.update(opponents=drawn, games=games, scheduled=len(pairs))
    for game in await session.play(pairs):
        decisive = game.votes_x + game.votes_y
        share_x = 0.5 if decisive == 0 else game.votes_x / decisive
        shares[game.x.index].append(share_x)
        shares[game.y.index].append(1.0 - share_x)
        games.append(game.record())
    standings = {i: sum(s) / len(s) if s else None for i, s in shares.items()}
    info["standings"] = [
        {"index": i, "score": score, "games": len(shares[i])} for i, score in standings.items()
    ]
    return max(candidates, key=lambda c: (standings[c.index] or 0.0, -c.index))

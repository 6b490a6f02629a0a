"""Self-consistency with an early stop: sample in rounds and stop once the vote is settled.

Each round is one ``n``-sample request (the prompt is read once); round ``r`` (from 1) carries
seed ``seed + r − 1`` so rounds differ. Votes are over normalised final answers (as in
:func:`~tts_graph.nodes.select.majority_vote`). Candidates already in state (such as a difficulty
probe's samples) are samples already drawn: they vote and count towards ``max_samples``, so the
node only draws what is still needed (``count_existing=False`` starts from nothing). Two stopping
rules, both from its_hub:

- ``"adaptive"``: draw ``initial`` samples (default 2), then keep doubling the total (request
  the difference: 2, 2, 4, 8, … up to ``max_samples``) until the top answer holds at least
  ``threshold`` (default 0.75) of the samples drawn. Samples without an extractable answer count
  in the denominator: a pile of unparseable replies is no consensus.
- ``"beta"``: draw batches of ``initial`` samples (default 2) and stop as soon as
  :func:`prob_top_stays_on_top` of the top two answers' votes reaches ``threshold`` (default
  0.95). Samples without an answer vote for neither. All-agreeing samples stop after 4.

Either rule also stops at ``max_samples``. Every round is charged to the run's ledger, which may
cut it (fewer samples, a lower ``max_tokens``, recorded in the round's decision) or refuse it;
a refusal stops with ``reason="budget"`` or ``"wall time"``
(:class:`~tts_graph.errors.BudgetExhausted` in strict mode). A backend failure after the first
round stops with the samples so far.

Every round is recorded and streamed (votes, statistic, continue/stop and why), then a summary
with ``skipped = max_samples − drawn``. The node writes candidates, usage and decisions, not the
answer: put a majority-vote :func:`~tts_graph.nodes.select.make_select_node` after it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from fractions import Fraction
from math import comb
from typing import Any, Literal

from tts_graph.backends.base import Backend, GenerationRequest, SamplingParams, metered
from tts_graph.candidate import Candidate, next_index
from tts_graph.errors import BackendError, BudgetExhausted, ConfigError, check_choice
from tts_graph.metering import spending
from tts_graph.nodes._budget import run_ledger
from tts_graph.nodes._node import Node, make_node, require_keys
from tts_graph.nodes._record import decision
from tts_graph.nodes.select import majority_vote
from tts_graph.prompts import PromptFn, question_prompt, run_tools
from tts_graph.state import Decision, StateKeys
from tts_graph.verifiers.answer import AnswerExtractor, extract_answer, resolve_extractor

__all__ = ["StopRule", "make_consistency_node", "prob_top_stays_on_top"]

logger = logging.getLogger(__name__)

StopRule = Literal["adaptive", "beta"]
_DEFAULT_THRESHOLD = {"adaptive": 0.75, "beta": 0.95}


def _regularized_beta(x: Fraction, a: int, b: int) -> Fraction:
    """``I_x(a, b)`` for positive integers, exactly: ``P(Binomial(a + b − 1, x) ≥ a)``."""
    n = a + b - 1
    return sum((comb(n, j) * x**j * (1 - x) ** (n - j) for j in range(a, n + 1)), Fraction(0))


def prob_top_stays_on_top(v1: int, v2: int) -> float:
    """``1 − I_0.5(v1 + 1, v2 + 1)``: with a uniform prior on the top answer's share ``p`` among
    the top two, the posterior probability that ``p > 1/2`` after ``v1`` votes for the top
    answer and ``v2`` for the runner-up. Computed exactly (no scipy).

    >>> prob_top_stays_on_top(3, 0), prob_top_stays_on_top(4, 0), prob_top_stays_on_top(2, 2)
    (0.9375, 0.96875, 0.5)
    """
    if v1 < 0 or v2 < 0:
        raise ValueError(f"vote counts must be >= 0, got {v1} and {v2}")
    return float(1 - _regularized_beta(Fraction(1, 2), v1 + 1, v2 + 1))


def _statistic(stop: str, votes: Mapping[str, int], drawn: int) -> float:
    top = [*sorted(votes.values(), reverse=True), 0, 0]
    if stop == "adaptive":
        return top[0] / drawn
    return prob_top_stays_on_top(top[0], top[1])


def make_consistency_node(
    backend: Backend,
    *,
    stop: StopRule = "adaptive",
    max_samples: int = 16,
    initial: int | None = None,
    threshold: float | None = None,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str = extract_answer,
    count_existing: bool = True,
    keys: StateKeys = StateKeys(),
    name: str = "consistency",
) -> Node:
    """Make a node that samples candidates in rounds until the vote is settled (see the module
    docs for both rules) and adds them to ``state[keys.candidates]``.

    ``initial``: the first request's size (``"adaptive"``) or every batch's size (``"beta"``),
    default 2. ``threshold``: top answer's share (``"adaptive"``, default 0.75) or
    :func:`prob_top_stays_on_top` (``"beta"``, default 0.95).

    >>> graph.add_node("sample", make_consistency_node(backend, stop="beta"))  # doctest: +SKIP
    >>> graph.add_node("vote", make_select_node(rule="majority"))  # doctest: +SKIP
    """
    check_choice("stop rule", stop, StopRule)
    if max_samples < 1:
        raise ConfigError(f"max_samples must be >= 1, got {max_samples}")
    first = min(2, max_samples) if initial is None else initial
    if not 1 <= first <= max_samples:
        raise ConfigError(f"initial must be in [1, max_samples={max_samples}], got {initial}")
    limit = _DEFAULT_THRESHOLD[stop] if threshold is None else threshold
    if not 0.0 < limit <= 1.0:
        raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
    base = sampling or SamplingParams(logprobs=True)
    build_prompt = prompt or question_prompt(key=keys.question, messages_key=keys.messages)
    read_answer = resolve_extractor(extract)
    model = metered(backend)

    def wanted_next(drawn: int) -> int:
        total = (first if drawn == 0 else 2 * drawn) if stop == "adaptive" else drawn + first
        return min(total, max_samples) - drawn

    async def consistency(state: Mapping[str, Any]) -> dict[str, Any]:
        require_keys(state, name, keys.candidates, keys.decisions, keys.usage)
        messages = build_prompt(state)
        tools = run_tools()
        existing: list[Candidate] = list(state.get(keys.candidates) or []) if count_existing else []
        offset = next_index(state.get(keys.candidates))
        drawn: list[Candidate] = []
        records: list[Decision] = []
        votes: dict[str, int] = majority_vote(existing)[1]
        statistic: float | None = None
        reason = "max_samples"
        with spending(run_ledger(state, keys, name)) as spent:
            while True:
                seen = len(existing) + len(drawn)
                if seen >= max_samples:
                    reason = "max_samples"
                    break
                if seen and (statistic := _statistic(stop, votes, seen)) >= limit:
                    reason = "threshold"  # the samples already in state settle it
                    break
                round_no = len(records) + 1
                wanted = wanted_next(seen)
                params = dataclasses.replace(base, seed=seed + round_no - 1)
                request = GenerationRequest.chat(messages, n=wanted, sampling=params, tools=tools)
                try:
                    gen = await model.generate(request)
                except BudgetExhausted as exc:
                    reason = spent.stopped(exc)
                    break
                except BackendError as exc:
                    if not drawn:
                        raise
                    logger.warning("%s: round %d failed, stopping: %s", name, round_no, exc)
                    reason = "backend_error"
                    break
                drawn += [
                    Candidate.from_completion(
                        c, index=offset + len(drawn) + i, answer=read_answer(c.text), source=name,
                        seed=params.seed,
                    )
                    for i, c in enumerate(gen.completions)
                ]  # fmt: skip
                seen = len(existing) + len(drawn)
                votes = majority_vote([*existing, *drawn])[1]
                statistic = _statistic(stop, votes, seen)
                if statistic >= limit:
                    reason, why = "threshold", f"statistic {statistic:.4g} >= threshold {limit:g}"
                elif seen >= max_samples:
                    reason, why = "max_samples", f"drew max_samples={max_samples}"
                else:
                    reason, why = "", f"statistic {statistic:.4g} < threshold {limit:g}"
                records.append(
                    decision(
                        name, "consistency_round", round=round_no, requested=wanted,
                        sampled=len(gen.completions), seed=params.seed, drawn=seen, votes=votes,
                        statistic=statistic, threshold=limit,
                        decision="stop" if reason else "continue", why=why,
                    )
                )  # fmt: skip
                if reason:
                    break
            summary = decision(
                name, "consistency", stop=stop, rounds=len(records), drawn=len(drawn),
                reused=len(existing), max_samples=max_samples,
                skipped=max(0, max_samples - len(existing) - len(drawn)), reason=reason, votes=votes,
                statistic=statistic, usage=spent.usage.to_dict(),
            )  # fmt: skip
        update: dict[str, Any] = {keys.decisions: [*records, summary]}
        if drawn:
            update[keys.candidates] = drawn
        if spent.usage.calls:
            update[keys.usage] = spent.usage
        return update

    return make_node(consistency, name)

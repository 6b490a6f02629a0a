"""Self-consistency with an early stop: sample concurrently, stop once the vote is settled, and
cancel what is still being generated.

The node fires its samples at once (``concurrency`` bounds how many are in flight), each as its
own streamed one-sample request with seed ``seed + i`` (vLLM's prefix cache shares the prompt).
As samples finish it checks the stop rule; once it holds, the requests still running are
cancelled: vLLM aborts a request whose client disconnects, so the server stops generating them,
and the budget counts only what the server streamed. Votes are over normalised final answers (as
in :func:`~tts_graph.nodes.select.majority_vote`). Candidates already in state (such as a
difficulty probe's samples) are samples already drawn: they vote and count towards
``max_samples`` (``count_existing=False`` starts from nothing). Two stopping rules, both from
its_hub:

- ``"adaptive"``: checked when ``initial`` samples (default 2) have finished, then each time
  the count doubles (2, 4, 8, … up to ``max_samples``): stop once the top answer holds at least
  ``threshold`` (default 0.75) of the samples. Samples without an extractable answer count in
  the denominator: a pile of unparseable replies is no consensus.
- ``"beta"``: checked after every sample from ``initial`` on: stop as soon as
  :func:`prob_top_stays_on_top` of the top two answers' votes reaches ``threshold`` (default
  0.95). Samples without an answer vote for neither. All-agreeing samples stop after 4.

Either rule also stops at ``max_samples``. Every request is charged to the run's ledger, which
may cut or refuse it; a refusal stops with ``reason="budget"`` or ``"wall time"``
(:class:`~tts_graph.errors.BudgetExhausted` in strict mode). A backend failure after the first
sample stops with the samples so far.

Every check is recorded and streamed (samples, votes, statistic, continue/stop and why), then a
summary with the samples drawn, reused and cancelled, and the tokens the cancelled samples had
generated. The node writes candidates, usage and decisions, not the answer: put a majority-vote
:func:`~tts_graph.nodes.select.make_select_node` after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from fractions import Fraction
from math import comb
from typing import Any, Literal

from tts_graph.backends.base import (
    Backend,
    BaseBackend,
    GenerationRequest,
    Message,
    SamplingParams,
    StreamedSample,
    metered,
)
from tts_graph.candidate import Candidate, next_index
from tts_graph.errors import (
    BackendError,
    BudgetExhausted,
    ConfigError,
    check_choice,
    check_count,
)
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
    concurrency: int | None = None,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str = extract_answer,
    count_existing: bool = True,
    keys: StateKeys = StateKeys(),
    name: str = "consistency",
) -> Node:
    """Make a node that samples candidates until the vote is settled (see the module docs for
    both rules) and adds them to ``state[keys.candidates]``.

    ``initial``: the first check's sample count, default 2. ``threshold``: the top answer's share
    (``"adaptive"``, default 0.75) or :func:`prob_top_stays_on_top` (``"beta"``, default 0.95).
    ``concurrency``: samples in flight at once (default: all of them).

    >>> graph.add_node("sample", make_consistency_node(backend, stop="beta"))  # doctest: +SKIP
    >>> graph.add_node("vote", make_select_node(select="majority"))  # doctest: +SKIP
    """
    check_choice("stop rule", stop, StopRule)
    check_count("max_samples", max_samples)
    first = min(2, max_samples) if initial is None else initial
    if not 1 <= first <= max_samples:
        raise ConfigError(f"initial must be in [1, max_samples={max_samples}], got {initial}")
    limit = _DEFAULT_THRESHOLD[stop] if threshold is None else threshold
    if not 0.0 < limit <= 1.0:
        raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
    if concurrency is not None and concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    base = sampling or SamplingParams(logprobs=True)
    build_prompt = prompt or question_prompt(key=keys.question, messages_key=keys.messages)
    read_answer = resolve_extractor(extract)
    model = metered(backend)

    def checks_at(seen: int) -> bool:
        if seen >= max_samples:
            return True
        if stop == "beta":
            return seen >= first
        return seen >= first and (seen // first) & (seen // first - 1) == 0 and seen % first == 0

    async def consistency(state: Mapping[str, Any]) -> dict[str, Any]:
        require_keys(state, name, keys.candidates, keys.decisions, keys.usage)
        messages = build_prompt(state)
        tools = run_tools()
        existing: list[Candidate] = list(state.get(keys.candidates) or []) if count_existing else []
        offset = next_index(state.get(keys.candidates))
        run = _Sampling(model, messages, tools, base, seed, read_answer, name, concurrency)
        drawn: list[Candidate] = []
        records: list[Decision] = []
        votes: dict[str, int] = majority_vote(existing)[1]
        statistic: float | None = None
        reason = "max_samples"
        with spending(run_ledger(state, keys, name)) as spent:
            seen = len(existing)
            if seen and checks_at(seen):
                statistic = _statistic(stop, votes, seen)
            if statistic is not None and statistic >= limit:
                reason = "threshold"  # the samples already in state settle it
            elif seen < max_samples:
                async for outcome in run.samples(max_samples - seen):
                    if isinstance(outcome, BudgetExhausted):
                        reason = spent.stopped(outcome)
                        break
                    if isinstance(outcome, BackendError):
                        if not drawn:
                            raise outcome
                        logger.warning("%s: a sample failed, stopping: %s", name, outcome)
                        reason = "backend_error"
                        break
                    drawn.append(dataclasses.replace(outcome, index=offset + len(drawn)))
                    seen = len(existing) + len(drawn)
                    if not checks_at(seen):
                        continue
                    votes = majority_vote([*existing, *drawn])[1]
                    statistic = _statistic(stop, votes, seen)
                    if statistic >= limit:
                        reason, why = "threshold", f"statistic {statistic:.4g} >= {limit:g}"
                    elif seen >= max_samples:
                        reason, why = "max_samples", f"drew max_samples={max_samples}"
                    else:
                        reason, why = "", f"statistic {statistic:.4g} < {limit:g}"
                    records.append(
                        decision(
                            name, "consistency_check", drawn=seen, votes=votes,
                            statistic=statistic, threshold=limit,
                            decision="stop" if reason else "continue", why=why,
                        )
                    )  # fmt: skip
                    if reason:
                        break
                await run.cancel_rest()
            summary = decision(
                name, "consistency", stop=stop, checks=len(records), drawn=len(drawn),
                reused=len(existing), max_samples=max_samples, cancelled=run.cancelled,
                cancelled_tokens=run.cancelled_tokens,
                skipped=max(0, max_samples - len(existing) - len(drawn)), reason=reason,
                votes=votes, statistic=statistic, usage=spent.usage.to_dict(),
            )  # fmt: skip
        update: dict[str, Any] = {keys.decisions: [*records, summary]}
        if drawn:
            update[keys.candidates] = drawn
        if spent.usage.calls:
            update[keys.usage] = spent.usage
        return update

    return make_node(consistency, name)


class _Sampling:
    """One node run's samples: streamed one-sample requests in flight at once, handed out as
    they finish, and the rest cancelled when the node has enough."""

    def __init__(
        self,
        model: BaseBackend,
        messages: Sequence[Message],
        tools: list[dict[str, Any]],
        base: SamplingParams,
        seed: int,
        read_answer: AnswerExtractor,
        source: str,
        concurrency: int | None,
    ) -> None:
        self.model = model
        self.messages = messages
        self.tools = tools
        self.base = base
        self.seed = seed
        self.read_answer = read_answer
        self.source = source
        self.concurrency = concurrency
        self.tasks: list[asyncio.Task[Candidate]] = []
        self.streamed: dict[int, int] = {}
        self.cancelled = 0
        self.cancelled_tokens = 0

    async def _one(self, i: int, slots: asyncio.Semaphore) -> Candidate:
        params = dataclasses.replace(self.base, seed=self.seed + i)
        request = GenerationRequest.chat(self.messages, sampling=params, tools=self.tools)
        async with slots:
            sample = StreamedSample.of(request)
            self.streamed[i] = 0
            async with contextlib.aclosing(self.model.stream(request)) as chunks:
                async for chunk in chunks:
                    sample.add(chunk)
                    self.streamed[i] = sample.tokens
        completion = sample.completion()
        return Candidate.from_completion(
            completion, index=i, answer=self.read_answer(completion.text), source=self.source,
            seed=params.seed,
        )  # fmt: skip

    async def samples(
        self, count: int
    ) -> AsyncIterator[Candidate | BudgetExhausted | BackendError]:
        """Start ``count`` samples; yield each as it finishes (or the error that ended it)."""
        slots = asyncio.Semaphore(self.concurrency or count)
        self.tasks = [asyncio.create_task(self._one(i, slots)) for i in range(count)]
        for next_done in asyncio.as_completed(self.tasks):
            try:
                yield await next_done
            except (BudgetExhausted, BackendError) as exc:
                yield exc

    async def cancel_rest(self) -> None:
        """Cancel the samples still running; they settle what they streamed."""
        running = [t for t in self.tasks if not t.done()]
        for task in running:
            task.cancel()
        # All of them: one that failed after the vote stopped listening still has its error
        # taken, or asyncio reports it as never retrieved.
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.cancelled = len(running)
        for i, task in enumerate(self.tasks):
            if task in running:
                self.cancelled_tokens += self.streamed.get(i, 0)

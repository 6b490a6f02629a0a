"""Confidence-filtered voting: DeepConf (Fu et al. 2025, "Deep Think with Confidence").

The node samples ``n`` traces, each its own streamed one-sample request with seed ``seed + i``
and the top ``top_logprobs`` log-probabilities of every token, and measures how sure the model
was while writing each one:

- **token confidence**: minus the mean of the token's top-k log-probabilities (k =
  ``top_logprobs``, 20 as in the paper). A peaked distribution has one likely token and k − 1
  very unlikely ones, so its mean log-probability is very negative: high confidence.
- **group confidence**: the mean token confidence over a sliding window of ``window`` tokens
  (a trace shorter than the window is one group).
- **trace confidence** (``confidence=``): ``"lowest"``, the lowest group confidence (the
  paper's choice: one confused stretch marks a trace, where a mean would hide it);
  ``"mean"``, the mean token confidence; ``"tail"``, the mean over the last ``window`` tokens.

Why ``window=16`` when the paper uses 2048: the paper's window is about a tenth of its
15,000-token reasoning traces. The small models this library runs by default answer in 20-200
tokens; 16 tokens (about one short sentence or one arithmetic step) keeps a window local, so a
trace has several and its lowest one finds the confused step, while no single inherently
uncertain token (a number, a name) decides alone. Online, it is also how soon a trace can be
stopped. Raise it for long reasoning traces.

Two modes:

- ``"offline"``: all ``n`` traces run to completion (``concurrency`` of them at a time, all by
  default). Among the traces that have an answer and a confidence, those at or above the
  ``1 − keep_top`` quantile of their confidences are kept (``keep_top=0.1`` is the paper's
  DeepConf-low, "top 10 %"; ``0.9``, the default, is DeepConf-high, "top 90 %": the safer
  one, since a model can be confidently wrong); the answer is the confidence-weighted vote
  over the kept traces. The quantile interpolates linearly, as the paper's code does.
- ``"online"``: the first ``warmup`` traces (default ``min(4, n)``; seeds ``seed`` to
  ``seed + warmup − 1``) run to completion and set the threshold at the ``1 − keep_top``
  quantile of their lowest group confidences. Every later trace is stopped as soon as one of
  its full windows falls below it: its stream is closed, and vLLM aborts a request whose
  client disconnects. ``concurrency`` defaults to ``warmup`` here, so later traces mostly start
  once the threshold is known; one that started earlier is checked against every window it
  already has when the threshold is set. Stopped traces do not vote; finished traces vote when
  their lowest group confidence reaches the threshold (warmup traces included, as in the
  paper's code), weighted by it. Online mode weighs by the lowest group confidence only: the
  stopping rule is defined on it.

Tokens are counted as the server reported them: the stream carries the cumulative usage in
every chunk, and a closed stream is charged what it had generated. Every request is charged
to the run's ledger, which may cut or refuse it. After a refusal no new trace starts; traces
already generating hold their reservation and finish. The node then answers from what it has
(``reason="budget"`` or ``"wall time"``, else ``"done"``; strict mode raises
:class:`~tts_graph.errors.BudgetExhausted`). A backend failure after the first finished trace
stops the others and answers from what it has (``reason="backend_error"``).

When no trace reaches the threshold, every finished trace with an answer votes (weighted);
when the server sent no logprobs at all, a plain majority decides; the decision names the
fallback.

The node chooses the answer itself (and, on a conversation, appends it as an ``AIMessage``)
rather than leaving it to :func:`~tts_graph.nodes.select.make_select_node`: the vote depends on
facts about this run that candidates alone do not carry — the threshold (the warmup's, or the
quantile over this node's own traces, not over whatever else is in state) and which traces were
stopped. It still writes every trace as a candidate: ``score`` is its confidence (so
``best_score`` and ``weighted`` selection downstream rank by it, until a verifier replaces it),
``metadata["confidence"]`` the same, and ``metadata["status"]`` one of ``"kept"`` (voted),
``"filtered"`` (finished below the threshold), ``"stopped"`` (online; its partial text has no
``answer``, so no vote of any rule counts it), ``"no_answer"`` or ``"no_confidence"`` (the
server sent no logprobs). Traces already in state do not vote: they carry no confidence.

Decisions: online, ``confidence_threshold`` when the warmup sets the threshold (the warmup
confidences and how it was computed) and ``confidence_stop`` for every trace stopped (its
tokens, window confidence and the threshold); then a ``confidence`` summary: every trace's
confidence and status, the threshold and where it came from, the kept, filtered and stopped
traces, the tokens the stopped traces generated and an estimate of those saved (for each stopped
trace, the mean length of the finished traces that ran longer than it had, minus what it had
generated), the votes and weights per answer, the chosen candidate and answer, and the usage.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from tts_graph.backends.base import (
    Backend,
    BaseBackend,
    GenerationRequest,
    Message,
    SamplingParams,
    StreamedSample,
    TokenLogprob,
    metered,
)
from tts_graph.candidate import Candidate, next_index, vote_key
from tts_graph.errors import (
    BackendError,
    BudgetExhausted,
    ConfigError,
    check_choice,
    check_count,
)
from tts_graph.metering import Spending, spending
from tts_graph.nodes._budget import run_ledger
from tts_graph.nodes._node import Node, chosen_update, make_node, require_keys
from tts_graph.nodes._record import decision
from tts_graph.nodes.select import majority_vote
from tts_graph.prompts import PromptFn, question_prompt, run_tools
from tts_graph.state import Decision, StateKeys
from tts_graph.verifiers.answer import AnswerExtractor, extract_answer, resolve_extractor

__all__ = [
    "ConfidenceMode",
    "TraceConfidence",
    "make_confidence_node",
    "token_confidence",
    "trace_confidence",
]

logger = logging.getLogger(__name__)

ConfidenceMode = Literal["offline", "online"]
TraceConfidence = Literal["lowest", "mean", "tail"]

DEFAULT_WINDOW = 16


def token_confidence(token: TokenLogprob) -> float | None:
    """DeepConf's token confidence: minus the mean of the top log-probabilities the server
    returned for the token (None without any).

    >>> token_confidence(TokenLogprob("7", -0.01, top=(("7", -0.01), ("8", -5.99))))
    3.0
    """
    values = [lp for _, lp in token.top if math.isfinite(lp)]
    if not values:
        return None
    return -sum(values) / len(values)


def _group_means(confidences: Sequence[float], window: int) -> list[float]:
    """The sliding-window means (one mean of everything when shorter than the window)."""
    if len(confidences) < window:
        return [sum(confidences) / len(confidences)]
    total = sum(confidences[:window])
    means = [total / window]
    for i in range(window, len(confidences)):
        total += confidences[i] - confidences[i - window]
        means.append(total / window)
    return means


def trace_confidence(
    confidences: Sequence[float],
    *,
    window: int = DEFAULT_WINDOW,
    measure: TraceConfidence = "lowest",
) -> float | None:
    """A trace's confidence from its token confidences: the lowest sliding-window mean over
    ``window`` tokens (``"lowest"``; the mean of all when the trace is shorter), the mean of all
    (``"mean"``) or the mean of the last ``window`` (``"tail"``). None for an empty trace.

    >>> trace_confidence([9, 9, 1, 1, 9, 9], window=2)
    1.0
    >>> trace_confidence([9, 9, 1, 1, 9, 9], window=2, measure="mean")
    6.333333333333333
    >>> trace_confidence([9, 9, 1, 1, 9, 9], window=2, measure="tail")
    9.0
    """
    if not confidences:
        return None
    if measure == "mean":
        return sum(confidences) / len(confidences)
    if measure == "tail":
        tail = confidences[-window:]
        return sum(tail) / len(tail)
    return min(_group_means(confidences, window))


def _quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile with linear interpolation (numpy's default, which the paper uses)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def make_confidence_node(
    backend: Backend,
    *,
    mode: ConfidenceMode = "offline",
    n: int = 16,
    keep_top: float = 0.9,
    confidence: TraceConfidence = "lowest",
    window: int = DEFAULT_WINDOW,
    top_logprobs: int = 20,
    warmup: int | None = None,
    concurrency: int | None = None,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str = extract_answer,
    strategy: str | None = None,
    keys: StateKeys = StateKeys(),
    name: str = "confidence",
) -> Node:
    """Make a node that samples ``n`` traces, keeps the most confident ``keep_top`` fraction
    (offline) or stops traces whose confidence drops below a warmup threshold (online), and
    chooses the answer by confidence-weighted vote (see the module docs).

    ``keep_top``: the fraction of traces kept, in (0, 1]: 0.1 is DeepConf-low ("top 10 %"),
    0.9 (default) DeepConf-high. ``confidence``: ``"lowest"`` (default), ``"mean"`` or
    ``"tail"`` (offline only). ``window``: tokens per group (default 16). ``top_logprobs``: k,
    2 to 20 (default 20); the node asks for logprobs itself, whatever ``sampling`` says.
    ``warmup`` (online): traces that set the threshold (default ``min(4, n)``).
    ``concurrency``: traces in flight at once (default: all offline, ``warmup`` online).
    ``strategy``: written to ``state[keys.strategy]`` when given.

    >>> node = make_confidence_node(backend, mode="online", n=16, keep_top=0.1)  # doctest: +SKIP
    >>> graph.add_node("deepconf", node)  # doctest: +SKIP
    >>> (await node({"question": "What is 7+5?"}))["answer"]  # doctest: +SKIP
    '12'
    """
    check_choice("mode", mode, ConfidenceMode)
    check_choice("trace confidence", confidence, TraceConfidence)
    check_count("n", n)
    if not 0.0 < keep_top <= 1.0:
        raise ConfigError(
            f"keep_top must be in (0, 1] (0.1 keeps the top 10 %, 0.9 the top 90 %), got {keep_top}"
        )
    if window < 1:
        raise ConfigError(f"window must be >= 1 token, got {window}")
    if not 2 <= top_logprobs <= 20:
        raise ConfigError(
            "top_logprobs must be in [2, 20]: token confidence is the mean over the top-k "
            f"alternatives (the paper uses 20), got {top_logprobs}"
        )
    if concurrency is not None and concurrency < 1:
        raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
    if mode == "offline" and warmup is not None:
        raise ConfigError("warmup applies to mode='online' only; offline every trace finishes")
    if mode == "online" and confidence != "lowest":
        raise ConfigError(
            f"mode='online' stops a trace once a window falls below the threshold, so it ranks "
            f"traces by their lowest group confidence: use confidence='lowest', not "
            f"{confidence!r} (or mode='offline')"
        )
    warm = 0
    if mode == "online":
        warm = min(4, n) if warmup is None else warmup
        if not 1 <= warm <= n:
            raise ConfigError(f"warmup must be in [1, n={n}], got {warmup}")
    in_flight = concurrency or (warm if mode == "online" else n)
    base = dataclasses.replace(
        sampling or SamplingParams(), logprobs=True, top_logprobs=top_logprobs
    )
    build_prompt = prompt or question_prompt(key=keys.question, messages_key=keys.messages)
    read_answer = resolve_extractor(extract)
    model = metered(backend)
    settings = _Settings(mode, n, keep_top, confidence, window, warm, name)

    async def confidence_node(state: Mapping[str, Any]) -> dict[str, Any]:
        require_keys(state, name, keys.candidates, keys.decisions, keys.usage)
        offset = next_index(state.get(keys.candidates))
        run = _Traces(
            model, build_prompt(state), run_tools(), base, settings,
            seed=seed, offset=offset, concurrency=in_flight,
        )  # fmt: skip
        with spending(run_ledger(state, keys, name)) as spent:
            await run.run(spent)
            candidates, chosen, info = _vote(run, settings, read_answer)
            summary = decision(name, "confidence", **info, reason=run.reason,
                               usage=spent.usage.to_dict())  # fmt: skip
        update: dict[str, Any] = {keys.decisions: [*run.records, summary]}
        if candidates:
            update[keys.candidates] = candidates
        if spent.usage.calls:
            update[keys.usage] = spent.usage
        if strategy is not None:
            update[keys.strategy] = strategy
        update.update(chosen_update(state, keys, chosen, summary, usage=spent.usage))
        return update

    return make_node(confidence_node, name)


@dataclass(frozen=True)
class _Settings:
    mode: ConfidenceMode
    n: int
    keep_top: float
    measure: TraceConfidence
    window: int
    warmup: int
    name: str


@dataclass(eq=False)
class _Trace:
    """One trace as it streams: its text, token confidences and the lowest full window so far."""

    number: int
    index: int
    seed: int
    warmup: bool
    window: int
    started: bool = False
    finished: bool = False
    stopped: bool = False
    sample: StreamedSample = field(default_factory=StreamedSample)  # text, calls, logprobs
    confidences: list[float] = field(default_factory=list)
    lowest_window: float = math.inf
    _window_sum: float = 0.0

    def add(self, logprobs: Sequence[TokenLogprob]) -> None:
        for token in logprobs:
            value = token_confidence(token)
            if value is None:
                continue
            self.confidences.append(value)
            # A running sum keeps each token's update O(1), whatever the window.
            self._window_sum += value
            if len(self.confidences) > self.window:
                self._window_sum -= self.confidences[-self.window - 1]
            if len(self.confidences) >= self.window:
                self.lowest_window = min(self.lowest_window, self._window_sum / self.window)

    @property
    def tokens(self) -> int:
        return self.sample.tokens

    @property
    def lowest(self) -> float | None:
        return trace_confidence(self.confidences, window=self.window, measure="lowest")


class _Traces:
    """One node run's traces: streamed one-sample requests, ``concurrency`` in flight, stopped
    (online) once the threshold is known and a window falls below it."""

    def __init__(
        self,
        model: BaseBackend,
        messages: Sequence[Message],
        tools: list[dict[str, Any]],
        base: SamplingParams,
        settings: _Settings,
        *,
        seed: int,
        offset: int,
        concurrency: int,
    ) -> None:
        self.model = model
        self.messages = messages
        self.tools = tools
        self.base = base
        self.settings = settings
        self.concurrency = concurrency
        self.traces = [
            _Trace(i, offset + i, seed + i, i < settings.warmup, settings.window)
            for i in range(settings.n)
        ]
        self.warmup_left = settings.warmup
        self.threshold: float | None = None
        self.threshold_from = ""
        self.records: list[Decision] = []
        self.reason = "done"
        self.closing = False
        self.refused = 0
        self.cancelled = 0
        self.cancelled_tokens = 0
        self.skipped = 0
        self.errors: dict[int, BaseException] = {}

    async def _one(self, trace: _Trace, slots: asyncio.Semaphore) -> None:
        try:
            async with slots:
                trace.started = True
                params = dataclasses.replace(self.base, seed=trace.seed)
                request = GenerationRequest.chat(self.messages, sampling=params, tools=self.tools)
                trace.sample = StreamedSample.of(request)
                async with contextlib.aclosing(self.model.stream(request)) as chunks:
                    async for chunk in chunks:
                        trace.sample.add(chunk)
                        if chunk.index < 0:
                            continue
                        trace.add(chunk.logprobs)
                        if chunk.finish_reason is None and self._falls_below(trace):
                            self._stop(trace)
                            break  # closing the stream aborts the request on the server
                trace.finished = True
        finally:
            if trace.warmup:
                self._warmup_resolved()

    def _falls_below(self, trace: _Trace) -> bool:
        # Windows seen before the threshold was known count too: such a trace would not vote.
        return (
            not trace.warmup and self.threshold is not None and trace.lowest_window < self.threshold
        )

    def _stop(self, trace: _Trace) -> None:
        trace.stopped = True
        self.records.append(
            decision(
                self.settings.name, "confidence_stop", index=trace.index, seed=trace.seed,
                tokens=trace.tokens, window_confidence=_rounded(trace.lowest_window),
                threshold=_rounded(self.threshold),
            )
        )  # fmt: skip

    def _warmup_resolved(self) -> None:
        """Count a warmup trace as done (or failed); the last one sets the threshold. Runs in
        the trace's own task, so the next chunk of every other trace already sees it."""
        self.warmup_left -= 1
        if self.warmup_left or self.closing:
            return
        warm = [t for t in self.traces if t.warmup and t.finished]
        lowest = [c for t in warm if (c := t.lowest) is not None]
        q = 1.0 - self.settings.keep_top
        if lowest:
            self.threshold = _quantile(lowest, q)
            self.threshold_from = (
                f"the {q:.4g} quantile of the lowest {self.settings.window}-token group "
                f"confidences of {len(lowest)} warmup trace(s)"
            )
            why = f"later traces stop once a {self.settings.window}-token window falls below it"
        else:
            self.threshold_from = "no warmup trace finished with logprobs: no threshold"
            why = "no trace is stopped"
        self.records.append(
            decision(
                self.settings.name, "confidence_threshold",
                warmup=[{"index": t.index, "confidence": _rounded(t.lowest)} for t in warm],
                keep_top=self.settings.keep_top, percentile=round(100 * q, 4),
                threshold=_rounded(self.threshold), threshold_from=self.threshold_from, why=why,
            )
        )  # fmt: skip

    async def run(self, spent: Spending) -> None:
        """Run every trace; on a refusal start no more, on a backend failure stop them all."""
        slots = asyncio.Semaphore(self.concurrency)
        owner = {asyncio.create_task(self._one(t, slots)): t for t in self.traces}
        pending = set(owner)
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: owner[t].number):
                    if task.cancelled() or (exc := task.exception()) is None:
                        continue
                    self.errors[owner[task].number] = exc
                    if isinstance(exc, BudgetExhausted):
                        reason = spent.stopped(exc)  # raises in strict mode
                        if self.reason == "done":
                            self.reason = reason
                        # Traces already generating keep their reservation and finish.
                        for waiting in pending:
                            if not owner[waiting].started:
                                waiting.cancel()
                    elif isinstance(exc, BackendError):
                        if not any(t.finished for t in self.traces):
                            raise exc
                        logger.warning("%s: a trace failed, stopping: %s", self.settings.name, exc)
                        self.reason = "backend_error"
                        self.closing = True  # no threshold from a warmup cut short
                        for other in pending:
                            other.cancel()
                    else:
                        raise exc
        finally:
            self.closing = True
            left = [t for t in owner if not t.done()]
            for task in left:
                task.cancel()
            # Every task, so an error nobody looked at (the loop raised first) is taken too.
            await asyncio.gather(*owner, return_exceptions=True)
            for trace in owner.values():
                if trace.finished:
                    continue
                error = self.errors.get(trace.number)
                if not trace.started:
                    self.skipped += 1
                elif isinstance(error, BudgetExhausted) and not trace.tokens:
                    self.refused += 1
                else:  # stopped half-way: by the node, a failure or the wall time
                    self.cancelled += 1
                    self.cancelled_tokens += trace.tokens


def _weighted(kept: Sequence[tuple[Candidate, float]]) -> tuple[Candidate | None, dict[str, Any]]:
    """Confidence-weighted vote: each answer scores its voters' summed confidence; ties go to
    more votes, then to the answer seen first. Its most confident voter represents it."""
    groups: dict[str, list[tuple[Candidate, float]]] = {}
    for cand, conf in sorted(kept, key=lambda pair: pair[0].index):
        key = vote_key(cand)
        assert key is not None
        groups.setdefault(key, []).append((cand, conf))
    weights = {k: sum(c for _, c in members) for k, members in groups.items()}
    votes = {k: len(members) for k, members in groups.items()}
    info: dict[str, Any] = {
        "weights": {k: round(w, 4) for k, w in weights.items()},
        "votes": votes,
    }
    if not groups:
        return None, info
    top = max(groups, key=lambda k: (weights[k], votes[k], -groups[k][0][0].index))
    best = max(groups[top], key=lambda pair: (pair[1], -pair[0].index))
    return best[0], info


def _vote(
    run: _Traces, settings: _Settings, read_answer: AnswerExtractor
) -> tuple[list[Candidate], Candidate | None, dict[str, Any]]:
    """The candidates with their status, the chosen one, and what the summary records."""
    drawn = [t for t in run.traces if t.finished]
    confidence: dict[int, float | None] = {}
    made: list[Candidate] = []
    for t in drawn:
        sample = t.sample.completion()
        text = sample.text
        conf = trace_confidence(t.confidences, window=settings.window, measure=settings.measure)
        confidence[t.index] = conf
        made.append(
            Candidate(
                index=t.index, text=text, answer=None if t.stopped else read_answer(text),
                source=settings.name, seed=t.seed, completion_tokens=t.tokens,
                finish_reason=sample.finish_reason, score=conf,
                mean_logprob=sample.mean_logprob,
                tool_calls=() if t.stopped else sample.tool_calls,
            )
        )  # fmt: skip

    status: dict[int, str] = {}
    eligible: list[tuple[Candidate, float]] = []
    for t, cand in zip(drawn, made, strict=True):
        conf = confidence[t.index]
        if t.stopped:
            status[t.index] = "stopped"
        elif vote_key(cand) is None:
            status[t.index] = "no_answer"
        elif conf is None:
            status[t.index] = "no_confidence"
        else:
            eligible.append((cand, conf))
    threshold, threshold_from = run.threshold, run.threshold_from
    if settings.mode == "offline" and eligible:
        q = 1.0 - settings.keep_top
        threshold = _quantile([c for _, c in eligible], q)
        threshold_from = (
            f"the {q:.4g} quantile of the {settings.measure} confidences of the "
            f"{len(eligible)} trace(s) with an answer"
        )
    kept = [(c, v) for c, v in eligible if threshold is None or v >= threshold]
    kept_ids = {c.id for c, _ in kept}
    for cand, _ in eligible:
        status[cand.index] = "kept" if cand.id in kept_ids else "filtered"

    chosen, tally = _choose(kept, eligible, made, drawn, confidence, settings.name)
    candidates = [
        dataclasses.replace(
            cand,
            metadata={"confidence": confidence[t.index], "status": status[t.index]}
            | ({"warmup": t.warmup} if settings.mode == "online" else {}),
        )
        for t, cand in zip(drawn, made, strict=True)
    ]
    chosen = next((c for c in candidates if chosen is not None and c.id == chosen.id), None)

    finished = [t.tokens for t in drawn if not t.stopped]
    stopped = [t for t in drawn if t.stopped]

    def saved(trace: _Trace) -> float:
        # How much longer the trace would have run: the mean length of the finished traces
        # that got past where it was stopped (none did: assume it was about to end).
        longer = [length for length in finished if length > trace.tokens]
        return sum(longer) / len(longer) - trace.tokens if longer else 0.0

    traces = [
        {
            "index": t.index, "seed": t.seed, "answer": cand.answer, "tokens": t.tokens,
            "confidence": _rounded(confidence[t.index]), "status": status[t.index],
        }
        | ({"warmup": t.warmup} if settings.mode == "online" else {})
        for t, cand in zip(drawn, made, strict=True)
    ]  # fmt: skip

    def listed(kind: str) -> list[int]:
        return [i for i, s in status.items() if s == kind]

    info = {
        "mode": settings.mode, "n": settings.n, "keep_top": settings.keep_top,
        "confidence": settings.measure, "window": settings.window,
        "warmup": settings.warmup if settings.mode == "online" else None,
        "threshold": _rounded(threshold), "threshold_from": threshold_from or None,
        "traces": traces, "kept": listed("kept"), "filtered": listed("filtered"),
        "stopped": listed("stopped"), "stopped_tokens": sum(t.tokens for t in stopped),
        "tokens_saved_est": round(sum(saved(t) for t in stopped)),
        "refused": run.refused, "cancelled": run.cancelled,
        "cancelled_tokens": run.cancelled_tokens, "skipped": run.skipped, **tally,
        "chosen_index": None if chosen is None else chosen.index,
        "answer": None if chosen is None else chosen.answer,
    }  # fmt: skip
    return candidates, chosen, info


def _choose(
    kept: Sequence[tuple[Candidate, float]],
    eligible: Sequence[tuple[Candidate, float]],
    made: Sequence[Candidate],
    drawn: Sequence[_Trace],
    confidence: Mapping[int, float | None],
    name: str,
) -> tuple[Candidate | None, dict[str, Any]]:
    """The weighted vote over the kept traces, or the fallback when none was kept."""
    if kept:
        return _weighted(kept)
    if eligible:
        chosen, tally = _weighted(eligible)
        tally["fallback"] = "no trace reached the threshold: weighted vote over every finished one"
        return chosen, tally
    done = [c for t, c in zip(drawn, made, strict=True) if not t.stopped]
    answered = [c for c in done if vote_key(c) is not None]
    if answered:
        logger.warning("%s: no trace has logprobs; falling back to a majority vote", name)
        chosen, votes, _ = majority_vote(answered)
        return chosen, {"votes": votes, "fallback": "the server sent no logprobs: majority vote"}
    if not done:
        return None, {"votes": {}}

    def rank(c: Candidate) -> tuple[float, int]:
        value = confidence[c.index]
        return (-math.inf if value is None else value, -c.index)

    return max(done, key=rank), {
        "votes": {},
        "fallback": "no trace has an extractable answer: the most confident one",
    }

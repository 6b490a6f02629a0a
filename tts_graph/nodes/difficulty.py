"""Difficulty estimation (Snell et al. 2024: route compute by how hard a prompt is).

A cheap probe draws ``n`` short samples in one ``n``-sample request; an estimator turns them into a
score in [0, 1] (1 = hard) and :class:`DifficultyBins` turn the score into a bin. The probe's
samples are kept as candidates, so the strategy that follows does not waste them.

Estimators (pick by name or pass your own function ``probe -> score``, sync or async):

- ``"agreement"``: 1 − the share of the most common final answer (unextractable answers count
  as distinct). Agreement across samples is the strongest cheap signal measured on the embedded
  model: AUROC 0.93 for "pass@1 < 0.5" and 0.76 between 2- and 4-term additions (BENCHMARKS.md).
- ``"logprob"``: 1 − exp(mean token log-probability): low model confidence means hard (it
  barely separated easy from hard on the embedded model with the default prompt: AUROC 0.51).
- ``"entropy"``: normalised entropy of the answer distribution.
- ``"combined"``: the mean of ``agreement`` and ``logprob``; continuous where ``agreement`` with
  small ``n`` has only a few values.
- ``"verifier"``: 1 − the share of probe samples that pass the node's verifier (Snell et al.'s
  difficulty is the verifier's pass rate). Given a ``verifier``, the node checks the probe's
  samples whatever the estimator, and they keep their verdicts as candidates, so a strategy
  that follows does not check them again.
- :class:`SelfRating`: ask the model to rate the question's difficulty (one more call, charged
  to the run's budget like the probe).

Thresholds are fitted, not guessed: :meth:`DifficultyBins.fit` takes probe scores of a
calibration set and puts the thresholds at their quantiles (equal-mass bins, as Snell et al.
bin by quantiles). :data:`DEFAULT_BINS` were fitted that way on real data; ``bench/fit_difficulty.py``
reproduces them.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tts_graph.backends.base import (
    Backend,
    Completion,
    GenerationRequest,
    Message,
    SamplingParams,
    metered,
)
from tts_graph.budget import Usage
from tts_graph.candidate import Candidate, next_index
from tts_graph.errors import BudgetExhausted, ConfigError, check_count
from tts_graph.metering import spending
from tts_graph.nodes._budget import run_ledger
from tts_graph.nodes._node import Node, make_node
from tts_graph.nodes._record import decision
from tts_graph.nodes.verify import make_verify_node
from tts_graph.prompts import PromptFn, question_of, question_prompt, run_tools
from tts_graph.state import StateKeys
from tts_graph.tracing import tag_trace
from tts_graph.verifiers.answer import (
    AnswerExtractor,
    normalize_answer,
    resolve_extractor,
)
from tts_graph.verifiers.base import Verdict, Verifier

__all__ = [
    "DEFAULT_BINS",
    "ESTIMATORS",
    "DifficultyBins",
    "Probe",
    "SelfRating",
    "agreement_score",
    "auroc",
    "combined_score",
    "entropy_score",
    "logprob_score",
    "make_difficulty_node",
    "verifier_score",
]


@dataclass(frozen=True)
class Probe:
    """The probe's samples and their extracted answers; ``messages`` is the prompt they
    answered (the caller's prompt, so an estimator that asks the model sees the same one)."""

    question: str
    completions: tuple[Completion, ...]
    answers: tuple[str | None, ...]
    messages: tuple[Message, ...] = ()
    verdicts: tuple[Verdict | None, ...] = ()
    """The verifier's verdict per sample (None: left unchecked), when the node has a verifier."""

    def answer_counts(self) -> Counter[str]:
        """Votes per normalised answer; each unextractable answer is its own singleton."""
        keys = [
            normalize_answer(a) if a and a.strip() else f"<none:{i}>"
            for i, a in enumerate(self.answers)
        ]
        return Counter(keys)


Estimator = Callable[[Probe], "float | Awaitable[float]"]


def agreement_score(probe: Probe) -> float:
    """1 − the share of the most common answer.

    >>> p = Probe("q", (), ("12", "12", "12", "13"))
    >>> agreement_score(p)
    0.25
    """
    counts = probe.answer_counts()
    if not counts:
        return 1.0
    return 1.0 - max(counts.values()) / sum(counts.values())


def logprob_score(probe: Probe) -> float:
    """1 − exp(mean over samples of their mean token logprob); 1.0 without logprobs."""
    values = [c.mean_logprob for c in probe.completions if c.mean_logprob is not None]
    if not values:
        return 1.0
    return 1.0 - math.exp(sum(values) / len(values))


def entropy_score(probe: Probe) -> float:
    """Entropy of the answer distribution divided by its maximum, log(k)."""
    counts = probe.answer_counts()
    total = sum(counts.values())
    if total <= 1:
        return 0.0
    h = -sum(c / total * math.log(c / total) for c in counts.values())
    return h / math.log(total)


def verifier_score(probe: Probe) -> float:
    """1 − the share of samples the verifier passed; an unchecked sample counts as failed.

    >>> ok, bad = Verdict(passed=True, score=1.0), Verdict(passed=False, score=0.0)
    >>> verifier_score(Probe("q", (), ("a", "b", "c", "d"), verdicts=(ok, bad, None, ok)))
    0.5
    """
    if not probe.verdicts:
        raise ConfigError(
            "the 'verifier' estimator needs verdicts: give the difficulty node (or the adaptive "
            "graph) a verifier"
        )
    passed = sum(1 for v in probe.verdicts if v is not None and v.passed)
    return 1.0 - passed / len(probe.verdicts)


def combined_score(probe: Probe) -> float:
    """Mean of :func:`agreement_score` and :func:`logprob_score`."""
    return (agreement_score(probe) + logprob_score(probe)) / 2


ESTIMATORS: dict[str, Estimator] = {
    "agreement": agreement_score,
    "logprob": logprob_score,
    "entropy": entropy_score,
    "combined": combined_score,
    "verifier": verifier_score,
}


class SelfRating:
    """Ask the model how hard the question is, on a 1–10 scale (one more call per question).

    The request follows the probe's own prompt, with the rating asked as the next user turn.
    It is charged to the run's budget: the estimator keeps no state between runs. An
    unparseable rating counts as 0.5 (no information).
    """

    INSTRUCTION = (
        "Do not answer the question. Rate how hard it is to answer correctly, from 1 (trivial) "
        "to 10 (very hard). Reply with 'Difficulty: N'."
    )

    def __init__(self, backend: Backend, *, sampling: SamplingParams | None = None) -> None:
        self.backend = metered(backend)
        self.sampling = sampling or SamplingParams(temperature=0.0, max_tokens=32)

    async def __call__(self, probe: Probe) -> float:
        messages = list(probe.messages) or [{"role": "user", "content": probe.question}]
        gen = await self.backend.generate(
            GenerationRequest.chat(
                [*messages, {"role": "user", "content": self.INSTRUCTION}],
                sampling=self.sampling,
            )
        )
        match = re.findall(r"(\d+(?:\.\d+)?)", gen.completions[0].text)
        if not match:
            return 0.5
        return min(1.0, max(0.0, (float(match[0]) - 1) / 9))


@dataclass(frozen=True)
class DifficultyBins:
    """Thresholds that cut scores into labelled bins: a score below ``thresholds[i]`` (and at or
    above the previous one) falls in ``labels[i]``; at or above the last, in ``labels[-1]``.

    >>> DifficultyBins((0.3, 0.6), ("easy", "medium", "hard")).bin(0.45)
    'medium'
    """

    thresholds: tuple[float, ...]
    labels: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.thresholds) + 1:
            raise ConfigError(
                f"{len(self.thresholds)} thresholds make {len(self.thresholds) + 1} bins, but "
                f"{len(self.labels)} labels were given"
            )
        if list(self.thresholds) != sorted(self.thresholds):
            raise ConfigError(f"thresholds must be ascending, got {self.thresholds}")

    def bin(self, score: float) -> str:
        for threshold, label in zip(self.thresholds, self.labels, strict=False):
            if score < threshold:
                return label
        return self.labels[-1]

    @classmethod
    def fit(
        cls, scores: Sequence[float], *, labels: Sequence[str] = ("easy", "medium", "hard")
    ) -> DifficultyBins:
        """Equal-mass bins: thresholds at the quantiles of calibration ``scores``.

        Ties (scores with few distinct values) can make neighbouring thresholds equal; a bin
        between equal thresholds is then empty, which is the honest outcome.

        >>> DifficultyBins.fit([0.0, 0.1, 0.2, 0.5, 0.6, 0.9]).thresholds
        (0.2, 0.6)
        """
        if len(labels) < 2:
            raise ConfigError("give at least two bin labels")
        if len(scores) < len(labels):
            raise ConfigError(
                f"need at least {len(labels)} calibration scores for {len(labels)} bins, "
                f"got {len(scores)}"
            )
        ordered = sorted(scores)
        cuts = tuple(_quantile(ordered, q / len(labels)) for q in range(1, len(labels)))
        return cls(thresholds=cuts, labels=tuple(labels))


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The lower empirical quantile (a score that exists in the data)."""
    index = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return float(ordered[index])


def auroc(scores: Sequence[float], positives: Sequence[bool]) -> float:
    """Area under the ROC curve: the chance a random positive scores above a random negative
    (ties count half). Used to check that a difficulty score separates hard from easy.

    >>> auroc([0.9, 0.8, 0.1], [True, True, False])
    1.0
    """
    pos = [s for s, p in zip(scores, positives, strict=True) if p]
    neg = [s for s, p in zip(scores, positives, strict=True) if not p]
    if not pos or not neg:
        raise ValueError("AUROC needs at least one positive and one negative")
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


# Fitted by bench/fit_difficulty.py (equal-mass thresholds of the agreement score, k=4) on 120
# reasoning-gym basic_arithmetic additions with the embedded model; see BENCHMARKS.md. For k=4
# they read: easy = at least 3 of 4 samples agree, medium = 2 agree, hard = all differ.
DEFAULT_BINS = DifficultyBins(thresholds=(0.5, 0.75), labels=("easy", "medium", "hard"))


def make_difficulty_node(
    backend: Backend,
    *,
    n: int = 4,
    estimator: str | Estimator = "agreement",
    bins: DifficultyBins = DEFAULT_BINS,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str | None = None,
    verifier: Verifier | None = None,
    keep_candidates: bool = True,
    keys: StateKeys = StateKeys(),
    name: str = "difficulty",
) -> Node:
    """Make a node that probes the question and writes ``state[keys.difficulty]``:
    ``{"score", "bin", "estimator", "n", "answers"}``; the probe samples join the candidates.
    With a ``verifier`` the samples are checked against ``state[keys.reference]`` first (as the
    verifier node does), for the ``"verifier"`` estimator and for whatever follows.

    >>> node = make_difficulty_node(backend, n=4, estimator="agreement")  # doctest: +SKIP
    """
    check_count("n (probe samples)", n)
    if isinstance(estimator, str):
        if estimator not in ESTIMATORS:
            raise ConfigError(
                f"unknown estimator {estimator!r}; choose one of: {', '.join(ESTIMATORS)}, "
                "or pass a function probe -> score"
            )
        estimate, estimator_name = ESTIMATORS[estimator], estimator
        if estimate is verifier_score and verifier is None:
            raise ConfigError(
                "estimator 'verifier' scores the probe by its pass rate: give verifier= too"
            )
    else:
        estimate, estimator_name = (
            estimator,
            getattr(estimator, "__name__", type(estimator).__name__),
        )
    params = dataclasses.replace(
        sampling or SamplingParams(temperature=0.7, max_tokens=128, logprobs=True), seed=seed
    )
    build_prompt = prompt or question_prompt(key=keys.question, messages_key=keys.messages)
    read_answer = resolve_extractor(extract, verifier)
    model = metered(backend)
    verify = (
        None if verifier is None else make_verify_node(verifier, keys=keys, name=f"{name}.verify")
    )

    async def difficulty(state: Mapping[str, Any]) -> dict[str, Any]:
        messages = build_prompt(state)
        with spending(run_ledger(state, keys, name)) as spent:
            try:
                request = GenerationRequest.chat(messages, n=n, sampling=params, tools=run_tools())
                gen = await model.generate(request)
            except BudgetExhausted as exc:
                why = spent.stopped(exc)
                record = decision(name, "difficulty", score=None, bin=None, reason=why)
                return {keys.difficulty: None, keys.decisions: [record]}
            answers = tuple(read_answer(c.text) for c in gen.completions)
            offset = next_index(state.get(keys.candidates))
            candidates = [
                Candidate.from_completion(
                    c, index=offset + c.index, answer=a, source=name, seed=params.seed
                )
                for c, a in zip(gen.completions, answers, strict=True)
            ]
            checked: dict[str, Any] = {}
            if verify is not None:
                # Its own spending scope charges a verifier that calls a model; its usage and
                # decision are returned beside the probe's.
                checked = dict(await verify.ainvoke({**state, keys.candidates: candidates}))
                by_id = {c.id: c for c in checked.get(keys.candidates, ())}
                candidates = [by_id.get(c.id, c) for c in candidates]
            probe = Probe(
                question_of(state, keys.question, keys.messages),
                gen.completions,
                answers,
                tuple(messages),
                tuple(c.verdict for c in candidates) if verify is not None else (),
            )
            result: dict[str, Any] = {
                "score": None, "bin": None, "estimator": estimator_name,
                "n": len(gen.completions), "answers": list(answers),
            }  # fmt: skip
            reason: str | None = None
            try:
                raw = estimate(probe)
                score = float(await raw) if inspect.isawaitable(raw) else float(raw)
            except BudgetExhausted as exc:  # an estimator that asks the model was refused
                reason = spent.stopped(exc)
            else:
                if not 0.0 <= score <= 1.0:
                    raise ConfigError(
                        f"estimator {estimator_name} returned {score}; scores are in [0, 1]"
                    )
                result = {**result, "score": score, "bin": bins.bin(score)}
                tag_trace(difficulty=result["bin"])  # the trace can be filtered by bin
            record = decision(
                name, "difficulty", **result, thresholds=list(bins.thresholds), reason=reason
            )
        update: dict[str, Any] = {
            keys.difficulty: result,
            keys.usage: spent.usage + checked.get(keys.usage, Usage()),
            keys.decisions: [*checked.get(keys.decisions, ()), record],
        }
        if keep_candidates:
            update[keys.candidates] = candidates
        return update

    return make_node(difficulty, name)

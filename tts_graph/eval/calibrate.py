"""Calibrate the adaptive graph's router on a dataset: its thresholds and a budget per bin.

Each problem gets ``probe_n + label_n`` samples drawn with the probe's prompt and sampling (the
evaluation harness draws them, so an interrupted calibration resumes). The first ``probe_n``
are what the difficulty probe sees, and every estimator scores them. The other ``label_n`` are
judged against the problem's hidden answer or tests: their pass rate is the label. The probe's
own samples never count toward the label: a score judged against the very samples it was
computed from ranks their noise too, and its AUROC comes out inflated.

The problems are split in two by a seeded shuffle. On one part the thresholds are fitted
(equal-mass bins, :meth:`~tts_graph.nodes.difficulty.DifficultyBins.fit`) and each bin's budget
is read off its coverage curve: the fewest samples whose coverage is within ``tolerance`` of
what all ``label_n`` reach. The other part is held out to report how well each estimator ranks
the measured pass rate: AUROC for "pass rate below 0.5" and Spearman's rank correlation with
1 − pass rate.

>>> calibration = fit_calibration(records, probe_n=4, estimator="agreement")  # doctest: +SKIP
>>> calibration.thresholds, calibration.heldout["agreement"]["auroc"]  # doctest: +SKIP
((0.25, 0.5), 0.81)
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tts_graph.backends.base import Completion, TokenLogprob
from tts_graph.errors import ConfigError
from tts_graph.eval.metrics import pass_at_k
from tts_graph.nodes.difficulty import DEFAULT_BINS, ESTIMATORS, DifficultyBins, Probe, auroc
from tts_graph.spec.load import load_spec
from tts_graph.spec.models import AdaptiveSpec, Spec
from tts_graph.verifiers.base import Verdict

__all__ = [
    "OFFLINE_ESTIMATORS",
    "Calibration",
    "calibration_spec",
    "fit_calibration",
    "spearman",
]

# The estimators a calibration can score from recorded samples; one that asks the model again
# (a self-rating) would need the server during the fit.
OFFLINE_ESTIMATORS = tuple(ESTIMATORS)

# The probe's sampling when neither the spec nor the strategy sets one (as the difficulty node).
_PROBE_SAMPLING = {"temperature": 0.7, "max_tokens": 128}


def calibration_spec(
    base: Spec | None, *, probe_n: int, label_n: int, verifier: str | None = None
) -> Spec:
    """The spec that draws the calibration samples: one request of ``probe_n + label_n``
    samples per problem, with ``base``'s backend, prompt and sampling (its adaptive strategy's
    own sampling first) and logprobs on, so every estimator can be scored. ``verifier`` (or the
    adaptive strategy's) checks each sample, for the ``verifier`` estimator."""
    if probe_n < 1 or label_n < 1:
        raise ConfigError(
            f"probe_n and label_n must be >= 1, got {probe_n} and {label_n}: the probe needs "
            "samples to score and the label needs samples of its own"
        )
    data: dict[str, Any] = {"name": "calibration", "sampling": dict(_PROBE_SAMPLING)}
    strategy: dict[str, Any] = {"kind": "best_of_n", "n": probe_n + label_n}
    if base is not None:
        # The JSON dump writes a "${" of a value as "$${", so loading it again expands nothing
        # a second time (the base spec's variables were expanded when it was loaded).
        dumped = base.model_dump(mode="json", exclude_none=True, by_alias=True)
        data["name"] = f"{base.name}-calibration"
        data["backend"] = dumped["backend"]
        if "prompt" in dumped:
            data["prompt"] = dumped["prompt"]
        data["sampling"] = {**data["sampling"], **dumped["sampling"]}
        if isinstance(base.strategy, AdaptiveSpec):
            adaptive = dumped["strategy"]
            data["sampling"].update(adaptive.get("sampling") or {})
            if "extract" in adaptive:
                strategy["extract"] = adaptive["extract"]
            if verifier is None and "verifier" in adaptive:
                strategy["verifier"] = adaptive["verifier"]
    if verifier is not None:
        strategy["verifier"] = verifier
    data["sampling"]["logprobs"] = True
    data["strategy"] = strategy
    return load_spec(data)


@dataclasses.dataclass(frozen=True)
class Calibration:
    """What a calibration fitted and measured; :meth:`to_dict` is the JSON it writes."""

    estimator: str
    bins: DifficultyBins
    probe_n: int
    label_n: int
    fit_problems: int
    heldout_problems: int
    budget: dict[str, dict[str, Any]]
    """Per bin: its problems, their mean pass rate, coverage at 1 and at ``label_n`` samples,
    and ``n``, the fewest samples within tolerance of the latter (None when no sample of the
    bin's problems passed: more samples did not help)."""
    heldout: dict[str, dict[str, float | None]]
    """Per estimator, on the held-out problems: ``auroc`` and ``spearman`` (None when the
    held-out labels or scores do not vary)."""
    skipped: int = 0
    """Problems left out: failed runs, or fewer samples than ``probe_n + 1``."""

    @property
    def thresholds(self) -> tuple[float, ...]:
        return self.bins.thresholds

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimator": self.estimator,
            "thresholds": list(self.bins.thresholds),
            "labels": list(self.bins.labels),
            "budget": self.budget,
            "probe_n": self.probe_n,
            "label_n": self.label_n,
            "label": f"pass rate of {self.label_n} samples drawn apart from the probe's",
            "fit_problems": self.fit_problems,
            "heldout_problems": self.heldout_problems,
            "skipped": self.skipped,
            "heldout": self.heldout,
        }


@dataclasses.dataclass(frozen=True)
class _Row:
    scores: dict[str, float]
    passed: int
    label_n: int

    @property
    def pass_rate(self) -> float:
        return self.passed / self.label_n


def _probe(record: Mapping[str, Any], probe_n: int) -> Probe:
    candidates = sorted(record["candidates"], key=lambda c: c["index"])[:probe_n]
    completions = tuple(
        Completion(
            index=c["index"], text=c["text"], finish_reason=None,
            # One token carrying the sample's mean: the logprob estimator reads only the mean.
            logprobs=None if c.get("mean_logprob") is None
            else (TokenLogprob(token="", logprob=float(c["mean_logprob"])),),
        )
        for c in candidates
    )  # fmt: skip
    verdicts = tuple(
        None if c.get("passed_public") is None
        else Verdict(passed=bool(c["passed_public"]), score=float(bool(c["passed_public"])),
                     reason="recorded")
        for c in candidates
    )  # fmt: skip
    return Probe(
        question=str(record.get("question", "")),
        completions=completions,
        answers=tuple(c.get("answer") for c in candidates),
        verdicts=verdicts if any(v is not None for v in verdicts) else (),
    )


def _rows(records: Sequence[Mapping[str, Any]], probe_n: int) -> tuple[list[_Row], int]:
    rows, skipped = [], 0
    for record in records:
        candidates = sorted(record.get("candidates") or [], key=lambda c: c["index"])
        if record.get("error") or len(candidates) <= probe_n:
            skipped += 1
            continue
        probe = _probe(record, probe_n)
        scores = {}
        for name in OFFLINE_ESTIMATORS:
            try:
                scores[name] = float(ESTIMATORS[name](probe))  # type: ignore[arg-type]
            except ConfigError:  # the verifier estimator without verdicts
                continue
        label = candidates[probe_n:]
        rows.append(_Row(scores, sum(bool(c.get("correct")) for c in label), len(label)))
    return rows, skipped


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties get their average rank); None if either side is
    constant or there are fewer than two points.

    >>> spearman([1, 2, 3, 4], [10, 20, 30, 25])
    0.8
    """
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} and {len(y)}")
    if len(x) < 2:
        return None
    rx, ry = _ranks(x), _ranks(y)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return None
    return round(float(np.corrcoef(rx, ry)[0, 1]), 12)


def _ranks(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    order = array.argsort(kind="stable")
    ranks = np.empty(len(array))
    ranks[order] = np.arange(1, len(array) + 1)
    for value in np.unique(array):  # ties: the mean of the ranks they span
        tied = array == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def _budget(rows: Sequence[_Row], tolerance: float) -> dict[str, Any]:
    if not rows:
        return {"problems": 0, "pass_rate": None, "coverage_at_1": None,
                "coverage_at_max": None, "n": None}  # fmt: skip
    label_n = min(r.label_n for r in rows)
    curve = [
        sum(pass_at_k(label_n, min(r.passed, label_n), k) for r in rows) / len(rows)
        for k in range(1, label_n + 1)
    ]
    best = curve[-1]
    n = None if best == 0 else next(k for k, c in enumerate(curve, 1) if c >= best - tolerance)
    return {
        "problems": len(rows),
        "pass_rate": round(sum(r.pass_rate for r in rows) / len(rows), 4),
        "coverage_at_1": round(curve[0], 4),
        "coverage_at_max": round(best, 4),
        "n": n,
    }


def fit_calibration(
    records: Sequence[Mapping[str, Any]],
    *,
    probe_n: int,
    estimator: str = "agreement",
    labels: Sequence[str] = DEFAULT_BINS.labels,
    holdout: float = 0.5,
    seed: int = 0,
    tolerance: float = 0.05,
) -> Calibration:
    """Fit the thresholds of ``estimator`` and a budget per bin on part of ``records`` (an
    evaluation's records, each with ``probe_n`` probe samples then the label's), and measure
    every estimator on the ``holdout`` share left out (see the module docs)."""
    if estimator not in OFFLINE_ESTIMATORS:
        raise ConfigError(
            f"unknown estimator {estimator!r} for a calibration; choose one of: "
            f"{', '.join(OFFLINE_ESTIMATORS)}"
        )
    if not 0 < holdout < 1:
        raise ConfigError(f"holdout must be a share strictly between 0 and 1, got {holdout}")
    rows, skipped = _rows(records, probe_n)
    if rows and estimator not in rows[0].scores:
        raise ConfigError(
            f"the {estimator!r} estimator needs the samples' verdicts: calibrate with a "
            "verifier (--verifier, or the adaptive spec's)"
        )
    fit_n = round(len(rows) * (1 - holdout))
    if fit_n < len(labels) or len(rows) - fit_n < 2:
        need = max(len(labels), 2) / min(holdout, 1 - holdout)
        raise ConfigError(
            f"{len(rows)} problems with samples ({skipped} skipped) are too few to fit "
            f"{len(labels)} bins on {1 - holdout:.0%} of them and test on the rest; give about "
            f"{int(need) + 1} or more (--limit)"
        )
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    fit = [rows[i] for i in order[:fit_n]]
    held = [rows[i] for i in order[fit_n:]]
    bins = DifficultyBins.fit([r.scores[estimator] for r in fit], labels=labels)
    budget = {
        label: _budget([r for r in fit if bins.bin(r.scores[estimator]) == label], tolerance)
        for label in bins.labels
    }
    heldout: dict[str, dict[str, float | None]] = {}
    for name in rows[0].scores:
        scores = [r.scores[name] for r in held]
        hard = [r.pass_rate < 0.5 for r in held]
        heldout[name] = {
            "auroc": auroc(scores, hard) if 0 < sum(hard) < len(hard) else None,
            "spearman": spearman(scores, [1 - r.pass_rate for r in held]),
        }
    return Calibration(
        estimator=estimator, bins=bins, probe_n=probe_n,
        label_n=min(r.label_n for r in rows), fit_problems=len(fit),
        heldout_problems=len(held), budget=budget, heldout=heldout, skipped=skipped,
    )  # fmt: skip

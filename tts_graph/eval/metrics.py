"""Numbers from an evaluation's records: accuracy with bootstrap intervals, coverage (pass@k) and
its exponentiated power-law fit, every selector's accuracy at each sample count, the knee of
accuracy against compute, and the verification gap of code.

The input is the list of records a run writes to ``results.jsonl`` (one dict per problem, with
``correct``, ``usage`` and every candidate's ``answer``, ``score``, ``confidence``,
``passed_public``, ``correct`` and ``completion_tokens``). :func:`summarize` computes
everything the report shows; the functions it uses are public for notebooks and other reports.

Conventions, and why:

- A record with an ``error`` counts as wrong everywhere, with no candidates: the denominator is
  always every problem of the run, so a strategy cannot look better by failing on hard problems.
- **Coverage** at ``k`` is the mean over problems of the unbiased pass@k estimator (Chen et al.
  2021, the one Brown et al. 2024 use) from each problem's ``n`` candidates, ``c`` of them
  correct. The default ``k`` grid is the powers of two up to the smallest ``n`` among problems
  that have candidates (and that ``n``), so every problem has at least ``k`` samples; a ``k``
  above a problem's ``n`` (asked for explicitly) uses pass@n for it, a lower bound.
- **Selectors** at ``k`` are measured as search-and-learn does, by subsampling: from each
  problem's ``n`` candidates, subsets of size ``k`` are drawn (all of them when there are at most
  ``max(trials, n)``, which makes the value exact, as at ``k = 1``; else ``trials`` random ones,
  seeded), each rule picks a candidate, and the problem scores the mean ``correct`` of the
  picks. A tie among answers is scored as a uniform random tie-break (the mean over the tied
  answers), because a subset has no order that a "first seen" rule could honestly use. An
  answer's correctness is the mean ``correct`` of its voters in the subset (they agree whenever
  the judge is consistent).
- Votes are over :func:`~tts_graph.verifiers.answer.normalize_answer` of each candidate's
  ``answer``; for ``kind == "code"`` they are over the program (``answer``, else ``text``, with
  trailing spaces and blank lines dropped), since two programs rarely share a final "answer"
  string; what is scored is always the chosen candidate's ``correct``.
- **Intervals** are percentile bootstrap intervals over problems (2000 resamples, 95 %, seeded).
- **Compute** for ``k`` samples of a problem is estimated as one ``k``-sample request: the
  record's prompt tokens per call plus ``k`` times its candidates' mean completion tokens (an
  ``n``-sample request shares its prompt); FLOPs scale those tokens by the record's FLOPs per
  token when the run knew the parameter count (``flops > 0``).

>>> round(pass_at_k(10, 3, 1), 12)
0.3
>>> round(pass_at_k(10, 3, 2), 4)
0.5333
"""

from __future__ import annotations

import itertools
import math
import operator
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tts_graph.verifiers.answer import extract_program, normalize_answer

__all__ = [
    "SELECTORS",
    "Knee",
    "PowerLawFit",
    "accuracy_by",
    "accuracy_by_thinking_cap",
    "bootstrap_ci",
    "compute_curve",
    "coverage_curve",
    "default_ks",
    "find_knee",
    "find_turnover",
    "fit_power_law",
    "pass_at_k",
    "per_problem",
    "selector_curves",
    "summarize",
    "thinking_cap",
    "totals",
    "verification_gap",
]

Record = Mapping[str, Any]
FloatArray = npt.NDArray[np.float64]

SELECTORS = ("majority", "weighted", "confidence", "verifier")
"""The selection rules measured by subsampling, in the order reports show them."""

RESAMPLES = 2000
LEVEL = 0.95
TRIALS = 256
KEEP_TOP = 0.9  # DeepConf-high, the library's default for confidence-filtered voting


# ---------------------------------------------------------------------------------------------
# pass@k and coverage


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased estimate of the chance that at least one of ``k`` samples is correct, from
    ``n`` samples of which ``c`` are correct: ``1 − C(n−c, k) / C(n, k)``.

    Computed as the product ``1 − ∏_{i=n−c+1}^{n} (1 − k/i)``, which never forms the huge
    binomials. Raises ``ValueError`` unless ``0 <= c <= n`` and ``1 <= k <= n``.

    >>> pass_at_k(5, 2, 4)  # any 4 of 5 include a correct one
    1.0
    >>> pass_at_k(10, 0, 3), pass_at_k(10, 10, 3)
    (0.0, 1.0)
    >>> round(pass_at_k(10, 3, 2), 6) == round(1 - 21 / 45, 6)
    True
    """
    n, c, k = _count("n", n), _count("c", c), _count("k", k)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= c <= n:
        raise ValueError(f"c must be in [0, n] = [0, {n}], got {c}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, n] = [1, {n}], got {k}")
    if n - c < k:
        return 1.0  # every k-subset holds a correct sample
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return min(1.0, max(0.0, 1.0 - product))


def default_ks(n: int) -> list[int]:
    """The sample counts a curve is drawn at: powers of two up to ``n``, and ``n`` itself.

    >>> default_ks(12)
    [1, 2, 4, 8, 12]
    >>> default_ks(0)
    []
    """
    ks = [1 << i for i in range(max(n, 1).bit_length()) if 1 << i <= n]
    if n >= 1 and ks[-1] != n:
        ks.append(n)
    return ks


def _candidates(record: Record) -> list[Mapping[str, Any]]:
    if record.get("error") is not None:
        return []
    return list(record.get("candidates") or [])


def _sample_counts(records: Sequence[Record]) -> list[int]:
    return [len(_candidates(r)) for r in records]


def _resolve_ks(records: Sequence[Record], ks: Sequence[int] | None) -> list[int]:
    if ks is not None:
        out = sorted({_count("k", k) for k in ks})
        if out and out[0] < 1:
            raise ValueError(f"every k must be >= 1, got {out[0]}")
        return out
    sampled = [n for n in _sample_counts(records) if n > 0]
    return default_ks(min(sampled)) if sampled else []


def _problem_pass(record: Record, k: int) -> float:
    cands = _candidates(record)
    if not cands:
        return 0.0
    n = len(cands)
    c = sum(bool(x.get("correct")) for x in cands)
    return pass_at_k(n, c, min(k, n))


def coverage_curve(
    records: Sequence[Record],
    ks: Sequence[int] | None = None,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Mean pass@k over the problems at each ``k``, with a bootstrap interval.

    Problems without candidates (errors) count 0. Each point: ``{"k", "value", "ci"}``.

    >>> recs = [{"candidates": [{"correct": True}, {"correct": False}]},
    ...         {"candidates": [{"correct": False}, {"correct": False}]}]
    >>> [(p["k"], p["value"]) for p in coverage_curve(recs)]
    [(1, 0.25), (2, 0.5)]
    """
    points = []
    for k in _resolve_ks(records, ks):
        values = np.array([_problem_pass(r, k) for r in records], dtype=np.float64)
        points.append(_point(values, resamples=resamples, level=level, seed=seed, k=k))
    return points


# ---------------------------------------------------------------------------------------------
# Bootstrap


def bootstrap_ci(
    values: Sequence[float] | FloatArray,
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> tuple[float, float] | None:
    """A percentile bootstrap interval for the mean of ``values`` (resampled with replacement,
    ``resamples`` times, seeded); None for no values.

    >>> lo, hi = bootstrap_ci([1, 0, 1, 1, 0, 1, 1, 1])
    >>> lo <= 0.75 <= hi
    True
    """
    data = np.asarray(values, dtype=np.float64)
    if data.ndim != 1:
        raise ValueError("values must be one-dimensional")
    if resamples < 1:
        raise ValueError(f"resamples must be >= 1, got {resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    m = len(data)
    if m == 0:
        return None
    if np.all(data == data[0]):
        return float(data[0]), float(data[0])
    rng = np.random.default_rng(seed)
    means = np.empty(resamples, dtype=np.float64)
    # Chunks bound the index matrix to a few million entries, whatever the number of problems.
    step = max(1, 4_000_000 // m)
    for start in range(0, resamples, step):
        stop = min(resamples, start + step)
        idx = rng.integers(0, m, size=(stop - start, m))
        means[start:stop] = data[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def _point(
    values: FloatArray, *, resamples: int, level: float, seed: int, **extra: Any
) -> dict[str, Any]:
    ci = bootstrap_ci(values, resamples=resamples, level=level, seed=seed)
    return {
        **extra,
        "value": float(values.mean()) if len(values) else None,
        "ci": None if ci is None else [ci[0], ci[1]],
    }


# ---------------------------------------------------------------------------------------------
# Selectors by subsampling


def _vote_key(cand: Mapping[str, Any], kind: str | None) -> str | None:
    answer, text = cand.get("answer"), cand.get("text")
    if kind == "code":
        # A code candidate votes for its program, read from its text: runs recorded before code
        # answers were programs hold a line of the program as the answer.
        program = extract_program(text) if isinstance(text, str) else None
        return normalize_answer(program) if program else None
    if isinstance(answer, str) and answer.strip():
        return normalize_answer(answer)
    return None


def _floats(values: Iterable[Any]) -> FloatArray:
    return np.array(
        [
            float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan
            for v in values
        ],
        dtype=np.float64,
    )


@dataclass
class _Pool:
    """One problem's candidates as arrays, for voting over many subsets at once."""

    keys: npt.NDArray[np.int64]  # answer id, -1 for a candidate that states none
    correct: FloatArray
    score: FloatArray  # NaN when unscored
    confidence: FloatArray  # NaN when unknown
    passed: FloatArray  # 1, 0, or NaN when no verifier ran

    @classmethod
    def of(cls, record: Record) -> _Pool:
        cands = _candidates(record)
        kind = record.get("kind")
        ids: dict[str, int] = {}
        keys = []
        for c in cands:
            key = _vote_key(c, kind)
            keys.append(-1 if key is None else ids.setdefault(key, len(ids)))
        passed = [
            None if c.get("passed_public") is None else float(bool(c["passed_public"]))
            for c in cands
        ]
        return cls(
            keys=np.array(keys, dtype=np.int64),
            correct=np.array([float(bool(c.get("correct"))) for c in cands], dtype=np.float64),
            score=_floats(c.get("score") for c in cands),
            confidence=_floats(c.get("confidence") for c in cands),
            passed=_floats(passed),
        )

    @property
    def n(self) -> int:
        return len(self.keys)


def _subsets(n: int, k: int, trials: int, rng: np.random.Generator) -> npt.NDArray[np.int64]:
    """Index rows of size ``k``: every subset when there are at most ``max(trials, n)`` (exact;
    ``n`` makes ``k = 1`` and ``k = n − 1`` exact at little cost), else ``trials`` uniform
    random ones."""
    if math.comb(n, k) <= max(trials, n):
        return np.array(list(itertools.combinations(range(n), k)), dtype=np.int64).reshape(-1, k)
    rows = rng.permuted(np.tile(np.arange(n, dtype=np.int64), (trials, 1)), axis=1)
    return rows[:, :k]


def _vote(
    keys: npt.NDArray[np.int64],
    correct: FloatArray,
    weights: FloatArray | None,
    voters: npt.NDArray[np.bool_],
) -> tuple[FloatArray, npt.NDArray[np.bool_]]:
    """Per row: the expected correctness of the answer with the highest summed weight (votes
    when ``weights`` is None), ties to more votes, then uniform; and whether the row had any
    voter. Rows are subsets; columns their members."""
    rows, _ = keys.shape
    width = int(keys.max(initial=-1)) + 1
    valid = voters & (keys >= 0)
    if width == 0 or not valid.any():
        return np.zeros(rows, dtype=np.float64), np.zeros(rows, dtype=bool)
    flat = (np.arange(rows)[:, None] * width + keys)[valid]
    size = rows * width
    votes = np.bincount(flat, minlength=size).reshape(rows, width).astype(np.float64)
    right = _sums(flat, correct[valid], size).reshape(rows, width)
    weight = votes if weights is None else _sums(flat, weights[valid], size).reshape(rows, width)
    voted: npt.NDArray[np.bool_] = votes > 0
    masked = np.where(voted, weight, -np.inf)
    lead = voted & np.isclose(masked, masked.max(axis=1, keepdims=True), rtol=1e-9, atol=1e-12)
    tied_votes = np.where(lead, votes, -1.0)
    lead &= tied_votes == tied_votes.max(axis=1, keepdims=True)
    share = np.divide(right, votes, out=np.zeros_like(right), where=voted)
    any_vote = np.asarray(voted.any(axis=1), dtype=np.bool_)
    count = np.maximum(lead.sum(axis=1), 1)
    value: FloatArray = (share * lead).sum(axis=1) / count
    return value, any_vote


def _sums(bins: npt.NDArray[np.int64], weights: FloatArray, size: int) -> FloatArray:
    return np.bincount(bins, weights=weights, minlength=size).astype(np.float64)


def _majority(pool: _Pool, rows: npt.NDArray[np.int64]) -> FloatArray:
    keys, correct = pool.keys[rows], pool.correct[rows]
    value, any_vote = _vote(keys, correct, None, np.ones(keys.shape, dtype=bool))
    # No candidate states an answer: the pick is any of them, uniformly.
    return np.where(any_vote, value, correct.mean(axis=1))


def _weighted(pool: _Pool, rows: npt.NDArray[np.int64]) -> FloatArray:
    keys, correct = pool.keys[rows], pool.correct[rows]
    weights = np.nan_to_num(pool.score[rows], nan=0.0)  # unscored candidates weigh 0
    value, any_vote = _vote(keys, correct, weights, np.ones(keys.shape, dtype=bool))
    return np.where(any_vote, value, correct.mean(axis=1))


def _confidence(
    pool: _Pool, rows: npt.NDArray[np.int64], keep_top: float, majority: FloatArray
) -> FloatArray:
    keys, correct, conf = pool.keys[rows], pool.correct[rows], pool.confidence[rows]
    known = ~np.isnan(conf) & (keys >= 0)
    threshold = _row_quantiles(np.where(known, conf, np.nan), 1.0 - keep_top)
    kept = known & (conf >= threshold[:, None])
    value, any_vote = _vote(keys, correct, np.nan_to_num(conf, nan=0.0), kept)
    return np.where(any_vote, value, majority)


def _row_quantiles(values: FloatArray, q: float) -> FloatArray:
    """The ``q`` quantile of each row's non-NaN values, interpolated linearly (numpy's default
    and DeepConf's); +inf for a row with none. ``np.nanquantile`` does the same one row at a
    time, far too slowly for thousands of subsets."""
    ordered = np.sort(values, axis=1)  # NaN sorts last
    known = (~np.isnan(values)).sum(axis=1)
    position = q * np.maximum(known - 1, 0)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, np.maximum(known - 1, 0))
    lo = np.take_along_axis(ordered, low[:, None], axis=1)[:, 0]
    hi = np.take_along_axis(ordered, high[:, None], axis=1)[:, 0]
    out: FloatArray = lo + (hi - lo) * (position - low)
    return np.where(known > 0, out, np.inf)


def _verifier(pool: _Pool, rows: npt.NDArray[np.int64], majority: FloatArray) -> FloatArray:
    correct = pool.correct[rows]
    score = np.nan_to_num(pool.score[rows], nan=-np.inf)
    if not np.isnan(pool.passed).all():
        # Verifier-first: the best-scored candidate that passed; none passed: majority vote.
        passed = pool.passed[rows] == 1.0
        eligible = passed
        fallback = majority
    elif not np.isnan(pool.score).all():
        eligible = np.ones(rows.shape, dtype=bool)  # best score among all
        fallback = correct.mean(axis=1)
    else:
        return majority
    ranked = np.where(eligible, score, -np.inf)
    best = ranked.max(axis=1, keepdims=True)
    lead = eligible & ((ranked == best) | np.isclose(ranked, best, rtol=1e-9, atol=1e-12))
    any_lead = lead.any(axis=1)
    count = np.maximum(lead.sum(axis=1), 1)
    value = (correct * lead).sum(axis=1) / count
    return np.where(any_lead, value, fallback)


def _available(records: Sequence[Record]) -> list[str]:
    cands = [c for r in records for c in _candidates(r)]
    has = {
        "score": bool(np.any(~np.isnan(_floats(c.get("score") for c in cands)))),
        "confidence": any(c.get("confidence") is not None for c in cands),
        "passed": any(c.get("passed_public") is not None for c in cands),
    }
    out = ["majority"]
    if has["score"]:
        out.append("weighted")
    if has["confidence"]:
        out.append("confidence")
    if has["score"] or has["passed"]:
        out.append("verifier")
    return out


def _selector_values(
    records: Sequence[Record],
    ks: Sequence[int],
    selectors: Sequence[str],
    *,
    trials: int,
    seed: int,
    keep_top: float,
) -> dict[str, FloatArray]:
    """Per selector, a (problems × ks) array of each problem's expected accuracy."""
    out = {s: np.zeros((len(records), len(ks)), dtype=np.float64) for s in selectors}
    for p, record in enumerate(records):
        pool = _Pool.of(record)
        if pool.n == 0:
            continue  # no candidates: wrong at every k
        # One generator per problem: the values do not depend on which other problems are there.
        rng = np.random.default_rng([seed, p])
        for j, k in enumerate(ks):
            rows = _subsets(pool.n, min(k, pool.n), trials, rng)
            majority = _majority(pool, rows)  # also the fallback of the other rules
            for name in selectors:
                if name == "majority":
                    v = majority
                elif name == "weighted":
                    v = _weighted(pool, rows)
                elif name == "confidence":
                    v = _confidence(pool, rows, keep_top, majority)
                else:
                    v = _verifier(pool, rows, majority)
                out[name][p, j] = float(v.mean())
    return out


def selector_curves(
    records: Sequence[Record],
    ks: Sequence[int] | None = None,
    *,
    selectors: Sequence[str] | None = None,
    trials: int = TRIALS,
    seed: int = 0,
    keep_top: float = KEEP_TOP,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
) -> dict[str, list[dict[str, Any]]]:
    """Each selector's accuracy at each ``k``, by subsampling (see the module docs), with a
    bootstrap interval over problems.

    ``selectors`` defaults to those the records can support: ``majority`` always, ``weighted``
    when some candidate has a ``score``, ``confidence`` when some has a ``confidence``,
    ``verifier`` when some has a ``passed_public`` or a ``score``. ``verifier`` takes the
    best-scored candidate that passed, majority when none did (and, with no verdicts at all, the
    best-scored candidate). ``confidence`` keeps the candidates at or above the ``1 − keep_top``
    quantile of the subset's confidences and takes their confidence-weighted vote (majority when
    none has a confidence).

    >>> recs = [{"candidates": [{"answer": "1", "correct": True}, {"answer": "1", "correct": True},
    ...                         {"answer": "2", "correct": False}]}]
    >>> [round(p["value"], 4) for p in selector_curves(recs, [1, 2, 3])["majority"]]
    [0.6667, 0.6667, 1.0]
    """
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    if not 0.0 < keep_top <= 1.0:
        raise ValueError(f"keep_top must be in (0, 1], got {keep_top}")
    chosen = list(selectors) if selectors is not None else _available(records)
    unknown = sorted(set(chosen) - set(SELECTORS))
    if unknown:
        raise ValueError(f"unknown selectors {unknown}; choose from {list(SELECTORS)}")
    grid = _resolve_ks(records, ks)
    values = _selector_values(records, grid, chosen, trials=trials, seed=seed, keep_top=keep_top)
    return _curves(values, grid, resamples=resamples, level=level, seed=seed)


def _curves(
    values: Mapping[str, FloatArray],
    grid: Sequence[int],
    *,
    resamples: int,
    level: float,
    seed: int,
) -> dict[str, list[dict[str, Any]]]:
    return {
        name: [
            _point(v[:, j], resamples=resamples, level=level, seed=seed, k=k)
            for j, k in enumerate(grid)
        ]
        for name, v in values.items()
    }


# ---------------------------------------------------------------------------------------------
# The exponentiated power law (Brown et al. 2024)


@dataclass(frozen=True)
class PowerLawFit:
    """``coverage(k) ≈ exp(a · k^b)`` (Brown et al.'s exponentiated power law; ``a < 0``, and
    ``b < 0`` when coverage grows with ``k``).

    Fitted by least squares on ``log(−log coverage) = log(−a) + b · log k``, where the law is a
    straight line; points at coverage 0 or 1 have no image there and are left out (listed in
    ``excluded``). ``r2`` is the coefficient of determination in that fitted space;
    ``max_abs_error`` is the largest ``|predicted − observed|`` coverage over all points,
    excluded ones included.

    >>> fit = fit_power_law([1, 2, 4, 8], [math.exp(-2 * k ** -0.5) for k in [1, 2, 4, 8]])
    >>> round(fit.a, 6), round(fit.b, 6)
    (-2.0, -0.5)
    """

    a: float
    b: float
    r2: float
    max_abs_error: float
    points: int
    excluded: tuple[int, ...] = ()

    def predict(self, k: float) -> float:
        """The fitted coverage at ``k``.

        >>> PowerLawFit(a=-1.0, b=-1.0, r2=1.0, max_abs_error=0.0, points=2).predict(1)
        0.36787944117144233
        """
        return math.exp(self.a * k**self.b)

    def to_dict(self) -> dict[str, Any]:
        """Plain values for JSON."""
        out = asdict(self)
        out["excluded"] = list(self.excluded)
        return out


def fit_power_law(ks: Sequence[float], coverage: Sequence[float]) -> PowerLawFit | None:
    """Fit :class:`PowerLawFit` to a coverage curve; None when fewer than two points with
    distinct ``k`` have a coverage strictly between 0 and 1.

    >>> print(fit_power_law([1, 2], [0.0, 1.0]))
    None
    """
    x = np.asarray(ks, dtype=np.float64)
    y = np.asarray(coverage, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("ks and coverage must be sequences of the same length")
    if np.any(x <= 0):
        raise ValueError("every k must be > 0")
    inside = (y > 0.0) & (y < 1.0)
    if len(np.unique(x[inside])) < 2:
        return None
    lx, ly = np.log(x[inside]), np.log(-np.log(y[inside]))
    b, intercept = np.polyfit(lx, ly, 1)
    a = -math.exp(float(intercept))
    fitted = intercept + b * lx
    total = float(((ly - ly.mean()) ** 2).sum())
    residual = float(((ly - fitted) ** 2).sum())
    r2 = 1.0 - residual / total if total > 0 else (1.0 if residual < 1e-12 else 0.0)
    predicted = np.exp(a * x ** float(b))
    return PowerLawFit(
        a=a,
        b=float(b),
        r2=r2,
        max_abs_error=float(np.abs(predicted - y).max()),
        points=int(inside.sum()),
        excluded=tuple(int(k) if float(k).is_integer() else k for k in x[~inside].tolist()),
    )


# ---------------------------------------------------------------------------------------------
# Accuracy against compute: the knee and the turn-over


@dataclass(frozen=True)
class Knee:
    """The point of a concave rising curve after which more compute buys little (Kneedle).

    ``index`` is its position in the curve, ``x``/``y`` its coordinates, ``strength`` the height
    of the normalised difference curve there (0 to 1: how sharp the bend is).

    >>> find_knee([1, 2, 4, 8], [0.2, 0.5, 0.6, 0.62])
    Knee(index=1, x=2.0, y=0.5, strength=0.5714285714285714)
    """

    index: int
    x: float
    y: float
    strength: float


def find_knee(x: Sequence[float], y: Sequence[float], *, sensitivity: float = 1.0) -> Knee | None:
    """The knee of a rising, concave curve by the Kneedle method (Satopää et al. 2011).

    Both axes are scaled to [0, 1]; the knee is where the curve stands highest above the
    diagonal (the difference ``y − x``). It counts only when that height exceeds
    ``sensitivity`` times the mean spacing of the scaled ``x`` (Kneedle's threshold, offline:
    the difference curve ends at 0, so it always falls below the threshold afterwards). Only
    the part up to the highest ``y`` is used: past it accuracy falls (see
    :func:`find_turnover`). None for fewer than three points, a flat, straight or convex curve.

    >>> xs = [100, 200, 400, 800, 1600]
    >>> find_knee(xs, [0.30, 0.45, 0.55, 0.58, 0.59]).x
    400.0
    >>> print(find_knee([1, 2, 3], [1, 2, 3]))
    None
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError("x and y must be sequences of the same length")
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    top = int(np.argmax(ys))
    xs, ys = xs[: top + 1], ys[: top + 1]
    if len(xs) < 3 or xs[-1] == xs[0] or ys[-1] == ys[0]:
        return None
    xn = (xs - xs[0]) / (xs[-1] - xs[0])
    yn = (ys - ys[0]) / (ys[-1] - ys[0])
    diff = yn - xn
    i = int(np.argmax(diff))
    threshold = sensitivity * float(np.diff(xn).mean())
    if diff[i] <= 0 or diff[i] <= threshold:
        return None
    return Knee(index=int(order[i]), x=float(xs[i]), y=float(ys[i]), strength=float(diff[i]))


def find_turnover(
    x: Sequence[float], y: Sequence[float], *, tolerance: float = 0.01
) -> dict[str, float] | None:
    """Where accuracy stops rising and falls as compute rises: the peak, and the lowest point
    after it, when that is more than ``tolerance`` (absolute accuracy) below the peak; None
    when the curve does not turn over.

    >>> find_turnover([1, 2, 4, 8], [0.5, 0.6, 0.55, 0.52])
    {'x_peak': 2.0, 'y_peak': 0.6, 'x_low': 8.0, 'y_low': 0.52, 'drop': 0.08}
    """
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError("x and y must be sequences of the same length")
    if len(xs) < 2:
        return None
    order = np.argsort(xs, kind="stable")
    xs, ys = xs[order], ys[order]
    peak = int(np.argmax(ys))
    if peak == len(ys) - 1:
        return None
    low = peak + 1 + int(np.argmin(ys[peak + 1 :]))
    drop = float(ys[peak] - ys[low])
    if drop <= tolerance:
        return None
    return {
        "x_peak": float(xs[peak]),
        "y_peak": float(ys[peak]),
        "x_low": float(xs[low]),
        "y_low": float(ys[low]),
        "drop": round(drop, 12),
    }


def _usage(record: Record) -> Mapping[str, Any]:
    usage = record.get("usage")
    return usage if isinstance(usage, Mapping) else {}


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _cost_of_k(record: Record, k: int) -> tuple[float, float | None] | None:
    """Estimated (tokens, FLOPs) of ``k`` samples of this problem as one request (see the
    module docs); None for a problem without candidates."""
    cands = _candidates(record)
    if not cands:
        return None
    usage = _usage(record)
    calls = max(1.0, _number(usage.get("calls")))
    prompt = _number(usage.get("prompt_tokens")) / calls
    completions = [_number(c.get("completion_tokens")) for c in cands]
    per_sample = sum(completions) / len(completions)
    if per_sample == 0:
        per_sample = _number(usage.get("completion_tokens")) / len(cands)
    tokens = prompt + min(k, len(cands)) * per_sample
    total, flops = _number(usage.get("total_tokens")), _number(usage.get("flops"))
    return tokens, (tokens * flops / total if flops > 0 and total > 0 else None)


def compute_curve(
    records: Sequence[Record],
    ks: Sequence[int] | None = None,
    *,
    selector: str = "majority",
    trials: int = TRIALS,
    seed: int = 0,
    keep_top: float = KEEP_TOP,
    tolerance: float = 0.01,
    sensitivity: float = 1.0,
) -> dict[str, Any]:
    """Accuracy of ``selector`` at each ``k`` against the mean estimated tokens (and FLOPs) per
    problem for ``k`` samples, with its knee (:func:`find_knee`, on tokens) and turn-over
    (:func:`find_turnover`).

    Returns ``{"selector", "points": [{"k", "tokens", "flops", "accuracy"}], "knee",
    "knee_flops", "turnover"}`` (a knee is :class:`Knee`'s fields plus its ``k``; each is None
    when there is none); ``flops`` is None unless every problem knew its FLOPs.

    >>> rec = {"candidates": [{"answer": "1", "correct": True, "completion_tokens": 10},
    ...                       {"answer": "2", "correct": False, "completion_tokens": 10}],
    ...        "usage": {"prompt_tokens": 5, "calls": 1}}
    >>> [(p["k"], p["tokens"], p["accuracy"]) for p in compute_curve([rec])["points"]]
    [(1, 15.0, 0.5), (2, 25.0, 0.5)]
    """
    grid = _resolve_ks(records, ks)
    values = _selector_values(
        records, grid, [selector], trials=trials, seed=seed, keep_top=keep_top
    )[selector]
    return _compute_points(
        records, grid, values, selector=selector, tolerance=tolerance, sensitivity=sensitivity
    )


def _compute_points(
    records: Sequence[Record],
    grid: Sequence[int],
    values: FloatArray,
    *,
    selector: str,
    tolerance: float,
    sensitivity: float,
) -> dict[str, Any]:
    points = []
    for j, k in enumerate(grid):
        costs = [c for r in records if (c := _cost_of_k(r, k)) is not None]
        flops = [f for _, f in costs]
        points.append(
            {
                "k": k,
                "tokens": float(np.mean([t for t, _ in costs])) if costs else 0.0,
                "flops": (
                    float(np.mean([f for f in flops if f is not None]))
                    if costs and all(f is not None for f in flops)
                    else None
                ),
                "accuracy": float(values[:, j].mean()) if len(records) else 0.0,
            }
        )
    ys = [float(p["accuracy"] or 0.0) for p in points]

    def knee_on(axis: str) -> dict[str, Any] | None:
        if not points or any(p[axis] is None for p in points):
            return None
        knee = find_knee([float(p[axis] or 0.0) for p in points], ys, sensitivity=sensitivity)
        return None if knee is None else {**asdict(knee), "k": points[knee.index]["k"]}

    xs = [float(p["tokens"] or 0.0) for p in points]
    return {
        "selector": selector,
        "points": points,
        "knee": knee_on("tokens"),
        "knee_flops": knee_on("flops"),
        "turnover": find_turnover(xs, ys, tolerance=tolerance) if points else None,
    }


# ---------------------------------------------------------------------------------------------
# Accuracy and cost per problem, per group, in total


def per_problem(records: Sequence[Record]) -> list[dict[str, Any]]:
    """One row per problem: id, dataset, kind, strategy, difficulty bin, correct, tokens,
    FLOPs, calls, wall seconds, candidates (and how many are correct), error.

    >>> per_problem([{"id": "a", "correct": True, "usage": {"total_tokens": 5}}])[0]["tokens"]
    5
    """
    rows = []
    for r in records:
        usage = _usage(r)
        cands = _candidates(r)
        rows.append(
            {
                "id": str(r.get("id")),
                "dataset": r.get("dataset"),
                "kind": r.get("kind"),
                "strategy": r.get("strategy"),
                "bin": _bin(r),
                "correct": bool(r.get("correct")) and r.get("error") is None,
                "public_passed": r.get("public_passed"),
                "tokens": int(_number(usage.get("total_tokens"))),
                "flops": _number(usage.get("flops")),
                "calls": int(_number(usage.get("calls"))),
                "wall_s": _number(r.get("wall_s", usage.get("wall_s"))),
                "candidates": len(cands),
                "correct_candidates": sum(bool(c.get("correct")) for c in cands),
                "thinking_cap": thinking_cap(r),
                "error": r.get("error"),
            }
        )
    return rows


def _bin(record: Record) -> str | None:
    difficulty = record.get("difficulty")
    if isinstance(difficulty, Mapping) and difficulty.get("bin") is not None:
        return str(difficulty["bin"])
    return None


def _correct(records: Sequence[Record]) -> FloatArray:
    return np.array(
        [float(bool(r.get("correct")) and r.get("error") is None) for r in records],
        dtype=np.float64,
    )


def totals(
    records: Sequence[Record],
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> dict[str, Any]:
    """Accuracy (with its interval) and what the whole run spent, summed and per problem.

    ``flops`` is None when no problem knew its FLOPs.

    >>> t = totals([{"correct": True, "usage": {"total_tokens": 10}},
    ...             {"correct": False, "usage": {"total_tokens": 30}}])
    >>> t["accuracy"], t["total_tokens"], t["mean_tokens"]
    (0.5, 40, 20.0)
    """
    correct = _correct(records)
    m = len(records)

    def summed(key: str) -> float:
        return sum(_number(_usage(r).get(key)) for r in records)

    flops = summed("flops")
    ci = bootstrap_ci(correct, resamples=resamples, level=level, seed=seed)
    return {
        "problems": m,
        "correct": int(correct.sum()),
        "errors": sum(r.get("error") is not None for r in records),
        "accuracy": float(correct.mean()) if m else None,
        "ci": None if ci is None else [ci[0], ci[1]],
        "prompt_tokens": int(summed("prompt_tokens")),
        "completion_tokens": int(summed("completion_tokens")),
        "total_tokens": int(summed("total_tokens")),
        "calls": int(summed("calls")),
        "flops": flops if flops > 0 else None,
        "wall_s": sum(_number(r.get("wall_s", _usage(r).get("wall_s"))) for r in records),
        "mean_tokens": summed("total_tokens") / m if m else None,
        "mean_flops": flops / m if m and flops > 0 else None,
    }


def accuracy_by(
    records: Sequence[Record],
    key: Callable[[Record], Any],
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """:func:`totals` for each group of records sharing ``key(record)`` (None groups records
    without one), as rows with the group under ``"group"``, in order of first appearance.

    >>> rows = accuracy_by([{"correct": True, "kind": "math"}, {"correct": False, "kind": "code"}],
    ...                    lambda r: r.get("kind"))
    >>> [(r["group"], r["accuracy"]) for r in rows]
    [('math', 1.0), ('code', 0.0)]
    """
    groups: dict[Any, list[Record]] = {}
    for r in records:
        groups.setdefault(key(r), []).append(r)
    return [
        {"group": g, **totals(rs, resamples=resamples, level=level, seed=seed)}
        for g, rs in groups.items()
    ]


_BIN_ORDER = ("very_easy", "easy", "medium", "hard", "very_hard")


def _bin_rank(name: Any) -> tuple[int, str]:
    text = str(name)
    return (_BIN_ORDER.index(text) if text in _BIN_ORDER else len(_BIN_ORDER), text)


# ---------------------------------------------------------------------------------------------
# Thinking caps


def thinking_cap(record: Record) -> int | None:
    """The cap on thinking tokens a problem ran under, or None.

    Read from, in order: ``record["thinking_cap"]``; ``record["metadata"]["thinking_cap"]``;
    the first decision that names one (budget forcing's ``max_thinking_tokens``, the thinking
    node's ``controls["thinking_budget"]``). A sweep over caps is then several runs, or one run
    whose records each carry their cap.

    >>> thinking_cap({"decisions": [{"kind": "budget_forcing", "max_thinking_tokens": 256}]})
    256
    >>> thinking_cap({"metadata": {"thinking_cap": 64}}), thinking_cap({})
    (64, None)
    """

    def as_int(value: Any) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return int(value)

    if (cap := as_int(record.get("thinking_cap"))) is not None:
        return cap
    metadata = record.get("metadata")
    if isinstance(metadata, Mapping) and (cap := as_int(metadata.get("thinking_cap"))) is not None:
        return cap
    for d in record.get("decisions") or []:
        if not isinstance(d, Mapping):
            continue
        if (cap := as_int(d.get("max_thinking_tokens"))) is not None:
            return cap
        controls = d.get("controls")
        if (
            isinstance(controls, Mapping)
            and (cap := as_int(controls.get("thinking_budget"))) is not None
        ):
            return cap
    return None


def accuracy_by_thinking_cap(
    records: Sequence[Record],
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """:func:`totals` per thinking cap (:func:`thinking_cap`), ascending, with the cap under
    ``"cap"``; records without a cap are left out, and no caps gives an empty list.

    >>> rows = accuracy_by_thinking_cap([{"correct": True, "thinking_cap": 128},
    ...                                  {"correct": False, "thinking_cap": 32}])
    >>> [(r["cap"], r["accuracy"]) for r in rows]
    [(32, 0.0), (128, 1.0)]
    """
    capped = [r for r in records if thinking_cap(r) is not None]
    rows = accuracy_by(capped, thinking_cap, resamples=resamples, level=level, seed=seed)
    for row in rows:
        row["cap"] = row.pop("group")
    return sorted(rows, key=lambda row: row["cap"])


# ---------------------------------------------------------------------------------------------
# The verification gap of code


def verification_gap(
    records: Sequence[Record],
    *,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> dict[str, Any] | None:
    """How often passing the public tests meant passing the hidden ones, for code problems.

    For chosen answers (records whose ``public_passed`` is known): ``public`` and ``hidden``
    pass rates with intervals, ``gap = public − hidden``, ``false_pass`` (public passed, hidden
    failed; also as a share of public passes) and ``missed`` (public failed, hidden passed).
    ``candidates`` gives the same counts over every candidate with a ``passed_public``. None
    when no code record has public-test results.

    >>> gap = verification_gap([
    ...     {"kind": "code", "public_passed": True, "correct": True},
    ...     {"kind": "code", "public_passed": True, "correct": False}])
    >>> gap["public"], gap["hidden"], gap["gap"], gap["false_pass"]
    (1.0, 0.5, 0.5, 1)
    """
    code = [r for r in records if r.get("kind") == "code"]
    chosen = [
        (bool(r["public_passed"]), bool(r.get("correct")) and r.get("error") is None)
        for r in code
        if r.get("public_passed") is not None
    ]
    cands = [
        (bool(c["passed_public"]), bool(c.get("correct")))
        for r in code
        for c in _candidates(r)
        if c.get("passed_public") is not None
    ]
    if not chosen and not cands:
        return None

    def counts(pairs: Sequence[tuple[bool, bool]]) -> dict[str, Any]:
        public = sum(p for p, _ in pairs)
        false_pass = sum(p and not h for p, h in pairs)
        return {
            "n": len(pairs),
            "public_passes": public,
            "hidden_passes": sum(h for _, h in pairs),
            "false_pass": false_pass,
            "missed": sum(h and not p for p, h in pairs),
            "false_pass_rate": false_pass / public if public else None,
        }

    out: dict[str, Any] = {"problems": len(code), **counts(chosen)}
    if chosen:
        public = np.array([float(p) for p, _ in chosen], dtype=np.float64)
        hidden = np.array([float(h) for _, h in chosen], dtype=np.float64)
        out |= {
            "public": float(public.mean()),
            "public_ci": _listed(bootstrap_ci(public, resamples=resamples, level=level, seed=seed)),
            "hidden": float(hidden.mean()),
            "hidden_ci": _listed(bootstrap_ci(hidden, resamples=resamples, level=level, seed=seed)),
            "gap": float(public.mean() - hidden.mean()),
            "gap_ci": _listed(
                bootstrap_ci(public - hidden, resamples=resamples, level=level, seed=seed)
            ),
        }
    else:
        out |= {"public": None, "hidden": None, "gap": None}
    out["candidates"] = counts(cands)
    return out


def _listed(ci: tuple[float, float] | None) -> list[float] | None:
    return None if ci is None else [ci[0], ci[1]]


# ---------------------------------------------------------------------------------------------
# Everything for the report


def summarize(
    records: Sequence[Record],
    *,
    ks: Sequence[int] | None = None,
    trials: int = TRIALS,
    seed: int = 0,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    keep_top: float = KEEP_TOP,
    class_key: str = "dataset",
) -> dict[str, Any]:
    """Every number the report shows, as plain JSON-ready values.

    Keys: ``totals`` (:func:`totals`), ``errors`` (``[{"id", "error"}]``), ``per_problem``,
    ``by_dataset``, ``by_kind``, ``by_strategy``, ``by_difficulty`` (:func:`accuracy_by`,
    difficulty bins from easiest), ``by_thinking_cap``, ``samples`` (candidates per problem:
    min, max, mean), ``coverage`` (``{"points", "fit"}``: :func:`coverage_curve` and
    :func:`fit_power_law`), ``selectors`` (:func:`selector_curves`), ``compute``
    (:func:`compute_curve` for ``"all"`` problems and per task class, the value of
    ``class_key`` in each record), ``compute_verified`` (the same for the ``verifier``
    selector over all problems, None without verdicts or scores: uniform best-of-k),
    ``verification_gap`` and ``settings``.

    >>> s = summarize([{"id": "a", "correct": True, "candidates": [
    ...     {"answer": "1", "correct": True}, {"answer": "2", "correct": False}]}], resamples=50)
    >>> s["totals"]["accuracy"], [p["value"] for p in s["coverage"]["points"]]
    (1.0, [0.5, 1.0])
    """
    opts: dict[str, Any] = {"resamples": resamples, "level": level, "seed": seed}
    grid = _resolve_ks(records, ks)
    coverage = coverage_curve(records, grid, **opts)
    fit = fit_power_law([p["k"] for p in coverage], [p["value"] for p in coverage])
    counts = [n for n in _sample_counts(records) if n > 0]
    # Each selector's per-problem values are computed once and shared by the selector curves
    # and every task class's compute curve: subsampling is most of the work.
    values = _selector_values(
        records, grid, _available(records), trials=trials, seed=seed, keep_top=keep_top
    )
    selectors = _curves(values, grid, **opts)
    knee_opts: dict[str, Any] = {"selector": "majority", "tolerance": 0.01, "sensitivity": 1.0}
    compute = {}
    if records:
        compute["all"] = _compute_points(records, grid, values["majority"], **knee_opts)
    classes: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        classes.setdefault(str(r.get(class_key)), []).append(i)
    if len(classes) > 1:
        for name, rows in classes.items():
            group = [records[i] for i in rows]
            compute[name] = _compute_points(group, grid, values["majority"][rows], **knee_opts)
    # Uniform best-of-k with the run's verifier: the curve an adaptive run is measured against.
    verified = (
        _compute_points(records, grid, values["verifier"], **{**knee_opts, "selector": "verifier"})
        if records and "verifier" in values
        else None
    )
    by_difficulty = accuracy_by([r for r in records if _bin(r) is not None], _bin, **opts)
    return {
        "totals": totals(records, **opts),
        "errors": [
            {"id": str(r.get("id")), "error": str(r["error"])}
            for r in records
            if r.get("error") is not None
        ],
        "per_problem": per_problem(records),
        "by_dataset": accuracy_by(records, lambda r: r.get("dataset"), **opts),
        "by_kind": accuracy_by(records, lambda r: r.get("kind"), **opts),
        "by_strategy": accuracy_by(records, lambda r: r.get("strategy"), **opts),
        "by_difficulty": sorted(by_difficulty, key=lambda row: _bin_rank(row["group"])),
        "by_thinking_cap": accuracy_by_thinking_cap(records, **opts),
        "samples": {
            "min": min(counts) if counts else 0,
            "max": max(counts) if counts else 0,
            "mean": float(np.mean(counts)) if counts else 0.0,
            "histogram": {str(n): c for n, c in sorted(Counter(counts).items())},
        },
        "coverage": {"points": coverage, "fit": None if fit is None else fit.to_dict()},
        "selectors": selectors,
        "compute": compute,
        "compute_verified": verified,
        "verification_gap": verification_gap(records, **opts),
        "settings": {
            "ks": grid,
            "trials": trials,
            "seed": seed,
            "resamples": resamples,
            "level": level,
            "keep_top": keep_top,
            "class_key": class_key,
        },
    }

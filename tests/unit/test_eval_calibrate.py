"""Calibration from synthetic records: the label never counts the probe's samples, thresholds
are the fit half's quantiles, a bin's budget is its coverage knee, held-out ranking is measured,
and bad input is refused with a reason."""

from pathlib import Path

import pytest

from tts_graph.errors import ConfigError
from tts_graph.eval.calibrate import calibration_spec, fit_calibration, spearman
from tts_graph.nodes.difficulty import DifficultyBins
from tts_graph.spec.load import load_spec

ROOT = Path(__file__).resolve().parents[2]


def record(i, probe, label, *, probe_correct=True, passed_public=None, mean_logprob=-0.5):
    """Problem ``i``: probe samples answering ``probe`` (all ``probe_correct``), then label
    samples correct as ``label`` says."""
    cands = [
        {"index": j, "text": f"Answer: {a}", "answer": a, "correct": probe_correct,
         "passed_public": passed_public, "mean_logprob": mean_logprob}
        for j, a in enumerate(probe)
    ] + [
        {"index": len(probe) + j, "text": "x", "answer": "x", "correct": ok,
         "passed_public": passed_public, "mean_logprob": mean_logprob}
        for j, ok in enumerate(label)
    ]  # fmt: skip
    return {"id": f"p{i}", "question": "q", "candidates": cands, "error": None}


EASY, HARD = ("1", "1", "1", "1"), ("1", "2", "3", "4")  # agreement scores 0 and 0.75


def test_the_label_is_the_pass_rate_of_the_samples_apart_from_the_probe():
    # Every probe sample is correct, two of four label samples are: counting the probe would
    # give a pass rate of 0.75, the label's own is 0.5.
    records = [record(i, HARD, [True, True, False, False]) for i in range(8)]
    cal = fit_calibration(records, probe_n=4, labels=("easy", "hard"))
    assert cal.label_n == 4 and cal.fit_problems == 4 and cal.heldout_problems == 4
    # One score for all: both thresholds sit on it, so every problem lands in the last bin.
    assert cal.thresholds == (0.75,)
    hard = cal.budget["hard"]
    assert hard["problems"] == 4 and hard["pass_rate"] == 0.5
    # Coverage with 2 of 4 correct: pass@1 = .5, pass@2 = 1 - 1/6, pass@3 = pass@4 = 1:
    # within 0.05 of the best from 3 samples on.
    assert hard["coverage_at_1"] == 0.5 and hard["coverage_at_max"] == 1.0 and hard["n"] == 3
    assert cal.budget["easy"] == {"problems": 0, "pass_rate": None, "coverage_at_1": None,
                                  "coverage_at_max": None, "n": None}  # fmt: skip
    # Held out: every score and every label is the same, so nothing ranks.
    assert cal.heldout["agreement"] == {"auroc": None, "spearman": None}


def test_thresholds_come_from_the_fit_half_and_ranking_from_the_other():
    records = [record(i, EASY, [True] * 4) for i in range(6)]
    records += [record(6 + i, HARD, [False] * 4, probe_correct=False) for i in range(6)]
    cal = fit_calibration(records, probe_n=4, labels=("easy", "hard"), seed=3)
    assert cal.fit_problems == 6 and cal.heldout_problems == 6
    fit_scores = sorted([0.0] * cal.budget["easy"]["problems"]
                        + [0.75] * cal.budget["hard"]["problems"])  # fmt: skip
    assert cal.bins == DifficultyBins.fit(fit_scores, labels=("easy", "hard"))
    assert cal.budget["easy"]["n"] == 1  # every sample passes: one is enough
    assert cal.budget["hard"]["n"] is None  # none passes: more samples did not help
    assert cal.heldout["agreement"] == {"auroc": 1.0, "spearman": 1.0}
    # The logprob estimator sees the same mean everywhere: it ranks nothing.
    assert cal.heldout["logprob"]["auroc"] == 0.5
    assert cal.heldout["logprob"]["spearman"] is None
    assert "verifier" not in cal.heldout  # no verdicts recorded
    assert cal.to_dict()["label"] == "pass rate of 4 samples drawn apart from the probe's"


def test_the_verifier_estimator_reads_the_recorded_public_verdicts():
    records = [record(i, EASY, [True] * 4, passed_public=True) for i in range(4)]
    records += [record(4 + i, EASY, [False] * 4, passed_public=False) for i in range(4)]
    cal = fit_calibration(records, probe_n=4, estimator="verifier", labels=("easy", "hard"))
    assert cal.heldout["verifier"]["auroc"] == 1.0
    assert cal.heldout["agreement"]["auroc"] == 0.5  # all agree: blind to what the tests see
    with pytest.raises(ConfigError, match="needs the samples' verdicts"):
        fit_calibration([record(i, EASY, [True]) for i in range(8)], probe_n=4,
                        estimator="verifier")  # fmt: skip


def test_failed_and_short_problems_are_skipped_and_too_few_refused():
    records = [record(i, EASY, [True, False]) for i in range(8)]
    failed = {**record(8, EASY, []), "error": "BackendError: down"}
    short = record(9, ("1", "1"), [])
    cal = fit_calibration([*records, failed, short], probe_n=4, labels=("easy", "hard"))
    assert cal.skipped == 2 and cal.fit_problems + cal.heldout_problems == 8
    with pytest.raises(ConfigError, match=r"3 problems with samples \(0 skipped\) are too few"):
        fit_calibration(records[:3], probe_n=4)
    with pytest.raises(ConfigError, match="unknown estimator 'self_rating'"):
        fit_calibration(records, probe_n=4, estimator="self_rating")
    with pytest.raises(ConfigError, match="holdout"):
        fit_calibration(records, probe_n=4, holdout=1.0)


def test_spearman_averages_tied_ranks():
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # Ranks of [1, 1, 2] are [1.5, 1.5, 3]: their correlation with [1, 2, 3] is sqrt(3)/2.
    assert spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660254)
    assert spearman([1, 1], [1, 2]) is None and spearman([1], [2]) is None
    with pytest.raises(ValueError, match="differ in length"):
        spearman([1, 2], [1])


def test_the_calibration_spec_samples_like_the_adaptive_specs_probe():
    base = load_spec(ROOT / "examples" / "specs" / "humaneval" / "adaptive.yaml")
    spec = calibration_spec(base, probe_n=2, label_n=6)
    assert spec.strategy.kind == "best_of_n" and spec.strategy.n == 8
    assert spec.strategy.verifier is not None and spec.strategy.verifier.name == "code"
    assert spec.sampling.temperature == 0.8 and spec.sampling.max_tokens == 384
    assert spec.sampling.logprobs is True
    assert spec.prompt == base.prompt and spec.backend == base.backend
    bare = calibration_spec(None, probe_n=4, label_n=8)
    assert (bare.sampling.temperature, bare.sampling.max_tokens) == (0.7, 128)
    assert bare.strategy.verifier is None
    with pytest.raises(ConfigError, match="label_n must be >= 1"):
        calibration_spec(None, probe_n=4, label_n=0)


def test_the_calibration_spec_keeps_text_that_looks_like_a_variable(monkeypatch):
    monkeypatch.setenv("SYSTEM", "costs ${PRICE}")
    base = load_spec(
        {"prompt": {"system": "${SYSTEM}"}, "strategy": {"kind": "adaptive", "verifier": "code",
                                                          "estimator": "verifier"}}
    )  # fmt: skip
    assert base.prompt.system == "costs ${PRICE}"
    spec = calibration_spec(base, probe_n=2, label_n=4)
    assert spec.prompt.system == "costs ${PRICE}"
    assert spec.strategy.verifier.name == "code"

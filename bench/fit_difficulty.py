"""Fit the default difficulty thresholds on real data and measure how well each estimator
separates easy from hard prompts.

Data: reasoning-gym `basic_arithmetic`, additions of 2, 3 and 4 terms (levels 1-3), generated
with a fixed seed, on the embedded SmolLM2-135M. For each problem one `n=12` request: the first
`k=4` samples are the probe (exactly what `make_difficulty_node` draws by default, same prompt
and sampling); the other 8 estimate the problem's pass@1, so no probe sample is part of the
label it is judged against (counting them inflates the AUROC). Reports each estimator's AUROC
for "level 3 vs level 1" and for "pass@1 < 0.5", and the equal-mass thresholds of each score.
`tts-graph calibrate` does the same for any dataset and spec, with a held-out split. Usage:

    .venv/bin/python bench/fit_difficulty.py [--per-level 40] [--base-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import warnings
from pathlib import Path

from tts_graph import SamplingParams, VLLMBackend
from tts_graph.backends import GenerationRequest
from tts_graph.nodes.difficulty import ESTIMATORS, DifficultyBins, Probe, auroc
from tts_graph.prompts import question_prompt
from tts_graph.verifiers.answer import extract_answer

from embedded_server import serving

# Scored from the probe alone (the verifier estimator needs a verifier, absent here).
OFFLINE = {name: est for name, est in ESTIMATORS.items() if name != "verifier"}
K = 4
LABEL = 8
SAMPLES = K + LABEL


def problems(per_level: int) -> list[dict]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import reasoning_gym
    out = []
    for level, terms in enumerate((2, 3, 4), start=1):
        ds = reasoning_gym.create_dataset(
            "basic_arithmetic", min_terms=terms, max_terms=terms, min_digits=1, max_digits=2,
            operators=("+",), allow_parentheses=False, allow_negation=False,
            size=per_level, seed=1000 + level,
        )  # fmt: skip
        out += [{"level": level, "entry": e, "dataset": ds} for e in ds]
    return out


async def run(base_url: str, per_level: int) -> list[dict]:
    backend = VLLMBackend(base_url)
    params = SamplingParams(temperature=0.7, max_tokens=128, logprobs=True, seed=0)
    sem = asyncio.Semaphore(4)

    async def one(p: dict) -> dict:
        messages = question_prompt()({"question": p["entry"]["question"]})
        async with sem:
            gen = await backend.generate(
                GenerationRequest.chat(messages, n=SAMPLES, sampling=params)
            )
        answers = [extract_answer(c.text) for c in gen.completions]
        correct = [bool(a) and p["dataset"].score_answer(a, p["entry"]) == 1.0 for a in answers]
        probe = Probe(p["entry"]["question"], gen.completions[:K], tuple(answers[:K]))
        scores = {name: float(est(probe)) for name, est in OFFLINE.items()}  # type: ignore[arg-type]
        label = correct[K:]  # the probe's own samples are not part of the label
        return {"level": p["level"], "pass1": sum(label) / len(label), "scores": scores}

    rows = await asyncio.gather(*(one(p) for p in problems(per_level)))
    await backend.aclose()
    return list(rows)


def report(rows: list[dict]) -> None:
    print(f"{len(rows)} problems, k={K} probe samples, pass@1 from {LABEL} other samples each\n")
    for level in (1, 2, 3):
        sub = [r["pass1"] for r in rows if r["level"] == level]
        print(f"level {level}: mean pass@1 {statistics.mean(sub):.2f} over {len(sub)} problems")
    print(
        "\n| estimator | AUROC level 3 vs 1 | AUROC pass@1 < 0.5 | thresholds (easy/medium/hard) |"
    )
    print("|---|---|---|---|")
    extremes = [r for r in rows if r["level"] in (1, 3)]
    for name in OFFLINE:
        a1 = auroc([r["scores"][name] for r in extremes], [r["level"] == 3 for r in extremes])
        hard = [r["pass1"] < 0.5 for r in rows]
        a2 = (
            auroc([r["scores"][name] for r in rows], hard)
            if 0 < sum(hard) < len(rows)
            else float("nan")
        )
        bins = DifficultyBins.fit([r["scores"][name] for r in rows])
        print(
            f"| {name} | {a1:.2f} | {a2:.2f} | {', '.join(f'{t:.3f}' for t in bins.thresholds)} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-level", type=int, default=40)
    parser.add_argument("--base-url")
    parser.add_argument("--save", type=Path, help="write the per-problem rows as JSON")
    args = parser.parse_args()
    with serving(args.base_url) as base_url:
        rows = asyncio.run(run(base_url, args.per_level))
    if args.save:
        args.save.write_text(json.dumps(rows))
    report(rows)


if __name__ == "__main__":
    main()

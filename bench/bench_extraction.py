"""Answer extraction against hand labels on real model answers (CHAMP's one-sentence answers).

The labelled set, ``tests/data/champ_answers_labelled.jsonl``, holds answers drawn from the
19,440 conversations that ship in the PyPI package ``champ-dataset`` (1.0.0): in each, the
model's last message, its one-sentence summary of its own solution. The 261 conversations whose
summary is missing (the model ran out of length) are left out, which leaves 19,179. Sorted by
(problem id, conversation key) and drawn with ``random.Random(1729).sample(population, k)``:
the first 320 of the draw are the ``dev`` split, the next 100 ``holdout1``, the next 100
``holdout2`` (``sample`` with one seed gives the same prefix for every ``k``).

Each row's ``label`` is the final answer the text states, written by hand, or null when it
states none; ``also`` lists other spellings of the same answer; ``gold`` is the problem's
reference answer, for context only (a wrong answer is still labelled with what it says).

Usage::

    .venv/bin/python bench/bench_extraction.py                 # agreement and confusion
    .venv/bin/python bench/bench_extraction.py --show wrong    # list the disagreements
    .venv/bin/python bench/bench_extraction.py --extractor last_number
    .venv/bin/python bench/bench_extraction.py --check-draw    # needs champ-dataset installed
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tts_graph.verifiers import answer
from tts_graph.verifiers.math import math_equal

LABELLED = Path(__file__).resolve().parents[1] / "tests" / "data" / "champ_answers_labelled.jsonl"
SEED = 1729
SPLITS = (("dev", 320), ("holdout1", 100), ("holdout2", 100))
OUTCOMES = ("correct", "wrong", "missed", "correct none", "extra")
EXPLAINED = {
    "correct": "correct: label is an answer, extracted the same answer",
    "wrong": "wrong: label is an answer, extracted a different one",
    "missed": "none but should extract: label is an answer, extracted none",
    "correct none": "correct none: label is none, extracted none",
    "extra": "extracted but should be none: label is none, extracted an answer",
}


def draw(k: int) -> list[dict[str, Any]]:
    """The first ``k`` conversations of the seeded draw, with their last model message."""
    from importlib import resources

    data_file = resources.files("champ_dataset") / "dataset_files" / "v0.json"
    problems = json.loads(data_file.read_text(encoding="utf-8"))["problems"]
    population = []
    for problem_id, problem in problems.items():
        for key, conversation in problem["conversations"].items():
            text = conversation["messages"][-1]["text"]
            if text is not None:  # the summary is missing when the model ran out of length
                population.append((problem_id, key, text, problem["_answer"]))
    population.sort(key=lambda row: (row[0], row[1]))
    rows = []
    for i, (problem_id, key, text, gold) in enumerate(random.Random(SEED).sample(population, k)):
        model, prompt = key.split("|")
        rows.append(
            {"id": i, "problem": problem_id, "model": model, "prompt": prompt, "text": text}
            | {"gold": gold}
        )
    return rows


def outcome(extracted: str | None, row: dict[str, Any]) -> str:
    labels = [row["label"], *row.get("also", [])]
    if row["label"] is None:
        return "correct none" if extracted is None else "extra"
    if extracted is None:
        return "missed"
    if answer.normalize_answer(extracted) in {answer.normalize_answer(lab) for lab in labels}:
        return "correct"
    for label in labels:  # same answer, spelled apart ("\{1, 4\}" and "{1, 4}")
        try:
            if math_equal(label, extracted, timeout_s=5):
                return "correct"
        except TimeoutError:
            pass
    return "wrong"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--extractor", default="default", help="a registered extractor name")
    parser.add_argument("--show", choices=[*OUTCOMES, "errors"], help="list rows with this outcome")
    parser.add_argument(
        "--check-draw", action="store_true", help="redo the draw and compare it with the file"
    )
    args = parser.parse_args()
    rows = [json.loads(line) for line in LABELLED.read_text(encoding="utf-8").splitlines()]

    if args.check_draw:
        fresh = draw(sum(k for _, k in SPLITS))
        fields = ("id", "problem", "model", "prompt", "text", "gold")
        mismatched = [
            r["id"] for r, f in zip(rows, fresh, strict=True) if any(r[x] != f[x] for x in fields)
        ]
        print(f"{len(rows)} rows; {len(mismatched)} differ from the seeded draw {mismatched}")
        return 1 if mismatched else 0

    # Older checkouts have no registry: their extract_answer is the default.
    get = getattr(answer, "get_extractor", None)
    extract = get(args.extractor) if get is not None else answer.extract_answer
    started = time.perf_counter()
    extracted = [extract(row["text"]) for row in rows]
    per_answer_us = (time.perf_counter() - started) / len(rows) * 1e6
    outcomes = [outcome(e, row) for e, row in zip(extracted, rows, strict=True)]

    splits = [name for name, _ in SPLITS] + ["all"]
    counts = {
        name: Counter(
            o for o, row in zip(outcomes, rows, strict=True) if name in ("all", row["split"])
        )
        for name in splits
    }
    print(
        f"extractor {args.extractor!r}, {len(rows)} labelled answers, {per_answer_us:.0f} µs each\n"
    )
    print("| outcome | " + " | ".join(splits) + " |")
    print("|---|" + "---|" * len(splits))
    for name in OUTCOMES:
        print(f"| {EXPLAINED[name]} | " + " | ".join(str(counts[s][name]) for s in splits) + " |")
    agreement = [
        (counts[s]["correct"] + counts[s]["correct none"]) / sum(counts[s].values()) for s in splits
    ]
    print("| **agreement** | " + " | ".join(f"**{a:.3f}**" for a in agreement) + " |")

    if args.show:
        wanted = {"wrong", "missed", "extra"} if args.show == "errors" else {args.show}
        print()
        for o, e, row in zip(outcomes, extracted, rows, strict=True):
            if o in wanted:
                print(
                    f"[{row['id']} {o}] label={row['label']!r} extracted={e!r}\n    {row['text']}"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

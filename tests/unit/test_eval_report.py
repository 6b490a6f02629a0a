"""Reports from a synthetic run directory: report.md with the expected tables and values, the
figures beside it, errors listed, a half-written line skipped; and a comparison of runs."""

import json
import logging

import pytest

from tts_graph.eval.plots import (
    plot_accuracy_by_difficulty,
    plot_accuracy_by_thinking_cap,
    plot_accuracy_vs_compute,
    plot_coverage,
)
from tts_graph.eval.report import compare_runs, read_run, write_report

PNG = b"\x89PNG\r\n\x1a\n"
FAST = {"resamples": 200, "trials": 64}


def usage(total, flops):
    return {"prompt_tokens": 20, "completion_tokens": total - 20, "total_tokens": total,
            "calls": 1, "flops": flops, "wall_s": 1.5}  # fmt: skip


def math_record(i, outcomes, correct, *, bin_, cap):
    cands = [
        {"index": j, "text": f"The answer is {a}.", "answer": a, "score": 0.5, "confidence": 6.0,
         "passed_public": None, "correct": ok, "completion_tokens": 45}
        for j, (a, ok) in enumerate(outcomes)
    ]  # fmt: skip
    return {
        "id": f"m{i}", "dataset": "arith", "kind": "math", "question": "q", "gold": "4",
        "answer": "4" if correct else "5", "response": "...", "correct": correct,
        "public_passed": None, "strategy": "best_of_n",
        "difficulty": {"score": 0.5, "bin": bin_}, "candidates": cands,
        "decisions": [{"node": "force", "kind": "budget_forcing", "max_thinking_tokens": cap}],
        "usage": usage(200, 2.0e9), "wall_s": 1.5, "error": None,
    }  # fmt: skip


def write_run(root, records, *, name="best-of-4", kind="best_of_n", tail="", model=None):
    root.mkdir(parents=True, exist_ok=True)
    (root / "results.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in records) + tail, encoding="utf-8"
    )
    spec = {"strategy": {"kind": kind, "n": 4}, "backend": {"embedded": model} if model else {}}
    run = {"spec": spec, "spec_name": name, "dataset": "arith",
           "model": "qwen2.5-coder-0.5b", "started": 1767225600.0, "limit": len(records)}  # fmt: skip
    (root / "run.json").write_text(json.dumps(run), encoding="utf-8")
    return root


def records():
    right, wrong = ("4", True), ("5", False)
    return [
        # Candidates correct: 4, 2, 1, 0 of 4; pass@1 = (1 + .5 + .25 + 0) / 5 with the error.
        math_record(0, [right] * 4, True, bin_="easy", cap=128),
        math_record(1, [right, wrong, right, wrong], True, bin_="easy", cap=128),
        math_record(2, [right, wrong, wrong, wrong], False, bin_="hard", cap=512),
        math_record(3, [wrong] * 4, False, bin_="hard", cap=512),
        {"id": "m4", "dataset": "arith", "kind": "math", "question": "q", "gold": "4",
         "answer": None, "response": None, "correct": False, "candidates": [], "decisions": [],
         "usage": usage(20, 0.0) | {"completion_tokens": 0}, "wall_s": 0.2,
         "error": "BackendError: the engine died | see the log"},
    ]  # fmt: skip


def test_report_has_the_tables_and_the_figures(tmp_path, caplog):
    run = write_run(tmp_path / "run", records(), tail='{"id": "m5", "dataset": "ar')
    with caplog.at_level(logging.WARNING):
        path = write_report(run, **FAST)
    assert "half-written" in caplog.text
    assert path == run / "report.md"
    text = path.read_text(encoding="utf-8")

    assert text.startswith("# best-of-4\n")
    for line in ["- **dataset**: arith", "- **model**: qwen2.5-coder-0.5b",
                 "- **strategy**: best_of_n", "- **started**: 2026-01-01 00:00:00 UTC",
                 "- **problems**: 5"]:  # fmt: skip
        assert line in text
    # Accuracy: 2 of 5, the error counted wrong.
    assert "| 5 | 2 | 40.0 % |" in text
    assert "| tokens | 820 | 164 |" in text
    assert "| FLOPs | 8.000e+09 | 1.600e+09 |" in text
    # Coverage at k = 1, 2, 4, and majority vote at k = 1 equals pass@1.
    assert "| 1 | 35.0 % [" in text
    assert "| 2 | 46.7 % [" in text
    assert "| 4 | 60.0 % [" in text
    assert (
        "| k | coverage (pass@k) | majority | weighted | confidence-filtered | verifier | tokens |"
        in text
    )
    assert "Exponentiated power-law fit" in text and "a = " in text and "R² = " in text
    # Difficulty bins, easiest first; both easy problems right.
    assert "| easy | 2 | 2 | 100.0 % [100.0, 100.0] |" in text
    assert text.index("| easy |") < text.index("| hard |")
    # Thinking caps from the decisions.
    assert "## Thinking cap" in text
    assert "| 128 | 2 | 100.0 % [100.0, 100.0] |" in text
    assert "| 512 | 2 | 0.0 % [0.0, 0.0] |" in text
    # The failed problem is listed, its pipe escaped.
    assert "1 problem(s) failed" in text
    assert "| m4 | BackendError: the engine died \\| see the log |" in text
    assert "| m4 | error |" in text  # per-problem table
    assert "Verification gap" not in text  # no code problems

    for name in ["coverage.png", "accuracy_vs_tokens.png", "accuracy_by_difficulty.png",
                 "accuracy_by_thinking_cap.png"]:  # fmt: skip
        assert f"]({name})" in text
        assert (run / name).read_bytes().startswith(PNG)
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    assert summary["totals"]["accuracy"] == pytest.approx(0.4)
    assert [round(p["value"], 4) for p in summary["coverage"]["points"]] == [0.35, 0.4667, 0.6]


def code_record(i, public, hidden, cand_pairs):
    cands = [
        {"index": j, "text": f"def f():\n    return {j}\n", "answer": None, "score": None,
         "confidence": None, "passed_public": p, "correct": h, "completion_tokens": 30}
        for j, (p, h) in enumerate(cand_pairs)
    ]  # fmt: skip
    return {"id": f"HumanEval/{i}", "dataset": "humaneval", "kind": "code", "question": "q",
            "gold": "", "answer": "", "response": "", "correct": hidden, "public_passed": public,
            "strategy": "best_of_n", "difficulty": None, "candidates": cands, "decisions": [],
            "usage": usage(100, 0.0), "wall_s": 2.0, "error": None}  # fmt: skip


def test_report_of_code_shows_the_verification_gap(tmp_path):
    recs = [
        code_record(0, True, True, [(True, True), (False, False)]),
        code_record(1, True, False, [(True, False), (True, False)]),
        code_record(2, False, False, [(False, False), (False, True)]),
    ]
    text = write_report(write_run(tmp_path / "code", recs, name="code-run"), **FAST).read_text(
        encoding="utf-8"
    )
    assert "## Verification gap (code)" in text
    # Chosen: public 2/3, hidden 1/3, one false pass of two public passes.
    assert "| chosen answers | 3 | 66.7 % [" in text
    assert "| 33.3 % [" in text and "+33.3 pts" in text
    assert "| all candidates | 6 | 50.0 % | 33.3 % | +16.7 pts | 2 | 66.7 % | 1 |" in text
    assert "FLOPs unknown" in text
    assert "## Problems with an error\n\nNone." in text
    assert not (tmp_path / "code" / "accuracy_by_difficulty.png").exists()


def test_compare_runs_overlays_the_runs(tmp_path):
    a = write_run(tmp_path / "a", records(), name="best-of-4")
    b = write_run(tmp_path / "b", records()[:2], name="adaptive", kind="adaptive")
    c = write_run(tmp_path / "c", records()[2:4], name="best-of-4")  # same spec name as a
    path = compare_runs([a, b, c], tmp_path / "cmp", **FAST)
    text = path.read_text(encoding="utf-8")
    assert path == tmp_path / "cmp" / "comparison.md"
    assert "| best-of-4 (a) | best_of_n | 5 | 40.0 % [" in text
    assert "| adaptive | adaptive | 2 | 100.0 % [100.0, 100.0] |" in text
    assert "| best-of-4 (c) | best_of_n | 2 | 0.0 % [0.0, 0.0] |" in text
    assert "| best-of-4 (a) | m4 | BackendError" in text
    for name in ["accuracy_vs_tokens.png", "coverage.png", "accuracy_vs_flops.png",
                 "accuracy_by_thinking_cap.png"]:  # fmt: skip
        assert f"]({name})" in text
        assert (tmp_path / "cmp" / name).read_bytes().startswith(PNG)
    # Two runs of best_of_n: accuracy against tokens across them, which here turns over.
    assert "## Scaling across runs" in text
    assert (
        "| best_of_n | 2 | 40.0 % @ 164 → 0.0 % @ 200 | none | peak 40.0 % at 164 tok, "
        "down to 0.0 % at 200 tok |"
    ) in text
    with pytest.raises(ValueError, match="at least one"):
        compare_runs([], tmp_path / "none")


def test_runs_of_one_strategy_on_two_models_are_not_joined(tmp_path):
    big = write_run(tmp_path / "big", records(), name="big-1", model="qwen2.5-coder-0.5b")
    small = write_run(tmp_path / "small", records()[:2], name="small-16", model="smollm2-135m")
    text = compare_runs([big, small], tmp_path / "cmp", **FAST).read_text(encoding="utf-8")
    assert "| big-1 | best_of_n (qwen2.5-coder-0.5b) | 5 |" in text
    assert "| small-16 | best_of_n (smollm2-135m) | 2 |" in text
    assert "## Scaling across runs" not in text  # no strategy has two runs of one model


def test_figures_with_nothing_to_draw_are_not_written(tmp_path):
    empty = {"coverage": {"points": []}, "totals": {"mean_flops": None, "accuracy": 0.5},
             "compute": {}, "by_difficulty": []}  # fmt: skip
    assert plot_coverage({"run": empty}, tmp_path / "c.png") is None
    assert plot_accuracy_vs_compute({"run": empty}, tmp_path / "f.png", compute="flops") is None
    assert plot_accuracy_by_difficulty(empty, tmp_path / "d.png") is None
    assert plot_accuracy_by_thinking_cap({"run": []}, tmp_path / "t.png") is None
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="compute"):
        plot_accuracy_vs_compute({"run": empty}, tmp_path / "x.png", compute="seconds")


def test_read_run_needs_results(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"results\.jsonl"):
        read_run(tmp_path)
    (tmp_path / "results.jsonl").write_text("\n", encoding="utf-8")
    assert read_run(tmp_path) == ({}, [])


def test_the_comparison_table_fits_80_columns_and_cuts_no_value(tmp_path, capsys, monkeypatch):
    from tts_graph.cli.evaluate import _print_comparison

    monkeypatch.delenv("COLUMNS", raising=False)
    a = write_run(tmp_path / "a", records(), name="single-pass")
    b = write_run(tmp_path / "b", records(), name="best-of-8")
    _print_comparison([a, b])
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "accuracy against compute on 5 problems"  # the same count: said once
    assert max(len(line) for line in lines) <= 80 and "…" not in out
    (row,) = [line for line in lines if "best-of-8" in line]
    assert [cell.strip() for cell in row.split("│")[1:-1]] == [
        "best-of-8", "40%", read_ci(a), "-", "720", "144", "0 s"
    ]  # fmt: skip
    # A long name widens the table rather than cut a header or a value.
    long = write_run(tmp_path / "long", records(), name="best-of-8-verified-by-the-docstrings")
    _print_comparison([a, long])
    out = capsys.readouterr().out
    assert "…" not in out and "best-of-8-verified-by-the-docstrings" in out
    c = write_run(tmp_path / "c", records()[:2], name="adaptive")
    _print_comparison([a, c])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "accuracy against compute"  # counts differ: a column says them
    (row,) = [line for line in lines if "adaptive" in line]
    assert row.split("│")[2].strip() == "2"


def read_ci(run):
    from tts_graph.eval.metrics import totals

    low, high = totals(read_run(run)[1])["ci"]
    return f"{low:.0%}-{high:.0%}"

"""Reports of evaluation runs: ``report.md`` with its figures beside it, and comparisons.

A run directory holds ``run.json`` (what ran: the spec, its name, the dataset, the model) and
``results.jsonl`` (one record per problem). :func:`write_report` turns one directory into
``report.md``, the PNG figures it shows and ``summary.json`` (every number, for other tools);
:func:`compare_runs` overlays several runs in ``comparison.md``.

>>> write_report("runs/gsm-best-of-16")  # doctest: +SKIP
PosixPath('runs/gsm-best-of-16/report.md')
>>> compare_runs(["runs/vote", "runs/adaptive"], "runs/compare")  # doctest: +SKIP
PosixPath('runs/compare/comparison.md')
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tts_graph.eval.metrics import find_knee, find_turnover, summarize

__all__ = ["RESULTS", "RUN", "compare_runs", "read_run", "write_report"]

logger = logging.getLogger(__name__)

RESULTS = "results.jsonl"
RUN = "run.json"
REPORT = "report.md"
COMPARISON = "comparison.md"

_SELECTOR_TITLES = {
    "majority": "majority",
    "weighted": "weighted",
    "confidence": "confidence-filtered",
    "verifier": "verifier",
}


def read_run(run_dir: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``run.json`` (``{}`` when missing) and the records of ``results.jsonl``.

    A line that does not parse (the last one, half-written when a run was killed) is skipped
    with a warning: the run's other problems still make a report.

    >>> run, records = read_run("runs/gsm-best-of-16")  # doctest: +SKIP
    >>> run["spec_name"], len(records)  # doctest: +SKIP
    ('gsm-best-of-16', 200)
    """
    root = Path(run_dir)
    results = root / RESULTS
    if not results.exists():
        raise FileNotFoundError(f"{results} does not exist: is {root} an evaluation run?")
    run_path = root / RUN
    run: dict[str, Any] = {}
    if run_path.exists():
        loaded = json.loads(run_path.read_text(encoding="utf-8"))
        run = loaded if isinstance(loaded, dict) else {}
    records = []
    for number, line in enumerate(results.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            logger.warning(
                "skipping line %d of %s: not JSON (a half-written line?)", number, results
            )
            continue
        if isinstance(record, dict):
            records.append(record)
    return run, records


# ---------------------------------------------------------------------------------------------
# Formatting


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _ci(ci: Sequence[float] | None) -> str:
    return "–" if not ci else f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _acc(value: float | None, ci: Sequence[float] | None) -> str:
    return _pct(value) if not ci else f"{_pct(value)} {_ci(ci)}"


def _int(value: float | None) -> str:
    return "–" if value is None else f"{round(value):,}"


def _num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "–"
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-3):
        return f"{value:.{digits}e}"
    return f"{value:.{digits}g}"


def _cell(value: Any) -> str:
    """A table cell: pipes escaped, line breaks flattened."""
    text = "–" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _started(value: Any) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return None if value is None else str(value)


def _strategy(run: Mapping[str, Any], records: Sequence[Mapping[str, Any]]) -> str | None:
    spec = run.get("spec")
    if isinstance(spec, Mapping):
        strategy = spec.get("strategy")
        if isinstance(strategy, Mapping) and strategy.get("kind"):
            return str(strategy["kind"])
    named = Counter(str(r["strategy"]) for r in records if r.get("strategy"))
    return named.most_common(1)[0][0] if named else None


def _model(run: Mapping[str, Any]) -> str | None:
    """The model a run used, as its spec names it (the served name, else the embedded one)."""
    spec = run.get("spec")
    backend = spec.get("backend") if isinstance(spec, Mapping) else None
    if isinstance(backend, Mapping):
        name = backend.get("model") or backend.get("embedded")
        return str(name) if name else None
    return None


def _label(run: Mapping[str, Any], run_dir: Path) -> str:
    return str(run.get("spec_name") or run_dir.name)


def _option(run: Mapping[str, Any], key: str) -> Any:
    if run.get(key) is not None:
        return run[key]
    options = run.get("options")
    return options.get(key) if isinstance(options, Mapping) else None


# ---------------------------------------------------------------------------------------------
# One run


def _group_table(title: str, rows: Sequence[Mapping[str, Any]], name: str) -> list[str]:
    if len(rows) < 2 and title != "difficulty":
        return []
    out = [f"### By {title}", ""]
    out += _table(
        [name, "problems", "correct", "accuracy [95 % CI]", "errors", "mean tokens", "mean FLOPs"],
        [
            [
                r["group"],
                r["problems"],
                r["correct"],
                _acc(r["accuracy"], r["ci"]),
                r["errors"],
                _int(r["mean_tokens"]),
                _num(r["mean_flops"]),
            ]
            for r in rows
        ],
    )
    return out


def _coverage_section(summary: Mapping[str, Any], level: float) -> list[str]:
    points = summary["coverage"]["points"]
    if not points:
        return [
            "## Coverage and selection",
            "",
            "No problem has candidates: coverage and selectors cannot be measured.",
            "",
        ]
    samples = summary["samples"]
    settings = summary["settings"]
    selectors = summary["selectors"]
    compute = summary["compute"].get("all", {}).get("points", [])
    tokens = {p["k"]: p["tokens"] for p in compute}
    out = [
        "## Coverage and selection",
        "",
        f"Candidates per problem: {samples['min']}–{samples['max']} (mean {samples['mean']:.1f}). "
        "Coverage is the mean unbiased pass@k; each selector's accuracy at k is its expected "
        "accuracy over subsets of k of a problem's candidates (all subsets when there are at "
        f"most {settings['trials']} or n, else {settings['trials']} seeded random ones; ties count "
        f"as a uniform random tie-break). Intervals: {100 * level:.0f} % percentile bootstrap "
        f"over problems ({settings['resamples']} resamples, seed {settings['seed']}). Tokens: "
        "the estimated mean tokens per problem for k samples in one request.",
        "",
    ]
    header = ["k", "coverage (pass@k)"] + [
        f"{_SELECTOR_TITLES.get(name, name)}" for name in selectors
    ]
    rows = []
    for i, p in enumerate(points):
        row: list[Any] = [p["k"], _acc(p["value"], p["ci"])]
        row += [_acc(curve[i]["value"], curve[i]["ci"]) for curve in selectors.values()]
        rows.append([*row, _int(tokens.get(p["k"]))])
    out += _table([*header, "tokens"], rows)
    if "confidence" in selectors:
        out += [
            f"Confidence-filtered: the candidates at or above the "
            f"{1 - settings['keep_top']:.2g} quantile of the subset's confidences, "
            "confidence-weighted.",
            "",
        ]
    fit = summary["coverage"].get("fit")
    if fit:
        out += [
            f"Exponentiated power-law fit (Brown et al. 2024): coverage(k) ≈ exp(a·k^b) with "
            f"**a = {fit['a']:.4g}, b = {fit['b']:.4g}**, fitted by least squares on "
            f"log(−log coverage) against log k: R² = {fit['r2']:.4f} there, largest "
            f"|fitted − measured| coverage = {fit['max_abs_error']:.4f}, on {fit['points']} points"
            + (
                f" (left out at coverage 0 or 1: k = {', '.join(map(str, fit['excluded']))})"
                if fit["excluded"]
                else ""
            )
            + ".",
            "",
        ]
    else:
        out += [
            "No power-law fit: fewer than two values of k have a coverage strictly between "
            "0 and 1.",
            "",
        ]
    return out


def _compute_section(summary: Mapping[str, Any]) -> list[str]:
    curves = summary["compute"]
    if not curves or not any(c["points"] for c in curves.values()):
        return []
    out = [
        "## Accuracy against compute",
        "",
        "Majority-vote accuracy with k samples against their estimated tokens per problem, per "
        "task class; the knee (Kneedle) is where more samples start to buy little, the "
        "turn-over where accuracy falls as compute rises.",
        "",
    ]
    rows = []
    for name, curve in curves.items():
        knee, turn = curve.get("knee"), curve.get("turnover")
        first, last = curve["points"][0], curve["points"][-1]
        rows.append(
            [
                name,
                f"{_pct(first['accuracy'])} → {_pct(last['accuracy'])}",
                f"{_int(first['tokens'])} → {_int(last['tokens'])}",
                "none"
                if not knee
                else f"k = {knee['k']}: {_int(knee['x'])} tok, {_pct(knee['y'])}",
                "none"
                if not turn
                else f"peak {_pct(turn['y_peak'])} at {_int(turn['x_peak'])} tok, "
                f"down to {_pct(turn['y_low'])} at {_int(turn['x_low'])} tok",
            ]
        )
    out += _table(["class", "accuracy (k = min → max)", "tokens", "knee", "turn-over"], rows)
    return out


def _gap_section(gap: Mapping[str, Any] | None) -> list[str]:
    if not gap:
        return []
    out = [
        "## Verification gap (code)",
        "",
        "Public tests are what the graph's verifier ran; hidden tests decide correctness.",
        "",
    ]
    rows = []
    if gap.get("public") is not None:
        rows.append(
            [
                "chosen answers",
                gap["n"],
                _acc(gap["public"], gap.get("public_ci")),
                _acc(gap["hidden"], gap.get("hidden_ci")),
                f"{100 * gap['gap']:+.1f} pts {_ci(gap.get('gap_ci'))}",
                gap["false_pass"],
                _pct(gap["false_pass_rate"]),
                gap["missed"],
            ]
        )
    c = gap["candidates"]
    if c["n"]:
        rows.append(
            [
                "all candidates",
                c["n"],
                _pct(c["public_passes"] / c["n"]),
                _pct(c["hidden_passes"] / c["n"]),
                f"{100 * (c['public_passes'] - c['hidden_passes']) / c['n']:+.1f} pts",
                c["false_pass"],
                _pct(c["false_pass_rate"]),
                c["missed"],
            ]
        )
    out += _table(
        [
            "",
            "n",
            "public pass",
            "hidden pass",
            "gap",
            "public pass, hidden fail",
            "of public passes",
            "public fail, hidden pass",
        ],
        rows,
    )
    return out


def _errors_section(errors: Sequence[Mapping[str, Any]]) -> list[str]:
    out = ["## Problems with an error", ""]
    if not errors:
        return [*out, "None.", ""]
    out += [f"{len(errors)} problem(s) failed; each counts as wrong everywhere above.", ""]
    out += _table(["id", "error"], [[e["id"], e["error"]] for e in errors])
    return out


def _per_problem_section(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    table = _table(
        ["id", "correct", "strategy", "bin", "candidates (correct)", "tokens", "FLOPs", "wall s"],
        [
            [
                r["id"],
                "error" if r["error"] is not None else ("yes" if r["correct"] else "no"),
                r["strategy"],
                r["bin"],
                f"{r['candidates']} ({r['correct_candidates']})",
                _int(r["tokens"]),
                _num(r["flops"] or None),
                f"{r['wall_s']:.2f}",
            ]
            for r in rows
        ],
    )
    return [
        "## Per problem",
        "",
        "<details><summary>One row per problem</summary>",
        "",
        *table,
        "</details>",
        "",
    ]


def _image(lines: list[str], path: Path | None, alt: str) -> None:
    if path is not None:
        lines += [f"![{alt}]({path.name})", ""]


def write_report(run_dir: str | Path, **options: Any) -> Path:
    """Write ``run_dir/report.md`` from ``run_dir``'s ``results.jsonl`` and ``run.json``, with
    the figures (``coverage.png``, ``accuracy_vs_tokens.png``, ``accuracy_by_difficulty.png``,
    ``accuracy_by_thinking_cap.png``, those that have data) and ``summary.json`` beside it.

    ``options`` go to :func:`~tts_graph.eval.metrics.summarize` (``ks``, ``trials``, ``seed``,
    ``resamples``, ``level``, ``keep_top``, ``class_key``). Returns the report's path.

    >>> write_report("runs/gsm-best-of-16", resamples=5000)  # doctest: +SKIP
    PosixPath('runs/gsm-best-of-16/report.md')
    """
    from tts_graph.eval import plots  # matplotlib is needed only when figures are drawn

    root = Path(run_dir)
    run, records = read_run(root)
    summary = summarize(records, **options)
    (root / "summary.json").write_text(json.dumps(summary, indent=1, default=str), "utf-8")
    label = _label(run, root)
    strategy = _strategy(run, records)
    level = float(summary["settings"]["level"])
    totals = summary["totals"]

    lines = [f"# {label}", ""]
    datasets = ", ".join(sorted({str(r["dataset"]) for r in records if r.get("dataset")}))
    about = [
        ("dataset", run.get("dataset") or datasets or None),
        ("model", _option(run, "model")),
        ("strategy", strategy),
        ("started", _started(run.get("started"))),
        ("limit", _option(run, "limit")),
        ("problems", totals["problems"]),
    ]  # fmt: skip
    lines += [f"- **{k}**: {v}" for k, v in about if v is not None]
    lines.append("")

    lines += ["## Accuracy", ""]
    lines += _table(
        ["problems", "correct", "accuracy", f"{100 * level:.0f} % CI", "errors"],
        [[totals["problems"], totals["correct"], _pct(totals["accuracy"]), _ci(totals["ci"]),
          totals["errors"]]],
    )  # fmt: skip
    lines += ["## Compute", ""]
    lines += _table(
        ["", "total", "per problem"],
        [
            ["tokens", _int(totals["total_tokens"]), _int(totals["mean_tokens"])],
            ["prompt tokens", _int(totals["prompt_tokens"]), _int(_per(totals, "prompt_tokens"))],
            ["completion tokens", _int(totals["completion_tokens"]),
             _int(_per(totals, "completion_tokens"))],
            ["calls", _int(totals["calls"]), _num(_per(totals, "calls"))],
            ["FLOPs", _num(totals["flops"]), _num(totals["mean_flops"])],
            ["wall seconds", f"{totals['wall_s']:.1f}", _num(_per(totals, "wall_s"))],
        ],
    )  # fmt: skip
    if totals["flops"] is None:
        lines += ["FLOPs unknown: the run did not know the model's parameter count.", ""]
    lines += _group_table("dataset", summary["by_dataset"], "dataset")
    lines += _group_table("kind", summary["by_kind"], "kind")
    lines += _group_table("strategy", summary["by_strategy"], "strategy")
    if summary["by_difficulty"]:
        lines += _group_table("difficulty", summary["by_difficulty"], "bin")
        _image(
            lines,
            plots.plot_accuracy_by_difficulty(summary, root / "accuracy_by_difficulty.png"),
            "accuracy by difficulty",
        )

    lines += _coverage_section(summary, level)
    _image(lines, plots.plot_coverage({label: summary}, root / "coverage.png"), "coverage")
    lines += _compute_section(summary)
    _image(
        lines,
        plots.plot_accuracy_vs_compute(
            {label: summary}, root / "accuracy_vs_tokens.png", strategies={label: strategy or label}
        ),
        "accuracy against tokens",
    )
    caps = summary["by_thinking_cap"]
    if caps:
        lines += ["## Thinking cap", ""]
        lines += _table(
            ["cap", "problems", f"accuracy [{100 * level:.0f} % CI]", "mean tokens"],
            [[r["cap"], r["problems"], _acc(r["accuracy"], r["ci"]), _int(r["mean_tokens"])]
             for r in caps],
        )  # fmt: skip
        _image(
            lines,
            plots.plot_accuracy_by_thinking_cap(
                {strategy or label: caps}, root / "accuracy_by_thinking_cap.png"
            ),
            "accuracy against thinking cap",
        )
    lines += _gap_section(summary["verification_gap"])
    lines += _errors_section(summary["errors"])
    lines += _per_problem_section(summary["per_problem"])

    out = root / REPORT
    out.write_text("\n".join(lines), encoding="utf-8")
    return out


def _per(totals: Mapping[str, Any], key: str) -> float | None:
    return totals[key] / totals["problems"] if totals["problems"] else None


# ---------------------------------------------------------------------------------------------
# Several runs


def _across_runs(
    summaries: Mapping[str, Mapping[str, Any]], strategies: Mapping[str, str]
) -> list[str]:
    """Per strategy with several runs (a budget or sample-count sweep): accuracy against mean
    tokens per problem across its runs, with the knee and the turn-over."""
    groups: dict[str, list[tuple[float, float]]] = {}
    for label, s in summaries.items():
        t = s["totals"]
        if t["mean_tokens"] is not None and t["accuracy"] is not None:
            groups.setdefault(strategies[label], []).append((t["mean_tokens"], t["accuracy"]))
    rows = []
    for strategy, points in groups.items():
        if len(points) < 2:
            continue
        points.sort()
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        knee, turn = find_knee(xs, ys), find_turnover(xs, ys)
        rows.append(
            [
                strategy,
                len(points),
                " → ".join(f"{_pct(y)} @ {_int(x)}" for x, y in points),
                "none" if knee is None else f"{_int(knee.x)} tok, {_pct(knee.y)}",
                "none"
                if turn is None
                else f"peak {_pct(turn['y_peak'])} at {_int(turn['x_peak'])} tok, "
                f"down to {_pct(turn['y_low'])} at {_int(turn['x_low'])} tok",
            ]
        )
    if not rows:
        return []
    return [
        "## Scaling across runs",
        "",
        *_table(["strategy", "runs", "accuracy @ tokens per problem", "knee", "turn-over"], rows),
    ]


def compare_runs(dirs: Sequence[str | Path], out_dir: str | Path, **options: Any) -> Path:
    """Overlay several runs: ``out_dir/comparison.md`` with one row per run (accuracy with its
    interval, tokens and FLOPs per problem, coverage at the largest common ``k``, knee, errors)
    and the figures ``accuracy_vs_tokens.png`` (runs of one strategy joined),
    ``accuracy_vs_flops.png`` (when every run knew its FLOPs), ``coverage.png`` and
    ``accuracy_by_thinking_cap.png`` (when runs carry caps). Runs are labelled by spec name,
    made unique with their directory name. ``options`` go to
    :func:`~tts_graph.eval.metrics.summarize`. Returns the comparison's path.

    >>> compare_runs(["runs/n4", "runs/n16", "runs/adaptive"], "runs/compare")  # doctest: +SKIP
    PosixPath('runs/compare/comparison.md')
    """
    from tts_graph.eval import plots

    if not dirs:
        raise ValueError("compare_runs needs at least one run directory")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    loaded = []
    for d in dirs:
        run, records = read_run(d)
        loaded.append((Path(d), run, records))
    names = [_label(run, d) for d, run, _ in loaded]
    repeated = {n for n in names if names.count(n) > 1}
    summaries: dict[str, dict[str, Any]] = {}
    strategies: dict[str, str] = {}
    sources: dict[str, Path] = {}
    for (d, run, records), name in zip(loaded, names, strict=True):
        label = f"{name} ({d.name})" if name in repeated else name
        if label in summaries:  # same spec name and same folder name under different parents
            label = f"{label} [{len(summaries)}]"
        summaries[label] = summarize(records, **options)
        strategies[label] = _strategy(run, records) or label
        sources[label] = d
    # Runs of one strategy are joined into a curve; across models that would join points that
    # are not one sweep, so when the runs used several models, each model's are their own.
    models = {label: _model(run) for (_, run, _), label in zip(loaded, summaries, strict=True)}
    if len(set(models.values())) > 1:
        strategies = {
            label: f"{strategy} ({models[label] or 'model not named'})"
            for label, strategy in strategies.items()
        }

    lines = ["# Comparison of runs", ""]
    level = next(iter(summaries.values()))["settings"]["level"]
    rows = []
    for label, s in summaries.items():
        t = s["totals"]
        cov = s["coverage"]["points"]
        knee = s["compute"].get("all", {}).get("knee")
        rows.append(
            [
                label,
                strategies[label],
                t["problems"],
                _acc(t["accuracy"], t["ci"]),
                _int(t["mean_tokens"]),
                _num(t["mean_flops"]),
                "–" if not cov else f"{_pct(cov[-1]['value'])} (k = {cov[-1]['k']})",
                "–" if not knee else f"k = {knee['k']}",
                t["errors"],
                sources[label],
            ]
        )
    lines += _table(
        [
            "run",
            "strategy",
            "problems",
            f"accuracy [{100 * level:.0f} % CI]",
            "tokens / problem",
            "FLOPs / problem",
            "coverage at max k",
            "knee",
            "errors",
            "directory",
        ],
        rows,
    )
    lines += _across_runs(summaries, strategies)
    _image(
        lines,
        plots.plot_accuracy_vs_compute(
            summaries, out / "accuracy_vs_tokens.png", strategies=strategies
        ),
        "accuracy against tokens",
    )
    if all(s["totals"]["mean_flops"] is not None for s in summaries.values()):
        _image(
            lines,
            plots.plot_accuracy_vs_compute(
                summaries, out / "accuracy_vs_flops.png", strategies=strategies, compute="flops"
            ),
            "accuracy against FLOPs",
        )
    _image(lines, plots.plot_coverage(summaries, out / "coverage.png"), "coverage")
    caps: dict[str, list[dict[str, Any]]] = {}
    for label, s in summaries.items():
        caps.setdefault(strategies[label], []).extend(s["by_thinking_cap"])
    if any(caps.values()):
        lines += ["## Thinking cap", ""]
        lines += _table(
            ["strategy", "cap", "problems", f"accuracy [{100 * level:.0f} % CI]", "mean tokens"],
            [[name, r["cap"], r["problems"], _acc(r["accuracy"], r["ci"]), _int(r["mean_tokens"])]
             for name, rs in caps.items() for r in sorted(rs, key=lambda r: r["cap"])],
        )  # fmt: skip
        _image(
            lines,
            plots.plot_accuracy_by_thinking_cap(caps, out / "accuracy_by_thinking_cap.png"),
            "accuracy against thinking cap",
        )
    failed = [(label, e) for label, s in summaries.items() for e in s["errors"]]
    lines += ["## Problems with an error", ""]
    if failed:
        lines += _table(["run", "id", "error"], [[lab, e["id"], e["error"]] for lab, e in failed])
    else:
        lines += ["None.", ""]
    path = out / COMPARISON
    path.write_text("\n".join(lines), encoding="utf-8")
    return path

"""``tts-graph calibrate``: fit the adaptive router's thresholds and a budget per bin on a
dataset, and report how well each difficulty estimator ranks the measured pass rate on held-out
problems (:mod:`tts_graph.eval.calibrate`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from tts_graph.cli import _err, _errors_as_one_line, _fail, app
from tts_graph.cli.evaluate import run_specs
from tts_graph.cli.options import (
    BaseUrl,
    Concurrency,
    Dataset,
    DatasetOptions,
    DatasetSeed,
    Limit,
    RetryFor,
    Verbose,
    parse_dataset_options,
)
from tts_graph.errors import MAX_SAMPLES

if TYPE_CHECKING:
    from tts_graph.eval.calibrate import Calibration

__all__ = ["calibrate"]


@app.command()
def calibrate(
    dataset: Dataset,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="The thresholds' JSON file; the samples go to a folder beside it "
            "(OUT without .json, plus .samples), from which an interrupted run resumes.",
        ),
    ],
    dataset_option: DatasetOptions = None,
    spec: Annotated[
        Path | None,
        typer.Option(
            help="An adaptive spec to calibrate: its prompt, sampling, probe_n, estimator, "
            "labels and verifier are used unless given here."
        ),
    ] = None,
    probe_n: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_SAMPLES, help="Probe samples per problem (spec's, else 4)."),
    ] = None,
    label_n: Annotated[
        int,
        typer.Option(
            min=1, max=MAX_SAMPLES, help="Further samples per problem whose pass rate is the label."
        ),
    ] = 8,
    estimator: Annotated[
        str | None,
        typer.Option(help="The estimator to fit thresholds for (spec's, else agreement)."),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(help="Bin labels, comma-separated (spec's, else easy,medium,hard)."),
    ] = None,
    verifier: Annotated[
        str | None,
        typer.Option(help="Check every sample (e.g. code), for the verifier estimator."),
    ] = None,
    holdout: Annotated[
        float, typer.Option(min=0.05, max=0.95, help="Share of problems held out.")
    ] = 0.5,
    limit: Limit = None,
    concurrency: Concurrency = 4,
    seed: DatasetSeed = 0,
    base_url: BaseUrl = None,
    retry_for: RetryFor = None,
    verbose: Verbose = False,
) -> None:
    """Fit the router's thresholds and a budget per difficulty bin on DATASET.

    Each problem gets probe samples, which every estimator scores, and label samples of its
    own, whose pass rate on the hidden answer or tests is the label: the probe's samples never
    count toward it. Thresholds and budgets are fitted on part of the problems; AUROC and
    Spearman on the rest say how well each estimator ranks difficulty. Prints a table, writes
    OUT and prints its path.
    """
    if out.suffix != ".json":
        _fail(f"--out names the thresholds' JSON file, e.g. thresholds.json; got {out}")
    with _errors_as_one_line():
        from tts_graph.cli import _load_spec
        from tts_graph.eval.calibrate import calibration_spec
        from tts_graph.eval.datasets import load_dataset
        from tts_graph.nodes.difficulty import DEFAULT_BINS
        from tts_graph.spec.models import AdaptiveSpec

        base = None if spec is None else _load_spec(spec, n=None, select=None, verifier=None,
                                                      url=None)  # fmt: skip
        adaptive = base.strategy if base and isinstance(base.strategy, AdaptiveSpec) else None
        if base is not None and adaptive is None:
            _fail(f"{spec} is a {base.strategy.kind} spec; calibrate an adaptive one")
        probe = probe_n or (adaptive.probe_n if adaptive else 4)
        fit_for = estimator or (adaptive.estimator if adaptive else "agreement")
        bin_labels = (
            [label.strip() for label in labels.split(",") if label.strip()] if labels
            else list(adaptive.labels if adaptive else DEFAULT_BINS.labels)
        )  # fmt: skip
        sampling_spec = calibration_spec(base, probe_n=probe, label_n=label_n, verifier=verifier)
        dataset_options = parse_dataset_options(dataset_option)
        problems = load_dataset(dataset, limit=limit, seed=seed, **dataset_options)
        samples = out.with_suffix(".samples")
    run_specs(
        "calibrate", [sampling_spec], [samples], problems, dataset=dataset, base_url=base_url,
        embedded=sampling_spec.backend.embedded, concurrency=concurrency, limit=limit, seed=seed,
        verbose=verbose, dataset_options=dataset_options, retry_for_s=retry_for,
    )  # fmt: skip
    with _errors_as_one_line():
        from tts_graph.eval.calibrate import fit_calibration
        from tts_graph.eval.harness import read_results

        ids = {p.id for p in problems}
        records = [r for r in read_results(samples) if r["id"] in ids]
        calibration = fit_calibration(
            records, probe_n=probe, estimator=fit_for, labels=bin_labels, holdout=holdout,
            seed=seed,
        )  # fmt: skip
        result = {"dataset": dataset, "spec": None if spec is None else str(spec),
                  **({"dataset_options": dataset_options} if dataset_options else {}),
                  **calibration.to_dict()}  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    _print_calibration(calibration)
    typer.echo(str(out))


def _print_calibration(calibration: Calibration) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    bins = Table(
        title=f"{calibration.estimator} thresholds {list(calibration.thresholds)}, fitted on "
        f"{calibration.fit_problems} problems",
        title_justify="left",
    )
    for header in ("bin", "problems", "pass rate", "coverage@1",
                   f"coverage@{calibration.label_n}", "budget n"):  # fmt: skip
        bins.add_column(header, justify="left" if header == "bin" else "right")
    for label, b in calibration.budget.items():
        bins.add_row(label, str(b["problems"]), _share(b["pass_rate"]),
                     _share(b["coverage_at_1"]), _share(b["coverage_at_max"]),
                     "-" if b["n"] is None else str(b["n"]))  # fmt: skip
    console.print(bins)
    ranking = Table(
        title=f"how well each estimator ranks difficulty on {calibration.heldout_problems} "
        "held-out problems",
        title_justify="left",
    )
    for header in ("estimator", "AUROC (pass rate < 0.5)", "Spearman"):
        ranking.add_column(header, justify="left" if header == "estimator" else "right")
    for name, m in calibration.heldout.items():
        ranking.add_row(name, _number(m["auroc"]), _number(m["spearman"]))
    console.print(ranking)
    if calibration.skipped:
        _err().print(f"{calibration.skipped} problems left out (failed, or too few samples)")


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"

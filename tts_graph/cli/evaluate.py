"""``tts-graph eval``: a spec over a dataset, with live accuracy and tokens, a result per problem
as it finishes, a resume after Ctrl-C, and a report with plots at the end."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tts_graph import cli as _cli
from tts_graph.cli import (
    _err,
    _errors_as_one_line,
    _fail,
    _run_log,
    _start_server,
    _stop_server,
    app,
    stop_on_signals,
)
from tts_graph.cli.options import (
    BaseUrl,
    Concurrency,
    DatasetOptions,
    DatasetSeed,
    Limit,
    OptionalDataset,
    RetryFor,
    Verbose,
    dataset_run_options,
    parse_dataset_options,
)

if TYPE_CHECKING:
    from tts_graph.eval.harness import EvalProgress
    from tts_graph.spec.models import Spec

__all__ = ["evaluate", "run_specs"]


@app.command("eval")
def evaluate(
    spec: Annotated[
        list[Path] | None,
        typer.Option(
            help="The spec to evaluate (YAML or JSON; see examples/specs/). Give it several "
            "times to run the specs side by side on one server and compare them."
        ),
    ] = None,
    dataset: OptionalDataset = None,
    dataset_option: DatasetOptions = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="The run's folder: results.jsonl, run.json, report.md, plots (with several "
            "specs, one sub-folder per spec and comparison.md).",
        ),
    ] = None,
    limit: Limit = None,
    concurrency: Concurrency = 4,
    seed: DatasetSeed = 0,
    base_url: BaseUrl = None,
    retry_for: RetryFor = None,
    compare: Annotated[
        list[Path] | None,
        typer.Option(help="Overlay finished runs (give it twice or more) into --out."),
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Evaluate SPEC on a dataset: accuracy against compute, per problem and in total.

    One JSON line per problem is written to OUT/results.jsonl as it finishes; interrupted, the
    same command resumes without redoing finished problems. At the end OUT/report.md is written
    with its plots. With several --spec, each runs in turn into OUT/<spec name>/ on one server,
    and a table and OUT/comparison.md compare them. With --compare DIR1 DIR2 ..., overlay
    finished runs instead.
    """
    if out is None:
        _fail("give --out DIR: the folder of the run (or of the comparison)")
    if compare:
        if len(compare) < 2:
            _fail("--compare needs two runs or more: --compare DIR1 --compare DIR2")
        from tts_graph.eval.report import compare_runs

        with _errors_as_one_line():
            path = compare_runs(compare, out)
        typer.echo(str(path))
        return
    if not spec or dataset is None:
        _fail("give --spec SPEC and --dataset NAME (or --compare DIR1 --compare DIR2)")
    with _errors_as_one_line():
        from tts_graph.cli import _load_spec
        from tts_graph.eval.datasets import load_dataset

        dataset_options = parse_dataset_options(dataset_option)
        specs = [_load_spec(p, n=None, select=None, verifier=None, url=None) for p in spec]
        runs = _run_dirs(specs, spec, out)
        server_config = _one_server(specs, spec)
        problems = load_dataset(dataset, limit=limit, seed=seed, **dataset_options)
    progress = run_specs(
        "eval", specs, runs, problems, dataset=dataset, base_url=base_url,
        embedded=server_config, concurrency=concurrency, limit=limit, seed=seed, verbose=verbose,
        dataset_options=dataset_options, retry_for_s=retry_for,
    )  # fmt: skip
    with _errors_as_one_line():
        from tts_graph.eval.report import compare_runs, write_report

        reports = [write_report(run_dir) for run_dir in runs]
    for loaded, p in zip(specs, progress, strict=True):
        accuracy = "n/a" if p.accuracy is None else f"{p.accuracy:.3f}"
        _err().print(
            f"{loaded.name}: {p.done} problems, accuracy {accuracy}, {p.tokens} tokens, "
            f"{p.errors} failed",
            markup=False,
        )
    if len(runs) == 1:
        typer.echo(str(reports[0]))
        return
    with _errors_as_one_line():
        comparison = compare_runs(runs, out)
    _print_comparison(runs)
    typer.echo(str(comparison))


def run_specs(
    command: str,
    specs: list[Spec],
    runs: list[Path],
    problems: list[Any],
    *,
    dataset: str,
    base_url: str | None,
    embedded: str | None,
    concurrency: int,
    limit: int | None,
    seed: int,
    verbose: bool,
    dataset_options: Mapping[str, Any] | None = None,
    retry_for_s: float | None = None,
) -> list[EvalProgress]:
    """Run each spec on ``problems`` into its run folder, in turn, on one server: the one at
    ``base_url`` (or the first spec's), else the ``embedded`` model started here and stopped
    however the run ends. Ctrl-C says how far the run got and exits 130; the same command
    resumes it. ``seed`` and ``dataset_options`` (how ``problems`` were made) are recorded in
    each run folder, which a resume with other ones refuses; ``retry_for_s`` goes to the
    backend."""
    options = dataset_run_options(seed, dict(dataset_options or {}))
    with _run_log(command, verbose) as log, _errors_as_one_line(log), stop_on_signals():
        import asyncio

        from tts_graph.backends.server import ServerConfig

        server = None
        progress: list[EvalProgress] = []
        current = runs[0]
        try:
            url = base_url or specs[0].backend.base_url
            if url is None:
                server = _start_server(ServerConfig(model=embedded), log)
                url = server.base_url
            for loaded, run_dir in zip(specs, runs, strict=True):
                current = run_dir
                run = _run(
                    loaded, problems, url, run_dir, dataset, concurrency, options, retry_for_s
                )
                progress.append(asyncio.run(run))
        except KeyboardInterrupt:
            from tts_graph.eval.harness import done_ids

            done = len(done_ids(current))
            _err().print(
                f"interrupted: {done} of {len(problems)} problems are in "
                f"{current / 'results.jsonl'}; run the same command to resume",
                markup=False,
            )
            raise typer.Exit(130) from None
        finally:
            if server is not None:
                _stop_server(server)
    return progress


def _run_dirs(specs: list[Spec], paths: list[Path], out: Path) -> list[Path]:
    """One spec runs in OUT; several each in OUT/<spec name>, so names must differ."""
    if len(specs) == 1:
        return [out]
    seen: dict[str, Path] = {}
    for loaded, path in zip(specs, paths, strict=True):
        if loaded.name in seen:
            _fail(
                f"{seen[loaded.name]} and {path} are both named {loaded.name!r}; each spec runs in "
                "OUT/<name>, so give them different names"
            )
        seen[loaded.name] = path
    return [out / loaded.name for loaded in specs]


def _one_server(specs: list[Spec], paths: list[Path]) -> str | None:
    """The embedded model to start when no server is given: specs compared side by side run on
    one server, so they must agree on it."""
    wanted = {(s.backend.base_url, s.backend.embedded) for s in specs}
    if len(wanted) > 1:
        described = ", ".join(
            f"{p}: {s.backend.base_url or s.backend.embedded or 'the default embedded model'}"
            for s, p in zip(specs, paths, strict=True)
        )
        _fail(
            f"specs compared in one run must use the same server or embedded model ({described}); "
            "evaluate them one by one and use --compare"
        )
    return specs[0].backend.embedded


def _print_comparison(runs: list[Path]) -> None:
    """The side-by-side table: accuracy (with its 95 % interval), how often the answer passed
    the public tests, completion tokens and the wall time each run took. It fits 80 columns: a
    value is never cut, a header wraps instead."""
    from rich.console import Console
    from rich.table import Table

    from tts_graph.eval.metrics import totals
    from tts_graph.eval.report import read_run

    rows, counts = [], set()
    for run_dir in runs:
        run, records = read_run(run_dir)
        t = totals(records)
        counts.add(t["problems"])
        public = [r["public_passed"] for r in records if r.get("public_passed") is not None]
        rows.append([
            str(run.get("spec_name") or run_dir.name),
            str(t["problems"]),
            "-" if t["accuracy"] is None else f"{t['accuracy']:.0%}",
            "-" if t["ci"] is None else f"{t['ci'][0]:.0%}-{t['ci'][1]:.0%}",
            f"{sum(public) / len(public):.0%}" if public else "-",
            f"{t['completion_tokens']:,}",
            "-" if not t["problems"] else f"{t['completion_tokens'] / t['problems']:,.0f}",
            f"{run.get('elapsed_s', 0.0):.0f} s",
        ])  # fmt: skip
    headers = ["strategy", "problems", "accuracy", "95 % interval", "passed public tests",
               "completion tokens", "tokens per problem", "wall time"]  # fmt: skip
    title = "accuracy against compute"
    if len(counts) == 1:  # the same problems for every strategy: say it once
        title += f" on {counts.pop()} problems"
        headers.pop(1)
        rows = [row[:1] + row[2:] for row in rows]
    widths = [
        max([len(w) for w in h.split()] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)
    ]
    table = Table(title=title, title_justify="left")
    for i, (header, width) in enumerate(zip(headers, widths, strict=True)):
        table.add_column(header, justify="left" if i == 0 else "right", width=width)
    for row in rows:
        table.add_row(*row)
    console = Console(soft_wrap=True)
    # Wider than the terminal only when a name is long: a cut value would be a wrong one.
    console.width = max(console.width, sum(widths) + 3 * len(widths) + 1)
    console.print(table)


async def _run(
    spec: Any,
    problems: list[Any],
    base_url: str,
    out: Path,
    dataset: str,
    concurrency: int,
    options: Mapping[str, Any],
    retry_for_s: float | None,
) -> EvalProgress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tts_graph.eval.datasets import Judge
    from tts_graph.eval.harness import EvalProgress, run_eval

    progress = EvalProgress(total=len(problems))
    judge = Judge()
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=20),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=_err(),
    ) as bar:
        # Short enough for 80 columns: the dataset is in the command, the numbers must show.
        task = bar.add_task(spec.name, total=len(problems), status="")

        def show(p: EvalProgress) -> None:
            accuracy = "-" if p.accuracy is None else f"{p.accuracy:.2f}"
            rate = p.tokens / max(time.monotonic() - started, 1e-9)
            bar.update(
                task, completed=p.done,
                status=f"acc {accuracy}  {p.tokens:,} tokens ({rate:.0f}/s)  {p.errors} failed",
            )  # fmt: skip

        progress.listeners.append(show)
        try:
            backend = _cli._make_backend(
                base_url, spec.backend.model, spec.backend.model_params, retry_for_s
            )
            async with backend:
                await run_eval(
                    spec, problems, backend, out, dataset=dataset, judge=judge,
                    concurrency=concurrency, progress=progress, options=options,
                )  # fmt: skip
        finally:
            await judge.close()
    return progress

"""``tts-graph eval``: a spec over a dataset, with live accuracy and tokens, a result per problem
as it finishes, a resume after Ctrl-C, and a report with plots at the end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from tts_graph.cli import (
    _err,
    _errors_as_one_line,
    _fail,
    _run_log,
    _start_server,
    _stop_on_signals,
    _stop_server,
    app,
)

if TYPE_CHECKING:
    from tts_graph.eval.harness import EvalProgress

__all__ = ["evaluate"]


@app.command("eval")
def evaluate(
    spec: Annotated[
        Path | None, typer.Option(help="The spec to evaluate (YAML or JSON; see examples/specs/).")
    ] = None,
    dataset: Annotated[
        str | None,
        typer.Option(
            help="humaneval, gsm_symbolic, basic_arithmetic, champ, or a JSONL file of "
            '{"question", "answer", "tests"?} lines.'
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="The run's folder: results.jsonl, run.json, report.md, plots."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="The first N problems only.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Problems in flight at once.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of generated datasets.")] = 0,
    base_url: Annotated[
        str | None,
        typer.Option(
            envvar="TTS_GRAPH_BASE_URL",
            help="A running vLLM server; without one the spec's, else the embedded one is "
            "started and stopped.",
        ),
    ] = None,
    compare: Annotated[
        list[Path] | None,
        typer.Option(help="Overlay finished runs (give it twice or more) into --out."),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also print log messages on stderr.")
    ] = False,
) -> None:
    """Evaluate SPEC on a dataset: accuracy against compute, per problem and in total.

    One JSON line per problem is written to OUT/results.jsonl as it finishes; interrupted, the
    same command resumes without redoing finished problems. At the end OUT/report.md is written
    with its plots. With --compare DIR1 DIR2 ..., overlay finished runs instead.
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
    if spec is None or dataset is None:
        _fail("give --spec SPEC and --dataset NAME (or --compare DIR1 --compare DIR2)")
    with _errors_as_one_line():
        from tts_graph.cli import _load_spec
        from tts_graph.eval.datasets import load_dataset

        loaded = _load_spec(spec, n=None, select=None, verifier=None, url=None)
        problems = load_dataset(dataset, limit=limit, seed=seed)
    with _run_log("eval", verbose) as log, _errors_as_one_line(log), _stop_on_signals():
        import asyncio

        from tts_graph.backends.server import ServerConfig

        server = None
        progress: EvalProgress | None = None
        try:
            url = base_url or loaded.backend.base_url
            if url is None:
                server = _start_server(ServerConfig(model=loaded.backend.embedded), log)
                url = server.base_url
            progress = asyncio.run(
                _run(loaded, problems, url, out, dataset, concurrency, limit, seed)
            )
        except KeyboardInterrupt:
            from tts_graph.eval.harness import done_ids

            done = len(done_ids(out))
            _err().print(
                f"interrupted: {done} of {len(problems)} problems are in {out / 'results.jsonl'};"
                " run the same command to resume",
                markup=False,
            )
            raise typer.Exit(130) from None
        finally:
            if server is not None:
                _stop_server(server)
        from tts_graph.eval.report import write_report

        report = write_report(out)
    accuracy = "n/a" if progress.accuracy is None else f"{progress.accuracy:.3f}"
    _err().print(
        f"{progress.done} problems, accuracy {accuracy}, {progress.tokens} tokens, "
        f"{progress.errors} failed",
        markup=False,
    )
    typer.echo(str(report))


async def _run(
    spec: Any,
    problems: list[Any],
    base_url: str,
    out: Path,
    dataset: str,
    concurrency: int,
    limit: int | None,
    seed: int,
) -> EvalProgress:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from tts_graph.backends.vllm import VLLMBackend
    from tts_graph.eval.datasets import Judge
    from tts_graph.eval.harness import EvalProgress, run_eval

    progress = EvalProgress(total=len(problems))
    judge = Judge()
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=_err(),
    ) as bar:
        task = bar.add_task(f"{spec.name} on {dataset}", total=len(problems), status="")

        def show(p: EvalProgress) -> None:
            accuracy = "-" if p.accuracy is None else f"{p.accuracy:.2f}"
            rate = p.tokens / max(time.monotonic() - started, 1e-9)
            bar.update(
                task, completed=p.done,
                status=f"acc {accuracy}  tokens {p.tokens} ({rate:.0f}/s)  failed {p.errors}",
            )  # fmt: skip

        progress.listeners.append(show)
        try:
            async with VLLMBackend(
                base_url, model=spec.backend.model, model_params=spec.backend.model_params
            ) as backend:
                await run_eval(
                    spec, problems, backend, out, dataset=dataset, judge=judge,
                    concurrency=concurrency, progress=progress,
                    options={"seed": seed},  # not the limit: a resume may take more problems
                )  # fmt: skip
        finally:
            await judge.close()
    return progress

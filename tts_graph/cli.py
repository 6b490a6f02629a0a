"""The ``tts-graph`` command line: ``serve`` a vLLM server, ``solve`` a question.

Bad input never shows a traceback: every error of this library prints as one line on stderr
(what was wrong and what to do) and exits with status 2.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from collections.abc import Iterator
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from tts_graph.backends.base import SamplingParams
from tts_graph.backends.server import ServerConfig, VLLMServer
from tts_graph.backends.vllm import VLLMBackend
from tts_graph.budget import Budget, Usage
from tts_graph.errors import ConfigError, TTSGraphError
from tts_graph.graphs.best_of_n import create_best_of_n_graph
from tts_graph.nodes.fanout import estimate_prompt_tokens
from tts_graph.nodes.select import make_select_node
from tts_graph.prompts import question_prompt

app = typer.Typer(
    name="tts-graph",
    help="Test-time scaling for LangGraph, served by vLLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def _fail(message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@contextlib.contextmanager
def _errors_as_one_line() -> Iterator[None]:
    try:
        yield
    except TTSGraphError as exc:
        _fail(str(exc))


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not verbose:
        logging.getLogger("httpx").setLevel(logging.WARNING)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@app.command()
def serve(
    model: Annotated[
        str | None, typer.Option(help="Local path or model id; default: the embedded model.")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    seed: Annotated[int, typer.Option(help="Server-wide sampling seed.")] = 0,
    max_model_len: Annotated[int, typer.Option(help="Longest prompt + answer, in tokens.")] = 2048,
    served_model_name: Annotated[str | None, typer.Option(help="Name clients use.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Start a vLLM server and print its base URL once it is healthy; Ctrl-C stops it."""
    _setup_logging(verbose)
    config = ServerConfig(
        model=model,
        host=host,
        port=port,
        seed=seed,
        max_model_len=max_model_len,
        served_model_name=served_model_name,
    )
    server = VLLMServer(config)
    with _errors_as_one_line():
        with err.status(f"starting vLLM ({model or 'embedded model'}) on {host}:{port} ..."):
            server.start()
        typer.echo(server.base_url)
        err.print(f"serving {server.served_model_name}; log: {server.log_path}; Ctrl-C stops it")
        # Turn SIGTERM into the same clean stop as Ctrl-C.
        signal.signal(signal.SIGTERM, _interrupt)
        try:
            code = server.wait()
            _fail(f"the vLLM server exited with code {code}; see its log: {server.log_path}")
        except KeyboardInterrupt:
            err.print("stopping the server ...")
        finally:
            server.stop()
        err.print("stopped")


def _budget(**limits: Any) -> Budget:
    return Budget(**{k: v for k, v in limits.items() if v is not None})  # unset limits: none


@app.command()
def solve(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    n: Annotated[int, typer.Option("--n", "-n", help="Candidates to sample.")] = 8,
    select: Annotated[
        str, typer.Option(help="majority | best_score | weighted | verified")
    ] = "majority",
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.")] = 1.0,
    max_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = 256,
    seed: Annotated[int, typer.Option(help="Request seed.")] = 0,
    base_url: Annotated[
        str | None,
        typer.Option(
            envvar="TTS_GRAPH_BASE_URL",
            help="An OpenAI-compatible vLLM server, e.g. http://127.0.0.1:8000/v1; "
            "without one the embedded server is started and stopped.",
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name on the server.")] = None,
    max_total_tokens: Annotated[int | None, typer.Option(help="Budget: tokens.")] = None,
    max_completion_tokens: Annotated[
        int | None, typer.Option(help="Budget: answer tokens.")
    ] = None,
    max_calls: Annotated[int | None, typer.Option(help="Budget: requests.")] = None,
    max_flops: Annotated[float | None, typer.Option(help="Budget: estimated FLOPs.")] = None,
    max_wall_s: Annotated[float | None, typer.Option(help="Budget: seconds.")] = None,
    strict: Annotated[bool, typer.Option(help="Fail instead of finishing early.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Answer QUESTION with best-of-N and print the answer (or a JSON object with --json)."""
    _setup_logging(verbose)
    with _errors_as_one_line():
        if not question.strip():
            raise ConfigError(
                'the question is empty; pass it as text, e.g. tts-graph solve "What is 7+5?"'
            )
        budget = _budget(
            max_total_tokens=max_total_tokens,
            max_completion_tokens=max_completion_tokens,
            max_calls=max_calls,
            max_flops=max_flops,
            max_wall_s=max_wall_s,
            strict=strict,
        )
        sampling = SamplingParams(
            temperature=temperature, top_p=top_p, max_tokens=max_tokens, logprobs=True
        )
        # Check every option before starting anything, so bad input fails fast.
        if n < 1:
            raise ConfigError(f"--n must be at least 1, got {n}")
        make_select_node(rule=select)  # type: ignore[arg-type]
        server: VLLMServer | None = None
        try:
            if base_url is None:
                server = VLLMServer(ServerConfig())
                with err.status("starting the embedded vLLM server (about a minute) ..."):
                    server.start()
                base_url = server.base_url
            result = asyncio.run(
                _solve(
                    question,
                    base_url,
                    model,
                    n,
                    select,
                    sampling,
                    seed,
                    budget,
                    server.model_params if server else None,
                )
            )
        finally:
            if server is not None:
                server.stop()
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        typer.echo(result["answer"] if result["answer"] is not None else "(no answer)")


async def _solve(
    question: str,
    base_url: str,
    model: str | None,
    n: int,
    select: str,
    sampling: SamplingParams,
    seed: int,
    budget: Budget,
    model_params: int | None,
) -> dict[str, Any]:
    backend = VLLMBackend(base_url, model=model, model_params=model_params)
    try:
        graph = create_best_of_n_graph(
            backend,
            n=n,
            sampling=sampling,
            seed=seed,
            select=select,  # type: ignore[arg-type]
        ).compile()
        served = await backend.check()
        if budget.max_flops is not None and backend.model_params is None:
            raise ConfigError(
                "a FLOPs budget needs the model's parameter count, which this server does not "
                "reveal; drop --max-flops or use a budget in tokens"
            )
        if not budget.unlimited:
            prompt_tokens = await estimate_prompt_tokens(
                backend, question_prompt()({"question": question})
            )
            budget.require_one_call(
                prompt_tokens=prompt_tokens,
                max_tokens=sampling.max_tokens,
                model_params=backend.model_params,
            )
        state = await graph.ainvoke({"question": question, "budget": budget})
    finally:
        await backend.aclose()
    usage: Usage = state.get("usage") or Usage()
    return {
        "question": question,
        "answer": state.get("answer"),
        "response": state.get("response"),
        "strategy": state.get("strategy", "best_of_n"),
        "model": served,
        "usage": usage.to_dict(),
        "budget": budget.model_dump(exclude_none=True),
        "candidates": [c.to_dict() for c in state.get("candidates", [])],
        "decisions": state.get("decisions", []),
    }


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()

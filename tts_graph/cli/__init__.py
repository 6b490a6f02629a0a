"""The ``tts-graph`` command line: ``serve`` a vLLM server, ``solve`` a question, ``validate``
and ``draw`` a spec (:mod:`tts_graph.cli.specs`), ``eval`` a spec on a dataset
(:mod:`tts_graph.cli.evaluate`), ``calibrate`` the adaptive router (:mod:`tts_graph.cli.calibrate`).

Bad input never shows a traceback: every argument error and every error of this library prints
as one line on stderr (what was wrong and what to do) and exits with status 2. Progress goes to
stderr, so stdout holds only the answer (or the JSON object); what libraries log goes to a log
file under the cache folder, named when something fails.

Only typer is imported at start: ``--help`` and argument errors must not wait for langgraph,
openai or torch, so everything else is imported where it is used.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, cast

import typer
from typer.core import TyperGroup

from tts_graph.cli.options import BaseUrl, RetryFor, Verbose
from tts_graph.errors import MAX_SAMPLES

if TYPE_CHECKING:
    from rich.console import Console

    from tts_graph.backends.base import SamplingParams
    from tts_graph.backends.server import ServerConfig, VLLMServer
    from tts_graph.backends.vllm import VLLMBackend
    from tts_graph.budget import Budget
    from tts_graph.spec import Spec
    from tts_graph.state import TTSState
    from tts_graph.verifiers.base import Verifier

__all__ = ["app", "main", "stop_on_signals"]

logger = logging.getLogger(__name__)

# The selection rules of tts_graph.nodes.select.SelectRule, spelled out so that typer checks
# them without importing langgraph (a unit test keeps the two equal).
SelectName = Literal["majority", "best_score", "weighted", "verified"]

# What each built-in verifier needs from the command line. The registry is the source of the
# names; this table only says which of them check against a reference and what it is.
_REFERENCE_KIND = {
    "math": "the gold answer, e.g. --reference 12",
    "exact": "the gold answer, e.g. --reference 12",
    "numeric": "the gold number, e.g. --reference 0.75",
    "regex": "a regular expression the final answer must match",
    "code": "the tests: assert lines or a HumanEval check(candidate)",
}
_REWARD_MODELS = ("orm", "prm")
# The registry's names (available_verifiers()), spelled out because importing the registry
# costs about 0.1 s, a quarter of a fast argument error; a unit test keeps the two equal, and
# the verifier itself is still built by the registry.
_BUILTIN_VERIFIERS = ("code", "exact", "judge", "math", "numeric", "orm", "prm", "regex")

_LOGS_KEPT = 30


class _OneLineErrors(TyperGroup):
    """Typer's usage errors as one ``error:`` line instead of a usage banner and a panel."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(
                args, prog_name, complete_var, standalone_mode, windows_expand_args, **extra
            )
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except typer.TyperException as exc:
            # Not public in typer, which checks the class by name as well.
            if type(exc).__name__ == "NoArgsIsHelpError":
                typer.echo(exc.format_message(), err=True)
            else:
                message = exc.format_message().replace(": Value error, ", ": ")
                ctx = getattr(exc, "ctx", None)
                hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
                _print_error(f"{message.rstrip('.')}{hint}")
            sys.exit(exc.exit_code)
        except typer.Abort:
            _print_error("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="tts-graph",
    cls=_OneLineErrors,
    help="Test-time scaling for LangGraph, served by vLLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: typer's rich panels made `solve --help` 0.15-0.25 s slower, and help must
    # stay under half a second. Progress and errors still use rich.
    rich_markup_mode=None,
)


# -- output ---------------------------------------------------------------------------------


@functools.cache
def _err() -> Console:
    from rich.console import Console

    # Resolves sys.stderr at each write, so redirected stderr (tests, pipes) is honoured.
    return Console(stderr=True, soft_wrap=True, highlight=False)


def _print_error(message: str) -> None:
    from rich.markup import escape

    _err().print(f"[bold red]error:[/] {escape(message)}")


def _fail(message: str, log: Path | None = None, *, code: int = 2) -> NoReturn:
    _print_error(f"{message}; log: {log}" if log is not None else message)
    raise typer.Exit(code)


@contextlib.contextmanager
def _errors_as_one_line(log: Path | None = None) -> Iterator[None]:
    """Library errors as one line; with a run log, anything else as one line pointing at it."""
    from tts_graph.errors import BudgetExhausted, ConfigError, TTSGraphError

    try:
        yield
    except typer.Exit:
        raise
    except ConfigError as exc:  # bad input: the message says what to do; the log adds nothing
        _fail(str(exc))
    except BudgetExhausted as exc:
        _fail(f"{exc}; raise the budget, or drop --strict to finish with the best answer so far")
    except TTSGraphError as exc:
        _fail(str(exc), log)
    except Exception as exc:
        if log is None:
            raise
        logger.exception("unexpected error")
        _fail(
            f"unexpected {type(exc).__name__}: {exc} (a bug; the traceback is in the log)",
            log,
            code=1,
        )


class _Stage:
    def __init__(self, text: str) -> None:
        self.done_text = text
        self._show: Callable[[str], None] = lambda text: None

    def update(self, text: str) -> None:
        self._show(text)

    def done(self, text: str) -> None:
        self.done_text = text


@contextlib.contextmanager
def _stage(text: str) -> Iterator[_Stage]:
    """Progress of one wait on stderr: a spinner with the elapsed time on a terminal, a line
    when the wait starts elsewhere (logs, CI); a line with the duration when it ends."""
    console = _err()
    stage = _Stage(text)
    started = time.monotonic()
    if console.is_terminal:
        from rich.markup import escape
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        # Elapsed time first: a long description is cut at the terminal's edge, not the clock.
        with Progress(
            SpinnerColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
        ) as bar:
            task = bar.add_task(escape(text), total=None)
            stage._show = lambda new: bar.update(task, description=escape(new))
            yield stage
    else:
        console.print(f"{text} ...", markup=False)
        yield stage
    console.print(f"{stage.done_text} ({time.monotonic() - started:.1f} s)", markup=False)


# -- logging --------------------------------------------------------------------------------


def _new_log(command: str) -> Path:
    from tts_graph.backends.embedded import default_cache_dir

    folder = default_cache_dir() / "logs"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        import tempfile

        folder = Path(tempfile.gettempdir())
    # Old logs go, but never one touched in the last day (a server may still write to it).
    logs = sorted(folder.glob("tts-graph-*.log"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in logs[_LOGS_KEPT:]:
        with contextlib.suppress(OSError):
            if time.time() - old.stat().st_mtime > 86_400:
                old.unlink()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return folder / f"tts-graph-{command}-{stamp}-{os.getpid()}.log"


@contextlib.contextmanager
def _run_log(command: str, verbose: bool) -> Iterator[Path]:
    """Send logging and Python warnings to a log file for the command's run (and, with
    ``--verbose``, INFO and up to stderr too); everything is put back afterwards."""
    path = _new_log(command)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    handlers: list[logging.Handler] = [handler]
    if verbose:
        echo = logging.StreamHandler(sys.stderr)
        echo.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handlers.append(echo)
    level = root.level
    for h in handlers:
        root.addHandler(h)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield path
    finally:
        logging.captureWarnings(False)
        root.setLevel(level)
        for h in handlers:
            root.removeHandler(h)
            h.close()


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Ctrl-C and SIGTERM both unwind through ``finally``, so a server this command started is
    stopped. SIGINT is set too: a shell that starts a command in the background ignores it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- the server -----------------------------------------------------------------------------

# Runs in a child process: torch and transformers stay out of this one, their output goes to
# the log, and their memory is freed before vLLM starts.
_CONVERT = """
import sys
from tts_graph.backends.embedded import embedded_model_dir
from tts_graph.errors import TTSGraphError
try:
    embedded_model_dir(sys.argv[1])
except TTSGraphError as exc:
    print(exc)
    sys.exit(3)
"""


def _prepare_embedded_model(name: str, log: Path) -> None:
    from tts_graph.backends.embedded import embedded_model_converted, find_embedded_gguf
    from tts_graph.errors import ConfigError, ServerStartError

    if embedded_model_converted(name):
        return
    find_embedded_gguf(name)  # a missing or damaged model package is bad input: say so first
    quiet = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1"}
    with _stage(f"converting the embedded model {name}, once (30-130 s)") as stage:
        with open(log, "ab") as sink:
            child = subprocess.run(
                [sys.executable, "-c", _CONVERT, name],
                stdout=subprocess.PIPE,
                stderr=sink,
                env={**os.environ, **quiet},
                check=False,
            )
        said = child.stdout.decode(errors="replace").strip().splitlines()
        if child.returncode == 3 and said:
            raise ConfigError(said[-1])
        if child.returncode != 0:
            raise ServerStartError(
                f"converting the embedded model failed (exit code {child.returncode})"
            )
        stage.done("converted the embedded model")


def _start_server(config: ServerConfig, log: Path) -> VLLMServer:
    from tts_graph.backends.server import VLLMServer

    server = VLLMServer(config, log_path=log)
    server.check_can_start()
    if config.embedded is not None:
        _prepare_embedded_model(config.embedded, log)
    where = f"{config.host}:{server.port}"
    with _stage(f"starting the vLLM server on {where} (about 35 s)") as stage:
        server.start()
        stage.done(f"vLLM server ready on {where}, serving {server.served_model_name}")
    return server


def _stop_server(server: VLLMServer) -> None:
    with _stage("stopping the vLLM server") as stage:
        server.stop()
        stage.done("stopped the vLLM server")


# -- serve ----------------------------------------------------------------------------------


@app.command()
def serve(
    model: Annotated[
        str | None,
        typer.Option(
            help="An embedded model (smollm2-135m, qwen2.5-coder-0.5b), a local folder or a "
            "model id; default: qwen2.5-coder-0.5b."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    seed: Annotated[int, typer.Option(help="Server-wide sampling seed.")] = 0,
    max_model_len: Annotated[
        int, typer.Option(min=1, help="Longest prompt + answer, in tokens.")
    ] = 2048,
    served_model_name: Annotated[str | None, typer.Option(help="Name clients use.")] = None,
    verbose: Verbose = False,
) -> None:
    """Run a vLLM server until Ctrl-C.

    Prints the server's base URL on stdout once it is healthy; progress and the log's path go
    to stderr. Without --model it serves the embedded model (converted once, then cached).
    """
    from tts_graph.backends.server import ServerConfig

    config = ServerConfig(
        model=model,
        host=host,
        port=port,
        seed=seed,
        max_model_len=max_model_len,
        served_model_name=served_model_name,
    )
    with _run_log("serve", verbose) as log, _errors_as_one_line(log), stop_on_signals():
        server: VLLMServer | None = None
        try:
            server = _start_server(config, log)
            typer.echo(server.base_url)
            _err().print(f"log: {log}; Ctrl-C stops the server", markup=False)
            code = server.wait()
            _fail(f"the vLLM server exited with code {code}", log)
        except KeyboardInterrupt:
            pass
        finally:
            if server is not None:
                _stop_server(server)


# -- solve ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _VerifierChoice:
    name: str
    reference: str | None = None
    entry_point: str | None = None
    url: str | None = None


def _choose_verifier(
    name: str | None,
    *,
    select: str | None,
    reference: str | None,
    entry_point: str | None,
    url: str | None,
) -> _VerifierChoice | None:
    """Check the verifier options together, before anything starts."""
    from tts_graph.errors import ConfigError

    names = ", ".join(_BUILTIN_VERIFIERS)
    if name is None:
        if select == "verified":
            raise ConfigError(
                "--select verified picks a candidate that a verifier passed, but no verifier "
                f"was given; add --verifier NAME (one of: {names})"
            )
        for flag, value in (
            ("--reference", reference),
            ("--entry-point", entry_point),
            ("--verifier-url", url),
        ):
            if value is not None:
                raise ConfigError(
                    f"{flag} is only used by a verifier; add --verifier NAME (one of: {names})"
                )
        return None
    if name not in _BUILTIN_VERIFIERS:
        raise ConfigError(f"unknown verifier {name!r}; choose one of: {names}")
    kind = _REFERENCE_KIND.get(name)
    if kind is not None and reference is None:
        raise ConfigError(
            f"--verifier {name} checks candidates against a reference; add --reference TEXT "
            f"({kind})"
        )
    if kind is None and reference is not None:
        raise ConfigError(f"--verifier {name} does not use a reference; drop --reference")
    if name == "code" and entry_point is None:
        raise ConfigError(
            "--verifier code needs the name of the function the tests call; add --entry-point NAME"
        )
    if name != "code" and entry_point is not None:
        raise ConfigError("--entry-point is only used by --verifier code; drop it")
    if name in _REWARD_MODELS and url is None:
        raise ConfigError(
            f"--verifier {name} scores with a reward model on its own vLLM server; add "
            "--verifier-url URL (e.g. http://127.0.0.1:8001/v1)"
        )
    if name not in _REWARD_MODELS and url is not None:
        raise ConfigError(
            f"--verifier-url is only used by --verifier {' or '.join(_REWARD_MODELS)}; drop it"
        )
    choice = _VerifierChoice(name, reference, entry_point, url)
    _reference(choice)  # malformed tests fail here, not after the server has started
    return choice


def _reference(choice: _VerifierChoice) -> Any:
    if choice.name != "code":
        return choice.reference
    from tts_graph.verifiers.code import CodeTests

    assert choice.reference is not None and choice.entry_point is not None
    return CodeTests(test=choice.reference, entry_point=choice.entry_point)


def _require_bubblewrap() -> None:
    import asyncio

    from tts_graph.errors import ConfigError
    from tts_graph.verifiers.sandbox import bwrap_available

    # Probed (a program is run inside it) before any server starts: otherwise an unusable
    # bubblewrap would only show as every candidate failing, after the sampling. The verifier's
    # unisolated subprocess is never an option here.
    if not asyncio.run(bwrap_available()):
        raise ConfigError(
            "--verifier code runs candidates under bubblewrap, which cannot run here (the log "
            "says why); install it, e.g. apt-get install bubblewrap"
        )


def _make_verifier(choice: _VerifierChoice, backend: VLLMBackend) -> Verifier:
    from tts_graph.verifiers.registry import create_verifier

    options: dict[str, Any] = {}
    # No sandbox option for "code": solve has checked that bubblewrap works before this, and
    # the unisolated subprocess is only ever used when named, which the command line never does.
    if choice.name == "judge":
        options["backend"] = backend  # the same model judges its own candidates
    elif choice.name in _REWARD_MODELS:
        options["base_url"] = choice.url
    return create_verifier(choice.name, **options)


async def _close(verifier: Verifier) -> None:
    import asyncio

    if callable(aclose := getattr(verifier, "aclose", None)):
        await aclose()
    elif callable(close := getattr(verifier, "close", None)):
        await asyncio.to_thread(close)


def _make_backend(
    base_url: str,
    model: str | None,
    model_params: int | None,
    retry_for_s: float | None = None,
) -> VLLMBackend:
    """Every command's backend: the one place the command line makes a VLLMBackend."""
    from tts_graph.backends.vllm import VLLMBackend

    return VLLMBackend(base_url, model=model, model_params=model_params, retry_for_s=retry_for_s)


def _budget(**limits: Any) -> Budget:
    from tts_graph.budget import Budget

    return Budget(**{k: v for k, v in limits.items() if v is not None})  # unset limits: none


def _sampling(temperature: float, top_p: float, max_tokens: int) -> SamplingParams:
    from tts_graph.backends.base import SamplingParams

    return SamplingParams(
        temperature=temperature, top_p=top_p, max_tokens=max_tokens, logprobs=True
    )


@app.command()
def solve(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    spec: Annotated[
        Path | None,
        typer.Option(
            help="Run this spec (YAML or JSON; see examples/specs/) instead of best-of-N. The "
            "spec sets the strategy, sampling and budget; budget flags override its budget."
        ),
    ] = None,
    n: Annotated[
        int | None,
        typer.Option("--n", "-n", min=1, max=MAX_SAMPLES, help="Candidates to sample (default 8)."),
    ] = None,
    select: Annotated[
        SelectName | None,
        typer.Option(
            help="How to choose the answer; default: majority, or best_score with a verifier."
        ),
    ] = None,
    verifier: Annotated[
        str | None,
        typer.Option(
            help="Check the candidates: math, exact, numeric, regex (need --reference), code "
            "(needs --reference and --entry-point), judge (the model itself), prm or orm "
            "(need --verifier-url)."
        ),
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(help="What the verifier checks against: a gold answer, a pattern, tests."),
    ] = None,
    entry_point: Annotated[
        str | None, typer.Option(help="--verifier code: the function the tests call.")
    ] = None,
    verifier_url: Annotated[
        str | None, typer.Option(help="--verifier prm/orm: the reward model's vLLM server.")
    ] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 0.7,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling.")] = 1.0,
    max_tokens: Annotated[int, typer.Option(min=1, help="Longest answer, in tokens.")] = 256,
    seed: Annotated[int, typer.Option(help="Request seed.")] = 0,
    base_url: BaseUrl = None,
    retry_for: RetryFor = None,
    port: Annotated[
        int | None,
        typer.Option(
            min=1, max=65535, help="Port of the server solve starts; default: a free one."
        ),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name on the server.")] = None,
    max_total_tokens: Annotated[int | None, typer.Option(min=1, help="Budget: tokens.")] = None,
    max_completion_tokens: Annotated[
        int | None, typer.Option(min=1, help="Budget: answer tokens.")
    ] = None,
    max_calls: Annotated[int | None, typer.Option(min=1, help="Budget: requests.")] = None,
    max_flops: Annotated[float | None, typer.Option(help="Budget: estimated FLOPs.")] = None,
    max_wall_s: Annotated[float | None, typer.Option(help="Budget: seconds.")] = None,
    strict: Annotated[
        bool, typer.Option(help="Fail (status 2) when the budget runs out, not finish early.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON object.")] = False,
    verbose: Verbose = False,
) -> None:
    """Answer QUESTION with best-of-N, or with the graph of a spec (--spec).

    Prints the answer (or a JSON object with --json: the answer, the difficulty and strategy,
    every decision, the usage and the budget left) on stdout and progress on stderr. Without
    --base-url it starts the embedded vLLM server and stops it afterwards.
    """
    from tts_graph.errors import ConfigError, check_utf8

    loaded: Spec | None = None
    # Every option is checked before anything starts, so bad input fails fast.
    with _errors_as_one_line():
        if not question.strip():
            raise ConfigError(
                'the question is empty; pass it as text, e.g. tts-graph solve "What is 7+5?"'
            )
        # Bytes that are not UTF-8 reach argv as lone surrogates (Python's surrogateescape).
        check_utf8(question, "the question")
        if port is not None and base_url is not None:
            raise ConfigError(
                "--port is the port of the server solve starts, and --base-url names a running "
                "one; give one of them"
            )
        if spec is not None:
            loaded = _load_spec(spec, n=n, select=select, verifier=verifier, url=verifier_url)
            choice = None
        else:
            choice = _choose_verifier(
                verifier, select=select, reference=reference, entry_point=entry_point,
                url=verifier_url,
            )  # fmt: skip
        budget = _budget(
            max_total_tokens=max_total_tokens,
            max_completion_tokens=max_completion_tokens,
            max_calls=max_calls,
            max_flops=max_flops,
            max_wall_s=max_wall_s,
            strict=strict,
        )
        if loaded is not None and budget.unlimited and not strict and loaded.budget is not None:
            budget = loaded.budget
        sampling = _sampling(temperature, top_p, max_tokens)
    with _run_log("solve", verbose) as log, _errors_as_one_line(log), stop_on_signals():
        import asyncio

        from tts_graph.backends.server import ServerConfig

        if choice is not None and choice.name == "code":
            _require_bubblewrap()
        server: VLLMServer | None = None
        try:
            if base_url is None and loaded is not None:
                base_url = loaded.backend.base_url
            if base_url is None:
                embedded = loaded.backend.embedded if loaded is not None else None
                config = ServerConfig(port=port, model=embedded)
                server = _start_server(config, log)
                base_url = server.base_url
            result = asyncio.run(
                _solve(
                    question,
                    base_url=base_url,
                    model=model,
                    spec=loaded,
                    reference=_spec_reference(reference, entry_point) if loaded else None,
                    n=n or 8,
                    select=select,
                    choice=choice,
                    sampling=sampling,
                    seed=seed,
                    budget=budget,
                    model_params=server.model_params if server else None,
                    retry_for_s=retry_for,
                )
            )
        finally:
            if server is not None:
                _stop_server(server)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        typer.echo(result["answer"] if result["answer"] is not None else "(no answer)")


def _describe(decision: dict[str, Any], verifier: str | None) -> str | None:
    """What the spinner says after a node's decision (what the run is doing next)."""
    kind = decision.get("kind") or decision.get("node")
    if kind == "fanout":
        sampled = f"sampled {decision.get('sampled', '?')} candidates"
        return f"{sampled}; checking them with {verifier}" if verifier else f"{sampled}; choosing"
    if kind == "verify":
        return f"{decision.get('passed', '?')} of {decision.get('checked', '?')} passed; choosing"
    return None


def _load_spec(
    path: Path, *, n: int | None, select: str | None, verifier: str | None, url: str | None
) -> Spec:
    """The spec at ``path``; strategy flags are the spec's to set."""
    from tts_graph.errors import ConfigError
    from tts_graph.spec import SpecError, load_spec

    for flag, value in (("--n", n), ("--select", select), ("--verifier", verifier),
                        ("--verifier-url", url)):  # fmt: skip
        if value is not None:
            raise ConfigError(f"{flag} is set by the spec's strategy; drop it, or edit {path}")
    try:
        return load_spec(path)
    except SpecError as exc:
        raise ConfigError(f"{exc}\n(tts-graph validate {path} lists the same)") from None


def _spec_reference(reference: str | None, entry_point: str | None) -> Any:
    """--reference for a spec's verifier: code tests when --entry-point names their function."""
    if reference is None or entry_point is None:
        return reference
    from tts_graph.verifiers.code import CodeTests

    return CodeTests(test=reference, entry_point=entry_point)


async def _solve(
    question: str,
    *,
    base_url: str,
    model: str | None,
    spec: Spec | None,
    reference: Any,
    n: int,
    select: str | None,
    choice: _VerifierChoice | None,
    sampling: SamplingParams,
    seed: int,
    budget: Budget,
    model_params: int | None,
    retry_for_s: float | None,
) -> dict[str, Any]:
    from tts_graph.budget import Usage
    from tts_graph.errors import ConfigError
    from tts_graph.graphs.best_of_n import create_best_of_n_graph
    from tts_graph.nodes.fanout import estimate_prompt_tokens
    from tts_graph.prompts import question_prompt

    if spec is not None:
        model = model or spec.backend.model
        model_params = model_params or spec.backend.model_params
    backend = _make_backend(base_url, model, model_params, retry_for_s)
    verifier: Verifier | None = None
    try:
        if spec is not None:
            import dataclasses

            from tts_graph.spec import build_graph

            graph = build_graph(spec, backend).compile()
            # The spec's answers may be longer than the command line's default.
            sampling = dataclasses.replace(
                sampling, max_tokens=spec.sampling.max_tokens or sampling.max_tokens
            )
        else:
            if choice is not None:
                verifier = _make_verifier(choice, backend)
            graph = create_best_of_n_graph(
                backend,
                n=n,
                sampling=sampling,
                seed=seed,
                verifier=verifier,
                select=select,  # checked by typer against SelectName
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
        inputs: TTSState = {"question": question, "budget": budget}
        if choice is not None:
            inputs["reference"] = _reference(choice)
        elif reference is not None:
            inputs["reference"] = reference
        state: dict[str, Any] = {}
        checked = f", checked with {choice.name}" if choice else ""
        what = (
            f"sampling {n} candidates"
            if spec is None
            else f"running {spec.name} ({spec.strategy.kind})"
        )
        with _stage(f"{what} from {served}") as stage:
            async for part in graph.astream(inputs, stream_mode=["custom", "values"]):
                mode, chunk = cast("tuple[str, Any]", part)  # (mode, data) with a list of modes
                if mode == "values":
                    state = chunk
                elif note := _describe(chunk.get("tts_graph", {}), choice.name if choice else None):
                    stage.update(note)
            sampled = len(state.get("candidates", []))
            stage.done(f"sampled {sampled} candidates{checked}")
    finally:
        if verifier is not None:
            await _close(verifier)
        await backend.aclose()
    usage: Usage = state.get("usage") or Usage()
    return {
        "question": question,
        "answer": state.get("answer"),
        "response": state.get("response"),
        "difficulty": state.get("difficulty"),
        "strategy": state.get("strategy", "best_of_n"),
        "spec": None if spec is None else spec.name,
        "model": served,
        "usage": usage.to_dict(),
        "budget": budget.model_dump(exclude_none=True),
        "budget_left": None if budget.unlimited else budget.remaining(usage).to_dict(),
        "candidates": [c.to_dict() for c in state.get("candidates", [])],
        "decisions": state.get("decisions", []),
    }


# The spec, eval and calibrate commands live in their own modules; importing one registers
# its commands on ``app``.
from tts_graph.cli import calibrate as _calibrate  # noqa: E402, F401
from tts_graph.cli import evaluate as _evaluate  # noqa: E402, F401
from tts_graph.cli import specs as _specs  # noqa: E402, F401


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    app()

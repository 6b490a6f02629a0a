"""The options several commands share, declared once: one name, one type and one help text
per concept, so ``solve``, ``eval`` and ``calibrate`` cannot drift apart.

Each is an ``Annotated`` alias a command uses as a parameter's type, with its default in the
command (``limit: Limit = None``). Only typer is imported here, for a fast ``--help``.
"""

import math
from collections.abc import Sequence
from typing import Annotated, Any

import typer

from tts_graph.errors import ConfigError, check_utf8

__all__ = [
    "BaseUrl",
    "Concurrency",
    "Dataset",
    "DatasetOptions",
    "DatasetSeed",
    "Limit",
    "OptionalDataset",
    "RetryFor",
    "Verbose",
    "dataset_run_options",
    "parse_dataset_options",
]


def _positive_seconds(value: float | None) -> float | None:
    # click's FloatRange lets nan through (no comparison holds for it), and inf would retry a
    # dead server forever: both are refused with the same message.
    if value is not None and not (math.isfinite(value) and value > 0):
        raise typer.BadParameter(
            f"give a number of seconds greater than 0, e.g. --retry-for 300; got {value:g}"
        )
    return value


Verbose = Annotated[
    bool, typer.Option("--verbose", "-v", help="Also print log messages on stderr.")
]

BaseUrl = Annotated[
    str | None,
    typer.Option(
        envvar="TTS_GRAPH_BASE_URL",
        help="A running OpenAI-compatible vLLM server, e.g. http://127.0.0.1:8000/v1; without "
        "one the spec's, else the embedded one is started and stopped.",
    ),
]

RetryFor = Annotated[
    float | None,
    typer.Option(
        "--retry-for",
        metavar="SECONDS",
        callback=_positive_seconds,
        help="Keep retrying a request the server fails (down, restarting) for up to SECONDS "
        "since its first attempt, instead of giving up after a few retries (about 15 s).",
    ),
]

_DATASET_HELP = (
    "humaneval, gsm_symbolic, basic_arithmetic, champ, or a JSONL file of "
    '{"question", "answer", "tests"?} lines.'
)
Dataset = Annotated[str, typer.Option(help=_DATASET_HELP)]
OptionalDataset = Annotated[str | None, typer.Option(help=_DATASET_HELP)]

DatasetOptions = Annotated[
    list[str] | None,
    typer.Option(
        "--dataset-option",
        metavar="KEY=VALUE",
        help="An option of the dataset, VALUE in YAML (checkable=true, pool=solution, "
        "models=[GPT-4] for champ; difficulty=... for gsm_symbolic; min_terms=2 for "
        "basic_arithmetic); give it once per option. A resumed run needs the same ones.",
    ),
]

Limit = Annotated[int | None, typer.Option(min=1, help="The first N problems only.")]

Concurrency = Annotated[int, typer.Option(min=1, help="Problems in flight at once.")]

DatasetSeed = Annotated[
    int,
    typer.Option(help="Seed of the generated datasets (and of calibrate's held-out split)."),
]

# Options load_dataset takes as arguments of its own: they have flags.
_FLAGGED = {"limit": "--limit", "seed": "--seed"}


def parse_dataset_options(pairs: Sequence[str] | None) -> dict[str, Any]:
    """``--dataset-option KEY=VALUE`` pairs as load_dataset's keyword options, each VALUE read
    as YAML (``true`` is a bool, ``[a, b]`` a list, ``'2'`` a string). A malformed pair is a
    :class:`~tts_graph.errors.ConfigError` saying what was given and what a good one is;
    unknown keys are left to load_dataset, which lists the valid ones."""
    options: dict[str, Any] = {}
    for pair in pairs or ():
        # Bytes that are not UTF-8 reach argv as lone surrogates (Python's surrogateescape).
        check_utf8(pair, "--dataset-option")
        key, equals, raw = pair.partition("=")
        key = key.strip()
        if not equals or not key.isidentifier() or not raw.strip():
            raise ConfigError(
                f"--dataset-option {pair!r} is not KEY=VALUE; give e.g. --dataset-option "
                "checkable=true or --dataset-option models=[GPT-4]"
            )
        if key in _FLAGGED:
            raise ConfigError(
                f"--dataset-option {key}=... has a flag of its own: use {_FLAGGED[key]}"
            )
        if key in options:
            raise ConfigError(f"--dataset-option {key} is given twice; give it once")
        options[key] = _yaml_value(key, raw)
    return options


def _yaml_value(key: str, raw: str) -> Any:
    import yaml

    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise ConfigError(
            f"--dataset-option {key}={raw}: the value is {problem}; give a YAML scalar or list, "
            f"e.g. {key}=true, {key}=2 or {key}=[a, b] (quote text: {key}='...')"
        ) from None
    if not _plain(value, nested=True):
        raise ConfigError(
            f"--dataset-option {key}={raw}: the value reads as a {type(value).__name__}; give "
            f"a YAML scalar or a list of them, e.g. {key}=2 or {key}=[a, b] (quote text: "
            f"{key}='{raw}')"
        )
    return value


def _plain(value: Any, *, nested: bool) -> bool:
    """A value run.json records exactly: a string, a finite number, a bool, null, or (at the
    top) a list of those."""
    if value is None or isinstance(value, str | bool | int):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list) and nested:
        return all(_plain(v, nested=False) for v in value)
    return False


def dataset_run_options(seed: int, dataset_options: dict[str, Any]) -> dict[str, Any]:
    """What run.json records of how the problems were made, so a resume checks it makes the
    same ones. ``dataset_options`` only when some were given: a run recorded without them
    resumes as before."""
    options: dict[str, Any] = {"seed": seed}  # not the limit: a resume may take more problems
    if dataset_options:
        options["dataset_options"] = dict(dataset_options)
    return options

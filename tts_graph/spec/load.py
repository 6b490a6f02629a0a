"""Reading a spec: YAML or JSON, every error at once, each by its path, with the valid choices."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import yaml
from pydantic import ValidationError

from tts_graph.errors import ConfigError
from tts_graph.spec.models import Spec

__all__ = ["SpecError", "SpecProblem", "check_names", "load_spec", "read_spec_data"]


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with a spec: where (``strategy.routes.hard.n``) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(spec)'}: {self.message}"


class SpecError(ConfigError):
    """A spec that cannot be used; ``problems`` lists every error by path."""

    def __init__(self, source: str, problems: list[SpecProblem]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the spec:\n{lines}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.source, self.problems))


def read_spec_data(source: str | Path) -> dict[str, Any]:
    """The data of a YAML or JSON spec file."""
    path = Path(source)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(str(path), [SpecProblem("", "no such file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), [SpecProblem("", f"cannot read it: {exc}")]) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise SpecError(str(path), [SpecProblem("", f"not valid YAML/JSON: {exc}")]) from None
    if not isinstance(data, dict):
        found = type(data).__name__
        raise SpecError(str(path), [SpecProblem("", f"a spec is a mapping, got {found}")])
    problems: list[SpecProblem] = []
    expanded = _expand(data, "", problems)
    if problems:
        raise SpecError(str(path), problems)
    return cast(dict[str, Any], expanded)


# ``${NAME}`` or ``${NAME:-default}``: where a spec's value differs by machine (a server's URL).
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand(value: Any, path: str, problems: list[SpecProblem]) -> Any:
    """``value`` with environment variables in its strings replaced."""
    if isinstance(value, dict):
        return {
            k: _expand(v, f"{path}.{k}" if path else str(k), problems) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_expand(v, f"{path}.{i}", problems) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = os.environ.get(name, default)
        if found is None:
            problems.append(
                SpecProblem(path, f"the environment variable {name} is not set (write "
                            f"${{{name}:-default}} for a default)")
            )  # fmt: skip
            return ""
        return found

    return _VARIABLE.sub(substitute, value)


def load_spec(source: str | Path | Mapping[str, Any]) -> Spec:
    """A checked :class:`~tts_graph.spec.models.Spec` from a file or from data; raises
    :class:`SpecError` listing every problem (types, ranges, unknown options and names).

    >>> load_spec({"strategy": "self_consistency"}).strategy.kind
    'self_consistency'
    """
    name = "spec" if isinstance(source, Mapping) else str(source)
    if isinstance(source, Mapping):
        expanded: list[SpecProblem] = []
        data = cast(dict[str, Any], _expand(dict(source), "", expanded))
        if expanded:
            raise SpecError(name, expanded)
    else:
        data = read_spec_data(source)
    problems = check_names(data)
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        problems = [_problem(e) for e in exc.errors()] + problems
    if problems:
        raise SpecError(name, problems)
    return spec


def check_names(data: Mapping[str, Any]) -> list[SpecProblem]:
    """What pydantic cannot see: names that must be registered (verifiers, selectors,
    extractors, difficulty estimators), wherever in the spec they are."""
    from tts_graph.nodes.difficulty import ESTIMATORS
    from tts_graph.nodes.select import available_selectors
    from tts_graph.verifiers.answer import available_extractors
    from tts_graph.verifiers.registry import available_verifiers

    choices = {
        "extract": available_extractors(),
        "select": available_selectors(),
        "estimator": sorted(ESTIMATORS),
        "verifier": available_verifiers(),
    }
    problems: list[SpecProblem] = []
    for path, field, value in _named(data, ""):
        valid = choices[field]
        if value not in valid:
            problems.append(
                SpecProblem(path, f"unknown {field} {value!r}; choose one of: {', '.join(valid)}")
            )
    return problems


def _named(data: Any, prefix: str) -> Iterator[tuple[str, str, str]]:
    """(path, kind of name, name) of every registered name in the spec's data."""
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield from _named(item, f"{prefix}.{i}")
        return
    if not isinstance(data, Mapping):
        return
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key == "verifier" and isinstance(value, Mapping) and isinstance(value.get("name"), str):
            yield f"{path}.name", "verifier", value["name"]
        elif key in ("extract", "select", "estimator", "verifier") and isinstance(value, str):
            yield path, str(key), value
        else:
            yield from _named(value, path)


# Pydantic puts the chosen member of a tagged union in the path ("strategy.best_of_n.n"); a
# spec's author wrote "strategy.n".
_TAGS = {
    "best_of_n", "self_consistency", "self_refine", "budget_forcing", "tournament",
    "confidence", "beam_search", "dvts", "adaptive", "vote",
}  # fmt: skip


def _problem(error: Mapping[str, Any]) -> SpecProblem:
    loc = [str(part) for part in error["loc"]]
    parts = [p for i, p in enumerate(loc) if not (p in _TAGS and i > 0) and "[" not in p]
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown option (misspelt?)"
    elif error["type"] == "missing":
        message = "required"
    return SpecProblem(".".join(parts), message)

"""Reading a spec: YAML or JSON, every error at once, each by its path, with the valid choices."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast, get_args

import yaml
from pydantic import ValidationError

from tts_graph.errors import ConfigError, show_value
from tts_graph.spec.models import RouteSpec, Spec
from tts_graph.spec.variables import expand_variables

__all__ = [
    "SpecError",
    "SpecProblem",
    "check_names",
    "load_spec",
    "read_spec_data",
]


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
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SpecError(
            str(path),
            [SpecProblem("", f"no such file (looked for {path.absolute()}); give the path of "
                         "a YAML or JSON spec, such as examples/specs/*.yaml")],
        ) from None  # fmt: skip
    except OSError as exc:
        raise SpecError(str(path), [SpecProblem("", f"cannot read it: {exc}")]) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise SpecError(
            str(path),
            [SpecProblem("", f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at line {line}, "
                         f"column {column} ({exc.reason}); save the file as UTF-8")],
        ) from None  # fmt: skip
    try:
        data = _read_json(text) if path.suffix == ".json" else yaml.load(text, _SpecLoader)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        hint = (
            " (a spec is plain YAML: no tags such as !include, and no other files)"
            if "could not determine a constructor" in str(exc)
            else ""
        )
        raise SpecError(str(path), [SpecProblem("", f"not valid YAML/JSON{hint}: {exc}")]) from None
    except _TooManyDigits as exc:
        raise SpecError(str(path), [SpecProblem("", exc.message)]) from None
    except RecursionError:
        raise SpecError(str(path), [_too_deep("")]) from None
    if not isinstance(data, dict):
        found = type(data).__name__
        raise SpecError(str(path), [SpecProblem("", f"a spec is a mapping, got {found}")])
    problems: list[SpecProblem] = []
    expanded = _expand(data, "", problems)
    if problems:
        raise SpecError(str(path), problems)
    return cast(dict[str, Any], expanded)


# No option takes a number anywhere near this long, and Python writes no int longer in decimal
# (``str`` and ``repr`` raise past 4300 digits): a spec holding one could not be shown in an
# error, nor saved (an eval run's run.json) and loaded back.
MAX_DIGITS = 4300


def _too_many_digits(where: str) -> str:
    return (
        f"a number with more than {MAX_DIGITS} digits{where}; no option takes one (a limit "
        "that is never to be reached is left out)"
    )


def _huge(value: object) -> bool:
    """An int with more than :data:`MAX_DIGITS` decimal digits (found without writing it)."""
    return isinstance(value, int) and value.bit_length() > 3 * MAX_DIGITS and abs(value) >= _HUGE


_HUGE = 10**MAX_DIGITS


class _TooManyDigits(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _read_json(text: str) -> Any:
    def parse_int(literal: str) -> int:
        if len(literal.lstrip("-")) > MAX_DIGITS:
            line = text.count("\n", 0, max(text.find(literal), 0)) + 1
            raise _TooManyDigits(_too_many_digits(f" at line {line}"))
        return int(literal)

    return json.loads(text, parse_int=parse_int)


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader, whose every failure to build a value is a YAML error with its
    line and column: its constructors raise ValueError, IndexError, KeyError... on a tag that
    does not fit its value (``!!int kind``, an empty ``!!float``, ``!!bool maybe``, a date such
    as 2024-13-45), and Python refuses to read an int of over 4300 digits."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (yaml.YAMLError, RecursionError):
            raise
        except (ValueError, TypeError, LookupError, AttributeError, ArithmeticError) as exc:
            tag = node.tag.replace("tag:yaml.org,2002:", "!!")
            why = f" ({exc})" if isinstance(exc, ValueError) else ""
            raise yaml.constructor.ConstructorError(
                None, None, f"{show_value(node.value)} cannot be read as {tag}{why}; write a "
                "value of that type, or quote it to keep it as text", node.start_mark,
            ) from None  # fmt: skip

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        literal = str(self.construct_scalar(node))
        value = None if len(literal) > MAX_DIGITS else super().construct_yaml_int(node)
        if value is None or _huge(value):
            mark = node.start_mark
            raise _TooManyDigits(
                _too_many_digits(f" at line {mark.line + 1}, column {mark.column + 1}")
            )
        return value


_SpecLoader.add_constructor("tag:yaml.org,2002:int", _SpecLoader.construct_yaml_int)


def _too_deep(path: str) -> SpecProblem:
    parts = path.split(".")
    return SpecProblem(
        ".".join(parts[:4]) + (".…" if len(parts) > 4 else ""),
        f"nested more than {_MAX_DEPTH} levels deep; a spec is a few levels deep (a strategy "
        "inside a strategy inside a strategy...)",
    )


# A spec is a few dozen values; YAML aliases that repeat each other can make a short file
# stand for billions (each level's alias used ten times in the next), all walked here.
_MAX_VALUES = 100_000
# A spec nests a few levels (a strategy's candidates, an adaptive strategy's routes, a
# verifier's options); data nested thousands deep would exhaust the stack of every walk.
_MAX_DEPTH = 100


@dataclass
class _Walk:
    """What :func:`_expand` has seen: the containers it is inside (a YAML alias inside its own
    anchor makes a structure that contains itself) and how many values so far."""

    inside: set[int]
    values: int = 0
    too_large: bool = False


def _expand(value: Any, path: str, problems: list[SpecProblem], walk: _Walk | None = None) -> Any:
    """``value`` with environment variables in its strings replaced; a structure that contains
    itself, one too large or too deep to be a spec, a number too long to write and text that
    is not UTF-8 are problems. Both ways in (a file, data) pass here."""
    walk = walk or _Walk(set())
    walk.values += 1
    if walk.too_large:
        return None
    if walk.values > _MAX_VALUES:
        walk.too_large = True
        problems.append(
            SpecProblem(path, f"the spec holds more than {_MAX_VALUES} values (YAML aliases that "
                        "repeat each other?); a spec is a few dozen")
        )  # fmt: skip
        return None
    if isinstance(value, dict | list):
        if id(value) in walk.inside:
            problems.append(
                SpecProblem(path, "refers to itself (a YAML alias inside its own anchor); a "
                            "spec cannot contain itself: write the nested part out in full")
            )  # fmt: skip
            return None
        if len(walk.inside) >= _MAX_DEPTH:
            walk.too_large = True  # one problem, not one per deep branch
            problems.append(_too_deep(path))
            return None
        walk.inside.add(id(value))
        try:
            if isinstance(value, dict):
                return {
                    k: _expand(v, f"{path}.{k}" if path else str(k), problems, walk)
                    for k, v in value.items()
                }
            return [_expand(v, f"{path}.{i}", problems, walk) for i, v in enumerate(value)]
        finally:
            walk.inside.discard(id(value))
    if _huge(value):
        problems.append(SpecProblem(path, _too_many_digits("")))
        return None
    if not isinstance(value, str):
        return value
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            problems.append(
                SpecProblem(path, f"not valid UTF-8 text: a lone surrogate "
                            f"{value[exc.start]!a} at character {exc.start} (an escape such "
                            "as \\ud800 that is half of a pair); write the character itself")
            )  # fmt: skip
            return value
    if "${" not in value:
        return value
    unset: list[str] = []
    expanded = expand_variables(value, unset)
    problems.extend(
        SpecProblem(path, f"the environment variable {name} is not set (write "
                    f"${{{name}:-default}} for a default)")
        for name in unset
    )  # fmt: skip
    return expanded


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
    references = list(_references(data, ""))
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        # Where a part names another file, pydantic's complaint about it adds nothing.
        told = tuple(r.path for r in references)
        found = [_problem(e) for e in exc.errors()]
        problems = [p for p in found if not p.path.startswith(told)] + problems
    problems = references + problems
    if problems:
        raise SpecError(name, problems)
    return spec


_FILE_SUFFIXES = (".yaml", ".yml", ".json")
_NESTED = ("strategy", "candidates")


def _references(data: Any, prefix: str) -> Iterator[SpecProblem]:
    """Parts that try to bring in another file: a spec has no include or ``$ref``, its nested
    strategies (``candidates``, ``routes``) are written in place."""
    if isinstance(data, list):
        for i, item in enumerate(data):
            yield from _references(item, f"{prefix}.{i}")
        return
    if not isinstance(data, Mapping):
        return
    for key, value in data.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        nested = key in _NESTED or prefix.endswith("routes")
        by_key = key in ("$ref", "include", "$include")
        if by_key or (nested and isinstance(value, str) and value.lower().endswith(_FILE_SUFFIXES)):
            yield SpecProblem(
                prefix if by_key else path,
                f"a spec cannot refer to another file ({value!r}): there is no include or "
                "$ref; write the strategy here, e.g. candidates: {kind: self_refine, rounds: 2}",
            )
        else:
            yield from _references(value, path)


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
_TAGS = {member.model_fields["kind"].default for member in get_args(get_args(RouteSpec)[0])}


def _problem(error: Mapping[str, Any]) -> SpecProblem:
    loc = [str(part) for part in error["loc"]]
    parts = [p for i, p in enumerate(loc) if not (p in _TAGS and i > 0) and "[" not in p]
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown option (misspelt?)"
    elif error["type"] == "missing":
        message = "required"
    elif not isinstance(value := error.get("input"), dict | list) and value is not None:
        message = f"{message} (got {show_value(value)})"
    return SpecProblem(".".join(parts), message)

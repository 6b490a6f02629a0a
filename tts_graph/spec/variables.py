"""Environment variables in a spec's text: ``${NAME}``, ``${NAME:-default}``, and ``$${`` for
a ``${`` meant literally.

Expansion is one pass: what a variable or a default brings in is kept as it is, never expanded
again. :func:`escape_variables` is its inverse, so a loaded spec written out (an eval run's
``run.json``) loads back the same.
"""

from __future__ import annotations

import os
import re

from tts_graph.errors import ConfigError

__all__ = ["escape_variables", "expand_variables"]

# ``$${``, or the start of ``${NAME}`` / ``${NAME:-default}``: a default runs to the brace that
# closes the ``${`` (it may hold braces of its own).
_VARIABLE = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-|\})")


def expand_variables(text: str, unset: list[str] | None = None) -> str:
    """``text`` with each ``${NAME}`` replaced by the environment variable ``NAME``, each
    ``${NAME:-default}`` by it or (when it is not set) by ``default`` taken literally, and each
    ``$${`` by ``${``. A ``${`` of no such form is kept as text. The name of a variable that is
    not set and has no default is added to ``unset``; without ``unset`` it is a
    :class:`~tts_graph.errors.ConfigError`.

    >>> expand_variables("${TTS_GRAPH_DOCTEST_UNSET:-${B}} costs $${5}")
    '${B} costs ${5}'
    """
    missing: list[str] = [] if unset is None else unset
    closing = _closing_braces(text) if ":-" in text else {}
    out: list[str] = []
    at = 0
    while (match := _VARIABLE.search(text, at)) is not None:
        out.append(text[at : match.start()])
        at = match.end()
        name, after = match.group(1), match.group(2)
        if name is None:
            out.append("${")
            continue
        default = None
        if after == ":-":
            end = closing.get(match.start() + 1)
            if end is None:  # never closed: not a variable
                out.append(match.group(0))
                continue
            default, at = text[at:end], end + 1
        value = os.environ.get(name, default)
        if value is None:
            missing.append(name)
            value = ""
        out.append(value)
    out.append(text[at:])
    if unset is None and missing:
        raise ConfigError(
            f"the environment variable {missing[0]} is not set (write "
            f"${{{missing[0]}:-default}} for a default)"
        )
    return "".join(out)


def escape_variables(text: str) -> str:
    """``text`` written so that :func:`expand_variables` gives it back.

    >>> escape_variables("${B} costs $5")
    '$${B} costs $5'
    >>> expand_variables(escape_variables("$${B}"))
    '$${B}'
    """
    return text.replace("${", "$${")


def _closing_braces(text: str) -> dict[int, int]:
    """The position of the ``}`` that closes each ``{`` (one pass over the text)."""
    closing: dict[int, int] = {}
    opened: list[int] = []
    for i, char in enumerate(text):
        if char == "{":
            opened.append(i)
        elif char == "}" and opened:
            closing[opened.pop()] = i
    return closing

"""A griffe extension for the API reference: the library's docstrings are prose in the
reStructuredText habit (Sphinx roles, doctest examples, ``::`` literal blocks), which Markdown
would show as stray colons and nested block quotes. Before mkdocstrings renders them, this turns

- ``:class:`~tts_graph.state.TTSState``` (and ``:func:``, ``:meth:``, ``:mod:``, ``:data:``,
  ``:attr:``, ``:exc:``) into a cross-reference to the rendered object, or into plain code when
  the target is not in the reference (a private helper): it never breaks a strict build;
- runs of ``>>>`` lines (with their continuation and output lines) into ``pycon`` code blocks,
  dropping ``# doctest: +SKIP`` markers;
- a paragraph ending in ``::`` followed by an indented block into that paragraph and a Python
  code block.

Loaded by mkdocs.yml (``extensions: [docs/griffe_rst.py]``); the library's files are not changed.
"""

from __future__ import annotations

import html
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(class|func|meth|mod|data|attr|exc|obj):`(~?)([^`]+)`")
_DOCTEST_FLAG = re.compile(r"\s*#\s*doctest:.*$")
_PACKAGE = "tts_graph"


def _resolve(obj: griffe.Object, target: str) -> str | None:
    """The full path of ``target`` as seen from ``obj``'s scope, or None."""
    if target.startswith(_PACKAGE + ".") or target == _PACKAGE:
        return target
    head, _, rest = target.partition(".")
    scope: Any = obj
    while scope is not None:
        try:
            path = scope.resolve(head)
        except (griffe.NameResolutionError, AttributeError, KeyError):
            scope = scope.parent
            continue
        return f"{path}.{rest}" if rest else path
    return None


def _role(obj: griffe.Object, match: re.Match[str]) -> str:
    short, target = match.group(2) == "~", match.group(3).strip()
    shown = target.rsplit(".", 1)[-1] if short else target
    path = _resolve(obj, target)
    code = f"<code>{html.escape(shown)}</code>"
    if path is None or not path.startswith(_PACKAGE):
        return f"`{shown}`"
    # "optional": a target that is not rendered (private, or not in the reference) becomes
    # plain code instead of a warning.
    return f'<autoref identifier="{html.escape(path)}" optional>{code}</autoref>'


def _fence(lines: list[str], language: str) -> list[str]:
    return ["", f"```{language}", *lines, "```", ""]


def _blocks(text: str) -> str:
    """Doctest runs and ``::`` literal blocks as fenced code."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    in_fence = False
    while i < len(lines):
        line = lines[i]
        stripped = line.lstrip()
        if stripped.startswith("```"):
            in_fence = not in_fence
        if not in_fence and stripped.startswith(">>>"):
            indent = len(line) - len(stripped)
            run: list[str] = []
            while i < len(lines) and lines[i].strip():
                run.append(_DOCTEST_FLAG.sub("", lines[i][indent:]))
                i += 1
            out += _fence(run, "pycon")
            continue
        if not in_fence and line.rstrip().endswith("::") and not line.rstrip().endswith(":::"):
            out.append(line.rstrip()[:-1])
            j = i + 1
            while j < len(lines) and not lines[j].strip():
                j += 1
            block: list[str] = []
            block_indent: int | None = None
            while j < len(lines) and (not lines[j].strip() or lines[j][:1].isspace()):
                if block_indent is None and lines[j].strip():
                    block_indent = len(lines[j]) - len(lines[j].lstrip())
                block.append(lines[j])
                j += 1
            if block:
                while block and not block[-1].strip():
                    block.pop()
                cut = block_indent or 0
                out += _fence([b[cut:] for b in block], "python")
                i = j
                continue
        out.append(line)
        i += 1
    return "\n".join(out)


def convert(obj: griffe.Object, text: str) -> str:
    """One docstring, from reST habits to Markdown."""
    text = _blocks(text)
    # Roles outside code blocks only: split on fences and leave the code alone.
    parts = re.split(r"(```.*?```)", text, flags=re.DOTALL)
    return "".join(
        part if part.startswith("```") else _ROLE.sub(lambda m: _role(obj, m), part)
        for part in parts
    )


def _walk(obj: griffe.Object, seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if obj.docstring is not None:
        obj.docstring.value = convert(obj, obj.docstring.value)
    for member in obj.members.values():
        if isinstance(member, griffe.Object):  # not an alias: its target is walked where it lives
            _walk(member, seen)


class RstToMarkdown(griffe.Extension):
    """Rewrite the docstrings of the library's package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.name == _PACKAGE:
            _walk(pkg, set())

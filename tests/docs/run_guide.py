"""Run the Python code of one docs page, as a reader would paste it into one session.

    .venv/bin/python tests/docs/run_guide.py docs/guides/budget.md

Every ```python block runs in page order in one namespace (like a doctest session), so a later
block uses what an earlier one defined. A block marked ```python { .skip title="why" } is shown
but not run: it needs something the embedded model cannot do (the title says what). Errors point
at the page's own lines.
"""

from __future__ import annotations

import re
import sys
import textwrap
import time
import types
from dataclasses import dataclass
from pathlib import Path

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")


@dataclass(frozen=True)
class Block:
    """A fenced ```python block: its code, the page line its code starts on, its fence's info
    string, and whether the page marks it as not to be run."""

    source: str
    line: int
    info: str
    skip: bool


def python_blocks(page: Path) -> list[Block]:
    """The page's ```python blocks, in order (indented ones, e.g. inside an admonition, too)."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, info = opening["fence"], opening["info"].strip()
        start = i + 1
        i = start
        while i < len(lines) and not (
            lines[i].strip().startswith(fence) and set(lines[i].strip()) <= set(fence[0])
        ):
            i += 1
        language = info.split("{", 1)[0].strip() or info
        if language == "python":
            body = textwrap.dedent("\n".join(lines[start:i]))
            blocks.append(Block(body, start + 1, info, skip=bool(re.search(r"\.skip\b", info))))
        i += 1
    return blocks


def run(page: Path) -> int:
    """Run the page's blocks; returns how many ran."""
    # The blocks run as one script: a module named __main__, so that what inspects a class's
    # module (typing.get_type_hints on a state schema, pickle) finds the page's names.
    module = types.ModuleType("__main__")
    module.__file__ = str(page)
    sys.modules["__main__"] = module
    namespace = module.__dict__
    ran = 0
    for block in python_blocks(page):
        if block.skip:
            continue
        # Padded so that a traceback names the page's own line numbers.
        code = compile("\n" * (block.line - 1) + block.source, str(page), "exec")
        started = time.perf_counter()
        exec(code, namespace)
        took = time.perf_counter() - started
        print(f"{page.name}:{block.line}: ran in {took:.1f} s", file=sys.stderr)
        ran += 1
    return ran


if __name__ == "__main__":
    page = Path(sys.argv[1]).resolve()
    count = run(page)
    print(f"{page.name}: {count} block(s) ran", file=sys.stderr)

"""The docs' table of faults, bad input and attacks (docs/guides/reliability.md) names the test
of each case: every test it names exists, and every test file here is in the table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guides" / "reliability.md"
HERE = Path(__file__).resolve().parent

# "file.py::name", or "::name" after one of them in the same cell (same file).
_REF = re.compile(r"(?:((?:tests/[\w/]+/)?\w+\.py))?::(\w+)")


def named_tests() -> list[tuple[Path, str]]:
    found = []
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            continue
        cell = line.rstrip("|").rsplit("|", 1)[-1]
        current: Path | None = None
        for file, name in _REF.findall(cell):
            if file:
                current = ROOT / file if file.startswith("tests/") else HERE / file
            assert current is not None, f"{cell!r}: '::{name}' follows no file"
            found.append((current, name))
    return found


def test_every_test_the_table_names_exists():
    refs = named_tests()
    assert len(refs) > 50
    missing = []
    for path, name in refs:
        defined = {
            node.name
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        } if path.exists() else set()  # fmt: skip
        if name not in defined:
            missing.append(f"{path.relative_to(ROOT)}::{name}")
    assert not missing, f"the reliability table names tests that do not exist: {missing}"


def test_every_reliability_test_file_is_in_the_table():
    listed = {path.name for path, _ in named_tests()}
    here = {p.name for p in HERE.glob("test_*.py")} - {Path(__file__).name}
    assert here <= listed, f"not in docs/guides/reliability.md: {sorted(here - listed)}"

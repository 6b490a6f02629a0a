"""Every example script runs against the real server and prints what it promises."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = [
    p
    for p in sorted((Path(__file__).parents[2] / "examples").glob("*.py"))
    if not p.name.startswith("_")
]


def test_there_are_examples():
    assert EXAMPLES


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_runs(script, vllm_server):
    out = subprocess.run(
        [sys.executable, str(script), "--base-url", vllm_server.base_url],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    assert "decision:" in out.stdout

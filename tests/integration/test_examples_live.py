"""Every example script runs against the real server and prints what it promises, and can be
copied out of `examples/` as it is: public imports only, no helper next to it, the server's URL
from --base-url or TTS_GRAPH_BASE_URL."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.py"))

# The public surface: the package and its public subpackages, never a module inside them.
PUBLIC_MODULES = {"tts_graph", "tts_graph.nodes", "tts_graph.verifiers", "tts_graph.integrations.tool"}  # fmt: skip


def test_there_are_examples():
    assert EXAMPLES
    assert not [p.name for p in EXAMPLES if p.name.startswith("_")], "no private helpers"


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.name)
def test_example_is_copyable(script):
    source = script.read_text()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported = [(alias.name, None) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module, f"line {node.lineno}: a relative import"
            imported = [(node.module, alias.name) for alias in node.names]
        else:
            continue
        for module, name in imported:
            top = module.split(".")[0]
            assert top not in {p.stem for p in EXAMPLES}, f"line {node.lineno}: imports {module}"
            if top != "tts_graph":
                continue
            assert module in PUBLIC_MODULES, f"line {node.lineno}: {module} is not public"
            if name is not None:
                assert name in importlib.import_module(module).__all__, f"{module}.{name}"
    docstring = ast.get_docstring(tree) or ""
    assert "tts-graph serve" in docstring and "--base-url" in docstring
    assert "TTS_GRAPH_BASE_URL" in source


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

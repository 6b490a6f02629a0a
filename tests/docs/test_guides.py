"""The Python code of every docs page runs, as written, against a real vLLM server.

Each page runs in its own interpreter (``run_guide.py``): its blocks in order, in one namespace,
with ``TTS_GRAPH_BASE_URL`` pointing at the test server and warnings as errors. A subprocess
keeps the pages' ``asyncio.run`` away from pytest's event loop and LangSmith's tracing settings
(read once per process) away from the other tests. The tracing guide runs against a loopback
LangSmith endpoint, and what it says a trace holds is checked there.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from langsmith_sink import Sink, langsmith_sink
from run_guide import python_blocks

DOCS = Path(__file__).resolve().parents[2] / "docs"
RUNNER = Path(__file__).with_name("run_guide.py")
PAGES = sorted(p for p in DOCS.rglob("*.md") if python_blocks(p))
TRACED = DOCS / "guides" / "read-decisions.md"


def page_id(page: Path) -> str:
    return str(page.relative_to(DOCS))


def run_page(page: Path, base_url: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_"))}
    return subprocess.run(
        [sys.executable, "-W", "error", str(RUNNER), str(page)],
        cwd=cwd,
        env={**clean, "TTS_GRAPH_BASE_URL": base_url, **env},
        capture_output=True,
        text=True,
        timeout=850,
    )


@pytest.mark.integration
@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_the_python_code_of_a_page_runs(page, vllm_server, tmp_path):
    if page == TRACED:
        with langsmith_sink() as sink:
            out = run_page(page, vllm_server.base_url, tmp_path, LANGSMITH_TRACING="true",
                           LANGSMITH_API_KEY="test", LANGSMITH_ENDPOINT=sink.url)  # fmt: skip
        assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-8000:]}"
        check_trace(sink)
    else:
        out = run_page(page, vllm_server.base_url, tmp_path)
        assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-8000:]}"
    ran = sum(not b.skip for b in python_blocks(page))
    assert f"{page.name}: {ran} block(s) ran" in out.stderr


def check_trace(sink: Sink) -> None:
    """What the tracing guide says its named run's trace holds."""
    runs = sink.runs()
    [root] = [r for r in runs if r.get("name") == "best-of-4"]
    assert {"docs", "best-of-n"} <= set(root["tags"])
    assert root["extra"]["metadata"]["dataset"] == "arithmetic"
    trace = [r for r in runs if r.get("trace_id") == root["id"]]

    def decisions(name: str) -> list[dict]:
        found = [r["extra"]["metadata"].get("tts_graph") for r in trace if r["name"] == name]
        [recorded] = [d for d in found if d]  # on the node's own run, not LangGraph's step run
        return recorded

    [select] = decisions("select")
    assert select["kind"] == "select" and select["votes"] and "answer" in select
    [fanout] = decisions("fanout")
    assert fanout["requested"] == 4 and fanout["sampled"] >= 1


def test_blocks_are_read_in_order_with_their_lines_and_skip_marks(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n```python\nx = 1\n```\n\n```bash\nls\n```\n\n"
        "!!! note\n    ```python\n    y = x + 1\n    ```\n\n"
        '```python { .skip title="Needs tools" }\nz = 3\n```\n'
    )
    blocks = python_blocks(page)
    assert [(b.source, b.line, b.skip) for b in blocks] == [
        ("x = 1", 4, False), ("y = x + 1", 13, False), ("z = 3", 17, True),
    ]  # fmt: skip


def test_every_skipped_block_says_why():
    skipped = [(p, b) for p in PAGES for b in python_blocks(p) if b.skip]
    for page, block in skipped:
        assert 'title="' in block.info, f"{page_id(page)}:{block.line} is skipped without a title"
    # Only code that needs a model that calls tools, or a LangGraph Server (the production
    # guide's client: tests/integration/test_langgraph_server_live.py runs the same calls
    # against a server it starts), is not run.
    assert {page_id(p) for p, _ in skipped} <= {
        "guides/add-to-an-agent.md",
        "guides/production.md",
    }

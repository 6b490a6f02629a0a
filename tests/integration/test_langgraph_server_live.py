"""LangGraph Server (``langgraph dev``, in memory) serves the graphs langgraph.json names, and a
``langgraph-sdk`` client runs them over HTTP against the real model server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from langgraph_sdk import get_client

from tts_graph.backends.server import free_port

ROOT = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def langgraph_server(vllm_server, tmp_path_factory) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "TTS_GRAPH_BASE_URL": vllm_server.base_url,
        "LANGGRAPH_CLI_NO_ANALYTICS": "1",
        "LANGSMITH_TRACING": "false",
    }
    log = tmp_path_factory.mktemp("langgraph") / "server.log"
    with open(log, "w") as sink:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "langgraph"), "dev", "--config",
             str(ROOT / "langgraph.json"), "--port", str(port), "--no-browser", "--no-reload"],
            cwd=tmp_path_factory.mktemp("langgraph-cwd"), env=env, stdout=sink,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"langgraph dev exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/ok", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        else:
            pytest.fail(f"langgraph dev did not answer /ok: {log.read_text()[-2000:]}")
        yield url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


async def test_the_server_lists_and_runs_the_graphs(langgraph_server):
    async with get_client(url=langgraph_server) as client:
        await lists_and_runs(client)


async def lists_and_runs(client):
    graphs = {a["graph_id"] for a in await client.assistants.search()}
    assert graphs == {"best_of_n", "chat"}
    state = await client.runs.wait(
        None, "best_of_n",
        input={"question": "What is 7+5?", "budget": {"max_total_tokens": 1500}},
    )  # fmt: skip
    assert state["usage"]["calls"] == 1
    assert 0 < state["usage"]["prompt_tokens"] + state["usage"]["completion_tokens"] <= 1500
    assert [d["kind"] for d in state["decisions"]] == ["fanout", "select"]
    assert len(state["candidates"]) == 8


async def test_the_chat_graph_answers_a_conversation_over_http(langgraph_server):
    async with get_client(url=langgraph_server) as client:
        await answers_a_conversation(client)


async def answers_a_conversation(client):
    thread = await client.threads.create()
    state = await client.runs.wait(
        thread["thread_id"], "chat",
        input={"messages": [{"role": "user", "content": "What is 2+2?"}]},
    )  # fmt: skip
    reply = state["messages"][-1]
    assert reply["type"] == "ai" and reply["content"]
    assert reply["response_metadata"]["tts_graph"]["decisions"][-1]["kind"] == "select"

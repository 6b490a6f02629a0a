"""Every graph factory, composition and example spec, end to end on the real vLLM server; the
adaptive graph's routing; a checkpointed run killed mid-way and resumed."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from tts_graph import SamplingParams
from tts_graph.graphs import (
    VOTE,
    create_adaptive_graph,
    create_best_of_n_graph,
    create_budget_forcing_graph,
    create_self_consistency_graph,
    create_self_refine_graph,
    create_tournament_graph,
)
from tts_graph.spec import build_graph, load_spec
from tts_graph.verifiers import CodeTests, LLMJudge

from fault_proxy import fault_proxy

pytestmark = pytest.mark.integration

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "specs"
SHORT = SamplingParams(temperature=0.7, max_tokens=48)
QUESTION = "What is 7+5? End with 'Answer: <number>'."


def kinds(state: dict[str, Any]) -> list[str]:
    return [d["kind"] for d in state["decisions"]]


def factories(backend: Any) -> dict[str, Any]:
    judge = LLMJudge(backend, sampling=SamplingParams(temperature=0.0, max_tokens=16))
    forcing = create_budget_forcing_graph(
        backend, n=2, max_thinking_tokens=32, answer_max_tokens=16, sampling=SHORT
    )
    return {
        "best_of_n": create_best_of_n_graph(backend, n=3, sampling=SHORT),
        "self_consistency": create_self_consistency_graph(backend, max_samples=4, sampling=SHORT),
        "self_refine": create_self_refine_graph(backend, rounds=1, sampling=SHORT),
        "budget_forcing": forcing,
        "tournament": create_tournament_graph(backend, judge, n=2, judgements=1, sampling=SHORT),
        "adaptive": create_adaptive_graph(backend, probe_n=2, sampling=SHORT),
        "tournament over budget forcing": create_tournament_graph(
            None, judge, candidates=forcing, judgements=1
        ),
    }


@pytest.mark.parametrize(
    "name",
    ["best_of_n", "self_consistency", "self_refine", "budget_forcing", "tournament", "adaptive",
     "tournament over budget forcing"],
)  # fmt: skip
async def test_every_factory_answers_on_the_server(backend, name):
    graph = factories(backend)[name].compile()
    state = await graph.ainvoke({"question": QUESTION})
    assert state["candidates"], kinds(state)
    assert state["response"] is not None and state["strategy"]
    assert state["usage"].calls >= 1 and state["usage"].completion_tokens > 0


# -- the example specs -------------------------------------------------------------------------


def small(path: Path) -> dict[str, Any]:
    """An example spec with short answers, so that it runs quickly on a CPU."""
    data = yaml.safe_load(path.read_text())
    data["sampling"] = {**data.get("sampling", {}), "max_tokens": 48}
    return data


@pytest.mark.parametrize(
    "path",
    [p for p in sorted(EXAMPLES.glob("*.yaml")) if "prm" not in p.name],
    ids=lambda p: p.stem,
)
async def test_every_example_spec_runs_on_the_server(backend, path):
    spec = load_spec(small(path))
    inputs: dict[str, Any] = {"question": QUESTION, "budget": spec.budget}
    if "code" in path.name:
        inputs = {
            "question": 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n',
            "reference": CodeTests(test="assert add(2, 3) == 5", entry_point="add"),
            "budget": spec.budget,
        }
    state = await build_graph(spec, backend).compile().ainvoke(inputs)
    assert state["candidates"] and state["response"] is not None
    assert state["decisions"][-1]["kind"] in {"select", "tournament", "confidence", "route"} or (
        "select" in kinds(state)
    )
    if spec.budget is not None and spec.budget.max_total_tokens is not None:
        assert state["usage"].total_tokens <= spec.budget.max_total_tokens


# -- routing ---------------------------------------------------------------------------------


async def test_the_adaptive_graph_sends_easy_and_hard_questions_down_different_branches(backend):
    sampling = SamplingParams(temperature=0.7, max_tokens=16)
    judge = LLMJudge(backend, sampling=SamplingParams(temperature=0.0, max_tokens=16))
    routes = {
        "easy": VOTE,
        "medium": create_self_consistency_graph(backend, max_samples=6, sampling=sampling),
        "hard": create_tournament_graph(backend, judge, n=2, judgements=1, sampling=sampling),
    }
    graph = create_adaptive_graph(backend, probe_n=8, sampling=sampling, routes=routes).compile()
    # The model agrees with itself on a sum it is told; it does not on a random number.
    easy = await graph.ainvoke({"question": "What is 2+2? Reply only 'Answer: 4'."})
    hard = await graph.ainvoke(
        {"question": "Write one random five-digit number, then 'Answer: <the number>'."}
    )

    def route(state: dict[str, Any]) -> dict[str, Any]:
        return next(d for d in state["decisions"] if d["kind"] == "route")

    assert route(easy)["bin"] == "easy" and route(easy)["branch"] == VOTE
    assert easy["usage"].calls == 1  # the probe alone
    assert route(hard)["bin"] != "easy" and route(hard)["strategy"] != VOTE
    assert hard["usage"].calls > 1 and route(hard)["candidates_reused"] == 8


# -- checkpoints: killed mid-way, resumed ------------------------------------------------------

RUN = textwrap.dedent(
    """
    import asyncio, sys
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
    from langgraph.graph import END, StateGraph
    from tts_graph import SamplingParams, TTSState, VLLMBackend
    from tts_graph.nodes import Branch, add_send_fanout, make_select_node

    async def main(base_url, db, resume):
        async with AsyncSqliteSaver.from_conn_string(db) as saver, VLLMBackend(base_url) as backend:
            builder = StateGraph(TTSState)
            # Three short candidates finish long before the three long ones.
            add_send_fanout(
                builder, backend, n=6, branches=[Branch(max_tokens=8), Branch(max_tokens=400)],
                sampling=SamplingParams(temperature=0.8, max_tokens=400), target="select",
            )
            builder.add_node("select", make_select_node())
            builder.add_edge("select", END)
            graph = builder.compile(checkpointer=saver)
            config = {"configurable": {"thread_id": "run"}}
            if resume:
                snapshot = await graph.aget_state(config)
                done = sum(1 for t in snapshot.tasks if t.result is not None)
                print("done-before", done, flush=True)
                state = await graph.ainvoke(None, config)
                print("candidates", len(state["candidates"]), flush=True)
                return
            question = "Count from 1 to 300, one number per line."
            async for update in graph.astream({"question": question}, config,
                                              stream_mode="updates", durability="sync"):
                if "fanout_branch" in update:
                    print("branch-done", flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] == "resume"))
    """
)


async def test_a_killed_run_resumes_without_redoing_finished_candidates(vllm_server, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RUN)
    db = str(tmp_path / "checkpoints.sqlite")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    first = await asyncio.create_subprocess_exec(
        sys.executable, str(script), vllm_server.base_url, db, "start",
        stdout=asyncio.subprocess.PIPE, env=env,
    )  # fmt: skip
    assert first.stdout is not None
    for _ in range(3):  # the short candidates are done and checkpointed
        line = await first.stdout.readline()
        assert line.decode().strip() == "branch-done", line
    await asyncio.sleep(0.5)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    # The resumed run talks to the server through a counting proxy: only its own requests count.
    with fault_proxy(vllm_server.root_url, fail_posts=0) as proxy:
        resumed = await asyncio.to_thread(
            subprocess.run, [sys.executable, str(script), proxy.base_url, db, "resume"],
            capture_output=True, text=True, env=env, timeout=600,
        )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    done = int(re.search(r"done-before (\d+)", resumed.stdout).group(1))
    assert 3 <= done < 6
    assert re.search(r"candidates 6", resumed.stdout)
    # Only the candidates that had not finished before the kill were requested again.
    assert proxy.posts == 6 - done

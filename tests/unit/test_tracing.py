"""What a LangSmith trace of a graph holds: a real langsmith client posts to a loopback endpoint.

Each traced script runs in a subprocess, because langsmith caches its environment settings (and
``redact_candidates`` installs a process-wide client): tracing must not leak into other tests.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from langchain_core.load import dumpd
from langchain_core.messages import AIMessage, HumanMessage
from langsmith_sink import langsmith_sink
from pydantic import BaseModel

from tts_graph import Candidate, ConfigError
from tts_graph.backends import GenerationRequest
from tts_graph.testing import FakeBackend
from tts_graph.tracing import (
    REDACTED,
    hide_candidate_texts,
    llm_run,
    strategy_metadata,
)

Run = dict[str, Any]

PLAIN = """
    import asyncio, contextlib, json
    import langsmith
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from langchain_core.messages import HumanMessage
    from langchain_core.tracers.langchain import wait_for_all_tracers
    from langgraph.graph import END, START, StateGraph
    from tts_graph import Budget, ChatModelBackend, ChatState, TTSState, create_best_of_n_graph
    from tts_graph.backends import GenerationRequest
    from tts_graph.nodes import add_send_fanout, make_difficulty_node, make_select_node
    from tts_graph.testing import FakeBackend
    from tts_graph.tracing import USAGE_COUNTED_KEY, strategy_metadata

    votes = FakeBackend(lambda r, i: f"Answer: {[5, 7, 7][i % 3]}")
    bon = create_best_of_n_graph(votes, n=3).compile()
    asyncio.run(bon.ainvoke({"question": "q"}, config={"run_name": "bon", "tags": ["t1"]}))

    # A strategy named on its nodes, a difficulty probe whose samples all differ (hard), then
    # one Send branch per candidate; run synchronously.
    builder = StateGraph(TTSState)
    builder.add_node("difficulty", make_difficulty_node(FakeBackend(lambda r, i: f"Answer: {i}")),
                     metadata=strategy_metadata("routed"))
    builder.add_node("select", make_select_node(), metadata=strategy_metadata("routed"))
    builder.add_edge(START, "difficulty")
    add_send_fanout(builder, votes, n=3, source="difficulty", target="select")
    builder.add_edge("select", END)
    builder.compile().invoke({"question": "q"}, config={"run_name": "routed"})

    chat = create_best_of_n_graph(votes, n=3, state_schema=ChatState).compile()
    async def stream():
        streamed = []
        async for mode, chunk in chat.astream(
            {"messages": [HumanMessage("q")]}, config={"run_name": "chat"},
            stream_mode=["updates", "custom", "messages"],
        ):
            if mode == "messages":
                streamed.append(chunk[0].content)
        return streamed
    print(json.dumps({"streamed": asyncio.run(stream())}))

    async def fail(request, i):
        raise ValueError("the server said no")
    async def direct():
        request = GenerationRequest.chat([{"role": "user", "content": "q"}], n=2)
        async with langsmith.trace("direct"):
            async with contextlib.aclosing(votes.stream(request)) as chunks:
                async for _ in chunks:
                    break
            with contextlib.suppress(ValueError):
                await FakeBackend(fail).generate(request)
    asyncio.run(direct())

    bon.invoke({"question": "q", "budget": Budget(max_total_tokens=600)},
               config={"run_name": "counted", "metadata": {USAGE_COUNTED_KEY: True}})
    model = FakeListChatModel(responses=["Answer: 1", "Answer: 2"])
    by_model = create_best_of_n_graph(ChatModelBackend(model), n=2).compile()
    by_model.invoke({"question": "q"}, config={"run_name": "chat_model"})

    from tts_graph import create_adaptive_graph
    adaptive = create_adaptive_graph(FakeBackend(lambda r, i: f"Answer: {i}"), probe_n=4)
    adaptive.compile().invoke({"question": "q"}, config={"run_name": "adaptive"})
    wait_for_all_tracers()
"""

REDACTING = """
    import asyncio
    from langchain_core.messages import HumanMessage
    from langchain_core.tracers.langchain import wait_for_all_tracers
    import tts_graph.tracing
    from tts_graph import ChatState, create_best_of_n_graph
    from tts_graph.testing import FakeBackend

    tts_graph.tracing.redact_candidates()
    backend = FakeBackend(lambda r, i: f"SECRET-{i} so the Answer: {[5, 7, 7][i]}")
    bon = create_best_of_n_graph(backend, n=3).compile()
    asyncio.run(bon.ainvoke({"question": "q"}, config={"run_name": "bon"}))
    chat = create_best_of_n_graph(backend, n=3, state_schema=ChatState).compile()
    async def stream():
        async for _ in chat.astream({"messages": [HumanMessage("q")]}, config={"run_name": "chat"},
                                    stream_mode="messages"):
            pass
    asyncio.run(stream())
    wait_for_all_tracers()
"""


def traced(script: str) -> tuple[list[Run], str]:
    """The runs the script's traces sent, and what it printed."""
    with langsmith_sink() as sink:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("LANGSMITH_", "LANGCHAIN_"))
        }
        env.update(LANGSMITH_TRACING="true", LANGSMITH_API_KEY="test", LANGSMITH_ENDPOINT=sink.url)
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert out.returncode == 0, out.stderr
        return sink.runs(), out.stdout


@pytest.fixture(scope="module")
def plain() -> tuple[list[Run], str]:
    return traced(PLAIN)


@pytest.fixture(scope="module")
def redacted() -> list[Run]:
    return traced(REDACTING)[0]


def trace_of(runs: list[Run], root_name: str) -> list[Run]:
    [root] = [r for r in runs if r.get("name") == root_name and not r.get("parent_run_id")]
    return [r for r in runs if r.get("trace_id") == root["id"]]


def root_of(trace: list[Run]) -> Run:
    [root] = [r for r in trace if not r.get("parent_run_id")]
    return root


def node_runs(trace: list[Run], name: str) -> list[Run]:
    """The node's own runs (the runnable's, under LangGraph's step run of the same name)."""
    ids = {r["id"]: r for r in trace}
    return [
        r
        for r in trace
        if r.get("name") == name and ids.get(str(r.get("parent_run_id")), {}).get("name") == name
    ]


def children(trace: list[Run], parent: Run) -> list[Run]:
    return [r for r in trace if str(r.get("parent_run_id")) == parent["id"]]


def llm_runs(trace: list[Run]) -> list[Run]:
    return [r for r in trace if r.get("run_type") == "llm"]


def metadata(run: Run) -> dict[str, Any]:
    return dict((run.get("extra") or {}).get("metadata") or {})


# -- decisions and requests -----------------------------------------------------------------


def test_each_node_run_carries_its_decision_as_metadata(plain):
    trace = trace_of(plain[0], "bon")
    assert "t1" in root_of(trace)["tags"]
    [select] = node_runs(trace, "select")
    [record] = metadata(select)["tts_graph"]
    assert record["kind"] == "select"
    assert record["votes"] == {"5": 1, "7": 2}
    assert record["answer"] == "7"
    [fanout] = node_runs(trace, "fanout")
    assert metadata(fanout)["tts_graph"][0]["sampled"] == 3


def test_each_request_is_an_llm_run_under_the_node_that_made_it(plain):
    trace = trace_of(plain[0], "bon")
    [fanout] = node_runs(trace, "fanout")
    [request] = llm_runs(trace)
    assert children(trace, fanout) == [request]
    assert request["name"] == "FakeBackend"
    assert request["inputs"]["messages"][-1] == {"role": "user", "content": "q"}
    choices = request["outputs"]["choices"]
    assert [c["message"]["content"] for c in choices] == ["Answer: 5", "Answer: 7", "Answer: 7"]
    assert {c["finish_reason"] for c in choices} == {"stop"}
    assert [c["completion_tokens"] for c in choices] == [2, 2, 2]
    meta = metadata(request)
    # FakeBackend counts words: the default system prompt and "q" make 20 prompt tokens.
    usage = {"input_tokens": 20, "output_tokens": 6, "total_tokens": 26}
    assert meta["usage_metadata"] == usage
    assert request["outputs"]["usage_metadata"] == usage
    assert meta["ls_model_name"] == "fake" and meta["ls_model_type"] == "chat"
    assert meta["ls_temperature"] == 0.7 and meta["ls_max_tokens"] == 256
    assert meta["ls_invocation_params"]["n"] == 3 and meta["ls_invocation_params"]["seed"] == 0
    assert meta["langgraph_node"] == "fanout"  # tokens can be grouped by node
    assert "tts_graph" not in meta  # the decisions stay on the node's run
    # Only the requests carry usage: LangSmith adds it up into the node and the trace.
    assert [r["name"] for r in trace if "usage_metadata" in metadata(r)] == ["FakeBackend"]


def test_request_runs_are_tagged_nostream_and_only_the_chosen_reply_streams(plain):
    runs, stdout = plain
    trace = trace_of(runs, "chat")
    [request] = llm_runs(trace)
    assert "nostream" in request["tags"]
    # Three candidates were sampled; the messages stream carries only the chosen reply.
    assert json.loads(stdout.splitlines()[-1]) == {"streamed": ["Answer: 7"]}
    assert all("nostream" in r["tags"] for r in llm_runs(runs))


def test_a_stream_read_in_part_and_a_failed_request_are_traced(plain):
    trace = trace_of(plain[0], "direct")
    streamed, failed = sorted(llm_runs(trace), key=lambda r: r["dotted_order"])
    assert metadata(streamed)["tts_graph_closed_early"] is True
    [choice] = streamed["outputs"]["choices"]  # the reader stopped after the first word
    assert choice["message"]["content"] == "Answer: " and choice["finish_reason"] is None
    assert metadata(streamed)["usage_metadata"]["output_tokens"] == 1
    assert failed["error"] == "ValueError: the server said no"
    assert "usage_metadata" not in metadata(failed)


def test_tokens_counted_outside_the_graph_are_not_counted_again(plain):
    trace = trace_of(plain[0], "counted")
    [request] = llm_runs(trace)
    assert "usage_metadata" not in metadata(request)
    assert "usage_metadata" not in request["outputs"]
    assert metadata(request)["tts_graph_usage"]["total_tokens"] == 26


def test_a_request_run_says_what_the_budget_cut(plain):
    [request] = llm_runs(trace_of(plain[0], "counted"))
    cut = {"limit": "total tokens", "n": [3, 3], "max_tokens": [256, 193]}
    assert metadata(request)["tts_graph_budget"] == cut
    assert metadata(request)["ls_max_tokens"] == 193  # the request as sent
    [request] = llm_runs(trace_of(plain[0], "bon"))
    assert "tts_graph_budget" not in metadata(request)


def test_a_chat_model_backend_request_is_traced_once(plain):
    trace = trace_of(plain[0], "chat_model")
    requests = llm_runs(trace)
    # The model has no n: two calls for two samples, inside one request, traced as one run.
    assert [r["name"] for r in requests] == ["ChatModelBackend"]
    contents = [c["message"]["content"] for c in requests[0]["outputs"]["choices"]]
    assert contents == ["Answer: 1", "Answer: 2"]


# -- strategy and difficulty ----------------------------------------------------------------


def test_the_strategy_and_the_bin_tag_the_graph_runs(plain):
    trace = trace_of(plain[0], "routed")
    root = root_of(trace)
    assert {"strategy:routed", "difficulty:hard"} <= set(root["tags"])
    assert metadata(root)["tts_graph_strategy"] == "routed"
    assert metadata(root)["tts_graph_difficulty"] == "hard"
    [difficulty] = node_runs(trace, "difficulty")
    assert {"strategy:routed", "difficulty:hard"} <= set(difficulty["tags"])
    # The probe request was made before the bin was known; every later request carries it.
    [probe] = children(trace, difficulty)
    assert "strategy:routed" in probe["tags"] and "difficulty:hard" not in probe["tags"]
    branches = node_runs(trace, "fanout_branch")
    assert len(branches) == 3
    for branch in branches:
        [request] = children(trace, branch)
        assert {"strategy:routed", "difficulty:hard", "nostream"} <= set(request["tags"])
        assert metadata(request)["tts_graph_difficulty"] == "hard"
        assert metadata(request)["tts_graph_strategy"] == "routed"


def test_a_graph_factory_names_its_strategy_on_the_runs_of_its_trace(plain):
    trace = trace_of(plain[0], "bon")
    assert "strategy:best_of_n" in root_of(trace)["tags"]
    requests = llm_runs(trace)
    assert requests and all("strategy:best_of_n" in r["tags"] for r in requests)


def test_the_routing_decision_is_readable_from_the_trace_alone(plain):
    trace = trace_of(plain[0], "adaptive")
    assert {"strategy:adaptive", "difficulty:hard"} <= set(root_of(trace)["tags"])
    decided = [d for run in node_runs(trace, "hard") for d in metadata(run).get("tts_graph", [])]
    [route] = [d for d in decided if d["kind"] == "route"]
    assert route["bin"] == "hard" and route["strategy"] == "best_of_n"
    assert route["candidates_reused"] == 4


def test_runs_outside_a_strategy_carry_none(plain):
    trace = trace_of(plain[0], "direct")
    assert trace and not any(t.startswith("strategy:") for r in trace for t in r.get("tags") or [])


def test_strategy_metadata_names_a_strategy():
    assert strategy_metadata("best_of_n") == {"tts_graph_strategy": "best_of_n"}
    with pytest.raises(ConfigError, match="non-empty"):
        strategy_metadata("")


# -- redaction ------------------------------------------------------------------------------


def test_redaction_leaves_candidate_texts_out_and_keeps_usage_and_decisions(redacted):
    assert "SECRET" not in json.dumps(redacted)
    trace = trace_of(redacted, "bon")
    [request] = llm_runs(trace)
    assert request["inputs"]["messages"][-1] == {"role": "user", "content": REDACTED}
    choices = request["outputs"]["choices"]
    assert [c["message"]["content"] for c in choices] == [REDACTED] * 3
    assert [c["completion_tokens"] for c in choices] == [5, 5, 5]
    assert metadata(request)["usage_metadata"]["output_tokens"] == 15
    root = root_of(trace)
    assert root["inputs"] == {"question": "q"}  # what the graph was given stays
    outputs = root["outputs"]
    assert outputs["response"] == REDACTED and outputs["answer"] == "7"
    assert [c["text"] for c in outputs["candidates"]] == [REDACTED] * 3
    assert [c["answer"] for c in outputs["candidates"]] == ["5", "7", "7"]
    [select] = node_runs(trace, "select")
    assert metadata(select)["tts_graph"][0]["votes"] == {"5": 1, "7": 2}


def test_redaction_leaves_the_chosen_reply_out_of_a_conversation(redacted):
    trace = trace_of(redacted, "chat")
    human, reply = root_of(trace)["outputs"]["messages"]
    assert human["content"] == "q"
    assert reply["content"] == REDACTED
    assert reply["response_metadata"]["tts_graph"]["answer"] == "7"
    assert reply["usage_metadata"]["output_tokens"] == 15


def test_hide_candidate_texts_replaces_texts_and_changes_nothing_in_place():
    @dataclasses.dataclass(frozen=True)
    class Task:
        state: dict[str, Any]

    class Model(BaseModel):
        candidates: list[Candidate]

    secret = Candidate(
        index=0,
        text="SECRET",
        answer="12",
        score=0.9,
        metadata={"thinking": "SECRET", "round": 1},
        tool_calls=({"name": "add", "args": {"a": "SECRET"}, "id": "1", "type": "tool_call"},),
    )
    reply = AIMessage(
        "SECRET",
        response_metadata={"tts_graph": {"answer": "12"}},
        tool_calls=[{"name": "add", "args": {"a": 1}, "id": "1"}],
    )
    value = {
        "question": "What is 7+5?",
        "response": "SECRET",
        "candidates": [secret],
        "branch": Task({"candidates": (secret,)}),
        "model": Model(candidates=[secret]),
        "messages": [HumanMessage("What is 7+5?"), reply],
        "generations": [[{"text": "SECRET", "message": dumpd(reply)}]],
    }
    hidden = hide_candidate_texts(value)
    assert "SECRET" not in json.dumps(hidden, default=repr)
    [c] = hidden["candidates"]
    assert (c.text, c.answer, c.score, c.id) == (REDACTED, "12", 0.9, secret.id)
    assert c.metadata == {"thinking": REDACTED, "round": 1}
    assert c.tool_calls[0]["name"] == "add"
    assert hidden["question"] == "What is 7+5?"
    assert hidden["messages"][0] is value["messages"][0]
    assert hidden["messages"][1].response_metadata == {"tts_graph": {"answer": "12"}}
    assert secret.text == "SECRET" and value["response"] == "SECRET"
    assert reply.content == "SECRET"
    plain = {"question": "q", "usage": {"calls": 1}}
    assert hide_candidate_texts(plain) is plain


# -- tracing off ----------------------------------------------------------------------------


async def test_without_tracing_a_request_opens_no_run():
    backend = FakeBackend(lambda r, i: "Answer: 1")
    request = GenerationRequest.chat([{"role": "user", "content": "q"}])
    assert llm_run(backend, request) is None
    gen = await backend.generate(request)
    assert gen.completions[0].text == "Answer: 1"

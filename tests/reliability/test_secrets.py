"""API keys reach the server they belong to, in its ``Authorization`` header, and nothing else.

A unique canary key goes in through every door the library has (``api_key=``, a ``SecretStr``,
``TTS_GRAPH_API_KEY``/``VLLM_API_KEY``, a spec's verifier options, the CLI's environment) and is
looked for everywhere it must not be: DEBUG logs of every logger (openai's and httpx's too),
messages, reprs and tracebacks of failing requests (401, 5xx, connection refused, timeouts),
reprs and dumps of backends, chat models and specs, LangGraph stream output, LangSmith traces,
and the eval harness's files. The servers here are loopback fakes that answer like vLLM, record
the ``Authorization`` header of every request (so each test also checks that the key IS sent),
and, when told to fail, echo that header in their error bodies as a careless proxy would.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import io
import json
import logging
import os
import pickle
import secrets
import socket
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from langchain_core.load import dumpd, dumps
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.memory import InMemorySaver
from langsmith_sink import langsmith_sink
from pydantic import SecretStr

from tts_graph import TTSChatModel, create_best_of_n_graph
from tts_graph.backends import GenerationRequest, SamplingParams
from tts_graph.backends.chat_model import ChatModelBackend
from tts_graph.backends.vllm import VLLMBackend
from tts_graph.errors import BackendError, ConfigError
from tts_graph.spec import load_spec
from tts_graph.verifiers.base import Problem
from tts_graph.verifiers.registry import create_verifier
from tts_graph.verifiers.reward import OutcomeRewardVerifier, ProcessRewardVerifier

CANARY = "sk-canary-" + secrets.token_hex(16)
BEARER = f"Bearer {CANARY}"
KEY_VARIABLES = ("TTS_GRAPH_API_KEY", "VLLM_API_KEY", "OPENAI_API_KEY")
CHAT = GenerationRequest.chat([{"role": "user", "content": "What is 2+2?"}], n=2)


# ---------------------------------------------------------------- a vLLM-like fake server


class FakeServer:
    """Answers vLLM's endpoints. ``fail`` makes POSTs (and ``fail_models`` the model list)
    answer that status with a body that echoes the request's Authorization header; ``delay_s``
    delays POST answers (timeouts); ``healthy`` is what /health says."""

    def __init__(self) -> None:
        self.url = ""
        self.seen: list[tuple[str, str, str | None]] = []  # (method, path, Authorization)
        self.fail: int | None = None
        self.fail_models: int | None = None
        self.delay_s = 0.0
        self.healthy = True
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def keys(self) -> set[str | None]:
        with self.lock:
            return {auth for _, _, auth in self.seen}

    def paths(self) -> set[str]:
        with self.lock:
            return {path for _, path, _ in self.seen}


def _completion(body: dict[str, Any]) -> dict[str, Any]:
    n = int(body.get("n") or 1)
    usage = {"prompt_tokens": 7, "completion_tokens": 3 * n, "total_tokens": 7 + 3 * n}
    if "messages" in body:
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": "2 + 2 = 4. Answer: 4"},
                "finish_reason": "stop",
                "logprobs": None,
                "token_ids": [1, 2, 3],
            }
            for i in range(n)
        ]
        kind = "chat.completion"
    else:
        choices = [
            {"index": i, "text": " Answer: 4", "finish_reason": "stop", "token_ids": [1, 2, 3]}
            for i in range(n)
        ]
        kind = "text_completion"
    return {"id": "x", "object": kind, "created": 0, "model": "fake", "choices": choices,
            "usage": usage}  # fmt: skip


def _chunks(body: dict[str, Any]) -> Iterator[dict[str, Any]]:
    n = int(body.get("n") or 1)
    for text, end in (("Answer", None), (": 4", "stop")):
        for i in range(n):
            yield {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "fake",
                   "choices": [{"index": i, "delta": {"content": text}, "finish_reason": end}],
                   "usage": {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}}  # fmt: skip
    yield {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "fake",
           "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2 * n,
                                    "total_tokens": 7 + 2 * n}}  # fmt: skip


def _pooling(path: str, body: dict[str, Any]) -> dict[str, Any]:
    usage = {"prompt_tokens": 5, "total_tokens": 5}
    if path == "/classify":
        return {"data": [{"probs": [0.2, 0.8], "label": "good"}], "usage": usage}
    answer = body["messages"][-1]["content"]
    steps = max(answer.count("<extra_0>"), 1)
    return {"data": [{"data": [[0.1, 0.9]] * steps}], "usage": usage}


def _handler(server: FakeServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _record(self) -> str | None:
            auth = self.headers.get("Authorization")
            with server.lock:
                server.seen.append((self.command, self.path, auth))
            return auth

        def _reply(self, status: int, data: Any) -> None:
            self._send(status, "application/json", json.dumps(data).encode())

        def _send(self, status: int, kind: str, payload: bytes) -> None:
            # A client that timed out has gone away: its answer has nowhere to go.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        def _echo(self, status: int, auth: str | None) -> None:
            # A careless proxy: the credentials it was sent, in its error message.
            self._reply(status, {"error": {"message": f"rejected credentials {auth}",
                                           "code": status}})  # fmt: skip

        def do_GET(self) -> None:
            auth = self._record()
            if self.path == "/health":
                self._reply(200 if server.healthy else 503, {})
            elif self.path == "/v1/models":
                if server.fail_models is not None:
                    self._echo(server.fail_models, auth)
                else:
                    self._reply(200, {"object": "list", "data": [{"id": "fake"}]})
            else:
                self._reply(404, {"error": {"message": "not found"}})

        def do_POST(self) -> None:
            auth = self._record()
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            if server.delay_s:
                time.sleep(server.delay_s)
            if server.fail is not None:
                self._echo(server.fail, auth)
            elif self.path == "/tokenize":
                self._reply(200, {"tokens": [1, 2, 3], "count": 3})
            elif self.path in ("/pooling", "/classify"):
                self._reply(200, _pooling(self.path, body))
            elif body.get("stream"):
                payload = b"".join(
                    b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in _chunks(body)
                )
                self._send(200, "text/event-stream", payload + b"data: [DONE]\n\n")
            else:
                self._reply(200, _completion(body))

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextlib.contextmanager
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield server
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def server() -> Iterator[FakeServer]:
    with fake_server() as s:
        yield s


@pytest.fixture(autouse=True)
def no_key_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in KEY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def debug_logs() -> Iterator[io.StringIO]:
    """Every log record of every logger at DEBUG, formatted with its arguments."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    names = ["openai", "httpx", "httpcore", "tts_graph", "langsmith", "langchain_core"]
    loggers = [logging.getLogger(n) for n in {*names, *logging.root.manager.loggerDict}]
    levels = [(lg, lg.level) for lg in [root, *loggers]]
    for lg, _ in levels:
        lg.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        for lg, level in levels:
            lg.setLevel(level)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def everything_about(exc: BaseException) -> str:
    """What anyone could read off an error: message, repr, the full chained traceback, and
    the same after a pickle round trip."""
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    with contextlib.suppress(Exception):
        again = pickle.loads(pickle.dumps(exc))
        texts += [str(again), repr(again)]
    return "\n".join(texts)


@contextlib.asynccontextmanager
async def vllm(server: FakeServer, **options: Any) -> AsyncIterator[VLLMBackend]:
    options.setdefault("api_key", CANARY)
    async with VLLMBackend(server.base_url, **options) as backend:
        yield backend


# ---------------------------------------------------------------- the key is sent, where due


async def test_the_key_is_sent_with_every_request_to_every_endpoint(server):
    async with vllm(server) as backend:
        await backend.generate(CHAT)
        await backend.generate(GenerationRequest(prompt="2+2=", n=1))
        async with contextlib.aclosing(backend.stream(CHAT)) as chunks:
            texts = [chunk.text async for chunk in chunks]
        await backend.tokenize("2+2")
        await backend.count_prompt_tokens(CHAT)
        assert await backend.health()
    assert "".join(texts) == "AnswerAnswer: 4: 4"
    # The model list (a vLLM server started with --api-key guards every /v1 path), the chat
    # and text completions, /tokenize and /health all carried it.
    assert server.paths() == {
        "/v1/models", "/v1/chat/completions", "/v1/completions", "/tokenize", "/health",
    }  # fmt: skip
    assert server.keys() == {BEARER}


@pytest.mark.parametrize("variable", ["TTS_GRAPH_API_KEY", "VLLM_API_KEY"])
async def test_the_key_comes_from_the_environment(server, monkeypatch, variable):
    monkeypatch.setenv(variable, CANARY)
    async with VLLMBackend(server.base_url) as backend:
        await backend.generate(CHAT)
    assert server.keys() == {BEARER}


async def test_an_openai_key_is_never_sent_to_the_server(server, monkeypatch):
    # OPENAI_API_KEY holds a key for OpenAI's service; base_url may name anyone's server.
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    async with VLLMBackend(server.base_url) as backend:
        await backend.generate(CHAT)
    assert server.keys() == {None, "Bearer EMPTY"}  # no key: none, or the openai client's dummy
    # An empty key means "none", even with one in the environment.
    monkeypatch.setenv("TTS_GRAPH_API_KEY", CANARY)
    async with VLLMBackend(server.base_url, api_key="") as backend:
        await backend.generate(CHAT)
    assert server.keys() == {None, "Bearer EMPTY"}


async def test_a_secretstr_key_is_sent_as_it_is(server):
    async with vllm(server, api_key=SecretStr(CANARY)) as backend:
        await backend.generate(CHAT)
    assert server.keys() == {BEARER}


def test_credentials_in_the_url_are_refused_without_showing_them():
    url = f"http://user:{CANARY}@127.0.0.1:9/v1"
    for make in (VLLMBackend, ProcessRewardVerifier, OutcomeRewardVerifier):
        with pytest.raises(ConfigError) as info:
            make(url)
        assert "must not carry credentials" in str(info.value)
        assert "http://127.0.0.1:9/v1" in str(info.value)  # what to write instead
        assert CANARY not in everything_about(info.value)


async def test_a_refused_key_says_so_without_showing_it(server):
    server.fail_models = 401
    async with vllm(server) as backend:
        with pytest.raises(ConfigError) as info:
            await backend.generate(CHAT)
    assert "refused the API key (HTTP 401)" in str(info.value)
    assert "TTS_GRAPH_API_KEY" in str(info.value)
    assert CANARY not in everything_about(info.value)
    assert server.keys() == {BEARER}


# ---------------------------------------------------------------- failing requests


async def _fail_generate(server: FakeServer, failure: str) -> BaseException:
    url = server.base_url
    timeout = 300.0
    if failure == "401":
        server.fail = 401
    elif failure == "500":
        server.fail = 500
    elif failure == "engine dead":
        server.fail, server.healthy = 500, False
    elif failure == "timeout":
        server.delay_s, timeout = 3.0, 0.5
    elif failure == "connection refused":
        url = f"http://127.0.0.1:{free_port()}/v1"
    backend = VLLMBackend(
        url, model="fake", api_key=CANARY, timeout_s=timeout, max_retries=1, backoff_base_s=0.01,
        backoff_max_s=0.02,
    )  # fmt: skip
    async with backend:
        with pytest.raises(BackendError) as streamed:
            await drain(backend)
        with pytest.raises(BackendError) as info:
            await backend.generate(CHAT)
    assert CANARY not in everything_about(streamed.value)
    return info.value


async def drain(backend: VLLMBackend) -> None:
    async with contextlib.aclosing(backend.stream(CHAT)) as chunks:
        async for _ in chunks:
            pass


@pytest.mark.parametrize("failure", ["401", "500", "engine dead", "timeout", "connection refused"])
async def test_a_failing_request_never_shows_the_key(server, debug_logs, failure):
    error = await _fail_generate(server, failure)
    shown = everything_about(error)
    logs = debug_logs.getvalue()
    assert CANARY not in shown
    assert CANARY not in logs
    # The checks saw what they should: the error and the log describe the failure.
    if failure == "connection refused":
        assert "cannot reach" in str(error)
        assert server.seen == []
    else:
        assert server.keys() == {BEARER}
        assert "HTTP Request: POST" in logs  # httpx's own log line
    if failure in ("401", "500", "engine dead"):
        assert "rejected credentials Bearer **********" in str(error)
    if failure in ("500", "timeout"):
        assert "retrying a request" in logs


# ---------------------------------------------------------------- reprs and dumps


def _shown(obj: Any) -> str:
    texts = [repr(obj), str(obj), repr(vars(obj)) if hasattr(obj, "__dict__") else ""]
    for dump in (dumps, dumpd, copy.copy):
        with contextlib.suppress(Exception):
            texts.append(repr(dump(obj)))
    for method in ("model_dump", "dict"):
        with contextlib.suppress(Exception):
            texts.append(repr(getattr(obj, method)()))
    with contextlib.suppress(Exception):
        texts.append(obj.model_dump_json())
    return "\n".join(texts)


async def test_backends_chat_models_and_verifiers_never_show_the_key(server):
    from langchain_openai import ChatOpenAI

    async with vllm(server) as backend, httpx.AsyncClient() as http:
        tts = TTSChatModel.best_of_n(backend, n=2)
        reply = await tts.ainvoke([HumanMessage("What is 2+2?")])
        openai_model = ChatOpenAI(
            base_url=server.base_url, api_key=SecretStr(CANARY), model="fake",
            http_async_client=http,
        )  # fmt: skip
        by_model = ChatModelBackend(openai_model)
        await by_model.generate(CHAT)
        prm = ProcessRewardVerifier(server.base_url, api_key=CANARY)
        orm = OutcomeRewardVerifier(server.base_url, api_key=CANARY)
        for obj in (backend, tts, by_model, openai_model, prm, orm, prm._client):
            assert CANARY not in _shown(obj), type(obj).__name__
        assert CANARY not in repr(reply) + repr(reply.response_metadata)
        # langchain's own secret handling: the key is named by its variable, not shown
        assert dumpd(openai_model)["kwargs"]["openai_api_key"]["type"] == "secret"
    assert server.keys() == {BEARER}


async def test_a_spec_holds_a_verifier_key_masked_and_still_sends_it(server, monkeypatch):
    monkeypatch.setenv("RM_KEY", CANARY)
    spec = load_spec(
        {
            "name": "keyed",
            "backend": {"base_url": server.base_url},
            "strategy": {
                "kind": "best_of_n",
                "n": 2,
                "verifier": {"name": "orm", "base_url": server.base_url, "api_key": "${RM_KEY}"},
            },
        }
    )
    assert CANARY not in _shown(spec)
    assert CANARY not in json.dumps(spec.model_dump(mode="json"))
    [verifier] = [
        create_verifier("orm", **dict(spec.strategy.verifier.model_extra or {}))  # type: ignore[union-attr]
    ]
    [verdict] = await verifier.verify(Problem("q"), ["Answer: 4"])
    await verifier.aclose()  # type: ignore[attr-defined]
    assert verdict.score == pytest.approx(0.8)
    assert server.keys() == {BEARER}


@pytest.mark.parametrize("kind", ["prm", "orm"])
async def test_a_reward_model_gets_the_key_and_its_failures_hide_it(server, debug_logs, kind):
    cls = ProcessRewardVerifier if kind == "prm" else OutcomeRewardVerifier
    verifier = cls(server.base_url, api_key=CANARY, max_retries=1, backoff=(0.01, 0.02))
    [ok] = await verifier.verify(Problem("q"), ["2 + 2 = 4\n\nAnswer: 4"])
    assert ok.score == pytest.approx(0.9 if kind == "prm" else 0.8)
    for status in (401, 500):
        server.fail = status
        [failed] = await verifier.verify(Problem("q"), ["2 + 2 = 4"])
        assert failed.passed is False
        assert f"HTTP {status}" in failed.reason
        assert "rejected credentials Bearer **********" in failed.reason
        assert CANARY not in repr(failed)
    assert "api_key= or in TTS_GRAPH_API_KEY" in failed.reason or status == 500
    await verifier.aclose()
    assert server.keys() == {BEARER}
    assert CANARY not in debug_logs.getvalue()


# ---------------------------------------------------------------- graph streams


async def test_graph_stream_output_never_shows_the_key(server, debug_logs):
    modes = ["values", "updates", "custom", "messages", "debug", "tasks", "checkpoints"]
    async with vllm(server) as backend:
        graph = create_best_of_n_graph(backend, n=2).compile(checkpointer=InMemorySaver())
        config: Any = {"configurable": {"thread_id": "t"}}
        streamed = [c async for c in graph.astream({"question": "2+2?"}, config, stream_mode=modes)]
        assert {mode for mode, _ in streamed} >= {"values", "updates", "debug", "tasks"}
        state = await graph.aget_state(config)
        server.fail = 401
        failing = create_best_of_n_graph(backend, n=2).compile(checkpointer=InMemorySaver())
        config = {"configurable": {"thread_id": "f"}}
        shown: list[str] = []
        try:
            async for chunk in failing.astream({"question": "2+2?"}, config, stream_mode=modes):
                shown.append(repr(chunk))
        except Exception as exc:  # the graph may fail or finish early: either way, no key
            shown.append(everything_about(exc))
        shown.append(repr(await failing.aget_state(config)))
    assert state.values["answer"] == "4"
    assert CANARY not in repr(streamed) + repr(state) + "\n".join(shown)
    assert CANARY not in debug_logs.getvalue()
    assert server.keys() == {BEARER}


# ---------------------------------------------------------------- LangSmith traces

TRACED = """
    import asyncio, contextlib, os
    import langsmith
    from langchain_core.messages import HumanMessage
    from langchain_core.tracers.langchain import wait_for_all_tracers
    from langchain_openai import ChatOpenAI
    from tts_graph import ChatModelBackend, ChatState, TTSChatModel, create_best_of_n_graph
    from tts_graph.backends import GenerationRequest
    from tts_graph.backends.vllm import VLLMBackend
    from tts_graph.verifiers.base import Problem
    from tts_graph.verifiers.reward import OutcomeRewardVerifier

    url, failing, key = os.environ["FAKE_URL"], os.environ["FAILING_URL"], os.environ["KEY"]

    async def main():
        backend = VLLMBackend(url, api_key=key)  # the key given in code
        env_backend = VLLMBackend(url)  # and from TTS_GRAPH_API_KEY
        orm = OutcomeRewardVerifier(url, api_key=key)
        bon = create_best_of_n_graph(backend, n=2, verifier=orm).compile()
        await bon.ainvoke({"question": "2+2?"}, config={"run_name": "bon"})
        chat = create_best_of_n_graph(env_backend, n=2, state_schema=ChatState).compile()
        await chat.ainvoke({"messages": [HumanMessage("2+2?")]}, config={"run_name": "chat"})
        model = TTSChatModel.best_of_n(backend, n=2)
        await model.ainvoke("2+2?", config={"run_name": "tts_chat_model"})
        openai_model = ChatOpenAI(base_url=url, api_key=key, model="fake")
        by_model = create_best_of_n_graph(ChatModelBackend(openai_model), n=2).compile()
        await by_model.ainvoke({"question": "2+2?"}, config={"run_name": "chat_model_backend"})
        await openai_model.ainvoke("2+2?", config={"run_name": "openai_direct"})
        broken = VLLMBackend(failing, api_key=key, max_retries=0)
        request = GenerationRequest.chat([{"role": "user", "content": "q"}], n=2)
        async with langsmith.trace("failing", inputs={"backend": repr(broken)}):
            with contextlib.suppress(Exception):
                await broken.generate(request)
        with contextlib.suppress(Exception):
            await create_best_of_n_graph(broken, n=2).compile().ainvoke(
                {"question": "q"}, config={"run_name": "failing_graph"})
        await orm.aclose()
    asyncio.run(main())
    wait_for_all_tracers()
"""


def test_langsmith_traces_never_show_the_key(server):
    with fake_server() as failing, langsmith_sink() as sink:
        failing.fail = 401
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LANGSMITH_", "LANGCHAIN_")) and k not in KEY_VARIABLES
        }
        env.update(
            LANGSMITH_TRACING="true", LANGSMITH_API_KEY="test", LANGSMITH_ENDPOINT=sink.url,
            FAKE_URL=server.base_url, FAILING_URL=failing.base_url, KEY=CANARY,
            TTS_GRAPH_API_KEY=CANARY,
        )  # fmt: skip
        out = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(TRACED)],
            env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        runs = sink.runs()
        assert failing.keys() == {BEARER}
    names = {r.get("name") for r in runs}
    assert {"bon", "chat", "tts_chat_model", "chat_model_backend", "failing"} <= names
    assert any(r.get("run_type") == "llm" for r in runs)
    assert any(r.get("error") for r in runs)  # the failing requests were traced as such
    # Inputs, outputs, metadata, serialized objects, errors, events: all of it.
    assert CANARY not in json.dumps(runs, default=str)
    assert CANARY not in out.stdout + out.stderr
    assert server.keys() == {BEARER}


# ---------------------------------------------------------------- the CLI and the eval files


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tts_graph.cli", *args],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _tree_text(root: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in sorted(root.rglob("*")) if p.is_file()
    )


def test_the_cli_and_the_eval_files_never_show_the_key(server, tmp_path):
    dataset = tmp_path / "data.jsonl"
    dataset.write_text(
        "".join(json.dumps({"question": f"{i}+2?", "answer": str(i + 2)}) + "\n" for i in range(3))
    )
    spec = tmp_path / "spec.yaml"
    spec.write_text("name: keyed\nstrategy: {kind: best_of_n, n: 2}\n")
    env = {k: v for k, v in os.environ.items() if k not in KEY_VARIABLES}
    env.update(TTS_GRAPH_API_KEY=CANARY, TTS_GRAPH_CACHE=str(tmp_path / "cache"))
    outputs = []
    with fake_server() as failing:
        failing.fail = 401
        for url in (server.base_url, failing.base_url):
            solved = _cli(["solve", "What is 2+2?", "--base-url", url, "--json", "-v", "-n", "2"],
                          env)  # fmt: skip
            out = tmp_path / f"run-{len(outputs)}"
            evaluated = _cli(
                ["eval", "--spec", str(spec), "--dataset", str(dataset), "--out", str(out),
                 "--base-url", url, "-v"], env,
            )  # fmt: skip
            outputs.append((solved, evaluated, out))
        assert failing.keys() == {BEARER}
    (ok_solve, ok_eval, ok_out), (bad_solve, bad_eval, bad_out) = outputs
    assert ok_solve.returncode == 0, ok_solve.stderr[-2000:]
    assert json.loads(ok_solve.stdout)["answer"] == "4"
    assert ok_eval.returncode == 0, ok_eval.stderr[-2000:]
    assert bad_eval.returncode == 0, bad_eval.stderr[-2000:]  # each problem failed, not the run
    assert bad_solve.returncode != 0
    assert "HTTP 401" in bad_solve.stderr
    results = [json.loads(line) for line in (bad_out / "results.jsonl").read_text().splitlines()]
    assert len(results) == 3 and all("HTTP 401" in r["error"] for r in results)
    assert {"run.json", "results.jsonl", "report.md"} <= {p.name for p in ok_out.iterdir()}
    logs = list((tmp_path / "cache" / "logs").glob("*.log"))
    assert len(logs) == 4
    for solved, evaluated, _ in outputs:
        for text in (solved.stdout, solved.stderr, evaluated.stdout, evaluated.stderr):
            assert CANARY not in text
    assert CANARY not in _tree_text(tmp_path / "cache")  # the run logs
    assert CANARY not in _tree_text(ok_out) + _tree_text(bad_out)
    assert server.keys() == {BEARER}


# ---------------------------------------------------------------- a real server


@contextlib.contextmanager
def key_guard(target_root: str, key: str) -> Iterator[FakeServer]:
    """A loopback proxy in front of a vLLM server that answers 401 to any request without
    ``key``, on every path, and records what it was sent."""
    state = FakeServer()
    upstream = httpx.Client(base_url=target_root, timeout=300)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            auth = self.headers.get("Authorization")
            with state.lock:
                state.seen.append((self.command, self.path, auth))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if auth != f"Bearer {key}":
                status, content = 401, b'{"error": "Unauthorized"}'
            else:
                resp = upstream.request(
                    self.command, self.path, content=body,
                    headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
                )  # fmt: skip
                status, content = resp.status_code, resp.content
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        do_GET = do_POST = _forward

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        upstream.close()


async def test_a_key_guarded_vllm_server_is_usable_with_its_key(vllm_server, debug_logs):
    with key_guard(vllm_server.root_url, CANARY) as guard:
        request = GenerationRequest.chat(
            [{"role": "user", "content": "Hi"}], n=2, sampling=SamplingParams(max_tokens=4)
        )
        async with VLLMBackend(guard.base_url, api_key=CANARY) as backend:
            generation = await backend.generate(request)
            assert await backend.tokenize("Hello there")
            assert await backend.count_prompt_tokens(request) > 0
        assert len(generation.completions) == 2
        assert guard.keys() == {BEARER}
        async with VLLMBackend(guard.base_url, api_key="wrong") as backend:
            with pytest.raises(ConfigError, match="refused the API key"):
                await backend.generate(request)
    assert CANARY not in debug_logs.getvalue()

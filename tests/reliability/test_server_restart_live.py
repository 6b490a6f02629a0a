"""The model server killed mid-run (SIGKILL to its whole process group) and started again on
the same port.

Graph runs in flight on a backend whose ``retry_for_s`` spans the restart ride it out and
finish, each counting its usage once. An evaluation run on a backend with no such window loses
the problems in flight to the outage: each is recorded with an error that names the server,
the finished ones are kept, and the next run in the same folder redoes the failed problems and
nothing else.

The live test starts its own server (the shared one must not be killed) and stops what it
started however it ends; the others check the retry window on a scripted transport.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tts_graph import SamplingParams, create_best_of_n_graph
from tts_graph.backends.base import GenerationRequest
from tts_graph.backends.server import ServerConfig, VLLMServer, free_port
from tts_graph.backends.vllm import VLLMBackend
from tts_graph.errors import BackendError, ConfigError
from tts_graph.eval.datasets import EvalProblem
from tts_graph.eval.harness import RESULTS, done_ids, read_results, run_eval
from tts_graph.spec import load_spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from processes import assert_nothing_listens, processes, server_on, still_running

from server_metrics import RUNNING, metric

SAMPLING = {"max_tokens": 32, "temperature": 0.8}
SPEC = load_spec({"strategy": {"kind": "best_of_n", "n": 2}, "sampling": SAMPLING})
PROBLEMS = [
    EvalProblem(id=f"add/{i}", dataset="adds", kind="math", question=f"What is {i} + {i + 3}?",
                gold=str(2 * i + 3), hidden=str(2 * i + 3))
    for i in range(6)
]  # fmt: skip


class GoldInText:
    async def correct(self, problem: EvalProblem, text: str) -> bool:
        return problem.hidden in text

    async def close(self) -> None:
        pass


async def wait_for(what: str, condition: Callable[[], Any], *, within_s: float = 600.0) -> None:
    """Poll ``condition`` (sync or async) until it holds; a generous bound keeps a broken run
    from hanging the suite (it is not what is tested)."""
    deadline = time.monotonic() + within_s
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        await asyncio.sleep(0.2)


async def requests_running(root_url: str) -> int:
    """Requests the server is working on now, from its Prometheus metrics."""
    try:
        return int(await metric(root_url, RUNNING, request_timeout_s=5.0))
    except httpx.HTTPError:
        return 0


def kill_group(port: int) -> set[int]:
    """SIGKILL the process group of the server on ``port``: the API server and its engine
    workers die at once, as when the machine's OOM killer or an operator strikes."""
    pids = server_on(port)
    assert pids, f"no server process found on port {port}"
    table = processes()
    for group in {table[pid][1] for pid in pids if pid in table}:
        os.killpg(group, signal.SIGKILL)
    return pids


def check_usage_is_counted_once(usage: dict[str, Any], completion_tokens: list[int]) -> None:
    # One request of n samples, counted once however many attempts it took.
    assert usage["calls"] == 1
    assert usage["completion_tokens"] == sum(completion_tokens) > 0
    assert usage["prompt_tokens"] > 0


class DownThenUp:
    """A server that refuses the first ``down`` requests (as while it restarts), then answers."""

    def __init__(self, down: int) -> None:
        self.down = down
        self.posts = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": [{"id": "m"}]})
        self.posts += 1
        if self.posts <= self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={
            "id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "token_ids": [1, 2, 3],
                         "message": {"role": "assistant", "content": "Answer: 4"}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        })  # fmt: skip


def scripted(server: DownThenUp, **options: Any) -> VLLMBackend:
    client = httpx.AsyncClient(transport=httpx.MockTransport(server))
    return VLLMBackend("http://vllm.test/v1", http_client=client, backoff_base_s=0.001,
                       backoff_max_s=0.002, **options)  # fmt: skip


HI = GenerationRequest.chat([{"role": "user", "content": "What is 2 + 2?"}])


async def test_retry_for_s_keeps_retrying_past_max_retries_until_the_server_is_back():
    server = DownThenUp(down=12)  # more refusals than max_retries allows
    generation = await scripted(server, max_retries=4, retry_for_s=600.0).generate(HI)
    assert server.posts == 13
    assert generation.completions[0].text == "Answer: 4"
    assert (generation.usage.calls, generation.usage.completion_tokens) == (1, 3)


async def test_without_retry_for_s_the_retries_stop_at_max_retries():
    server = DownThenUp(down=12)
    with pytest.raises(BackendError, match=r"http://vllm\.test/v1") as caught:
        await scripted(server, max_retries=4).generate(HI)
    assert caught.value.retryable and server.posts == 5


def test_retry_for_s_must_be_positive():
    with pytest.raises(ConfigError, match="retry_for_s must be > 0"):
        VLLMBackend("http://vllm.test/v1", retry_for_s=0)


@pytest.mark.integration
async def test_a_server_killed_mid_run_and_restarted(tmp_path):
    port = free_port()  # chosen here, and the restarted server takes it again
    server = VLLMServer(ServerConfig(model="smollm2-135m", port=port))
    root = f"http://127.0.0.1:{port}"
    started: set[int] = set()
    backends: list[VLLMBackend] = []
    tasks: list[asyncio.Future[Any]] = []
    restart: asyncio.Future[Any] | None = None
    out = tmp_path / "eval"
    try:
        await asyncio.to_thread(server.start)
        started |= server_on(port)
        # Rides out the restart: keeps retrying for up to 15 minutes.
        riding = VLLMBackend(server.base_url, retry_for_s=900.0, backoff_max_s=2.0)
        # Gives up at once (the graph's node retries still wait a few seconds).
        plain = VLLMBackend(server.base_url, max_retries=0)
        backends += [riding, plain]
        await riding.check()
        await plain.check()

        graph = create_best_of_n_graph(riding, n=2, sampling=SamplingParams(**SAMPLING)).compile()
        runs = [
            asyncio.ensure_future(graph.ainvoke({"question": f"Name {k} prime numbers."}))
            for k in range(2, 5)
        ]
        evaluation = asyncio.ensure_future(
            run_eval(SPEC, PROBLEMS, plain, out, dataset="adds", judge=GoldInText(),
                     concurrency=2)
        )  # fmt: skip
        tasks += [*runs, evaluation]

        # Mid-run: a problem is finished and written, and the server is generating.
        async def mid_run() -> bool:
            return len(read_results(out)) >= 1 and await requests_running(root) > 0

        await wait_for("the evaluation to finish a problem with requests running", mid_run)
        killed = kill_group(port)
        await wait_for(
            "the killed server's processes to be gone", lambda: not still_running(killed)
        )
        server.stop()  # reaps the process and closes its log: nothing is left to stop
        assert_nothing_listens(port)

        restart = asyncio.ensure_future(asyncio.to_thread(server.start))
        first_pass = await evaluation
        await restart
        started |= server_on(port)

        # The evaluation: the problems in flight or still to come failed, each with an error
        # that names the server; the finished ones are kept.
        failed = [r for r in first_pass if r["error"] is not None]
        finished = [r for r in first_pass if r["error"] is None]
        assert failed and finished
        assert len(first_pass) == len(PROBLEMS)
        for r in failed:
            assert r["error"].startswith("BackendError: ") and server.base_url in r["error"]
            assert r["correct"] is False and r["candidates"] == []
        finished_lines = {
            json.loads(line)["id"]: line
            for line in (out / RESULTS).read_text().splitlines()
            if json.loads(line)["error"] is None
        }

        # The graph runs rode out the restart: every one finished, its usage counted once.
        for state in await asyncio.gather(*runs):
            assert len(state["candidates"]) == 2 and state["response"] is not None
            check_usage_is_counted_once(
                state["usage"].to_dict(), [c.completion_tokens for c in state["candidates"]]
            )

        # The resumed evaluation redoes the failed problems and nothing else.
        again = VLLMBackend(server.base_url)
        backends.append(again)
        records = await run_eval(SPEC, PROBLEMS, again, out, dataset="adds", judge=GoldInText(),
                                 concurrency=2)  # fmt: skip
        assert sorted(r["id"] for r in records) == sorted(p.id for p in PROBLEMS)
        assert all(r["error"] is None for r in records)
        assert done_ids(out) == {p.id for p in PROBLEMS}
        lines = (out / RESULTS).read_text().splitlines()
        assert len(lines) == len(PROBLEMS)
        kept = {json.loads(line)["id"]: line for line in lines}
        assert {i: kept[i] for i in finished_lines} == finished_lines  # byte for byte
        redone = set(kept) - set(finished_lines)
        assert redone == {r["id"] for r in failed}
        for r in records:
            check_usage_is_counted_once(
                r["usage"], [c["completion_tokens"] for c in r["candidates"]]
            )
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if restart is not None:
            # A start runs in a thread, which cancelling would not stop: let it end (it gives
            # up by itself at its start-up timeout) before stopping what it started.
            await asyncio.wait({restart})
        for b in backends:
            await b.aclose()
        server.stop()
        started |= server_on(port)
    assert not still_running(started)
    assert_nothing_listens(port)

"""Reward-model clients against a loopback HTTP server that speaks vLLM's pooling API.

No reward model small enough for a CPU ships in a package, so the server here scores
deterministically: a step (or answer) containing "good" gets p_good 0.9, anything else 0.2.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from tts_graph.errors import ConfigError
from tts_graph.verifiers.base import Problem
from tts_graph.verifiers.reward import OutcomeRewardVerifier, ProcessRewardVerifier, aggregate_steps

STEP = "<extra_0>"


def p_good(text: str) -> float:
    return 0.9 if "good" in text else 0.2


class LoopbackRewardServer:
    """`mode` decides the next replies: "ok", "500", "503-once", "garbage", "wrong-count",
    "string-data", "no-data", "out-of-range"."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.requests: list[tuple[str, dict]] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((self.path, body))
                status, payload = server.reply(self.path, body)
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def reply(self, path: str, body: dict) -> tuple[int, object]:
        mode = self.mode
        if mode == "500":
            return 500, {"error": {"message": "EngineCore failed"}}
        if mode == "503-once":
            self.mode = "ok"
            return 503, {"error": {"message": "busy"}}
        if mode == "garbage":
            return 200, b"<html>not json</html>"
        if mode == "no-data":
            return 200, {"object": "list", "data": []}
        answer = body["messages"][-1]["content"]
        usage = {"prompt_tokens": len(answer.split()), "total_tokens": len(answer.split())}
        if path == "/classify":
            p = p_good(answer)
            return 200, {
                "data": [
                    {
                        "index": 0,
                        "label": "good" if p > 0.5 else "bad",
                        "probs": [1 - p, p],
                        "num_classes": 2,
                    }
                ],
                "usage": usage,
            }
        if mode == "string-data":
            return 200, {"data": [{"index": 0, "data": "oops"}], "usage": usage}
        steps = answer.split(STEP)[:-1] if STEP in answer else [answer]
        rows = [[1 - p_good(s), p_good(s)] for s in steps]
        if mode == "wrong-count":
            rows = rows[:-1]
        if mode == "out-of-range":
            rows = [[0.0, 7.5] for _ in steps]
        if body.get("scalar"):
            rows = [[p_good(answer) * 10 - 5]]
        return 200, {
            "object": "list",
            "data": [{"index": 0, "object": "pooling", "data": rows}],
            "usage": usage,
        }


@pytest.fixture
def server() -> Iterator[LoopbackRewardServer]:
    srv = LoopbackRewardServer()
    thread = threading.Thread(
        target=srv.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


FAST = {"backoff": (0.001, 0.002)}


@pytest.mark.parametrize(
    ("how", "expected"),
    [("last", 0.2), ("min", 0.2), ("prod", 0.9 * 0.9 * 0.2), ("mean", (0.9 + 0.9 + 0.2) / 3)],
)
def test_aggregate_steps(how, expected):
    assert aggregate_steps([0.9, 0.9, 0.2], how) == pytest.approx(expected)


async def test_prm_sends_steps_joined_by_the_step_token_and_aggregates(server):
    prm = ProcessRewardVerifier(server.base_url, aggregate="min", model="prm", **FAST)
    candidate = "good start\n\ngood middle\n\nbad end"
    (verdict,) = await prm.verify(Problem("What is 1+1?"), [candidate])
    path, body = server.requests[0]
    assert path == "/pooling"
    assert body["model"] == "prm"
    assert body["messages"][0]["role"] == "system"
    assert body["messages"][1] == {"role": "user", "content": "What is 1+1?"}
    assert body["messages"][2]["content"] == f"good start{STEP}good middle{STEP}bad end{STEP}"
    assert verdict.step_scores == pytest.approx((0.9, 0.9, 0.2))
    assert verdict.score == pytest.approx(0.2)
    assert verdict.passed is None
    assert "weakest step 3" in verdict.reason
    assert verdict.usage.calls == 1


async def test_prm_threshold_and_last_aggregate(server):
    prm = ProcessRewardVerifier(server.base_url, threshold=0.5, **FAST)
    good, bad = await prm.verify(Problem("q"), ["bad\n\ngood", "good\n\nbad"])
    assert (good.passed, good.score) == (True, pytest.approx(0.9))
    assert (bad.passed, bad.score) == (False, pytest.approx(0.2))


@pytest.mark.parametrize(
    ("mode", "needle"),
    [
        ("garbage", "non-JSON"),
        ("no-data", "no data items"),
        ("wrong-count", "2 step scores for 3 steps"),
        ("string-data", "not a list"),
        ("out-of-range", "outside [0, 1]"),
    ],
)
async def test_malformed_replies_give_failed_verdicts(server, mode, needle):
    server.mode = mode
    prm = ProcessRewardVerifier(server.base_url, **FAST)
    (verdict,) = await prm.verify(Problem("q"), ["a\n\nb\n\nc"])
    assert verdict.passed is False
    assert verdict.score == 0.0
    assert "malformed" in verdict.reason
    assert needle in verdict.reason


async def test_server_error_gives_failed_verdict_after_capped_retries(server):
    server.mode = "500"
    prm = ProcessRewardVerifier(server.base_url, max_retries=2, **FAST)
    (verdict,) = await prm.verify(Problem("q"), ["good"])
    assert verdict.passed is False
    assert "HTTP 500" in verdict.reason
    assert len(server.requests) == 3


async def test_transient_503_is_retried(server):
    server.mode = "503-once"
    prm = ProcessRewardVerifier(server.base_url, **FAST)
    (verdict,) = await prm.verify(Problem("q"), ["good"])
    assert verdict.score == pytest.approx(0.9)
    assert len(server.requests) == 2


async def test_unreachable_server_gives_failed_verdicts():
    from tts_graph.backends.server import free_port

    prm = ProcessRewardVerifier(f"http://127.0.0.1:{free_port()}/v1", max_retries=1, **FAST)
    verdicts = await prm.verify(Problem("q"), ["a", "b"])
    assert [v.passed for v in verdicts] == [False, False]
    assert all("cannot reach" in v.reason for v in verdicts)


async def test_empty_candidate(server):
    (verdict,) = await ProcessRewardVerifier(server.base_url, **FAST).verify(
        Problem("q"), ["  \n\n "]
    )
    assert verdict.passed is False
    assert "no steps" in verdict.reason
    assert server.requests == []


async def test_orm_classify(server):
    orm = OutcomeRewardVerifier(server.base_url, threshold=0.5, **FAST)
    good, bad = await orm.verify(Problem("q"), ["a good answer", "a bad answer"])
    assert server.requests[0][0] == "/classify"
    assert (good.passed, good.score) == (True, pytest.approx(0.9))
    assert (bad.passed, bad.score) == (False, pytest.approx(0.2))


async def test_orm_pooling_scalar_with_sigmoid(server):
    orm = OutcomeRewardVerifier(server.base_url, endpoint="pooling", sigmoid=True, **FAST)
    orm._client.model = None
    # The loopback answers a scalar head when asked for one.
    original = orm._client.post

    async def scalar_post(path, body):
        return await original(path, {**body, "scalar": True})

    orm._client.post = scalar_post
    good, bad = await orm.verify(Problem("q"), ["good", "bad"])
    assert good.score == pytest.approx(1 / (1 + 2.718281828459045**-4.0))
    assert bad.score == pytest.approx(1 / (1 + 2.718281828459045**3.0))


def test_bad_options_fail_at_construction():
    with pytest.raises(ConfigError, match="last, min, prod, mean"):
        ProcessRewardVerifier("http://x/v1", aggregate="max")
    with pytest.raises(ConfigError, match="classify, pooling"):
        OutcomeRewardVerifier("http://x/v1", endpoint="score")
    with pytest.raises(ConfigError, match="http"):
        ProcessRewardVerifier("x:8000")

"""Decisions reach LangSmith traces: a real langsmith client posts to a loopback endpoint.

Runs the traced graph in a subprocess, because langsmith caches its environment settings and
tracing must not leak into other tests.
"""

from __future__ import annotations

import email.parser
import email.policy
import http.server
import json
import os
import subprocess
import sys
import textwrap
import threading
from typing import ClassVar

INFO = {
    "version": "0.1",
    "batch_ingest_config": {
        "use_multipart_endpoint": True, "size_limit": 100, "size_limit_bytes": 20_971_520,
        "scale_up_qsize_trigger": 1000, "scale_up_nthreads_limit": 16, "scale_down_nempty_trigger": 4,
    },
}  # fmt: skip

SCRIPT = textwrap.dedent(
    """
    import asyncio
    from langchain_core.tracers.langchain import wait_for_all_tracers
    from tts_graph import create_best_of_n_graph
    from tts_graph.testing import FakeBackend

    graph = create_best_of_n_graph(FakeBackend(lambda r, i: f"Answer: {[5, 7, 7][i]}"), n=3).compile()
    asyncio.run(graph.ainvoke({"question": "q"}, config={"run_name": "bon", "tags": ["t1"]}))
    wait_for_all_tracers()
    """
)


class LangSmithSink(http.server.BaseHTTPRequestHandler):
    parts: ClassVar[list[tuple[str, bytes]]] = []

    def do_GET(self) -> None:
        self._reply(json.dumps(INFO).encode())

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/runs/multipart"):
            raw = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
            message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
            for part in message.iter_parts():
                LangSmithSink.parts.append((part.get_param("name", header="content-disposition"),
                                            part.get_payload(decode=True)))  # fmt: skip
        self._reply(b"{}")

    def _reply(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_each_node_run_carries_its_decision_as_metadata():
    LangSmithSink.parts = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), LangSmithSink)
    threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    ).start()
    env = {**os.environ, "LANGSMITH_TRACING": "true", "LANGSMITH_API_KEY": "test",
           "LANGSMITH_ENDPOINT": f"http://127.0.0.1:{httpd.server_address[1]}"}  # fmt: skip
    try:
        out = subprocess.run(
            [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120
        )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert out.returncode == 0, out.stderr
    runs = {}
    for name, payload in LangSmithSink.parts:
        _, run_id, *field = name.split(".")
        runs.setdefault(run_id, {})[field[0] if field else "run"] = json.loads(payload)
    by_name = {r["run"]["name"]: r for r in runs.values() if "run" in r}
    assert "t1" in by_name["bon"]["run"]["tags"]
    select_meta = by_name["select"]["extra"]["metadata"]["tts_graph"]
    assert select_meta[0]["kind"] == "select"
    assert select_meta[0]["votes"] == {"5": 1, "7": 2}
    assert select_meta[0]["answer"] == "7"
    fanout_meta = by_name["fanout"]["extra"]["metadata"]["tts_graph"]
    assert fanout_meta[0]["sampled"] == 3

"""A LangSmith endpoint on loopback, enough for the real ``langsmith`` client: it takes the runs
the tracer sends (``/runs/multipart``) and answers ``Client.list_runs`` (``/runs/query``) with
them, so traced code (a guide's, a unit test's) runs end to end without the network. Shared by
tests/unit and tests/docs: pytest puts this directory on ``sys.path`` (tests/conftest.py).

Queries filter by ``trace`` and ``id`` only; every other filter is ignored.
"""

from __future__ import annotations

import email.parser
import email.policy
import http.server
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

INFO = {
    "version": "0.1",
    "batch_ingest_config": {
        "use_multipart_endpoint": True, "size_limit": 100, "size_limit_bytes": 20_971_520,
        "scale_up_qsize_trigger": 1000, "scale_up_nthreads_limit": 16, "scale_down_nempty_trigger": 4,
    },
}  # fmt: skip


class Sink:
    """The runs received, merged by id (a run's post, its patch and their parts)."""

    def __init__(self) -> None:
        self.url = ""
        self._lock = threading.Lock()
        self._runs: dict[str, dict[str, Any]] = {}

    def add_part(self, name: str, payload: bytes) -> None:
        # Part names: "post.<id>", "patch.<id>", "post.<id>.inputs", "patch.<id>.extra", ...
        _, run_id, *field = name.split(".")
        data = json.loads(payload)
        with self._lock:
            run = self._runs.setdefault(run_id, {"id": run_id})
            if field:
                run[field[0]] = data
            else:
                run.update({k: v for k, v in data.items() if v is not None})

    def runs(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(r) for r in self._runs.values()]

    def query(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        runs = self.runs()
        if trace := body.get("trace"):
            runs = [r for r in runs if str(r.get("trace_id")) == str(trace)]
        if ids := body.get("id"):
            runs = [r for r in runs if r["id"] in {str(i) for i in ids}]
        return sorted(runs, key=lambda r: str(r.get("dotted_order", "")))


def _handler(sink: Sink) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._reply(INFO)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.endswith("/runs/multipart"):
                raw = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body
                message = email.parser.BytesParser(policy=email.policy.default).parsebytes(raw)
                for part in message.iter_parts():
                    name = part.get_param("name", header="content-disposition")
                    sink.add_part(str(name), part.get_payload(decode=True))
                self._reply({})
            elif self.path.endswith("/runs/query"):
                self._reply({"runs": sink.query(json.loads(body)), "cursors": {"next": None}})
            else:
                self._reply({})

        def _reply(self, data: Any) -> None:
            payload = json.dumps(data).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def langsmith_sink() -> Iterator[Sink]:
    """Serve a :class:`Sink` on a free loopback port for the duration of the block."""
    sink = Sink()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(sink))
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    sink.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield sink
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()

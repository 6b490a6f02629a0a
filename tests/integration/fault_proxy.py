"""A loopback HTTP proxy in front of the vLLM server that can inject failures."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import httpx


@contextmanager
def fault_proxy(target_root: str, *, fail_posts: int, status: int = 503) -> Iterator[ProxyState]:
    """Forward everything to ``target_root``; answer the first ``fail_posts`` POSTs with
    ``status`` instead. Yields a state object with the counters."""
    state = ProxyState(fail_posts, status)
    upstream = httpx.Client(base_url=target_root, timeout=300)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if method == "POST":
                with state.lock:
                    state.posts += 1
                    inject = state.posts <= state.fail_posts
                if inject:
                    payload = (
                        b'{"error": {"message": "injected failure", "code": %d}}' % state.status
                    )
                    self.send_response(state.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
            resp = upstream.request(
                method,
                self.path,
                content=body,
                headers={"Content-Type": self.headers.get("Content-Type", "application/json")},
            )
            self.send_response(resp.status_code)
            self.send_header("Content-Type", resp.headers.get("content-type", "application/json"))
            self.send_header("Content-Length", str(len(resp.content)))
            self.end_headers()
            self.wfile.write(resp.content)

        def do_GET(self) -> None:
            self._forward("GET")

        def do_POST(self) -> None:
            self._forward("POST")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        upstream.close()


class ProxyState:
    def __init__(self, fail_posts: int, status: int) -> None:
        self.fail_posts = fail_posts
        self.status = status
        self.posts = 0
        self.lock = threading.Lock()
        self.base_url = ""

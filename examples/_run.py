"""Shared by the examples: run `main(base_url)` against --base-url, or the embedded server."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from tts_graph import VLLMServer


def run(main: Callable[[str], Awaitable[None]]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", help="a running vLLM server; default: start the embedded one")
    args = parser.parse_args()
    if args.base_url:
        asyncio.run(main(args.base_url))
    else:
        with VLLMServer() as server:
            asyncio.run(main(server.base_url))


async def stream(graph: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Print each node's decision as it happens; return the final state."""
    final: dict[str, Any] = {}
    async for mode, chunk in graph.astream(inputs, stream_mode=["custom", "values"]):
        if mode == "custom":
            print("decision:", chunk["tts_graph"])
        else:
            final = chunk
    return final

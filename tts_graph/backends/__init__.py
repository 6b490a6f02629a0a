"""Model-server backends: the protocol, the vLLM client and the vLLM server manager."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tts_graph._lazy import lazy_exports

if TYPE_CHECKING:
    from tts_graph.backends.base import (
        Backend,
        Completion,
        Generation,
        GenerationRequest,
        Message,
        SamplingParams,
        TokenLogprob,
    )
    from tts_graph.backends.server import ServerConfig, VLLMServer
    from tts_graph.backends.vllm import VLLMBackend

__all__ = [
    "Backend",
    "Completion",
    "Generation",
    "GenerationRequest",
    "Message",
    "SamplingParams",
    "ServerConfig",
    "TokenLogprob",
    "VLLMBackend",
    "VLLMServer",
]

_BASE = "tts_graph.backends.base"
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(
            ["Backend", "Completion", "Generation", "GenerationRequest", "Message",
             "SamplingParams", "TokenLogprob"],
            _BASE,
        ),
        "ServerConfig": "tts_graph.backends.server",
        "VLLMServer": "tts_graph.backends.server",
        "VLLMBackend": "tts_graph.backends.vllm",
    },
)  # fmt: skip

"""Model-server backends: the protocol, the vLLM client and the vLLM server manager."""

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

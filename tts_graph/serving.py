"""The library's graphs for LangGraph Server: ``langgraph dev`` (or a LangGraph Platform
deployment) serves what ``langgraph.json`` names here.

The graphs talk to the vLLM server at ``$TTS_GRAPH_BASE_URL`` (default
``http://127.0.0.1:8000/v1``, where ``tts-graph serve`` listens). Inputs arrive as JSON: a
``budget`` is a plain object with :class:`~tts_graph.budget.Budget`'s fields.

- ``best_of_n``: ``{"question": ..., "budget": {...}}`` in, the answer and every decision out;
- ``chat``: the same strategy over a conversation (``{"messages": [...]}``), the chosen reply
  appended to it.

>>> # langgraph dev --config langgraph.json --port 2024  # doctest: +SKIP
"""

from __future__ import annotations

import os

from tts_graph.backends.vllm import VLLMBackend
from tts_graph.graphs.best_of_n import create_best_of_n_graph
from tts_graph.state import ChatState

__all__ = ["best_of_n", "chat"]

_backend = VLLMBackend(os.environ.get("TTS_GRAPH_BASE_URL", "http://127.0.0.1:8000/v1"))

best_of_n = create_best_of_n_graph(_backend, n=8).compile(name="best_of_n")
chat = create_best_of_n_graph(_backend, n=8, state_schema=ChatState).compile(name="chat")

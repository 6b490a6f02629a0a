"""A vLLM tool parser for small models that write tool calls without their tags.

Qwen2.5's chat template asks for ``<tool_call>{"name": ..., "arguments": ...}</tool_call>``;
the 0.5B model mostly writes the JSON object alone, or in a code fence. vLLM's hermes parser then
sees no call and returns it as text, and an agent never runs its tool. This parser (registered
as ``tts-hermes``) does what hermes does, and also reads a reply that is nothing but such an
object naming one of the offered tools as that tool call. Prose that merely contains JSON is
left as text.

Loaded by the server with ``--tool-parser-plugin <this file> --tool-call-parser tts-hermes``
(:class:`~tts_graph.backends.server.ServerConfig` does it for the embedded models that call
tools). It runs inside the server process and imports vLLM's own parser classes.
"""

from __future__ import annotations

import json
from typing import Any

from vllm.entrypoints.generate.base.protocol import (
    ExtractedToolCallInformation,
    FunctionCall,
    ToolCall,
)
from vllm.tool_parsers.abstract_tool_parser import ToolParserManager
from vllm.tool_parsers.hermes_tool_parser import Hermes2ProToolParser

from tts_graph.backends.tool_calls import bare_calls


class LenientHermesToolParser(Hermes2ProToolParser):
    def extract_tool_calls(self, model_output: str, request: Any) -> ExtractedToolCallInformation:
        found = super().extract_tool_calls(model_output, request)
        if found.tools_called or not request.tools:
            return found
        offered = {tool.function.name for tool in request.tools}
        calls = bare_calls(model_output, offered)
        if not calls:
            return found
        return ExtractedToolCallInformation(
            tools_called=True,
            tool_calls=[
                ToolCall(
                    type="function",
                    function=FunctionCall(
                        name=c["name"], arguments=json.dumps(c["arguments"], ensure_ascii=False)
                    ),
                )
                for c in calls
            ],
            content=None,
        )


ToolParserManager.register_module("tts-hermes", module=LenientHermesToolParser)

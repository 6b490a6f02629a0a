"""Default prompts. Every node takes its own prompt function; these are the defaults."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tts_graph.backends.base import Message

__all__ = ["DEFAULT_SYSTEM_PROMPT", "PromptFn", "question_prompt"]

PromptFn = Callable[[Mapping[str, Any]], list[Message]]
"""Builds the chat messages of a request from the graph state."""

DEFAULT_SYSTEM_PROMPT = (
    "Solve the problem. Work it out briefly, then end with a last line of the form "
    "'Answer: <final answer>'."
)


def question_prompt(system: str | None = DEFAULT_SYSTEM_PROMPT, key: str = "question") -> PromptFn:
    """A prompt function: an optional system message, then the state's question as the user turn.

    >>> question_prompt()({"question": "What is 7+5?"})[-1]
    {'role': 'user', 'content': 'What is 7+5?'}
    """

    def build(state: Mapping[str, Any]) -> list[Message]:
        messages: list[Message] = []
        if system:
            messages.append({"role": "system", "content": system})
        messages.append({"role": "user", "content": str(state[key])})
        return messages

    return build

"""How a node's request is built from the state: the default prompt, the question a verifier or
judge sees, and the tools bound to the run.

Two kinds of state, one rule: a state with a ``question`` is asked that question (after the
default system prompt); a state without one but with ``messages`` is a conversation, which is
sent as it is (its own system message, turns and tool results included).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import BaseMessage, convert_to_openai_messages

from tts_graph.errors import ConfigError, check_utf8

__all__ = [
    "DEFAULT_SYSTEM_PROMPT",
    "TOOLS_CONFIG_KEY",
    "PromptFn",
    "question_of",
    "question_prompt",
    "run_tools",
    "to_chat_messages",
]

Message = Mapping[str, Any]

PromptFn = Callable[[Mapping[str, Any]], Sequence[Message]]
"""Builds the chat messages of a request from the graph state (any sequence of
``{"role": ..., "content": ...}`` mappings)."""

DEFAULT_SYSTEM_PROMPT = (
    "Solve the problem. Work it out briefly, then end with a last line of the form "
    "'Answer: <final answer>'."
)

TOOLS_CONFIG_KEY = "tts_graph_tools"
"""``config["configurable"][TOOLS_CONFIG_KEY]``: the tools (OpenAI format) a run's requests
offer the model; :class:`~tts_graph.integrations.chat_model.TTSChatModel` sets it from
``bind_tools``."""


def to_chat_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages as chat-completion messages (roles, tool calls and tool results)."""
    converted = convert_to_openai_messages(list(messages))
    return [dict(m) for m in converted]


def _conversation(state: Mapping[str, Any], messages_key: str) -> list[BaseMessage] | None:
    messages = state.get(messages_key)
    if isinstance(messages, list) and messages:
        return messages
    return None


def _blank(content: Any) -> bool:
    """Whether a message's content says nothing (no text, or only whitespace)."""
    if isinstance(content, str):
        return not content.strip()
    if isinstance(content, Sequence):
        return all(
            _blank(part)
            or (
                isinstance(part, Mapping)
                and part.get("type") == "text"
                and _blank(part.get("text"))
            )
            for part in content
        )
    return content is None


def question_prompt(
    system: str | None = DEFAULT_SYSTEM_PROMPT,
    key: str = "question",
    messages_key: str = "messages",
    template: str = "{question}",
) -> PromptFn:
    """A prompt function: an optional system message, then the state's question (placed in
    ``template``) as the user turn; for a state without a question, the conversation under
    ``messages_key`` as it is.

    >>> question_prompt()({"question": "What is 7+5?"})[-1]
    {'role': 'user', 'content': 'What is 7+5?'}
    >>> from langchain_core.messages import HumanMessage
    >>> question_prompt()({"messages": [HumanMessage("Hi")]})
    [{'role': 'user', 'content': 'Hi'}]
    """

    def build(state: Mapping[str, Any]) -> list[Message]:
        if key not in state and (messages := _conversation(state, messages_key)) is not None:
            if all(_blank(m.content) and not getattr(m, "tool_calls", None) for m in messages):
                raise ConfigError(
                    f"every message in {messages_key!r} is empty; give the conversation at "
                    "least one message with text"
                )
            return to_chat_messages(messages)
        if key not in state:
            raise ConfigError(
                f"the state has neither a {key!r} key nor a non-empty {messages_key!r} list; "
                "give the graph one, or rename them with keys=StateKeys(...)"
            )
        question = state[key]
        if question is None or (isinstance(question, str) and not question.strip()):
            raise ConfigError(
                f"the question ({key!r}) is empty; give the graph one, e.g. "
                f"{{{key!r}: 'What is 7+5?'}}"
            )
        check_utf8(question, f"the question ({key!r})")
        prompt: list[Message] = []
        if system:
            prompt.append({"role": "system", "content": system})
        prompt.append({"role": "user", "content": template.replace("{question}", str(question))})
        return prompt

    return build


def question_of(
    state: Mapping[str, Any], key: str = "question", messages_key: str = "messages"
) -> str:
    """The question a verifier or judge is shown: the state's question, else the text of the
    conversation's last human turn.

    >>> from langchain_core.messages import AIMessage, HumanMessage
    >>> question_of({"messages": [HumanMessage("7+5?"), AIMessage("12")]})
    '7+5?'
    """
    if key in state:
        return str(state[key])
    for message in reversed(_conversation(state, messages_key) or []):
        if message.type == "human":
            return message.text
    return ""


def run_tools() -> list[dict[str, Any]]:
    """The tools bound to the current run (see :data:`TOOLS_CONFIG_KEY`), or none."""
    from langgraph.config import get_config

    try:
        config = get_config()
    except RuntimeError:
        return []
    tools = (config.get("configurable") or {}).get(TOOLS_CONFIG_KEY) or []
    return [dict(t) for t in tools]

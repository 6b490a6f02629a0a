"""A LangChain chat model that runs a test-time-scaling graph on every call.

An agent gains test-time scaling by swapping its model object:

>>> from langchain.agents import create_agent  # doctest: +SKIP
>>> model = TTSChatModel.best_of_n(VLLMBackend("http://127.0.0.1:8000/v1"), n=8)  # doctest: +SKIP
>>> agent = create_agent(model, tools=[add])  # doctest: +SKIP

The graph runs over :class:`~tts_graph.state.ChatState`: the call's messages are the
conversation, tools bound with :meth:`TTSChatModel.bind_tools` are offered to every request of
the run, and the chosen response comes back as the call's ``AIMessage``, with its tool calls
(voted on like answers), the run's usage in ``usage_metadata`` and every decision in
``response_metadata["tts_graph"]``. The graph's runs nest under the chat model's run in a
LangSmith trace.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict

from tts_graph.backends.base import Backend, SamplingParams
from tts_graph.budget import Budget
from tts_graph.errors import ConfigError
from tts_graph.nodes.select import SelectRule
from tts_graph.prompts import TOOLS_CONFIG_KEY
from tts_graph.state import ChatState
from tts_graph.tracing import USAGE_COUNTED_KEY
from tts_graph.verifiers.answer import AnswerExtractor, extract_answer
from tts_graph.verifiers.base import Verifier

__all__ = ["TTSChatModel"]


class TTSChatModel(BaseChatModel):
    """Run ``graph`` (a compiled graph over a conversation, e.g. any graph factory's with
    ``state_schema=ChatState``) on every call, within ``budget``.

    >>> model = TTSChatModel.best_of_n(backend, n=8, budget=Budget(max_total_tokens=4000))  # doctest: +SKIP
    >>> reply = await model.ainvoke("What is 7+5?")  # doctest: +SKIP
    >>> reply.response_metadata["tts_graph"]["answer"]  # doctest: +SKIP
    '12'
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    graph: Runnable[Any, Any]
    budget: Budget | None = None

    @classmethod
    def best_of_n(
        cls,
        backend: Backend,
        *,
        n: int = 8,
        budget: Budget | None = None,
        sampling: SamplingParams | None = None,
        seed: int = 0,
        verifier: Verifier | None = None,
        select: SelectRule | None = None,
        extract: AnswerExtractor | str = extract_answer,
    ) -> TTSChatModel:
        """A chat model that answers with best-of-``n``: the options are
        :func:`~tts_graph.graphs.best_of_n.create_best_of_n_graph`'s, over
        :class:`~tts_graph.state.ChatState`."""
        from tts_graph.graphs.best_of_n import create_best_of_n_graph

        graph = create_best_of_n_graph(
            backend,
            n=n,
            sampling=sampling,
            seed=seed,
            verifier=verifier,
            select=select,
            extract=extract,
            state_schema=ChatState,
        )
        return cls(graph=graph.compile(), budget=budget)

    @property
    def _llm_type(self) -> str:
        return "tts-graph"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"graph": getattr(self.graph, "name", type(self.graph).__name__)}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Offer ``tools`` to every request the graph makes; the chosen response keeps the tool
        calls its candidates voted for. ``tool_choice`` other than "auto" is not supported."""
        if tool_choice not in (None, "auto"):
            raise ConfigError(f"tool_choice={tool_choice!r} is not supported; leave it unset")
        return self.bind(tools=[convert_to_openai_tool(t) for t in tools], **kwargs)

    # -- running the graph ----------------------------------------------------------------

    def _input(self, messages: list[BaseMessage]) -> dict[str, Any]:
        return {"messages": messages, "budget": self.budget}

    @staticmethod
    def _config(manager: Any, tools: list[dict[str, Any]] | None) -> RunnableConfig:
        config: RunnableConfig = {
            "configurable": {TOOLS_CONFIG_KEY: list(tools or [])},
            # This model call's own run reports the graph's total usage; the graph's request
            # runs must not count the same tokens again in the trace.
            "metadata": {USAGE_COUNTED_KEY: True},
        }
        if manager is not None:
            # The graph's runs are children of this model call in a trace.
            config["callbacks"] = CallbackManager(
                handlers=manager.inheritable_handlers,
                inheritable_handlers=manager.inheritable_handlers,
                parent_run_id=manager.run_id,
                tags=manager.inheritable_tags,
                inheritable_tags=manager.inheritable_tags,
                metadata=manager.inheritable_metadata,
                inheritable_metadata=manager.inheritable_metadata,
            )
        return config

    @staticmethod
    def _reply(state: dict[str, Any]) -> AIMessage:
        """The graph's chosen response, or, when it chose none, an empty reply that says why."""
        messages = state.get("messages") or []
        last = messages[-1] if messages else None
        if isinstance(last, AIMessage) and "tts_graph" in last.response_metadata:
            return last
        return AIMessage(
            content="",
            response_metadata={
                "tts_graph": {
                    "answer": None,
                    "decisions": state.get("decisions") or [],
                    "usage": state["usage"].to_dict() if state.get("usage") else {},
                }
            },
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = self._config(run_manager, kwargs.get("tools"))
        state = self.graph.invoke(self._input(messages), config)
        return ChatResult(generations=[ChatGeneration(message=self._reply(state))])

    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        config = self._config(run_manager, kwargs.get("tools"))
        state = await self.graph.ainvoke(self._input(messages), config)
        return ChatResult(generations=[ChatGeneration(message=self._reply(state))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        result = self._generate(messages, stop, run_manager, **kwargs)
        yield _chunk(result.generations[0].message)

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        # The candidates are chosen among, so the chosen message exists only at the end: it is
        # streamed as one chunk.
        result = await self._agenerate(messages, stop, run_manager, **kwargs)
        yield _chunk(result.generations[0].message)


def _chunk(message: BaseMessage) -> ChatGenerationChunk:
    import json

    assert isinstance(message, AIMessage)
    return ChatGenerationChunk(
        message=AIMessageChunk(
            content=message.content,
            tool_call_chunks=[
                {"name": t["name"], "args": json.dumps(t["args"]), "id": t.get("id"), "index": i}
                for i, t in enumerate(message.tool_calls)
            ],
            response_metadata=message.response_metadata,
            usage_metadata=message.usage_metadata,
        )
    )

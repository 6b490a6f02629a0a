"""TTSChatModel in an agent, ChatModelBackend over LangChain chat models, a graph as a tool."""

import dataclasses
import functools
import json
import logging
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from pydantic import Field

from tts_graph import (
    Budget,
    ChatModelBackend,
    ChatState,
    ConfigError,
    TTSChatModel,
    create_best_of_n_graph,
    create_confidence_graph,
    create_self_consistency_graph,
)
from tts_graph.backends import Completion, GenerationRequest, SamplingParams
from tts_graph.integrations.tool import graph_as_tool
from tts_graph.testing import FakeBackend, completion_with_confidence


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def agent_server(request: GenerationRequest, i: int) -> Completion:
    """A model that calls add(7, 5) (one sample in three says add(7, 6)), then answers with
    the tool's result once it is in the conversation."""
    results = [m for m in request.messages if m.get("role") == "tool"]
    if results:
        return Completion(index=i, text=f"Answer: {results[-1]['content']}", finish_reason="stop",
                          completion_tokens=2)  # fmt: skip
    assert [t["function"]["name"] for t in request.tools] == ["add"]
    call = {"name": "add", "args": {"a": 7, "b": 6 if i == 1 else 5}, "id": f"c{i}",
            "type": "tool_call"}  # fmt: skip
    return Completion(index=i, text="", finish_reason="tool_calls", completion_tokens=3,
                      tool_calls=(call,))  # fmt: skip


async def ask_the_calculator(model: TTSChatModel) -> tuple[AIMessage, AIMessage]:
    """Run an agent with the add tool on "What is 7+5?": the model's tool call (the majority's,
    add(7, 5)) and its answer once the tool's result is in."""
    agent = create_agent(model, tools=[add])
    state = await agent.ainvoke({"messages": [HumanMessage("What is 7+5?")]})
    call, result, answer = state["messages"][1:]
    assert call.tool_calls[0]["args"] == {"a": 7, "b": 5}  # the majority's call
    assert isinstance(result, ToolMessage) and result.content == "12"
    assert answer.content == "Answer: 12"
    return call, answer


async def test_an_agent_gains_test_time_scaling_by_swapping_its_model():
    backend = FakeBackend(agent_server)
    model = TTSChatModel.best_of_n(backend, n=3, budget=Budget(max_calls=10))
    _, answer = await ask_the_calculator(model)
    meta = answer.response_metadata["tts_graph"]
    assert meta["answer"] == "12"
    assert [d["kind"] for d in meta["decisions"]] == ["fanout", "select"]
    assert answer.usage_metadata["output_tokens"] == 3 * 2
    assert len(backend.requests) == 2  # one n=3 request per model call


def streamed_agent_server(request: GenerationRequest, i: int, *, bare: bool = False) -> Completion:
    """agent_server for graphs that stream one-sample requests: the seed tells samples apart
    (seeds 1, 4, 7, ... say add(7, 6)), and every token is confident. ``bare``: the model
    writes its call as a JSON object in its text, as small models do."""
    said = agent_server(request, 1 if request.sampling.seed % 3 == 1 else 0)
    if bare and said.tool_calls:
        call = said.tool_calls[0]
        said = dataclasses.replace(
            said, text=json.dumps({"name": call["name"], "arguments": call["args"]}), tool_calls=()
        )
    confident = completion_with_confidence(said.text or "call", 5.0)
    return dataclasses.replace(
        said, index=i, logprobs=confident.logprobs, completion_tokens=confident.completion_tokens
    )


STREAMED_GRAPHS = {
    "self-consistency": lambda backend: create_self_consistency_graph(
        backend, stop="beta", max_samples=8, state_schema=ChatState
    ),
    "online DeepConf": lambda backend: create_confidence_graph(
        backend, mode="online", n=6, warmup=2, state_schema=ChatState
    ),
}


@pytest.mark.parametrize("bare", [False, True], ids=["in pieces", "as bare JSON text"])
@pytest.mark.parametrize("make", STREAMED_GRAPHS.values(), ids=STREAMED_GRAPHS.keys())
async def test_an_agent_keeps_its_tool_calls_with_a_strategy_that_streams_its_samples(make, bare):
    # Streamed samples carry their tool calls in pieces, or (a small model) as a JSON object
    # in their text; either way the calls vote like answers.
    backend = FakeBackend(functools.partial(streamed_agent_server, bare=bare))
    call, _ = await ask_the_calculator(TTSChatModel(graph=make(backend).compile()))
    votes = [d["votes"] for d in call.response_metadata["tts_graph"]["decisions"] if "votes" in d]
    assert votes and all(key.startswith("tool:") for key in votes[-1])


async def test_streaming_yields_the_chosen_message():
    model = TTSChatModel.best_of_n(FakeBackend(lambda r, i: "Answer: 12"), n=2)
    chunks = [c async for c in model.astream("What is 7+5?")]
    assert [c.content for c in chunks if c.content] == ["Answer: 12"]  # the chosen, whole
    message = sum(chunks[1:], chunks[0])
    assert message.usage_metadata["output_tokens"] == 4
    assert message.response_metadata["tts_graph"]["answer"] == "12"


def test_sync_invoke_and_a_reply_that_says_why_when_nothing_fit():
    model = TTSChatModel.best_of_n(
        FakeBackend(lambda r, i: "Answer: 12"), n=2, budget=Budget(max_total_tokens=2)
    )
    reply = model.invoke([HumanMessage("What is seven plus five?")])
    assert reply.content == ""
    decisions = reply.response_metadata["tts_graph"]["decisions"]
    assert decisions[0]["reason"] == "budget" and decisions[-1]["reason"] == "no candidates"


def test_tool_choice_other_than_auto_is_refused():
    model = TTSChatModel.best_of_n(FakeBackend(lambda r, i: ""), n=1)
    with pytest.raises(ConfigError, match="tool_choice"):
        model.bind_tools([add], tool_choice="any")


class SamplingChatModel(BaseChatModel):
    """A chat model with OpenAI-style fields: n samples per call, logprobs, tools."""

    temperature: float = 1.0
    max_tokens: int | None = None
    n: int = 1
    logprobs: bool = False
    calls: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "sampling-fake"

    def bind_tools(self, tools, **kwargs):
        return self.bind(tools=tools, **kwargs)

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        self.calls.append({"n": self.n, "temperature": self.temperature, "kwargs": kwargs})
        generations = []
        for i in range(self.n):
            message = AIMessage(
                content=f"Answer: {i}",
                usage_metadata={"input_tokens": 5, "output_tokens": 2, "total_tokens": 7},
                response_metadata={
                    "finish_reason": "stop",
                    "logprobs": {"content": [{"token": "A", "logprob": -0.5, "top_logprobs": []}]}
                    if self.logprobs
                    else None,
                },
            )
            generations.append(ChatGeneration(message=message))
        return ChatResult(generations=generations)


async def test_a_chat_model_with_n_gets_all_samples_in_one_call():
    model = SamplingChatModel(calls=[])
    backend = ChatModelBackend(model)
    request = GenerationRequest.chat(
        [{"role": "user", "content": "q"}], n=4,
        sampling=SamplingParams(temperature=0.3, logprobs=True),
        tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}],
    )  # fmt: skip
    gen = await backend.generate(request)
    assert [c.text for c in gen.completions] == [f"Answer: {i}" for i in range(4)]
    assert model.calls[0]["n"] == 4 and model.calls[0]["temperature"] == 0.3
    assert model.calls[0]["kwargs"]["tools"][0]["function"]["name"] == "f"
    assert gen.completions[0].mean_logprob == -0.5
    assert (gen.usage.calls, gen.usage.prompt_tokens, gen.usage.completion_tokens) == (1, 5, 2)
    assert backend.degraded == set()


async def test_a_chat_model_without_n_or_logprobs_degrades_and_says_so(caplog):
    model = FakeListChatModel(responses=["Answer: 1", "Answer: 2", "Answer: 1"])
    backend = ChatModelBackend(model)
    with caplog.at_level(logging.WARNING):
        graph = create_best_of_n_graph(backend, n=3).compile()
        state = await graph.ainvoke({"question": "q"})
    assert state["answer"] == "1" and state["usage"].calls == 3
    assert {"n", "logprobs", "usage"} <= backend.degraded
    assert "each sample is a separate call" in caplog.text
    assert backend.features["continuation"] is False


async def test_continuation_and_raw_prompts_are_refused_clearly():
    backend = ChatModelBackend(FakeListChatModel(responses=["x"]))
    cont = GenerationRequest.chat(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think>"}],
        continue_final_message=True,
    )
    with pytest.raises(ConfigError, match="budget forcing"):
        await backend.generate(cont)
    with pytest.raises(ConfigError, match="raw-text"):
        await backend.generate(GenerationRequest(prompt="q"))


async def test_a_graph_as_a_tool():
    graph = create_best_of_n_graph(FakeBackend(lambda r, i: f"Answer: {12 if i else 13}"), n=3)
    think = graph_as_tool(graph.compile())
    message = await think.ainvoke(
        {"type": "tool_call", "name": "think_harder", "id": "t1",
         "args": {"question": "What is 7+5?"}}
    )  # fmt: skip
    assert message.content == "Answer: 12"
    assert message.artifact["answer"] == "12" and message.artifact["usage"]["calls"] == 1
    assert json.loads(json.dumps(think.args_schema.model_json_schema()))["required"] == ["question"]


def test_chat_state_is_what_the_chat_model_runs_on():
    assert {"messages", "candidates", "ledger"} <= set(ChatState.__annotations__)

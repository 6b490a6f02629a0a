"""Agents as users write them, on the real server: a prebuilt agent with a real tool before and
after swapping in TTSChatModel (sampling at once, and streaming samples), graphs over messages and pydantic state, sync invoke, a graph on
a LangChain chat model (ChatModelBackend)."""

from __future__ import annotations

import operator
from typing import Annotated, Any

from langchain.agents import create_agent
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from tts_graph import (
    Budget,
    Candidate,
    ChatModelBackend,
    ChatState,
    SamplingParams,
    TTSChatModel,
    Usage,
    VLLMBackend,
    create_best_of_n_graph,
    create_self_consistency_graph,
)
from tts_graph.budget import add_usage
from tts_graph.ledger import Ledger, share_ledger
from tts_graph.state import merge_candidates

SYSTEM = "You are a calculator. To add two numbers, call the add tool."


@tool(return_direct=True)
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def tool_result(state: dict[str, Any]) -> tuple[AIMessage, ToolMessage]:
    call, result = state["messages"][-2:]
    assert isinstance(call, AIMessage) and isinstance(result, ToolMessage)
    return call, result


async def test_a_prebuilt_agent_keeps_its_tool_calls_after_swapping_in_tts_chat_model(qwen_server):
    question = {"messages": [HumanMessage("What is 1234 + 4321?")]}
    plain = ChatOpenAI(base_url=qwen_server.base_url, api_key="EMPTY", model="Qwen2.5-Coder-0.5B-Instruct",
                       temperature=0.0, max_tokens=96)  # fmt: skip
    before = await create_agent(plain, tools=[add], system_prompt=SYSTEM).ainvoke(question)
    call, result = tool_result(before)
    assert call.tool_calls[0]["name"] == "add" and result.content == "5555"

    backend = VLLMBackend(qwen_server.base_url)
    model = TTSChatModel.best_of_n(
        backend, n=4, sampling=SamplingParams(temperature=0.7, max_tokens=96),
        budget=Budget(max_total_tokens=6000),
    )  # fmt: skip
    after = await create_agent(model, tools=[add], system_prompt=SYSTEM).ainvoke(question)
    call, result = tool_result(after)
    assert call.tool_calls[0]["name"] == "add" and result.content == "5555"
    meta = call.response_metadata["tts_graph"]
    fanout, select = meta["decisions"]
    assert fanout["sampled"] == 4 and select["rule"] == "majority"
    assert any(key.startswith("tool:") for key in select["votes"])
    assert 0 < call.usage_metadata["total_tokens"] <= 6000
    await backend.aclose()


async def test_an_agent_keeps_its_tool_calls_when_the_samples_are_streamed(qwen_server):
    # Self-consistency streams one-sample requests: the calls arrive in pieces, or (this model
    # mostly writes them as bare JSON) as text that is read as the call once the sample ends.
    async with VLLMBackend(qwen_server.base_url) as backend:
        graph = create_self_consistency_graph(
            backend, stop="beta", max_samples=4, state_schema=ChatState,
            sampling=SamplingParams(temperature=0.7, max_tokens=96),
        )  # fmt: skip
        model = TTSChatModel(graph=graph.compile(), budget=Budget(max_total_tokens=8000))
        question = {"messages": [HumanMessage("What is 1234 + 4321?")]}
        after = await create_agent(model, tools=[add], system_prompt=SYSTEM).ainvoke(question)
    call, result = tool_result(after)
    assert call.tool_calls[0]["name"] == "add" and result.content == "5555"
    summary = call.response_metadata["tts_graph"]["decisions"][-2]
    assert summary["kind"] == "consistency" and summary["drawn"] >= 1
    assert any(key.startswith("tool:") for key in summary["votes"])


async def test_tts_chat_model_streams_the_chosen_message(backend):
    model = TTSChatModel.best_of_n(backend, n=3, sampling=SamplingParams(max_tokens=48))
    chunks = [c async for c in model.astream("What is 7+5?")]
    text = "".join(str(c.content) for c in chunks)
    assert text and len([c for c in chunks if c.content]) == 1
    whole = sum(chunks[1:], chunks[0])
    assert whole.usage_metadata["output_tokens"] > 0
    assert whole.response_metadata["tts_graph"]["decisions"][-1]["kind"] == "select"


async def test_a_messages_state_graph_on_the_server(backend):
    graph = create_best_of_n_graph(backend, n=3, state_schema=ChatState).compile()
    state = await graph.ainvoke({"messages": [HumanMessage("What is 7+5? Answer with a number.")]})
    reply = state["messages"][-1]
    assert isinstance(reply, AIMessage) and reply.content
    assert reply.usage_metadata["total_tokens"] == state["usage"].total_tokens


class Quiz(BaseModel):
    question: str
    budget: Budget | None = None
    ledger: Annotated[Ledger, share_ledger] = Field(default_factory=Ledger)
    usage: Annotated[Usage, add_usage] = Field(default_factory=Usage)
    candidates: Annotated[list[Candidate], merge_candidates] = Field(default_factory=list)
    decisions: Annotated[list[dict[str, Any]], operator.add] = Field(default_factory=list)
    answer: str | None = None
    response: str | None = None
    strategy: str | None = None


async def test_a_pydantic_state_graph_on_the_server(backend):
    graph = create_best_of_n_graph(backend, n=3, state_schema=Quiz).compile()
    state = await graph.ainvoke({"question": "What is 7+5?", "budget": Budget(max_calls=1)})
    assert state["usage"].calls == 1 and len(state["candidates"]) == 3


def test_sync_invoke_on_the_server(vllm_server):
    with VLLMBackend(vllm_server.base_url) as backend:
        sampling = SamplingParams(max_tokens=32)
        graph = create_best_of_n_graph(backend, n=2, sampling=sampling).compile()
        first = graph.invoke({"question": "What is 7+5?"})
        second = graph.invoke({"question": "What is 2+2?"})  # the same backend, again
    assert first["usage"].calls == second["usage"].calls == 1
    assert len(first["candidates"]) == len(second["candidates"]) == 2


async def test_a_graph_on_a_langchain_chat_model(vllm_server, backend):
    served = await backend.check()
    chat = ChatOpenAI(base_url=vllm_server.base_url, api_key="EMPTY", model=served, max_tokens=32)
    over_chat = ChatModelBackend(chat)
    graph = create_best_of_n_graph(
        over_chat, n=3, sampling=SamplingParams(max_tokens=32, logprobs=True)
    ).compile()
    state = await graph.ainvoke({"question": "What is 7+5?"})
    # ChatOpenAI has n and logprobs: one call, three samples, with confidences.
    assert state["usage"].calls == 1 and len(state["candidates"]) == 3
    assert all(c.mean_logprob is not None for c in state["candidates"])
    assert state["usage"].completion_tokens > 0
    assert over_chat.degraded <= {"top_p"}

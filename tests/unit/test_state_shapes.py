"""The nodes in the states LangGraph users write: MessagesState, pydantic and dataclass schemas;
sync and async, invoke and stream."""

import dataclasses
from typing import Annotated, Any

import pytest
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from pydantic import BaseModel

from tts_graph import Budget, Candidate, CandidatesState, ConfigError, Usage, create_best_of_n_graph
from tts_graph.backends import Completion
from tts_graph.nodes import make_fanout_node, make_select_node, make_tournament_node
from tts_graph.state import CandidatesDataclass, CandidatesModel
from tts_graph.testing import FakeBackend


class AgentState(MessagesState, CandidatesState):
    pass


def answers(*values):
    return FakeBackend(lambda request, i: f"Answer: {values[i % len(values)]}")


CONVERSATION = [SystemMessage("You are terse."), HumanMessage("What is 7+5?")]


async def test_a_messages_state_graph_answers_in_the_conversation():
    backend = answers(12, 13, 12)
    graph = create_best_of_n_graph(backend, n=3, state_schema=AgentState).compile()
    state = await graph.ainvoke({"messages": CONVERSATION, "budget": Budget(max_calls=2)})
    # The conversation, not a question key, is the prompt: its own system message, no default.
    sent = backend.requests[0].messages
    assert sent == ({"role": "system", "content": "You are terse."},
                    {"role": "user", "content": "What is 7+5?"})  # fmt: skip
    reply = state["messages"][-1]
    assert isinstance(reply, AIMessage) and reply.content == "Answer: 12"
    meta = reply.response_metadata["tts_graph"]
    assert meta["answer"] == "12"
    assert [d["kind"] for d in meta["decisions"]] == ["fanout", "select"]
    assert reply.usage_metadata["input_tokens"] == state["usage"].prompt_tokens
    assert reply.usage_metadata["output_tokens"] == state["usage"].completion_tokens
    assert len(state["candidates"]) == 3


def test_a_factory_names_the_keys_a_schema_lacks():
    with pytest.raises(
        ConfigError, match=r"lacks the key\(s\) candidates, usage, decisions, ledger"
    ):
        create_best_of_n_graph(answers(1), state_schema=MessagesState)


class BarePydantic(BaseModel):
    question: str


@dataclasses.dataclass
class BareDataclass:
    question: str


@pytest.mark.parametrize(
    ("schema", "mixin"),
    [(BarePydantic, "CandidatesModel"), (BareDataclass, "CandidatesDataclass")],
)
def test_the_missing_keys_error_names_the_mixin_of_the_schemas_kind(schema, mixin):
    with pytest.raises(ConfigError, match=f"lacks the key.*{mixin}"):
        create_best_of_n_graph(answers(1), state_schema=schema)


async def test_a_node_in_a_schema_without_the_mixin_fails_loudly_instead_of_dropping_its_work():
    builder = StateGraph(MessagesState)
    builder.add_node("fanout", make_fanout_node(answers(1), n=2))
    builder.add_edge(START, "fanout")
    builder.add_edge("fanout", END)
    with pytest.raises(ConfigError, match="CandidatesState"):
        await builder.compile().ainvoke({"messages": CONVERSATION})


class PydanticState(CandidatesModel):
    question: str


@dataclasses.dataclass
class DataclassState(CandidatesDataclass):
    question: str


class PydanticChat(CandidatesModel):
    messages: Annotated[list[AnyMessage], add_messages]


@pytest.mark.parametrize("schema", [PydanticState, DataclassState])
async def test_pydantic_and_dataclass_states(schema):
    graph = create_best_of_n_graph(answers(12, 13, 12), n=3, state_schema=schema).compile()
    state = await graph.ainvoke({"question": "What is 7+5?", "budget": Budget(max_calls=1)})
    assert state["answer"] == "12"
    assert state["usage"].calls == 1
    assert [d["kind"] for d in state["decisions"]] == ["fanout", "select"]


async def test_a_pydantic_conversation_state_gets_the_chosen_message():
    graph = create_best_of_n_graph(answers(12, 13, 12), n=3, state_schema=PydanticChat).compile()
    state = await graph.ainvoke({"messages": CONVERSATION})
    reply = state["messages"][-1]
    assert isinstance(reply, AIMessage) and reply.content == "Answer: 12"
    assert reply.response_metadata["tts_graph"]["answer"] == "12"
    assert len(state["messages"]) == 3 and state["usage"].calls == 1


def test_sync_invoke_and_stream():
    graph = create_best_of_n_graph(answers(12, 13, 12), n=3).compile()
    state = graph.invoke({"question": "What is 7+5?", "budget": Budget(max_total_tokens=500)})
    assert state["answer"] == "12" and state["usage"].calls == 1
    modes = [mode for mode, _ in graph.stream({"question": "q"}, stream_mode=["updates", "custom"])]
    assert modes.count("custom") == 2 and modes.count("updates") == 3  # start, fanout, select
    # The same graph, now asynchronously: the backend serves both event loops.
    import asyncio

    assert asyncio.run(graph.ainvoke({"question": "q"}))["answer"] == "12"


async def test_astream_with_updates_custom_and_messages():
    graph = create_best_of_n_graph(answers(12), n=2, state_schema=AgentState).compile()
    seen: dict[str, list[Any]] = {"updates": [], "custom": [], "messages": []}
    async for mode, chunk in graph.astream(
        {"messages": CONVERSATION}, stream_mode=["updates", "custom", "messages"]
    ):
        seen[mode].append(chunk)
    assert [e["tts_graph"]["kind"] for e in seen["custom"]] == ["fanout", "select"]
    assert [next(iter(u)) for u in seen["updates"]] == ["start", "fanout", "select"]
    messages = [m for m, _ in seen["messages"]]
    assert any(isinstance(m, AIMessage) and m.content == "Answer: 12" for m in messages)


def tool_calling(request, i):
    # Two samples call add(7, 5), one calls add(7, 6): the vote picks add(7, 5).
    b = 6 if i == 1 else 5
    return Completion(
        index=i,
        text="",
        finish_reason="tool_calls",
        completion_tokens=3,
        tool_calls=(
            {"name": "add", "args": {"a": 7, "b": b}, "id": f"call{i}", "type": "tool_call"},
        ),
    )


async def test_tool_calls_are_voted_on_and_kept_in_the_message():
    graph = create_best_of_n_graph(FakeBackend(tool_calling), n=3, state_schema=AgentState)
    state = await graph.compile().ainvoke({"messages": CONVERSATION})
    reply = state["messages"][-1]
    assert [(t["name"], t["args"]) for t in reply.tool_calls] == [("add", {"a": 7, "b": 5})]
    votes = state["decisions"][-1]["votes"]
    assert sorted(votes.values()) == [1, 2]


async def test_a_tournament_appends_its_winner_to_the_conversation():
    class Judge:
        async def compare(self, question, a, b):
            from tts_graph.verifiers.judge import Preference

            assert question == "What is 7+5?"
            return Preference("A" if "12" in a else "B", raw="", usage=Usage())

    builder = StateGraph(AgentState)
    builder.add_node("fanout", make_fanout_node(answers(13, 12), n=2))
    builder.add_node("judge", make_tournament_node(Judge(), judgements=2))
    builder.add_edge(START, "fanout")
    builder.add_edge("fanout", "judge")
    builder.add_edge("judge", END)
    state = await builder.compile().ainvoke({"messages": CONVERSATION})
    assert state["messages"][-1].content == "Answer: 12"


async def test_renamed_messages_key():
    from tts_graph.state import StateKeys

    class ChatState(CandidatesState):
        chat: Annotated[list[Any], add_messages]

    keys = StateKeys(messages="chat")
    builder = StateGraph(ChatState)
    builder.add_node("fanout", make_fanout_node(answers(3), n=2, keys=keys))
    builder.add_node("select", make_select_node(keys=keys))
    builder.add_edge(START, "fanout")
    builder.add_edge("fanout", "select")
    builder.add_edge("select", END)
    state = await builder.compile().ainvoke({"chat": [HumanMessage("1+2?")]})
    assert state["chat"][-1].content == "Answer: 3"


async def test_a_thread_with_a_checkpointer_starts_each_run_afresh():
    from langgraph.checkpoint.memory import InMemorySaver

    turns = iter(["Answer: 12", "Answer: 4"])
    answers_of_turn: list[str] = []

    def reply(request, i):
        if i == 0:
            answers_of_turn.append(next(turns))
        return answers_of_turn[-1]

    graph = create_best_of_n_graph(FakeBackend(reply), n=2, state_schema=AgentState).compile(
        checkpointer=InMemorySaver()
    )
    config = {"configurable": {"thread_id": "t"}}
    first = await graph.ainvoke(
        {"messages": [HumanMessage("7+5?")], "budget": Budget(max_calls=1)}, config
    )
    second = await graph.ainvoke({"messages": [HumanMessage("2+2?")]}, config)
    assert first["messages"][-1].content == "Answer: 12"
    # The second turn votes over its own candidates, with its own usage and budget.
    assert second["messages"][-1].content == "Answer: 4"
    assert [c.answer for c in second["candidates"]] == ["4", "4"]
    assert second["usage"].calls == 1
    assert [d["kind"] for d in second["decisions"]] == ["fanout", "select"]
    assert len(second["messages"]) == 4


async def test_candidates_given_as_input_survive_the_start_of_a_run():
    given = Candidate(index=0, text="Answer: 9", answer="9", score=1.0)
    graph = create_best_of_n_graph(answers(1), n=1, select="best_score").compile()
    state = await graph.ainvoke({"question": "q", "candidates": [given]})
    assert state["answer"] == "9" and len(state["candidates"]) == 2

"""Graphs as a user writes them, from the README and the examples: this file must pass
`mypy --strict` (scripts/test.sh checks it). It is not collected by pytest; `python
tests/typing/user_graphs.py` builds and compiles every graph without calling a server.

Everything here is imported from public names only, as a user would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, SystemMessage
from langchain_core.tools import BaseTool, tool
from langgraph.graph import END, START, MessagesState, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph

from tts_graph import (
    Budget,
    BudgetExhausted,
    Candidate,
    CandidatesDataclass,
    CandidatesModel,
    CandidatesState,
    ChatModelBackend,
    ChatState,
    ConfigError,
    SamplingParams,
    StateKeys,
    TTSChatModel,
    TTSState,
    Usage,
    VLLMBackend,
    create_adaptive_graph,
    create_best_of_n_graph,
    create_budget_forcing_graph,
    create_confidence_graph,
    create_self_consistency_graph,
    create_self_refine_graph,
    create_tournament_graph,
)
from tts_graph.graphs import Policies
from tts_graph.integrations.tool import graph_as_tool
from tts_graph.nodes import (
    Branch,
    DifficultyBins,
    ThinkingMarkers,
    add_send_fanout,
    make_budget_forcing_node,
    make_consistency_node,
    make_difficulty_node,
    make_fanout_node,
    make_select_node,
    make_self_refine_node,
    make_thinking_node,
    make_tournament_node,
    make_verify_node,
    register_selector,
)
from tts_graph.spec import build_graph, load_spec
from tts_graph.verifiers import (
    CodeVerifier,
    LLMJudge,
    MathVerifier,
    NumericVerifier,
    Problem,
    Verdict,
    Verifier,
)

Compiled = CompiledStateGraph[Any, Any, Any, Any]

BASE_URL = "http://127.0.0.1:8000/v1"
backend = VLLMBackend(BASE_URL)
short = SamplingParams(temperature=0.7, max_tokens=48, logprobs=True)


# -- the README's library snippet --------------------------------------------------------------


async def readme_quick_start() -> None:
    async with VLLMBackend("http://127.0.0.1:8000/v1") as backend:
        graph = create_best_of_n_graph(backend, n=8).compile()
        state = await graph.ainvoke(
            {"question": "What is 7+5?", "budget": Budget(max_total_tokens=3000)}
        )
        usage: Usage = state["usage"]
        answer: str | None = state["answer"]
        print(answer, usage.to_dict())
        async for event in graph.astream({"question": "What is 2+2?"}, stream_mode="custom"):
            print(event["tts_graph"])


def readme_agent() -> None:
    backend = VLLMBackend("http://127.0.0.1:8000/v1")
    model = TTSChatModel.best_of_n(backend, n=8, budget=Budget(max_total_tokens=4000))
    agent = create_agent(model, tools=[add], system_prompt="Call the add tool to add numbers.")
    state = agent.invoke({"messages": [HumanMessage("What is 1234 + 4321?")]})
    print(state["messages"][-1])


def readme_messages_graph() -> None:
    class State(MessagesState, CandidatesState):
        pass

    backend = VLLMBackend("http://127.0.0.1:8000/v1")
    builder = StateGraph(State)
    builder.add_node("sample", make_fanout_node(backend, n=8))
    builder.add_node("vote", make_select_node(select="majority"))
    builder.add_edge(START, "sample")
    builder.add_edge("sample", "vote")
    builder.add_edge("vote", END)
    state = builder.compile().invoke({"messages": [HumanMessage("What is 7+5?")]})
    print(state["messages"][-1].text)
    create_best_of_n_graph(backend, n=8, state_schema=State)


# -- every node factory in a TTSState graph ----------------------------------------------------


def route(state: TTSState) -> Literal["more", "vote"]:
    difficulty = state.get("difficulty") or {}
    return "vote" if difficulty.get("bin") == "easy" else "more"


def brief(state: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        {"role": "system", "content": "Answer briefly. End with 'Answer: <number>'."},
        {"role": "user", "content": state["question"]},
    ]


def difficulty_routing() -> Compiled:
    bins = DifficultyBins((0.3, 0.6), ("easy", "medium", "hard"))
    builder = StateGraph(TTSState)
    builder.add_node("probe", make_difficulty_node(backend, n=4, bins=bins, sampling=short))
    builder.add_node("more", make_fanout_node(backend, n=8, sampling=short, prompt=brief))
    builder.add_node("vote", make_select_node(select="weighted"))
    builder.add_edge(START, "probe")
    builder.add_conditional_edges("probe", route)
    builder.add_edge("more", "vote")
    builder.add_edge("vote", END)
    return builder.compile()


def sequential_nodes() -> Compiled:
    builder = StateGraph(TTSState)
    builder.add_node(
        "consistency",
        make_consistency_node(backend, stop="beta", max_samples=8, sampling=short, prompt=brief),
    )
    builder.add_node(
        "forcing",
        make_budget_forcing_node(
            backend, n=2, min_thinking_tokens=80, max_thinking_tokens=160, max_waits=3,
            markers=ThinkingMarkers("<think>", "</think>"), answer_max_tokens=24,
        ),
    )  # fmt: skip
    builder.add_node(
        "thinking", make_thinking_node(backend, n=3, thinking_budget=64, answer_max_tokens=24)
    )
    builder.add_node("refine", make_self_refine_node(backend, rounds=2, verifier=MathVerifier()))
    builder.add_node("verify", make_verify_node(MathVerifier()))
    builder.add_node("select", make_select_node(select="verified"))
    builder.add_edge(START, "consistency")
    builder.add_edge("consistency", "forcing")
    builder.add_edge("forcing", "thinking")
    builder.add_edge("thinking", "refine")
    builder.add_edge("refine", "verify")
    builder.add_edge("verify", "select")
    builder.add_edge("select", END)
    return builder.compile()


def tournament() -> Compiled:
    judge = LLMJudge(backend, sampling=SamplingParams(temperature=0.0, max_tokens=48))
    builder = StateGraph(TTSState)
    builder.add_node("sample", make_fanout_node(backend, n=4, sampling=short))
    builder.add_node("tournament", make_tournament_node(judge, mode="league", judgements=2))
    builder.add_edge(START, "sample")
    builder.add_edge("sample", "tournament")
    builder.add_edge("tournament", END)
    return builder.compile()


def send_fanout() -> Compiled:
    builder = StateGraph(TTSState)
    add_send_fanout(
        builder, backend, n=6, branches=[Branch(temperature=0.2), Branch(temperature=1.0)],
        sampling=short, verifier=NumericVerifier(), source=START, target="select",
    )  # fmt: skip
    builder.add_node("select", make_select_node(select="best_score"))
    builder.add_edge("select", END)
    return builder.compile()


# -- a user's own state, verifier and keys -----------------------------------------------------


class MyState(CandidatesState, total=False):
    task: str
    report: str


def report(state: MyState) -> dict[str, Any]:
    candidates: list[Candidate] = state["candidates"]
    return {"report": f"{state['answer']!r} from {len(candidates)} drafts"}


@dataclass
class ContainsReference:
    """A user's own verifier, satisfying the `Verifier` protocol."""

    name: str = "contains_reference"

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]:
        ref = str(problem.reference)
        return [Verdict(passed=ref in c, score=float(ref in c), reason="") for c in candidates]


def own_state() -> Compiled:
    keys = StateKeys(question="task")
    verifier: Verifier = ContainsReference()
    builder = StateGraph(MyState)
    builder.add_node("sample", make_fanout_node(backend, n=6, sampling=short, keys=keys))
    builder.add_node("verify", make_verify_node(verifier, keys=keys))
    builder.add_node("vote", make_select_node(select="majority", keys=keys))
    builder.add_node("report", report)
    builder.add_edge(START, "sample")
    builder.add_edge("sample", "verify")
    builder.add_edge("verify", "vote")
    builder.add_edge("vote", "report")
    builder.add_edge("report", END)
    return builder.compile()


def own_state_best_of_n() -> Compiled:
    graph = create_best_of_n_graph(
        backend, n=4, sampling=short, verifier=CodeVerifier(), select="best_score",
        state_schema=MyState, keys=StateKeys(question="task"),
    )  # fmt: skip
    return graph.compile()


# -- conversations: MessagesState + CandidatesState, ChatState ---------------------------------


class State(MessagesState, CandidatesState):
    pass


def messages_graph() -> Compiled:
    builder = StateGraph(State)
    builder.add_node("sample", make_fanout_node(backend, n=4, sampling=short))
    builder.add_node("judge", make_tournament_node(LLMJudge(backend), judgements=2))
    builder.add_edge(START, "sample")
    builder.add_edge("sample", "judge")
    builder.add_edge("judge", END)
    return builder.compile()


def shortest(candidates: Sequence[Candidate]) -> Candidate | None:
    return min(candidates, key=lambda c: len(c.text), default=None)


def registered_selector_graph() -> Compiled:
    register_selector("shortest", shortest, replace=True)
    by_name = create_best_of_n_graph(backend, n=3, select="shortest")
    create_best_of_n_graph(backend, n=3, select=shortest)
    return by_name.compile()


def strategy_graphs() -> list[Compiled]:
    judge = LLMJudge(backend)
    forcing = create_budget_forcing_graph(backend, n=2, max_thinking_tokens=64)
    routes = {
        "easy": "vote",
        "medium": create_self_consistency_graph(backend, stop="beta", max_samples=8),
        "hard": create_tournament_graph(None, judge, candidates=forcing, judgements=2),
    }
    graphs = [
        create_adaptive_graph(backend, routes=routes, policies=Policies(timeout=60.0)),
        create_best_of_n_graph(None, n=4, candidates=create_self_refine_graph(backend)),
        create_best_of_n_graph(backend, n=4, fanout="send"),
        create_confidence_graph(backend, mode="online", n=8),
    ]
    spec = load_spec({"strategy": {"kind": "best_of_n", "n": 4}})
    graphs.append(build_graph(spec, backend))
    return [g.compile() for g in graphs]


def chat_state_graph() -> Compiled:
    return create_best_of_n_graph(backend, n=4, state_schema=ChatState).compile()


async def ask(graph: Compiled) -> AIMessage:
    state = await graph.ainvoke(
        {"messages": [SystemMessage("Be terse."), HumanMessage("What is 7+5?")]}
    )
    reply = state["messages"][-1]
    assert isinstance(reply, AIMessage)
    decisions: list[dict[str, Any]] = reply.response_metadata["tts_graph"]["decisions"]
    print(decisions, reply.usage_metadata)
    return reply


# -- pydantic and dataclass schemas ------------------------------------------------------------


class PydanticChat(CandidatesModel):
    messages: Annotated[list[AnyMessage], add_messages]


@dataclass
class Quiz(CandidatesDataclass):
    question: str


def pydantic_chat_graph() -> Compiled:
    return create_best_of_n_graph(backend, n=4, state_schema=PydanticChat).compile()


def dataclass_graph() -> Compiled:
    builder = StateGraph(Quiz)
    builder.add_node("sample", make_fanout_node(backend, n=4, sampling=short))
    builder.add_node("vote", make_select_node(select="majority"))
    builder.add_edge(START, "sample")
    builder.add_edge("sample", "vote")
    builder.add_edge("vote", END)
    return builder.compile()


# -- agents: TTSChatModel, graph_as_tool, ChatModelBackend -------------------------------------


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def agent_with_tts_chat_model() -> Compiled:
    model = TTSChatModel.best_of_n(
        backend, n=3, sampling=short, select="majority", budget=Budget(max_total_tokens=4_000)
    )
    chat: BaseChatModel = model
    return create_agent(chat, tools=[add], system_prompt="Call add to add numbers.")


def agent_with_a_think_harder_tool(model: BaseChatModel) -> Compiled:
    think: BaseTool = graph_as_tool(
        create_best_of_n_graph(backend, n=8).compile(), budget=Budget(max_calls=2)
    )
    return create_agent(model, tools=[add, think])


def graph_over_a_chat_model(model: BaseChatModel) -> Compiled:
    return create_best_of_n_graph(ChatModelBackend(model), n=3).compile()


def schema_check() -> str:
    try:
        create_best_of_n_graph(backend, state_schema=MessagesState)
    except ConfigError as exc:
        return str(exc)  # names the keys MessagesState lacks
    raise AssertionError("MessagesState has no candidates key")


async def strict_budget(graph: Compiled) -> str | None:
    try:
        state = await graph.ainvoke({"question": "q", "budget": Budget(max_calls=1, strict=True)})
    except BudgetExhausted as exc:
        return exc.limit
    answer: str | None = state["answer"]
    return answer


if __name__ == "__main__":
    builders = [difficulty_routing, sequential_nodes, tournament, send_fanout, own_state,
                own_state_best_of_n, messages_graph, chat_state_graph, registered_selector_graph,
                strategy_graphs, pydantic_chat_graph,
                dataclass_graph]  # fmt: skip
    for build in builders:
        build()
    other = FakeListChatModel(responses=["Answer: 12"])
    agent_with_tts_chat_model()
    agent_with_a_think_harder_tool(other)
    graph_over_a_chat_model(other)
    print(schema_check())
    asyncio.run(backend.aclose())

"""Fan-out, difficulty, self-refine and internal scaling against the real vLLM server."""

from langgraph.graph import END, START, StateGraph

from tts_graph import SamplingParams, TTSState
from tts_graph.nodes import Branch, add_send_fanout, make_fanout_node
from tts_graph.nodes.difficulty import make_difficulty_node
from tts_graph.nodes.revision import make_self_refine_node
from tts_graph.nodes.select import make_select_node
from tts_graph.nodes.thinking import make_thinking_node

QUESTION = {"question": "What is 7+5?"}
SHORT = SamplingParams(temperature=0.9, max_tokens=32, logprobs=True)


async def test_fanout_n_mode_gives_n_seeded_candidates_with_usage_counted_once(backend):
    out = await make_fanout_node(backend, n=6, sampling=SHORT, seed=11)(QUESTION)
    cands = out["candidates"]
    assert [c.index for c in cands] == list(range(6))
    assert len({c.text for c in cands}) > 1
    assert out["usage"].calls == 1
    assert out["usage"].completion_tokens == sum(c.completion_tokens for c in cands)
    assert all(c.seed == 11 for c in cands)


async def test_send_fanout_gives_n_distinct_seeded_candidates_and_sums_their_usage(backend):
    builder = StateGraph(TTSState)
    add_send_fanout(builder, backend, n=4, sampling=SHORT, seed=20,
                    branches=[Branch(temperature=0.0), Branch(temperature=1.0)],
                    source=START, target="select")  # fmt: skip
    builder.add_node("select", make_select_node())
    builder.add_edge("select", END)
    state = await builder.compile().ainvoke(QUESTION)
    cands = state["candidates"]
    assert [c.index for c in cands] == [0, 1, 2, 3]
    assert [c.seed for c in cands] == [20, 21, 22, 23]
    assert [c.metadata["temperature"] for c in cands] == [0.0, 1.0, 0.0, 1.0]
    # Greedy branches agree with each other whatever their seed.
    assert cands[0].text == cands[2].text
    usage = state["usage"]
    assert usage.calls == 4
    assert usage.completion_tokens == sum(c.completion_tokens for c in cands)


async def test_difficulty_probe_scores_bins_and_keeps_its_samples(backend):
    out = await make_difficulty_node(backend, n=4, sampling=SHORT)(QUESTION)
    d = out["difficulty"]
    assert 0.0 <= d["score"] <= 0.75  # k=4: at most 3 of 4 answers disagree with the top one
    assert d["bin"] in ("easy", "medium", "hard")
    assert len(out["candidates"]) == 4
    assert out["usage"].calls == 1
    assert [c.answer for c in out["candidates"]] == d["answers"]


async def test_self_refine_runs_critique_and_revision_rounds(backend):
    node = make_self_refine_node(
        backend, rounds=2, sampling=SamplingParams(temperature=0.7, max_tokens=48)
    )
    out = await node(QUESTION)
    record = out["decisions"][0]
    assert record["stop"] in ("rounds done", "critique says correct")
    # One draft, then per round a critique and (unless it says correct) a revision.
    expected_calls = 1 + sum(1 + (not r["says_correct"]) for r in record["rounds"])
    assert out["usage"].calls == expected_calls
    assert len(out["candidates"]) == 1 + sum(not r["says_correct"] for r in record["rounds"])
    assert out["response"] == out["candidates"][-1].text


async def test_thinking_controls_fall_back_to_budget_forcing_on_a_server_without_them(backend):
    out = await make_thinking_node(backend, n=2, thinking_budget=24, answer_max_tokens=16)(QUESTION)
    note = out["decisions"][0]
    assert note["fallback"] == "budget_forcing"
    assert "reasoning" in note["reason"]  # the server's own explanation
    for cand in out["candidates"]:
        assert cand.metadata["forcing"]["thinking_tokens"] <= 24
        assert cand.completion_tokens <= 24 + 16

"""Confidence-filtered voting (DeepConf) with the function-driven fake backend."""

import asyncio

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import MessagesState

from tts_graph import Budget, BudgetExhausted, CandidatesState, ConfigError, SamplingParams
from tts_graph.backends.base import TokenLogprob
from tts_graph.candidate import Candidate
from tts_graph.errors import BackendError
from tts_graph.graphs.confidence import create_confidence_graph
from tts_graph.nodes.confidence import (
    _quantile,
    make_confidence_node,
    token_confidence,
    trace_confidence,
)
from tts_graph.nodes.select import make_select_node
from tts_graph.testing import FakeBackend, completion_with_confidence


def by_seed(*specs, delay=0.0):
    """The sample with seed ``s`` says ``specs[s % len(specs)] = (text, confidence)``, the
    confidence one value for every word or one per word."""

    def reply(request, i):
        text, confidence = specs[request.sampling.seed % len(specs)]
        return completion_with_confidence(text, confidence, max_tokens=request.sampling.max_tokens)

    return FakeBackend(reply, stream_delay_s=delay)


def words(count, answer):
    """``count`` words ending in ``Answer: <answer>``."""
    return " ".join(["so"] * (count - 2) + ["Answer:", str(answer)])


def summary(out):
    (last,) = [d for d in out["decisions"] if d["kind"] == "confidence"]
    return last


def status(out):
    return {c.index: c.metadata["status"] for c in out["candidates"]}


# -- the measures ---------------------------------------------------------------------------


def test_token_confidence_is_minus_the_mean_top_logprob():
    token = TokenLogprob("a", -0.5, top=(("a", -0.5), ("b", -1.5), ("c", -4.0)))
    assert token_confidence(token) == 2.0
    assert token_confidence(TokenLogprob("a", -0.5)) is None
    infinite = TokenLogprob("a", -0.5, top=(("a", -1.0), ("b", float("-inf"))))
    assert token_confidence(infinite) == 1.0


def test_trace_confidence_by_hand():
    confs = [4.0, 6.0, 1.0, 3.0, 8.0]
    # Windows of 2: 5, 3.5, 2, 5.5.
    assert trace_confidence(confs, window=2) == 2.0
    assert trace_confidence(confs, window=5) == 4.4  # one window
    assert trace_confidence(confs, window=9) == 4.4  # shorter than the window: one group
    assert trace_confidence(confs, window=2, measure="mean") == 4.4
    assert trace_confidence(confs, window=2, measure="tail") == 5.5
    assert trace_confidence(confs, window=9, measure="tail") == 4.4
    assert trace_confidence([], window=2) is None


def test_quantile_interpolates_like_numpy():
    values = [5.0, 5.0, 5.0, 5.0, 5.0, 6.0, 6.0, 6.0]
    assert _quantile(values, 0.7) == pytest.approx(5.9)  # numpy.percentile(values, 70)
    assert _quantile([8.0, 5.0, 7.0, 6.0], 0.5) == 6.5
    assert _quantile([3.0], 0.9) == 3.0
    assert _quantile([1.0, 2.0], 0.0) == 1.0


# -- offline ----------------------------------------------------------------------------------


async def test_offline_a_confident_minority_beats_an_unsure_majority():
    # Five unsure traces say 13, three confident ones say 12: a plain majority picks 13,
    # the confidence-weighted vote (5 × 2 against 3 × 9) picks 12.
    specs = [(words(6, 13), 2.0)] * 5 + [(words(6, 12), 9.0)] * 3
    out = await make_confidence_node(by_seed(*specs), n=8)({"question": "q"})
    assert out["answer"] == "12"
    assert out["response"] == words(6, 12)
    record = summary(out)
    assert record["weights"] == {"13": 10.0, "12": 27.0}
    assert record["votes"] == {"13": 5, "12": 3}
    assert record["chosen_index"] in (5, 6, 7)
    plain = await make_select_node(select="majority")({"candidates": out["candidates"]})
    assert plain["answer"] == "13"


async def test_offline_keep_top_filters_before_the_vote():
    # Weighted alone, 13 wins (5 × 5 = 25 against 3 × 6 = 18); keeping the top 30 % (at or
    # above the 0.7 quantile, 5.9) leaves only the three 12s.
    specs = [(words(6, 13), 5.0)] * 5 + [(words(6, 12), 6.0)] * 3
    everything = await make_confidence_node(by_seed(*specs), n=8, keep_top=1.0)({"question": "q"})
    assert everything["answer"] == "13"
    assert set(status(everything).values()) == {"kept"}
    top = await make_confidence_node(by_seed(*specs), n=8, keep_top=0.3)({"question": "q"})
    assert top["answer"] == "12"
    record = summary(top)
    assert record["threshold"] == 5.9
    assert "0.7 quantile" in record["threshold_from"]
    assert record["kept"] == [5, 6, 7] and record["filtered"] == [0, 1, 2, 3, 4]
    assert record["weights"] == {"12": 18.0}
    for c in top["candidates"]:
        assert c.metadata["confidence"] == c.score == (6.0 if c.index >= 5 else 5.0)


async def test_offline_lowest_group_confidence_finds_a_confused_stretch_the_mean_hides():
    # Trace 0 is sure except for four words; trace 1 is steadily middling.
    dip = [9.0] * 10 + [1.0] * 4 + [9.0] * 10
    specs = [(words(24, 12), dip), (words(24, 13), 5.0)]
    node = make_confidence_node(by_seed(*specs), n=2, keep_top=0.5, window=4)
    lowest = await node({"question": "q"})
    assert lowest["answer"] == "13"
    assert [t["confidence"] for t in summary(lowest)["traces"]] == [1.0, 5.0]
    mean = make_confidence_node(by_seed(*specs), n=2, keep_top=0.5, window=4, confidence="mean")
    assert (await mean({"question": "q"}))["answer"] == "12"


async def test_offline_requests_logprobs_and_seeds_each_trace():
    backend = by_seed((words(4, 12), 3.0))
    sampling = SamplingParams(temperature=0.9, max_tokens=64)
    out = await make_confidence_node(backend, n=3, seed=7, sampling=sampling, top_logprobs=5)(
        {"question": "q"}
    )
    assert [r.sampling.seed for r in backend.requests] == [7, 8, 9]
    assert {(r.n, r.sampling.logprobs, r.sampling.top_logprobs) for r in backend.requests} == {
        (1, True, 5)
    }
    assert {r.sampling.temperature for r in backend.requests} == {0.9}
    assert [c.seed for c in out["candidates"]] == [7, 8, 9]
    assert out["usage"].calls == 3
    assert (
        out["usage"].completion_tokens == 12 == sum(c.completion_tokens for c in out["candidates"])
    )


async def test_traces_already_in_state_do_not_vote_and_new_ones_are_numbered_after_them():
    given = [Candidate(index=i, text="Answer: 99", answer="99") for i in range(5)]
    out = await make_confidence_node(by_seed((words(4, 12), 3.0)), n=2)(
        {"question": "q", "candidates": given}
    )
    assert out["answer"] == "12"
    assert [c.index for c in out["candidates"]] == [5, 6]


async def test_without_logprobs_it_falls_back_to_a_majority_vote():
    backend = FakeBackend(lambda request, i: "Answer: 12" if request.sampling.seed else "Answer: 3")
    out = await make_confidence_node(backend, n=3)({"question": "q"})
    assert out["answer"] == "12"
    assert set(status(out).values()) == {"no_confidence"}
    assert summary(out)["fallback"] == "the server sent no logprobs: majority vote"


async def test_traces_without_an_answer_do_not_vote():
    specs = [("I do not know", 9.0), (words(4, 12), 2.0)]
    out = await make_confidence_node(by_seed(*specs), n=2, keep_top=0.5)({"question": "q"})
    assert out["answer"] == "12"
    assert status(out) == {0: "no_answer", 1: "kept"}


# -- online -----------------------------------------------------------------------------------


def online_specs():
    # Warmup (seeds 0-3): ten words saying 12 at confidences 5, 6, 7 and 8. Later traces say 99
    # at once, then go on for forty words, unsure (3) for their first four words.
    warm = [(words(10, 12), float(c)) for c in (5, 6, 7, 8)]
    later = [("Answer: 99 " + " ".join(["so"] * 38), [3.0] * 4 + [20.0])] * 6
    return warm + later


async def test_online_stops_a_trace_whose_window_falls_below_the_warmup_threshold():
    backend = by_seed(*online_specs())
    node = make_confidence_node(backend, mode="online", n=10, warmup=4, keep_top=0.5, window=4)
    out = await node({"question": "q"})
    (threshold,) = [d for d in out["decisions"] if d["kind"] == "confidence_threshold"]
    assert threshold["threshold"] == 6.5  # the median of 5, 6, 7, 8
    assert [w["confidence"] for w in threshold["warmup"]] == [5.0, 6.0, 7.0, 8.0]
    stops = [d for d in out["decisions"] if d["kind"] == "confidence_stop"]
    assert [d["index"] for d in stops] == [4, 5, 6, 7, 8, 9]
    assert {d["tokens"] for d in stops} == {4} and {d["window_confidence"] for d in stops} == {3.0}
    # Stopped traces do not vote, though six of them said 99 (a majority, weighted or not);
    # warmup traces vote only when they reach the threshold.
    assert out["answer"] == "12"
    assert status(out) == {0: "filtered", 1: "filtered", 2: "kept", 3: "kept"} | {
        i: "stopped" for i in range(4, 10)
    }
    assert all(c.answer is None for c in out["candidates"] if c.index >= 4)
    plain = await make_select_node(select="majority")({"candidates": out["candidates"]})
    assert plain["answer"] == "12"
    record = summary(out)
    assert record["weights"] == {"12": 15.0}
    assert record["stopped"] == list(range(4, 10))
    assert record["stopped_tokens"] == 24
    assert record["tokens_saved_est"] == 6 * (10 - 4)  # each would have run like the warmup
    # Only what was streamed is counted: 4 × 10 warmup words and 6 × 4 stopped words.
    assert out["usage"].completion_tokens == backend.streamed_tokens == 64
    assert out["usage"].calls == 10


async def test_the_tokens_saved_are_estimated_from_the_finished_traces_that_ran_longer():
    # Warmup traces of 3, 12 and 30 words; two later traces are stopped at their first window
    # (4 words): the finished traces longer than 4 words average 21, so each saved 17 (the
    # 3-word trace says nothing about how long a trace that got past 4 words would run).
    warm = [(words(count, 12), 8.0) for count in (3, 12, 30)]
    later = [(words(40, 99), [1.0] * 4 + [20.0])] * 2
    node = make_confidence_node(
        by_seed(*warm, *later), mode="online", n=5, warmup=3, keep_top=0.5, window=4
    )
    record = summary(await node({"question": "q"}))
    assert record["stopped"] == [3, 4] and record["stopped_tokens"] == 8
    assert record["tokens_saved_est"] == 2 * (21 - 4)


async def test_online_checks_windows_seen_before_the_threshold_was_known():
    # Everything in flight at once: the later traces pass their unsure first window while the
    # warmup is still running, and are stopped at their next word once the threshold is set.
    backend = by_seed(*online_specs(), delay=0.001)
    node = make_confidence_node(
        backend, mode="online", n=10, warmup=4, keep_top=0.5, window=4, concurrency=10
    )
    out = await node({"question": "q"})
    assert out["answer"] == "12"
    stopped = [c for c in out["candidates"] if c.metadata["status"] == "stopped"]
    assert [c.index for c in stopped] == list(range(4, 10))
    assert all(4 <= c.completion_tokens < 40 for c in stopped)
    assert out["usage"].completion_tokens == backend.streamed_tokens < 40 + 6 * 40


async def test_online_without_stops_votes_like_offline_over_the_threshold():
    specs = [(words(6, 12), 6.0)] * 4 + [(words(6, 13), 9.0)] * 2
    out = await make_confidence_node(by_seed(*specs), mode="online", n=6, keep_top=1.0)(
        {"question": "q"}
    )
    assert summary(out)["stopped"] == [] and summary(out)["warmup"] == 4
    assert summary(out)["weights"] == {"12": 24.0, "13": 18.0}
    assert out["answer"] == "12"
    assert all("warmup" in c.metadata for c in out["candidates"])


# -- the budget -------------------------------------------------------------------------------


async def test_the_budget_refuses_traces_and_the_node_answers_with_what_it_has():
    backend = by_seed((words(4, 12), 3.0))
    out = await make_confidence_node(backend, n=8)({"question": "q", "budget": Budget(max_calls=3)})
    assert len(backend.requests) == out["usage"].calls == 3
    record = summary(out)
    assert record["reason"] == "budget"
    assert record["refused"] + record["skipped"] == 5
    assert out["answer"] == "12" and len(out["candidates"]) == 3


async def test_after_a_refusal_the_traces_already_generating_finish():
    # Two calls for four traces all in flight: the third is refused while the first two are
    # still streaming; they hold their reservation, so they finish and vote.
    backend = by_seed((words(10, 12), 3.0), delay=0.001)
    out = await make_confidence_node(backend, n=4)({"question": "q", "budget": Budget(max_calls=2)})
    record = summary(out)
    assert record["reason"] == "budget"
    assert record["refused"] == 2 and record["cancelled"] == 0
    assert [c.completion_tokens for c in out["candidates"]] == [10, 10]
    assert out["answer"] == "12"


async def test_online_the_budget_stops_after_the_warmup():
    backend = by_seed(*online_specs())
    node = make_confidence_node(backend, mode="online", n=10, keep_top=0.5, window=4)
    out = await node({"question": "q", "budget": Budget(max_calls=6)})
    assert out["usage"].calls == 6
    assert summary(out)["reason"] == "budget"
    assert summary(out)["stopped"] == [4, 5]
    assert out["answer"] == "12"


async def test_a_token_budget_holds_for_concurrent_traces():
    backend = by_seed((words(10, 12), 3.0))
    node = make_confidence_node(
        backend, n=8, sampling=SamplingParams(max_tokens=10),
        prompt=lambda state: [{"role": "user", "content": "q"}],
    )  # fmt: skip
    out = await node({"question": "q", "budget": Budget(max_total_tokens=40)})
    assert out["usage"].total_tokens <= 40
    assert summary(out)["reason"] == "budget"
    assert any("budget" in d for d in out["decisions"])


async def test_strict_budget_raises_and_leaves_no_trace_running():
    backend = by_seed((words(30, 12), 3.0), delay=0.001)
    node = make_confidence_node(backend, n=4)
    with pytest.raises(BudgetExhausted, match="calls"):
        await node({"question": "q", "budget": Budget(max_calls=2, strict=True)})
    sent = backend.streamed_tokens
    assert sent < 2 * 30  # the two granted traces were cancelled half-way
    await asyncio.sleep(0.02)
    assert backend.streamed_tokens == sent
    assert asyncio.all_tasks() == {asyncio.current_task()}


# -- failures ---------------------------------------------------------------------------------


async def test_a_backend_failure_after_a_finished_trace_keeps_what_finished():
    def flaky(request, i):
        if request.sampling.seed >= 2:
            raise BackendError("server went away", retryable=True)
        return completion_with_confidence(words(4, 12), 3.0)

    out = await make_confidence_node(FakeBackend(flaky), n=5, concurrency=1)({"question": "q"})
    assert len(out["candidates"]) == 2 and out["answer"] == "12"
    assert summary(out)["reason"] == "backend_error"

    def dead(request, i):
        raise BackendError("down", retryable=False)

    with pytest.raises(BackendError):
        await make_confidence_node(FakeBackend(dead), n=3)({"question": "q"})


# -- graphs and state shapes ------------------------------------------------------------------


class ChatDeepConf(MessagesState, CandidatesState):
    pass


async def test_the_graph_answers_in_a_messages_state_conversation():
    specs = [(words(6, 13), 2.0)] * 3 + [(words(6, 12), 9.0)] * 2
    graph = create_confidence_graph(by_seed(*specs), n=5, state_schema=ChatDeepConf).compile()
    state = await graph.ainvoke({"messages": [HumanMessage("What is 7+5?")]})
    reply = state["messages"][-1]
    assert isinstance(reply, AIMessage)
    assert reply.content == words(6, 12)
    meta = reply.response_metadata["tts_graph"]
    assert meta["answer"] == "12"
    assert [d["kind"] for d in meta["decisions"]] == ["confidence"]
    assert reply.usage_metadata is not None
    assert reply.usage_metadata["output_tokens"] == state["usage"].completion_tokens == 30
    assert state["strategy"] == "confidence" and state["answer"] == "12"


async def test_the_online_graph_streams_its_decisions():
    graph = create_confidence_graph(
        by_seed(*online_specs()), mode="online", n=10, keep_top=0.5, window=4
    ).compile()
    events = [
        e["tts_graph"]["kind"] async for e in graph.astream({"question": "q"}, stream_mode="custom")
    ]
    assert events == ["confidence_threshold", *["confidence_stop"] * 6, "confidence"]


def test_the_graph_runs_under_sync_invoke():
    graph = create_confidence_graph(by_seed((words(4, 12), 3.0)), n=2).compile()
    assert graph.invoke({"question": "q"})["answer"] == "12"


def test_the_graph_names_the_keys_a_schema_lacks():
    with pytest.raises(ConfigError, match=r"create_confidence_graph.*candidates, usage"):
        create_confidence_graph(by_seed(("x", 1.0)), state_schema=MessagesState)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"mode": "eager"}, "unknown mode 'eager'; choose one of: offline, online"),
        ({"confidence": "bottom"}, "choose one of: lowest, mean, tail"),
        ({"n": 0}, "n must be >= 1"),
        ({"keep_top": 0.0}, r"keep_top must be in \(0, 1\]"),
        ({"keep_top": 1.5}, "keep_top must be"),
        ({"window": 0}, "window must be >= 1"),
        ({"top_logprobs": 1}, r"top_logprobs must be in \[2, 20\]"),
        ({"top_logprobs": 21}, "top_logprobs must be"),
        ({"concurrency": 0}, "concurrency must be >= 1"),
        ({"warmup": 2}, "warmup applies to mode='online' only"),
        ({"mode": "online", "n": 4, "warmup": 5}, r"warmup must be in \[1, n=4\]"),
        ({"mode": "online", "warmup": 0}, "warmup must be"),
        ({"mode": "online", "confidence": "tail"}, "use confidence='lowest'"),
    ],
)
def test_bad_options_fail_at_build_time(options, needle):
    with pytest.raises(ConfigError, match=needle):
        make_confidence_node(by_seed(("x", 1.0)), **options)
    with pytest.raises(ConfigError, match=needle):
        create_confidence_graph(by_seed(("x", 1.0)), **options)

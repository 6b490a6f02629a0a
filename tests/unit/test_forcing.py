"""Budget forcing with a scripted fake model: marker handling, waits, the cap, the guard."""

import logging

import pytest

from tts_graph import Budget, ConfigError
from tts_graph.backends.base import Completion
from tts_graph.nodes.forcing import ThinkingMarkers, make_budget_forcing_node
from tts_graph.testing import FakeBackend


class ScriptedThinker:
    """Thinks `chunk` tokens per request, then closes with the end marker (or EOS, or never)."""

    def __init__(self, chunk=10, ends="marker", answer="Final: 12", marker_ids=(99, 98)):
        self.chunk = chunk
        self.ends = ends
        self.answer = answer
        self.marker_ids = marker_ids
        self.backend = FakeBackend(self, model_params=None)
        self.backend.tokenize = self.tokenize

    async def tokenize(self, text):
        return list(self.marker_ids) if text == "</think>" else list(range(len(text.split())))

    def __call__(self, request, i):
        content = request.messages[-1]["content"] if request.messages else request.prompt
        if content.endswith("Final Answer:"):
            return Completion(index=i, text=" 12", finish_reason="stop", completion_tokens=2)
        n = min(self.chunk, request.sampling.max_tokens)
        text = " ".join(["think"] * n)
        if self.ends == "never" or n < self.chunk:
            return Completion(index=i, text=text, finish_reason="length", completion_tokens=n)
        stop_reason = (
            None
            if self.ends == "eos"
            else (request.sampling.stop_token_ids or request.sampling.stop)[0]
        )
        return Completion(
            index=i, text=text, finish_reason="stop", stop_reason=stop_reason, completion_tokens=n
        )


async def run(thinker, state=None, **options):
    node = make_budget_forcing_node(thinker.backend, **options)
    return await node({"question": "What is 7+5?", **(state or {})})


def assistant_contents(thinker):
    return [r.messages[-1]["content"] for r in thinker.backend.requests]


async def test_min_thinking_appends_wait_after_stripping_the_end_marker():
    thinker = ScriptedThinker(chunk=10)
    out = await run(thinker, min_thinking_tokens=25, max_thinking_tokens=100, max_waits=5)
    trace = out["candidates"][0].metadata["forcing"]
    assert (trace["thinking_tokens"], trace["waits"], trace["requests"]) == (30, 2, 4)
    contents = assistant_contents(thinker)
    assert contents[0] == "<think>\n"
    assert contents[1].endswith("\nWait") and contents[2].endswith("\nWait")
    assert all("</think>" not in c for c in contents[:3])  # stripped while thinking
    assert contents[3].endswith("</think>\nFinal Answer:")
    assert all(r.continue_final_message for r in thinker.backend.requests)
    assert out["candidates"][0].answer == "12"


async def test_waits_are_bounded():
    thinker = ScriptedThinker(chunk=10)
    out = await run(thinker, min_thinking_tokens=100, max_thinking_tokens=200, max_waits=1)
    assert out["candidates"][0].metadata["forcing"]["waits"] == 1
    assert out["candidates"][0].metadata["forcing"]["thinking_tokens"] == 20


async def test_cap_cuts_thinking_and_forces_an_answer():
    thinker = ScriptedThinker(chunk=1000, ends="never")
    out = await run(thinker, max_thinking_tokens=50, answer_max_tokens=16)
    cand = out["candidates"][0]
    trace = cand.metadata["forcing"]
    assert trace["capped"] and trace["thinking_tokens"] == 50
    assert cand.completion_tokens <= 50 + 16
    assert thinker.backend.requests[0].sampling.max_tokens == 50
    assert thinker.backend.requests[-1].sampling.max_tokens == 16
    assert cand.answer == "12"


async def test_single_token_end_marker_is_stopped_on_by_id_with_min_tokens():
    thinker = ScriptedThinker(chunk=10, marker_ids=(42,))
    out = await run(thinker, min_thinking_tokens=15, max_thinking_tokens=100)
    first, second = thinker.backend.requests[:2]
    assert first.sampling.stop_token_ids == (42,) and first.sampling.stop == ()
    assert first.sampling.min_tokens == 0
    assert second.sampling.min_tokens == 1  # after a Wait the model may not close at once
    assert out["decisions"][0]["end_marker_token_ids"] == [42]


async def test_multi_token_end_marker_uses_a_stop_string():
    thinker = ScriptedThinker(chunk=10)
    await run(thinker, max_thinking_tokens=100)
    assert thinker.backend.requests[0].sampling.stop == ("</think>",)
    assert thinker.backend.requests[0].sampling.stop_token_ids == ()


async def test_a_model_that_ignores_the_markers_is_reported(caplog):
    thinker = ScriptedThinker(chunk=10, ends="eos")
    with caplog.at_level(logging.WARNING):
        out = await run(thinker, n=2, max_thinking_tokens=100)
    assert out["decisions"][0]["markers_ignored"] is True
    assert "ignores the thinking markers" in caplog.text
    assert all(c.answer == "12" for c in out["candidates"])
    follows = ScriptedThinker(chunk=10)
    assert (await run(follows, max_thinking_tokens=100))["decisions"][0]["markers_ignored"] is False


async def test_budget_guard_goes_straight_to_the_answer():
    thinker = ScriptedThinker(chunk=10)
    out = await run(thinker, state={"budget": Budget(max_calls=1)}, max_thinking_tokens=100)
    # One call left: it is kept for the answer, so no thinking happens at all.
    trace = out["candidates"][0].metadata["forcing"]
    assert (trace["requests"], trace["thinking_tokens"], trace["capped"]) == (1, 0, True)
    assert assistant_contents(thinker) == ["<think>\n\n</think>\nFinal Answer:"]
    assert out["candidates"][0].answer == "12"


async def test_completion_budget_clamps_thinking():
    thinker = ScriptedThinker(chunk=1000, ends="never")
    out = await run(
        thinker,
        state={"budget": Budget(max_completion_tokens=30)},
        max_thinking_tokens=100,
        answer_max_tokens=10,
    )
    assert thinker.backend.requests[0].sampling.max_tokens == 20  # 10 kept for the answer
    assert out["usage"].completion_tokens <= 30
    assert out["candidates"][0].answer == "12"


async def test_raw_prompt_mode_continues_the_text():
    thinker = ScriptedThinker(chunk=5)
    await run(thinker, prompt=lambda s: f"Q: {s['question']}\nA: ", max_thinking_tokens=50)
    first = thinker.backend.requests[0]
    assert first.messages is None
    assert first.prompt == "Q: What is 7+5?\nA: <think>\n"


async def test_seeds_are_distinct_per_candidate_and_request():
    thinker = ScriptedThinker(chunk=10)
    out = await run(thinker, n=3, seed=100, min_thinking_tokens=15, max_thinking_tokens=100)
    assert [c.seed for c in out["candidates"]] == [100, 101, 102]
    seeds = [r.sampling.seed for r in thinker.backend.requests]
    assert len(seeds) == len(set(seeds))


async def test_custom_markers_and_wait_word():
    thinker = ScriptedThinker(chunk=10)
    thinker.marker_ids = (1, 2)
    await run(
        thinker,
        markers=ThinkingMarkers("[[", "]]"),
        wait="Hmm",
        min_thinking_tokens=15,
        max_thinking_tokens=100,
    )
    contents = assistant_contents(thinker)
    assert contents[0] == "[[\n"
    assert contents[1].endswith("\nHmm")
    assert contents[-1].endswith("]]\nFinal Answer:")


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"min_thinking_tokens": 50, "max_thinking_tokens": 10}, "min_thinking_tokens"),
        ({"n": 0}, "n must be"),
        ({"max_waits": -1}, "max_waits"),
        ({"answer_max_tokens": 0}, "answer_max_tokens"),
        ({"markers": ThinkingMarkers("", "x")}, "markers"),
    ],
)
def test_bad_options(options, needle):
    with pytest.raises(ConfigError, match=needle):
        make_budget_forcing_node(FakeBackend(lambda r, i: ""), **options)

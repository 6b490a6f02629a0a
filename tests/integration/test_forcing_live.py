"""Budget forcing against the real server: it really extends thinking, really caps it, and
always ends with an answer. The embedded model has no native thinking markers: the prompt asks
for them and the assistant turn is pre-filled with the start marker."""

from tts_graph.backends.base import SamplingParams
from tts_graph.nodes.forcing import make_budget_forcing_node

STATE = {"question": "What is 7+5?"}
SAMPLING = SamplingParams(temperature=0.7)


async def test_forcing_extends_thinking_beyond_what_the_model_does_alone(backend):
    alone = await make_budget_forcing_node(
        backend, n=2, seed=3, max_thinking_tokens=300, answer_max_tokens=16, sampling=SAMPLING
    )(STATE)
    forced = await make_budget_forcing_node(
        backend,
        n=2,
        seed=3,
        min_thinking_tokens=150,
        max_thinking_tokens=300,
        max_waits=4,
        answer_max_tokens=16,
        sampling=SAMPLING,
    )(STATE)
    for a, f in zip(alone["candidates"], forced["candidates"], strict=True):
        ta, tf = a.metadata["forcing"], f.metadata["forcing"]
        assert tf["thinking_tokens"] >= min(150, ta["thinking_tokens"])
        assert tf["thinking_tokens"] >= 150 or tf["waits"] == 4
        if ta["thinking_tokens"] < 150:
            assert tf["waits"] >= 1
            assert tf["thinking_tokens"] > ta["thinking_tokens"]
            assert "\nWait" in f.text
    assert forced["usage"].completion_tokens > alone["usage"].completion_tokens


async def test_forcing_caps_thinking_and_always_answers(backend):
    cap, answer_max = 24, 16
    out = await make_budget_forcing_node(
        backend,
        n=3,
        seed=5,
        max_thinking_tokens=cap,
        answer_max_tokens=answer_max,
        sampling=SAMPLING,
    )(STATE)
    for cand in out["candidates"]:
        trace = cand.metadata["forcing"]
        assert trace["thinking_tokens"] <= cap
        assert cand.completion_tokens <= cap + answer_max
        assert trace["answer_tokens"] >= 1
        assert cand.text.count("</think>\nFinal Answer:") == 1
        assert cand.text.split("Final Answer:")[-1].strip()  # an answer always comes
    assert out["usage"].completion_tokens <= 3 * (cap + answer_max)
    assert out["usage"].calls == sum(c.metadata["forcing"]["requests"] for c in out["candidates"])

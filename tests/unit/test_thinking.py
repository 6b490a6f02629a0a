"""Internal scaling: server-side thinking controls, reading thinking back, the fallback."""

import pytest

from tts_graph import ConfigError
from tts_graph.backends.base import Completion
from tts_graph.errors import BackendError
from tts_graph.nodes.thinking import make_thinking_node, split_thinking
from tts_graph.testing import FakeBackend

REFUSAL = BackendError(
    "the server answered HTTP 400: thinking_token_budget is set but reasoning_config is not "
    "configured. Please set --reasoning-parser and/or --reasoning-config",
    retryable=False,
    status=400,
)


def test_split_thinking():
    assert split_thinking("<think> a b </think> Answer: 3") == ("a b", "Answer: 3")
    assert split_thinking("Answer: 3") == ("", "Answer: 3")


async def test_controls_are_sent_and_server_reasoning_is_read_back():
    def fn(request, i):
        return Completion(
            index=i,
            text="Answer: 12",
            finish_reason="stop",
            completion_tokens=9,
            reasoning="seven plus five is twelve",
        )

    backend = FakeBackend(fn)
    node = make_thinking_node(
        backend,
        n=3,
        thinking_budget=100,
        enable_thinking=True,
        reasoning_effort="low",
        answer_max_tokens=20,
    )
    out = await node({"question": "7+5?"})
    (request,) = backend.requests
    assert request.n == 3
    assert request.extra_body == {
        "thinking_token_budget": 100,
        "chat_template_kwargs": {"enable_thinking": True},
        "reasoning_effort": "low",
    }
    assert request.sampling.max_tokens == 120  # thinking budget + answer allowance
    assert [c.answer for c in out["candidates"]] == ["12"] * 3
    assert out["candidates"][0].metadata["thinking_tokens"] == 5  # fake tokenizer: words
    record = out["decisions"][0]
    assert record["fallback"] is None
    assert record["runs"][0]["thinking_from"] == "server"


async def test_thinking_between_markers_when_the_server_has_no_parser():
    backend = FakeBackend(lambda r, i: "<think>add them up</think>\nAnswer: 12")
    out = await make_thinking_node(backend, enable_thinking=True)({"question": "q"})
    cand = out["candidates"][0]
    assert cand.metadata["thinking"] == "add them up"
    assert out["decisions"][0]["runs"][0]["thinking_from"] == "markers"


async def test_a_refused_control_falls_back_to_budget_forcing_once():
    calls = []

    def fn(request, i):
        calls.append(request.extra_body)
        if "thinking_token_budget" in request.extra_body:
            raise REFUSAL
        return Completion(
            index=i,
            text="Final Answer: 12"
            if request.messages[-1]["content"].endswith("Final Answer:")
            else "think think",
            finish_reason="stop",
            stop_reason="</think>",
            completion_tokens=2,
        )

    backend = FakeBackend(fn)
    node = make_thinking_node(backend, thinking_budget=40)
    out = await node({"question": "q"})
    first, *forcing = out["decisions"]
    assert first["fallback"] == "budget_forcing"
    assert "reasoning_config is not configured" in first["reason"]
    assert forcing[0]["kind"] == "budget_forcing"
    assert forcing[0]["max_thinking_tokens"] == 40
    assert out["candidates"][0].metadata["forcing"]["thinking_tokens"] <= 40
    # The second run does not ask the server again.
    before = sum("thinking_token_budget" in c for c in calls)
    await node({"question": "q"})
    assert sum("thinking_token_budget" in c for c in calls) == before == 1


async def test_the_fallback_keeps_the_callers_prompt():
    def fn(request, i):
        if "thinking_token_budget" in request.extra_body:
            raise REFUSAL
        return Completion(index=i, text="12", finish_reason="stop", stop_reason="</think>",
                          completion_tokens=1)  # fmt: skip

    def prompt(state):
        return [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": state["task"]},
        ]

    backend = FakeBackend(fn)
    node = make_thinking_node(backend, thinking_budget=40, prompt=prompt)
    await node({"task": "What is 7+5?"})
    forced = [r for r in backend.requests if "thinking_token_budget" not in r.extra_body]
    assert forced
    for request in forced:
        assert list(request.messages[:2]) == prompt({"task": "What is 7+5?"})


async def test_fallback_error_says_what_the_server_lacks():
    def fn(request, i):
        raise REFUSAL

    node = make_thinking_node(FakeBackend(fn), thinking_budget=40, fallback="error")
    with pytest.raises(ConfigError, match="does not offer the thinking controls"):
        await node({"question": "q"})


async def test_other_backend_errors_are_not_swallowed():
    def fn(request, i):
        raise BackendError("HTTP 500: boom", retryable=True, status=500)

    with pytest.raises(BackendError, match="boom"):
        await make_thinking_node(FakeBackend(fn), thinking_budget=10)({"question": "q"})


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"n": 0}, "n must"),
        ({"thinking_budget": 0}, "thinking_budget"),
        ({"fallback": "pray"}, "budget_forcing, error"),
        ({"reasoning_effort": "max"}, "low, medium, high"),
    ],
)
def test_bad_options(options, needle):
    with pytest.raises(ConfigError, match=needle):
        make_thinking_node(FakeBackend(lambda r, i: ""), **options)

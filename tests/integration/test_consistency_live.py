"""Early-stopping self-consistency against the vLLM server (sampled text is never pinned)."""

from __future__ import annotations

import pytest

from tts_graph import SamplingParams
from tts_graph.nodes.consistency import make_consistency_node

from server_metrics import settled_tokens


@pytest.mark.parametrize("stop", ["adaptive", "beta"])
async def test_early_stop_draws_at_most_max_samples(backend, stop):
    node = make_consistency_node(
        backend, stop=stop, max_samples=8, sampling=SamplingParams(max_tokens=48), seed=3
    )
    out = await node({"question": "What is 7+5?"})
    checks = [d for d in out["decisions"] if d["kind"] == "consistency_check"]
    (summary,) = [d for d in out["decisions"] if d["kind"] == "consistency"]
    drawn = len(out["candidates"])
    assert 1 <= drawn <= 8
    assert summary["drawn"] == drawn and summary["skipped"] == 8 - drawn
    assert out["usage"].calls == drawn + summary["cancelled"]
    assert out["usage"].completion_tokens > 0
    assert {c.seed for c in out["candidates"]} <= set(range(3, 11))
    assert summary["reason"] in ("threshold", "max_samples")
    assert checks[-1]["decision"] == "stop"


async def test_beta_early_stopping_cancels_in_flight_requests_and_saves_server_work(
    backend, vllm_server
):
    # Eight samples in flight at a time out of sixteen, at a low temperature so that they
    # agree: once four agree, the ones still running are cancelled and the rest never start.
    # The same seeds without an early stop (Beta never reaches a threshold of 1.0) show what
    # the cancelled samples would have cost the server.
    params = SamplingParams(temperature=0.3, max_tokens=200)
    question = {"question": "What is 7+5?"}
    root = vllm_server.root_url

    def node(threshold: float | None):
        return make_consistency_node(
            backend, stop="beta", max_samples=16, concurrency=8, threshold=threshold,
            sampling=params, seed=11,
        )  # fmt: skip

    before = await settled_tokens(root)
    early = await node(None)(question)
    early_server = await settled_tokens(root) - before
    (summary,) = [d for d in early["decisions"] if d["kind"] == "consistency"]

    before = await settled_tokens(root)
    full = await node(1.0)(question)
    full_server = await settled_tokens(root) - before

    assert summary["reason"] == "threshold" and summary["cancelled"] > 0
    assert len(full["candidates"]) == 16
    # The budget counts what the client received. The server may generate more for a cancelled
    # request before it sees the disconnect; how much depends on the machine's load, so the bound
    # is structural: at most the eight in flight, each up to its max_tokens.
    assert early["usage"].completion_tokens <= early_server
    assert early_server <= early["usage"].completion_tokens + 8 * 200
    assert full["usage"].completion_tokens == full_server
    assert early_server < full_server

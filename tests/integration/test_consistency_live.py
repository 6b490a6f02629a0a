"""Early-stopping self-consistency against the vLLM server (sampled text is never pinned)."""

import pytest

from tts_graph import SamplingParams
from tts_graph.nodes.consistency import make_consistency_node


@pytest.mark.parametrize("stop", ["adaptive", "beta"])
async def test_early_stop_draws_at_most_max_samples(backend, stop):
    node = make_consistency_node(
        backend, stop=stop, max_samples=8, sampling=SamplingParams(max_tokens=48), seed=3
    )
    out = await node({"question": "What is 7+5?"})
    rounds = [d for d in out["decisions"] if d["kind"] == "consistency_round"]
    (summary,) = [d for d in out["decisions"] if d["kind"] == "consistency"]
    drawn = len(out["candidates"])
    assert 1 <= drawn <= 8
    assert summary["drawn"] == drawn and summary["skipped"] == 8 - drawn
    assert out["usage"].calls == len(rounds) == summary["rounds"]
    assert out["usage"].completion_tokens > 0
    assert [r["seed"] for r in rounds] == [3 + i for i in range(len(rounds))]
    assert summary["reason"] in ("threshold", "max_samples")
    assert rounds[-1]["decision"] == "stop"

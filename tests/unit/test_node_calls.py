"""What a node call costs beyond its work: nothing that grows with the calls, such as reading
the node function's signature again (LangChain's RunnableLambda does, on every call, which
doubled a node's cost; bench/bench_node_overhead.py measures it)."""

from __future__ import annotations

import inspect

from tts_graph import create_best_of_n_graph
from tts_graph.testing import FakeBackend


async def test_running_a_graph_reads_no_signature(monkeypatch):
    graph = create_best_of_n_graph(FakeBackend(lambda request, i: "Answer: 4"), n=4).compile()
    await graph.ainvoke({"question": "What is 2+2?"})  # warm-up: whatever is read once
    reads: list[object] = []
    original = inspect.signature

    def counting(obj, *args, **kwargs):
        reads.append(obj)
        return original(obj, *args, **kwargs)

    monkeypatch.setattr(inspect, "signature", counting)
    out = await graph.ainvoke({"question": "What is 2+2?"})
    assert out["answer"] == "4"
    assert reads == []

"""The budget against the real server: exact prompt counts, limits that hold under concurrency,
and requests cancelled at the wall-time deadline that the server really stops."""

from __future__ import annotations

import asyncio

from tts_graph import Budget, create_best_of_n_graph
from tts_graph.backends.base import GenerationRequest, SamplingParams
from tts_graph.ledger import Ledger
from tts_graph.metering import spending
from tts_graph.nodes import make_budget_forcing_node

from server_metrics import GENERATED, RUNNING, metric

QUESTION = [{"role": "user", "content": "What is 7+5?"}]


async def test_prompt_counts_match_what_the_server_bills(backend):
    chat = GenerationRequest.chat(
        [{"role": "system", "content": "Be brief."}, *QUESTION],
        sampling=SamplingParams(max_tokens=4, temperature=0.0),
    )
    cont = GenerationRequest.chat(
        [*QUESTION, {"role": "assistant", "content": "7 + 5"}],
        continue_final_message=True,
        sampling=SamplingParams(max_tokens=4, temperature=0.0),
    )
    raw = GenerationRequest(prompt="7 + 5 =", sampling=SamplingParams(max_tokens=4))
    for request in (chat, cont, raw):
        counted = await backend.count_prompt_tokens(request)
        gen = await backend.generate(request)
        assert counted == gen.usage.prompt_tokens


async def test_best_of_8_uses_a_small_budget_and_never_exceeds_it(backend):
    graph = create_best_of_n_graph(backend, n=8, seed=3).compile()
    state = await graph.ainvoke(
        {"question": "What is 7+5?", "budget": Budget(max_total_tokens=400)}
    )
    assert state["usage"].total_tokens <= 400
    assert len(state["candidates"]) > 1  # not one sample at the full max_tokens
    cut = state["decisions"][0]["budget"][0]
    assert cut["max_tokens"][1] < 256


async def test_parallel_forcing_runs_share_the_call_and_token_limits(backend):
    node = make_budget_forcing_node(backend, n=4, max_thinking_tokens=64, answer_max_tokens=16)
    for budget in (Budget(max_completion_tokens=60), Budget(max_calls=2)):
        ledger = Ledger(budget=budget)
        out = await node({"question": "What is 7+5?", "budget": budget, "ledger": ledger})
        usage = out.get("usage")
        assert usage is not None
        assert usage.completion_tokens <= (budget.max_completion_tokens or 10**9)
        assert usage.calls <= (budget.max_calls or 10**9)
        assert ledger.spent == usage


async def test_the_wall_time_deadline_stops_the_servers_work(backend, vllm_server):
    # Four long samples that cannot finish within the deadline.
    params = SamplingParams(max_tokens=1500, ignore_eos=True, temperature=1.0, seed=5)
    ledger = Ledger(budget=Budget(max_wall_s=3.0))
    request = GenerationRequest.chat(QUESTION, n=4, sampling=params)
    with spending(ledger) as spent:
        try:
            await backend.generate(request)
        except Exception as exc:  # BudgetExhausted, checked below
            error = exc
    assert getattr(error, "limit", None) == "wall time"
    assert spent.usage.calls == 1 and spent.usage.completion_tokens == 0
    # The server stops generating once the client has gone.
    for _ in range(50):
        if await metric(vllm_server.root_url, RUNNING) == 0:
            break
        await asyncio.sleep(0.2)
    assert await metric(vllm_server.root_url, RUNNING) == 0
    before = await metric(vllm_server.root_url, GENERATED)
    await asyncio.sleep(1.0)
    assert await metric(vllm_server.root_url, GENERATED) == before

"""The run's ledger: reservations, cuts, refusals, the wall-time deadline and charging requests."""

import asyncio
import contextlib
import copy
import pickle

import pytest

from tts_graph.backends.base import GenerationRequest, SamplingParams, metered
from tts_graph.budget import Budget, Usage
from tts_graph.errors import BackendError, BudgetExhausted, ConfigError, EngineDeadError
from tts_graph.ledger import Ledger, share_ledger
from tts_graph.metering import charge, charge_call, spending
from tts_graph.testing import FakeBackend


def request(n=1, max_tokens=10, words=4):
    messages = [{"role": "user", "content": " ".join(["w"] * words)}]
    return GenerationRequest.chat(messages, n=n, sampling=SamplingParams(max_tokens=max_tokens))


def test_a_request_that_fits_is_granted_whole():
    ledger = Ledger(budget=Budget(max_total_tokens=100))
    grant = ledger.reserve(prompt_tokens=10, n=4, max_tokens=20)
    assert (grant.n, grant.max_tokens, grant.limit, grant.changes()) == (4, 20, None, None)
    assert ledger.reserved == Usage(prompt_tokens=10, completion_tokens=80, calls=1)
    assert ledger.remaining().total_tokens == 10


def test_a_cut_lowers_max_tokens_before_it_drops_samples():
    ledger = Ledger(budget=Budget(max_completion_tokens=100, min_sample_tokens=20))
    assert (lambda g: (g.n, g.max_tokens))(ledger.reserve(prompt_tokens=0, n=4, max_tokens=64)) == (
        4,
        25,
    )
    ledger = Ledger(budget=Budget(max_completion_tokens=50, min_sample_tokens=20))
    grant = ledger.reserve(prompt_tokens=0, n=4, max_tokens=64)
    assert (grant.n, grant.max_tokens) == (2, 25)  # 4 x 12 would be below the floor of 20
    assert grant.changes() == {"limit": "completion tokens", "n": [4, 2], "max_tokens": [64, 25]}
    ledger = Ledger(budget=Budget(max_completion_tokens=5, min_sample_tokens=20))
    assert (lambda g: (g.n, g.max_tokens))(ledger.reserve(prompt_tokens=0, n=4, max_tokens=64)) == (
        1,
        5,
    )


def test_every_limit_refuses_when_nothing_is_left_and_names_itself():
    cases = [
        (Budget(max_calls=1), "calls"),
        (Budget(max_total_tokens=12), "total tokens"),
        (Budget(max_completion_tokens=10), "completion tokens"),
        (Budget(max_flops=2 * 1_000 * 20), "flops"),
    ]
    for budget, limit in cases:
        ledger = Ledger(budget=budget)
        ledger.reserve(prompt_tokens=10, max_tokens=10, model_params=1_000)
        with pytest.raises(BudgetExhausted, match=limit) as info:
            ledger.reserve(prompt_tokens=10, max_tokens=10, model_params=1_000)
        assert info.value.limit == limit


def test_strict_refuses_any_cut():
    ledger = Ledger(budget=Budget(max_completion_tokens=100, strict=True))
    with pytest.raises(BudgetExhausted, match="completion tokens"):
        ledger.reserve(prompt_tokens=0, n=4, max_tokens=64)
    assert ledger.reserved == Usage()  # a refusal holds nothing


def test_a_flops_limit_without_a_parameter_count_is_a_config_error():
    ledger = Ledger(budget=Budget(max_flops=1e12))
    with pytest.raises(ConfigError, match="parameter count"):
        ledger.reserve(prompt_tokens=10, max_tokens=10, model_params=None)


def test_settle_replaces_the_reservation_with_the_real_usage():
    ledger = Ledger(budget=Budget(max_total_tokens=100))
    grant = ledger.reserve(prompt_tokens=10, n=2, max_tokens=40)
    assert ledger.remaining().total_tokens == 10
    ledger.settle(grant, Usage(prompt_tokens=10, completion_tokens=12, calls=1))
    assert ledger.reserved == Usage()
    assert ledger.remaining().total_tokens == 78
    other = ledger.reserve(prompt_tokens=10, max_tokens=10)
    ledger.release(other)
    assert ledger.remaining().total_tokens == 78


def test_instead_of_swaps_a_held_call_atomically_and_keeps_it_on_refusal():
    ledger = Ledger(budget=Budget(max_calls=1, max_completion_tokens=5))
    held = ledger.reserve(prompt_tokens=0)
    grant = ledger.reserve(prompt_tokens=0, max_tokens=5, instead_of=held)
    assert ledger.reserved.calls == 1 and grant.max_tokens == 5
    ledger.release(grant)
    held = ledger.reserve(prompt_tokens=0)
    ledger.reserve(prompt_tokens=0, max_tokens=5, instead_of=held)
    with pytest.raises(BudgetExhausted):
        ledger.reserve(prompt_tokens=0, max_tokens=5, instead_of=held)
    assert ledger.reserved.calls == 1


def test_wall_time_counts_from_the_run_start():
    ledger = Ledger(budget=Budget(max_wall_s=5.0), elapsed_s=6.0)  # restored after 6 s
    with pytest.raises(BudgetExhausted, match="wall time"):
        ledger.reserve(prompt_tokens=0)
    assert Ledger(budget=Budget(max_wall_s=5.0)).time_left() == pytest.approx(5.0, abs=0.5)


def test_copies_share_the_run_accounting_and_a_checkpoint_keeps_what_was_spent():
    ledger = Ledger(budget=Budget(max_calls=3))
    ledger.settle(ledger.reserve(prompt_tokens=1), Usage(prompt_tokens=1, calls=1))
    assert copy.copy(ledger) is ledger and copy.deepcopy({"l": ledger})["l"] is ledger
    restored = Ledger(**ledger.model_dump())  # how LangGraph's serializer revives it
    assert restored.spent.calls == 1 and restored.budget == ledger.budget
    assert restored.elapsed_s > 0
    assert share_ledger(Ledger(), ledger) is ledger
    assert share_ledger(ledger, None) is ledger


def test_budget_exhausted_and_backend_errors_survive_pickling():
    for exc in (
        BudgetExhausted("out", limit="calls"),
        BackendError("down", retryable=True, status=503),
        EngineDeadError("dead", status=500),
    ):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
        assert back.__dict__ == exc.__dict__


async def test_requests_outside_a_node_are_not_charged():
    backend = FakeBackend(lambda r, i: "a b c")
    gen = await backend.generate(request(n=3))
    assert len(gen.completions) == 3 and gen.budget is None


async def test_a_charged_request_is_cut_and_says_so():
    backend = FakeBackend(lambda r, i: "a b c")
    ledger = Ledger(budget=Budget(max_total_tokens=4 + 3 * 20))
    with spending(ledger) as spent:
        gen = await backend.generate(request(n=4, max_tokens=20))
    assert backend.requests[0].n == 3  # 3 x 20 fit after the 4-word prompt
    assert gen.budget == {"limit": "total tokens", "n": [4, 3], "max_tokens": [20, 20]}
    assert spent.usage == ledger.spent
    assert spent.usage.completion_tokens == 9 and ledger.reserved == Usage()


async def test_a_backend_that_wraps_another_is_charged_once():
    inner = FakeBackend(lambda r, i: "a b")

    class Wrapper:  # satisfies the Backend protocol, does not subclass BaseBackend
        model_params = None

        async def generate(self, req):
            return await inner.generate(req)

        async def tokenize(self, text):
            return await inner.tokenize(text)

    ledger = Ledger(budget=Budget(max_calls=5))
    with spending(ledger) as spent:
        await metered(Wrapper()).generate(request())
    assert ledger.spent.calls == spent.usage.calls == 1


async def test_a_failed_request_releases_its_reservation():
    def boom(r, i):
        raise BackendError("down", retryable=False)

    ledger = Ledger(budget=Budget(max_calls=1))
    with spending(ledger), pytest.raises(BackendError):
        await FakeBackend(boom).generate(request())
    assert ledger.reserved == Usage() and ledger.spent == Usage()


async def test_the_deadline_cancels_a_request_in_flight_and_counts_its_call():
    started = asyncio.Event()
    finished = []

    async def slow(r, i):
        started.set()
        await asyncio.sleep(5)
        finished.append(i)
        return "late"

    ledger = Ledger(budget=Budget(max_wall_s=0.2))
    with spending(ledger) as spent, pytest.raises(BudgetExhausted, match="wall time") as info:
        await FakeBackend(slow).generate(request(words=4))
    assert started.is_set() and finished == []
    assert info.value.limit == "wall time"
    assert spent.usage.calls == 1 and spent.usage.completion_tokens == 0
    assert ledger.reserved == Usage()
    assert ledger.elapsed() < 2


async def test_charge_call_hands_its_call_to_the_first_charged_request():
    backend = FakeBackend(lambda r, i: "x y")
    ledger = Ledger(budget=Budget(max_calls=1))
    with spending(ledger) as spent:
        async with charge_call(what="a judge call") as bill:
            await backend.generate(request())
            bill.settle(Usage(calls=1, prompt_tokens=999))  # ignored: the request was charged
    assert spent.usage.calls == 1 and spent.usage.prompt_tokens == 4
    assert ledger.reserved == Usage()


async def test_charge_call_counts_what_uncharged_work_reports_and_holds_the_call_limit():
    ledger = Ledger(budget=Budget(max_calls=2))
    with spending(ledger) as spent:
        async with charge_call(what="a check") as bill:
            bill.settle(Usage(calls=1, prompt_tokens=7))
        async with charge_call(what="a check") as bill:
            bill.settle(None)  # reported nothing: costs nothing
        async with charge_call(what="a check") as bill:
            bill.settle(Usage(calls=1))
        with pytest.raises(BudgetExhausted, match="calls"):
            async with charge_call(what="a check"):
                pass
    assert spent.usage.calls == 2 and spent.usage.prompt_tokens == 7


async def test_charge_outside_a_scope_holds_nothing():
    async with charge(prompt_tokens=10, max_tokens=10) as bill:
        assert bill.grant is None


async def collect(stream, stop_after=None):
    texts = []
    async with contextlib.aclosing(stream) as chunks:
        async for chunk in chunks:
            texts.append(chunk.text)
            if stop_after is not None and len(texts) >= stop_after:
                break
    return texts


async def test_a_stream_closed_early_counts_only_what_was_sent():
    backend = FakeBackend(lambda r, i: " ".join(["w"] * 20))
    ledger = Ledger(budget=Budget(max_completion_tokens=100))
    with spending(ledger) as spent:
        texts = await collect(backend.stream(request(max_tokens=50)), stop_after=5)
    assert len(texts) == 5 and backend.streamed_tokens == 5
    assert spent.usage.completion_tokens == 5 and spent.usage.calls == 1
    assert ledger.spent == spent.usage and ledger.reserved == Usage()


async def test_a_stream_is_cut_by_the_budget_and_bounded_by_the_wall_time():
    backend = FakeBackend(lambda r, i: " ".join(["w"] * 20))
    ledger = Ledger(budget=Budget(max_completion_tokens=8))
    with spending(ledger) as spent:
        texts = await collect(backend.stream(request(max_tokens=50)))
    assert len(texts) == 8 and spent.usage.completion_tokens == 8  # max_tokens cut to 8
    slow = FakeBackend(lambda r, i: " ".join(["w"] * 100), stream_delay_s=0.05)
    ledger = Ledger(budget=Budget(max_wall_s=0.3))
    with spending(ledger) as spent, pytest.raises(BudgetExhausted, match="wall time"):
        await collect(slow.stream(request(max_tokens=200)))
    assert 0 < slow.streamed_tokens < 100
    assert spent.usage.completion_tokens == slow.streamed_tokens
    assert ledger.reserved == Usage()

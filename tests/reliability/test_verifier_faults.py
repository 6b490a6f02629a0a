"""Verifiers, judges and reward models that crash, hang or lose their server.

Whatever goes wrong with the part that only improves the choice, the run still answers with the
candidates it paid for, and its result names what failed: the verifier decision (``error``,
``verifier_errors``), each candidate's verdict (``error``), the tournament decision
(``judge_errors``, ``fallback``, ``error``). A call that never returns is cut off by the
verifier's or judge's ``call_timeout_s``.

Every run is awaited under ``asyncio.wait_for`` with a generous bound: a regression that lets a
hang through fails the test instead of stalling the suite (the bound is not what is tested).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from typing import Any

import httpx
import pytest

from tts_graph import Budget, SamplingParams, create_best_of_n_graph, create_tournament_graph
from tts_graph.backends.server import free_port
from tts_graph.backends.vllm import VLLMBackend
from tts_graph.candidate import Candidate
from tts_graph.errors import BackendError, ConfigError
from tts_graph.nodes.tournament import make_tournament_node
from tts_graph.nodes.verify import make_verify_node
from tts_graph.testing import FakeBackend, FakeJudge, FakeVerifier, never_returns
from tts_graph.verifiers.base import DEFAULT_CALL_TIMEOUT_S, Problem, Verdict, call_timeout
from tts_graph.verifiers.judge import LLMJudge
from tts_graph.verifiers.registry import FunctionVerifier, create_verifier
from tts_graph.verifiers.reward import OutcomeRewardVerifier, ProcessRewardVerifier

GUARD_S = 120.0  # far past every call_timeout_s below; only a hang that got through reaches it

# Three samples: two say 12, one says 13, so a majority vote has one right answer.
ANSWERS = ["Answer: 12", "Answer: 13", "Answer: 12"]


def sampler() -> FakeBackend:
    return FakeBackend(lambda request, i: ANSWERS[i % len(ANSWERS)])


async def run(graph: Any, **state: Any) -> dict[str, Any]:
    return await asyncio.wait_for(graph.compile().ainvoke({"question": "7+5?", **state}), GUARD_S)


def verify_decision(state: dict[str, Any]) -> dict[str, Any]:
    return next(d for d in state["decisions"] if d["kind"] == "verify")


def tournament_decision(state: dict[str, Any]) -> dict[str, Any]:
    return next(d for d in state["decisions"] if d["kind"] == "tournament")


def boom(problem: Problem, text: str) -> bool:
    raise RuntimeError("checker crashed")


# -- verifiers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("uses_model", [False, True])
async def test_a_verifier_that_raises_leaves_every_candidate_with_the_error(uses_model):
    verifier = FakeVerifier(boom, uses_model=uses_model)
    state = await run(create_best_of_n_graph(sampler(), n=3, verifier=verifier))
    assert state["answer"] is not None and len(state["candidates"]) == 3
    record = verify_decision(state)
    assert record["verifier_errors"] == 3 and record["checked"] == 3
    assert "RuntimeError: checker crashed" in record["error"]
    for c in state["candidates"]:
        assert c.verdict.passed is False
        assert c.verdict.error is not None and "checker crashed" in c.verdict.error


@pytest.mark.parametrize("uses_model", [False, True])
async def test_a_verifier_that_never_returns_is_cut_off_at_its_call_timeout(uses_model):
    verifier = FakeVerifier(never_returns, uses_model=uses_model, call_timeout_s=0.2)
    state = await run(create_best_of_n_graph(sampler(), n=3, verifier=verifier))
    assert state["answer"] is not None
    record = verify_decision(state)
    assert record["verifier_errors"] == 3
    assert "did not finish within 0.2 s" in record["error"]
    assert all("call_timeout_s" in c.verdict.error for c in state["candidates"])


async def test_one_hanging_check_fails_only_its_candidate_when_each_is_checked_alone():
    async def hangs_on_13(problem: Problem, text: str) -> bool:
        if "13" in text:
            await never_returns()
        return "12" in text

    verifier = FakeVerifier(hangs_on_13, uses_model=True, call_timeout_s=0.2)
    state = await run(create_best_of_n_graph(sampler(), n=3, verifier=verifier))
    verdicts = [c.verdict for c in sorted(state["candidates"], key=lambda c: c.index)]
    assert [v.error is None for v in verdicts] == [True, False, True]
    assert [v.passed for v in verdicts] == [True, False, True]
    assert verify_decision(state)["verifier_errors"] == 1
    assert state["answer"] == "12"


async def test_a_timeout_raised_inside_a_verifier_is_its_own_error_not_the_call_timeout():
    def slow_inside(problem: Problem, text: str) -> bool:
        raise TimeoutError("sympy gave up")

    out = await make_verify_node(FakeVerifier(slow_inside))(
        {"question": "q", "candidates": [Candidate(index=0, text="x")]}
    )
    (c,) = out["candidates"]
    assert "raised TimeoutError: sympy gave up" in c.verdict.error


async def test_the_runs_wall_time_still_stops_a_hanging_model_verifier_as_a_budget_stop():
    # A wall-time limit shorter than the call timeout: the budget's stop, not a verifier error.
    verifier = FakeVerifier(never_returns, uses_model=True, call_timeout_s=60)
    state = await run(
        create_best_of_n_graph(sampler(), n=2, verifier=verifier), budget=Budget(max_wall_s=1.0)
    )
    record = verify_decision(state)
    assert record["skipped"] == 2 and record["reason"] == "wall time"
    assert record["verifier_errors"] == 0


async def test_a_blocking_check_function_is_cut_off_and_its_thread_left_behind():
    release = threading.Event()

    def stuck(problem: Problem, text: str) -> bool:
        release.wait()  # a synchronous check that does not return until the test ends
        return True

    try:
        verifier = FunctionVerifier(stuck, name="stuck", call_timeout_s=0.2)
        out = await asyncio.wait_for(
            make_verify_node(verifier)({"question": "q", "candidates": [Candidate(0, "x")]}),
            GUARD_S,
        )
        (c,) = out["candidates"]
        assert "verifier stuck did not finish within 0.2 s" in c.verdict.error
    finally:
        release.set()


def test_a_check_function_that_never_returns_does_not_keep_the_program_from_exiting():
    script = textwrap.dedent(
        """
        import asyncio, threading
        from tts_graph.candidate import Candidate
        from tts_graph.nodes.verify import make_verify_node
        from tts_graph.verifiers.registry import FunctionVerifier

        def stuck(problem, text):
            threading.Event().wait()  # never set

        async def main():
            node = make_verify_node(FunctionVerifier(stuck, call_timeout_s=0.2))
            out = await node({"question": "q", "candidates": [Candidate(0, "x")]})
            print(out["candidates"][0].verdict.error)

        asyncio.run(main())
        """
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=GUARD_S
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the program did not exit: a stuck check thread kept it alive")
    assert done.returncode == 0, done.stderr
    assert "did not finish within 0.2 s" in done.stdout


def test_call_timeout_defaults_and_is_checked_where_it_is_given():
    assert call_timeout(FakeVerifier(boom)) == DEFAULT_CALL_TIMEOUT_S
    assert call_timeout(object()) == DEFAULT_CALL_TIMEOUT_S  # a verifier that does not say
    assert call_timeout(FakeVerifier(boom, call_timeout_s=None)) is None
    assert create_verifier("judge", backend=sampler(), call_timeout_s=30).call_timeout_s == 30.0
    # A verifier whose class cannot take the attribute (a frozen dataclass) still gets it.
    numeric = create_verifier("numeric", call_timeout_s=30)
    assert (numeric.name, call_timeout(numeric)) == ("numeric", 30.0)
    with pytest.raises(ConfigError, match=r"call_timeout_s .* a number > 0, or None"):
        create_verifier("numeric", call_timeout_s=0)
    with pytest.raises(ConfigError, match="call_timeout_s"):
        FunctionVerifier(lambda p, t: True, call_timeout_s=-1)
    with pytest.raises(ConfigError, match="call_timeout_s"):
        LLMJudge(sampler(), call_timeout_s=0)
    # A verifier or judge of one's own with a bad bound is refused when the node is built.
    with pytest.raises(ConfigError, match=r"call_timeout_s .* got 0"):
        make_verify_node(FakeVerifier(boom, call_timeout_s=0))
    with pytest.raises(ConfigError, match=r"call_timeout_s .* got -1"):
        make_tournament_node(FakeJudge(judge_server_down, call_timeout_s=-1))


# -- the judge of a tournament -----------------------------------------------------------------


def judge_server_down(question: str, a: str, b: str) -> str:
    raise BackendError("cannot reach the model server at http://judge/v1", retryable=True)


@pytest.mark.parametrize("mode", ["knockout", "league"])
async def test_a_judge_whose_server_is_down_leaves_the_choice_to_a_majority_vote(mode):
    judge = FakeJudge(judge_server_down)
    state = await run(create_tournament_graph(sampler(), judge, n=3, judgements=2, mode=mode))
    assert state["answer"] == "12"
    record = tournament_decision(state)
    assert record["fallback"] == "majority" and record["votes"] == {"12": 2, "13": 1}
    assert record["error"].startswith(f"all {record['judge_calls']} judge calls failed")
    assert "cannot reach the model server" in record["error"]
    assert len(record["judge_errors"]) == record["judge_calls"] == len(judge.calls)
    # The graph did not fail: the tournament node answered itself.
    assert not [d for d in state["decisions"] if d["kind"] == "fallback"]
    assert "usage" not in record or record["usage"]["calls"] == 0


async def test_a_judge_that_hangs_is_cut_off_and_the_vote_decides():
    judge = FakeJudge(never_returns, call_timeout_s=0.2)
    state = await run(create_tournament_graph(sampler(), judge, n=3, judgements=1))
    assert state["answer"] == "12"
    record = tournament_decision(state)
    assert record["fallback"] == "majority"
    assert all("did not answer within 0.2 s" in e["error"] for e in record["judge_errors"])


async def test_a_judge_that_hangs_on_some_pairs_loses_those_votes_only():
    async def hangs_when_13_is_shown_first(question: str, a: str, b: str) -> str:
        if "13" in a:
            await never_returns()
        return "A" if "12" in a else "B"

    judge = FakeJudge(hangs_when_13_is_shown_first, call_timeout_s=0.2)
    cands = [Candidate(index=i, text=t) for i, t in enumerate(["Answer: 13", "Answer: 12"])]
    out = await asyncio.wait_for(
        make_tournament_node(judge, judgements=2)({"question": "q", "candidates": cands}), GUARD_S
    )
    record = out["decisions"][0]
    (game,) = record["bracket"][0]["matches"]
    assert game["votes"] == [0, 1] and game["no_votes"] == 1
    assert "fallback" not in record and len(record["judge_errors"]) == 1
    assert out["answer"] == "12"


async def test_an_llm_judge_whose_requests_fail_is_recorded_and_the_run_answers():
    def judge_model(request: Any, i: int) -> str:
        raise BackendError("the server at http://judge/v1 answered HTTP 503: busy", retryable=True)

    judge = LLMJudge(FakeBackend(judge_model))
    state = await run(create_tournament_graph(sampler(), judge, n=3, judgements=1))
    record = tournament_decision(state)
    assert state["answer"] == "12" and record["fallback"] == "majority"
    assert "HTTP 503: busy" in record["judge_errors"][0]["error"]


async def test_a_pointwise_llm_judge_whose_server_fails_marks_its_verdicts():
    def judge_model(request: Any, i: int) -> str:
        raise BackendError("cannot reach the model server at http://judge/v1", retryable=True)

    verifier = LLMJudge(FakeBackend(judge_model), threshold=0.5)
    state = await run(create_best_of_n_graph(sampler(), n=3, verifier=verifier))
    record = verify_decision(state)
    assert record["verifier_errors"] == 3
    assert record["error"].startswith("judge request failed: cannot reach")


# -- reward models -----------------------------------------------------------------------------


def reward_client(handler: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


FAST = {"max_retries": 1, "backoff": (0.001, 0.002)}


@pytest.mark.parametrize("kind", ["orm", "prm"])
async def test_a_reward_model_whose_server_is_down_marks_the_verdicts_and_the_run_answers(kind):
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    cls = OutcomeRewardVerifier if kind == "orm" else ProcessRewardVerifier
    verifier = cls("http://127.0.0.1:9/v1", http_client=reward_client(refused), **FAST)
    state = await run(create_best_of_n_graph(sampler(), n=3, verifier=verifier))
    assert state["answer"] is not None and len(state["candidates"]) == 3
    record = verify_decision(state)
    assert record["verifier_errors"] == 3
    assert record["error"].startswith(f"{kind} server failed: cannot reach")
    assert all(c.verdict.error is not None for c in state["candidates"])


async def test_a_reward_model_that_hangs_is_cut_off_at_the_call_timeout_set_by_name():
    async def hangs(request: httpx.Request) -> httpx.Response:
        await never_returns()
        raise AssertionError("unreachable")

    verifier = create_verifier(
        "orm", base_url="http://127.0.0.1:9/v1", http_client=reward_client(hangs),
        call_timeout_s=0.2, **FAST,
    )  # fmt: skip
    state = await run(create_best_of_n_graph(sampler(), n=2, verifier=verifier))
    record = verify_decision(state)
    assert record["verifier_errors"] == 2
    assert "verifier orm did not finish within 0.2 s" in record["error"]


async def test_a_verdict_that_failed_the_candidate_is_not_a_verifier_error():
    verifier = FakeVerifier(lambda p, t: Verdict.failure("tests failed: assert 1 == 2"))
    state = await run(create_best_of_n_graph(sampler(), n=2, verifier=verifier))
    record = verify_decision(state)
    assert record["verifier_errors"] == 0 and record["error"] is None
    assert all(c.verdict.error is None for c in state["candidates"])


# -- live: a judge on a dead port while generation uses the real server ------------------------


async def test_live_judge_and_reward_model_on_a_dead_port_while_generation_goes_on(vllm_server):
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    sampling_backend = VLLMBackend(vllm_server.base_url)
    judge_backend = VLLMBackend(dead, max_retries=1, backoff_base_s=0.01, backoff_max_s=0.02)
    try:
        sampling = SamplingParams(temperature=0.8, max_tokens=24)
        state = await run(
            create_tournament_graph(
                sampling_backend, LLMJudge(judge_backend), n=3, judgements=1, sampling=sampling
            )
        )
        assert len(state["candidates"]) == 3
        assert all(c.completion_tokens > 0 for c in state["candidates"])  # the server answered
        record = tournament_decision(state)
        assert record["judge_calls"] >= 1
        assert len(record["judge_errors"]) == record["judge_calls"]
        assert f"cannot reach a model server at {dead}" in record["error"]
        assert not [d for d in state["decisions"] if d["kind"] == "fallback"]
        # The answer is one of the candidates', chosen without the judge.
        assert state["response"] in [c.text for c in state["candidates"]]

        orm = OutcomeRewardVerifier(dead, max_retries=1, backoff=(0.01, 0.02))
        state = await run(
            create_best_of_n_graph(sampling_backend, n=2, verifier=orm, sampling=sampling)
        )
        assert len(state["candidates"]) == 2 and state["response"] is not None
        record = verify_decision(state)
        assert record["verifier_errors"] == 2 and "orm server failed" in record["error"]
        await orm.aclose()
    finally:
        await sampling_backend.aclose()
        await judge_backend.aclose()

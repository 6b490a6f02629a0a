"""The worst case a spec may spend, computed from the spec alone, before anything runs.

Every strategy's requests are bounded by its options: the number of samples, rounds, waits,
steps and judge games, each at most ``max_tokens`` long. The bound assumes a prompt of
``prompt_tokens`` and that every sample runs to its ``max_tokens``; follow-up prompts that carry
earlier output (a critique of a draft, a judge shown two answers, a continued trace) are counted
with that output at its longest. It is a bound, not a forecast: early stops, shorter answers and
an easy bin spend less. The spec's budget caps it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from tts_graph.budget import estimate_flops
from tts_graph.spec.models import (
    AdaptiveSpec,
    BeamSearchSpec,
    BestOfNSpec,
    BudgetForcingSpec,
    ConfidenceSpec,
    DVTSSpec,
    PoolSpec,
    SamplingSpec,
    SelfConsistencySpec,
    SelfRefineSpec,
    Spec,
    StrategySpec,
    TournamentSpec,
    VerifierSpec,
    VoteSpec,
)

__all__ = ["Cost", "worst_case"]

# Instructions and templates around a follow-up prompt (critique, revision, judge rubric).
_INSTRUCTION_TOKENS = 256
_DEFAULT_MAX_TOKENS = 256  # SamplingParams' default
_PROBE_MAX_TOKENS = 128  # the difficulty probe's default


@dataclass(frozen=True)
class Cost:
    """A worst case: requests, tokens and estimated FLOPs (None without a parameter count)."""

    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    flops: float | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Cost) -> Cost:
        return Cost(
            self.calls + other.calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            notes=self.notes + other.notes,
        )

    def times(self, k: int) -> Cost:
        return Cost(
            self.calls * k, self.prompt_tokens * k, self.completion_tokens * k, notes=self.notes
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "flops": self.flops,
        }


def _requests(calls: int, prompt: int, completion_each: int, samples: int = 1) -> Cost:
    """``calls`` requests of ``prompt`` tokens, each of ``samples`` samples."""
    return Cost(calls, calls * prompt, calls * samples * completion_each)


def worst_case(spec: Spec, *, prompt_tokens: int = 512, model_params: int | None = None) -> Cost:
    """The most ``spec`` may spend on one question whose prompt is ``prompt_tokens`` long,
    capped by its budget's limits. FLOPs need the model's parameter count (``model_params``,
    else ``spec.backend.model_params``).

    >>> from tts_graph.spec import load_spec
    >>> worst_case(load_spec({"strategy": {"kind": "best_of_n", "n": 8}}), prompt_tokens=100)
    Cost(calls=1, prompt_tokens=100, completion_tokens=2048, flops=None, notes=())
    """
    cost = _cost(spec.strategy, spec, prompt_tokens)
    params = model_params or spec.backend.model_params
    budget = spec.budget
    calls, prompt, completion = cost.calls, cost.prompt_tokens, cost.completion_tokens
    notes = list(cost.notes)
    if budget is not None:
        if budget.max_calls is not None and calls > budget.max_calls:
            notes.append(f"the budget caps requests at {budget.max_calls}")
            calls = budget.max_calls
        if budget.max_completion_tokens is not None and completion > budget.max_completion_tokens:
            notes.append(f"the budget caps completion tokens at {budget.max_completion_tokens}")
            completion = budget.max_completion_tokens
        if budget.max_total_tokens is not None and prompt + completion > budget.max_total_tokens:
            notes.append(f"the budget caps total tokens at {budget.max_total_tokens}")
            completion = max(
                0, min(completion, budget.max_total_tokens - min(prompt, budget.max_total_tokens))
            )
            prompt = min(prompt, budget.max_total_tokens - completion)
    flops = None if params is None else estimate_flops(params, prompt + completion)
    if (
        flops is not None
        and budget is not None
        and budget.max_flops is not None
        and flops > budget.max_flops
    ):
        notes.append(f"the budget caps FLOPs at {budget.max_flops:.3g}")
        flops = budget.max_flops
    return Cost(calls, prompt, completion, flops, tuple(notes))


def _max_tokens(spec: Spec, own: SamplingSpec | None, default: int = _DEFAULT_MAX_TOKENS) -> int:
    for sampling in (own, spec.sampling):
        if sampling is not None and sampling.max_tokens is not None:
            return sampling.max_tokens
    return default


def _verify(v: VerifierSpec | None, checks: int, prompt: int, m: int) -> Cost:
    """A verifier that calls a model: the judge, one request per check; a reward model, one
    call per check (its tokens are the reward server's, not counted)."""
    if v is None:
        return Cost()
    if v.name == "judge":
        judge_max = int((v.model_extra or {}).get("max_tokens", _DEFAULT_MAX_TOKENS))
        return _requests(checks, prompt + m + _INSTRUCTION_TOKENS, judge_max)
    if v.name in ("prm", "orm"):
        return Cost(calls=checks)
    return Cost()


def _cost(s: StrategySpec, spec: Spec, p: int) -> Cost:
    m = _max_tokens(spec, s.sampling)
    if isinstance(s, BestOfNSpec):
        drawn = (
            _requests(1, p, m, s.n)
            if s.candidates is None
            else _cost(s.candidates, spec, p).times(s.n)
        )
        return drawn + _verify(s.verifier, s.n, p, m)
    if isinstance(s, SelfConsistencySpec):
        return _requests(s.max_samples, p, m)
    if isinstance(s, SelfRefineSpec):
        follow_up = p + 2 * m + _INSTRUCTION_TOKENS
        if s.verifier is None:  # a critique and a revision per round
            return _requests(1, p, m) + _requests(2 * s.rounds, follow_up, m)
        checks = _verify(s.verifier, s.rounds + 1, p, m)
        return _requests(1, p, m) + _requests(s.rounds, follow_up, m) + checks
    if isinstance(s, BudgetForcingSpec):
        per_trace = s.max_waits + 2  # the first think, each wait, the forced answer
        thought = s.max_thinking_tokens
        return Cost(
            calls=s.n * per_trace,
            prompt_tokens=s.n * per_trace * (p + thought),
            completion_tokens=s.n * (thought + s.answer_max_tokens),
        )
    if isinstance(s, TournamentSpec):
        drawn = (
            _requests(1, p, m, s.n)
            if s.candidates is None
            else _cost(s.candidates, spec, p).times(s.runs)
        )
        n = s.n if s.candidates is None else _candidates(s.candidates) * s.runs
        games = n - 1 if s.mode == "knockout" else min(n * s.opponents, n * (n - 1) // 2)
        judge_max = s.judge.sampling.max_tokens or _DEFAULT_MAX_TOKENS
        return drawn + _requests(games * s.judgements, p + 2 * m + _INSTRUCTION_TOKENS, judge_max)
    if isinstance(s, ConfidenceSpec):
        return _requests(s.n, p, m)
    if isinstance(s, BeamSearchSpec | DVTSSpec):
        step = s.step_max_tokens or m
        requests = s.max_steps * math.ceil(s.n / s.width)
        longest_prompt = p + s.max_steps * step
        generated = _requests(requests, longest_prompt, step, s.width)
        return generated + Cost(calls=s.max_steps * s.n)  # a PRM call per kept partial solution
    if isinstance(s, PoolSpec):  # drawn from the input, not generated
        return _verify(s.verifier, s.n, p, m)
    if isinstance(s, AdaptiveSpec):
        probe = _requests(1, p, _max_tokens(spec, s.sampling, _PROBE_MAX_TOKENS), s.probe_n)
        if s.routes is None:
            branches = [_requests(16, p, m), _requests(1, p, m, 16) + _verify(s.verifier, 16, p, m)]
        else:
            branches = [_cost(r, spec, p) for r in s.routes.values() if not isinstance(r, VoteSpec)]
        # Each limit at the branch that spends the most of it: a bound on every branch.
        worst = Cost(
            max((c.calls for c in branches), default=0),
            max((c.prompt_tokens for c in branches), default=0),
            max((c.completion_tokens for c in branches), default=0),
        )
        return probe + worst
    raise AssertionError(f"unhandled strategy {s!r}")  # pragma: no cover


def _candidates(s: StrategySpec) -> int:
    """How many candidates one run of ``s`` may leave."""
    if isinstance(s, BestOfNSpec | TournamentSpec):
        return s.n * (1 if s.candidates is None else _candidates(s.candidates))
    if isinstance(s, BudgetForcingSpec | ConfidenceSpec | PoolSpec):
        return s.n
    if isinstance(s, SelfConsistencySpec):
        return s.max_samples
    if isinstance(s, SelfRefineSpec):
        return s.rounds + 1
    if isinstance(s, BeamSearchSpec | DVTSSpec):
        return s.n
    return 16 + (s.probe_n if isinstance(s, AdaptiveSpec) else 0)

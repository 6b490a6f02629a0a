"""A spec made into a graph: each strategy spec calls its ``create_<strategy>_graph`` factory
with the same option names, nested strategies become nested graphs, names become the registered
verifiers, selectors and extractors."""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from langgraph.graph import StateGraph

from tts_graph.backends.base import Backend, SamplingParams
from tts_graph.errors import ConfigError
from tts_graph.prompts import PromptFn, question_prompt
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
from tts_graph.state import StateKeys, TTSState
from tts_graph.verifiers.answer import resolve_extractor
from tts_graph.verifiers.base import Verifier

__all__ = ["build_graph", "make_backend", "placeholder_backend"]


def make_backend(spec: Spec, base_url: str | None = None) -> Backend:
    """The spec's backend: ``base_url`` (from the command line or the environment) wins over
    the spec's own."""
    from tts_graph.backends.vllm import VLLMBackend

    url = base_url or spec.backend.base_url
    if url is None:
        raise ConfigError(
            "the spec names no backend.base_url; give one (or --base-url, TTS_GRAPH_BASE_URL)"
        )
    return VLLMBackend(url, model=spec.backend.model, model_params=spec.backend.model_params)


def placeholder_backend(spec: Spec) -> Backend:
    """A backend to build the spec's graph with when nothing will run (to check or draw it):
    the spec's own URL, or one that is never contacted."""
    from tts_graph.backends.vllm import VLLMBackend

    return VLLMBackend(spec.backend.base_url or "http://127.0.0.1:9/v1", model=spec.backend.model)


@dataclasses.dataclass(frozen=True)
class _Context:
    spec: Spec
    backend: Backend
    state_schema: Any
    keys: StateKeys

    def sampling(self, own: SamplingSpec | None) -> SamplingParams | None:
        """The spec's sampling, overridden field by field by the strategy's own."""
        merged = {
            **self.spec.sampling.model_dump(exclude_none=True),
            **(own.model_dump(exclude_none=True) if own else {}),
        }
        if "stop" in merged:
            merged["stop"] = tuple(merged["stop"])
        return SamplingParams(**merged) if merged else None

    def prompt(self) -> PromptFn | None:
        p = self.spec.prompt
        if p is None:
            return None
        return question_prompt(
            p.system, key=self.keys.question, messages_key=self.keys.messages, template=p.template
        )

    def verifier(self, v: VerifierSpec | None) -> Verifier | None:
        if v is None:
            return None
        from tts_graph.verifiers.registry import create_verifier

        options = dict(v.model_extra or {})
        if v.name == "judge":
            options.setdefault("backend", self.backend)  # the spec's model judges
        return create_verifier(v.name, **options)


def build_graph(
    spec: Spec,
    backend: Backend,
    *,
    state_schema: Any = TTSState,
    keys: StateKeys = StateKeys(),
) -> StateGraph[Any]:
    """The spec's graph, uncompiled, over ``backend``.

    >>> graph = build_graph(load_spec("examples/specs/math-majority.yaml"), backend)  # doctest: +SKIP
    """
    return _strategy(spec.strategy, _Context(spec, backend, state_schema, keys))


def _strategy(s: StrategySpec, ctx: _Context) -> StateGraph[Any]:
    verifier = ctx.verifier(getattr(s, "verifier", None))
    # An extractor the spec does not name is the verifier's own: answers are what it checks.
    extract = resolve_extractor(s.extract or ctx.spec.extract, verifier)
    common: dict[str, Any] = dict(
        sampling=ctx.sampling(s.sampling), seed=s.seed, extract=extract,
        state_schema=ctx.state_schema, keys=ctx.keys,
    )  # fmt: skip
    b = ctx.backend
    prompt = ctx.prompt()
    if isinstance(s, BestOfNSpec):
        from tts_graph.graphs.best_of_n import create_best_of_n_graph

        inner = None if s.candidates is None else _strategy(s.candidates, ctx)
        return create_best_of_n_graph(
            b, n=s.n, verifier=verifier, select=s.select,
            prompt=prompt, candidates=inner, **common,
        )  # fmt: skip
    if isinstance(s, SelfConsistencySpec):
        from tts_graph.graphs.self_consistency import create_self_consistency_graph

        return create_self_consistency_graph(
            b, stop=s.stop, max_samples=s.max_samples, initial=s.initial,
            threshold=s.threshold, concurrency=s.concurrency, prompt=prompt, **common,
        )  # fmt: skip
    if isinstance(s, SelfRefineSpec):
        from tts_graph.graphs.self_refine import create_self_refine_graph

        return create_self_refine_graph(
            b, rounds=s.rounds, verifier=verifier, prompt=prompt, **common
        )
    if isinstance(s, BudgetForcingSpec):
        from tts_graph.graphs.budget_forcing import create_budget_forcing_graph

        return create_budget_forcing_graph(
            b, n=s.n, min_thinking_tokens=s.min_thinking_tokens,
            max_thinking_tokens=s.max_thinking_tokens, max_waits=s.max_waits,
            answer_max_tokens=s.answer_max_tokens, select=s.select, prompt=prompt,
            **common,
        )  # fmt: skip
    if isinstance(s, TournamentSpec):
        from tts_graph.graphs.tournament import create_tournament_graph
        from tts_graph.verifiers.judge import LLMJudge

        judge_options: dict[str, Any] = {"sampling": ctx.sampling(s.judge.sampling)}
        if s.judge.rubric is not None:
            judge_options["pairwise_rubric"] = s.judge.rubric
        inner = None if s.candidates is None else _strategy(s.candidates, ctx)
        return create_tournament_graph(
            b, LLMJudge(b, **judge_options), mode=s.mode, n=s.n, judgements=s.judgements,
            opponents=s.opponents, same_answer=s.same_answer, candidates=inner, runs=s.runs,
            prompt=prompt, **common,
        )  # fmt: skip
    if isinstance(s, ConfidenceSpec):
        from tts_graph.graphs.confidence import create_confidence_graph

        options: dict[str, Any] = {} if s.window is None else {"window": s.window}
        return create_confidence_graph(
            b, mode=s.mode, n=s.n, keep_top=s.keep_top, confidence=cast(Any, s.confidence),
            top_logprobs=s.top_logprobs, warmup=s.warmup, concurrency=s.concurrency,
            prompt=prompt, **options, **common,
        )  # fmt: skip
    if isinstance(s, BeamSearchSpec | DVTSSpec):
        from tts_graph.graphs import search
        from tts_graph.verifiers.reward import ProcessRewardVerifier

        factory = (
            search.create_beam_search_graph
            if isinstance(s, BeamSearchSpec)
            else search.create_dvts_graph
        )
        prm_options: dict[str, Any] = {} if s.prm.model is None else {"model": s.prm.model}
        prm = ProcessRewardVerifier(s.prm.base_url, aggregate=s.prm.aggregate, **prm_options)
        return factory(
            b, prm, n=s.n, width=s.width, max_steps=s.max_steps, separator=s.separator,
            step_max_tokens=s.step_max_tokens, stop_at_answer=s.stop_at_answer,
            select=s.select, prompt=prompt, **common,
        )  # fmt: skip
    if isinstance(s, PoolSpec):
        from tts_graph.graphs.pool import create_pool_graph

        return create_pool_graph(
            n=s.n, seed=s.seed, verifier=verifier, select=s.select,
            extract=common["extract"], state_schema=ctx.state_schema, keys=ctx.keys,
        )  # fmt: skip
    if isinstance(s, AdaptiveSpec):
        from tts_graph.graphs.adaptive import VOTE, create_adaptive_graph
        from tts_graph.nodes.difficulty import DifficultyBins

        routes = None
        if s.routes is not None:
            routes = {
                label: VOTE if isinstance(route, VoteSpec) else _strategy(route, ctx)
                for label, route in s.routes.items()
            }
        return create_adaptive_graph(
            b, routes=routes, probe_n=s.probe_n, estimator=s.estimator,
            bins=DifficultyBins(tuple(s.thresholds), tuple(s.labels)),
            verifier=verifier, prompt=prompt, **common,
        )  # fmt: skip
    raise AssertionError(f"unhandled strategy {s!r}")  # pragma: no cover - the union is closed

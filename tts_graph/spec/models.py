"""The spec: a per-task graph written as data (YAML or JSON), checked by pydantic.

A spec names the backend, the budget, the default sampling, prompt and answer extractor, and one
strategy with its parameters. A strategy's options have the names of its factory's
(``create_<strategy>_graph``) keyword arguments. Strategies nest: the ``candidates`` of best-of-N
and of a tournament, and the ``routes`` of the adaptive strategy, are strategies themselves.

Short forms: a strategy may be just its name (``strategy: self_consistency``), a verifier or a
judge just its name (``verifier: math``), sampling, prompt and extractor may be left out.

.. code-block:: yaml

    $schema: https://tts-graph.dev/spec.schema.json
    name: arithmetic
    budget: {max_total_tokens: 20000}
    sampling: {temperature: 0.7, max_tokens: 256}
    strategy:
      kind: adaptive
      routes:
        easy: vote
        medium: {kind: self_consistency, max_samples: 12}
        hard: {kind: best_of_n, n: 16, verifier: math}
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from tts_graph.budget import Budget
from tts_graph.spec.variables import escape_variables

__all__ = [
    "AdaptiveSpec",
    "BackendSpec",
    "BeamSearchSpec",
    "BestOfNSpec",
    "BudgetForcingSpec",
    "ConfidenceSpec",
    "DVTSSpec",
    "JudgeSpec",
    "PRMSpec",
    "PoolSpec",
    "PromptSpec",
    "SamplingSpec",
    "SelfConsistencySpec",
    "SelfRefineSpec",
    "Spec",
    "StrategySpec",
    "TournamentSpec",
    "VerifierSpec",
    "VoteSpec",
]


class _Model(BaseModel):
    # A misspelt option is an error, not silently ignored.
    model_config = ConfigDict(extra="forbid", frozen=True)


class BackendSpec(_Model):
    """The model server. ``base_url`` may be left out and given at run time (``--base-url``,
    ``TTS_GRAPH_BASE_URL``); without one, the CLI starts the embedded model ``embedded``."""

    base_url: str | None = None
    model: str | None = Field(default=None, description="Served model name; default: the only one.")
    embedded: str | None = Field(
        default=None, description="The embedded model to start when there is no base_url."
    )
    model_params: int | None = Field(
        default=None,
        ge=1,
        description="Parameter count, for FLOPs (read from the server if local).",
    )


class SamplingSpec(_Model):
    """Sampling parameters; unset ones keep the library's defaults."""

    temperature: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    top_p: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    max_tokens: int | None = Field(default=None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    stop: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None,
        description="Strings that end a sample, left out of its text (e.g. a closing code fence).",
    )


class PromptSpec(_Model):
    """The prompt: a system message and a user template with ``{question}``."""

    system: str | None = None
    template: str = "{question}"

    @field_validator("template")
    @classmethod
    def _has_question(cls, value: str) -> str:
        if "{question}" not in value:
            raise ValueError("the template must contain {question}")
        return value


class VerifierSpec(_Model):
    """A verifier by registered name (``math``, ``numeric``, ``exact``, ``regex``, ``code``,
    ``judge``, ``prm``, ``orm``, or one you registered) with its options."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    @model_validator(mode="after")
    def _hide_keys(self) -> VerifierSpec:
        # An ``api_key`` option (best written ``${VARIABLE}``) is held as a SecretStr, so a
        # dumped spec (an eval run's run.json, an error, a trace) shows it masked.
        extra = self.__pydantic_extra__ or {}
        for option, value in extra.items():
            if option.endswith("api_key") and isinstance(value, str):
                extra[option] = SecretStr(value)
        return self


class JudgeSpec(_Model):
    """The LLM judge of a tournament: the spec's model, with its own sampling."""

    sampling: SamplingSpec = SamplingSpec(temperature=0.0, max_tokens=256)
    rubric: str | None = None


class PRMSpec(_Model):
    """A process reward model served by vLLM (``/pooling``)."""

    base_url: str
    model: str | None = None
    aggregate: Literal["last", "min", "prod", "mean"] = "last"


def _short(value: Any, field: str) -> Any:
    """``"math"`` for ``{"name": "math"}``."""
    return {field: value} if isinstance(value, str) else value


class _Strategy(_Model):
    """What every strategy may set for itself instead of taking the spec's."""

    sampling: SamplingSpec | None = None
    seed: int = 0
    extract: str | None = Field(
        default=None, description="An answer extractor by registered name; the spec's by default."
    )

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, data: Any) -> Any:
        """``verifier: math``, ``candidates: self_refine`` and ``routes: {hard: best_of_n}``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "verifier" in data:
            data["verifier"] = _short(data["verifier"], "name")
        if "candidates" in data:
            data["candidates"] = _short(data["candidates"], "kind")
        if isinstance(data.get("routes"), dict):
            data["routes"] = {
                label: _short(route, "kind") for label, route in data["routes"].items()
            }
        return data


class BestOfNSpec(_Strategy):
    """``create_best_of_n_graph``: n samples (or n runs of ``candidates``), then a choice."""

    kind: Literal["best_of_n"] = "best_of_n"
    n: int = Field(default=8, ge=1, le=1024)
    select: str | None = Field(
        default=None,
        description="majority, best_score, weighted, verified, or a registered selector.",
    )
    verifier: VerifierSpec | None = None
    candidates: StrategySpec | None = None


class SelfConsistencySpec(_Strategy):
    """``create_self_consistency_graph``: sample until the vote is settled."""

    kind: Literal["self_consistency"] = "self_consistency"
    stop: Literal["adaptive", "beta"] = "beta"
    max_samples: int = Field(default=16, ge=1, le=1024)
    initial: int | None = Field(default=None, ge=1)
    threshold: float | None = Field(default=None, gt=0, le=1, allow_inf_nan=False)
    concurrency: int | None = Field(default=None, ge=1)


class SelfRefineSpec(_Strategy):
    """``create_self_refine_graph``: draft, check, revise."""

    kind: Literal["self_refine"] = "self_refine"
    rounds: int = Field(default=2, ge=1, le=16)
    verifier: VerifierSpec | None = None


class BudgetForcingSpec(_Strategy):
    """``create_budget_forcing_graph``: think at least and at most so long, then vote."""

    kind: Literal["budget_forcing"] = "budget_forcing"
    n: int = Field(default=1, ge=1, le=256)
    min_thinking_tokens: int = Field(default=0, ge=0)
    max_thinking_tokens: int = Field(default=512, ge=1)
    max_waits: int = Field(default=2, ge=0, le=32)
    answer_max_tokens: int = Field(default=64, ge=1)
    select: str = "majority"

    @model_validator(mode="after")
    def _min_below_max(self) -> BudgetForcingSpec:
        if self.min_thinking_tokens > self.max_thinking_tokens:
            raise ValueError(
                f"min_thinking_tokens ({self.min_thinking_tokens}) is above "
                f"max_thinking_tokens ({self.max_thinking_tokens})"
            )
        return self


class TournamentSpec(_Strategy):
    """``create_tournament_graph``: a judge picks among n samples (or ``candidates``)."""

    kind: Literal["tournament"] = "tournament"
    mode: Literal["knockout", "league"] = "knockout"
    n: int = Field(default=8, ge=2, le=256)
    judgements: int = Field(default=2, ge=1, le=16)
    opponents: int = Field(default=3, ge=1)
    judge: JudgeSpec = JudgeSpec()
    same_answer: bool = False
    candidates: StrategySpec | None = None
    runs: int = Field(default=1, ge=1, le=64)


class ConfidenceSpec(_Strategy):
    """``create_confidence_graph``: confidence-filtered voting (DeepConf)."""

    kind: Literal["confidence"] = "confidence"
    mode: Literal["offline", "online"] = "offline"
    n: int = Field(default=16, ge=1, le=512)
    keep_top: float = Field(default=0.9, gt=0, le=1, allow_inf_nan=False)
    confidence: str = "lowest"
    window: int | None = Field(default=None, ge=1)
    top_logprobs: int = Field(default=20, ge=1, le=20)
    warmup: int | None = Field(default=None, ge=1)
    concurrency: int | None = Field(default=None, ge=1)


class _StepSearch(_Strategy):
    prm: PRMSpec
    n: int = Field(default=8, ge=1, le=256)
    width: int = Field(default=4, ge=1, le=64)
    max_steps: int = Field(default=40, ge=1, le=1000)
    separator: str = "\n\n"
    step_max_tokens: int | None = Field(default=None, ge=1)
    stop_at_answer: bool = True
    select: str = "best_score"


class BeamSearchSpec(_StepSearch):
    """``create_beam_search_graph``: beam search over steps scored by a PRM."""

    kind: Literal["beam_search"] = "beam_search"


class DVTSSpec(_StepSearch):
    """``create_dvts_graph``: diverse verifier tree search over steps scored by a PRM."""

    kind: Literal["dvts"] = "dvts"


class PoolSpec(_Strategy):
    """``create_pool_graph``: choose among n answers drawn from the input's fixed ``pool`` (no
    generation; an eval dataset with pools, such as CHAMP, gives each problem's). As a
    tournament's ``candidates``, the pool is what the judge chooses from."""

    kind: Literal["pool"] = "pool"
    n: int = Field(default=8, ge=1, le=1024)
    select: str | None = Field(
        default=None,
        description="majority, best_score, weighted, verified, or a registered selector.",
    )
    verifier: VerifierSpec | None = None


class VoteSpec(_Model):
    """A route that spends nothing more: choose among the probe's samples (majority vote, or
    verifier-first when the strategy has a verifier)."""

    kind: Literal["vote"] = "vote"


class AdaptiveSpec(_Strategy):
    """``create_adaptive_graph``: a difficulty probe routes each bin to a strategy (or to
    ``vote``: choose among the probe's samples). With a verifier the probe's samples are checked
    at once; ``estimator: verifier`` bins by their pass rate."""

    kind: Literal["adaptive"] = "adaptive"
    probe_n: int = Field(default=4, ge=1, le=64)
    estimator: str = "agreement"
    thresholds: list[Annotated[float, Field(allow_inf_nan=False)]] = Field(
        default_factory=lambda: [0.5, 0.75],
        description="Difficulty scores that divide the bins, increasing (finite numbers).",
    )
    labels: list[str] = Field(default_factory=lambda: ["easy", "medium", "hard"])
    routes: dict[str, RouteSpec] | None = None
    verifier: VerifierSpec | None = None

    @model_validator(mode="after")
    def _bins(self) -> AdaptiveSpec:
        if len(self.labels) != len(self.thresholds) + 1:
            raise ValueError(
                f"{len(self.thresholds)} threshold(s) make {len(self.thresholds) + 1} bins, "
                f"but {len(self.labels)} label(s) are given"
            )
        if sorted(self.thresholds) != self.thresholds:
            raise ValueError(f"thresholds must be increasing, got {self.thresholds}")
        if self.estimator == "verifier" and self.verifier is None:
            raise ValueError(
                "estimator 'verifier' bins by the probe's pass rate: give the strategy a "
                "verifier too (e.g. verifier: code)"
            )
        if self.routes is not None and set(self.routes) != set(self.labels):
            missing = sorted(set(self.labels) - set(self.routes))
            extra = sorted(set(self.routes) - set(self.labels))
            raise ValueError(
                f"routes must name exactly the bins {self.labels}"
                + (f"; missing: {missing}" if missing else "")
                + (f"; not a bin: {extra}" if extra else "")
            )
        return self


StrategySpec = Annotated[
    BestOfNSpec
    | SelfConsistencySpec
    | SelfRefineSpec
    | BudgetForcingSpec
    | TournamentSpec
    | ConfidenceSpec
    | BeamSearchSpec
    | DVTSSpec
    | PoolSpec
    | AdaptiveSpec,
    Field(discriminator="kind"),
]

RouteSpec = Annotated[
    VoteSpec
    | BestOfNSpec
    | SelfConsistencySpec
    | SelfRefineSpec
    | BudgetForcingSpec
    | TournamentSpec
    | ConfidenceSpec
    | BeamSearchSpec
    | DVTSSpec
    | PoolSpec
    | AdaptiveSpec,
    Field(discriminator="kind"),
]


class Spec(_Model):
    """A per-task graph (see the module docs)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_: str | None = Field(
        default=None, alias="$schema", description="JSON Schema, for editors."
    )
    name: str = Field(default="task", description="What the task is; names the graph.")
    description: str | None = None
    backend: BackendSpec = BackendSpec()
    budget: Budget | None = None
    sampling: SamplingSpec = SamplingSpec()
    prompt: PromptSpec | None = None
    extract: str | None = Field(
        default=None,
        description="An answer extractor by registered name; by default the strategy's "
        "verifier's own (the code verifier reads programs), else `default`.",
    )
    strategy: StrategySpec

    @field_validator("strategy", mode="before")
    @classmethod
    def _short_strategy(cls, value: Any) -> Any:
        return _short(value, "kind")

    @model_serializer(mode="wrap")
    def _as_text(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        # Dumped as JSON (run.json, a file to load again), a spec is spec text: a "${" that
        # loading left in a value (a default's text, a variable's value, a "$${") is written
        # "$${", so the dump loads back the same instead of being expanded a second time.
        data = handler(self)
        return _escaped(data) if info.mode_is_json() else data


def _escaped(data: Any) -> Any:
    """``data`` with :func:`~tts_graph.spec.variables.escape_variables` applied to every string
    value (not to keys: they are never expanded)."""
    if isinstance(data, str):
        return escape_variables(data)
    if isinstance(data, dict):
        return {key: _escaped(value) for key, value in data.items()}
    if isinstance(data, list):
        return [_escaped(value) for value in data]
    return data


# Nested strategies refer to the union defined after them.
for _model in (BestOfNSpec, TournamentSpec, AdaptiveSpec):
    _model.model_rebuild()
Spec.model_rebuild()

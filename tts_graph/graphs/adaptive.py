"""The adaptive, compute-optimal graph (Snell et al. 2024): a cheap difficulty probe routes each
question to the strategy and compute that its difficulty bin calls for.

``START → start → difficulty → <bin> → END``. The probe's samples are candidates from the start,
so no branch draws them again: the easy branch votes over them and spends nothing more, the
others add samples and choose among all of them. A branch is any graph (any
``create_<strategy>_graph``, or your own over the same keys), run as a step of this run: one
budget covers the probe and the branch.

The routing decision (bin, branch, the strategy that answered) is recorded, streamed and
attached to the trace like every other decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langgraph.graph import END, StateGraph

from tts_graph.backends.base import Backend, SamplingParams
from tts_graph.errors import ConfigError
from tts_graph.graphs._build import Policies, Steps
from tts_graph.graphs._compose import SEED_STRIDE, make_graph_node
from tts_graph.graphs.best_of_n import create_best_of_n_graph
from tts_graph.graphs.self_consistency import create_self_consistency_graph
from tts_graph.nodes._node import Node, make_node, read_state
from tts_graph.nodes._record import decision
from tts_graph.nodes.difficulty import DEFAULT_BINS, DifficultyBins, Estimator, make_difficulty_node
from tts_graph.nodes.select import make_select_node
from tts_graph.prompts import PromptFn
from tts_graph.seeds import offset_seeds
from tts_graph.state import StateKeys, TTSState
from tts_graph.verifiers.answer import AnswerExtractor, resolve_extractor
from tts_graph.verifiers.base import Verifier

__all__ = ["VOTE", "create_adaptive_graph", "default_routes"]

VOTE = "vote"
"""A route that spends nothing more: choose among the probe's samples, by majority vote, or
verifier-first (``select="verified"``) when the graph has a verifier."""


def default_routes(
    backend: Backend,
    *,
    sampling: SamplingParams | None = None,
    verifier: Verifier | None = None,
    seed: int = 0,
    extract: AnswerExtractor | str | None = None,
    prompt: PromptFn | None = None,
    state_schema: Any = TTSState,
    keys: StateKeys = StateKeys(),
) -> dict[str, Any]:
    """The routes of :data:`~tts_graph.nodes.difficulty.DEFAULT_BINS`: ``easy`` votes over
    the probe's samples; ``medium`` runs self-consistency with the Beta early stop (up to 16
    samples, the probe's included); ``hard`` runs best-of-16 (by verifier score when there is
    one, else by majority)."""
    extract = resolve_extractor(extract, verifier)
    common: dict[str, Any] = dict(
        sampling=sampling, seed=seed, prompt=prompt, extract=extract,
        state_schema=state_schema, keys=keys,
    )  # fmt: skip
    return {
        "easy": VOTE,
        "medium": create_self_consistency_graph(backend, stop="beta", max_samples=16, **common),
        "hard": create_best_of_n_graph(backend, n=16, verifier=verifier, **common),
    }


def create_adaptive_graph(
    backend: Backend,
    *,
    routes: Mapping[str, Any] | None = None,
    probe_n: int = 4,
    estimator: str | Estimator = "agreement",
    bins: DifficultyBins = DEFAULT_BINS,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    verifier: Verifier | None = None,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str | None = None,
    policies: Policies | None = None,
    state_schema: Any = TTSState,
    keys: StateKeys = StateKeys(),
) -> StateGraph[Any]:
    """Build (uncompiled) the difficulty-routed graph (see the module docs).

    ``routes`` maps every bin label of ``bins`` to a graph, or to :data:`VOTE`; by default
    :func:`default_routes`. The probe draws ``probe_n`` samples and scores them with
    ``estimator`` (see :func:`~tts_graph.nodes.difficulty.make_difficulty_node`); a probe the
    budget refused routes to the first bin. ``verifier``, ``sampling``, ``prompt`` and
    ``extract`` are used by the probe and the default routes: with a verifier the probe's
    samples are checked at once (``estimator="verifier"`` bins by their pass rate) and keep
    their verdicts, so no route checks them again. ``extract`` is by default the verifier's
    own (see :func:`~tts_graph.verifiers.answer.resolve_extractor`).

    >>> graph = create_adaptive_graph(backend).compile()  # doctest: +SKIP
    >>> state = await graph.ainvoke({"question": "What is 7+5?"})  # doctest: +SKIP
    >>> state["difficulty"]["bin"], state["strategy"]  # doctest: +SKIP
    ('easy', 'vote')
    """
    extract = resolve_extractor(extract, verifier)
    if routes is None:
        routes = default_routes(
            backend, sampling=sampling, verifier=verifier, seed=seed, extract=extract,
            prompt=prompt, state_schema=state_schema, keys=keys,
        )  # fmt: skip
    missing = [label for label in bins.labels if label not in routes]
    extra = [label for label in routes if label not in bins.labels]
    if missing or extra:
        raise ConfigError(
            f"routes must name exactly the difficulty bins {list(bins.labels)}; "
            + "; ".join(
                part for part in (
                    f"missing: {missing}" if missing else "",
                    f"not a bin: {extra}" if extra else "",
                ) if part
            )
        )  # fmt: skip
    steps = Steps("create_adaptive_graph", state_schema, keys, policies)
    steps.model(
        "difficulty",
        make_difficulty_node(
            backend, n=probe_n, estimator=estimator, bins=bins, sampling=sampling, seed=seed,
            prompt=prompt, extract=extract, verifier=verifier, keys=keys,
        ),
    )  # fmt: skip
    builder = steps.builder
    for label, branch in routes.items():
        builder.add_node(
            label, _route_node(label, branch, keys, verified=verifier is not None),
            retry_policy=None,
            timeout=steps.policies.timeout, metadata=steps.metadata,
        )  # fmt: skip
        builder.add_edge(label, END)

    first = bins.labels[0]

    def route_on_bin(state: Any) -> str:
        found = read_state(state).get(keys.difficulty)
        label = found.get("bin") if isinstance(found, Mapping) else None
        return label if isinstance(label, str) and label in routes else first

    builder.add_conditional_edges("difficulty", route_on_bin, {label: label for label in routes})
    return builder


def _route_node(label: str, route: Any, keys: StateKeys, *, verified: bool) -> Node:
    """The branch of bin ``label``: the route's graph, with a decision saying where the question
    went and which strategy answered. A vote over verified probe samples is verifier-first."""
    if route == VOTE:
        rule = "verified" if verified else "majority"
        inner = make_select_node(select=rule, strategy=VOTE, keys=keys, name=label)
    else:
        inner = make_graph_node(route, result="all", keys=keys, name=label)

    async def branch(state: Mapping[str, Any]) -> dict[str, Any]:
        difficulty = state.get(keys.difficulty)
        # A route built with the probe's seed (every factory defaults to 0) would draw the
        # probe's samples again: its requests' seeds are shifted past the probe's.
        with offset_seeds(SEED_STRIDE):
            update: dict[str, Any] = dict(await inner.ainvoke(dict(state)))
        record = decision(
            "router", "route", bin=label,
            score=difficulty.get("score") if isinstance(difficulty, Mapping) else None,
            branch=VOTE if route == VOTE else label, strategy=update.get(keys.strategy),
            candidates_reused=len(state.get(keys.candidates) or []),
        )  # fmt: skip
        update[keys.decisions] = [record, *update.get(keys.decisions, [])]
        return update

    node = make_node(branch, label)
    node.inner = inner.inner
    return node

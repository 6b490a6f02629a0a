"""Tournament: sample candidates (or take another strategy's), then let a judge pick in pairs."""

from __future__ import annotations

from typing import Any

from langgraph.graph import StateGraph

from tts_graph.backends.base import Backend, SamplingParams
from tts_graph.graphs._build import Policies, Steps
from tts_graph.graphs._fallback import vote_instead
from tts_graph.nodes.tournament import PairwiseJudge, TournamentMode, make_tournament_node
from tts_graph.prompts import PromptFn
from tts_graph.state import StateKeys, TTSState
from tts_graph.verifiers.answer import AnswerExtractor, extract_answer

__all__ = ["create_tournament_graph"]


def create_tournament_graph(
    backend: Backend | None,
    judge: PairwiseJudge,
    *,
    mode: TournamentMode = "knockout",
    n: int = 8,
    judgements: int = 2,
    opponents: int = 3,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str = extract_answer,
    same_answer: bool = False,
    candidates: Any = None,
    runs: int = 1,
    policies: Policies | None = None,
    state_schema: Any = TTSState,
    keys: StateKeys = StateKeys(),
) -> StateGraph[Any]:
    """Build (uncompiled) ``START → start → fanout → tournament → END``.

    ``n`` candidates are sampled in one request, then ``judge`` (an
    :class:`~tts_graph.verifiers.judge.LLMJudge`, or anything with its ``compare``) runs a
    ``"knockout"`` bracket or a ``"league"``, each pair judged ``judgements`` times in both
    orders. ``candidates`` replaces the sampling with another strategy's graph, run ``runs``
    times: a tournament over budget-forced answers is
    ``create_tournament_graph(None, judge, candidates=create_budget_forcing_graph(backend, n=4))``.
    With ``same_answer``, candidates whose extracted answers agree need no judge (for tasks
    with a short final answer). A judge that fails for good (it raises, or outlasts the
    ``policies`` timeout) does not fail the run: the answer is then chosen by majority vote,
    and a ``fallback`` decision says why. See
    :func:`~tts_graph.nodes.tournament.make_tournament_node`.

    >>> judge = LLMJudge(backend)  # doctest: +SKIP
    >>> graph = create_tournament_graph(backend, judge, n=4, mode="league")  # doctest: +SKIP
    """
    steps = Steps("create_tournament_graph", state_schema, keys, policies)
    steps.sample(
        backend, candidates, runs=runs, n=n, sampling=sampling, seed=seed, prompt=prompt,
        extract=extract,
    )  # fmt: skip
    steps.model(
        "tournament",
        make_tournament_node(
            judge, mode=mode, judgements=judgements, opponents=opponents, seed=seed,
            extract=extract if same_answer else None, keys=keys, strategy="tournament",
        ),
        error_handler=vote_instead(keys, "tournament"),
    )  # fmt: skip
    return steps.done()

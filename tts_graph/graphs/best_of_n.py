"""Best-of-N: sample N candidates (or run another strategy N times), optionally verify them, then
choose one."""

from __future__ import annotations

from typing import Any, Literal

from langgraph.graph import StateGraph

from tts_graph.backends.base import Backend, SamplingParams
from tts_graph.errors import check_choice
from tts_graph.graphs._build import Policies, Steps
from tts_graph.nodes.select import SelectOption, make_select_node
from tts_graph.nodes.send import add_send_fanout
from tts_graph.nodes.verify import make_verify_node
from tts_graph.prompts import PromptFn
from tts_graph.state import StateKeys, TTSState
from tts_graph.verifiers.answer import AnswerExtractor, resolve_extractor
from tts_graph.verifiers.base import Verifier

__all__ = ["FanoutMode", "create_best_of_n_graph"]

FanoutMode = Literal["request", "send"]


def create_best_of_n_graph(
    backend: Backend | None,
    *,
    n: int = 8,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    verifier: Verifier | None = None,
    select: SelectOption | None = None,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str | None = None,
    candidates: Any = None,
    fanout: FanoutMode = "request",
    policies: Policies | None = None,
    state_schema: Any = TTSState,
    keys: StateKeys = StateKeys(),
) -> StateGraph[Any]:
    """Build (uncompiled) ``START → start → fanout [→ verify] → select → END`` (``start``
    clears what earlier runs on a checkpointed thread left behind: see
    :mod:`tts_graph.nodes.start`).

    Without a verifier the answer is chosen by majority vote over the candidates' final answers
    (self-consistency); with one, by the best verifier score (``select="best_score"``, ties to the
    lowest index); ``select="weighted"`` sums the scores per answer (weighted best-of-N).
    ``select`` overrides either default. Answers are read with ``extract``, by default the
    verifier's own (the code verifier's answer is the program), else
    :func:`~tts_graph.verifiers.answer.extract_answer`.

    ``fanout="send"`` makes each candidate its own LangGraph ``Send`` branch (verified as soon
    as it exists): slower than one ``n``-sample request, but with a checkpointer a run that is
    interrupted resumes without redoing the candidates it had finished.
    ``candidates`` replaces the single ``n``-sample request with ``n`` runs of another
    strategy's graph, each with its own seeds: best-of-N over self-refined answers is
    ``create_best_of_n_graph(None, n=4, candidates=create_self_refine_graph(backend))``.
    ``state_schema`` may be your own (for example ``class State(MessagesState,
    CandidatesState)``: the conversation is the prompt and the answer is appended to it); the
    keys the nodes need are checked here. Invalid options raise
    :class:`~tts_graph.errors.ConfigError` here, at build time.

    >>> graph = create_best_of_n_graph(backend, n=8).compile()  # doctest: +SKIP
    >>> result = await graph.ainvoke({"question": "What is 7+5?"})
    >>> result["answer"]
    '12'
    """
    check_choice("fanout", fanout, FanoutMode)
    extract = resolve_extractor(extract, verifier)
    rule: SelectOption = select or ("best_score" if verifier is not None else "majority")
    steps = Steps("create_best_of_n_graph", state_schema, keys, policies)
    select_node = make_select_node(select=rule, strategy="best_of_n", keys=keys)
    if fanout == "send" and candidates is None and backend is not None:
        add_send_fanout(
            steps.builder, backend, n=n, sampling=sampling, seed=seed, prompt=prompt,
            verifier=verifier, extract=extract, keys=keys, source=steps.last, target="select",
            node_options=steps.model_options(),
        )  # fmt: skip
        steps.builder.add_node("select", select_node, metadata=steps.metadata)
        steps.last = "select"
        return steps.done()
    steps.sample(
        backend, candidates, runs=n, n=n, sampling=sampling, seed=seed, prompt=prompt,
        extract=extract,
    )  # fmt: skip
    if verifier is not None:
        steps.step("verify", make_verify_node(verifier, keys=keys))
    steps.step("select", select_node)
    return steps.done()

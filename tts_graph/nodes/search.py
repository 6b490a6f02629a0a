r"""Search over reasoning steps scored by a process reward model (PRM): beam search and DVTS.

Both follow HuggingFace's search-and-learn (``sal.search.beam_search`` and
``sal.search.diverse_verifier_tree_search``). A **step** is the text the model writes up to the
``separator`` (default ``"\n\n"``): every request stops there (vLLM's ``stop``, the separator
kept in the text) and the next request continues the partial assistant message
(``continue_final_message``), so vLLM's prefix cache reuses the shared reasoning. The PRM scores
each partial solution step by step; a beam's score is the aggregate of its step scores (the
PRM's own ``Verdict.score`` by default, or ``aggregate=`` ``"last"``, ``"min"``, ``"prod"`` or
``"mean"`` over ``Verdict.step_scores``).

``n`` is the number of final candidates and ``width`` the number of continuations drawn from
one beam at a time (search-and-learn's ``n`` and ``beam_width``, "M" in the paper); ``n`` must be
a multiple of ``width``.

- **Beam search** (``mode="beam"``): the first step draws ``n`` continuations of the prompt in one
  request. Every step the PRM scores all new partial solutions; those that finished leave the
  search as final candidates, and of the others the ``n / width`` best survive (the rest are
  pruned). Each survivor is continued ``width`` times in one ``n=width`` request, so every step
  draws ``n`` continuations again (when fewer than ``n / width`` beams survive, the ``n``
  continuations are shared out among them, as search-and-learn duplicates its active beams).
  The search ends when ``n`` beams have finished (search-and-learn keeps the first ``n``
  finished beams, ``sort_completed=False``, so later work would be thrown away), when no beam
  is left, or after ``max_steps`` steps. The final candidates are the finished beams, in order
  of finishing (the better-scored first within a step).
- **DVTS** (``mode="dvts"``, diverse verifier tree search): ``n / width`` independent subtrees.
  Each step every open subtree continues its current beam ``width`` times in one request and
  keeps only the best-scored continuation (greedy on the PRM); a subtree whose chosen beam
  finished closes. Subtrees never exchange beams, so a PRM that favours one line of reasoning
  cannot collapse them all onto it. The final candidates are, per subtree, the ``width``
  partial solutions of its last expansion (its chosen beam first), ``n`` in all.

A beam **finishes** when its step ends the turn (EOS, or a ``stop`` string of ``sampling``), is
cut by ``step_max_tokens`` (``finish_reason="length"``, as search-and-learn treats it), adds
nothing but whitespace, or, with ``stop_at_answer=True`` (the default), marks its final answer
(``\boxed{}``, "Final Answer:", "the answer is", "Answer:"; search-and-learn's DVTS stops at
``boxed{``; here the same rule holds in both modes). The last step (``max_steps``) is drawn
without the separator, so it runs to the end of the answer. search-and-learn's ``lookahead``
rollouts and ``filter_duplicates`` are not implemented (lookahead 0).

Ties in score go to the beam generated first, so a run is reproducible.

**Seeds**: the request of slot ``s`` at step ``t`` (from 0) carries seed ``seed + t·n + s``, so no
two requests of a run share one; the slot is the beam's place among the survivors in beam
search and the subtree's number in DVTS (a subtree's seeds do not depend on the others).

**Budget**: every generation request, and every PRM call (one per partial solution, with
``uses_model = True`` as :class:`~tts_graph.verifiers.reward.ProcessRewardVerifier` has), is
charged to the run's ledger, which may cut it (fewer continuations, a shorter step) or refuse
it. A refusal ends the search after that step: what was generated and scored still counts,
beams whose continuation was refused stay as they were, and the final candidates are the
finished beams, topped up with the best unfinished ones (beam search), or each subtree's last
expansion (DVTS), with ``reason="budget"`` or ``"wall time"``
(:class:`~tts_graph.errors.BudgetExhausted` in strict mode). A continuation whose PRM call the
budget refused is dropped (counted as ``unscored``); one the PRM failed to score (a server
error, a malformed reply) keeps its failed verdict's score 0 and is listed under
``prm_errors``. A backend failure before anything was generated raises; later, it ends the
search with ``reason="backend_error"``.

**Decisions**: one ``search_step`` record per step (the beams kept, pruned and finished with
their scores, the requests and completion tokens), then a ``search`` record with why the
search stopped and which candidate was chosen. **Choice**: the candidates (text, answer, PRM
score and verdict, ``metadata["search"]``) are added to state, and the node chooses the answer
with ``select`` (default ``"best_score"``: the highest PRM score, search-and-learn's ``pred``;
``"weighted"`` sums the scores of each distinct answer) among the finished candidates (all
of them when none finished), writing ``answer`` and ``response`` as a select node does, and on a
conversation appending the chosen response to ``messages``. ``select=None`` leaves the choice
to a later :func:`~tts_graph.nodes.select.make_select_node`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from tts_graph.backends.base import (
    Backend,
    BaseBackend,
    Completion,
    GenerationRequest,
    Message,
    SamplingParams,
    metered,
)
from tts_graph.candidate import Candidate, next_index
from tts_graph.errors import (
    MAX_SAMPLES,
    BackendError,
    BudgetExhausted,
    ConfigError,
    check_choice,
)
from tts_graph.metering import Spending, charge_call, spending
from tts_graph.nodes._budget import run_ledger
from tts_graph.nodes._node import Node, chosen_update, make_node, require_keys
from tts_graph.nodes._record import decision
from tts_graph.nodes.select import SelectOption, choose, resolve_selector
from tts_graph.nodes.verify import run_verifier
from tts_graph.prompts import PromptFn, question_of, question_prompt
from tts_graph.state import Decision, StateKeys
from tts_graph.verifiers.answer import (
    AnswerExtractor,
    extract_answer,
    extract_marked_answer,
    resolve_extractor,
)
from tts_graph.verifiers.base import Problem, Verdict, Verifier
from tts_graph.verifiers.reward import Aggregate, aggregate_steps

__all__ = ["SearchMode", "make_step_search_node"]

logger = logging.getLogger(__name__)

SearchMode = Literal["beam", "dvts"]
"""``"beam"``: beam search keeping the ``n / width`` best partial solutions each step;
``"dvts"``: ``n / width`` independent subtrees, each greedy on the PRM's score."""

_OPEN = "open"


@dataclass(frozen=True)
class _Beam:
    """A partial solution: the assistant text so far and how it came about."""

    id: int
    text: str
    parent: int | None = None
    subtree: int = 0
    steps: int = 0
    tokens: int = 0  # completion tokens of every step on its path
    step_tokens: int = 0  # completion tokens of its last step
    seed: int | None = None
    status: str = _OPEN  # open, or why it finished: eos, length, empty, answer
    finish_reason: str | None = None
    score: float | None = None
    verdict: Verdict | None = None

    @property
    def finished(self) -> bool:
        return self.status != _OPEN

    def brief(self) -> dict[str, Any]:
        """What a decision record says about this beam."""
        out: dict[str, Any] = {"beam": self.id, "parent": self.parent, "score": self.score}
        if self.finished:
            out["status"] = self.status
        return out


def _ranked(beams: Sequence[_Beam]) -> list[_Beam]:
    """Best PRM score first; ties to the earlier beam, so a run is reproducible."""
    return sorted(beams, key=lambda b: (-(b.score if b.score is not None else -1.0), b.id))


@dataclass
class _Outcome:
    """Where a search ended: the final beams in candidate order, and why it stopped."""

    beams: list[_Beam]
    reason: str
    steps: int


class _Search:
    """One node run's search: builds and sends the step requests, scores the partial solutions
    and records each step."""

    def __init__(
        self,
        *,
        model: BaseBackend,
        prm: Verifier,
        messages: Sequence[Message],
        problem: Problem,
        spent: Spending,
        options: _Options,
    ) -> None:
        self.model = model
        self.prm = prm
        self.messages = list(messages)
        self.problem = problem
        self.spent = spent
        self.o = options
        self.one_per_call = bool(getattr(prm, "uses_model", False))
        self.next_id = 1  # 0 is the empty root
        self.requests = 0
        self.generated = 0
        self.records: list[Decision] = []

    # -- generating -------------------------------------------------------------------------

    def _request(self, parent: _Beam, count: int, seed: int, last: bool) -> GenerationRequest:
        base = self.o.sampling
        stop = (
            base.stop if last or self.o.separator in base.stop else (*base.stop, self.o.separator)
        )
        sampling = dataclasses.replace(
            base,
            max_tokens=self.o.step_max_tokens,
            seed=seed,
            stop=stop,
            include_stop_str_in_output=True,
        )
        if not parent.text:
            return GenerationRequest.chat(self.messages, n=count, sampling=sampling)
        messages = [*self.messages, {"role": "assistant", "content": parent.text}]
        return GenerationRequest.chat(
            messages, n=count, sampling=sampling, continue_final_message=True
        )

    def _child(self, parent: _Beam, c: Completion, seed: int) -> _Beam:
        sep = self.o.separator
        step = c.text
        if c.finish_reason == "length":
            status = "length"
        elif c.stop_reason != sep:
            status = "eos"  # the end of the turn, or a stop string of the caller's own
        elif not step.strip():
            status = "empty"
        elif self.o.stop_at_answer and extract_marked_answer(step) is not None:
            status = "answer"
        else:
            status = _OPEN
        if c.stop_reason == sep and not step.endswith(sep):
            step += sep  # a server that leaves the stop string out of the text
        beam = _Beam(
            id=self.next_id,
            text=parent.text + step,
            parent=parent.id,
            subtree=parent.subtree,
            steps=parent.steps + 1,
            tokens=parent.tokens + c.completion_tokens,
            step_tokens=c.completion_tokens,
            seed=seed,
            status=status,
            finish_reason=c.finish_reason,
        )
        self.next_id += 1
        return beam

    async def _expand(
        self, parent: _Beam, count: int, step: int, slot: int, last: bool
    ) -> list[_Beam] | str | BackendError:
        """``count`` continuations of ``parent`` in one request; the budget's reason when it
        refused the request, or the backend's error."""
        seed = self.o.seed + step * self.o.n + slot
        try:
            gen = await self.model.generate(self._request(parent, count, seed, last))
        except BudgetExhausted as exc:
            return self.spent.stopped(exc)
        except BackendError as exc:
            return exc
        self.requests += 1
        return [self._child(parent, c, seed) for c in gen.completions]

    async def expand(
        self, jobs: Sequence[tuple[_Beam, int, int]], step: int, last: bool
    ) -> tuple[list[list[_Beam]], str | None]:
        """Run one step's requests, one per ``(beam, continuations, slot)`` job, concurrently:
        per job, its continuations (empty when its request failed), and why the search must
        stop after this step (None: it need not)."""
        results = await asyncio.gather(
            *(self._expand(beam, count, step, slot, last) for beam, count, slot in jobs)
        )
        errors = [r for r in results if isinstance(r, BackendError)]
        if errors and step == 0 and all(not isinstance(r, list) or not r for r in results):
            raise errors[0]  # nothing generated at all: the caller should hear of it
        children: list[list[_Beam]] = []
        reason: str | None = None
        for result in results:
            if isinstance(result, list):
                children.append(result)
                continue
            children.append([])
            if isinstance(result, BackendError):
                logger.warning("%s: a step request failed, stopping: %s", self.o.name, result)
                result = "backend_error"
            reason = reason or result
        self.generated += sum(len(c) for c in children)
        return children, reason

    # -- scoring ----------------------------------------------------------------------------

    def _aggregate(self, verdict: Verdict) -> float:
        if self.o.aggregate is not None and verdict.step_scores:
            return aggregate_steps(verdict.step_scores, self.o.aggregate)
        return verdict.score

    async def score(self, beams: Sequence[_Beam]) -> tuple[list[_Beam], str | None]:
        """The beams the PRM scored (with their scores and verdicts), and why the budget stopped
        the scoring (None when it did not). Beams it refused to score are left out."""
        if not beams:
            return [], None
        reasons: list[str] = []
        verdicts: list[Verdict | None]
        if self.one_per_call:

            async def one(beam: _Beam) -> Verdict | None:
                # One model call per partial solution, held before the PRM request is sent.
                try:
                    async with charge_call(what=f"scoring beam {beam.id}") as bill:
                        (verdict,) = await run_verifier(self.prm, self.problem, [beam.text])
                        bill.settle(verdict.usage)
                except BudgetExhausted as exc:
                    reasons.append(self.spent.stopped(exc))
                    return None
                return verdict

            verdicts = list(await asyncio.gather(*(one(b) for b in beams)))
        else:
            try:
                verdicts = list(await run_verifier(self.prm, self.problem, [b.text for b in beams]))
            except BudgetExhausted as exc:
                reasons.append(self.spent.stopped(exc))
                verdicts = [None] * len(beams)
        scored = [
            dataclasses.replace(b, verdict=v, score=self._aggregate(v))
            for b, v in zip(beams, verdicts, strict=True)
            if v is not None
        ]
        return scored, reasons[0] if reasons else None

    def record(self, step: int, **data: Any) -> None:
        self.records.append(
            decision(self.o.name, "search_step", mode=self.o.mode, step=step, **data)
        )

    @staticmethod
    def _errors(beams: Sequence[_Beam]) -> list[dict[str, Any]]:
        # A verdict without step scores that failed is the PRM saying it could not score.
        return [
            {"beam": b.id, "reason": b.verdict.reason}
            for b in beams
            if b.verdict is not None and b.verdict.step_scores is None and b.verdict.passed is False
        ]

    # -- the two searches -------------------------------------------------------------------

    async def beam_search(self) -> _Outcome:
        o = self.o
        keep = o.n // o.width
        frontier: list[_Beam] = [_Beam(id=0, text="")]
        finished: list[_Beam] = []
        reason = "max_steps"
        step = 0
        for step in range(o.max_steps):
            last = step == o.max_steps - 1
            # n continuations per step, shared out among the open beams (width each when all
            # n / width survived; more each when fewer did).
            share, extra = divmod(o.n, len(frontier))
            jobs = [(b, share + (slot < extra), slot) for slot, b in enumerate(frontier)]
            sent = self.requests
            children, stop = await self.expand(jobs, step, last)
            drawn = [c for group in children for c in group]
            scored, refused = await self.score(drawn)
            stop = stop or refused
            by_parent = {c.parent for c in scored}
            # A beam whose continuations were refused or could not be scored stays as it was.
            stranded = [b for b in frontier if b.id not in by_parent and b.text]
            done = _ranked([b for b in scored if b.finished])
            open_ = _ranked([b for b in scored if not b.finished])
            finished += done
            kept, pruned = open_[:keep], open_[keep:]
            self.record(
                step + 1,
                requests=self.requests - sent,
                expanded=len(drawn),
                unscored=len(drawn) - len(scored),
                completion_tokens=sum(c.step_tokens for c in drawn),
                kept=[b.brief() for b in kept],
                pruned=[b.brief() for b in pruned],
                finished=[b.brief() for b in done],
                prm_errors=self._errors(scored),
                reason=stop,
            )
            frontier = kept + stranded
            if stop is not None:
                reason = stop
                break
            if len(finished) >= o.n:
                reason = "finished"
                break
            if not frontier:
                reason = "finished"
                break
        final = finished[: o.n]
        if len(final) < o.n:  # stopped early: the best unfinished beams stand in
            final += _ranked([b for b in frontier if b.score is not None])[: o.n - len(final)]
        return _Outcome(final, reason, step + 1)

    async def dvts(self) -> _Outcome:
        o = self.o
        trees = o.n // o.width
        current = [_Beam(id=0, text="", subtree=j) for j in range(trees)]
        last_expansion: dict[int, list[_Beam]] = {}
        open_trees = list(range(trees))
        reason = "max_steps"
        step = 0
        for step in range(o.max_steps):
            last = step == o.max_steps - 1
            # A subtree's requests are seeded by its own number, whatever the others do.
            jobs = [(current[j], o.width, j) for j in open_trees]
            sent = self.requests
            children, stop = await self.expand(jobs, step, last)
            drawn = [c for group in children for c in group]
            scored, refused = await self.score(drawn)
            stop = stop or refused
            kept: list[_Beam] = []
            pruned: list[_Beam] = []
            closed: list[_Beam] = []
            for j in list(open_trees):
                mine = _ranked([b for b in scored if b.subtree == j])
                if not mine:
                    continue  # refused or unscored: the subtree stays where it was
                best = mine[0]
                current[j] = best
                last_expansion[j] = mine
                kept.append(best)
                pruned += mine[1:]
                if best.finished:
                    open_trees.remove(j)
                    closed.append(best)
            self.record(
                step + 1,
                requests=self.requests - sent,
                expanded=len(drawn),
                unscored=len(drawn) - len(scored),
                completion_tokens=sum(c.step_tokens for c in drawn),
                kept=[{**b.brief(), "subtree": b.subtree} for b in kept],
                pruned=[{**b.brief(), "subtree": b.subtree} for b in pruned],
                finished=[{**b.brief(), "subtree": b.subtree} for b in closed],
                open_subtrees=list(open_trees),
                prm_errors=self._errors(scored),
                reason=stop,
            )
            if stop is not None:
                reason = stop
                break
            if not open_trees:
                reason = "finished"
                break
        final = [b for j in range(trees) for b in last_expansion.get(j, [])]
        return _Outcome(final, reason, step + 1)


@dataclass(frozen=True)
class _Options:
    mode: SearchMode
    n: int
    width: int
    max_steps: int
    separator: str
    step_max_tokens: int
    aggregate: Aggregate | None
    sampling: SamplingParams
    seed: int
    stop_at_answer: bool
    name: str


def make_step_search_node(
    backend: Backend,
    prm: Verifier,
    *,
    mode: SearchMode = "beam",
    n: int = 8,
    width: int = 4,
    max_steps: int = 40,
    separator: str = "\n\n",
    step_max_tokens: int | None = None,
    aggregate: Aggregate | None = None,
    stop_at_answer: bool = True,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str = extract_answer,
    select: SelectOption | None = "best_score",
    strategy: str | None = None,
    keys: StateKeys = StateKeys(),
    name: str | None = None,
) -> Node:
    r"""Make a node that searches over reasoning steps scored by ``prm`` (beam search or DVTS,
    see the module docs), adds the ``n`` final candidates to ``state[keys.candidates]`` and
    chooses the answer among them with ``select``.

    ``prm``: a verifier whose verdicts carry per-step scores
    (:class:`~tts_graph.verifiers.reward.ProcessRewardVerifier`); it is given each partial
    solution whole and splits it into steps itself, so its step separator must be
    ``separator``. ``width``: continuations per beam and request (search-and-learn's
    ``beam_width``); ``n`` must be a multiple of it. ``step_max_tokens``: the longest step
    (default ``sampling.max_tokens``). ``aggregate``: how step scores make a beam's score
    (default: the PRM's own aggregate, its ``Verdict.score``). ``name`` defaults to
    ``"beam_search"`` or ``"dvts"``; ``strategy`` is written to state when given.

    >>> prm = ProcessRewardVerifier("http://127.0.0.1:8001/v1")  # doctest: +SKIP
    >>> graph.add_node("search", make_step_search_node(backend, prm, mode="dvts", n=8, width=4))  # doctest: +SKIP
    """
    check_choice("search mode", mode, SearchMode)
    problems = []
    if not 1 <= n <= MAX_SAMPLES:
        problems.append(f"n must be >= 1 and <= {MAX_SAMPLES}, got {n}")
    if not 1 <= width <= max(n, 1):
        problems.append(f"width must be in [1, n={n}], got {width}")
    elif n % width:
        problems.append(f"n ({n}) must be a multiple of width ({width})")
    if max_steps < 1:
        problems.append(f"max_steps must be >= 1, got {max_steps}")
    if not separator:
        problems.append("separator must not be empty")
    if step_max_tokens is not None and step_max_tokens < 1:
        problems.append(f"step_max_tokens must be >= 1, got {step_max_tokens}")
    prm_separator = getattr(prm, "step_separator", separator)
    if prm_separator != separator:
        problems.append(
            f"the PRM splits steps at {prm_separator!r} but the search at {separator!r}; "
            "give both the same separator"
        )
    if problems:
        raise ConfigError("invalid step search options: " + "; ".join(problems))
    if aggregate is not None:
        check_choice("aggregate", aggregate, Aggregate)
    if select is not None:
        resolve_selector(select)
    if not isinstance(prm, Verifier):
        raise ConfigError(
            f"prm must be a verifier (a name and async verify(problem, candidates)), "
            f"got {type(prm).__name__}"
        )
    base = sampling or SamplingParams()
    node_name = name or ("beam_search" if mode == "beam" else "dvts")
    options = _Options(
        mode=mode,
        n=n,
        width=width,
        max_steps=max_steps,
        separator=separator,
        step_max_tokens=step_max_tokens or base.max_tokens,
        aggregate=aggregate,
        # Fails here, at build time, when sampling's min_tokens exceeds the step length.
        sampling=dataclasses.replace(base, max_tokens=step_max_tokens or base.max_tokens),
        seed=seed,
        stop_at_answer=stop_at_answer,
        name=node_name,
    )
    build_prompt = prompt or question_prompt(key=keys.question, messages_key=keys.messages)
    read_answer = resolve_extractor(extract)
    model = metered(backend)

    async def search(state: Mapping[str, Any]) -> dict[str, Any]:
        require_keys(state, node_name, keys.candidates, keys.decisions, keys.usage)
        messages = build_prompt(state)
        problem = Problem(
            question=question_of(state, keys.question, keys.messages),
            reference=state.get(keys.reference),
        )
        offset = next_index(state.get(keys.candidates))
        with spending(run_ledger(state, keys, node_name)) as spent:
            run = _Search(
                model=model, prm=prm, messages=messages, problem=problem, spent=spent,
                options=options,
            )  # fmt: skip
            outcome = await (run.beam_search() if mode == "beam" else run.dvts())
            candidates = [
                _candidate(b, offset + i, read_answer, node_name, mode)
                for i, b in enumerate(outcome.beams)
            ]
            finished = [c for c in candidates if c.metadata["search"]["finished"]]
            pool = finished or candidates
            chosen: Candidate | None = None
            chosen_info: dict[str, Any] = {}
            if select is not None:
                chosen, selection = choose(select, pool)
                selection["pool"] = "finished" if finished else "all"
                chosen_info = {
                    "selection": selection,
                    "chosen_index": None if chosen is None else chosen.index,
                    "answer": None if chosen is None else chosen.answer,
                    "score": None if chosen is None else chosen.score,
                }
            record = decision(
                node_name, "search", mode=mode, n=n, width=width, steps=outcome.steps,
                max_steps=max_steps, requests=run.requests, generated=run.generated,
                candidates=len(candidates), finished=len(finished), reason=outcome.reason,
                **chosen_info, why=_why(select, chosen, pool), usage=spent.usage.to_dict(),
            )  # fmt: skip
        update: dict[str, Any] = {keys.decisions: [*run.records, record]}
        if select is not None:
            # The reply appended to a conversation carries every step's record too.
            earlier = [*(state.get(keys.decisions) or []), *run.records]
            seen = {**state, keys.decisions: earlier}
            update.update(chosen_update(seen, keys, chosen, record, usage=spent.usage))
        if candidates:
            update[keys.candidates] = candidates
        if spent.usage.calls:
            update[keys.usage] = spent.usage
        if strategy is not None:
            update[keys.strategy] = strategy
        return update

    return make_node(search, node_name)


def _candidate(
    beam: _Beam, index: int, read_answer: AnswerExtractor, source: str, mode: str
) -> Candidate:
    text = beam.text.rstrip()
    verdict = beam.verdict
    return Candidate(
        index=index,
        text=text,
        answer=read_answer(text),
        source=source,
        seed=beam.seed,
        completion_tokens=beam.tokens,
        finish_reason=beam.finish_reason if beam.finished else "unfinished",
        score=beam.score,
        verdict=verdict,
        metadata={
            "search": {
                "mode": mode,
                "beam": beam.id,
                "parent": beam.parent,
                "subtree": beam.subtree,
                "steps": beam.steps,
                "status": beam.status,
                "finished": beam.finished,
                "step_scores": None
                if verdict is None or verdict.step_scores is None
                else list(verdict.step_scores),
            }
        },
    )


def _why(select: SelectOption | None, chosen: Candidate | None, pool: Sequence[Candidate]) -> str:
    if select is None:
        return "no selection: the candidates are left to a select node"
    if chosen is None:
        return "no candidates: nothing was generated and scored"
    kind = "finished" if chosen.metadata["search"]["finished"] else "unfinished (none finished)"
    score = "none" if chosen.score is None else f"{chosen.score:.4g}"
    return f"{select} over {len(pool)} {kind} candidates; chosen PRM score {score}"

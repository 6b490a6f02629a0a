"""Budget forcing (s1, Muennighoff et al. 2025): control how long a model thinks.

The model thinks between a start and an end marker. To make it think **longer**, the node stops
generation at the end marker, strips it, appends "Wait" and lets the model continue, up to
``max_waits`` times, until at least ``min_thinking_tokens`` were spent thinking. To **cap** it, each
continuation may use only what is left of ``max_thinking_tokens``; when the cap is hit (or
nothing is left), the node appends the end marker and "\\nFinal Answer:" so an answer always
comes, in at most ``answer_max_tokens`` more tokens. Completion tokens per candidate therefore
never exceed ``max_thinking_tokens + answer_max_tokens``.

Everything runs over HTTP against the server: chat continuation of the partial assistant
message (``continue_final_message``), or a raw completion when the prompt function returns a
string. When the end marker is one token, it is stopped on by token id (``stop_token_ids``), so
``min_tokens=1`` keeps a continuation from ending at once; otherwise by stop string.

A model without native markers (like the embedded one) is asked by the prompt to use them, and the
assistant turn is pre-filled with the start marker. A model that ends its turn without ever
writing the end marker ignores the markers: the node then treats the end of its turn as the end of
thinking, says so in the decision (``markers_ignored``) and logs a warning.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tts_graph.backends.base import (
    Backend,
    BaseBackend,
    GenerationRequest,
    Message,
    SamplingParams,
    metered,
)
from tts_graph.candidate import Candidate, next_index
from tts_graph.errors import MAX_SAMPLES, BudgetExhausted, ConfigError
from tts_graph.ledger import Grant, Ledger
from tts_graph.metering import Spending, spending
from tts_graph.nodes._budget import run_ledger
from tts_graph.nodes._node import Node, make_node
from tts_graph.nodes._record import decision
from tts_graph.prompts import question_prompt
from tts_graph.state import StateKeys
from tts_graph.verifiers.answer import AnswerExtractor, extract_answer, resolve_extractor

__all__ = ["ForcingTrace", "ThinkingMarkers", "make_budget_forcing_node", "thinking_prompt"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ThinkingMarkers:
    """The strings that open and close the thinking segment."""

    start: str = "<think>"
    end: str = "</think>"


def thinking_prompt(
    markers: ThinkingMarkers = ThinkingMarkers(),
    key: str = "question",
    messages_key: str = "messages",
) -> Callable[[Mapping[str, Any]], list[Message]]:
    """A prompt that asks a model without native thinking markers to use them: a system message
    with the instruction, then the question (or, for a state without one, the conversation; its
    own system message follows the instruction).

    >>> thinking_prompt()({"question": "What is 7+5?"})[0]["role"]
    'system'
    """
    instruction = (
        f"Think step by step inside {markers.start} ... {markers.end}, then write "
        "'Final Answer:' followed by the answer."
    )
    ask = question_prompt(system=None, key=key, messages_key=messages_key)

    def build(state: Mapping[str, Any]) -> list[Message]:
        messages = ask(state)
        if messages and messages[0].get("role") == "system":
            first = {**messages[0], "content": f"{instruction}\n\n{messages[0]['content']}"}
            return [first, *messages[1:]]
        return [{"role": "system", "content": instruction}, *messages]

    return build


@dataclass(frozen=True)
class ForcingTrace:
    """What happened to one candidate: tokens spent thinking and answering, "Wait"s appended,
    whether the cap cut it, whether the model itself ever closed its thinking."""

    thinking_tokens: int = 0
    answer_tokens: int = 0
    waits: int = 0
    capped: bool = False
    closed_by_model: bool = False
    ended_turn_without_marker: bool = False
    requests: int = 0


class _Forcer:
    def __init__(
        self,
        backend: BaseBackend,
        *,
        min_thinking: int,
        max_thinking: int,
        max_waits: int,
        wait: str,
        markers: ThinkingMarkers,
        answer_prompt: str,
        answer_max_tokens: int,
        sampling: SamplingParams,
        stop_ids: tuple[int, ...],
    ) -> None:
        self.backend = backend
        self.min_thinking = min_thinking
        self.max_thinking = max_thinking
        self.max_waits = max_waits
        self.wait = wait
        self.markers = markers
        self.answer_prompt = answer_prompt
        self.answer_max_tokens = answer_max_tokens
        self.sampling = sampling
        self.stop_ids = stop_ids

    def _request(
        self, prompt: Sequence[Message] | str, assistant: str, **params: Any
    ) -> GenerationRequest:
        sampling = dataclasses.replace(self.sampling, **params)
        if isinstance(prompt, str):
            return GenerationRequest(prompt=prompt + assistant, sampling=sampling)
        messages = (*prompt, {"role": "assistant", "content": assistant})
        return GenerationRequest.chat(messages, continue_final_message=True, sampling=sampling)

    async def run(
        self,
        prompt: Sequence[Message] | str,
        seed: int,
        stride: int,
        ledger: Ledger,
        spent: Spending,
    ) -> tuple[str, ForcingTrace, str | None]:
        """One candidate: think (with "Wait"s), then answer. Returns its text, its trace and
        why the budget stopped it (None when it did not)."""
        opening = self.markers.start + "\n"
        thinking = ""
        trace = ForcingTrace()
        stopped: str | None = None
        # Hold a call and the answer's tokens while thinking, so thinking cannot spend what the
        # forced answer needs (other runs of the node think at the same time).
        hold = self._hold_answer(ledger, spent)
        try:
            while True:
                left = self.max_thinking - trace.thinking_tokens
                if left <= 0:
                    trace = dataclasses.replace(trace, capped=True)
                    break
                try:
                    gen = await self.backend.generate(
                        self._request(
                            prompt,
                            opening + thinking,
                            max_tokens=left,
                            seed=seed + stride * trace.requests,
                            stop=() if self.stop_ids else (self.markers.end,),
                            stop_token_ids=self.stop_ids,
                            min_tokens=1 if self.stop_ids and trace.waits else 0,
                        )
                    )
                except BudgetExhausted as exc:  # the s1 guard: nothing left, go to the answer
                    stopped = spent.stopped(exc)
                    trace = dataclasses.replace(trace, capped=True)
                    break
                c = gen.completions[0]
                thinking += c.text
                trace = dataclasses.replace(
                    trace,
                    thinking_tokens=trace.thinking_tokens + c.completion_tokens,
                    requests=trace.requests + 1,
                )
                if c.finish_reason == "length":
                    trace = dataclasses.replace(trace, capped=True)
                    break
                if c.stop_reason is not None:
                    trace = dataclasses.replace(trace, closed_by_model=True)
                else:  # end of turn (EOS) without the end marker
                    trace = dataclasses.replace(trace, ended_turn_without_marker=True)
                if trace.thinking_tokens >= self.min_thinking or trace.waits >= self.max_waits:
                    break
                thinking = thinking.rstrip() + f"\n{self.wait}"
                trace = dataclasses.replace(trace, waits=trace.waits + 1)
        finally:
            if hold is not None:
                ledger.release(hold)
        closing = f"{thinking.rstrip()}\n{self.markers.end}{self.answer_prompt}"
        if stopped == "wall time":
            return opening + closing, trace, stopped
        answer = ""
        try:
            gen = await self.backend.generate(
                self._request(
                    prompt,
                    opening + closing,
                    max_tokens=self.answer_max_tokens,
                    seed=seed + stride * trace.requests,
                    stop=(),
                    stop_token_ids=(),
                    min_tokens=0,
                )
            )
        except BudgetExhausted as exc:
            return opening + closing, trace, spent.stopped(exc)
        answer = gen.completions[0].text
        trace = dataclasses.replace(
            trace,
            answer_tokens=gen.completions[0].completion_tokens,
            requests=trace.requests + 1,
        )
        return opening + closing + answer, trace, stopped

    def _hold_answer(self, ledger: Ledger, spent: Spending) -> Grant | None:
        try:
            return ledger.reserve(
                prompt_tokens=0,
                max_tokens=self.answer_max_tokens,
                model_params=self.backend.model_params,
                what="the forced answer",
            )
        except BudgetExhausted as exc:
            spent.stopped(exc)
            return None


def make_budget_forcing_node(
    backend: Backend,
    *,
    n: int = 1,
    min_thinking_tokens: int = 0,
    max_thinking_tokens: int = 512,
    max_waits: int = 2,
    wait: str = "Wait",
    markers: ThinkingMarkers = ThinkingMarkers(),
    answer_prompt: str = "\nFinal Answer:",
    answer_max_tokens: int = 64,
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: Callable[[Mapping[str, Any]], Sequence[Message] | str] | None = None,
    extract: AnswerExtractor | str = extract_answer,
    keys: StateKeys = StateKeys(),
    name: str = "budget_forcing",
) -> Node:
    """Make a node that adds ``n`` budget-forced candidates. Candidate ``i`` uses seed
    ``seed + i``; its ``r``-th continuation uses ``seed + i + r·n``, so no two requests share one.

    >>> node = make_budget_forcing_node(backend, min_thinking_tokens=200, max_thinking_tokens=400)  # doctest: +SKIP
    """
    problems = []
    if not 1 <= n <= MAX_SAMPLES:
        problems.append(f"n must be >= 1 and <= {MAX_SAMPLES}, got {n}")
    if max_thinking_tokens < 1:
        problems.append(f"max_thinking_tokens must be >= 1, got {max_thinking_tokens}")
    if not 0 <= min_thinking_tokens <= max_thinking_tokens:
        problems.append("min_thinking_tokens must be in [0, max_thinking_tokens]")
    if max_waits < 0:
        problems.append(f"max_waits must be >= 0, got {max_waits}")
    if answer_max_tokens < 1:
        problems.append(f"answer_max_tokens must be >= 1, got {answer_max_tokens}")
    if not markers.start or not markers.end:
        problems.append("both thinking markers must be non-empty")
    if problems:
        raise ConfigError("invalid budget forcing options: " + "; ".join(problems))
    base = sampling or SamplingParams(temperature=0.7)
    build_prompt = prompt or thinking_prompt(markers, key=keys.question, messages_key=keys.messages)
    read_answer = resolve_extractor(extract)
    model = metered(backend)
    end_ids: list[tuple[int, ...]] = []  # resolved once, on first use

    async def stop_ids() -> tuple[int, ...]:
        if not end_ids:
            ids = await model.tokenize(markers.end)
            end_ids.append(tuple(ids) if len(ids) == 1 else ())
        return end_ids[0]

    async def force(state: Mapping[str, Any]) -> dict[str, Any]:
        forcer = _Forcer(
            model,
            min_thinking=min_thinking_tokens,
            max_thinking=max_thinking_tokens,
            max_waits=max_waits,
            wait=wait,
            markers=markers,
            answer_prompt=answer_prompt,
            answer_max_tokens=answer_max_tokens,
            sampling=base,
            stop_ids=await stop_ids(),
        )
        built = build_prompt(state)
        ledger = run_ledger(state, keys, name)
        with spending(ledger) as spent:
            # The runs think concurrently; the shared ledger keeps them within the budget.
            runs = await asyncio.gather(
                *(forcer.run(built, seed + i, n, ledger, spent) for i in range(n))
            )
            offset = next_index(state.get(keys.candidates))
            candidates: list[Candidate] = []
            traces: list[dict[str, Any]] = []
            for i, (text, trace, _) in enumerate(runs):
                traces.append(dataclasses.asdict(trace))
                if trace.requests == 0:
                    continue  # the budget refused every request of this run: no candidate
                answer_part = text.rsplit(markers.end, 1)[-1]
                candidates.append(
                    Candidate(
                        index=offset + len(candidates),
                        text=text,
                        answer=read_answer(answer_part),
                        source=name,
                        seed=seed + i,
                        completion_tokens=trace.thinking_tokens + trace.answer_tokens,
                        finish_reason="forced",
                        metadata={"forcing": dataclasses.asdict(trace)},
                    )
                )
            ignored = [
                t for t in traces if t["ended_turn_without_marker"] and not t["closed_by_model"]
            ]
            if ignored:
                logger.warning(
                    "%d of %d runs ended their turn without writing %r: the model ignores the "
                    "thinking markers, so the end of its turn was taken as the end of thinking",
                    len(ignored), n, markers.end,
                )  # fmt: skip
            stops = [why for _, _, why in runs if why is not None]
            record = decision(
                name,
                "budget_forcing",
                min_thinking_tokens=min_thinking_tokens,
                max_thinking_tokens=max_thinking_tokens,
                end_marker_token_ids=list(forcer.stop_ids),
                markers_ignored=bool(ignored) and len(ignored) == len(candidates),
                runs=traces,
                sampled=len(candidates),
                reason=stops[0] if stops else None,
                usage=spent.usage.to_dict(),
            )
        update: dict[str, Any] = {keys.decisions: [record]}
        if candidates:
            update[keys.candidates] = candidates
        if spent.usage.calls:
            update[keys.usage] = spent.usage
        return update

    return make_node(force, name)

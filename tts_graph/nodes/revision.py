"""Sequential revision: self-refine (Madaan et al. 2023) — draft, critique, revise.

Up to ``rounds`` times: the current draft is checked — by a verifier when one is given (its
reason becomes the feedback), else by the model's own critique — and revised. It stops early
when the verifier passes the draft, when the critique says the draft is correct, or when the
budget refuses the next call. Every draft is kept as a candidate; the last one is the answer.

Critique and revision are follow-up turns of the caller's own conversation: the prompt the node
was given (its system prompt, few-shot turns, the question), then the draft as the assistant's
reply, then the instruction as the user's next turn. So a custom prompt shapes every call, not
only the first draft.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tts_graph.backends.base import Backend, GenerationRequest, Message, SamplingParams, metered
from tts_graph.candidate import Candidate, best_candidate, next_index
from tts_graph.errors import BudgetExhausted, ConfigError
from tts_graph.metering import spending
from tts_graph.nodes._budget import run_ledger
from tts_graph.nodes._node import Node, chosen_update, make_node, require_keys
from tts_graph.nodes._record import decision
from tts_graph.nodes.verify import run_verifier
from tts_graph.prompts import PromptFn, question_of, question_prompt
from tts_graph.state import StateKeys
from tts_graph.verifiers.answer import AnswerExtractor, resolve_extractor
from tts_graph.verifiers.base import Problem, Verifier

__all__ = ["CRITIQUE_PROMPT", "REVISE_PROMPT", "make_self_refine_node"]

CRITIQUE_PROMPT = (
    "Check your answer above step by step. If it is correct, reply with the single word "
    "CORRECT. Otherwise, say precisely what is wrong."
)
REVISE_PROMPT = (
    "Rewrite your answer, fixing the problems in this feedback. End with a last line "
    "'Answer: <final answer>'.\n\nFeedback:\n{feedback}"
)
_SAYS_CORRECT = re.compile(r"^\W*correct\W*$|\bthe (?:draft|answer) is correct\b", re.IGNORECASE)


def make_self_refine_node(
    backend: Backend,
    *,
    rounds: int = 2,
    verifier: Verifier | None = None,
    critique_prompt: str = CRITIQUE_PROMPT,
    revise_prompt: str = REVISE_PROMPT,
    says_correct: Callable[[str], bool] = lambda text: bool(_SAYS_CORRECT.search(text.strip())),
    sampling: SamplingParams | None = None,
    seed: int = 0,
    prompt: PromptFn | None = None,
    extract: AnswerExtractor | str | None = None,
    finalize: bool = True,
    strategy: str | None = None,
    keys: StateKeys = StateKeys(),
    name: str = "self_refine",
) -> Node:
    """Make a node that refines the best candidate in state (or a fresh draft when there is
    none) for up to ``rounds`` rounds. With ``finalize`` it writes the last draft as the answer.
    ``revise_prompt`` may use ``{feedback}``; without it the feedback follows the prompt.

    >>> node = make_self_refine_node(backend, rounds=2, verifier=MathVerifier())  # doctest: +SKIP
    """
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    params = sampling or SamplingParams(temperature=0.7, max_tokens=256)
    build_prompt = prompt or question_prompt(key=keys.question, messages_key=keys.messages)
    read_answer = resolve_extractor(extract, verifier)
    model = metered(backend)
    if "{feedback}" not in revise_prompt:
        revise_prompt += "\n\nFeedback:\n{feedback}"

    async def refine(state: Mapping[str, Any]) -> dict[str, Any]:
        require_keys(state, name, keys.candidates, keys.decisions, keys.usage)
        problem = Problem(
            question_of(state, keys.question, keys.messages), state.get(keys.reference)
        )
        conversation = build_prompt(state)
        existing: list[Candidate] = list(state.get(keys.candidates) or [])
        drafts: list[Candidate] = []
        rechecked: dict[str, Candidate] = {}
        history: list[dict[str, Any]] = []
        calls = 0

        async def ask(messages: Sequence[Message]) -> tuple[str, int]:
            nonlocal calls
            request_params = dataclasses.replace(params, seed=seed + calls)
            calls += 1
            gen = await model.generate(GenerationRequest.chat(messages, sampling=request_params))
            c = gen.completions[0]
            return c.text, c.completion_tokens

        def follow_up(draft: Candidate, instruction: str) -> list[Message]:
            return [
                *conversation,
                {"role": "assistant", "content": draft.text},
                {"role": "user", "content": instruction},
            ]

        def new_draft(text: str, tokens: int, round_no: int) -> Candidate:
            cand = Candidate(
                index=next_index([*existing, *drafts]), text=text, answer=read_answer(text), source=name,
                completion_tokens=tokens, metadata={"round": round_no},
            )  # fmt: skip
            drafts.append(cand)
            return cand

        async def check(current: Candidate) -> Candidate:
            (verdict,) = await run_verifier(verifier, problem, [current.text])  # type: ignore[arg-type]
            checked = dataclasses.replace(current, verdict=verdict, score=verdict.score)
            if drafts and drafts[-1].id == checked.id:
                drafts[-1] = checked
            else:  # a candidate from state: its verdict goes back to state too
                rechecked[checked.id] = checked
            return checked

        current = best_candidate(existing)
        if current is not None and current.answer is None:
            current = dataclasses.replace(current, answer=read_answer(current.text))
        stop = "rounds done"
        with spending(run_ledger(state, keys, name)) as spent:
            try:
                if current is None:
                    current = new_draft(*await ask(conversation), round_no=0)
                for round_no in range(1, rounds + 1):
                    if verifier is not None:
                        current = await check(current)
                        verdict = current.verdict
                        assert verdict is not None
                        feedback = verdict.reason
                        history.append({"round": round_no, "check": "verifier",
                                        "passed": verdict.passed, "feedback": feedback})  # fmt: skip
                        if verdict.passed:
                            stop = "verifier passed"
                            break
                    else:
                        feedback, _ = await ask(follow_up(current, critique_prompt))
                        correct = says_correct(feedback)
                        history.append({"round": round_no, "check": "critique",
                                        "says_correct": correct, "feedback": feedback})  # fmt: skip
                        if correct:
                            stop = "critique says correct"
                            break
                    instruction = revise_prompt.replace("{feedback}", feedback)
                    current = new_draft(
                        *await ask(follow_up(current, instruction)), round_no=round_no
                    )
                if verifier is not None and stop == "rounds done":
                    # The last revision has not been checked yet: record its verdict too.
                    current = await check(current)
            except BudgetExhausted as exc:
                stop = spent.stopped(exc)
            record = decision(
                name, "self_refine", rounds=history, stop=stop, drafts=[d.index for d in drafts],
                final_index=None if current is None else current.index,
                answer=None if current is None else current.answer, usage=spent.usage.to_dict(),
            )  # fmt: skip
        update: dict[str, Any] = {keys.decisions: [record]}
        if drafts or rechecked:
            update[keys.candidates] = [*rechecked.values(), *drafts]
        if spent.usage.calls:
            update[keys.usage] = spent.usage
        if finalize and current is not None:
            update.update(chosen_update(state, keys, current, record, usage=spent.usage))
            if strategy is not None:
                update[keys.strategy] = strategy
        return update

    return make_node(refine, name)

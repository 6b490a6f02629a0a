"""Sequential revision: self-refine (Madaan et al. 2023) — draft, critique, revise.

Up to ``rounds`` times: the current draft is checked — by a verifier when one is given (its
reason becomes the feedback), else by the model's own critique — and revised. It stops early
when the verifier passes the draft, when the critique says the draft is correct, or when the
budget cannot afford the next call. Every draft is kept as a candidate; the last one is the
answer.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any

from tts_graph.backends.base import Backend, GenerationRequest, Message, SamplingParams
from tts_graph.budget import Budget, Usage
from tts_graph.errors import ConfigError
from tts_graph.nodes._record import decision
from tts_graph.nodes.select import candidate_score
from tts_graph.nodes.verify import run_verifier
from tts_graph.prompts import PromptFn, question_prompt
from tts_graph.state import Candidate, NodeFn, StateKeys, next_index
from tts_graph.verifiers.answer import extract_answer
from tts_graph.verifiers.base import Problem, Verifier

__all__ = ["CRITIQUE_PROMPT", "REVISE_PROMPT", "make_self_refine_node"]

CRITIQUE_PROMPT = (
    "Check the answer to the question step by step. If it is correct, reply with the single "
    "word CORRECT. Otherwise, say precisely what is wrong."
)
REVISE_PROMPT = (
    "Rewrite the answer to the question, fixing the problems in the feedback. End with a last "
    "line 'Answer: <final answer>'."
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
    extract: Callable[[str], str | None] = extract_answer,
    finalize: bool = True,
    keys: StateKeys = StateKeys(),
    name: str = "self_refine",
) -> NodeFn:
    """Make a node that refines the best candidate in state (or a fresh draft when there is
    none) for up to ``rounds`` rounds. With ``finalize`` it writes the last draft as the answer.

    >>> node = make_self_refine_node(backend, rounds=2, verifier=MathVerifier())  # doctest: +SKIP
    """
    if rounds < 1:
        raise ConfigError(f"rounds must be >= 1, got {rounds}")
    params = sampling or SamplingParams(temperature=0.7, max_tokens=256)
    build_prompt = prompt or question_prompt(key=keys.question)

    async def refine(state: Mapping[str, Any]) -> dict[str, Any]:
        budget: Budget = state.get(keys.budget) or Budget()
        spent: Usage = state.get(keys.usage) or Usage()
        usage = Usage()
        question = str(state.get(keys.question, ""))
        problem = Problem(question, state.get(keys.reference))
        existing: list[Candidate] = list(state.get(keys.candidates) or [])
        drafts: list[Candidate] = []
        history: list[dict[str, Any]] = []
        calls = 0

        async def ask(messages: list[Message]) -> tuple[str, int] | None:
            nonlocal usage, calls
            if not budget.can_afford(spent + usage, calls=1, completion_tokens=params.max_tokens):
                return None
            request_params = dataclasses.replace(params, seed=seed + calls)
            gen = await backend.generate(GenerationRequest.chat(messages, sampling=request_params))
            usage += gen.usage
            calls += 1
            c = gen.completions[0]
            return c.text, c.completion_tokens

        def new_draft(text: str, tokens: int, round_no: int) -> Candidate:
            cand = Candidate(
                index=next_index([*existing, *drafts]), text=text, answer=extract(text), source=name,
                completion_tokens=tokens, metadata={"round": round_no},
            )  # fmt: skip
            drafts.append(cand)
            return cand

        current = max(existing, key=lambda c: (candidate_score(c), -c.index), default=None)
        if current is not None and current.answer is None:
            current = dataclasses.replace(current, answer=extract(current.text))
        stop = "rounds done"
        if current is None:
            got = await ask(build_prompt(state))
            if got is None:
                budget.exhausted(f"{name} could write a first draft")
                record = decision(name, "self_refine", rounds=[], stop="budget")
                return {keys.decisions: [record]}
            current = new_draft(*got, round_no=0)
        for round_no in range(1, rounds + 1):
            if verifier is not None:
                (verdict,) = await run_verifier(verifier, problem, [current.text])
                if verdict.usage is not None:
                    usage += verdict.usage
                current = dataclasses.replace(current, verdict=verdict, score=verdict.score)
                if current.source == name:
                    drafts[-1] = current
                feedback = verdict.reason
                history.append({"round": round_no, "check": "verifier", "passed": verdict.passed,
                                "feedback": feedback})  # fmt: skip
                if verdict.passed:
                    stop = "verifier passed"
                    break
            else:
                got = await ask([
                    {"role": "system", "content": critique_prompt},
                    {"role": "user", "content": f"Question:\n{question}\n\nAnswer:\n{current.text}"},
                ])  # fmt: skip
                if got is None:
                    stop = "budget"
                    break
                feedback = got[0]
                correct = says_correct(feedback)
                history.append({"round": round_no, "check": "critique", "says_correct": correct,
                                "feedback": feedback})  # fmt: skip
                if correct:
                    stop = "critique says correct"
                    break
            got = await ask([
                {"role": "system", "content": revise_prompt},
                {"role": "user", "content": f"Question:\n{question}\n\nAnswer:\n{current.text}"
                                            f"\n\nFeedback:\n{feedback}"},
            ])  # fmt: skip
            if got is None:
                stop = "budget"
                break
            current = new_draft(*got, round_no=round_no)
        if verifier is not None and stop == "rounds done":
            # The last revision has not been checked yet: record its verdict too.
            (verdict,) = await run_verifier(verifier, problem, [current.text])
            if verdict.usage is not None:
                usage += verdict.usage
            current = dataclasses.replace(current, verdict=verdict, score=verdict.score)
            drafts[-1] = current
        if stop == "budget":
            budget.exhausted(f"{name} finished its rounds")
        record = decision(
            name, "self_refine", rounds=history, stop=stop, drafts=[d.index for d in drafts],
            final_index=current.index, answer=current.answer, usage=usage.to_dict(),
        )  # fmt: skip
        update: dict[str, Any] = {keys.candidates: drafts, keys.decisions: [record]}
        if usage.calls:
            update[keys.usage] = usage
        if finalize:
            update[keys.answer] = current.answer
            update[keys.response] = current.text
        return update

    refine.__name__ = name
    return refine

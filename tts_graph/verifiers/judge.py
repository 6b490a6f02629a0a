"""An LLM as judge: pointwise scores and pairwise preferences, through any backend.

The judge is asked to end with a fixed line (``Score: N`` or ``Winner: A``/``Winner: B``); the
last such line counts. Output that has none is a failed verdict (pointwise) or no vote
(pairwise), with the raw text kept, never an exception. A judge server that fails (after the
backend's retries) gives a verdict whose ``error`` says so (pointwise), or a
:class:`~tts_graph.errors.BackendError` the tournament records as no vote (pairwise); one call
that outlasts ``call_timeout_s`` is cut short by the node that made it.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from tts_graph.backends.base import Backend, GenerationRequest, SamplingParams, metered
from tts_graph.budget import Usage
from tts_graph.errors import BackendError, ConfigError
from tts_graph.verifiers.base import (
    DEFAULT_CALL_TIMEOUT_S,
    Problem,
    Verdict,
    check_call_timeout,
)

__all__ = ["DEFAULT_PAIRWISE_RUBRIC", "DEFAULT_RUBRIC", "LLMJudge", "Preference"]

DEFAULT_RUBRIC = (
    "You grade answers. Judge whether the answer to the question is correct and complete. "
    "Explain briefly, then end with a last line 'Score: N' where N is an integer from 1 "
    "(wrong) to {scale} (certainly correct)."
)
DEFAULT_PAIRWISE_RUBRIC = (
    "You compare two answers to the same question and decide which one is correct. Explain "
    "briefly, then end with a last line 'Winner: A' or 'Winner: B'."
)
_SCORE = re.compile(r"score\s*[:=]\s*\**\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE)
_WINNER = re.compile(r"winner\s*[:=]\s*\**\s*\(?([AB])\b", re.IGNORECASE)


@dataclass(frozen=True)
class Preference:
    """One pairwise judgement: ``winner`` is "A", "B" or None (no parseable vote); ``usage`` is
    what the judgement cost (already charged to the run's budget)."""

    winner: Literal["A", "B"] | None
    raw: str
    usage: Usage


class LLMJudge:
    """Grade candidates with a language model.

    Pointwise (:meth:`verify`): the score is ``N / scale``; with ``threshold`` set, a candidate
    passes when its normalised score reaches it. Pairwise (:meth:`compare`): which of two answers
    is better. ``rubric`` may use ``{scale}``. ``call_timeout_s`` bounds one grading or one
    comparison, retries included (None: no bound); the verifier and tournament nodes apply it.

    >>> judge = LLMJudge(backend, threshold=0.7)  # doctest: +SKIP
    >>> verdicts = await judge.verify(Problem("What is 7+5?"), ["12", "13"])
    """

    name = "judge"
    uses_model = True  # one model call per candidate, charged to the run's budget

    def __init__(
        self,
        backend: Backend,
        *,
        rubric: str = DEFAULT_RUBRIC,
        pairwise_rubric: str = DEFAULT_PAIRWISE_RUBRIC,
        scale: int = 10,
        threshold: float | None = None,
        sampling: SamplingParams | None = None,
        call_timeout_s: float | None = DEFAULT_CALL_TIMEOUT_S,
    ) -> None:
        self.call_timeout_s = check_call_timeout(call_timeout_s)
        if scale < 2:
            raise ConfigError(f"scale must be at least 2, got {scale}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise ConfigError(f"threshold is a normalised score in [0, 1], got {threshold}")
        self.backend = metered(backend)
        self.rubric = rubric.replace("{scale}", str(scale))
        self.pairwise_rubric = pairwise_rubric
        self.scale = scale
        self.threshold = threshold
        self.sampling = sampling or SamplingParams(temperature=0.0, max_tokens=256)

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]:
        return list(await asyncio.gather(*(self._grade(problem, c) for c in candidates)))

    async def _ask(self, system: str, user: str) -> tuple[str, Usage]:
        request = GenerationRequest.chat(
            [{"role": "system", "content": system}, {"role": "user", "content": user}],
            sampling=self.sampling,
        )
        gen = await self.backend.generate(request)
        return gen.completions[0].text, gen.usage

    async def _grade(self, problem: Problem, candidate: str) -> Verdict:
        user = f"Question:\n{problem.question}\n\nAnswer:\n{candidate}"
        try:
            raw, usage = await self._ask(self.rubric, user)
        except BackendError as exc:
            return Verdict.verifier_error(f"judge request failed: {exc}")
        matches = _SCORE.findall(raw)
        if not matches:
            return Verdict(
                passed=False, score=0.0, reason="judge gave no 'Score: N' line",
                details={"raw": raw}, usage=usage,
            )  # fmt: skip
        value = float(matches[-1])
        if not 1 <= value <= self.scale:
            return Verdict(
                passed=False, score=0.0,
                reason=f"judge score {value:g} is outside 1..{self.scale}",
                details={"raw": raw}, usage=usage,
            )  # fmt: skip
        score = value / self.scale
        passed = None if self.threshold is None else score >= self.threshold
        return Verdict(
            passed=passed, score=score, reason=f"judge score {value:g}/{self.scale}",
            details={"raw": raw}, usage=usage,
        )  # fmt: skip

    async def compare(self, question: str, a: str, b: str) -> Preference:
        """Ask which of two answers is better; an unparseable reply is no vote."""
        user = f"Question:\n{question}\n\nAnswer A:\n{a}\n\nAnswer B:\n{b}"
        raw, usage = await self._ask(self.pairwise_rubric, user)
        matches = _WINNER.findall(raw)
        winner = matches[-1].upper() if matches else None
        return Preference(winner=winner, raw=raw, usage=usage)

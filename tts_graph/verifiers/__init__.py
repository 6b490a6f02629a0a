"""Verifiers: async, batch-first judges of candidates, plus a registry to name them in specs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tts_graph._lazy import lazy_exports

if TYPE_CHECKING:
    from tts_graph.verifiers.answer import extract_answer, normalize_answer
    from tts_graph.verifiers.base import Problem, Verdict, Verifier
    from tts_graph.verifiers.code import CodeTests, CodeVerifier, extract_code
    from tts_graph.verifiers.judge import LLMJudge, Preference
    from tts_graph.verifiers.math import (
        ExactMatchVerifier,
        MathVerifier,
        NumericVerifier,
        RegexVerifier,
    )
    from tts_graph.verifiers.registry import (
        FunctionVerifier,
        available_verifiers,
        create_verifier,
        register_verifier,
    )
    from tts_graph.verifiers.reward import OutcomeRewardVerifier, ProcessRewardVerifier
    from tts_graph.verifiers.sandbox import SandboxLimits, run_python

__all__ = [
    "CodeTests",
    "CodeVerifier",
    "ExactMatchVerifier",
    "FunctionVerifier",
    "LLMJudge",
    "MathVerifier",
    "NumericVerifier",
    "OutcomeRewardVerifier",
    "Preference",
    "Problem",
    "ProcessRewardVerifier",
    "RegexVerifier",
    "SandboxLimits",
    "Verdict",
    "Verifier",
    "available_verifiers",
    "create_verifier",
    "extract_answer",
    "extract_code",
    "normalize_answer",
    "register_verifier",
    "run_python",
]

# Imported on first use: the registry (the CLI checks a verifier's name with it) and the light
# modules must not pay for math-verify's sympy, the sandbox or the HTTP clients.
_V = "tts_graph.verifiers."
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "extract_answer": _V + "answer",
        "normalize_answer": _V + "answer",
        "Problem": _V + "base",
        "Verdict": _V + "base",
        "Verifier": _V + "base",
        "CodeTests": _V + "code",
        "CodeVerifier": _V + "code",
        "extract_code": _V + "code",
        "LLMJudge": _V + "judge",
        "Preference": _V + "judge",
        "ExactMatchVerifier": _V + "math",
        "MathVerifier": _V + "math",
        "NumericVerifier": _V + "math",
        "RegexVerifier": _V + "math",
        "FunctionVerifier": _V + "registry",
        "available_verifiers": _V + "registry",
        "create_verifier": _V + "registry",
        "register_verifier": _V + "registry",
        "OutcomeRewardVerifier": _V + "reward",
        "ProcessRewardVerifier": _V + "reward",
        "SandboxLimits": _V + "sandbox",
        "run_python": _V + "sandbox",
    },
)

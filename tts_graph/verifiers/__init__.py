"""Verifiers: async, batch-first judges of candidates, plus a registry to name them in specs."""

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

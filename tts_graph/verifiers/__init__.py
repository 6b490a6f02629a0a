"""Verifiers: async, batch-first judges of candidates."""

from tts_graph.verifiers.base import Problem, Verdict, Verifier

__all__ = ["Problem", "Verdict", "Verifier"]

"""Plugins loaded by the vLLM server process (never imported by the library itself)."""

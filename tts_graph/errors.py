"""Error types.

Two families, as in pydantic-ai: :class:`ConfigError` means "you configured it wrong" and is
raised at build time with the valid choices listed; :class:`BackendError` is a runtime failure of
the model server, classified as retryable or not. Every message says what was wrong and what would
be right, so the CLI can print it as one line.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BudgetExhausted",
    "ConfigError",
    "EngineDeadError",
    "ServerStartError",
    "TTSGraphError",
]


class TTSGraphError(Exception):
    """Root of every error this library raises on purpose."""


class ConfigError(TTSGraphError, ValueError):
    """A bad option, spec, budget or input, detected before any work is done."""


class BackendError(TTSGraphError):
    """The model server failed to answer a request.

    ``retryable`` says whether the same request may succeed later (connection errors, timeouts,
    429 and 5xx) or never will (4xx: the request itself is wrong). ``status`` is the HTTP status
    when there was one.
    """

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class EngineDeadError(BackendError):
    """The server is up but its engine has died: every request will fail until it restarts."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, retryable=False, status=status)


class ServerStartError(TTSGraphError):
    """A vLLM server could not be started (vLLM missing, port in use, crash during start-up)."""


class BudgetExhausted(TTSGraphError):
    """The budget ran out and graceful finishing was switched off (``Budget(strict=True)``)."""

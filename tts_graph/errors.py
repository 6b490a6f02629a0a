"""Error types.

Two families, as in pydantic-ai: :class:`ConfigError` means "you configured it wrong" and is
raised at build time with the valid choices listed; :class:`BackendError` is a runtime failure of
the model server, classified as retryable or not. Every message says what was wrong and what would
be right, so the CLI can print it as one line.
"""

from __future__ import annotations

from typing import Any, get_args

__all__ = [
    "BackendError",
    "BudgetExhausted",
    "ConfigError",
    "EngineDeadError",
    "ServerStartError",
    "TTSGraphError",
    "check_choice",
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

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only fields are not in ``args``: pickle (process pools, checkpoints) needs them.
        return (
            _rebuild,
            (type(self), str(self), {"retryable": self.retryable, "status": self.status}),
        )


class EngineDeadError(BackendError):
    """The server is up but its engine has died: every request will fail until it restarts."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message, retryable=False, status=status)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), {"status": self.status}))


class ServerStartError(TTSGraphError):
    """A vLLM server could not be started (vLLM missing, port in use, crash during start-up)."""


class BudgetExhausted(TTSGraphError):
    """A request does not fit what is left of the run's budget.

    ``limit`` names the limit that refused it: ``"calls"``, ``"total tokens"``,
    ``"completion tokens"``, ``"flops"`` or ``"wall time"``. Nodes catch it and finish with the
    best answer so far, recording ``limit`` as the reason; with ``Budget(strict=True)`` they let
    it propagate, so the run fails instead of finishing early.
    """

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), str(self), {"limit": self.limit}))


def _rebuild(cls: type[TTSGraphError], message: str, kwargs: dict[str, Any]) -> TTSGraphError:
    return cls(message, **kwargs)


def check_choice(option: str, value: object, choices: object) -> None:
    """Raise :class:`ConfigError` unless ``value`` is one of the ``Literal`` type ``choices``;
    the message lists them (options are checked against their types, not hand-copied lists).

    >>> from typing import Literal
    >>> check_choice("mode", "swiss", Literal["knockout", "league"])
    Traceback (most recent call last):
    ...
    tts_graph.errors.ConfigError: unknown mode 'swiss'; choose one of: knockout, league
    """
    allowed = get_args(choices)
    if value not in allowed:
        listed = ", ".join(str(a) for a in allowed)
        raise ConfigError(f"unknown {option} {value!r}; choose one of: {listed}")

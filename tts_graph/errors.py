"""Error types.

Two families, as in pydantic-ai: :class:`ConfigError` means "you configured it wrong" and is
raised at build time with the valid choices listed; :class:`BackendError` is a runtime failure of
the model server, classified as retryable or not. Every message says what was wrong and what would
be right, so the CLI can print it as one line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, get_args

__all__ = [
    "MAX_SAMPLES",
    "BackendError",
    "BudgetExhausted",
    "ConfigError",
    "EngineDeadError",
    "ServerStartError",
    "TTSGraphError",
    "check_choice",
    "check_count",
    "check_utf8",
    "show_value",
]

MAX_SAMPLES = 1024
"""The most samples (``n``, ``max_samples``, runs of a nested strategy) one node may ask for.
A count above it is a mistake, not a plan: it is refused when the graph is built, before
anything is allocated or sent."""


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
        raise ConfigError(f"unknown {option} {show_value(value)}; choose one of: {listed}")


def check_count(option: str, value: object, *, minimum: int = 1, maximum: int = MAX_SAMPLES) -> int:
    """Return ``value`` when it is an integer from ``minimum`` to ``maximum``, else raise
    :class:`ConfigError` naming the option and the valid range (a count is checked when a
    graph is built, so a huge one is refused before anything is allocated or sent).

    >>> check_count("n", 10**9)
    Traceback (most recent call last):
    ...
    tts_graph.errors.ConfigError: n must be >= 1 and <= 1024, got 1000000000
    """
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise ConfigError(
            f"{option} must be >= {minimum} and <= {maximum}, got {show_value(value)}"
        )
    return value


def show_value(value: object, width: int = 80) -> str:
    """``value`` as an error message shows it: its ``repr``, cut to ``width`` characters, for
    any value (an int too long to write in decimal, an object whose ``repr`` fails).

    >>> show_value(16**5000)
    'a number of 6021 digits'
    >>> show_value("x" * 100, width=10)
    "'xxxxxxxx…"
    """
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        # Python will not write an int of over 4300 digits (repr raises), and a long one cut
        # short would read as another number: say how long it is instead.
        digits = math.floor(math.log10(abs(value))) + 1
        return f"a {'negative ' if value < 0 else ''}number of {digits} digits"
    try:
        text = repr(value)
    except Exception:  # a value's own repr may fail; the error being reported matters more
        return f"a {type(value).__name__}"
    return text if len(text) <= width else text[: width - 1] + "…"


def check_utf8(value: Any, what: str) -> None:
    """Raise :class:`~tts_graph.errors.ConfigError` when a string in ``value`` (a string, or
    mappings and lists of them, as chat messages are) cannot be sent as UTF-8: it holds a lone
    surrogate, which is what text decoded with ``errors="surrogateescape"`` or cut inside a
    surrogate pair looks like. The message names where (``what`` and the path inside it).

    >>> check_utf8([{"role": "user", "content": "caf\\udce9"}], "the request's messages")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    tts_graph.errors.ConfigError: the request's messages[0].content is not valid UTF-8 text: ...
    """
    found = _lone_surrogate(value, what)
    if found is None:
        return
    where, text, at = found
    shown = (
        text[max(0, at - 20) : at + 20]
        .encode("utf-8", "backslashreplace")
        .decode("ascii", "backslashreplace")
    )
    raise ConfigError(
        f"{where} is not valid UTF-8 text: it holds a lone surrogate "
        f"{text[at].encode('utf-8', 'backslashreplace').decode()} at character {at} "
        f"(...{shown}...), the mark of bytes that are not UTF-8 (decoded with "
        "errors='surrogateescape') or of text cut inside a character; give it as UTF-8 text "
        "(bytes.decode('utf-8', errors='replace') keeps the rest)"
    )


def _lone_surrogate(value: Any, where: str) -> tuple[str, str, int] | None:
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return where, value, exc.start
        return None
    if isinstance(value, Mapping):
        items: Any = ((f"{where}.{k}", v) for k, v in value.items())
    elif isinstance(value, list | tuple):
        items = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        return None
    for path, item in items:
        if (found := _lone_surrogate(item, path)) is not None:
            return found
    return None

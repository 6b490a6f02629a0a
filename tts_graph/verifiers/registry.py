"""Verifiers by name, for specs and the CLI; register your own with :func:`register_verifier`.

A verifier is either a class with an async ``verify(problem, candidates)`` or a plain function
``fn(problem, candidate)`` (sync or async) returning a bool, a float score in [0, 1] or a
:class:`Verdict`; :class:`FunctionVerifier` adapts the function, and turns anything it raises
into a failed verdict.

Every verifier built here takes ``call_timeout_s``: how long one call to it may take (see
:func:`~tts_graph.verifiers.base.call_timeout`), e.g. ``verifier: {name: judge, call_timeout_s:
60}`` in a spec.

``"code"`` isolates candidates with bubblewrap and refuses to build without it (saying how to
install it): no default here picks its unisolated ``sandbox="unsafe-subprocess"``, which only an
option that names it selects.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from tts_graph.errors import ConfigError
from tts_graph.verifiers.base import (
    DEFAULT_CALL_TIMEOUT_S,
    Problem,
    Verdict,
    Verifier,
    check_call_timeout,
)

__all__ = [
    "FunctionVerifier",
    "available_verifiers",
    "create_verifier",
    "register_verifier",
]

CheckFn = Callable[[Problem, str], "bool | float | Verdict | Awaitable[bool | float | Verdict]"]
VerifierFactory = Callable[..., Verifier]

_T = TypeVar("_T")


async def _in_daemon_thread(fn: Callable[..., _T], *args: Any) -> _T:
    """``fn(*args)`` in a thread of its own, awaited. Unlike ``asyncio.to_thread``, a call that
    never returns, abandoned when its check times out, holds no worker of the loop's shared
    executor and does not keep the interpreter from exiting (the thread is a daemon)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()
    context = contextvars.copy_context()

    def deliver(result: Any, error: BaseException | None) -> None:
        if future.done():  # cancelled: nobody waits for it any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def work() -> None:
        try:
            result, error = context.run(fn, *args), None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
            loop.call_soon_threadsafe(deliver, result, error)

    threading.Thread(target=work, name="tts-graph-check", daemon=True).start()
    return await future


class FunctionVerifier:
    """Wrap ``fn(problem, candidate) -> bool | float | Verdict`` (sync or async) as a verifier.

    Sync functions run in threads of their own so a slow check does not block the event loop,
    and one that never returns is left behind when ``call_timeout_s`` (one call to
    :meth:`verify`; None: no bound) cuts it short.

    >>> v = FunctionVerifier(lambda problem, text: "12" in text, name="has_12")
    """

    def __init__(
        self,
        fn: CheckFn,
        *,
        name: str | None = None,
        call_timeout_s: float | None = DEFAULT_CALL_TIMEOUT_S,
    ) -> None:
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "function")
        self.call_timeout_s = check_call_timeout(call_timeout_s)

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]:
        return list(await asyncio.gather(*(self._one(problem, c) for c in candidates)))

    async def _one(self, problem: Problem, candidate: str) -> Verdict:
        try:
            if inspect.iscoroutinefunction(self.fn):
                out = await self.fn(problem, candidate)
            else:
                out = await _in_daemon_thread(self.fn, problem, candidate)
                if inspect.isawaitable(out):
                    out = await out
        except Exception as exc:
            return Verdict.failure(f"{self.name} raised {type(exc).__name__}: {exc}")
        if isinstance(out, Verdict):
            return out
        if isinstance(out, bool):
            return Verdict(passed=out, score=float(out), reason=f"{self.name} returned {out}")
        if isinstance(out, int | float):
            return Verdict(passed=None, score=float(out), reason=f"{self.name} scored {out:g}")
        return Verdict.failure(
            f"{self.name} returned {type(out).__name__}; return a bool, a float or a Verdict"
        )


def _builtin(module: str, cls: str) -> VerifierFactory:
    def factory(**options: Any) -> Verifier:
        mod = __import__(f"tts_graph.verifiers.{module}", fromlist=[cls])
        verifier: Verifier = getattr(mod, cls)(**options)
        return verifier

    factory.__name__ = cls
    return factory


_REGISTRY: dict[str, VerifierFactory] = {
    "math": _builtin("math", "MathVerifier"),
    "exact": _builtin("math", "ExactMatchVerifier"),
    "numeric": _builtin("math", "NumericVerifier"),
    "regex": _builtin("math", "RegexVerifier"),
    "code": _builtin("code", "CodeVerifier"),
    "judge": _builtin("judge", "LLMJudge"),
    "prm": _builtin("reward", "ProcessRewardVerifier"),
    "orm": _builtin("reward", "OutcomeRewardVerifier"),
}


def register_verifier(
    name: str, verifier: VerifierFactory | CheckFn | None = None, *, replace: bool = False
) -> Any:
    """Register a verifier class/factory or a check function under ``name``.

    Usable directly or as a decorator::

        @register_verifier("contains_answer")
        def contains_answer(problem, candidate):
            return str(problem.reference) in candidate
    """

    def add(obj: Any) -> Any:
        if not name or not name.isidentifier():
            raise ConfigError(f"a verifier name must be an identifier, got {name!r}")
        if name in _REGISTRY and not replace:
            raise ConfigError(
                f"a verifier named {name!r} is already registered; pass replace=True to override"
            )
        if inspect.isclass(obj):
            _REGISTRY[name] = cast(VerifierFactory, obj)
        elif callable(obj):
            params = [
                p
                for p in inspect.signature(obj).parameters.values()
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            if len(params) == 2:  # a check function (problem, candidate)
                _REGISTRY[name] = cast(
                    VerifierFactory, lambda **options: FunctionVerifier(obj, name=name, **options)
                )
            else:  # a factory taking options
                _REGISTRY[name] = obj
        else:
            raise ConfigError(f"cannot register {obj!r}: give a class, a factory or a function")
        return obj

    return add if verifier is None else add(verifier)


def available_verifiers() -> list[str]:
    """Names that :func:`create_verifier` accepts."""
    return sorted(_REGISTRY)


def create_verifier(name: str, **options: Any) -> Verifier:
    """Build the verifier registered as ``name`` with ``options``.

    ``call_timeout_s`` (any verifier): how long one call to it may take, retries included
    (None: no bound; see :func:`~tts_graph.verifiers.base.call_timeout`).

    >>> create_verifier("numeric").name
    'numeric'
    >>> create_verifier("numeric", call_timeout_s=30).call_timeout_s
    30.0
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown verifier {name!r}; choose one of: {', '.join(available_verifiers())}"
        ) from None
    timed = "call_timeout_s" in options
    limit = check_call_timeout(options.pop("call_timeout_s", None))
    try:
        verifier = factory(**options)
    except TypeError as exc:
        raise ConfigError(f"bad options for verifier {name!r}: {exc}") from exc
    if timed:
        try:
            verifier.call_timeout_s = limit  # type: ignore[attr-defined]
        except AttributeError:  # a frozen dataclass or __slots__: carry the bound outside it
            verifier = _TimeBound(verifier, limit)
    return verifier


class _TimeBound:
    """A verifier whose class cannot carry ``call_timeout_s`` (a frozen dataclass, say), with
    one: everything else is the wrapped verifier's."""

    def __init__(self, verifier: Verifier, call_timeout_s: float | None) -> None:
        self.verifier = verifier
        self.name = verifier.name
        self.call_timeout_s = call_timeout_s

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]:
        return await self.verifier.verify(problem, candidates)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.verifier, attr)

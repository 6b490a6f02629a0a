r"""Math answer verifiers: symbolic equivalence with math-verify, plus simple string/number checks.

:class:`MathVerifier` extracts each candidate's final answer (:func:`~.answer.extract_answer`) and
asks math-verify whether it equals the gold answer, so ``0.5``, ``1/2`` and ``\frac{1}{2}`` all
pass against a gold ``\frac12``. Checks run in a process pool: math-verify's own timeout uses
``signal.alarm``, which works only in a main thread, and a pathological expression can hang sympy
in C code where no signal reaches it; a worker process can be killed, a thread cannot.

:class:`ExactMatchVerifier`, :class:`RegexVerifier` and :class:`NumericVerifier` are for tasks
where an equivalence check is overkill; they run inline.

>>> import asyncio
>>> from tts_graph.verifiers.base import Problem
>>> verdicts = asyncio.run(NumericVerifier().verify(Problem("7+5?", "12"), ["12.0", "13"]))
>>> [v.passed for v in verdicts]
[True, False]
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import os
import pickle
import re
import signal
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future as ConcurrentFuture
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import KW_ONLY, dataclass, field
from fractions import Fraction
from types import FrameType, TracebackType
from typing import Any, Literal, Protocol, Self

import math_verify  # type: ignore[import-untyped]
import math_verify.grader  # type: ignore[import-untyped]
import math_verify.parser  # type: ignore[import-untyped]

from tts_graph.errors import ConfigError
from tts_graph.verifiers.answer import (
    AnswerExtractor,
    canonical_number,
    extract_answer,
    normalize_answer,
    parse_number,
)
from tts_graph.verifiers.base import Problem, Verdict

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "EquivalenceCheck",
    "ExactMatchVerifier",
    "MathVerifier",
    "NumericVerifier",
    "RegexVerifier",
    "math_equal",
]

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
"""Default limit, in seconds, for one equivalence check (parsing both answers and comparing)."""

# After a check times out in the parent, how long its worker may take to notice its own timer
# before the pool is judged stuck and killed.
_GRACE_S = 1.0

# math_equal times the whole check itself (one timer instead of one per parse and per comparison),
# so math-verify's timers are off; this silences its one-off "timeout is disabled" warning.
math_verify.parser.TIMEOUT_WARNING_SHOWN = True
math_verify.grader.TIMEOUT_WARNING_SHOWN = True


class EquivalenceCheck(Protocol):
    """The check a :class:`MathVerifier` runs in its workers; :func:`math_equal` is the default.

    It must be picklable (a module-level function), return whether ``pred`` equals ``gold`` and
    raise ``TimeoutError`` when it gives up after ``timeout_s``.

    >>> def same_text(gold: str, pred: str, *, timeout_s: float | None) -> bool:
    ...     return gold.strip() == pred.strip()
    >>> check: EquivalenceCheck = same_text
    """

    def __call__(self, gold: str, pred: str, *, timeout_s: float | None) -> bool: ...


class _CheckTimeout(BaseException):
    """Raised by the timer; a BaseException so math-verify's ``except Exception`` can't eat it."""


def _on_timer(signum: int, frame: FrameType | None) -> None:
    raise _CheckTimeout


_DELIMITERS = ("$", "\\(", "\\[", "\\boxed")


def _as_latex(answer: str) -> str:
    """What math-verify parses reliably: numbers written out, bare LaTeX inside ``$...$``."""
    text = answer.strip().replace("\\$", "")  # a currency sign makes its parser give up
    number = canonical_number(text)
    if number is not None:  # it reads "1.5e3" as 1.5*e*3
        return f"${number}$"
    if any(delimiter in text for delimiter in _DELIMITERS):
        return text
    return f"${text}$"  # bare "1+i" would be parsed from its plain-text fallback, wrongly


def math_equal(gold: str, pred: str, *, timeout_s: float | None = DEFAULT_TIMEOUT_S) -> bool:
    r"""Whether answer ``pred`` is mathematically equivalent to ``gold`` (math-verify, gold first).

    Both are answers, not whole replies: bare LaTeX is wrapped in ``$...$`` before parsing.
    The timer (``timeout_s``; None disables it) uses ``SIGALRM`` and so works only in a main
    thread; elsewhere the check runs untimed. On timeout it raises ``TimeoutError``.
    An answer that cannot be parsed is simply not equal. Answers with the same
    :func:`~.answer.normalize_answer` key are equal without asking math-verify.

    >>> math_equal("1/2", "0.5"), math_equal(r"\frac{\sqrt{2}}{2}", r"\sqrt{2}/2")
    (True, True)
    >>> math_equal("1/3", "0.33")
    False
    """
    key = normalize_answer(gold)
    if key and key == normalize_answer(pred):  # same spelling: skip milliseconds of sympy
        return True
    clear_cut = _numbers_clearly_compare(gold, pred)
    if clear_cut is not None:  # two plain numbers: exact arithmetic, no parser needed
        return clear_cut
    main_thread = threading.current_thread() is threading.main_thread()
    timer = timeout_s if timeout_s is not None and timeout_s > 0 and main_thread else None
    if timer is None:
        return _math_verify_equal(gold, pred)
    # Borrow SIGALRM and hand it back as found: the host (pytest-timeout, say) may be using it.
    previous_handler = signal.signal(signal.SIGALRM, _on_timer)
    previous_timer, started = signal.setitimer(signal.ITIMER_REAL, timer), time.monotonic()
    try:
        try:
            return _math_verify_equal(gold, pred)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _CheckTimeout:
        raise TimeoutError(f"math check took longer than {timeout_s:g} s") from None
    finally:
        signal.signal(
            signal.SIGALRM, previous_handler if previous_handler is not None else signal.SIG_DFL
        )
        if previous_timer[0] > 0:
            remaining = max(previous_timer[0] - (time.monotonic() - started), 1e-6)
            signal.setitimer(signal.ITIMER_REAL, remaining, previous_timer[1])


def _numbers_clearly_compare(gold: str, pred: str) -> bool | None:
    """For two plain numbers (integers, decimals, integer fractions): True when equal, False
    when they differ by more than 1e-4 relative, which math-verify (rounding floats to six
    places) also calls unequal; None otherwise, leaving near-misses and everything else
    (percentages, expressions) to math-verify."""
    if "%" in gold or "%" in pred:  # math-verify reads 50% as both 50 and 0.5
        return None
    a, b = parse_number(gold), parse_number(pred)
    if a is None or b is None:
        return None
    if a == b:
        return True
    if abs(a - b) > Fraction(1, 10_000) * max(abs(a), abs(b), Fraction(1)):
        return False
    return None


def _math_verify_equal(gold: str, pred: str) -> bool:
    gold_parsed = math_verify.parse(_as_latex(gold), parsing_timeout=None)
    pred_parsed = math_verify.parse(_as_latex(pred), parsing_timeout=None)
    return bool(math_verify.verify(gold_parsed, pred_parsed, timeout_seconds=None))


def _warm_up() -> None:
    # Runs once per worker: the first check would otherwise pay for importing and priming sympy.
    math_equal("1/2", "0.5", timeout_s=None)


def _noop() -> None:
    pass


def _retrieve(future: asyncio.Future[Any]) -> None:
    # Abandoned futures: fetch the outcome so asyncio does not log "exception never retrieved".
    if not future.cancelled():
        future.exception()


class MathVerifier:
    r"""Checks each candidate's final answer against ``problem.reference`` with math-verify.

    One verdict per candidate: passed with score 1.0 when equivalent, failed with 0.0 when not or
    when no final answer was found; a check that times out (``timeout_s``) or crashes its worker
    is a failed verdict saying so. Without a reference, verdicts have ``passed=None``.

    Checks run in a lazily started pool of ``max_workers`` processes (``"forkserver"`` where
    available, else ``"spawn"``; never ``"fork"``, which is unsafe in a process with threads),
    shared by every call; identical answers in one batch are checked once. A pool whose worker
    died is replaced, and one whose worker is stuck past its timeout is killed and replaced.
    Close it with :meth:`close` or ``async with``.

    >>> import asyncio
    >>> from tts_graph.verifiers.base import Problem
    >>> async def main() -> list[bool | None]:
    ...     async with MathVerifier(max_workers=1) as verifier:
    ...         verdicts = await verifier.verify(
    ...             Problem("What is 3/4 as a decimal?", reference="3/4"),
    ...             [r"So it is \boxed{0.75}.", "Answer: 0.7"],
    ...         )
    ...     return [v.passed for v in verdicts]
    >>> asyncio.run(main())
    [True, False]
    """

    name = "math"

    def __init__(
        self,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_workers: int | None = None,
        extractor: AnswerExtractor = extract_answer,
        check: EquivalenceCheck = math_equal,
        start_method: Literal["forkserver", "spawn"] | None = None,
        startup_timeout_s: float = 120.0,
    ) -> None:
        methods = [
            m for m in ("forkserver", "spawn") if m in multiprocessing.get_all_start_methods()
        ]
        if start_method is not None and start_method not in methods:
            raise ConfigError(f"start_method must be one of {methods}, got {start_method!r}")
        if not timeout_s > 0 or not startup_timeout_s > 0:
            raise ConfigError("timeout_s and startup_timeout_s must be > 0")
        if max_workers is not None and max_workers < 1:
            raise ConfigError(f"max_workers must be >= 1, got {max_workers}")
        try:
            pickle.dumps(check)
        except Exception as exc:
            raise ConfigError(
                f"check runs in a worker process and must be picklable (a module-level "
                f"function); {check!r} is not: {exc}"
            ) from exc
        self.timeout_s = timeout_s
        self.max_workers = max_workers or min(4, os.cpu_count() or 1)
        self.startup_timeout_s = startup_timeout_s
        self._extractor = extractor
        self._check = check
        self._context = multiprocessing.get_context(start_method or methods[0])
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._ready: list[ConcurrentFuture[None]] = []
        # Bounds checks in flight to the number of workers, so a check's timer starts when a
        # worker takes it rather than while it waits in the pool's queue. One per event loop
        # because an asyncio.Semaphore belongs to the loop that first waits on it.
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    def close(self) -> None:
        """Shut the worker pool down and wait for it. The verifier stays usable: a later
        :meth:`verify` starts a new pool."""
        with self._lock:
            pool, self._pool, self._ready = self._pool, None, []
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]:
        """One verdict per candidate, in order; never raises for a bad candidate."""
        gold = problem.reference
        if gold is None or not str(gold).strip():
            reason = "no gold answer given (problem.reference is empty)"
            return [Verdict(passed=None, score=0.0, reason=reason) for _ in candidates]
        gold = str(gold)
        answers: list[str | Exception | None] = []
        for candidate in candidates:
            try:
                answers.append(self._extractor(candidate))
            except Exception as exc:
                answers.append(exc)
        distinct = list(dict.fromkeys(a for a in answers if isinstance(a, str)))
        outcomes = await asyncio.gather(*(self._run_check(gold, a) for a in distinct))
        by_answer = dict(zip(distinct, outcomes, strict=True))
        verdicts: list[Verdict] = []
        for answer in answers:
            if isinstance(answer, Exception):
                verdicts.append(Verdict.failure(f"answer extraction raised {answer!r}"))
            elif answer is None:
                verdicts.append(Verdict.failure("no final answer found"))
            else:
                verdicts.append(_verdict(gold, answer, by_answer[answer]))
        return verdicts

    async def _run_check(self, gold: str, answer: str) -> bool | str:
        """True/False, or the reason the check failed."""
        loop = asyncio.get_running_loop()
        with self._lock:
            slots = self._slots.setdefault(loop, asyncio.Semaphore(self.max_workers))
        async with slots:
            try:
                outcome = await self._attempt(await self._shared_pool(), gold, answer)
                if outcome is None:
                    # Every check in flight on a dead pool sees it break, not only the culprit:
                    # retry alone in a fresh process, where only the culprit dies again.
                    logger.warning("math worker pool broke; retrying %r in isolation", answer)
                    pool = ProcessPoolExecutor(1, mp_context=self._context, initializer=_warm_up)
                    try:
                        await self._wait_ready(pool, [pool.submit(_noop)])
                        outcome = await self._attempt(pool, gold, answer)
                    finally:
                        pool.shutdown(wait=False, cancel_futures=True)
            except Exception as exc:
                return f"math worker pool failed to start: {exc!r}"
        return "math check crashed its worker process" if outcome is None else outcome

    async def _attempt(
        self, pool: ProcessPoolExecutor, gold: str, answer: str
    ) -> bool | str | None:
        """Run one check on ``pool``: True/False, a failure reason, or None if the pool broke."""
        try:
            cf_future = pool.submit(self._check, gold, answer, timeout_s=self.timeout_s)
        except (BrokenProcessPool, RuntimeError):  # it broke idle, or a concurrent check retired it
            self._discard(pool, kill=False)
            return None
        future = asyncio.wrap_future(cf_future)
        future.add_done_callback(_retrieve)  # we may stop waiting for it
        try:
            done, _ = await asyncio.wait({future}, timeout=self.timeout_s)
            if not done:
                await self._reap_if_stuck(pool, future)
                return f"math check timed out after {self.timeout_s:g} s"
            return bool(future.result())
        except BrokenProcessPool:
            self._discard(pool, kill=False)
            return None
        except TimeoutError:  # the worker's own timer
            return f"math check timed out after {self.timeout_s:g} s"
        except Exception as exc:
            return f"math check raised {exc!r}"
        finally:
            cf_future.cancel()  # no-op unless we were cancelled before a worker took it

    async def _shared_pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.max_workers, mp_context=self._context, initializer=_warm_up
                )
                # Workers start on demand; one no-op per worker starts them all now, so start-up
                # (importing sympy) is not charged to the first checks' timeouts.
                self._ready = [self._pool.submit(_noop) for _ in range(self.max_workers)]
                logger.debug("started a math worker pool of %d", self.max_workers)
            pool, ready = self._pool, self._ready
        await self._wait_ready(pool, ready)
        return pool

    async def _wait_ready(
        self, pool: ProcessPoolExecutor, ready: list[ConcurrentFuture[None]]
    ) -> None:
        try:
            # asyncio.wait, not wait_for: a cancelled caller must not cancel the shared start-up.
            waiting = [asyncio.wrap_future(f) for f in ready if not f.done()]
            for future in waiting:
                future.add_done_callback(_retrieve)
            if waiting:
                _, late = await asyncio.wait(waiting, timeout=self.startup_timeout_s)
                if late:
                    raise TimeoutError(f"workers not ready after {self.startup_timeout_s:g} s")
            for f in ready:
                f.result()
        except Exception:
            self._discard(pool, kill=True)
            raise

    async def _reap_if_stuck(self, pool: ProcessPoolExecutor, future: asyncio.Future[Any]) -> None:
        try:
            await asyncio.wait({future}, timeout=_GRACE_S)
        except asyncio.CancelledError:
            self._discard(pool, kill=True)  # nobody will be left to reap it
            raise
        if not future.done():
            logger.warning(
                "math check still running %.1f s past its timeout; killing its worker pool",
                _GRACE_S,
            )
            self._discard(pool, kill=True)

    def _discard(self, pool: ProcessPoolExecutor, *, kill: bool) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool, self._ready = None, []
        if kill:
            # No public way to kill a pool's workers before Python 3.14's kill_workers().
            for process in list((getattr(pool, "_processes", None) or {}).values()):
                process.kill()
        pool.shutdown(wait=False, cancel_futures=True)


def _verdict(gold: str, answer: str, outcome: bool | str) -> Verdict:
    if isinstance(outcome, str):
        return Verdict.failure(outcome, extracted=answer, gold=gold)
    details = {"extracted": answer, "gold": gold}
    if outcome:
        return Verdict(
            True, 1.0, f"extracted {answer!r} is equivalent to gold {gold!r}", details=details
        )
    return Verdict(
        False, 0.0, f"extracted {answer!r} is not equivalent to gold {gold!r}", details=details
    )


def _judge_each(
    candidates: Sequence[str], judge: Callable[[str], Verdict], name: str
) -> list[Verdict]:
    verdicts: list[Verdict] = []
    for candidate in candidates:
        try:
            verdicts.append(judge(candidate))
        except Exception as exc:
            verdicts.append(Verdict.failure(f"{name} verifier raised {exc!r}"))
    return verdicts


def _no_reference(candidates: Sequence[str], what: str) -> list[Verdict]:
    return [Verdict(passed=None, score=0.0, reason=f"no {what} given") for _ in candidates]


def _graded(passed: bool, reason: str, **details: Any) -> Verdict:
    return Verdict(passed, 1.0 if passed else 0.0, reason, details=details)


@dataclass(frozen=True)
class ExactMatchVerifier:
    """Passes when the normalised final answer equals the normalised reference.

    Both sides go through :func:`~.answer.normalize_answer` (so ``"12.0"`` matches ``"12"``).
    When the extractor finds nothing, the whole reply is the answer (a bare ``"Paris"``).

    >>> import asyncio
    >>> from tts_graph.verifiers.base import Problem
    >>> verifier = ExactMatchVerifier(ignore_case=True)
    >>> [v.passed for v in asyncio.run(verifier.verify(Problem("?", "Paris"), ["Answer: paris", "Rome"]))]
    [True, False]
    """

    _: KW_ONLY
    extractor: AnswerExtractor = extract_answer
    ignore_case: bool = False
    name = "exact_match"

    def _key(self, text: str) -> str:
        key = normalize_answer(text)
        return key.casefold() if self.ignore_case else key

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]:
        """One verdict per candidate, in order; never raises for a bad candidate."""
        if problem.reference is None:
            return _no_reference(candidates, "reference answer")
        gold = str(problem.reference)

        def judge(candidate: str) -> Verdict:
            answer = self.extractor(candidate) or candidate.strip()
            passed = self._key(answer) == self._key(gold)
            verb = "matches" if passed else "does not match"
            return _graded(passed, f"answer {answer!r} {verb} {gold!r}", extracted=answer)

        return _judge_each(candidates, judge, self.name)


@dataclass(frozen=True)
class RegexVerifier:
    r"""Passes when a regular expression matches the final answer (whole) or the reply (anywhere).

    ``on="answer"`` (default) full-matches the extracted answer; ``on="text"`` searches the whole
    reply. Without ``pattern``, each problem's ``reference`` is the pattern.

    >>> import asyncio
    >>> from tts_graph.verifiers.base import Problem
    >>> verifier = RegexVerifier(r"-?\d+")
    >>> [v.passed for v in asyncio.run(verifier.verify(Problem("?"), ["Answer: 42", "Answer: x"]))]
    [True, False]
    """

    pattern: str | re.Pattern[str] | None = None
    _: KW_ONLY
    on: Literal["answer", "text"] = "answer"
    flags: int = 0
    extractor: AnswerExtractor = extract_answer
    _compiled: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    name = "regex"

    def __post_init__(self) -> None:
        if self.on not in ("answer", "text"):
            raise ConfigError(f"on must be 'answer' or 'text', got {self.on!r}")
        try:
            pattern = self.pattern
            compiled = (
                pattern
                if pattern is None or isinstance(pattern, re.Pattern)
                else re.compile(pattern, self.flags)
            )
        except re.error as exc:
            raise ConfigError(f"invalid pattern {self.pattern!r}: {exc}") from exc
        object.__setattr__(self, "_compiled", compiled)

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]:
        """One verdict per candidate, in order; never raises for a bad candidate."""
        compiled = self._compiled
        if compiled is None:
            if problem.reference is None:
                return _no_reference(
                    candidates, "pattern (neither RegexVerifier.pattern nor reference)"
                )
            try:
                compiled = re.compile(str(problem.reference), self.flags)
            except re.error as exc:
                return [Verdict.failure(f"invalid pattern in reference: {exc}") for _ in candidates]
        regex = compiled

        def judge(candidate: str) -> Verdict:
            if self.on == "text":
                passed = regex.search(candidate) is not None
                return _graded(
                    passed,
                    f"pattern {regex.pattern!r} {'found' if passed else 'not found'} in the reply",
                )
            answer = self.extractor(candidate)
            if answer is None:
                return Verdict.failure("no final answer found")
            passed = regex.fullmatch(answer) is not None
            verb = "matches" if passed else "does not match"
            return _graded(
                passed, f"answer {answer!r} {verb} pattern {regex.pattern!r}", extracted=answer
            )

        return _judge_each(candidates, judge, self.name)


@dataclass(frozen=True)
class NumericVerifier:
    """Passes when the final answer is numerically close to the reference.

    Numbers are read by :func:`~.answer.parse_number` (``"1,234"``, ``"3/4"``, ``"\\frac{3}{4}"``,
    ``"x = 2"``, ``"50%"`` as 50); equal when exactly equal or ``math.isclose`` with ``rel_tol``
    and ``abs_tol``.

    >>> import asyncio
    >>> from tts_graph.verifiers.base import Problem
    >>> verdicts = asyncio.run(NumericVerifier().verify(Problem("?", "0.75"), ["3/4", "0.7"]))
    >>> [v.passed for v in verdicts]
    [True, False]
    """

    _: KW_ONLY
    rel_tol: float = 1e-6
    abs_tol: float = 1e-9
    extractor: AnswerExtractor = extract_answer
    name = "numeric"

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]:
        """One verdict per candidate, in order; never raises for a bad candidate."""
        if problem.reference is None:
            return _no_reference(candidates, "reference number")
        gold = parse_number(str(problem.reference))
        if gold is None:
            reason = f"reference {problem.reference!r} is not a number"
            return [Verdict(passed=None, score=0.0, reason=reason) for _ in candidates]
        target = gold

        def judge(candidate: str) -> Verdict:
            answer = self.extractor(candidate)
            if answer is None:
                return Verdict.failure("no final answer found")
            value = parse_number(answer)
            if value is None:
                return Verdict.failure(f"extracted {answer!r} is not a number", extracted=answer)
            passed = value == target or _isclose(value, target, self.rel_tol, self.abs_tol)
            verb = "equals" if passed else "does not equal"
            return _graded(passed, f"extracted {answer!r} {verb} {target}", extracted=answer)

        return _judge_each(candidates, judge, self.name)


def _isclose(a: Fraction, b: Fraction, rel_tol: float, abs_tol: float) -> bool:
    try:
        return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=abs_tol)
    except OverflowError:  # beyond float range: only exact equality counts
        return False

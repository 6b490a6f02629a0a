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

from tts_graph._loops import LoopLocal
from tts_graph.errors import ConfigError
from tts_graph.verifiers.answer import (
    AnswerExtractor,
    canonical_number,
    extract_answer,
    normalize_answer,
    parse_number,
    resolve_extractor,
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
    """For two numbers (plain, or integer arithmetic such as ``6!`` or ``10^{10^{10}}``): True
    when equal, False when they differ by more than 1e-4 relative, which math-verify (rounding
    floats to six places) also calls unequal; None otherwise, leaving near-misses and
    everything else (percentages, symbolic expressions) to math-verify.

    An integer expression too large to write out (sympy would try, and hang) equals no answer
    of another size and is never handed to math-verify against a symbolic one."""
    if "%" in gold or "%" in pred:  # math-verify reads 50% as both 50 and 0.5
        return None
    a: Fraction | _Huge | None = parse_number(gold)
    b: Fraction | _Huge | None = parse_number(pred)
    a = _integer_expression(gold) if a is None else a
    b = _integer_expression(pred) if b is None else b
    if isinstance(a, _Huge) or isinstance(b, _Huge):
        if isinstance(a, _Huge) and isinstance(b, _Huge):
            return a.equals(b)
        return False
    if a is None or b is None:
        return None
    if a == b:
        return True
    if abs(a - b) > Fraction(1, 10_000) * max(abs(a), abs(b), Fraction(1)):
        return False
    return None


# An integer expression with more digits than this is compared by size, not written out.
_MAX_DIGITS = 4_000  # also below Python's limit for writing an int as a string


@dataclass(frozen=True)
class _Huge:
    """An integer too large to write out, known by its sign and log10 of its size, and exactly
    as ``root ** exponent`` when it is a power of a small integer."""

    log10: float
    negative: bool = False
    power: tuple[int, int] | None = None

    def equals(self, other: _Huge) -> bool | None:
        """False when the two differ; True when both are the same power; None when unknown."""
        if self.negative != other.negative:
            return False
        if self.power is not None and other.power is not None:
            return self.power == other.power
        if math.isinf(self.log10) or math.isinf(other.log10):
            return None
        if abs(self.log10 - other.log10) > 1e-9 * max(self.log10, other.log10):
            return False
        return None


def _smallest_root(n: int) -> tuple[int, int] | None:
    """(r, k) with r**k == n and k as large as possible, for 1 < n < 2**64; else None."""
    if not 1 < n < 2**64:
        return None
    for k in range(n.bit_length(), 1, -1):
        guess = round(math.exp(math.log(n) / k))
        for r in (guess - 1, guess, guess + 1):
            if r > 1 and r**k == n:
                return r, k
    return n, 1


_Number = Fraction | _Huge
_LATEX_FRAC = re.compile(r"\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}")
_ARITHMETIC = re.compile(r"[0-9+\-*/^!().]+")
_DIGITS = re.compile(r"\d+(?:\.\d+)?")
_PLAIN_EQUALS = re.compile(r"(?<![<>!=\\])=(?!=)")


def _integer_expression(text: str) -> _Number | None:
    r"""The value of a number written as integer arithmetic (``+ - * / ^ !``, brackets, LaTeX
    ``^{...}``, ``\cdot``, ``\times``, ``\frac{a}{b}``), or None for anything else (a
    variable, a root, a non-integer power). A value too large to write out is a :class:`_Huge`."""
    s = re.sub(r"\\left|\\right|\\[,;:! ]|\s|\$", "", _PLAIN_EQUALS.split(text)[-1])
    s = s.replace("\\cdot", "*").replace("\\times", "*").replace("\u00d7", "*")
    s = s.replace("\u2212", "-")
    while (frac := _LATEX_FRAC.search(s)) is not None:
        s = s[: frac.start()] + f"(({frac.group(1)})/({frac.group(2)}))" + s[frac.end() :]
    s = s.replace("{", "(").replace("}", ")").replace("**", "^")
    if not s or not _ARITHMETIC.fullmatch(s) or not any(c in s for c in "^!*/+"):
        return None
    try:
        parser = _Arithmetic(s)
        value = parser.expression()
        return value if parser.at_end() else None
    except (ValueError, ZeroDivisionError, OverflowError, RecursionError):
        return None


class _Arithmetic:
    """Recursive descent over ``+ - * / ^ !`` and brackets; ``^`` is right-associative."""

    def __init__(self, text: str) -> None:
        self.text, self.i = text, 0

    def at_end(self) -> bool:
        return self.i == len(self.text)

    def _peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def expression(self) -> _Number:
        value = self._term()
        while self._peek() in ("+", "-"):
            sign = self.text[self.i]
            self.i += 1
            value = _add(value, self._term(), negate=sign == "-")
        return value

    def _term(self) -> _Number:
        value = self._unary()
        while self._peek() in ("*", "/"):
            op = self.text[self.i]
            self.i += 1
            value = _multiply(value, self._unary(), divide=op == "/")
        return value

    def _unary(self) -> _Number:
        if self._peek() == "-":
            self.i += 1
            value = self._unary()
            if isinstance(value, Fraction):
                return -value
            return _Huge(value.log10, not value.negative, value.power)
        return self._power()

    def _power(self) -> _Number:
        base = self._postfix()
        if self._peek() == "^":
            self.i += 1
            return _raise(base, self._unary())
        return base

    def _postfix(self) -> _Number:
        value = self._atom()
        while self._peek() == "!":
            self.i += 1
            value = _factorial(value)
        return value

    def _atom(self) -> _Number:
        if self._peek() == "(":
            self.i += 1
            value = self.expression()
            if self._peek() != ")":
                raise ValueError("unbalanced bracket")
            self.i += 1
            return value
        match = _DIGITS.match(self.text, self.i)
        if match is None:
            raise ValueError(f"expected a number at {self.i}")
        self.i = match.end()
        return Fraction(match.group())


def _add(a: _Number, b: _Number, *, negate: bool) -> _Number:
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a - b if negate else a + b
    if isinstance(a, _Huge) and isinstance(b, _Huge):
        raise ValueError("the sum of two huge numbers may cancel")
    # A written-out term does not move a huge one, but the sum is no longer a pure power.
    if isinstance(a, _Huge):
        return _Huge(a.log10, a.negative)
    assert isinstance(b, _Huge)
    return _Huge(b.log10, b.negative != negate)


def _multiply(a: _Number, b: _Number, *, divide: bool) -> _Number:
    if isinstance(a, Fraction) and isinstance(b, Fraction):
        return a / b if divide else a * b
    if a == 0 or b == 0:
        if divide and b == 0:
            raise ZeroDivisionError
        return Fraction(0)
    log_a, neg_a = _size(a)
    log_b, neg_b = _size(b)
    log10 = log_a - log_b if divide else log_a + log_b
    if log10 <= _MAX_DIGITS:
        raise ValueError("a quotient of huge numbers is not known exactly")
    return _Huge(log10, neg_a != neg_b)


def _size(value: _Number) -> tuple[float, bool]:
    if isinstance(value, _Huge):
        return value.log10, value.negative
    return math.log10(abs(value)), value < 0


def _raise(base: _Number, exponent: _Number) -> _Number:
    if isinstance(exponent, Fraction) and exponent.denominator != 1:
        raise ValueError("a root is not integer arithmetic")
    if isinstance(base, Fraction) and base in (0, 1, -1):
        if isinstance(exponent, Fraction):
            return base ** int(exponent)
        if base == -1 or exponent.negative:
            raise ValueError("the parity or the sign of a huge exponent decides")
        return base
    if isinstance(exponent, _Huge):
        if exponent.negative:
            raise ValueError("a tiny number is not known exactly")
        log_base, negative = _size(base)
        if negative:
            raise ValueError("the sign of a negative base to a huge power is unknown")
        try:
            return _Huge(10**exponent.log10 * log_base)
        except OverflowError:
            return _Huge(math.inf)
    power = int(exponent)
    log_base, negative = _size(base)
    try:
        log10 = power * log_base
    except OverflowError:  # an exponent with hundreds of digits: a size beyond any float
        log10 = math.copysign(math.inf, log_base)
    if isinstance(base, Fraction) and log10 <= _MAX_DIGITS:
        return base**power
    if log10 < -_MAX_DIGITS or power < 0:
        raise ValueError("a tiny number is not known exactly")
    exact = None
    if isinstance(base, Fraction) and base.denominator == 1:
        root = _smallest_root(abs(int(base)))
        exact = (root[0], root[1] * power) if root is not None else None
    elif isinstance(base, _Huge) and base.power is not None:
        exact = (base.power[0], base.power[1] * power)
    return _Huge(log10, negative and power % 2 == 1, exact)


def _factorial(value: _Number) -> _Number:
    if isinstance(value, _Huge):
        return _Huge(math.inf)
    if value.denominator != 1 or value < 0:
        raise ValueError("a factorial needs a natural number")
    n = int(value)
    log10 = math.lgamma(n + 1) / math.log(10)
    return Fraction(math.factorial(n)) if log10 <= _MAX_DIGITS else _Huge(log10)


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
    Close it with :meth:`close` or ``async with``. ``extractor`` is a function or the name of a
    registered one (:func:`~.answer.get_extractor`; ``"boxed"`` for prompts that ask for
    ``\boxed{}``).

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
        extractor: AnswerExtractor | str = extract_answer,
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
        self.extractor = extractor  # graphs read their candidates' answers with it too
        self._extractor = resolve_extractor(extractor)
        self._check = check
        self._context = multiprocessing.get_context(start_method or methods[0])
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None
        self._ready: list[ConcurrentFuture[None]] = []
        # Bounds checks in flight to the number of workers, so a check's timer starts when a
        # worker takes it rather than while it waits in the pool's queue.
        self._slots = LoopLocal(lambda: asyncio.Semaphore(self.max_workers))

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
        async with self._slots.get():
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
    extractor: AnswerExtractor | str = extract_answer
    ignore_case: bool = False
    _extract: AnswerExtractor = field(init=False, repr=False, compare=False)
    name = "exact_match"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_extract", resolve_extractor(self.extractor))

    def _key(self, text: str) -> str:
        key = normalize_answer(text)
        return key.casefold() if self.ignore_case else key

    async def verify(self, problem: Problem, candidates: Sequence[str]) -> list[Verdict]:
        """One verdict per candidate, in order; never raises for a bad candidate."""
        if problem.reference is None:
            return _no_reference(candidates, "reference answer")
        gold = str(problem.reference)

        def judge(candidate: str) -> Verdict:
            answer = self._extract(candidate) or candidate.strip()
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
    extractor: AnswerExtractor | str = extract_answer
    _compiled: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _extract: AnswerExtractor = field(init=False, repr=False, compare=False)
    name = "regex"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_extract", resolve_extractor(self.extractor))
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
            answer = self._extract(candidate)
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
    extractor: AnswerExtractor | str = extract_answer
    _extract: AnswerExtractor = field(init=False, repr=False, compare=False)
    name = "numeric"

    def __post_init__(self) -> None:
        object.__setattr__(self, "_extract", resolve_extractor(self.extractor))

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
            answer = self._extract(candidate)
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

"""Charging model requests to the run's ledger, wherever in a node they are made.

A node opens a :func:`spending` scope on its run's :class:`~tts_graph.ledger.Ledger`. Every model
request made inside it — by the node itself, by concurrent tasks it starts, by a judge, reward
model or difficulty estimator it calls — goes through :func:`charge`: reserved before it is sent
(cut down or refused as the ledger decides), bounded by the run's wall-time deadline, and settled
with the server's usage. The scope sums what was spent, so the node reports exactly its own usage
to state and never has to collect it from the objects it called.

A judge or verifier may be the caller's own code, which spends through no backend of this
library. A node runs each such piece of work in :func:`charge_call`: it holds one call before the
work starts (so a call limit holds for any judge), hands that call to the work's first charged
request, and otherwise counts the usage the work reports.

At the wall-time deadline a request in flight is cancelled (a vLLM server aborts a request whose
client disconnects) and :class:`~tts_graph.errors.BudgetExhausted` is raised with limit
``"wall time"``; the call and its prompt are counted, the completion tokens of a cancelled,
non-streamed request are not known and not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from tts_graph.budget import Usage, estimate_flops
from tts_graph.errors import BudgetExhausted
from tts_graph.ledger import Grant, Ledger

__all__ = ["Bill", "Spending", "charge", "charge_call", "current_spending", "spending"]


@dataclass
class Spending:
    """What the requests of one scope (one node run) spent, and what the budget did to them."""

    ledger: Ledger
    usage: Usage = field(default_factory=Usage)
    notes: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, usage: Usage, note: dict[str, Any] | None = None) -> None:
        with self._lock:
            self.usage = self.usage + usage
            if note is not None:
                self.notes.append(note)

    def take_notes(self) -> list[dict[str, Any]]:
        """The budget's cuts and refusals since the last call (for the next decision record)."""
        with self._lock:
            notes, self.notes = self.notes, []
        return notes

    def stopped(self, exc: BudgetExhausted) -> str:
        """A node's answer to a refused request: re-raise in strict mode, else return the
        reason to record (``"wall time"`` or ``"budget"``) and finish with what it has."""
        if self.ledger.strict:
            raise exc
        self.add(Usage(), {"refused": exc.limit})
        return "wall time" if exc.limit == "wall time" else "budget"


_SCOPE: ContextVar[Spending | None] = ContextVar("tts_graph_spending", default=None)
# Set while a request is being charged, so a backend that wraps another is charged once.
_CHARGING: ContextVar[bool] = ContextVar("tts_graph_charging", default=False)
# The call held by charge_call, waiting for the work's first charged request to take it over.
_HELD_CALL: ContextVar[Bill | None] = ContextVar("tts_graph_held_call", default=None)


@contextlib.contextmanager
def spending(ledger: Ledger) -> Iterator[Spending]:
    """Charge every model request made inside the block (and in tasks it starts) to ``ledger``;
    the yielded :class:`Spending` sums what they spent."""
    scope = Spending(ledger)
    token = _SCOPE.set(scope)
    try:
        yield scope
    finally:
        _SCOPE.reset(token)


def current_spending() -> Spending | None:
    """The innermost :func:`spending` scope, if any."""
    return _SCOPE.get()


@dataclass
class Bill:
    """A charged request in progress: its :class:`~tts_graph.ledger.Grant`, and :meth:`settle`
    to call with the server's usage once the reply is in."""

    grant: Grant | None
    usage: Usage | None = None
    taken_over: bool = False  # a held call that a charged request took over

    def settle(self, usage: Usage | None) -> None:
        self.usage = usage


@contextlib.asynccontextmanager
async def charge(
    *,
    prompt_tokens: int,
    n: int = 1,
    max_tokens: int = 0,
    model_params: int | None = None,
    what: str = "a request",
    deadline: bool = True,
) -> AsyncIterator[Bill]:
    """Reserve one request in the current scope's ledger, run the block under the run's
    wall-time deadline (unless ``deadline=False``: a streamed request bounds each chunk itself),
    and settle with the usage given to :meth:`Bill.settle`.

    Outside a scope, or inside another charge, this charges nothing (``bill.grant`` is None).
    A block that raises settles what it reported so far (a stream cancelled half-way counts what
    the server had generated), and otherwise releases its reservation: a request that failed
    before the server reported anything counts nothing.
    """
    scope = _SCOPE.get()
    if scope is None or _CHARGING.get():
        yield Bill(None)
        return
    ledger = scope.ledger
    held = _HELD_CALL.get()
    if held is not None and (held.taken_over or held.grant is None):
        held = None
    grant = ledger.reserve(
        prompt_tokens=prompt_tokens,
        n=n,
        max_tokens=max_tokens,
        model_params=model_params,
        what=what,
        instead_of=None if held is None else held.grant,
    )
    if held is not None:
        held.taken_over = True
    bill = Bill(grant)
    token = _CHARGING.set(True)
    started = time.time()
    timer = asyncio.timeout(ledger.time_left() if deadline else None)
    try:
        async with timer:
            yield bill
    except TimeoutError:
        if not timer.expired():
            _settle_partial(scope, grant, bill)
            raise
        # The server read the prompt of the cancelled request: count the call and the prompt
        # (and what it streamed, if it did).
        cut = bill.usage or Usage(
            prompt_tokens=grant.prompt_tokens,
            calls=1,
            flops=estimate_flops(model_params, grant.prompt_tokens),
            started_at=started,
            ended_at=time.time(),
        )
        ledger.settle(grant, cut)
        scope.add(cut, {"cancelled": what})
        raise BudgetExhausted(
            f"the run's wall time ({ledger.budget.max_wall_s:g} s) ran out during {what}; "
            "the request was cancelled",
            limit="wall time",
        ) from None
    except BaseException:
        _settle_partial(scope, grant, bill)
        raise
    finally:
        _CHARGING.reset(token)
    if bill.usage is None:
        ledger.release(grant)
        return
    ledger.settle(grant, bill.usage)
    scope.add(bill.usage, grant.changes())


def _settle_partial(scope: Spending, grant: Grant, bill: Bill) -> None:
    if bill.usage is None:
        scope.ledger.release(grant)
    else:
        scope.ledger.settle(grant, bill.usage)
        scope.add(bill.usage, grant.changes())


@contextlib.asynccontextmanager
async def charge_call(*, what: str) -> AsyncIterator[Bill]:
    """Hold one call of the current scope's ledger for a piece of work whose requests are not
    known in advance (a judge's comparison, a verifier's check), and run it under the run's
    wall-time deadline.

    The work's first charged request takes the held call over (the usual reservation, cut or
    refusal follow from there). When the work charged nothing, the usage passed to
    :meth:`Bill.settle` is counted instead: work that spends outside this library is counted
    after the fact; work that reports no usage costs nothing. Raises
    :class:`~tts_graph.errors.BudgetExhausted` when no call is left.
    """
    scope = _SCOPE.get()
    if scope is None or _CHARGING.get():
        yield Bill(None)
        return
    ledger = scope.ledger
    grant = ledger.reserve(prompt_tokens=0, what=what)
    bill = Bill(grant)
    token = _HELD_CALL.set(bill)
    deadline = asyncio.timeout(ledger.time_left())
    try:
        async with deadline:
            yield bill
    except TimeoutError:
        if not bill.taken_over:
            ledger.release(grant)
        if not deadline.expired():
            raise
        raise BudgetExhausted(
            f"the run's wall time ({ledger.budget.max_wall_s:g} s) ran out during {what}",
            limit="wall time",
        ) from None
    except BaseException:
        if not bill.taken_over:
            ledger.release(grant)
        raise
    finally:
        _HELD_CALL.reset(token)
    if bill.taken_over:
        return
    if bill.usage is not None and bill.usage.calls:
        ledger.settle(grant, bill.usage)
        scope.add(bill.usage)
    else:
        ledger.release(grant)

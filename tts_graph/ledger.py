"""One run's accounting: every request of a run is reserved against one :class:`Ledger` before it
is sent and settled with the server's real usage afterwards.

Why a ledger and not a check against ``state["usage"]``: nodes that run in parallel (two fan-outs
from START, ``Send`` branches, the samples of a budget-forcing node, the judge calls of a
tournament round) all read the same snapshot of ``usage``, so each would believe the whole budget
is still there. The ledger is shared by reference instead: graph state carries it under the
``ledger`` key, whose channel creates a fresh one for every run (``share_ledger`` is its reducer)
and hands the same object to every node, ``Send`` branch and subgraph of that run. A reservation
holds the worst case (the prompt plus ``n × max_tokens``) until the server's ``usage`` replaces
it, so a limit on tokens, calls or FLOPs holds whatever runs at the same time.

A request that does not fit whole is cut to what is left (:class:`Grant`): first ``max_tokens``
comes down, but never below :attr:`Budget.min_sample_tokens` per sample while fewer samples would
keep it; only then ``n`` comes down. A request that cannot get a single token, a call, or time is
refused with :class:`~tts_graph.errors.BudgetExhausted`. With ``Budget(strict=True)`` any cut is a
refusal.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_serializer

from tts_graph.budget import Budget, Remaining, Usage, estimate_flops
from tts_graph.errors import BudgetExhausted, ConfigError

__all__ = ["Grant", "Ledger", "share_ledger"]


@dataclass(frozen=True)
class Grant:
    """What the ledger granted one request: ``n`` samples of at most ``max_tokens`` each, with the
    prompt counted at ``prompt_tokens``. ``limit`` names the limit that cut the request (None when
    it was granted whole)."""

    n: int
    max_tokens: int
    prompt_tokens: int
    flops: float
    requested_n: int
    requested_max_tokens: int
    limit: str | None = None

    @property
    def held(self) -> Usage:
        """The worst case this grant holds until it is settled."""
        return Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.n * self.max_tokens,
            calls=1,
            flops=self.flops,
        )

    def changes(self) -> dict[str, Any] | None:
        """What the budget changed in the request, for the node's decision (None: nothing)."""
        if self.limit is None:
            return None
        return {
            "limit": self.limit,
            "n": [self.requested_n, self.n],
            "max_tokens": [self.requested_max_tokens, self.max_tokens],
        }


def _minus(a: Usage, b: Usage) -> Usage:
    return Usage(
        prompt_tokens=a.prompt_tokens - b.prompt_tokens,
        completion_tokens=a.completion_tokens - b.completion_tokens,
        calls=a.calls - b.calls,
        flops=a.flops - b.flops,
    )


class Ledger(BaseModel):
    """The accounting of one run, shared by every node, branch and subgraph of the run.

    ``budget`` holds the limits (the state's ``budget``, bound by the first node that spends),
    ``spent`` what the server reported for settled requests. ``elapsed_s`` is the run time
    accumulated before this object was created (a run restored from a checkpoint keeps its
    clock). ``run_id`` names the run; candidates made during it carry it.

    >>> ledger = Ledger(budget=Budget(max_calls=2, max_completion_tokens=100))
    >>> grant = ledger.reserve(prompt_tokens=10, n=4, max_tokens=64)
    >>> grant.n, grant.max_tokens, grant.limit
    (3, 33, 'completion tokens')
    >>> ledger.settle(grant, Usage(prompt_tokens=10, completion_tokens=40, calls=1))
    >>> ledger.remaining().completion_tokens, ledger.remaining().calls
    (60, 1)
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, validate_assignment=False)

    budget: Budget = Field(default_factory=Budget)
    spent: Usage = Field(default_factory=Usage)
    elapsed_s: float = 0.0
    run_id: str = Field(default_factory=lambda: uuid.uuid4().hex)

    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)
    _held: Usage = PrivateAttr(default_factory=Usage)
    _clock: float = PrivateAttr(default_factory=time.monotonic)

    # -- the run's clock and limits -----------------------------------------------------------

    @field_serializer("elapsed_s")
    def _serialize_elapsed(self, _: float) -> float:
        return self.elapsed()

    def elapsed(self) -> float:
        """Seconds this run has been going."""
        return self.elapsed_s + (time.monotonic() - self._clock)

    def time_left(self) -> float | None:
        """Seconds left before the wall-time limit (None: no such limit)."""
        if self.budget.max_wall_s is None:
            return None
        return self.budget.max_wall_s - self.elapsed()

    def bind(self, budget: Budget | None) -> Ledger:
        """Adopt the limits of the state's ``budget`` (None keeps the current ones)."""
        if budget is not None and budget != self.budget:
            with self._lock:
                self.budget = budget
        return self

    @property
    def strict(self) -> bool:
        return self.budget.strict

    @property
    def counts_tokens(self) -> bool:
        """Whether reserving needs the prompt's token count (a token or FLOPs limit is set)."""
        b = self.budget
        return any(
            v is not None for v in (b.max_total_tokens, b.max_completion_tokens, b.max_flops)
        )

    @property
    def reserved(self) -> Usage:
        """What requests in flight hold right now."""
        with self._lock:
            return self._held

    def remaining(self) -> Remaining:
        """What is left of each limit after what was spent and what is reserved."""
        with self._lock:
            return self._remaining()

    def _remaining(self) -> Remaining:
        b, used = self.budget, self.spent + self._held

        def left(limit: float | None, spent: float) -> Any:
            return None if limit is None else limit - spent

        return Remaining(
            total_tokens=left(b.max_total_tokens, used.total_tokens),
            completion_tokens=left(b.max_completion_tokens, used.completion_tokens),
            calls=left(b.max_calls, used.calls),
            flops=left(b.max_flops, used.flops),
            wall_s=self.time_left(),
        )

    def room(
        self, *, prompt_tokens: int, model_params: int | None
    ) -> tuple[str | None, int | None]:
        """The completion tokens one more request with this prompt could get, and the limit that
        sets it: ``(None, None)`` when no token limit applies. Advisory: another request may
        reserve them first."""
        with self._lock:
            return self._room(self._remaining(), prompt_tokens, model_params)

    def _room(
        self, r: Remaining, prompt_tokens: int, model_params: int | None
    ) -> tuple[str | None, int | None]:
        rooms: list[tuple[int, str]] = []
        if r.completion_tokens is not None:
            rooms.append((r.completion_tokens, "completion tokens"))
        if r.total_tokens is not None:
            rooms.append((r.total_tokens - prompt_tokens, "total tokens"))
        if r.flops is not None and model_params:
            rooms.append((int(r.flops // (2 * model_params)) - prompt_tokens, "flops"))
        if not rooms:
            return None, None
        tokens, limit = min(rooms)
        return limit, tokens

    # -- reserve and settle -------------------------------------------------------------------

    def reserve(
        self,
        *,
        prompt_tokens: int,
        n: int = 1,
        max_tokens: int = 0,
        model_params: int | None = None,
        what: str = "a request",
        instead_of: Grant | None = None,
    ) -> Grant:
        """Reserve one request of ``n`` samples of up to ``max_tokens`` (0 for a request that
        only reads, such as a reward model's) on a prompt of ``prompt_tokens``; cut it down to
        what is left, or raise :class:`~tts_graph.errors.BudgetExhausted` naming the limit.

        ``instead_of``: a reservation this one replaces, atomically (a call held for a judge
        becomes the judge's request); it is kept when this one is refused.

        A FLOPs limit needs ``model_params``: without it this raises
        :class:`~tts_graph.errors.ConfigError` rather than ignore the limit.
        """
        with self._lock:
            if instead_of is not None:
                self._held = _minus(self._held, instead_of.held)
            try:
                grant = self._reserve(prompt_tokens, n, max_tokens, model_params, what)
            except BaseException:
                if instead_of is not None:
                    self._held = self._held + instead_of.held
                raise
            self._held = self._held + grant.held
            return grant

    def _reserve(
        self, prompt_tokens: int, n: int, max_tokens: int, model_params: int | None, what: str
    ) -> Grant:
        b = self.budget
        if b.max_flops is not None and not model_params and (prompt_tokens or max_tokens):
            raise ConfigError(
                "the budget has a FLOPs limit (max_flops), but the model's parameter count is "
                "unknown, so FLOPs cannot be counted; give the backend model_params=... or use "
                "a limit in tokens or calls"
            )
        r = self._remaining()
        if r.wall_s is not None and r.wall_s <= 0:
            self._refuse("wall time", what, f"{b.max_wall_s:g} s have passed")
        if r.calls is not None and r.calls < 1:
            self._refuse("calls", what, f"{self.spent.calls + self._held.calls} made or held")
        limit, room = self._room(r, prompt_tokens, model_params)
        grant_n, grant_max = n, max_tokens
        if room is None or room >= n * max_tokens:
            limit = None
        elif b.strict or room < min(1, max_tokens) or room < 0:
            self._refuse(
                limit or "tokens",
                what,
                f"{n} × {max_tokens} tokens on a {prompt_tokens}-token prompt, "
                f"{max(room, 0)} tokens left",
            )
        else:
            grant_n, grant_max = _fit(room, n, max_tokens, b.min_sample_tokens)
        return Grant(
            n=grant_n,
            max_tokens=grant_max,
            prompt_tokens=prompt_tokens,
            flops=estimate_flops(model_params, prompt_tokens + grant_n * grant_max),
            requested_n=n,
            requested_max_tokens=max_tokens,
            limit=limit,
        )

    def affordable_requests(
        self, wanted: int, *, prompt_tokens: int, max_tokens: int, model_params: int | None
    ) -> tuple[int, str | None]:
        """How many of ``wanted`` separate one-sample requests on this prompt would each get
        at least ``min(max_tokens, min_sample_tokens)`` if all were reserved now, and the limit
        that says so (None when all fit). Advisory: for planning parallel branches."""
        with self._lock:
            r = self._remaining()
            if r.wall_s is not None and r.wall_s <= 0:
                return 0, "wall time"
            floor = max(1, min(max_tokens, self.budget.min_sample_tokens))
            fits = [(wanted, "")]
            if r.calls is not None:
                fits.append((r.calls, "calls"))
            if r.completion_tokens is not None:
                fits.append((r.completion_tokens // floor, "completion tokens"))
            if r.total_tokens is not None:
                fits.append((r.total_tokens // (prompt_tokens + floor), "total tokens"))
            if r.flops is not None and model_params:
                cost = 2 * model_params * (prompt_tokens + floor)
                fits.append((int(r.flops // cost), "flops"))
            k, limit = min(fits)
            return max(0, k), (limit or None) if k < wanted else None

    def settle(self, grant: Grant, usage: Usage) -> None:
        """Replace ``grant``'s reservation with what the server reported."""
        with self._lock:
            self._held = _minus(self._held, grant.held)
            self.spent = self.spent + usage

    def release(self, grant: Grant) -> None:
        """Drop ``grant``'s reservation: the request was not made, or failed with nothing
        to count."""
        with self._lock:
            self._held = _minus(self._held, grant.held)

    def _refuse(self, limit: str, what: str, detail: str) -> None:
        raise BudgetExhausted(
            f"the budget has no room for {what}: its {limit} limit is reached ({detail}; "
            f"budget: {self.budget.describe()})",
            limit=limit,
        )

    def __copy__(self) -> Ledger:
        return self  # a handle on the run's accounting: copies must share it

    def __deepcopy__(self, memo: dict[int, Any] | None = None) -> Ledger:
        return self

    def __repr__(self) -> str:
        return f"Ledger(budget=({self.budget.describe()}), spent={self.spent.to_dict()})"

    __str__ = __repr__


def _fit(room: int, n: int, max_tokens: int, min_sample_tokens: int) -> tuple[int, int]:
    """Cut ``n × max_tokens`` to fit ``room`` completion tokens: lower ``max_tokens`` first, but
    keep at least ``min_sample_tokens`` per sample while dropping samples can keep it."""
    if max_tokens == 0:
        return n, 0
    floor = min(max_tokens, min_sample_tokens)
    if room >= n * floor:
        return n, min(max_tokens, room // n)
    if room >= floor:
        k = room // floor
        return k, min(max_tokens, room // k)
    return 1, room


def share_ledger(current: Ledger, update: Ledger | None) -> Ledger:
    """State reducer for the ``ledger`` key: a run keeps one ledger, and a subgraph that is given
    its parent's adopts it (so one budget covers the whole composition)."""
    return update if isinstance(update, Ledger) else current

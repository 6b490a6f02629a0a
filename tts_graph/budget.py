"""Compute accounting: :class:`Usage` (what was spent, additive) and :class:`Budget` (frozen
limits). Both travel in graph state; a reducer sums the usage that parallel nodes report.

FLOPs are an estimate: ``2 × parameters × tokens processed`` (prompt + completion), the usual
forward-pass cost of a dense transformer. The parameter count comes from the backend: given
explicitly (``VLLMBackend(model_params=...)``) or read from the safetensors headers of the served
model's folder when the server runs on this machine (the embedded model always does). When it is
unknown the estimate is 0 and a FLOPs limit is refused with :class:`ConfigError`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tts_graph.errors import ConfigError, show_value

__all__ = ["Budget", "Remaining", "Usage", "add_usage", "estimate_flops"]


def estimate_flops(model_params: int | None, tokens: int) -> float:
    """Forward-pass FLOPs of ``tokens`` tokens through a dense model: ``2 · params · tokens``."""
    return 0.0 if not model_params else 2.0 * model_params * tokens


def _min_opt(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max_opt(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass(frozen=True)
class Usage:
    """What a run has spent. Adding two usages sums the counts; the wall-clock window is the
    union of both (earliest start, latest end), so parallel branches are not double-counted.

    >>> (Usage(prompt_tokens=10, calls=1) + Usage(completion_tokens=5, calls=1)).calls
    2
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0
    flops: float = 0.0
    started_at: float | None = None
    ended_at: float | None = None

    def __add__(self, other: Usage) -> Usage:
        if not isinstance(other, Usage):
            return NotImplemented
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            calls=self.calls + other.calls,
            flops=self.flops + other.flops,
            started_at=_min_opt(self.started_at, other.started_at),
            ended_at=_max_opt(self.ended_at, other.ended_at),
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @property
    def wall_s(self) -> float:
        """Seconds between the first request's start and the last one's end."""
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return max(0.0, self.ended_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        """Plain numbers for JSON output and stream events."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "calls": self.calls,
            "flops": self.flops,
            "wall_s": round(self.wall_s, 3),
        }


def add_usage(left: Usage | None, right: Usage | None) -> Usage:
    """State reducer: sum the usage reported by nodes (order-independent)."""
    return (left or Usage()) + (right or Usage())


@dataclass(frozen=True)
class Remaining:
    """What is left of each limit (None = unlimited)."""

    total_tokens: int | None = None
    completion_tokens: int | None = None
    calls: int | None = None
    flops: float | None = None
    wall_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Budget(BaseModel):
    """Limits on what one run may spend; every limit is optional.

    Running out means "finish with the best answer so far": every request of a run is reserved
    against one shared :class:`~tts_graph.ledger.Ledger` before it is sent, cut down to what is
    left (fewer samples, a lower ``max_tokens``) or refused, and settled with the server's real
    usage afterwards, so no limit is exceeded however many nodes spend in parallel. With
    ``strict=True`` a request that does not fit whole raises
    :class:`~tts_graph.errors.BudgetExhausted` instead.

    >>> budget = Budget(max_calls=4, max_total_tokens=2_000)
    >>> budget.can_afford(Usage(calls=3), calls=1, prompt_tokens=50, completion_tokens=100)
    True
    >>> budget.can_afford(Usage(calls=4), calls=1)
    False
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_total_tokens: int | None = Field(None, gt=0, description="prompt + completion tokens")
    max_completion_tokens: int | None = Field(None, gt=0, description="completion tokens")
    max_calls: int | None = Field(None, gt=0, description="requests to the model server")
    max_flops: float | None = Field(None, gt=0, description="estimated FLOPs (2·params·tokens)")
    max_wall_s: float | None = Field(None, gt=0, description="seconds since the run started")
    strict: bool = Field(False, description="raise BudgetExhausted instead of finishing early")
    min_sample_tokens: int = Field(
        32,
        gt=0,
        description="when the budget forces a request's max_tokens down, keep at least this "
        "many per sample (fewer samples, each long enough to answer)",
    )

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            problems = "; ".join(_problem(err) for err in exc.errors())
            raise ConfigError(
                f"invalid budget: {problems}; every limit is optional and must be positive"
            ) from None

    @field_validator(
        "max_total_tokens", "max_completion_tokens", "max_calls", "max_flops", "max_wall_s",
        "min_sample_tokens", mode="before",
    )  # fmt: skip
    @classmethod
    def _not_a_flag(cls, value: Any) -> Any:
        # pydantic reads True as 1: a limit of one call, where a flag was surely meant.
        if isinstance(value, bool):
            raise ValueError("a limit is a number, not true/false")
        return value

    @field_validator("max_flops", "max_wall_s")
    @classmethod
    def _infinite_is_none(cls, value: float | None) -> float | None:
        # An infinite limit is never reached: it is no limit, held as such (JSON, and so a
        # saved spec or run, has no infinity to write it as).
        return None if value == math.inf else value

    @classmethod
    def coerce(cls, value: Any) -> Budget | None:
        """The budget a graph's input gives: a :class:`Budget`, its limits as a mapping (a
        budget that arrived as JSON), or None for none; anything else is a
        :class:`~tts_graph.errors.ConfigError` naming what would do.

        >>> Budget.coerce({"max_calls": 4}).max_calls
        4
        """
        if value is None or isinstance(value, Budget):
            return value
        if isinstance(value, Mapping):
            return cls(**value)
        raise ConfigError(
            f"the budget must be a Budget or a mapping of its limits ({', '.join(_FIELDS)}), "
            f"got {type(value).__name__} {show_value(value)}"
        )

    @property
    def unlimited(self) -> bool:
        return all(
            v is None
            for v in (
                self.max_total_tokens,
                self.max_completion_tokens,
                self.max_calls,
                self.max_flops,
                self.max_wall_s,
            )
        )

    def remaining(self, usage: Usage | None, *, now: float | None = None) -> Remaining:
        """What is left of each limit given ``usage``."""
        u = usage or Usage()
        elapsed = 0.0 if u.started_at is None else (now or time.time()) - u.started_at

        def left(limit: float | None, spent: float) -> Any:
            return None if limit is None else limit - spent

        return Remaining(
            total_tokens=left(self.max_total_tokens, u.total_tokens),
            completion_tokens=left(self.max_completion_tokens, u.completion_tokens),
            calls=left(self.max_calls, u.calls),
            flops=left(self.max_flops, u.flops),
            wall_s=left(self.max_wall_s, elapsed),
        )

    def can_afford(
        self,
        usage: Usage | None,
        *,
        calls: int = 1,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        flops: float = 0.0,
        now: float | None = None,
    ) -> bool:
        """Whether spending this much more stays within every limit (and time is left)."""
        r = self.remaining(usage, now=now)
        checks = (
            (r.calls, calls),
            (r.total_tokens, prompt_tokens + completion_tokens),
            (r.completion_tokens, completion_tokens),
            (r.flops, flops),
        )
        if any(left is not None and spend > left for left, spend in checks):
            return False
        return r.wall_s is None or r.wall_s > 0

    def require_one_call(
        self, *, prompt_tokens: int, max_tokens: int, model_params: int | None = None
    ) -> None:
        """Raise :class:`ConfigError` when not even one useful request fits: a prompt of
        ``prompt_tokens`` with an answer of ``max_tokens`` (the whole of it in strict mode,
        else at least ``min_sample_tokens`` of it, since the budget may cut a request down)."""
        answer = max_tokens if self.strict else min(max_tokens, self.min_sample_tokens)
        tokens = prompt_tokens + answer
        if not self.can_afford(
            None,
            calls=1,
            prompt_tokens=prompt_tokens,
            completion_tokens=answer,
            flops=estimate_flops(model_params, tokens),
        ):
            raise ConfigError(
                f"the budget ({self.describe()}) is too small for a single call: "
                f"{prompt_tokens} prompt tokens and at least {answer} answer tokens "
                f"({estimate_flops(model_params, tokens):.3g} FLOPs) do not fit; raise the "
                "budget or shorten the prompt"
            )

    def describe(self) -> str:
        parts = [
            f"{name}={show_value(value)}"
            for name, value in self.model_dump(exclude={"strict", "min_sample_tokens"}).items()
            if value is not None
        ]
        return ", ".join(parts) or "unlimited"


_FIELDS = tuple(Budget.model_fields)


def _problem(err: Any) -> str:
    """One pydantic error about a budget as ``field: what is wrong (got value)``."""
    field = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown limit {field!r}; the options are: {', '.join(_FIELDS)}"
    message = str(err["msg"]).removeprefix("Value error, ")
    message = message[0].lower() + message[1:]
    if not field:  # a check across fields: the message names them
        return message
    return f"{field}: {message} (got {show_value(err.get('input'))})"

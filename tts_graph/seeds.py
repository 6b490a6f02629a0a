"""Seed offsets for a strategy run more than once in one graph.

Every node derives its request seeds from its own ``seed`` option, so one graph always draws the
same samples. A composition that runs the same strategy several times (best-of-N over
self-refined answers: N self-refine runs) must not get N copies of one answer: it runs copy ``k``
inside :func:`offset_seeds` ``(k * stride)``, and every request sent in that scope — by any
node, judge or verifier of the copy — has its seed shifted by the offset. Requests without a
seed stay unseeded.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tts_graph.backends.base import GenerationRequest

__all__ = ["offset_seeds", "seed_offset", "with_seed_offset"]

_OFFSET: ContextVar[int] = ContextVar("tts_graph_seed_offset", default=0)


def seed_offset() -> int:
    """The offset added to request seeds here (0 outside :func:`offset_seeds`)."""
    return _OFFSET.get()


@contextlib.contextmanager
def offset_seeds(offset: int) -> Iterator[None]:
    """Shift the seed of every request sent inside this scope by ``offset`` (nested scopes add).

    >>> with offset_seeds(1000):
    ...     seed_offset()
    1000
    """
    token = _OFFSET.set(_OFFSET.get() + offset)
    try:
        yield
    finally:
        _OFFSET.reset(token)


def with_seed_offset(request: GenerationRequest) -> GenerationRequest:
    """``request`` with the current offset added to its seed."""
    offset = _OFFSET.get()
    seed = request.sampling.seed
    if not offset or seed is None:
        return request
    return dataclasses.replace(
        request, sampling=dataclasses.replace(request.sampling, seed=seed + offset)
    )

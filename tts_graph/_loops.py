"""Event loops: async resources that work on any loop, and one loop for synchronous callers.

The library is async inside. A synchronous caller (``graph.invoke``, ``model.invoke``) needs its
coroutines run somewhere: :func:`run_sync` hands them to one long-lived loop in a daemon thread
(the pattern of anyio's blocking portal), in the caller's context, so LangGraph's config, stream
writer and tracing still see the run. Spinning a fresh loop per call instead would strand
connection pools and semaphores on loops that are gone.

Objects such as an HTTP client's connection pool or a semaphore belong to the loop that first
uses them; :class:`LoopLocal` keeps one per loop, so a backend serves the caller's own loop and
the portal's alike.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

__all__ = ["LoopLocal", "run_sync"]

T = TypeVar("T")


class LoopLocal(Generic[T]):
    """One ``factory()`` object per running event loop, created on first use.

    >>> import asyncio
    >>> locks = LoopLocal(asyncio.Lock)
    >>> async def same() -> bool:
    ...     return locks.get() is locks.get()
    >>> asyncio.run(same())
    True
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        with self._lock:
            if loop not in self._by_loop:
                self._by_loop[loop] = self._factory()
            return self._by_loop[loop]

    def take_all(self) -> list[tuple[asyncio.AbstractEventLoop, T]]:
        """Every loop's object, forgotten here (the next :meth:`get` makes a new one)."""
        with self._lock:
            taken = list(self._by_loop.items())
            self._by_loop.clear()
        return taken

    def current(self) -> T | None:
        """The object of the running loop, if one was made."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        with self._lock:
            return self._by_loop.get(loop)


class _Portal:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="tts-graph-portal", daemon=True
                )
                thread.start()
                self._loop = loop
            return self._loop


_PORTAL = _Portal()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion from synchronous code and return its result.

    It runs on the library's portal loop, in a copy of the caller's context (LangGraph's config
    and stream writer, the tracing run). Interrupting the caller (Ctrl-C) cancels it. Calling
    this from inside the portal loop itself would deadlock, so that raises instead.
    """
    loop = _PORTAL.loop()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("run_sync was called from the library's own event loop")
    context = contextvars.copy_context()
    done: concurrent.futures.Future[T] = concurrent.futures.Future()
    tasks: list[asyncio.Task[T]] = []

    def start() -> None:
        task = loop.create_task(coro, context=context)
        tasks.append(task)

        def finish(t: asyncio.Task[T]) -> None:
            if t.cancelled():
                done.cancel()
            elif (exc := t.exception()) is not None:
                done.set_exception(exc)
            else:
                done.set_result(t.result())

        task.add_done_callback(finish)

    loop.call_soon_threadsafe(start)
    try:
        return done.result()
    except BaseException:
        if not done.done():
            loop.call_soon_threadsafe(lambda: [t.cancel() for t in tasks])
        raise

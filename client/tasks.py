"""Background tasks with an owner: kept referenced, failures logged, all stopped together.

An ``asyncio.Task`` nobody holds can be garbage-collected mid-flight, and an exception
nobody retrieves is lost until interpreter exit. Long-lived loops (the producer's sender,
the consumer's fetcher, and on the broker side the server and the group coordinator)
start short tasks all the time — one per request in flight — so a ``TaskGroup`` block
does not fit their shape; a :class:`TaskOwner` does: :meth:`spawn` starts a task it
holds until it ends, logs it if it failed, then calls ``on_done`` (typically "wake the
loop, a slot is free"); :meth:`close` cancels whatever still runs and waits for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class TaskOwner:
    """Owns the tasks it spawns (see the module doc). Use on one event loop."""

    __slots__ = ("_closed", "_log", "_on_done", "_tasks", "_what")

    def __init__(
        self,
        log: logging.Logger,
        what: str,
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self._log = log
        self._what = what
        self._on_done = on_done
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False

    def spawn(self, coro: Coroutine[Any, Any, T], *, name: str | None = None) -> asyncio.Task[T]:
        """Start ``coro`` as a task this owner holds until it ends."""
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self._what}: spawn() after close()")
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                self._log.error("%s failed: %r", self._what, exc, exc_info=exc)
        if self._on_done is not None:
            self._on_done()

    def __len__(self) -> int:
        """Tasks still running."""
        return len(self._tasks)

    def __bool__(self) -> bool:
        return bool(self._tasks)

    async def close(self) -> None:
        """Cancel every task still running and wait until each has ended."""
        self._closed = True
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["TaskOwner"]

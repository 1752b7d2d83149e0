"""Structured ownership of background tasks: one owner spawns them, logs their failures,
and cancels and awaits every one of them when it closes.

``asyncio.TaskGroup`` fits work whose tasks all end together; a broker or a client keeps
tasks that come and go for as long as it runs (a send per batch, a replica restart, a
group write), so it needs a long-lived owner instead. No task is left without one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class TaskOwner:
    """Spawns tasks, logs the ones that fail, and stops them all on :meth:`close`.

    ``on_done`` (optional) runs after any task ends (e.g. to wake a loop waiting on them).
    """

    __slots__ = ("_log", "_on_done", "_tasks", "what")

    def __init__(self, what: str, logger: logging.Logger, on_done: Any = None) -> None:
        self.what = what
        self._log = logger
        self._on_done = on_done
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                self._log.error("%s: task %s failed: %r", self.what, task.get_name(), exc, exc_info=exc)
        if self._on_done is not None:
            self._on_done()

    def __len__(self) -> int:
        return len(self._tasks)

    def __bool__(self) -> bool:
        return bool(self._tasks)

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        return frozenset(self._tasks)

    async def close(self) -> None:
        """Cancel every task and wait until each has finished (failures are not re-raised)."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

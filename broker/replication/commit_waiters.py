"""Produce requests waiting for their offset to commit (``acks=all``).

A lone write's path should hold no timer (issue 17): an ``asyncio.timeout`` per request
armed and cancelled a timer handle on the event loop for every acknowledged write. The
waiters of a replica share **one** timer instead, armed for the earliest deadline; it fires
only when some request really runs out of time (or finds that request answered meanwhile,
and re-arms for the next deadline). A commit answers waiters without touching it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable


class CommitWaiters:
    """Futures keyed by the offset they wait for, kept sorted by offset."""

    __slots__ = ("_waiters", "_timer", "_timed_out")

    def __init__(self, timed_out: Callable[[int], BaseException]) -> None:
        #: (offset, future, deadline on the loop's clock), sorted by offset.
        self._waiters: deque[tuple[int, asyncio.Future[None], float]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        #: The error a waiter for ``offset`` gets when its deadline passes.
        self._timed_out = timed_out

    def __len__(self) -> int:
        return len(self._waiters)

    async def wait(self, offset: int, timeout_s: float) -> None:
        """Until :meth:`release` passes ``offset``, or raise ``timed_out(offset)`` after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        deadline = loop.time() + timeout_s
        waiters = self._waiters
        if waiters and waiters[-1][0] > offset:
            # A duplicate waiting on an older offset: keep the deque sorted by offset.
            items = sorted([*waiters, (offset, fut, deadline)], key=lambda x: x[0])
            waiters.clear()
            waiters.extend(items)
        else:
            waiters.append((offset, fut, deadline))
        timer = self._timer
        if timer is None or deadline < timer.when():
            if timer is not None:
                timer.cancel()
            self._timer = loop.call_at(deadline, self._expire)
        await fut

    def release(self, end: int) -> None:
        """Answer every waiter for an offset below ``end`` (the new high watermark)."""
        waiters = self._waiters
        while waiters and waiters[0][0] < end:
            fut = waiters.popleft()[1]
            if not fut.done():
                fut.set_result(None)

    def fail_all(self, error: Callable[[], BaseException]) -> None:
        """Fail every waiter (leadership lost, replica stopped) and drop the timer."""
        self.close()
        while self._waiters:
            fut = self._waiters.popleft()[1]
            if not fut.done():
                fut.set_exception(error())

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        kept: deque[tuple[int, asyncio.Future[None], float]] = deque()
        earliest: float | None = None
        for offset, fut, deadline in self._waiters:
            if fut.done():
                continue  # cancelled: its request went away
            if deadline <= now:
                fut.set_exception(self._timed_out(offset))
                continue
            kept.append((offset, fut, deadline))
            earliest = deadline if earliest is None else min(earliest, deadline)
        self._waiters = kept
        if earliest is not None:
            self._timer = loop.call_at(earliest, self._expire)

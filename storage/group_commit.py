"""``GroupCommit``: one fsync per log per round, shared by every append waiting on it.

Under the ``always`` flush policy an append is acknowledged only once it is on
disk. Fsyncing per append would cap a partition at a few hundred appends per
second on most disks; instead, callers append (synchronously, on the loop) and
then ``await gc.durable(log, info.last_offset)``. The first waiter starts a round
for that log on the next loop iteration, so every append made in the same loop turn
is covered by it. The fsync runs in a worker thread (``run_in_executor``), so the
loop keeps appending meanwhile; those appends are covered by the next round. Each
log has at most one round in flight; different logs flush in parallel.

Thread safety: a round is a :class:`~strata.storage.log.FlushJob` captured on the
loop thread (``dup``-ed descriptors, the target offset) and applied back on the loop
thread; the worker thread touches nothing else.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from strata.storage.errors import LogOfflineError, StorageError
from strata.storage.log import Log

__all__ = ["GroupCommit"]


@dataclass(slots=True)
class _LogState:
    waiters: list[tuple[int, int, asyncio.Future[None]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


def _timed(run: Callable[[], object]) -> float:
    """Run a flush job in the worker thread; return how long it took (not counting queueing)."""
    t0 = time.perf_counter()
    run()
    return time.perf_counter() - t0


class GroupCommit:
    """Owns the fsyncs of many logs; use as ``async with GroupCommit() as gc``.

    ``max_waiters`` bounds the appends waiting for durability across all logs; a
    caller past the bound waits for a slot (backpressure, not an unbounded queue).
    """

    def __init__(self, *, max_waiters: int = 65536, executor: Executor | None = None):
        if max_waiters <= 0:
            raise ValueError(f"max_waiters must be positive, got {max_waiters}")
        self._max_waiters = max_waiters
        self._slots: asyncio.Semaphore | None = None
        self._executor = executor
        self._states: dict[Log, _LogState] = {}
        self._seq = itertools.count()
        self._rounds = 0
        self._closed = False
        #: Called on the loop with each successful round's fsync time in seconds (metrics).
        self.on_round: Callable[[float], None] | None = None

    @property
    def rounds(self) -> int:
        """fsync rounds run so far, over all logs (for metrics and tests)."""
        return self._rounds

    async def __aenter__(self) -> GroupCommit:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def durable(self, log: Log, offset: int) -> None:
        """Return once ``log.flushed_offset > offset`` (``offset`` and all before it are on disk).

        Raises the flush's error (``LogOfflineError``) if the fsync failed, and
        :class:`StorageError` if ``offset`` was truncated away before it became durable.
        """
        if log.flushed_offset > offset:
            return
        if self._closed:
            raise StorageError("GroupCommit is closed")
        if offset >= log.log_end_offset:
            raise ValueError(f"offset {offset} is not in the log (log end offset {log.log_end_offset})")
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_waiters)
        async with self._slots:
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            state = self._states.get(log)
            if state is None:
                state = self._states[log] = _LogState()
            heapq.heappush(state.waiters, (offset, next(self._seq), fut))
            if state.task is None:
                state.task = loop.create_task(self._run(log, state), name=f"group-commit {log.dir}")
            await fut

    async def _run(self, log: Log, state: _LogState) -> None:
        """Flush rounds for one log until nobody waits on it."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._settle(log, state)
                if not state.waiters:
                    return
                try:
                    job = log.begin_flush()
                except Exception as e:  # offline or closed
                    self._fail_all(state, e)
                    return
                # Waiters left are below the log end and at or above flushed_offset: work to do.
                assert job is not None, (log.flushed_offset, log.log_end_offset, state.waiters[0][0])
                try:
                    elapsed = await loop.run_in_executor(self._executor, _timed, job.run)
                except OSError as e:
                    log.abort_flush(job, e)
                    self._fail_all(state, LogOfflineError(f"partition {log.dir}: fsync failed: {e}"))
                    return
                self._rounds += 1
                log.complete_flush(job)
                if self.on_round is not None:
                    self.on_round(elapsed)
        finally:
            state.task = None
            if not state.waiters:
                self._states.pop(log, None)

    @staticmethod
    def _settle(log: Log, state: _LogState) -> None:
        """Wake waiters now durable; fail those whose offsets were truncated away."""
        flushed = log.flushed_offset
        while state.waiters and state.waiters[0][0] < flushed:
            _, _, fut = heapq.heappop(state.waiters)
            if not fut.done():
                fut.set_result(None)
        if state.waiters and max(w[0] for w in state.waiters) >= log.log_end_offset:
            keep = []
            for w in state.waiters:
                if w[0] >= log.log_end_offset:
                    if not w[2].done():
                        w[2].set_exception(StorageError(
                            f"partition {log.dir}: offset {w[0]} was truncated before it became durable"))
                else:
                    keep.append(w)
            heapq.heapify(keep)
            state.waiters[:] = keep
        if any(w[2].done() for w in state.waiters):  # callers cancelled while waiting
            state.waiters[:] = [w for w in state.waiters if not w[2].done()]
            heapq.heapify(state.waiters)

    @staticmethod
    def _fail_all(state: _LogState, error: BaseException) -> None:
        for _, _, fut in state.waiters:
            if not fut.done():
                fut.set_exception(error if isinstance(error, StorageError) else StorageError(str(error)))
        state.waiters.clear()

    async def aclose(self) -> None:
        """Let the rounds in flight finish (their waiters get answers), then refuse new ones."""
        self._closed = True
        tasks = [s.task for s in self._states.values() if s.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

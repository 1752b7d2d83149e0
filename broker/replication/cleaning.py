"""The broker's log cleaner: one ``LogCleaner``, one worker thread, every compacted replica.

Each replica (leader or follower) cleans its own log (``docs/compaction.md``). This service
picks, among the replicas whose topic is compacted, the one most in need (a log past its
``max.compaction.lag.ms`` first, then the highest dirty ratio), runs one pass on it in its
worker thread, and goes on to the next; with nothing due it sleeps ``cleaner_backoff_ms``.
Passes run one at a time under one I/O budget (``cleaner_io_bytes_per_second``): the worker
shares the interpreter with the event loop, and the budget is what keeps produce and fetch
at their rate while it cleans.

What a pass may touch:

* only segments wholly below the replica's **high watermark** (its commit index: committed
  entries are never truncated by Raft), never the active segment (the storage engine's rule);
* tombstones only below the partition's ``removable_offset``, the minimum over all its
  replicas of how far each has cleaned, which the controller hands out
  (:mod:`strata.broker.cluster.cleaning`).

When a pass fails:

* a corrupt batch (``CorruptBatchError``): the replica is storage-faulty, as when a read
  meets one: ``Replica.fail`` reopens it with a full check, which cuts the log at the bad
  batch, and the replica does not vote until its leader has re-sent what was cut;
* a full disk (``LogFullError``): the pass is abandoned (its temporary files are gone, the
  log is as it was) and that log is not tried again for ``cleaner_backoff_ms``;
* the log was truncated into the range or closed meanwhile (``CleanAbandonedError``): nothing
  to do, the next round sees the log as it is now;
* any other storage error (a swap whose directory fsync failed after its commit point takes
  the log offline): the replica is reopened (``Replica.fail``), and recovery finishes the swap.

**Trimming the head** (topics in ``trim_head_topics``: ``__consumer_offsets``). A cleaned log
keeps an empty batch for every batch whose records all went (``docs/compaction.md``), so a
log read from its start still walks one header per batch ever written. For the offsets topic
that walk is what a new coordinator pays on failover, and it would grow with history. After a
pass, such a log's start offset moves up to its first batch that still holds a record (never
past the cleaned offset, so never past the high watermark): only empty batches go, so what the
log means does not change, and a follower below the new start is reset to it by Raft
(``InstallLogStart``) and receives the same content. User topics keep their log start, so a
consumer positioned at a low offset of a compacted topic reads on instead of being reset.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strata.broker.core.types import GroupKey
from strata.client.batch import CorruptBatchError, iter_batches
from strata.storage import (
    CleanAbandonedError,
    CleanerConfig,
    CleanStats,
    LogCleaner,
    LogFullError,
    StorageError,
)

if TYPE_CHECKING:
    from strata.broker.config import BrokerConfig
    from strata.broker.replication.replica import Replica
    from strata.storage import Log

log = logging.getLogger("strata.broker.cleaner")


#: Bytes of a log's head read per loop turn while looking for its first non-empty batch
#: (about 4,000 empty batch headers: a few milliseconds of the loop at a time).
TRIM_READ_BYTES = 256 << 10


@dataclass(slots=True)
class CleanerTotals:
    """What the cleaner did since the broker started (metrics)."""

    passes: int = 0
    failures: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    #: ``time.time()`` of the last pass's end, 0 if none.
    last_pass_at: float = 0.0


class CleanerService:
    """Schedules cleaning passes over this broker's compacted replicas, one at a time."""

    def __init__(
        self,
        config: BrokerConfig,
        replicas: Mapping[GroupKey, Replica],
        removable_offset: Callable[[GroupKey, int | None], int],
        *,
        trim_head_topics: frozenset[str] = frozenset(),
        cleaner: LogCleaner | None = None,
    ) -> None:
        rate = config.cleaner_io_bytes_per_second
        self.cleaner = cleaner or LogCleaner(CleanerConfig(
            map_bytes=config.cleaner_map_bytes, io_bytes_per_second=rate if rate > 0 else None))
        self._replicas = replicas
        self._removable = removable_offset
        self._trim_head_topics = trim_head_topics
        self._backoff_s = config.cleaner_backoff_ms / 1000
        #: Logs not to try again before a monotonic time (a full disk).
        self._retry_after: dict[GroupKey, float] = {}
        self._executor: ThreadPoolExecutor | None = None
        self._wake = asyncio.Event()
        #: The partition being cleaned now, if any.
        self.current: GroupKey | None = None
        self.totals = CleanerTotals()

    # -- the loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Clean due logs one after the other; sleep when none is due (or until :meth:`wake`)."""
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="log-cleaner")
        try:
            while True:
                cleaned = await self.clean_next()
                if cleaned is None:
                    self._wake.clear()
                    try:
                        async with asyncio.timeout(self._backoff_s):
                            await self._wake.wait()
                    except TimeoutError:
                        pass
        finally:
            # A pass still running in the thread was cancelled by closing its log (the broker
            # closes every log on shutdown); do not wait for it here.
            self._executor.shutdown(wait=False, cancel_futures=True)

    def removable_offset(self, r: Replica) -> int:
        """Tombstones of ``r``'s log may go below this offset (what the controller last said)."""
        return self._removable(r.key, r.topic_id)

    def wake(self) -> None:
        """Look for due logs now (a topic became compacted, a test wants a pass)."""
        self._wake.set()

    def pick(self, now_ms: int | None = None) -> Replica | None:
        """The replica whose log needs cleaning most, or None: a log past its
        ``max.compaction.lag.ms`` first, then the one with the highest dirty ratio."""
        now = time.monotonic()
        best: tuple[bool, float] | None = None
        chosen = None
        for key, r in list(self._replicas.items()):
            lg = r.log
            if not lg.config.compact or r.failed or r.topic_id is None:
                continue
            if self._retry_after.get(key, 0.0) > now:
                continue
            try:
                status = lg.cleaning_status(r.high_watermark, now_ms)
            except Exception:  # a log being closed or reopened: not now
                continue
            if not status.due:
                continue
            max_lag = lg.config.max_compaction_lag_ms
            overdue = (max_lag is not None and status.oldest_dirty_ms is not None
                       and (now_ms if now_ms is not None else int(time.time() * 1000)) - status.oldest_dirty_ms
                       >= max_lag)
            rank = (overdue, status.dirty_ratio)
            if best is None or rank > best:
                best, chosen = rank, r
        return chosen

    async def clean_next(self) -> CleanStats | None:
        """One pass over the log that needs it most; None if no log is due or the pass did nothing."""
        r = self.pick()
        if r is None:
            return None
        return await self.clean(r)

    async def clean(self, r: Replica, *, force: bool = False) -> CleanStats | None:
        """One pass over ``r``'s log, below its high watermark; the failures are handled here."""
        key = r.key
        lg = r.log
        removable = self.removable_offset(r)
        self.current = key
        started = time.monotonic()
        try:
            stats = await self._pass(lg, r.high_watermark, removable, force)
        except CleanAbandonedError:
            return None
        except LogFullError as exc:
            self.totals.failures += 1
            self._retry_after[key] = time.monotonic() + self._backoff_s
            log.warning("%s: cleaning pass abandoned, the disk is full (%s); the log is unchanged and "
                        "is tried again in %.0fs", r.name, exc, self._backoff_s)
            return None
        except CorruptBatchError as exc:
            self.totals.failures += 1
            r.fail(f"the log cleaner met a corrupt batch: {exc}")
            return None
        except (StorageError, OSError) as exc:
            self.totals.failures += 1
            r.fail(f"a cleaning pass failed: {exc!r}")
            return None
        finally:
            self.current = None
        self._retry_after.pop(key, None)
        if stats is None:
            return None
        t = self.totals
        t.passes += 1
        t.bytes_read += stats.bytes_read
        t.bytes_written += stats.bytes_written
        t.last_pass_at = time.time()
        log.info("%s: cleaned [%d, %d) in %.2fs: read %d bytes, wrote %d, removed %d records "
                 "(%d tombstones), %d batches emptied; tombstones removable below %d",
                 r.name, stats.start_offset, stats.end_offset, time.monotonic() - started, stats.bytes_read,
                 stats.bytes_written, stats.records_removed, stats.tombstones_removed, stats.batches_emptied,
                 removable)
        if key[0] in self._trim_head_topics:
            await self.trim_head(r)
        return stats

    async def _pass(self, lg: Log, hw: int, removable: int, force: bool) -> CleanStats | None:
        """Plan on the loop, run in the worker thread, swap on the loop.

        If this coroutine is cancelled (shutdown) while the worker runs, the plan is
        cancelled and released only once the worker has stopped: releasing closes the
        descriptors the worker reads and writes, and a descriptor number closed under a
        running thread may be reused by another file meanwhile.
        """
        plan = self.cleaner.plan(lg, hw, removable, force=force)
        if plan is None:
            return None
        fut = asyncio.get_running_loop().run_in_executor(self._executor, plan.run)
        try:
            await asyncio.wait({fut})  # (a cancellation here does not cancel ``fut``)
        except asyncio.CancelledError:
            plan.cancel()
            fut.add_done_callback(lambda f: plan.release(None if f.cancelled() else f.exception()))
            raise
        if fut.cancelled():  # the executor shut down before the pass started
            plan.release()
            return None
        error = fut.exception()
        if error is not None:
            plan.release(error)
            raise error
        return plan.swap()

    # -- trimming the head ---------------------------------------------------------------------

    async def trim_head(self, r: Replica) -> int:
        """Move ``r``'s log start to its first batch that holds a record, below its cleaned
        offset; returns the new log start. Reads at most :data:`TRIM_READ_BYTES` per loop turn,
        and gives up (leaving the log as it is) if the log changes under it."""
        lg = r.log
        start = lg.log_start_offset
        limit = min(lg.cleaned_offset, r.high_watermark)
        offset = start
        while offset < limit:
            if r.failed or r.log is not lg:
                return lg.log_start_offset
            try:
                sl = lg.read(offset, TRIM_READ_BYTES, max_offset=limit)
            except (CorruptBatchError, StorageError):
                return lg.log_start_offset  # a read that met damage flags the log itself
            if sl is None:
                break
            found = False
            for _, h in iter_batches(sl.read_bytes()[: sl.size], check_crc=False):
                if h.next_offset > limit or (h.record_count > 0 and not h.is_control):
                    found = True
                    break
                offset = h.next_offset
            if found:
                break
            await asyncio.sleep(0)
        if r.failed or r.log is not lg or lg.log_start_offset != start:
            return lg.log_start_offset
        if offset > start:
            # Still below the high watermark and the cleaned offset: Raft counts everything
            # below the log start as committed, and a cleaned offset is never truncated.
            assert offset <= r.high_watermark, (r.name, offset, r.high_watermark)
            try:
                lg.advance_log_start_offset(offset)
            except StorageError as exc:
                log.warning("%s: could not move the log start past its empty head: %s", r.name, exc)
                return lg.log_start_offset
            log.info("%s: log start moved from %d to %d past empty batches", r.name, start, offset)
        return lg.log_start_offset

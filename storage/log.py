"""``Log``: one partition's log, a directory of segments, which is also its Raft log.

What the directory holds::

    00000000000000000000.log          batches, contiguous in offset
    00000000000000000000.index        sparse offset index  (see strata.storage.index)
    00000000000000000000.timeindex    sparse time index
    00000000000000052137.log ...      the next segment, named by its base offset
    recovery-point-offset-checkpoint  offsets below it were fsynced, with their indexes
    log-start-offset-checkpoint       the first offset the log still holds
    leader-epoch-checkpoint           epoch -> start offset (strata.storage.epoch_cache)

Every method runs on one thread (the partition's event loop). The one exception is
a :class:`FlushJob`, which a :class:`~strata.storage.group_commit.GroupCommit` runs in
a worker thread: it holds ``dup``-ed file descriptors and paths captured on the loop
thread, touches no other state, and its result is applied back on the loop thread by
:meth:`Log.complete_flush`. Appends, reads, rolls and truncations may all happen
while it runs.

Recovery (on :meth:`Log.open`) lives in :mod:`strata.storage.log_loader`. A read that
meets a bad batch below the recovery point raises :class:`CorruptBatchError`, records it
in :attr:`Log.corruption`, and never serves it; repair is a reopen with ``full_check``.
"""

from __future__ import annotations

import errno
import logging
import os
import time
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from strata.client.batch import (
    LOG_OVERHEAD,
    PARTITION_LEADER_EPOCH_OFFSET,
    BatchHeader,
    CorruptBatchError,
    stamp,
    validate_batch,
)
from strata.storage.checkpoint import (
    LEADER_EPOCH_CHECKPOINT,
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    fsync_dir,
    write_offset_checkpoint,
)
from strata.storage.clean_state import (
    CLEANER_CHECKPOINT,
    CleanerState,
    CleaningStatus,
    cleaning_status,
)
from strata.storage.config import LogConfig
from strata.storage.epoch_cache import LeaderEpochCache
from strata.storage.errors import (
    BatchTooLargeError,
    InvalidAppendError,
    LogFullError,
    LogOfflineError,
    OffsetOutOfRangeError,
    StorageError,
)
from strata.storage.log_loader import RecoveryReport, recover
from strata.storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    MAX_BATCHES_PER_WRITE,
    TIMEINDEX_SUFFIX,
    FileSlice,
    LogSegment,
)

__all__ = ["AppendInfo", "FileSlice", "FlushJob", "Log", "RecoveryReport"]

log = logging.getLogger("strata.storage")

_STAMP_PREFIX = PARTITION_LEADER_EPOCH_OFFSET + 4

#: One batch on its way to disk: (buffers, base_offset, next_offset, size, max_timestamp, epoch).
#: A plain tuple: this is built once per batch on the hot path.
_Piece = tuple[list[Any], int, int, int, int, int]


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True, frozen=True)
class AppendInfo:
    """What an append wrote: offsets ``[base_offset, last_offset]`` in ``size`` bytes."""

    base_offset: int
    last_offset: int
    max_timestamp: int
    size: int
    batch_count: int
    #: A follower append's batch headers, as checked (the caller needs them for producer
    #: state and would otherwise walk the bytes again). Empty for a leader append.
    headers: list[BatchHeader] = field(default_factory=list)


@dataclass(slots=True)
class FlushJob:
    """One fsync round for one log, captured on the loop thread, run in any thread.

    It owns its file descriptors (``dup``-ed), so a segment deleted or closed
    meanwhile cannot make it fsync the wrong file.
    """

    fds: list[int]
    index_paths: list[str]
    dir_path: str | None
    target_offset: int
    generation: int
    synced_segments: list[LogSegment]
    recovery_point: int
    #: The leader-epoch cache and a snapshot of it, when its checkpoint lags: written
    #: before the data is fsynced, so that no durable batch's epoch is missing from it.
    epochs: tuple[LeaderEpochCache, int, list[tuple[int, int]]] | None = None

    def run(self) -> None:
        try:
            if self.epochs is not None:
                cache, changes, entries = self.epochs
                cache.write(changes, entries)
            for fd in self.fds:
                os.fsync(fd)
            for path in self.index_paths:
                try:
                    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                except FileNotFoundError:
                    continue  # deleted since (retention, truncation): nothing to keep
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            if self.dir_path is not None:
                fsync_dir(self.dir_path)
        finally:
            for fd in self.fds:
                os.close(fd)
            self.fds = []


class Log:
    """A partition log. Create with :meth:`Log.open`."""

    def __init__(self, path: str, config: LogConfig, clock: Callable[[], int]):
        self.dir = path
        self.config = config
        self._clock = clock
        self.segments: list[LogSegment] = []
        self._bases: list[int] = []
        self.log_start_offset = 0
        self.recovery_point = 0
        #: Offsets below it are fsynced.
        self.flushed_offset = 0
        self.epoch_cache = LeaderEpochCache(os.path.join(path, LEADER_EPOCH_CHECKPOINT))
        #: Compaction: the cleaner checkpoint and counters (``strata.storage.cleaner``).
        self.cleaner_state = CleanerState(os.path.join(path, CLEANER_CHECKPOINT))
        self.recovery = RecoveryReport()
        #: The first corrupt batch a read ran into, if any (the log needs a full check).
        self.corruption: CorruptBatchError | None = None
        self._size_bytes = 0
        self._unsynced: list[LogSegment] = []
        self._dir_dirty = False
        self._generation = 0
        self._last_flush_ms = clock()
        self._offline: BaseException | None = None
        self._closed = False

    # ======================================================================= open

    @classmethod
    def open(
        cls,
        path: str,
        config: LogConfig | None = None,
        *,
        clock: Callable[[], int] | None = None,
        full_check: bool = False,
    ) -> Log:
        """Open (creating if needed) the log in directory ``path`` and recover it."""
        self = cls(os.fspath(path), config or LogConfig(), clock or _wall_clock_ms)
        os.makedirs(self.dir, exist_ok=True)
        recover(self, full_check)
        return self

    # ================================================================ properties

    @property
    def active_segment(self) -> LogSegment:
        return self.segments[-1]

    @property
    def log_end_offset(self) -> int:
        return self.segments[-1].next_offset

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    @property
    def segment_count(self) -> int:
        return len(self.segments)

    @property
    def latest_epoch(self) -> int | None:
        return self.epoch_cache.latest_epoch

    # -------------------------------------------------- compaction (strata.storage.cleaner)

    @property
    def cleaned_offset(self) -> int:
        """Offsets below it are clean on this replica (what the leader collects from every
        replica; their minimum is the ``removable_offset`` for tombstones)."""
        return min(max(self.cleaner_state.cleaned_offset, self.log_start_offset), self.log_end_offset)

    def cleaning_status(self, max_offset: int | None = None, now_ms: int | None = None) -> CleaningStatus:
        """The clean/dirty split below ``max_offset`` (the high watermark; ``None``: every
        closed segment), and whether a clean is due."""
        return cleaning_status(self, max_offset, self._clock() if now_ms is None else now_ms)

    @property
    def dirty_ratio(self) -> float:
        """Dirty bytes / (clean + dirty) bytes of the closed segments (metrics)."""
        return self.cleaning_status().dirty_ratio

    @property
    def cleaner_backlog_bytes(self) -> int:
        """Dirty bytes the cleaner could clean now, ignoring the high watermark (metrics)."""
        return self.cleaning_status().dirty_bytes

    @property
    def last_clean_time(self) -> int | None:
        """When the last cleaning pass swapped in (log clock, ms); ``None``: not since open."""
        return self.cleaner_state.last_clean_ms

    @property
    def bytes_cleaned(self) -> int:
        """Bytes of log read by cleaning passes since open (metrics)."""
        return self.cleaner_state.bytes_cleaned

    def _replace_segments(self, old: list[LogSegment], new: LogSegment) -> None:
        """Put ``new`` in place of the consecutive closed segments ``old`` (a cleaner swap,
        whose files are already renamed)."""
        i = next(i for i, s in enumerate(self.segments) if s is old[0])
        assert self.segments[i : i + len(old)] == old and i + len(old) < len(self.segments), "never the active one"
        assert new.base_offset == old[0].base_offset and new.next_offset == old[-1].next_offset
        self.segments[i : i + len(old)] = [new]
        self._bases[i : i + len(old)] = [new.base_offset]
        self._size_bytes += new.size - sum(s.size for s in old)
        self._unsynced = [s for s in self._unsynced if all(s is not o for o in old)]
        for s in old:
            s.close()
        self._check_invariants()

    def __repr__(self) -> str:
        return (f"Log({self.dir!r}, start={self.log_start_offset}, end={self.log_end_offset}, "
                f"flushed={self.flushed_offset}, segments={len(self.segments)})")

    def _check_invariants(self) -> None:
        assert self.segments, "a log always has an active segment"
        assert self.log_start_offset <= self.log_end_offset, (self.log_start_offset, self.log_end_offset)
        assert self.segments[0].base_offset <= self.log_start_offset or len(self.segments) == 1
        assert self.flushed_offset <= self.log_end_offset, (self.flushed_offset, self.log_end_offset)
        assert self.recovery_point <= self.log_end_offset, (self.recovery_point, self.log_end_offset)

    def _check_writable(self) -> None:
        if self._closed:
            raise StorageError(f"partition {self.dir}: the log is closed")
        if self._offline is not None:
            raise LogOfflineError(
                f"partition {self.dir}: the log went offline after a failed write or fsync "
                f"({self._offline}); reopen it to recover"
            )

    # ==================================================================== append

    def _validate(self, data: bytes | bytearray | memoryview) -> list[BatchHeader]:
        """Headers of every batch in ``data``, after checking lengths, CRCs and sizes."""
        mv = memoryview(data)
        if len(mv) == 0:
            raise InvalidAppendError("an append needs at least one record batch")
        headers: list[BatchHeader] = []
        pos = 0
        limit = self.config.max_batch_bytes
        while pos < len(mv):
            h = validate_batch(mv, pos)  # raises CorruptBatchError: lengths, magic, record count, CRC
            if h.size > limit:
                raise BatchTooLargeError(h.size, limit)
            headers.append(h)
            pos += h.size
        return headers

    def append_as_leader(
        self,
        batch_bytes: bytes | bytearray | memoryview,
        leader_epoch: int,
        headers: list[BatchHeader] | None = None,
    ) -> AppendInfo:
        """Append one or more producer batches, assigning offsets from the log end offset.

        Each batch is CRC-checked first, then stamped with its ``baseOffset`` and
        ``partitionLeaderEpoch`` (both outside the CRC). The caller's buffer is not
        modified: the stamped 16-byte prefix is written with the rest in one vectored
        write. Durability: see ``LogConfig.flush_policy``.

        ``headers``: the caller already checked these batches (``validate_batches``: lengths
        and CRCs) and passes their headers, so the batches are not walked a second time.
        """
        self._check_writable()
        if leader_epoch < 0:
            raise ValueError(f"leader epoch must be >= 0, got {leader_epoch}")
        latest = self.epoch_cache.latest_epoch
        if latest is not None and leader_epoch < latest:
            raise InvalidAppendError(
                f"partition {self.dir}: leader epoch {leader_epoch} is older than the log's latest {latest}"
            )
        if headers is None:
            headers = self._validate(batch_bytes)
        else:
            limit = self.config.max_batch_bytes
            for h in headers:
                if h.size > limit:
                    raise BatchTooLargeError(h.size, limit)
        mv = memoryview(batch_bytes)
        offset = self.log_end_offset
        pieces: list[_Piece] = []
        pos = 0
        for h in headers:
            size = h.batch_length + LOG_OVERHEAD
            prefix = bytearray(mv[pos : pos + _STAMP_PREFIX])
            stamp(prefix, 0, offset, leader_epoch)
            nxt = offset + h.last_offset_delta + 1
            pieces.append(([prefix, mv[pos + _STAMP_PREFIX : pos + size]], offset, nxt, size,
                           h.max_timestamp, leader_epoch))
            offset = nxt
            pos += size
        return self._append(pieces)

    def append_as_follower(self, batches_bytes: bytes | bytearray | memoryview) -> AppendInfo:
        """Append batches already stamped by the leader; the first must start at the log end.

        Every batch is CRC-checked, offsets must be contiguous and epochs must not go
        back (Raft's log matching guarantees both for a correct leader).
        """
        self._check_writable()
        headers = self._validate(batches_bytes)
        mv = memoryview(batches_bytes)
        expected = self.log_end_offset
        epoch = self.epoch_cache.latest_epoch or 0
        pieces: list[_Piece] = []
        pos = 0
        for h in headers:
            if h.base_offset != expected:
                raise InvalidAppendError(
                    f"partition {self.dir}: batch base offset {h.base_offset} is not the expected "
                    f"{expected} (log end offset {self.log_end_offset})"
                )
            if h.partition_leader_epoch < epoch:
                raise InvalidAppendError(
                    f"partition {self.dir}: batch at offset {h.base_offset} has leader epoch "
                    f"{h.partition_leader_epoch}, older than {epoch}"
                )
            size = h.size
            pieces.append(([mv[pos : pos + size]], h.base_offset, h.next_offset, size, h.max_timestamp,
                           h.partition_leader_epoch))
            epoch = h.partition_leader_epoch
            expected = h.next_offset
            pos += size
        info = self._append(pieces)
        info.headers.extend(headers)
        return info

    def _append(self, pieces: list[_Piece]) -> AppendInfo:
        start_leo = self.log_end_offset
        start_segments = len(self.segments)
        cache = self.epoch_cache
        latest = cache.latest_epoch
        cache_changed = False
        for p in pieces:
            if latest is None or p[5] > latest:
                cache.assign(p[5], p[1])
                latest = p[5]
                cache_changed = True
        now = self._clock()
        try:
            # The epoch checkpoint is not written here (two fsyncs on every new term, on
            # every replica: most of the cost of electing many groups at once) but by the
            # next flush, before it fsyncs the data (``begin_flush``). A batch that reaches
            # the disk without that flush lies past the recovery point, where recovery
            # re-derives epochs from the batches themselves.
            i = 0
            n = len(pieces)
            while i < n:
                self._maybe_roll(pieces[i][3], pieces[i][2] - 1, now)
                seg = self.segments[-1]
                room = self.config.segment_bytes - seg.size
                j, total = i, 0
                while j < n and j - i < MAX_BATCHES_PER_WRITE and (j == i or total + pieces[j][3] <= room):
                    total += pieces[j][3]
                    j += 1
                if j == i + 1:
                    buffers, described = pieces[i][0], [pieces[i][1:5]]
                else:
                    buffers = [b for p in pieces[i:j] for b in p[0]]
                    described = [p[1:5] for p in pieces[i:j]]
                seg.append(buffers, described, total)
                if seg.roll_reference_ms is None:
                    seg.roll_reference_ms = now
                self._size_bytes += total
                i = j
        except OSError as e:
            self._undo_append(start_leo, start_segments, cache_changed)
            if isinstance(e, LogFullError):
                raise
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise LogFullError(self.dir, str(e)) from e
            self._offline = e
            log.error("partition %s: write failed (%s); the log is offline until reopened", self.dir, e)
            raise LogOfflineError(f"partition {self.dir}: write failed: {e}") from e
        last = pieces[-1]
        assert self.log_end_offset == last[2]
        if n == 1:
            info = AppendInfo(last[1], last[2] - 1, last[4], last[3], 1)
        else:
            info = AppendInfo(pieces[0][1], last[2] - 1, max(p[4] for p in pieces), sum(p[3] for p in pieces), n)
        if self.config.flush_policy == "interval" and now - self._last_flush_ms >= self.config.flush_interval_ms:
            self.flush()
        return info

    def _undo_append(self, start_leo: int, start_segments: int, cache_changed: bool) -> None:
        """Put the log back as it was before a failed append (segments written are cut back)."""
        while len(self.segments) > start_segments:
            seg = self.segments.pop()
            self._bases.pop()
            self._size_bytes -= seg.size
            try:
                seg.delete()
            except OSError:
                pass
        seg = self.active_segment
        if seg.next_offset > start_leo:
            self._size_bytes -= seg.truncate_to(start_leo)
        if cache_changed and self.epoch_cache.truncate_from_end(start_leo):
            try:
                self.epoch_cache.flush()
            except OSError:
                pass  # on open the cache is cut to the log end anyway
        assert self.log_end_offset == start_leo

    # ====================================================================== roll

    def _maybe_roll(self, size: int, last_offset: int, now: int) -> None:
        seg = self.segments[-1]
        if seg.size == 0:
            return
        if (
            seg.size + size > self.config.segment_bytes
            or (seg.roll_reference_ms is not None and now - seg.roll_reference_ms >= self.config.segment_ms)
            or last_offset - seg.base_offset > 0xFFFFFFFF
        ):
            self.roll()

    def roll(self) -> LogSegment:
        """Start a new active segment at the log end offset (no-op if the active one is empty)."""
        self._check_writable()
        old = self.active_segment
        if old.is_empty:
            return old
        try:
            new = LogSegment.create(self.dir, self.log_end_offset, self.config.index_interval_bytes)
        except OSError as e:
            prefix = os.path.join(self.dir, f"{self.log_end_offset:020d}")
            for suffix in (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX):
                try:
                    os.unlink(prefix + suffix)
                except FileNotFoundError:
                    pass
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise LogFullError(prefix + LOG_SUFFIX, "creating a new segment") from e
            raise
        try:
            old.persist_indexes(fsync=False)
        except OSError as e:
            # Indexes are derived data; the next flush or close writes them again.
            log.warning("partition %s: could not write the indexes of %s (%s)", self.dir, old.log_path, e)
        self.segments.append(new)
        self._bases.append(new.base_offset)
        self._unsynced.append(old)
        self._dir_dirty = True
        return new

    # ===================================================================== flush

    def begin_flush(self) -> FlushJob | None:
        """Capture what an fsync round must cover; ``None`` if everything is already durable."""
        self._check_writable()
        if (self.flushed_offset >= self.log_end_offset and not self._unsynced and not self._dir_dirty
                and not self.epoch_cache.unsaved):
            return None
        for seg in self._unsynced:
            if seg.offset_index._on_disk < len(seg.offset_index) or seg.time_index._on_disk < len(seg.time_index):
                seg.persist_indexes(fsync=False)
        segs = [*self._unsynced, self.active_segment]
        job = FlushJob(
            fds=[os.dup(s.fd) for s in segs],
            index_paths=[p for s in self._unsynced for p in (s.offset_index.path, s.time_index.path)],
            dir_path=self.dir if self._dir_dirty else None,
            target_offset=self.log_end_offset,
            generation=self._generation,
            synced_segments=list(self._unsynced),
            recovery_point=self.active_segment.base_offset,
            epochs=(self.epoch_cache, *self.epoch_cache.snapshot()) if self.epoch_cache.unsaved else None,
        )
        self._dir_dirty = False
        return job

    def complete_flush(self, job: FlushJob) -> None:
        """Apply a finished :class:`FlushJob` (on the loop thread)."""
        self._unsynced = [s for s in self._unsynced if all(s is not t for t in job.synced_segments)]
        self._last_flush_ms = self._clock()
        if job.generation != self._generation:
            return  # truncated meanwhile: what the job covered may no longer be what is there
        if job.target_offset > self.flushed_offset:
            self.flushed_offset = job.target_offset
        if job.recovery_point > self.recovery_point and not self._closed:
            self.recovery_point = job.recovery_point
            self._write_recovery_point()
        self._check_invariants()

    def abort_flush(self, job: FlushJob, error: BaseException) -> None:
        """An fsync failed: the on-disk state is unknown, so the log goes offline."""
        for fd in job.fds:
            os.close(fd)
        job.fds = []
        self._dir_dirty = True
        self._offline = error
        log.error("partition %s: fsync failed (%s); the log is offline until reopened", self.dir, error)

    def flush(self) -> None:
        """fsync everything appended so far (in this thread); advances ``flushed_offset``."""
        job = self.begin_flush()
        if job is None:
            return
        try:
            job.run()
        except OSError as e:
            self.abort_flush(job, e)
            raise LogOfflineError(f"partition {self.dir}: fsync failed: {e}") from e
        self.complete_flush(job)

    def _write_recovery_point(self) -> None:
        write_offset_checkpoint(os.path.join(self.dir, RECOVERY_POINT_CHECKPOINT), self.recovery_point)

    # ====================================================================== read

    def _segment_for(self, offset: int) -> int:
        return max(bisect_right(self._bases, offset) - 1, 0)

    def read(
        self,
        offset: int,
        max_bytes: int,
        max_offset: int | None = None,
        *,
        zero_copy_min_bytes: int | None = None,
    ) -> FileSlice | None:
        """Whole batches from the batch containing ``offset``, from one segment.

        Stops before any batch whose last offset is >= ``max_offset`` (the high
        watermark) and when ``max_bytes`` would be exceeded, but returns at least one
        whole batch when one is available. ``None`` when there is nothing to return yet
        (``offset`` is the log end, or the batch there reaches ``max_offset``).
        Raises :class:`OffsetOutOfRangeError` below the log start or past the log end,
        :class:`CorruptBatchError` rather than serving a damaged batch.

        With ``zero_copy_min_bytes``, a read that returns at least that many bytes
        finds its batches by their headers alone (:meth:`LogSegment.locate`) and comes
        back with ``data=None`` and no CRC check, for a server to ``sendfile``; smaller
        reads are ordinary reads. The broker's fetch uses this for catch-up reads,
        where copying and checksumming every byte in Python is the cost that matters.
        """
        if self._closed:
            raise StorageError(f"partition {self.dir}: the log is closed")
        if offset < self.log_start_offset or offset > self.log_end_offset:
            raise OffsetOutOfRangeError(offset, self.log_start_offset, self.log_end_offset, self.dir)
        if offset == self.log_end_offset or (max_offset is not None and offset >= max_offset):
            return None
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        i = self._segment_for(offset)
        try:
            while i < len(self.segments):
                seg = self.segments[i]
                if offset < seg.next_offset:
                    if (
                        zero_copy_min_bytes is not None
                        and min(max_bytes, seg.bytes_after_index(offset)) >= zero_copy_min_bytes
                    ):
                        located = seg.locate(offset, max_bytes, max_offset)
                        if located is None or located.size >= zero_copy_min_bytes:
                            return located
                    return seg.read(offset, max_bytes, max_offset, self.config.verify_crc_on_read)
                i += 1
        except CorruptBatchError as e:
            if self.corruption is None:
                self.corruption = e
            log.error("partition %s: segment %s: read at offset %d hit a corrupt batch: %s; not serving it "
                      "(reopen with full_check to repair)", self.dir, os.path.basename(seg.log_path), offset, e)
            raise
        return None

    # ================================================================ truncation

    def truncate_to(self, offset: int) -> None:
        """Drop every offset >= ``offset``, which must be a batch boundary (Raft conflict)."""
        self._check_writable()
        if offset >= self.log_end_offset:
            return
        if offset < self.log_start_offset:
            raise ValueError(f"partition {self.dir}: cannot truncate to {offset}, below the log start "
                             f"offset {self.log_start_offset}; use truncate_fully_and_start_at")
        i = self._segment_for(offset)
        keep = self.segments[i]
        if offset > keep.base_offset:
            found = keep.batch_at(offset)
            if found is None or found[1].base_offset != offset:
                raise ValueError(f"partition {self.dir}: offset {offset} is not a batch boundary")
        self.cleaner_state.truncate(offset)
        for seg in self.segments[i + 1 :]:
            self._size_bytes -= seg.size
            seg.delete()
        del self.segments[i + 1 :]
        del self._bases[i + 1 :]
        self._unsynced = [s for s in self._unsynced if s is not keep and s in self.segments]
        self._size_bytes -= keep.truncate_to(offset)
        keep.persist_indexes(fsync=False)
        self._generation += 1
        self.flushed_offset = min(self.flushed_offset, offset)
        if self.recovery_point > offset:
            self.recovery_point = offset
            self._write_recovery_point()
        if self.epoch_cache.truncate_from_end(offset):
            self.epoch_cache.flush()
        self._check_invariants()

    def truncate_fully_and_start_at(self, offset: int, epoch: int | None = None) -> None:
        """Replace the whole log with an empty one starting at ``offset``.

        For a follower whose log end is below the leader's log start (a Raft snapshot,
        for a log). ``epoch`` is the leader epoch of ``offset - 1`` (Raft's
        ``lastIncludedTerm``), kept so that ``epoch_for_offset(offset - 1)`` answers.
        """
        self._check_writable()
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        self.cleaner_state.reset(offset)
        for seg in self.segments:
            seg.delete()
        self.segments = [LogSegment.create(self.dir, offset, self.config.index_interval_bytes)]
        self._bases = [offset]
        self._unsynced = []
        self._size_bytes = 0
        self._generation += 1
        fsync_dir(self.dir)
        self._dir_dirty = False
        self.log_start_offset = offset
        self.flushed_offset = offset
        self.recovery_point = offset
        write_offset_checkpoint(os.path.join(self.dir, LOG_START_OFFSET_CHECKPOINT), offset)
        self.epoch_cache.reset(epoch if offset > 0 else None, offset - 1)
        self.epoch_cache.flush()
        self._write_recovery_point()
        self._check_invariants()

    # ================================================================= retention

    def advance_log_start_offset(self, offset: int) -> None:
        """Move the log start offset forward (Kafka's DeleteRecords, or after retention),
        deleting the segments wholly below it (never the active one)."""
        self._check_writable()
        if offset <= self.log_start_offset:
            return
        if offset > self.log_end_offset:
            raise OffsetOutOfRangeError(offset, self.log_start_offset, self.log_end_offset, self.dir)
        self.log_start_offset = offset
        while len(self.segments) > 1 and self.segments[1].base_offset <= offset:
            self._delete_oldest()
        self._checkpoint_log_start()

    def apply_retention(self, now_ms: int | None = None) -> int:
        """Delete the oldest whole segments beyond ``retention_bytes`` or older than
        ``retention_ms`` (by their largest batch timestamp); never the active segment.
        Returns how many segments were deleted. Nothing is deleted unless the
        ``cleanup_policy`` includes ``delete`` (a compacted topic keeps every key's
        latest record for as long as the topic exists)."""
        self._check_writable()
        if not self.config.delete:
            return 0
        now = self._clock() if now_ms is None else now_ms
        deleted = 0
        limit = self.config.retention_bytes
        if limit is not None:
            while len(self.segments) > 1 and self._size_bytes - self.segments[0].size >= limit:
                self._delete_oldest()
                deleted += 1
        age = self.config.retention_ms
        if age is not None:
            while len(self.segments) > 1 and now - self._segment_time(self.segments[0]) > age:
                self._delete_oldest()
                deleted += 1
        if deleted:
            self.log_start_offset = max(self.log_start_offset, self.segments[0].base_offset)
            self._checkpoint_log_start()
            log.info("partition %s: retention deleted %d segment(s); log start offset is now %d",
                     self.dir, deleted, self.log_start_offset)
        return deleted

    @staticmethod
    def _segment_time(seg: LogSegment) -> int:
        if seg.max_timestamp >= 0:
            return seg.max_timestamp
        return int(os.stat(seg.log_path).st_mtime * 1000)  # batches without timestamps

    def _delete_oldest(self) -> None:
        assert len(self.segments) > 1, "never delete the active segment"
        seg = self.segments.pop(0)
        self._bases.pop(0)
        self._size_bytes -= seg.size
        self._unsynced = [s for s in self._unsynced if s is not seg]
        seg.delete()

    def _checkpoint_log_start(self) -> None:
        self.log_start_offset = max(self.log_start_offset, self.segments[0].base_offset)
        if self.epoch_cache.unsaved:
            # Epochs not checkpointed yet (they wait for the next flush) can be re-derived
            # from their batches only while those are in the log: save them before the log
            # start moves past the batches, or the epoch of log_start - 1 could be lost.
            self.epoch_cache.flush()
        write_offset_checkpoint(os.path.join(self.dir, LOG_START_OFFSET_CHECKPOINT), self.log_start_offset)
        if self.epoch_cache.truncate_from_start(self.log_start_offset):
            self.epoch_cache.flush()
        self._check_invariants()

    # ==================================================================== epochs

    def epoch_for_offset(self, offset: int) -> int | None:
        """Leader epoch (= Raft term) of ``offset``, for any offset in
        ``[log_start_offset - 1, log_end_offset)``; ``None`` outside it or if unknown."""
        if offset < max(self.log_start_offset - 1, 0) or offset >= self.log_end_offset:
            return None
        return self.epoch_cache.epoch_for_offset(offset)

    def end_offset_for_epoch(self, epoch: int) -> tuple[int, int]:
        """Kafka's OffsetsForLeaderEpoch: ``(largest epoch <= epoch, its end offset)``."""
        return self.epoch_cache.end_offset_for_epoch(epoch, self.log_end_offset)

    def offset_for_timestamp(self, timestamp_ms: int) -> int | None:
        """Base offset of the first batch whose max timestamp is >= ``timestamp_ms``
        (batch granularity: the records before the first match in that batch come along),
        never below the log start offset; ``None`` if no batch is that recent."""
        for seg in self.segments:
            if seg.max_timestamp >= timestamp_ms:
                found = seg.find_timestamp(timestamp_ms)
                if found is not None:
                    return max(found, self.log_start_offset)
        return None

    # ===================================================================== close

    def close(self) -> None:
        """Flush, write the indexes and every checkpoint (so the next open need not
        rescan), and close the files."""
        if self._closed:
            return
        try:
            if self._offline is None:
                self.flush()
                active = self.active_segment
                try:
                    active.persist_indexes(fsync=True)
                    self.recovery_point = self.log_end_offset
                    self._write_recovery_point()
                    write_offset_checkpoint(os.path.join(self.dir, LOG_START_OFFSET_CHECKPOINT),
                                            self.log_start_offset)
                    self.epoch_cache.flush()
                except OSError as e:
                    # Everything appended is fsynced; only the shortcut for the next open is lost.
                    log.warning("partition %s: could not write checkpoints on close (%s); "
                                "the next open will scan from the older recovery point", self.dir, e)
        finally:
            self._release()

    def abandon(self) -> None:
        """Close the files without flushing or checkpointing: what a killed process
        leaves behind. For crash tests and simulations."""
        self._release()

    def _release(self) -> None:
        self._closed = True
        if self.cleaner_state.in_progress is not None:
            self.cleaner_state.in_progress.cancel()
        for seg in self.segments:
            seg.close()
        self._unsynced = []

    def __enter__(self) -> Log:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

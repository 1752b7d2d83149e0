"""The log cleaner: compaction of ``cleanup_policy=compact`` logs (``docs/compaction.md``).

One cleaning pass is three steps, so that the expensive one runs off the event loop::

    plan = cleaner.plan(log, max_offset=hw, removable_offset=r)   # loop thread: O(segments)
    if plan is not None:
        try:
            await loop.run_in_executor(pool, plan.run)               # worker thread: the I/O and CPU
        except BaseException as e:
            plan.release(e)                                          # loop thread
            raise
        stats = plan.swap()                                          # loop thread: renames, O(groups)

(:meth:`LogCleaner.clean` does the three in a row; :meth:`LogCleaner.clean_in_executor`
is the coroutine above.) While ``run`` works, the log keeps appending, reading,
rolling, applying retention and truncating on its own thread: the plan captured
what ``run`` reads (``dup``-ed descriptors of closed segments, byte positions) and
``run`` touches nothing of the log's. ``swap`` re-checks what it depends on (the log
is open and writable, every segment it replaces is still there, no truncation went
below the cleaned range) and abandons the part that no longer holds.

``run``:

1. **Map** the dirty section ``[cleaned_offset, cleanable_end)``: key digest -> offset
   of the key's latest record (:class:`~strata.storage.key_map.KeyOffsetMap`). When the
   map is full, the pass ends at the offset it reached (``map_end``); the next pass
   goes on from there.
2. **Copy** every closed segment from the log start to ``map_end``, group by group
   (adjacent segments whose sizes add up to at most ``segment_bytes`` are merged into
   one file, never their batches), dropping a record when a later offset is mapped
   for its key, or when it is a tombstone that may go. A batch keeps its offsets and
   header (:mod:`strata.storage.batch_rewrite`); one left with no records stays as an
   empty batch. A group in which nothing changes and nothing merges is not written.
3. Write each group's new segment under a temporary name and fsync it.

A tombstone that is its key's latest record goes only below ``removable_offset`` (the
minimum, over all replicas, of how far each has cleaned: the leader's to give) and
only ``delete_retention_ms`` after its offset was first cleaned (recorded in the
cleaner checkpoint, :mod:`strata.storage.clean_state`). Control batches (Raft no-ops,
membership) are never changed; records without a key are kept.

A batch whose CRC fails raises :class:`CorruptBatchError` and nothing is swapped. A
full disk raises :class:`LogFullError`; the temporary files are removed and the log is
as it was. A batch with a valid CRC whose records cannot be read (or whose codec is
not installed) is the producer's doing, not damage: it is kept whole.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from strata.client.batch import (
    HEADER_SIZE,
    BatchHeader,
    CorruptBatchError,
    compute_crc,
    read_header,
)
from strata.storage.batch_rewrite import (
    UndecodableRecords,
    rebuild_batch,
    records_area,
    scan_records,
)
from strata.storage.clean_state import CleaningStatus, cleaning_status
from strata.storage.config import MAX_SEGMENT_BYTES
from strata.storage.errors import LogFullError, StorageError
from strata.storage.key_map import KeyOffsetMap
from strata.storage.log import Log
from strata.storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    MAX_BATCHES_PER_WRITE,
    TIMEINDEX_SUFFIX,
    LogSegment,
    segment_prefix,
)
from strata.storage.segment_swap import CLEANED_SUFFIX, remove_files, swap_steps
from strata.storage.throttle import Throttle

__all__ = ["CleanAbandonedError", "CleanPlan", "CleanStats", "CleanerConfig", "LogCleaner"]

log = logging.getLogger("strata.storage")


class CleanAbandonedError(StorageError):
    """The pass was given up: the log was closed or truncated into the range being cleaned."""


@dataclass(slots=True, frozen=True)
class CleanerConfig:
    """The broker's cleaner settings (Kafka's ``log.cleaner.*``), shared by every log."""

    #: Memory for one pass's key map (``log.cleaner.dedupe.buffer.size``; ~700,000 keys).
    map_bytes: int = 128 << 20
    #: Read + write budget of all cleaning in bytes/s (``log.cleaner.io.max.bytes.per.second``);
    #: ``None``: unthrottled.
    io_bytes_per_second: float | None = None
    #: Unit of reads and writes, and the throttle's granularity.
    io_chunk_bytes: int = 1 << 20
    #: Release the GIL (``time.sleep(0)``) after this much work, at a batch boundary;
    #: ``None``: never. A thread that computes in pure Python keeps the GIL for the
    #: interpreter's whole switch interval (5 ms) each time the event loop's thread
    #: lets go of it for a system call, so without this the loop waits up to 5 ms after
    #: every write or send (``benchmarks/bench_compaction.py`` measures both).
    yield_every_ms: float | None = 0.5

    def __post_init__(self) -> None:
        if self.io_bytes_per_second is not None and self.io_bytes_per_second <= 0:
            raise ValueError(f"io_bytes_per_second must be positive or None, got {self.io_bytes_per_second}")
        if not 64 << 10 <= self.io_chunk_bytes <= 64 << 20:
            raise ValueError(f"io_chunk_bytes must be in [64 KiB, 64 MiB], got {self.io_chunk_bytes}")
        if self.yield_every_ms is not None and self.yield_every_ms < 0:
            raise ValueError(f"yield_every_ms must be >= 0 or None, got {self.yield_every_ms}")


@dataclass(slots=True)
class CleanStats:
    """What one pass did."""

    start_offset: int
    end_offset: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    records_removed: int = 0
    tombstones_removed: int = 0
    batches_rewritten: int = 0
    batches_emptied: int = 0
    #: Batches kept whole because their records could not be read (valid CRC).
    batches_undecodable: int = 0
    keys_mapped: int = 0
    segments_replaced: int = 0
    segments_written: int = 0
    duration_s: float = 0.0


@dataclass(slots=True)
class _Source:
    """A closed segment as the plan found it; ``fd`` is the plan's own ``dup``."""

    segment: LogSegment
    fd: int
    base_offset: int
    next_offset: int
    size: int
    path: str


@dataclass(slots=True)
class _Group:
    sources: list[_Source]
    output: LogSegment | None = None


@dataclass(slots=True, repr=False)
class CleanPlan:
    """One cleaning pass over one log: made by :meth:`LogCleaner.plan` (loop thread),
    :meth:`run` (any thread, once), then :meth:`swap` or :meth:`release` (loop thread)."""

    log: Log
    sources: list[_Source]
    #: The dirty section to map: ``[dirty_start, cleanable_end)``.
    dirty_start: int
    cleanable_end: int
    #: Where the map starts reading: position and base offset of the index entry at or
    #: below ``dirty_start`` in the source that holds it.
    map_from: tuple[int, int, int]
    removable_offset: int
    #: Tombstones below this offset may go (``removable_offset`` and the delete horizon).
    tombstone_end: int
    now_ms: int
    segment_bytes: int
    index_interval_bytes: int
    config: CleanerConfig
    throttle: Throttle | None
    key_map: KeyOffsetMap
    stats: CleanStats
    map_end: int = -1
    groups: list[_Group] = field(default_factory=list)
    #: Lowest offset a truncation cut the log to while the plan was out.
    truncated_to: int | None = None
    _cancel: threading.Event = field(default_factory=threading.Event)
    _ran: bool = False
    _finished: bool = False
    _token: str = field(default_factory=lambda: os.urandom(6).hex())

    @property
    def read_end(self) -> int:
        """The end of what ``run`` reads: a truncation below it cuts a file under the plan
        (the sources end at segment boundaries, at most the high watermark)."""
        return max(self.cleanable_end, self.sources[-1].next_offset if self.sources else 0)

    def __repr__(self) -> str:
        return (f"CleanPlan({self.log.dir!r}, dirty=[{self.dirty_start}, {self.cleanable_end}), "
                f"map_end={self.map_end}, groups={len(self.groups)}, removable={self.removable_offset})")

    # ---------------------------------------------------------------- loop side

    def invalidate(self, truncated_to: int) -> None:
        """The log was cut to ``truncated_to`` (loop thread). Cancel the work if that
        reaches into what it reads (then ``swap`` abandons the pass too: a source it
        would replace lost its tail); the swap re-checks in any case."""
        self.truncated_to = truncated_to if self.truncated_to is None else min(self.truncated_to, truncated_to)
        if truncated_to < self.read_end:
            self._cancel.set()

    def cancel(self) -> None:
        """Stop ``run`` at its next chunk (the log is closing)."""
        self._cancel.set()

    def release(self, error: BaseException | None = None) -> None:
        """End the plan without swapping: delete what ``run`` wrote, close the descriptors.

        Pass the exception ``run`` raised, if any: a :class:`CorruptBatchError` is
        recorded in ``log.corruption``, as a read that meets one does (the replica needs
        a full check and repair; nothing was swapped).
        """
        if isinstance(error, CorruptBatchError) and not self._cancel.is_set():
            lg = self.log
            if lg.corruption is None:
                lg.corruption = error
            log.error("partition %s: the cleaner met a corrupt batch: %s; nothing was swapped "
                      "(reopen with full_check to repair)", lg.dir, error)
        if self._finished:
            return
        self._finished = True
        for g in self.groups:
            if g.output is not None:
                remove_files(g.output)
                g.output = None
        for s in self.sources:
            if s.fd >= 0:
                os.close(s.fd)
                s.fd = -1
        if self.log.cleaner_state.in_progress is self:
            self.log.cleaner_state.in_progress = None

    def swap(self) -> CleanStats | None:
        """Put the cleaned segments in place; ``None`` if the pass had to be abandoned.

        Each group's swap is crash-safe on its own (:mod:`strata.storage.segment_swap`),
        so groups whose segments are all still there go in even when another group of
        the pass cannot (retention took part of it); the cleaner checkpoint moves to
        ``map_end`` only if every group went in.
        """
        if not self._ran or self._finished:
            raise RuntimeError("swap() needs a plan that has run and was not released")
        lg = self.log
        try:
            if lg._closed or lg._offline is not None or self._cancel.is_set() or (
                    self.truncated_to is not None and self.truncated_to < self.map_end):
                log.info("partition %s: cleaning pass abandoned (log closed, offline or truncated "
                         "into the cleaned range)", lg.dir)
                return None
            complete = True
            for g in self.groups:
                present = sum(any(s.segment is seg for seg in lg.segments) for s in g.sources)
                if present < len(g.sources):
                    # Wholly gone: retention took it, nothing to swap. Partly gone: its
                    # survivors keep what this pass meant to drop, so the pass is incomplete.
                    complete = complete and present == 0
                    continue
                if g.output is not None:
                    self._swap_group(g)
            if not complete:
                log.info("partition %s: retention deleted part of a group being cleaned; "
                         "the cleaned offset stays at %d", lg.dir, self.dirty_start)
                return None
            state = lg.cleaner_state
            try:
                state.advance(self.map_end, self.now_ms, lg.config.delete_retention_ms)
            except OSError as e:
                # The segments are in; only the checkpoint is behind, which makes the next
                # open redo some cleaning and keep tombstones a little longer.
                log.warning("partition %s: could not write the cleaner checkpoint (%s)", lg.dir, e)
            state.last_clean_ms = self.now_ms
            state.bytes_cleaned += self.stats.bytes_read
            state.passes += 1
            self.stats.end_offset = self.map_end
            return self.stats
        finally:
            self.release()

    def _swap_group(self, g: _Group) -> None:
        lg = self.log
        new = g.output
        assert new is not None
        old = [s.segment for s in g.sources]
        try:
            for _ in swap_steps(lg.dir, new, old):
                pass
        except OSError as e:
            if os.path.exists(new.log_path) and new.log_path.endswith(CLEANED_SUFFIX):
                raise  # nothing committed: release() removes the temporary files
            g.output = None
            lg._offline = e
            log.error("partition %s: a cleaned segment's swap failed after its commit point (%s); the log "
                      "is offline until reopened, and recovery finishes the swap", lg.dir, e)
            raise
        g.output = None
        lg._replace_segments(old, new)
        self.stats.segments_replaced += len(old)
        self.stats.segments_written += 1

    # -------------------------------------------------------------- worker side

    def run(self) -> CleanPlan:
        """Map the dirty section, then write the cleaned groups (any thread; touches no
        state of the log). Raises :class:`CorruptBatchError`, :class:`LogFullError`,
        :class:`CleanAbandonedError`; the temporary files are gone when it raises."""
        if self._ran:
            raise RuntimeError("a plan runs once")
        self._ran = True
        started = time.monotonic()
        try:
            self._build_map()
            self._group()
            for g in self.groups:
                self._write_group(g)
        except BaseException as e:
            for g in self.groups:
                if g.output is not None:
                    remove_files(g.output)
                    g.output = None
            if isinstance(e, CorruptBatchError) and self._cancel.is_set():
                raise CleanAbandonedError(f"partition {self.log.dir}: cleaning cancelled") from e
            if isinstance(e, OSError) and not isinstance(e, LogFullError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise LogFullError(self.log.dir, f"writing a cleaned segment: {e}") from e
            raise
        finally:
            self.stats.duration_s = time.monotonic() - started
        return self

    def _io(self, n: int) -> None:
        if self._cancel.is_set() or (self.throttle is not None and not self.throttle.acquire(n, self._cancel)):
            raise CleanAbandonedError(f"partition {self.log.dir}: cleaning cancelled")

    def _batches(self, src: _Source, pos: int, offset: int, *, end_offset: int | None = None,
                 end_pos: int | None = None) -> Iterator[tuple[int, BatchHeader, memoryview]]:
        """Whole, CRC-checked batches of ``src`` from byte ``pos`` (where ``offset`` starts),
        read a chunk at a time, up to the segment's end, ``end_offset`` or byte ``end_pos``."""
        chunk = self.config.io_chunk_bytes
        limit = src.size if end_pos is None else end_pos
        want = chunk
        every = self.config.yield_every_ms
        every_s = every / 1000 if every is not None else None
        clock = time.perf_counter
        last_yield = clock()
        while pos < limit and (end_offset is None or offset < end_offset):
            n = min(want, limit - pos)
            self._io(n)
            buf = os.pread(src.fd, n, pos)
            self.stats.bytes_read += len(buf)
            if len(buf) < n or n < HEADER_SIZE:
                raise CorruptBatchError(f"segment {src.path} is shorter than when the clean began",
                                        offset=offset, position=pos + len(buf))
            mv = memoryview(buf)
            p = 0
            want = chunk
            while p + HEADER_SIZE <= n and (end_offset is None or offset < end_offset):
                h = read_header(buf, p)
                if h.base_offset != offset:
                    raise CorruptBatchError(f"segment {src.path}: base offset {h.base_offset} where {offset} "
                                            f"was expected", offset=offset, position=pos + p)
                if p + h.size > n:
                    if p == 0:
                        if pos + h.size > limit:
                            raise CorruptBatchError(f"segment {src.path}: batch runs past the end",
                                                    offset=offset, position=pos)
                        want = h.size  # a batch larger than a chunk: read it whole
                    break
                if compute_crc(buf, p, h.size) != h.crc:
                    raise CorruptBatchError(f"segment {src.path}: CRC mismatch", offset=h.base_offset,
                                            position=pos + p)
                yield pos + p, h, mv[p : p + h.size]
                if every_s is not None and (now := clock()) - last_yield >= every_s:
                    time.sleep(0)  # let the event loop's thread have the GIL, if it waits
                    last_yield = now
                p += h.size
                offset = h.next_offset
            pos += p
        if end_offset is None and end_pos is None and (pos != src.size or offset != src.next_offset):
            raise CorruptBatchError(f"segment {src.path} ends at offset {offset}, byte {pos}; expected "
                                    f"{src.next_offset}, byte {src.size}", offset=offset, position=pos)

    def _records(self, h: BatchHeader, batch: memoryview) -> tuple[bytes, list[Any]] | None:
        try:
            data = records_area(batch, h)
            return data, scan_records(data, h)
        except UndecodableRecords as e:
            self.stats.batches_undecodable += 1
            if self.stats.batches_undecodable == 1:
                log.warning("partition %s: batch at offset %d has a valid CRC but unreadable records (%s); "
                            "the cleaner keeps such batches whole", self.log.dir, h.base_offset, e)
            return None

    def _build_map(self) -> None:
        kmap = self.key_map
        start, end = self.dirty_start, self.cleanable_end
        self.map_end = end
        index, first_pos, first_offset = self.map_from
        for i, src in enumerate(self.sources[index:]):
            if src.base_offset >= end:
                break
            pos, offset = (first_pos, first_offset) if i == 0 else (0, src.base_offset)
            for _, h, batch in self._batches(src, pos, offset, end_offset=end):
                if h.next_offset <= start or h.is_control or h.record_count == 0:
                    continue
                found = self._records(h, batch)
                if found is None:
                    continue
                full_at = kmap.put_records(h.base_offset, found[1], start)
                if full_at is not None:
                    self.map_end = full_at
                    self.stats.keys_mapped = len(kmap)
                    return
        self.stats.keys_mapped = len(kmap)

    def _group(self) -> None:
        """Consecutive sources below ``map_end`` whose sizes add up to at most a segment."""
        group: list[_Source] = []
        total = 0
        for src in self.sources:
            if src.base_offset >= self.map_end:
                break
            if group and (total + src.size > self.segment_bytes
                          or src.next_offset - 1 - group[0].base_offset > 0xFFFFFFFF):
                self.groups.append(_Group(group))
                group, total = [], 0
            group.append(src)
            total += src.size
        if group:
            self.groups.append(_Group(group))

    def _filter(self, h: BatchHeader, batch: memoryview) -> bytes | None:
        """The batch without the records that go; ``None`` if it stays as it is."""
        if h.is_control or h.record_count == 0 or h.base_offset >= self.map_end:
            return None
        found = self._records(h, batch)
        if found is None:
            return None
        data, spans = found
        kept, tombstones = self.key_map.survivors(h.base_offset, spans, self.map_end, self.tombstone_end)
        if len(kept) == len(spans):
            return None
        st = self.stats
        st.records_removed += len(spans) - len(kept)
        st.tombstones_removed += tombstones
        st.batches_rewritten += 1
        st.batches_emptied += not kept
        return rebuild_batch(h, data, kept)

    def _write_group(self, g: _Group) -> None:
        """Copy the group's sources through the filter into one new segment. A group of
        one segment where nothing changes is not written at all: its batches are copied
        only from the first one that changes, after the unchanged ones before it."""
        out = _Output(self, g) if len(g.sources) > 1 else None
        for src in g.sources:
            for pos, h, batch in self._batches(src, 0, src.base_offset):
                new = self._filter(h, batch)
                if out is None:
                    if new is None:
                        continue
                    out = _Output(self, g)
                    for _, h0, b0 in self._batches(src, 0, src.base_offset, end_pos=pos):
                        out.add(b0, h0)
                if new is None:
                    out.add(batch, h)
                else:
                    out.add(new, read_header(new))
        if out is not None:
            out.finish()


class _Output:
    """A group's new segment, written under a temporary name in chunks through the throttle."""

    __slots__ = ("buffers", "described", "plan", "segment", "total")

    def __init__(self, plan: CleanPlan, g: _Group):
        self.plan = plan
        base = g.sources[0].base_offset
        suffix = f".{plan._token}{CLEANED_SUFFIX}"
        try:
            self.segment = LogSegment.create(plan.log.dir, base, plan.index_interval_bytes, suffix=suffix)
        except OSError:
            prefix = os.path.join(plan.log.dir, segment_prefix(base))
            for ext in (LOG_SUFFIX, INDEX_SUFFIX, TIMEINDEX_SUFFIX):
                try:
                    os.unlink(prefix + ext + suffix)
                except FileNotFoundError:
                    pass
            raise
        g.output = self.segment
        self.buffers: list[Any] = []
        self.described: list[tuple[int, int, int, int]] = []
        self.total = 0

    def add(self, data: bytes | memoryview, h: BatchHeader) -> None:
        self.buffers.append(data)
        self.described.append((h.base_offset, h.next_offset, len(data), h.max_timestamp))
        self.total += len(data)
        if self.total >= self.plan.config.io_chunk_bytes or len(self.buffers) >= MAX_BATCHES_PER_WRITE:
            self.flush()

    def flush(self) -> None:
        if not self.buffers:
            return
        seg = self.segment
        if seg.size + self.total > MAX_SEGMENT_BYTES:
            raise StorageError(f"a cleaned segment of {seg.size + self.total} bytes would exceed "
                               f"{MAX_SEGMENT_BYTES}")
        self.plan._io(self.total)
        seg.append(self.buffers, self.described, self.total)
        self.plan.stats.bytes_written += self.total
        self.buffers, self.described, self.total = [], [], 0

    def finish(self) -> None:
        self.flush()
        os.fsync(self.segment.fd)
        self.segment.persist_indexes(fsync=True)


class LogCleaner:
    """Cleans logs, one pass at a time: the broker's cleaner (one per broker; its
    throttle is shared by every pass it runs)."""

    def __init__(self, config: CleanerConfig | None = None, *, salt: bytes | None = None):
        self.config = config or CleanerConfig()
        rate = self.config.io_bytes_per_second
        self.throttle = Throttle(rate) if rate is not None else None
        #: Fixed salt for the key digests (tests); ``None``: a new random one per pass.
        self._salt = salt

    def status(self, lg: Log, max_offset: int | None = None, now_ms: int | None = None) -> CleaningStatus:
        return cleaning_status(lg, max_offset, lg._clock() if now_ms is None else now_ms)

    def plan(self, lg: Log, max_offset: int, removable_offset: int, *, now_ms: int | None = None,
             force: bool = False) -> CleanPlan | None:
        """A pass over ``lg`` (loop thread), or ``None`` when there is nothing to do: the
        log is not compacted, a pass is already out, or it is not due (see
        :class:`~strata.storage.clean_state.CleaningStatus`) and ``force`` is false.
        Raises if the log is closed or offline. The plan holds file descriptors until
        :meth:`CleanPlan.swap` or :meth:`CleanPlan.release`: always call one of them.

        ``max_offset`` is the high watermark: only segments wholly below it are cleaned.
        ``removable_offset`` bounds tombstone removal (see the module docstring). With
        ``force``, a pass runs even below the dirty ratio, and with nothing dirty it still
        rewrites the clean section to drop tombstones whose time has come.
        """
        lg._check_writable()
        state = lg.cleaner_state
        if not lg.config.compact or state.in_progress is not None:
            return None
        now = lg._clock() if now_ms is None else now_ms
        status = cleaning_status(lg, max_offset, now)
        if not (status.due or force):
            return None
        start, end = status.cleaned_offset, status.cleanable_end
        limit = max(end, start)
        # Only segments wholly below the high watermark: anything at or above it may be
        # cut by a truncation (a Raft conflict) while ``run`` reads, and a cut read is
        # not corruption. Below ``end`` that holds already; it matters when nothing is
        # dirty (``end == start``) and the segment holding ``start`` reaches past the
        # high watermark (appended after a crash cut the segment that followed it): it
        # waits for the high watermark, as the dirty section does.
        closed = lg.segments[:-1]
        picked = [s for s in closed if s.base_offset < limit and s.next_offset <= max_offset and s.size > 0]
        if not picked or (end <= start and start <= lg.log_start_offset):
            return None
        sources = [_Source(s, os.dup(s.fd), s.base_offset, s.next_offset, s.size, s.log_path) for s in picked]
        index = next((i for i, s in enumerate(sources) if s.next_offset > start), len(sources) - 1)
        seg = sources[index].segment
        entry = seg.offset_index.lookup(start)
        map_from = (index, seg.offset_index.positions[entry], seg.offset_index.offsets[entry]) if entry >= 0 \
            else (index, 0, seg.base_offset)
        cfg = lg.config
        horizon = 0
        for range_end, first_cleaned in state.ranges:
            if first_cleaned + cfg.delete_retention_ms > now:
                break
            horizon = range_end
        else:
            if cfg.delete_retention_ms == 0:
                horizon = end  # dirty tombstones, first cleaned now, may go at once
        plan = CleanPlan(
            log=lg, sources=sources, dirty_start=start, cleanable_end=end, map_from=map_from,
            removable_offset=removable_offset, tombstone_end=min(removable_offset, horizon), now_ms=now,
            segment_bytes=cfg.segment_bytes, index_interval_bytes=cfg.index_interval_bytes,
            config=self.config, throttle=self.throttle,
            key_map=KeyOffsetMap(self.config.map_bytes, salt=self._salt), stats=CleanStats(start),
        )
        state.in_progress = plan
        return plan

    def clean(self, lg: Log, max_offset: int, removable_offset: int, *, now_ms: int | None = None,
              force: bool = False) -> CleanStats | None:
        """One whole pass in this thread: plan, run, swap. ``None`` if there was nothing to
        do or the pass was abandoned."""
        plan = self.plan(lg, max_offset, removable_offset, now_ms=now_ms, force=force)
        if plan is None:
            return None
        try:
            plan.run()
        except BaseException as e:
            plan.release(e)
            raise
        return plan.swap()

    async def clean_in_executor(self, lg: Log, max_offset: int, removable_offset: int, *,
                                executor: Executor | None = None, now_ms: int | None = None,
                                force: bool = False) -> CleanStats | None:
        """:meth:`clean` with ``run`` in ``executor`` (the loop's default if ``None``)."""
        plan = self.plan(lg, max_offset, removable_offset, now_ms=now_ms, force=force)
        if plan is None:
            return None
        try:
            await asyncio.get_running_loop().run_in_executor(executor, plan.run)
        except BaseException as e:
            plan.release(e)
            raise
        return plan.swap()

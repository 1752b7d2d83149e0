"""What a log knows about its own cleaning: how far it is clean, since when, and what is dirty.

A compacted log is a *clean* section (every key at most once, already cleaned) then a
*dirty* one (appended since). ``cleaner-offset-checkpoint`` in the partition
directory records where the clean section ends, and when each part of it was first
cleaned::

    0                   <- version
    3                   <- entries
    120 1700000000000   <- offsets below 120 were first cleaned at this time (ms)
    4000 1700000600000  <- offsets in [120, 4000) were first cleaned at this time
    9000 1700003600000  <- ... ; the last end is the cleaned offset

The times decide when a tombstone may go: ``delete_retention_ms`` after its offset
was first cleaned (Kafka writes that moment into the batch's base timestamp; Strata
leaves the batches' timestamps alone and keeps it here). The file is replaced
atomically and bounded: ranges whose tombstones are all past their time are merged,
and beyond :data:`MAX_RANGES` the two oldest are merged, keeping the later time, so a
merge only ever keeps a tombstone longer, never shorter.

A missing or malformed file means "nothing is clean": the next clean starts from the
log start, which costs work but never loses a record.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from strata.client.batch import CorruptBatchError
from strata.storage.checkpoint import read_checkpoint, write_checkpoint

if TYPE_CHECKING:
    from strata.storage.log import Log

__all__ = ["CLEANER_CHECKPOINT", "MAX_RANGES", "CleanerState", "CleaningStatus", "cleaning_status"]

CLEANER_CHECKPOINT = "cleaner-offset-checkpoint"
#: Bound on the checkpoint's ranges (one per clean that moved the cleaned offset).
MAX_RANGES = 1024

log = logging.getLogger("strata.storage")


class _Pass(Protocol):
    """A cleaning pass out for this log (``strata.storage.cleaner.CleanPlan``)."""

    def invalidate(self, truncated_to: int) -> None: ...

    def cancel(self) -> None: ...


@dataclass(slots=True)
class CleanerState:
    """The cleaner checkpoint of one log, plus counters for metrics (not persisted)."""

    path: str
    #: ``(end_offset, first_cleaned_ms)``, ends strictly increasing.
    ranges: list[tuple[int, int]] = field(default_factory=list)
    last_clean_ms: int | None = None
    bytes_cleaned: int = 0
    passes: int = 0
    #: The pass out for this log, if any (one at a time).
    in_progress: _Pass | None = None

    @classmethod
    def load(cls, path: str) -> CleanerState:
        raw = read_checkpoint(path, 2)
        state = cls(path)
        if raw is None:
            return state
        ranges = [(e, t) for e, t in raw]
        if any(e < 0 for e, _ in ranges) or any(a[0] >= b[0] for a, b in zip(ranges, ranges[1:], strict=False)):
            log.warning("%s: ranges are not increasing; ignoring it (the next clean starts over)", path)
            return state
        state.ranges = ranges
        return state

    @property
    def cleaned_offset(self) -> int:
        return self.ranges[-1][0] if self.ranges else 0

    def first_cleaned_ms(self, offset: int) -> int | None:
        """When ``offset`` was first cleaned; ``None`` if it is not clean yet."""
        ranges = self.ranges
        lo, hi = 0, len(ranges)
        while lo < hi:
            mid = (lo + hi) // 2
            if ranges[mid][0] <= offset:
                lo = mid + 1
            else:
                hi = mid
        return ranges[lo][1] if lo < len(ranges) else None

    def advance(self, end: int, now_ms: int, delete_retention_ms: int) -> None:
        """Offsets below ``end`` are clean; those not clean before were first cleaned at ``now_ms``."""
        if end <= self.cleaned_offset:
            return
        ranges = self.ranges
        ranges.append((end, now_ms))
        # Ranges whose time is past the delete retention hold no tombstone that must stay:
        # one range says the same for all of them.
        expired = 0
        while expired < len(ranges) - 1 and ranges[expired][1] + delete_retention_ms <= now_ms:
            expired += 1
        if expired > 1:
            ranges[: expired] = [(ranges[expired - 1][0], max(t for _, t in ranges[:expired]))]
        while len(ranges) > MAX_RANGES:
            ranges[0:2] = [(ranges[1][0], max(ranges[0][1], ranges[1][1]))]
        self.write()

    def truncate(self, offset: int) -> None:
        """The log is being cut to ``offset``: nothing at or past it is clean any more, and
        a pass reading past it must not swap. Called before the files change."""
        if self.in_progress is not None:
            self.in_progress.invalidate(offset)
        if self.cleaned_offset <= offset:
            return
        kept = [r for r in self.ranges if r[0] <= offset]
        if offset > 0 and (not kept or kept[-1][0] < offset):
            kept.append((offset, next(t for e, t in self.ranges if e > offset)))
        self.ranges = kept
        self.write()

    def reset(self, offset: int) -> None:
        """The log now starts empty at ``offset``: below it there is nothing to clean."""
        if self.in_progress is not None:
            self.in_progress.invalidate(-1)
        self.ranges = [(offset, 0)] if offset > 0 else []
        self.write()

    def write(self) -> None:
        write_checkpoint(self.path, [(e, t) for e, t in self.ranges])


@dataclass(slots=True, frozen=True)
class CleaningStatus:
    """The clean/dirty split of a log at one moment, for the scheduler and for metrics.

    ``dirty_bytes`` is the cleaner backlog: bytes between the cleaned offset and
    ``cleanable_end``, the end of the last closed segment wholly below ``max_offset``
    (the high watermark) whose records are all older than ``min_compaction_lag_ms``.
    Byte counts use the sparse index, so they are exact at segment boundaries and
    within an index interval elsewhere.
    """

    cleaned_offset: int
    cleanable_end: int
    clean_bytes: int
    dirty_bytes: int
    oldest_dirty_ms: int | None
    due: bool

    @property
    def dirty_ratio(self) -> float:
        total = self.clean_bytes + self.dirty_bytes
        return self.dirty_bytes / total if total else 0.0


def _position(lg: Log, offset: int) -> int:
    """Bytes of the log before ``offset`` (to within an index interval)."""
    before = 0
    for seg in lg.segments:
        if offset >= seg.next_offset:
            before += seg.size
            continue
        if offset > seg.base_offset:
            i = seg.offset_index.lookup(offset)
            before += seg.offset_index.positions[i] if i >= 0 else 0
        break
    return before


def cleanable_end(lg: Log, start: int, max_offset: int | None, now_ms: int) -> int:
    """End of the cleanable range from ``start``: closed segments below ``max_offset``
    whose newest record is older than ``min_compaction_lag_ms``."""
    end = start
    lag = lg.config.min_compaction_lag_ms
    for seg in lg.segments[:-1]:
        if seg.next_offset <= start:
            continue
        if max_offset is not None and seg.next_offset > max_offset:
            break
        if lag and seg.max_timestamp > now_ms - lag:
            break
        end = seg.next_offset
    return end


def cleaning_status(lg: Log, max_offset: int | None, now_ms: int) -> CleaningStatus:
    """Where ``lg`` stands: see :class:`CleaningStatus`. A log that is not compacted is never due."""
    cfg = lg.config
    start = min(max(lg.cleaner_state.cleaned_offset, lg.log_start_offset), lg.log_end_offset)
    end = cleanable_end(lg, start, max_offset, now_ms)
    base = _position(lg, lg.log_start_offset)
    clean_pos = _position(lg, start)
    dirty = _position(lg, end) - clean_pos if end > start else 0
    oldest: int | None = None
    if dirty and cfg.max_compaction_lag_ms is not None:
        seg = lg.segments[lg._segment_for(start)]
        try:
            found = seg.batch_at(start)
        except CorruptBatchError:
            found = None
        if found is not None and found[1].base_timestamp >= 0:
            oldest = found[1].base_timestamp
    status = CleaningStatus(start, end, clean_pos - base, dirty, oldest, False)
    due = cfg.compact and dirty > 0 and (
        status.dirty_ratio >= cfg.min_cleanable_dirty_ratio
        or (cfg.max_compaction_lag_ms is not None and oldest is not None
            and now_ms - oldest > cfg.max_compaction_lag_ms)
    )
    return CleaningStatus(start, end, clean_pos - base, dirty, oldest, due)


def checkpoint_path(directory: str) -> str:
    return os.path.join(directory, CLEANER_CHECKPOINT)

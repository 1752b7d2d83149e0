"""Recovery of a partition log on open (Kafka's ``LogLoader``, beside ``UnifiedLog``).

Segments wholly below the recovery point are trusted (their indexes are
sanity-checked, and a short header walk from the last index entry must land exactly
on the end of the file). The segment holding the recovery point is CRC-checked from
its last index entry at or below it, and every later segment in full. The first torn
or corrupt batch ends the log: the segment is cut there and all later segments are
deleted, because a log must stay contiguous. ``Log.open(..., full_check=True)``
CRC-checks every segment.

:func:`recover` fills in a freshly constructed :class:`~strata.storage.log.Log`; it is
the only code that runs before the log serves anything, so it may set the log's
private state directly.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from strata.client.batch import BatchHeader
from strata.storage.checkpoint import (
    LOG_START_OFFSET_CHECKPOINT,
    RECOVERY_POINT_CHECKPOINT,
    fsync_dir,
    read_offset_checkpoint,
    write_offset_checkpoint,
)
from strata.storage.clean_state import CleanerState
from strata.storage.epoch_cache import LeaderEpochCache
from strata.storage.segment import (
    INDEX_SUFFIX,
    LOG_SUFFIX,
    TIMEINDEX_SUFFIX,
    LogSegment,
    ScanOutcome,
)
from strata.storage.segment_swap import finish_interrupted_swaps

if TYPE_CHECKING:
    from strata.storage.log import Log

__all__ = ["RecoveryReport", "recover"]

logger = logging.getLogger("strata.storage")


@dataclass(slots=True)
class RecoveryReport:
    """What :meth:`Log.open` found and did.

    ``corrupt`` is true when data that had been written whole was lost: a batch fully
    present on disk failed its CRC (or its header was not zeros and did not parse, or
    its offsets/epoch broke the log's order), or the damaged bytes were followed by
    further data (later batches or segments). A torn tail (a batch cut short by a
    crash, or zeros) is not corruption: those bytes were never reported durable under
    the ``always`` flush policy. The Raft layer refuses to vote while ``corrupt``.
    """

    truncated_bytes: int = 0
    first_bad_offset: int | None = None
    corrupt: bool = False
    reason: str | None = None
    #: Segments CRC-checked from their first byte (past the recovery point, or rebuilt).
    segments_scanned: int = 0
    #: Bytes CRC-checked in all; after a clean close only the tail past the last index entry.
    bytes_checked: int = 0
    indexes_rebuilt: int = 0


def recover(log: Log, full_check: bool) -> None:
    """Load the segments of ``log.dir`` into ``log``, checking and cutting as described above."""
    finish_interrupted_swaps(log.dir)
    names = os.listdir(log.dir)
    bases: list[int] = []
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext == ".tmp":
            os.unlink(os.path.join(log.dir, name))  # a checkpoint write cut short
        elif ext == LOG_SUFFIX and len(stem) == 20 and stem.isdigit():
            bases.append(int(stem))
    bases.sort()
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext in (INDEX_SUFFIX, TIMEINDEX_SUFFIX) and (not stem.isdigit() or int(stem) not in bases):
            os.unlink(os.path.join(log.dir, name))

    # A brand-new log (no segment, no checkpoint): nothing to make durable, and an absent
    # checkpoint reads back as exactly what would be written now (recovery point and log
    # start 0, no epochs), so the writes and their fsyncs are skipped (see below).
    fresh = not bases and not any(
        os.path.exists(os.path.join(log.dir, name))
        for name in (RECOVERY_POINT_CHECKPOINT, LOG_START_OFFSET_CHECKPOINT, os.path.basename(log.epoch_cache.path))
    )
    rp_ckpt = read_offset_checkpoint(os.path.join(log.dir, RECOVERY_POINT_CHECKPOINT))
    lso_ckpt = read_offset_checkpoint(os.path.join(log.dir, LOG_START_OFFSET_CHECKPOINT))
    cache, cache_ok = LeaderEpochCache.load(log.epoch_cache.path)
    log.epoch_cache = cache
    rp = rp_ckpt or 0
    if full_check or (bases and not cache_ok):
        # Without the epoch checkpoint, the epochs can only come from the batches.
        if bases and not cache_ok and not full_check:
            logger.warning("partition %s: leader-epoch-checkpoint missing or bad; "
                           "scanning the whole log to rebuild it", log.dir)
        rp = 0
    lso = max(lso_ckpt or 0, bases[0] if bases else 0)
    log.log_start_offset = lso

    # Segments wholly below the log start offset (left by a crash during deletion).
    while len(bases) > 1 and bases[1] <= lso:
        LogSegment.open_existing(log.dir, bases[0], log.config.index_interval_bytes).delete()
        del bases[0]
        log._dir_dirty = True

    interval = log.config.index_interval_bytes
    segs = [LogSegment.open_existing(log.dir, b, interval) for b in bases]
    report = log.recovery
    scanning = False
    dirty: list[LogSegment] = []
    i = 0
    prev_next: int | None = None
    while i < len(segs):
        seg = segs[i]
        nxt = segs[i + 1].base_offset if i + 1 < len(segs) else None
        outcome: ScanOutcome | None = None
        start = 0
        if prev_next is not None and seg.base_offset != prev_next:
            outcome = ScanOutcome(0, seg.base_offset, os.fstat(seg.fd).st_size,
                                  f"segment starts at offset {seg.base_offset} but the previous one "
                                  f"ends at {prev_next}", True)
            _cut(log, segs, i, outcome, report, first_bad=prev_next)
            break
        mode = "full" if scanning or seg.base_offset >= rp else (
            "partial" if nxt is None or nxt > rp else "trusted")
        if mode == "trusted" and not seg.restore():
            logger.info("partition %s: segment %s: indexes missing or inconsistent; rebuilding them "
                        "with a full check", log.dir, os.path.basename(seg.log_path))
            report.indexes_rebuilt += 1
            mode = "full"
        if mode == "partial":
            size = os.fstat(seg.fd).st_size
            if seg.offset_index.load(size) and seg.time_index.load(seg.offset_index.offsets):
                entry = seg.offset_index.lookup(rp)
                start = seg.offset_index.positions[entry] if entry >= 0 else 0
                outcome = _scan(log, seg, entry)
                if outcome.reason is not None and outcome.valid_bytes <= start:
                    mode = "full"  # the index entry itself was stale: do not trust it
                    outcome = None
            else:
                report.indexes_rebuilt += 1
                mode = "full"
        if mode == "full":
            outcome = _scan(log, seg, -1)
        if outcome is not None:
            scanning = True
            dirty.append(seg)
            report.segments_scanned += mode == "full" and outcome.file_size > 0
            report.bytes_checked += outcome.valid_bytes - (start if mode == "partial" else 0)
            if outcome.reason is not None:
                _cut(log, segs, i, outcome, report, first_bad=outcome.next_offset)
                break
        prev_next = seg.next_offset
        i += 1
    log.segments = segs  # _cut already dropped everything after the damage
    if not log.segments:
        log.segments = [LogSegment.create(log.dir, lso, interval)]
        log._dir_dirty = True
    if lso > log.segments[-1].next_offset:
        logger.warning("partition %s: log start offset %d is past the recovered log end %d; "
                       "starting an empty log at %d", log.dir, lso, log.segments[-1].next_offset, lso)
        for seg in log.segments:
            seg.delete()
        log.segments = [LogSegment.create(log.dir, lso, interval)]
        log._dir_dirty = True
    log._bases = [s.base_offset for s in log.segments]
    log._size_bytes = sum(s.size for s in log.segments)
    log.log_start_offset = lso
    leo = log.log_end_offset
    log.epoch_cache.truncate_from_end(leo)
    log.epoch_cache.truncate_from_start(lso)

    # Make what recovery kept durable, so the recovery point can move to the end.
    for seg in dirty:
        if seg in log.segments:
            os.fsync(seg.fd)
    if log._dir_dirty and not fresh:
        fsync_dir(log.dir)
        log._dir_dirty = False
    log.flushed_offset = leo
    if fresh:
        # Creating a partition opens an empty log on every replica: three checkpoints (two
        # fsyncs each) and the directory's fsync were seven fsyncs per replica on the event
        # loop, most of the time 1,000 new partitions took. Nothing needs them: the new
        # segment's directory entry is made durable by the first flush (``_dir_dirty``
        # stays set, as after a roll), the epoch checkpoint is written before the first
        # batch (``Log._append``), and until a recovery point is written recovery scans
        # from 0, which is what the checkpoint would say.
        log.recovery_point = leo
    else:
        _write_checkpoints(log, dirty, leo, lso, rp_ckpt)
    log.cleaner_state = state = CleanerState.load(log.cleaner_state.path)
    if state.cleaned_offset > leo:
        try:
            state.truncate(leo)  # recovery cut into the clean section
        except OSError as e:
            state.ranges = []
            logger.warning("partition %s: could not rewrite the cleaner checkpoint (%s); the next "
                           "clean starts over", log.dir, e)
    now = log._clock()
    active = log.segments[-1]
    active.roll_reference_ms = None if active.is_empty else now
    log._last_flush_ms = now
    log._check_invariants()

def _write_checkpoints(log: Log, dirty: list[LogSegment], leo: int, lso: int, rp_ckpt: int | None) -> None:
    """Persist the indexes recovery rebuilt and the checkpoints, so the next open starts at ``leo``."""
    try:
        for seg in dirty:
            if seg in log.segments:
                seg.persist_indexes(fsync=True)
        # The epochs before the recovery point that says segments below it are trusted
        # (with their epochs from this checkpoint).
        log.epoch_cache.flush()
        log.recovery_point = leo
        log._write_recovery_point()
        write_offset_checkpoint(os.path.join(log.dir, LOG_START_OFFSET_CHECKPOINT), lso)
    except OSError as e:
        # A full disk must not stop a broker from starting: checkpoints only save
        # work, and the next open recovers from the older ones.
        log.recovery_point = rp_ckpt if rp_ckpt is not None and rp_ckpt <= leo else 0
        logger.warning("partition %s: could not write indexes or checkpoints after recovery (%s); "
                       "the next open will scan again", log.dir, e)


def _scan(log: Log, seg: LogSegment, entry: int) -> ScanOutcome:
    """CRC-check ``seg`` from index entry ``entry``, re-deriving epochs from the batches.

    Epochs of offsets below the log start offset are history the batches may no
    longer hold (the term of ``log_start_offset - 1``); those entries stay.
    """
    cache = log.epoch_cache
    start_offset = seg.offset_index.offsets[entry] if entry >= 0 else seg.base_offset
    cache.truncate_from_end(max(start_offset, log.log_start_offset))
    before = cache.epoch_for_offset(start_offset - 1) if start_offset > 0 else None

    def on_batch(h: BatchHeader) -> None:
        latest, last_start = cache.latest_epoch, cache.last_start_offset
        if latest is None or (h.partition_leader_epoch > latest and h.base_offset > last_start):
            cache.assign(h.partition_leader_epoch, h.base_offset)

    return seg.scan(from_entry=entry, check_crc=True, min_epoch=before or 0, on_batch=on_batch)

def _cut(log: Log, segs: list[LogSegment], i: int, outcome: ScanOutcome, report: RecoveryReport,
         first_bad: int) -> None:
    """Recovery found bad bytes in ``segs[i]``: cut there, drop every later segment, report."""
    seg = segs[i]
    later = segs[i + 1 :]
    later_bytes = sum(os.fstat(s.fd).st_size for s in later)
    if outcome.valid_bytes == 0 and i > 0:
        seg.delete()  # nothing valid in it: the previous segment is the end
        del segs[i]
        cut_here = outcome.file_size
        i -= 1
    else:
        seg.truncate_file(outcome.valid_bytes)
        cut_here = outcome.cut_bytes
    for s in later:
        s.delete()
    del segs[i + 1 :]
    log._dir_dirty = True
    corrupt = outcome.corrupt or later_bytes > 0
    report.truncated_bytes += cut_here + later_bytes
    report.first_bad_offset = first_bad
    report.corrupt = report.corrupt or corrupt
    report.reason = outcome.reason
    logger.warning(
        "partition %s: segment %s: %s at byte %d (offset %d); cut %d bytes%s (%s); the log now "
        "ends at offset %d",
        log.dir,
        os.path.basename(seg.log_path),
        outcome.reason,
        outcome.valid_bytes,
        first_bad,
        cut_here,
        f" and deleted {len(later)} later segment(s) of {later_bytes} bytes" if later else "",
        "CORRUPT: data written whole was lost" if corrupt else "torn tail of an unsynced write",
        first_bad,
    )

"""Idempotent producers: per producer and partition, the last few batches' sequence numbers.

A retried batch is answered with the offsets it was first written at; a batch that skips a
sequence is refused with ``OUT_OF_ORDER_SEQUENCE``; a batch from an older producer epoch is
fenced. The table is rebuilt from the batch headers in the log whenever the log may have
changed under it (opening, truncation, a new leader), so it always matches the log: the log
is the only truth, as in Kafka's ``ProducerStateManager``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum

from strata.client.batch import NO_PRODUCER_ID, BatchHeader, CorruptBatchError, iter_batches
from strata.storage import Log

#: How much of a log's tail is read to rebuild idempotent-producer state.
PRODUCER_STATE_SCAN_BYTES = 64 << 20

#: How many recent batches per producer are remembered for duplicate detection (Kafka: 5).
CACHED_BATCHES = 5
MAX_SEQUENCE = 0x7FFFFFFF


class Verdict(Enum):
    APPEND = "append"
    DUPLICATE = "duplicate"
    OUT_OF_ORDER = "out_of_order"
    FENCED = "fenced"
    UNKNOWN_PRODUCER = "unknown_producer"


@dataclass(slots=True, frozen=True)
class BatchSeq:
    first_seq: int
    last_seq: int
    base_offset: int
    last_offset: int


@dataclass(slots=True)
class ProducerEntry:
    epoch: int
    batches: deque[BatchSeq] = field(default_factory=lambda: deque(maxlen=CACHED_BATCHES))

    @property
    def last_seq(self) -> int:
        return self.batches[-1].last_seq if self.batches else -1


@dataclass(slots=True, frozen=True)
class Decision:
    verdict: Verdict
    #: For a duplicate: where the batch was first written.
    duplicate_of: BatchSeq | None = None
    detail: str = ""


def _next_seq(seq: int) -> int:
    return 0 if seq == MAX_SEQUENCE else seq + 1


class ProducerStateTable:
    """Sequence state for one partition."""

    __slots__ = ("_producers",)

    def __init__(self) -> None:
        self._producers: dict[int, ProducerEntry] = {}

    def __len__(self) -> int:
        return len(self._producers)

    def check(self, h: BatchHeader) -> Decision:
        """Decide what to do with a batch about to be appended by the leader."""
        pid = h.producer_id
        if pid == NO_PRODUCER_ID:
            return Decision(Verdict.APPEND)
        entry = self._producers.get(pid)
        first, last = h.base_sequence, h.last_sequence
        if entry is None:
            if first == 0:
                return Decision(Verdict.APPEND)
            return Decision(
                Verdict.UNKNOWN_PRODUCER,
                detail=f"producer {pid} has no state on this partition and its batch starts at sequence {first}",
            )
        if h.producer_epoch < entry.epoch:
            return Decision(
                Verdict.FENCED, detail=f"producer {pid} epoch {h.producer_epoch} is older than {entry.epoch}"
            )
        if h.producer_epoch > entry.epoch:
            if first == 0:
                return Decision(Verdict.APPEND)
            return Decision(
                Verdict.OUT_OF_ORDER,
                detail=f"producer {pid} new epoch {h.producer_epoch} must start at sequence 0, got {first}",
            )
        for b in entry.batches:
            if b.first_seq == first and b.last_seq == last:
                return Decision(Verdict.DUPLICATE, duplicate_of=b)
        expected = _next_seq(entry.last_seq)
        if first == expected:
            return Decision(Verdict.APPEND)
        return Decision(
            Verdict.OUT_OF_ORDER,
            detail=f"producer {pid} sent sequence {first}, expected {expected}",
        )

    def update(self, h: BatchHeader) -> None:
        """Record an appended batch (leader or follower; called in log order)."""
        pid = h.producer_id
        if pid == NO_PRODUCER_ID or h.is_control:
            return
        entry = self._producers.get(pid)
        if entry is None or h.producer_epoch > entry.epoch:
            entry = ProducerEntry(h.producer_epoch)
            self._producers[pid] = entry
        entry.batches.append(BatchSeq(h.base_sequence, h.last_sequence, h.base_offset, h.last_offset))

    def clear(self) -> None:
        self._producers.clear()

    def rebuild(self, headers: Iterable[BatchHeader]) -> None:
        """Rebuild from the log's batch headers, oldest first."""
        self._producers.clear()
        for h in headers:
            self.update(h)


def log_tail_headers(log: Log, scan_bytes: int = PRODUCER_STATE_SCAN_BYTES) -> Iterator[BatchHeader]:
    """The batch headers of the last ``scan_bytes`` of ``log`` (whole segments), in order:
    what a replica rebuilds its producer state from, at start and after a truncation.

    A producer whose batches are all older than that is forgotten and must start a new
    sequence (it gets ``UNKNOWN_PRODUCER_ID`` and re-initialises), as with Kafka's producer
    expiry. This bounds the work done on the event loop after a truncation to a few
    milliseconds. Reading stops at the first batch that does not read back whole.
    """
    offset = _scan_start(log, scan_bytes)
    end = log.log_end_offset
    while offset < end:
        try:
            sl = log.read(offset, 1 << 20)
        except CorruptBatchError:
            return
        if sl is None:
            return
        last = None
        for _, h in iter_batches(sl.read_bytes()[: sl.size], check_crc=False):
            last = h
            yield h
        if last is None:
            return
        offset = last.next_offset


def _scan_start(log: Log, scan_bytes: int) -> int:
    segments = getattr(log, "segments", None)
    if not segments:
        return int(log.log_start_offset)
    total = 0
    start: int = segments[-1].base_offset
    for seg in reversed(segments):
        start = seg.base_offset
        total += seg.size
        if total >= scan_bytes:
            break
    return max(start, int(log.log_start_offset))

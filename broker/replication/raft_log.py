"""The storage ``Log`` seen through the Raft core's ``RaftLog`` protocol.

The partition log *is* the Raft log: this adapter only renames. Raft's term is the batch's
``partitionLeaderEpoch``; the term of ``log_start_offset - 1`` (Raft's last included term)
comes from the storage's leader-epoch checkpoint, which keeps it across retention and
``truncate_fully_and_start_at``.

The leader keeps the batch it appended last, stamped as written, until it commits: the
followers' appends are cut from memory instead of read back from the segment file (one
``pread`` and a batch walk per follower per write). Only the uncommitted tail is held, so
the memory is bounded by what is in flight, not by the number of partitions.
"""

from __future__ import annotations

from collections.abc import Callable

from strata.broker.raft.log import Run
from strata.client.batch import BatchHeader, stamp
from strata.storage import Log

#: A leader batch larger than this is not kept in memory for the followers' appends.
TAIL_MAX_BYTES = 256 << 10


class StorageRaftLog:
    __slots__ = ("log", "on_follower_append", "_tail")

    def __init__(self, log: Log, on_follower_append: Callable[[bytes | memoryview, list[BatchHeader]], None] | None = None) -> None:
        self.log = log
        #: Sees the headers of every batch a follower appends (the replica keeps producer
        #: state current).
        self.on_follower_append = on_follower_append
        #: The leader's last append, stamped, while it is not committed (see the module doc).
        self._tail: Run | None = None

    @property
    def log_start_offset(self) -> int:
        return self.log.log_start_offset

    @property
    def log_end_offset(self) -> int:
        return self.log.log_end_offset

    @property
    def log_start_term(self) -> int:
        start = self.log.log_start_offset
        if start == 0:
            return 0
        term = self.log.epoch_for_offset(start - 1)
        return 0 if term is None else term

    def term_at(self, offset: int) -> int | None:
        start = self.log.log_start_offset
        if offset == start - 1:
            return self.log_start_term
        if offset < start or offset >= self.log.log_end_offset:
            return None
        return self.log.epoch_for_offset(offset)

    def end_offset_for_term(self, term: int) -> tuple[int, int]:
        t, end = self.log.end_offset_for_epoch(term)
        if t < 0 or end < 0:
            return self.log_start_term, self.log.log_start_offset
        return t, end

    def append_as_leader(self, batch: bytes | memoryview, term: int,
                         headers: list[BatchHeader] | None = None) -> tuple[int, int]:
        info = self.log.append_as_leader(batch, term, headers)
        self._tail = None
        if headers is not None and info.size == len(batch) <= TAIL_MAX_BYTES:
            # The batches as written: offsets and epoch stamped into one copy (the caller's
            # buffer is not modified), kept for the followers' appends.
            data = bytearray(batch)
            pos, offset = 0, info.base_offset
            for h in headers:
                stamp(data, pos, offset, term)
                offset += h.last_offset_delta + 1
                pos += h.size
            self._tail = Run(info.base_offset, info.last_offset, term, memoryview(data))
        return info.base_offset, info.last_offset

    def release_tail(self, commit: int) -> None:
        """Forget the kept batch once ``commit`` passed it (the quorum has it)."""
        tail = self._tail
        if tail is not None and tail.last < commit:
            self._tail = None

    def append_as_follower(self, data: bytes | memoryview) -> None:
        self._tail = None
        info = self.log.append_as_follower(data)
        if self.on_follower_append is not None:
            self.on_follower_append(data, info.headers)

    def truncate_to(self, offset: int) -> None:
        self._tail = None
        self.log.truncate_to(offset)

    def truncate_fully_and_start_at(self, offset: int, term: int) -> None:
        self._tail = None
        self.log.truncate_fully_and_start_at(offset, term)

    def read(self, offset: int, max_bytes: int) -> Run | None:
        """Whole batches from ``offset``, all of one term (Append carries a single term)."""
        lg = self.log
        if offset < lg.log_start_offset or offset >= lg.log_end_offset:
            return None
        tail = self._tail
        if (tail is not None and tail.base == offset and tail.last == lg.log_end_offset - 1
                and len(tail.data) <= max_bytes):
            return tail
        term = lg.epoch_for_offset(offset)
        if term is None:
            return None
        _, term_end = lg.end_offset_for_epoch(term)
        sl = lg.read(offset, max_bytes, max_offset=term_end if term_end > offset else None)
        if sl is None:
            return None
        data = sl.read_bytes()
        if len(data) != sl.size:
            data = data[: sl.size]
        return Run(sl.base_offset, sl.next_offset - 1, term, data)

"""The storage ``Log`` seen through the Raft core's ``RaftLog`` protocol.

The partition log *is* the Raft log: this adapter only renames. Raft's term is the batch's
``partitionLeaderEpoch``; the term of ``log_start_offset - 1`` (Raft's last included term)
comes from the storage's leader-epoch checkpoint, which keeps it across retention and
``truncate_fully_and_start_at``.
"""

from __future__ import annotations

from collections.abc import Callable

from strata.broker.raft.log import Run
from strata.client.batch import BatchHeader
from strata.storage import Log


class StorageRaftLog:
    __slots__ = ("log", "on_follower_append")

    def __init__(self, log: Log, on_follower_append: Callable[[bytes | memoryview, list[BatchHeader]], None] | None = None) -> None:
        self.log = log
        #: Sees the headers of every batch a follower appends (the replica keeps producer
        #: state current).
        self.on_follower_append = on_follower_append

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
        return info.base_offset, info.last_offset

    def append_as_follower(self, data: bytes | memoryview) -> None:
        info = self.log.append_as_follower(data)
        if self.on_follower_append is not None:
            self.on_follower_append(data, info.headers)

    def truncate_to(self, offset: int) -> None:
        self.log.truncate_to(offset)

    def truncate_fully_and_start_at(self, offset: int, term: int) -> None:
        self.log.truncate_fully_and_start_at(offset, term)

    def read(self, offset: int, max_bytes: int) -> Run | None:
        """Whole batches from ``offset``, all of one term (Append carries a single term)."""
        lg = self.log
        if offset < lg.log_start_offset or offset >= lg.log_end_offset:
            return None
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

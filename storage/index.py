"""``OffsetIndex`` and ``TimeIndex``: the sparse indexes beside each segment file.

Both are Kafka's on-disk formats (big-endian):

* ``.index``: ``relativeOffset u32 | position u32`` per entry, where the entry points
  at the first byte of the batch whose *base* offset is ``base_offset + relativeOffset``.
* ``.timeindex``: ``timestamp i64 | relativeOffset u32`` per entry.

Strata appends the two in lockstep: whenever at least ``index_interval_bytes`` have
been written since the previous entry, the batch about to be written gets an offset
entry, and the time index gets ``(max timestamp of every batch before it in this
segment, its base offset)``. So entry *i* of both files names the same batch, and a
time entry ``(T, o)`` promises that no batch before ``o`` carries a timestamp above
``T``: the search for the first batch with timestamp >= t may start at the last
entry with ``T < t`` and walks at most one index interval.

The indexes live in memory (``array``) and reach the file only on ``persist()``: when
a segment is rolled, on close, after recovery. They are derived data: a segment
past the recovery point gets its indexes rebuilt from the log on open, so the active
segment's index need not be fsynced with every flush. An index file that fails the
sanity check on open (wrong size, entries not increasing, pointing past the log)
is discarded and rebuilt.
"""

from __future__ import annotations

import os
import struct
import sys
from array import array
from bisect import bisect_left, bisect_right

__all__ = ["OffsetIndex", "TimeIndex"]

_U32_MAX = (1 << 32) - 1
_OFFSET_ENTRY = struct.Struct(">II")
_TIME_ENTRY = struct.Struct(">qI")


def _read_file(path: str, limit: int) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit + 1)
    except FileNotFoundError:
        return None


def _write_tail(path: str, entry_size: int, on_disk: int, tail: bytes, fsync: bool) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        # Cut whatever a truncation left behind, then add the new entries.
        os.ftruncate(fd, on_disk * entry_size)
        if tail:
            view = memoryview(tail)
            pos = on_disk * entry_size
            while view:
                n = os.pwrite(fd, view, pos)
                view = view[n:]
                pos += n
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


class OffsetIndex:
    """Sparse map from batch base offset to byte position in one segment."""

    ENTRY_SIZE = _OFFSET_ENTRY.size
    __slots__ = ("_on_disk", "base_offset", "offsets", "path", "positions")

    def __init__(self, path: str, base_offset: int):
        self.path = path
        self.base_offset = base_offset
        self.offsets = array("q")
        self.positions = array("q")
        #: How many leading entries the file already holds (equal to memory).
        self._on_disk = 0

    def __len__(self) -> int:
        return len(self.offsets)

    def append(self, offset: int, position: int) -> None:
        assert 0 <= offset - self.base_offset <= _U32_MAX, (offset, self.base_offset)
        assert 0 < position <= _U32_MAX, position
        assert not self.offsets or (offset > self.offsets[-1] and position > self.positions[-1])
        self.offsets.append(offset)
        self.positions.append(position)

    def lookup(self, offset: int) -> int:
        """Index of the last entry with offset <= ``offset``, or -1."""
        return bisect_right(self.offsets, offset) - 1

    def truncate_entries(self, count: int) -> None:
        """Keep the first ``count`` entries."""
        del self.offsets[count:]
        del self.positions[count:]
        self._on_disk = min(self._on_disk, count)

    def truncate_to_offset(self, offset: int) -> None:
        """Drop entries for offsets >= ``offset``."""
        self.truncate_entries(bisect_left(self.offsets, offset))

    def load(self, log_size: int) -> bool:
        """Read the file; ``False`` (and empty) if it is missing or fails the sanity check."""
        self.truncate_entries(0)
        data = _read_file(self.path, (log_size // 61 + 1) * self.ENTRY_SIZE)
        if data is None or len(data) % self.ENTRY_SIZE:
            return False
        raw = array("I")
        raw.frombytes(data)
        if sys.byteorder == "little":
            raw.byteswap()
        rel, pos = raw[0::2], raw[1::2]
        for i in range(len(rel)):
            if pos[i] <= 0 or pos[i] >= log_size or (i and (rel[i] <= rel[i - 1] or pos[i] <= pos[i - 1])):
                return False
        self.offsets = array("q", (r + self.base_offset for r in rel))
        self.positions = array("q", pos)
        self._on_disk = len(rel)
        return True

    def persist(self, fsync: bool) -> None:
        tail = b"".join(
            _OFFSET_ENTRY.pack(self.offsets[i] - self.base_offset, self.positions[i])
            for i in range(self._on_disk, len(self.offsets))
        )
        _write_tail(self.path, self.ENTRY_SIZE, self._on_disk, tail, fsync)
        self._on_disk = len(self.offsets)


class TimeIndex:
    """Sparse map from "max timestamp so far" to batch base offset in one segment."""

    ENTRY_SIZE = _TIME_ENTRY.size
    __slots__ = ("_on_disk", "base_offset", "offsets", "path", "timestamps")

    def __init__(self, path: str, base_offset: int):
        self.path = path
        self.base_offset = base_offset
        self.timestamps = array("q")
        self.offsets = array("q")
        self._on_disk = 0

    def __len__(self) -> int:
        return len(self.offsets)

    def append(self, timestamp: int, offset: int) -> None:
        assert 0 <= offset - self.base_offset <= _U32_MAX, (offset, self.base_offset)
        assert not self.offsets or (offset > self.offsets[-1] and timestamp >= self.timestamps[-1])
        self.timestamps.append(timestamp)
        self.offsets.append(offset)

    def last_below(self, timestamp: int) -> int:
        """Index of the last entry whose timestamp is < ``timestamp``, or -1."""
        return bisect_left(self.timestamps, timestamp) - 1

    def truncate_entries(self, count: int) -> None:
        del self.timestamps[count:]
        del self.offsets[count:]
        self._on_disk = min(self._on_disk, count)

    def load(self, expected_offsets: array[int]) -> bool:
        """Read the file; it must pair entry for entry with the offset index."""
        self.truncate_entries(0)
        data = _read_file(self.path, len(expected_offsets) * self.ENTRY_SIZE)
        if data is None or len(data) != len(expected_offsets) * self.ENTRY_SIZE:
            return False
        ts = array("q")
        offs = array("q")
        prev = None
        for i, (t, rel) in enumerate(_TIME_ENTRY.iter_unpack(data)):
            if rel + self.base_offset != expected_offsets[i] or (prev is not None and t < prev):
                return False
            ts.append(t)
            offs.append(rel + self.base_offset)
            prev = t
        self.timestamps, self.offsets = ts, offs
        self._on_disk = len(offs)
        return True

    def persist(self, fsync: bool) -> None:
        tail = b"".join(
            _TIME_ENTRY.pack(self.timestamps[i], self.offsets[i] - self.base_offset)
            for i in range(self._on_disk, len(self.offsets))
        )
        _write_tail(self.path, self.ENTRY_SIZE, self._on_disk, tail, fsync)
        self._on_disk = len(self.offsets)

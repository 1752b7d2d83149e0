"""``LogSegment``: one ``.log`` file of whole record batches and its two indexes.

A segment is named by its base offset (``00000000000000000042.log``) and holds a
contiguous run of batches: each batch's base offset is the previous batch's last
offset + 1. Only the log's last segment (the *active* one) is appended to.

The segment never decodes records. It parses 61-byte batch headers (through
:mod:`strata.client.batch`), checks CRCs, and moves bytes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from crc32c import crc32c

from strata.client.batch import (
    ATTRIBUTES_OFFSET,
    HEADER_SIZE,
    LOG_OVERHEAD,
    MAGIC,
    BatchHeader,
    CorruptBatchError,
    compute_crc,
    read_header,
)
from strata.storage.errors import LogFullError
from strata.storage.index import OffsetIndex, TimeIndex

__all__ = ["FileSlice", "LogSegment", "ScanOutcome", "segment_prefix"]

LOG_SUFFIX = ".log"
INDEX_SUFFIX = ".index"
TIMEINDEX_SUFFIX = ".timeindex"
NO_TIMESTAMP = -1

#: Batches per vectored write (:meth:`LogSegment.append`): far below IOV_MAX (1024) even
#: with two buffers per batch.
MAX_BATCHES_PER_WRITE = 256

_SCAN_CHUNK = 4 << 20
_WALK_CHUNK = 16 << 10
#: Window of a zero-copy locate: one page. Batches larger than this cost one small
#: pread per header and their payload is never read; smaller ones share a pread.
_LOCATE_CHUNK = 4 << 10
#: baseOffset, batchLength, partitionLeaderEpoch, magic, crc, attributes, lastOffsetDelta.
_PEEK = struct.Struct(">qiibIhi")
_MIN_LENGTH = HEADER_SIZE - LOG_OVERHEAD


def segment_prefix(base_offset: int) -> str:
    return f"{base_offset:020d}"


@dataclass(slots=True, frozen=True)
class FileSlice:
    """Whole batches read from one segment file: ``[position, position + size)``.

    ``fileno``/``path``/``position``/``size`` let a server hand the range to
    ``os.sendfile``; the file descriptor stays valid until the log deletes or
    truncates that segment (retention, truncation, close), so use it in the same event
    loop turn (or ``os.dup`` it to keep the file open for longer).

    From :meth:`LogSegment.read`, the bytes were already read (and, by default,
    CRC-checked) to find the batch boundaries, so :meth:`view` costs nothing and
    :meth:`read_bytes` at most a copy; both hold exactly what was checked, even if
    the file changes afterwards. From :meth:`LogSegment.locate` (the zero-copy read)
    ``data`` is ``None``: only the batch headers were read, nothing was CRC-checked,
    and :meth:`read_bytes` reads the range from the file when asked.
    """

    path: str
    fileno: int
    position: int
    size: int
    base_offset: int
    next_offset: int
    data: bytes | memoryview | None = None
    #: The slice owns ``fileno`` (a duplicate, see :meth:`detach`) and closes it.
    owned: bool = False

    @property
    def last_offset(self) -> int:
        return self.next_offset - 1

    def detach(self) -> FileSlice:
        """This slice with a descriptor of its own, valid until :meth:`close` whatever the log
        does meanwhile (retention, truncation, a topic deletion close the segment's own).
        For a slice that will be sent later (a long-polling fetch, a pipelined response)."""
        if self.owned or self.data is not None:
            return self
        return FileSlice(self.path, os.dup(self.fileno), self.position, self.size, self.base_offset,
                         self.next_offset, None, True)

    def close(self) -> None:
        """Release an owned descriptor (a no-op for the log's own slices)."""
        if self.owned and self.fileno >= 0:
            fd = self.fileno
            object.__setattr__(self, "fileno", -1)
            os.close(fd)

    def __del__(self) -> None:
        # The safety net for an owned slice dropped unsent (a long poll that read again, a
        # response never written): refcounting closes it at once.
        if self.owned:
            self.close()

    def read_bytes(self) -> bytes:
        """The batches as ``bytes`` (a copy only if the read fetched more than it returns).

        A slice located without its data is read from the file now; a file cut short
        since (which only truncation above the high watermark or retention can do)
        raises :class:`CorruptBatchError` rather than returning part of a batch.
        """
        if self.data is None:
            buf = os.pread(self.fileno, self.size, self.position)
            if len(buf) != self.size:
                raise CorruptBatchError(
                    f"segment {self.path} is shorter than a located slice "
                    f"({len(buf)} of {self.size} bytes at {self.position})",
                    offset=self.base_offset,
                    position=self.position,
                )
            return buf
        return self.data if isinstance(self.data, bytes) else bytes(self.data)

    def view(self) -> memoryview:
        """The batches without a copy: what a server hands to ``socket.send``/``writelines``."""
        return memoryview(self.data if self.data is not None else self.read_bytes())

    def send_to(self, out_fd: int) -> int:
        """``os.sendfile`` the range to ``out_fd`` (a blocking socket or file); returns bytes sent."""
        sent = 0
        while sent < self.size:
            n = os.sendfile(out_fd, self.fileno, self.position + sent, self.size - sent)
            if n == 0:
                break
            sent += n
        return sent


@dataclass(slots=True)
class ScanOutcome:
    """Where a scan of a segment stopped and why.

    ``reason`` is ``None`` when the scan reached the end of the file cleanly.
    ``corrupt`` follows :class:`~strata.storage.log.RecoveryReport`: true when the
    bytes at ``valid_bytes`` were written whole and are wrong (a CRC mismatch over a
    batch fully present, a header that is not zeros, a batch followed by more data),
    false when they look like a write torn by a crash (fewer bytes than the batch
    claims, or zeros).
    """

    valid_bytes: int
    next_offset: int
    file_size: int
    reason: str | None = None
    corrupt: bool = False

    @property
    def cut_bytes(self) -> int:
        return self.file_size - self.valid_bytes


class _Window:
    """Reads a file forward in chunks so that a walk parses headers in memory."""

    __slots__ = ("buf", "chunk", "end", "fd", "start")

    def __init__(self, fd: int, end: int, chunk: int):
        self.fd = fd
        self.end = end
        self.chunk = chunk
        self.buf = b""
        self.start = 0

    def get(self, pos: int, n: int) -> memoryview | None:
        """``n`` bytes at ``pos``, or ``None`` if the file (up to ``end``) is shorter."""
        if pos + n > self.end:
            return None
        if not (self.start <= pos and pos + n <= self.start + len(self.buf)):
            size = min(max(n, self.chunk), self.end - pos)
            self.buf = os.pread(self.fd, size, pos)
            self.start = pos
            if len(self.buf) < n:
                return None
        off = pos - self.start
        return memoryview(self.buf)[off : off + n]


class LogSegment:
    """One segment: the ``.log`` file descriptor, its size and end offset, and its indexes.

    In-memory state that describes the file (``size``, ``next_offset``,
    ``max_timestamp``, ``bytes_since_index``) is only ever changed on the owning
    thread; a flush in a worker thread gets a ``dup`` of ``fd`` and nothing else.
    """

    __slots__ = (
        "base_offset",
        "bytes_since_index",
        "directory",
        "fd",
        "index_interval_bytes",
        "last_batch_size",
        "log_path",
        "max_timestamp",
        "next_offset",
        "offset_index",
        "roll_reference_ms",
        "size",
        "time_index",
    )

    def __init__(self, directory: str, base_offset: int, index_interval_bytes: int, fd: int, size: int,
                 suffix: str = ""):
        prefix = os.path.join(directory, segment_prefix(base_offset))
        self.directory = directory
        self.base_offset = base_offset
        self.index_interval_bytes = index_interval_bytes
        self.log_path = prefix + LOG_SUFFIX + suffix
        self.fd = fd
        self.size = size
        self.next_offset = base_offset
        self.max_timestamp = NO_TIMESTAMP
        self.bytes_since_index = 0
        #: Size of the batch last written or scanned: a read's guess at how big batches are.
        self.last_batch_size = 0
        #: Clock reading when the segment got its first batch (or was opened): roll by age.
        self.roll_reference_ms: int | None = None
        self.offset_index = OffsetIndex(prefix + INDEX_SUFFIX + suffix, base_offset)
        self.time_index = TimeIndex(prefix + TIMEINDEX_SUFFIX + suffix, base_offset)

    # ----------------------------------------------------------------- lifecycle

    @classmethod
    def create(cls, directory: str, base_offset: int, index_interval_bytes: int, suffix: str = "") -> LogSegment:
        """A new, empty segment. ``suffix`` is appended to its three file names: the
        cleaner writes a segment under a temporary name (``...log.<id>.cleaned``) and
        renames it into place (``strata.storage.segment_swap``).

        Only the log file is created: its two index files are written when the segment is
        rolled, closed or cleaned (``persist_indexes``). They are derived data (an active
        segment is always scanned on open, and a missing index is rebuilt from its log), and
        two empty files per new partition per broker were two fifths of the files a topic's
        creation made, at up to 0.85 ms of kernel time each on this machine's disk.
        """
        path = os.path.join(directory, segment_prefix(base_offset) + LOG_SUFFIX + suffix)
        # A temporary name is new by construction; never write into someone else's file.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | (os.O_EXCL if suffix else os.O_TRUNC), 0o644)
        seg = cls(directory, base_offset, index_interval_bytes, fd, 0, suffix)
        if not suffix:
            # A segment created again at a base offset whose files a truncation left behind
            # must not be read with their stale entries; clearing them costs nothing when
            # there are none (the usual case: no such files).
            for stale in (seg.offset_index.path, seg.time_index.path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(stale)
        return seg

    def file_paths(self) -> tuple[str, str, str]:
        """``(log, index, timeindex)`` paths."""
        return self.log_path, self.offset_index.path, self.time_index.path

    def set_paths(self, log_path: str, index_path: str, timeindex_path: str) -> None:
        """Point the segment at new names for its files after they were renamed (no I/O)."""
        self.log_path = log_path
        self.offset_index.path = index_path
        self.time_index.path = timeindex_path

    @classmethod
    def open_existing(cls, directory: str, base_offset: int, index_interval_bytes: int) -> LogSegment:
        path = os.path.join(directory, segment_prefix(base_offset) + LOG_SUFFIX)
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        return cls(directory, base_offset, index_interval_bytes, fd, os.fstat(fd).st_size)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def delete(self) -> None:
        self.close()
        for p in (self.log_path, self.offset_index.path, self.time_index.path):
            try:
                os.unlink(p)
            except FileNotFoundError:
                pass

    def persist_indexes(self, fsync: bool) -> None:
        self.offset_index.persist(fsync)
        self.time_index.persist(fsync)

    @property
    def is_empty(self) -> bool:
        return self.size == 0

    # ------------------------------------------------------------------- writing

    def _track(self, pos: int, base_offset: int, next_offset: int, size: int, max_timestamp: int) -> None:
        """Account for the batch just placed at ``pos``: indexes, end offset, timestamps."""
        assert pos == self.size, (pos, self.size)
        assert base_offset == self.next_offset < next_offset, (base_offset, self.next_offset, next_offset)
        if self.bytes_since_index >= self.index_interval_bytes:
            self.offset_index.append(base_offset, pos)
            self.time_index.append(self.max_timestamp, base_offset)
            self.bytes_since_index = 0
        self.bytes_since_index += size
        if max_timestamp > self.max_timestamp:
            self.max_timestamp = max_timestamp
        self.next_offset = next_offset
        self.size = pos + size
        self.last_batch_size = size

    def _track_header(self, pos: int, h: BatchHeader) -> None:
        self._track(pos, h.base_offset, h.next_offset, h.size, h.max_timestamp)

    def append(self, buffers: list[Any], batches: list[tuple[int, int, int, int]], total: int) -> None:
        """Write ``buffers`` (whole batches, ``total`` bytes) at the end; ``batches`` describes
        them as ``(base_offset, next_offset, size, max_timestamp)``.

        All or nothing: on any write error the file is cut back to its old size before
        the error propagates, so no partial batch is ever left behind.
        """
        start = self.size
        written = 0
        try:
            while written < total:
                if written == 0:
                    n = os.pwritev(self.fd, buffers, start)
                else:
                    rest = b"".join(bytes(b) for b in buffers)[written:]
                    n = os.pwrite(self.fd, rest, start + written)
                if n <= 0:
                    raise OSError(errno.EIO, "write returned 0 bytes")
                written += n
        except OSError as e:
            try:
                os.ftruncate(self.fd, start)
            except OSError:
                pass
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise LogFullError(self.log_path, f"{total} bytes at position {start}") from e
            raise
        pos = start
        for base, nxt, size, max_ts in batches:
            self._track(pos, base, nxt, size, max_ts)
            pos += size
        assert self.size == start + total

    # ------------------------------------------------------------------ scanning

    def _reset_to_entry(self, entry: int) -> None:
        """Put the state just before the batch that index entry ``entry`` names (-1: the
        start of the file), forgetting that entry and everything after it. A walk from
        there re-adds the entry, because the batch at an entry starts a fresh interval.
        """
        if entry >= 0:
            self.size = self.offset_index.positions[entry]
            self.next_offset = self.offset_index.offsets[entry]
            self.max_timestamp = self.time_index.timestamps[entry]
            self.bytes_since_index = self.index_interval_bytes
        else:
            self.size = 0
            self.next_offset = self.base_offset
            self.max_timestamp = NO_TIMESTAMP
            self.bytes_since_index = 0
        self.offset_index.truncate_entries(max(entry, 0))
        self.time_index.truncate_entries(max(entry, 0))

    def scan(
        self,
        *,
        from_entry: int,
        check_crc: bool,
        min_epoch: int,
        on_batch: Callable[[BatchHeader], None] | None = None,
    ) -> ScanOutcome:
        """Walk the file from index entry ``from_entry`` (-1: the start), rebuilding the
        in-memory state (and indexes) as it goes, and stop at the first batch that is
        torn or corrupt. The file itself is not changed; see :meth:`truncate_file`.
        """
        self._reset_to_entry(from_entry)
        file_size = os.fstat(self.fd).st_size
        win = _Window(self.fd, file_size, _SCAN_CHUNK if check_crc else _WALK_CHUNK)
        pos = self.size
        expected = self.next_offset
        prev_epoch = min_epoch

        def stop(reason: str, corrupt: bool) -> ScanOutcome:
            return ScanOutcome(pos, expected, file_size, reason, corrupt)

        while pos < file_size:
            hv = win.get(pos, HEADER_SIZE)
            if hv is None:
                return stop(f"torn batch header: {file_size - pos} bytes", False)
            try:
                h = read_header(hv)
            except CorruptBatchError as e:
                return stop(e.reason, not self._zeros(pos, file_size))
            if h.base_offset != expected:
                return stop(f"batch base offset {h.base_offset}, expected {expected}", True)
            if pos + h.size > file_size:
                corrupt = self._valid_batch_follows(pos + HEADER_SIZE, file_size, h.next_offset)
                return stop(f"batch of {h.size} bytes runs past the end of the file "
                            f"({file_size - pos} bytes left)", corrupt)
            if check_crc:
                bv = win.get(pos, h.size)
                if bv is None:
                    return stop("file shrank during the scan", False)
                actual = compute_crc(bv, 0, h.size)
                if actual != h.crc:
                    return stop(f"CRC mismatch: stored {h.crc:#010x}, computed {actual:#010x}", True)
            epoch = h.partition_leader_epoch
            if epoch < 0 or epoch < prev_epoch:
                return stop(f"partitionLeaderEpoch {epoch} after {prev_epoch}", True)
            self._track_header(pos, h)
            if on_batch is not None:
                on_batch(h)
            prev_epoch = epoch
            pos += h.size
            expected = h.next_offset
        return ScanOutcome(pos, expected, file_size)

    def _zeros(self, start: int, end: int) -> bool:
        """Is ``[start, end)`` all zero bytes? (What a crash leaves past an unsynced write.)"""
        pos = start
        while pos < end:
            chunk = os.pread(self.fd, min(_SCAN_CHUNK, end - pos), pos)
            if not chunk:
                break
            if chunk.count(0) != len(chunk):
                return False
            pos += len(chunk)
        return True

    def _valid_batch_follows(self, start: int, end: int, next_offset: int) -> bool:
        """Does a valid batch with base offset ``next_offset`` start somewhere in ``[start, end)``?

        A batch whose length runs past the end of the file is either a torn last write
        or a batch whose length field was damaged with more data behind it. Finding
        the batch that should follow tells the two apart.
        """
        needle = next_offset.to_bytes(8, "big", signed=True)
        pos = start
        while pos < end:
            chunk = os.pread(self.fd, min(_SCAN_CHUNK, end - pos), pos)
            if not chunk:
                return False
            i = chunk.find(needle)
            while i >= 0:
                at = pos + i
                head = os.pread(self.fd, HEADER_SIZE, at)
                try:
                    h = read_header(head)
                    if at + h.size <= end:
                        body = os.pread(self.fd, h.size, at)
                        if compute_crc(body, 0, h.size) == h.crc:
                            return True
                except CorruptBatchError:
                    pass
                i = chunk.find(needle, i + 1)
            if pos + len(chunk) >= end:
                return False
            pos += len(chunk) - 7
        return False

    def truncate_file(self, size: int) -> None:
        """Cut the file to ``size`` bytes, which must be where the in-memory state ends."""
        assert size == self.size, (size, self.size)
        os.ftruncate(self.fd, size)

    def restore(self) -> bool:
        """Rebuild the in-memory state of a trusted segment from its indexes and a short
        header walk from the last index entry. ``False`` if the indexes fail their sanity
        check or the walk does not end exactly at the end of the file: the caller must
        then scan the segment in full.
        """
        file_size = os.fstat(self.fd).st_size
        if not self.offset_index.load(file_size) or not self.time_index.load(self.offset_index.offsets):
            return False
        out = self.scan(from_entry=len(self.offset_index) - 1, check_crc=False, min_epoch=0)
        return out.reason is None and out.valid_bytes == file_size

    # ------------------------------------------------------------------- reading

    def batch_at(self, offset: int) -> tuple[int, BatchHeader] | None:
        """Position and header of the batch containing ``offset``; ``None`` past the end.

        Raises :class:`CorruptBatchError` if the walk from the index entry meets a
        header that does not fit (which a read must never paper over).
        """
        if offset >= self.next_offset:
            return None
        pos, expected = self._index_entry(offset)
        win = _Window(self.fd, self.size, _WALK_CHUNK)
        while pos < self.size:
            hv = win.get(pos, HEADER_SIZE)
            if hv is None:
                raise CorruptBatchError("segment file is shorter than its recorded size", position=pos)
            h = read_header(hv)
            if h.base_offset != expected:
                raise CorruptBatchError(
                    f"base offset {h.base_offset} where {expected} was expected", offset=expected, position=pos
                )
            if h.next_offset > offset:
                return pos, h
            pos += h.size
            expected = h.next_offset
        return None

    def read(self, offset: int, max_bytes: int, max_offset: int | None, verify_crc: bool) -> FileSlice | None:
        """Whole batches from the one containing ``offset`` (see :meth:`Log.read`).

        One ``pread`` normally does it: from the index entry at or below ``offset``,
        ``max_bytes`` (or the size of the last batch written, if larger: the first batch
        is returned whole) plus an index interval, which covers the walk to the batch
        and the batches to return. The headers are parsed in memory with one ``struct`` call
        each; this is the hot path of every fetch.
        """
        if offset >= self.next_offset:
            return None
        entry_pos, expected = self._index_entry(offset)
        guess = max(max_bytes, self.last_batch_size) + self.index_interval_bytes + HEADER_SIZE
        buf = os.pread(self.fd, min(self.size - entry_pos, guess), entry_pos)
        p = 0
        while True:  # walk to the batch holding ``offset``
            if p + HEADER_SIZE > len(buf):
                return self._read_slow(offset, max_bytes, max_offset, verify_crc)
            base, length, _, magic, _, _, delta = _PEEK.unpack_from(buf, p)
            if magic != MAGIC or length < _MIN_LENGTH or delta < 0:
                read_header(buf, p)  # raises with the precise reason
            if base != expected:
                raise CorruptBatchError(
                    f"base offset {base} where {expected} was expected", offset=expected, position=entry_pos + p
                )
            if base + delta >= offset:
                break
            p += LOG_OVERHEAD + length
            expected = base + delta + 1
        if max_offset is not None and base + delta >= max_offset:
            return None
        if p + LOG_OVERHEAD + length > len(buf):
            return self._read_slow(offset, max_bytes, max_offset, verify_crc)
        return self._collect(buf, p, entry_pos, max_bytes, max_offset, verify_crc)

    def bytes_after_index(self, offset: int) -> int:
        """An upper bound on the bytes a read at ``offset`` could return from this segment.

        The bytes from the index entry at or below ``offset`` to the end: an index
        lookup, no I/O. A fetch uses it to choose between a read (small) and a locate
        (large enough to be worth ``sendfile``).
        """
        i = self.offset_index.lookup(offset)
        return self.size - (self.offset_index.positions[i] if i >= 0 else 0)

    def _index_entry(self, offset: int) -> tuple[int, int]:
        """``(position, offset)`` of the sparse index entry at or below ``offset`` (the
        segment's start when there is none): where a walk of batch headers begins."""
        i = self.offset_index.lookup(offset)
        if i >= 0:
            return self.offset_index.positions[i], self.offset_index.offsets[i]
        return 0, self.base_offset

    def locate(self, offset: int, max_bytes: int, max_offset: int | None) -> FileSlice | None:
        """The same whole batches :meth:`read` would return, found by reading headers only.

        Walks batch headers from the index entry at or below ``offset`` through a
        one-page window, so a batch's payload is never read into Python: the slice
        comes back with ``data=None``, for ``os.sendfile``. Nothing is CRC-checked
        (recovery checks what was not fsynced, and consumers check every batch);
        headers are still checked for shape and offset continuity, and a header that
        does not fit raises :class:`CorruptBatchError` as in :meth:`read`.
        """
        if offset >= self.next_offset:
            return None
        pos, expected = self._index_entry(offset)
        end = self.size
        win = _Window(self.fd, end, _LOCATE_CHUNK)
        start = -1
        first_base = expected
        while pos < end:
            hv = win.get(pos, _PEEK.size)
            if hv is None:
                raise CorruptBatchError("segment file is shorter than its recorded size", position=pos)
            base, length, _, magic, _, _, delta = _PEEK.unpack_from(hv)
            if magic != MAGIC or length < _MIN_LENGTH or delta < 0:
                full = win.get(pos, HEADER_SIZE)
                read_header(full if full is not None else hv)  # raises with the precise reason
            if base != expected:
                raise CorruptBatchError(
                    f"base offset {base} where {expected} was expected", offset=expected, position=pos
                )
            size = LOG_OVERHEAD + length
            if pos + size > end:
                raise CorruptBatchError("batch runs past the segment's recorded size", offset=base, position=pos)
            last = base + delta
            if start < 0:
                if last >= offset:  # the batch holding ``offset``: the slice starts here
                    if max_offset is not None and last >= max_offset:
                        return None
                    start, first_base = pos, base
            elif pos + size - start > max_bytes or (max_offset is not None and last >= max_offset):
                break
            pos += size
            expected = last + 1
        if start < 0:
            return None
        return FileSlice(self.log_path, self.fd, start, pos - start, first_base, expected)

    def _read_slow(self, offset: int, max_bytes: int, max_offset: int | None, verify_crc: bool) -> FileSlice | None:
        """Find the batch by a header walk, then read from it (a batch bigger than the guess)."""
        found = self.batch_at(offset)
        if found is None:
            return None
        pos, first = found
        if max_offset is not None and first.last_offset >= max_offset:
            return None
        buf = os.pread(self.fd, min(max(max_bytes, first.size), self.size - pos), pos)
        if len(buf) < first.size:
            raise CorruptBatchError("segment file is shorter than its recorded size", offset=first.base_offset,
                                    position=pos)
        return self._collect(buf, 0, pos, max_bytes, max_offset, verify_crc)

    def _collect(self, buf: bytes, start: int, buf_pos: int, max_bytes: int, max_offset: int | None,
                 verify_crc: bool) -> FileSlice:
        """The run of whole, valid batches in ``buf`` from ``start`` that fits the bounds.

        The first batch is taken even if it alone exceeds ``max_bytes``; the caller made
        sure it is entirely in ``buf``.
        """
        mv = memoryview(buf)
        end = len(buf)
        limit = start + max_bytes
        p = start
        expected = None
        while p + HEADER_SIZE <= end:
            base, length, _, magic, crc, _, delta = _PEEK.unpack_from(buf, p)
            if magic != MAGIC or length < _MIN_LENGTH or delta < 0:
                read_header(buf, p)
            if expected is not None and base != expected:
                raise CorruptBatchError(
                    f"base offset {base} where {expected} was expected", offset=expected, position=buf_pos + p
                )
            size = LOG_OVERHEAD + length
            if p > start and (p + size > limit or (max_offset is not None and base + delta >= max_offset)):
                break
            if p + size > end:
                break
            if verify_crc:
                actual = crc32c(mv[p + ATTRIBUTES_OFFSET : p + size])
                if actual != crc:
                    raise CorruptBatchError(
                        f"CRC mismatch: stored {crc:#010x}, computed {actual:#010x}",
                        offset=base,
                        position=buf_pos + p,
                    )
            p += size
            expected = base + delta + 1
        assert expected is not None and p > start, "the first batch is always whole in the buffer"
        first_base = _PEEK.unpack_from(buf, start)[0]
        data: bytes | memoryview = buf if (start == 0 and p == end) else mv[start:p]
        return FileSlice(self.log_path, self.fd, buf_pos + start, p - start, first_base, expected, data)

    def find_timestamp(self, timestamp: int) -> int | None:
        """Base offset of the first data batch whose max timestamp is >= ``timestamp``.

        Control batches are passed over: their time is the broker's clock when a leader
        took over (Raft no-ops), not a record's, so a lookup for records stamped earlier
        would otherwise stop at the first no-op and hand back every record after it."""
        if self.max_timestamp < timestamp:
            return None
        i = self.time_index.last_below(timestamp)
        if i >= 0:
            pos, expected = self.offset_index.positions[i], self.offset_index.offsets[i]
        else:
            pos, expected = 0, self.base_offset
        win = _Window(self.fd, self.size, _WALK_CHUNK)
        while pos < self.size:
            hv = win.get(pos, HEADER_SIZE)
            if hv is None:
                break
            h = read_header(hv)
            if h.base_offset != expected:
                raise CorruptBatchError(
                    f"base offset {h.base_offset} where {expected} was expected", offset=expected, position=pos
                )
            if h.max_timestamp >= timestamp and not h.is_control:
                return h.base_offset
            pos += h.size
            expected = h.next_offset
        return None

    # ---------------------------------------------------------------- truncation

    def truncate_to(self, offset: int) -> int:
        """Drop every batch at or after ``offset`` (a batch boundary); returns bytes cut."""
        if offset >= self.next_offset:
            return 0
        if offset <= self.base_offset:
            cut_at, entry = 0, -1
        else:
            found = self.batch_at(offset)
            assert found is not None
            cut_at, h = found
            if h.base_offset != offset:
                raise ValueError(
                    f"offset {offset} is inside the batch [{h.base_offset}, {h.last_offset}], "
                    "not at a batch boundary"
                )
            entry = self.offset_index.lookup(offset - 1)
        old_size = self.size
        self._reset_to_entry(entry)
        self._walk_until(cut_at)
        os.ftruncate(self.fd, cut_at)
        return old_size - cut_at

    def _walk_until(self, end: int) -> None:
        """Header walk (no CRC) from the current state up to byte ``end``, a batch boundary."""
        win = _Window(self.fd, end, _WALK_CHUNK)
        pos = self.size
        while pos < end:
            hv = win.get(pos, HEADER_SIZE)
            assert hv is not None
            h = read_header(hv)
            self._track_header(pos, h)
            pos += h.size
        assert pos == end, (pos, end)

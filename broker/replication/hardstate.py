"""Raft's persistent state (currentTerm, votedFor, configurations) of every group of a broker.

Raft's safety depends on never voting twice in one term, so a vote reaches the disk before
any message that depends on it leaves, and a crash at any instant must leave either the old
or the new state of a group, never a torn one.

Elections come in waves: creating 1,000 partitions, or a broker's restart, makes every
replica save once, and a storm of re-elections does it again. A file per group (write, fsync,
rename, fsync the directory) cost two fsyncs per group per election, thousands of them in a
wave, and they were what a starved broker spent its seconds on. So the states of all the
groups of a broker live in one append-only journal, ``raft-hardstate.journal`` in the data
directory, and :class:`HardStateWriter` writes the saves that arrive together as one append
and one ``fdatasync``: a wave of elections costs one fsync per batch, however many groups it
holds, and each group still waits for its own state to be durable before it sends what
depends on it (the Ready waits in ``Replica._ready_loop`` as before).

The journal (:class:`HardStateJournal`):

* the unit of the journal is a *frame*: what one append, made durable by one ``fdatasync``,
  writes (the saves of a batch): ``magic "SHJ" | version (u8) = 2 | length (u32) |
  crc32c (u32) | payload``, the CRC over the magic, version, length and payload, the payload
  a msgpack array of records ``[group, topic id, state or nil]``; the last record of a group
  is its state (nil: the group was deleted);
* a frame is acknowledged only after its ``fdatasync``, and the next one is written only
  after that. So only the last frame of the file can be torn by a crash: a bad or short
  frame with nothing valid after it was never acknowledged and is cut at open. A bad frame
  *followed by a whole one* is damage (a bad sector, a flipped bit) to a frame that was
  acknowledged: cutting there would forget the votes of every later frame, and a broker that
  forgets a vote can vote twice in one term, so the journal refuses to open
  (:class:`HardStateCorruptError`) and the broker to start. The search for a whole frame
  after a bad one tries every place the magic appears; a payload may hold those bytes (a
  term can spell them), but passing for a frame takes the CRC over what follows too;
* a failed append is cut back to the last good length before anything else is appended
  (or, if that fails too, the next write rewrites the file whole): garbage in the middle
  would be taken for damage;
* when the file holds four times what is live (and at least ``COMPACT_MIN_BYTES``), the next
  write rewrites it with one record per live group (temporary file, fsync, rename, fsync
  the directory), so the file stays bounded by the groups the broker holds;
* the topic id is kept with each state: a topic deleted and created again under the same
  name (another id) never inherits the old group's term, vote or membership, even if the
  tombstone written at deletion was lost in a crash.

A journal of the first format (records ``length (u32) | crc32c (u32) | msgpack`` one after
another, no frames; it never starts with the magic) is read with that format's rule, which
cuts at the first bad record, and rewritten in frames at once.

Brokers from before the journal kept ``raft-state`` in each partition directory: a group with
no journal record reads that file, and the file is removed once the group's state is in the
journal (which then wins).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
from crc32c import crc32c

log = logging.getLogger("strata.broker.replication.hardstate")

#: The per-group file of brokers before the journal (read, never written).
LEGACY_FILE_NAME = "raft-state"
JOURNAL_NAME = "raft-hardstate.journal"

#: Every frame starts with these bytes, then its format's version. A journal of the first
#: format starts with a record length below 16 MiB, whose first byte is 0: the two never mix.
MAGIC = b"SHJ"
FORMAT_VERSION = 2
#: magic, version, payload length (the part the CRC covers with the payload)...
_PREFIX = struct.Struct(">3sBI")
#: ... and the CRC: the whole frame header.
_FRAME = struct.Struct(">3sBII")
_MARK = MAGIC + bytes([FORMAT_VERSION])
#: A frame's payload is at most this: a bigger batch (far beyond any wave of elections: a
#: record is tens of bytes) is written as several frames, each with its own fdatasync.
MAX_FRAME_BYTES = 16 << 20
#: The most a msgpack array header takes (the payload's, before its records).
_ARRAY_HEADER = 5

#: The first format: ``length | crc32c | msgpack record`` (read, then rewritten in frames).
_LEGACY_HEADER = struct.Struct(">II")
#: A record of the first format larger than this is corrupt, not a state.
MAX_LEGACY_RECORD_BYTES = 1 << 20

#: The journal is rewritten when it is at least this large and four times its live records.
COMPACT_MIN_BYTES = 1 << 20
COMPACT_RATIO = 4
#: Saves waiting behind the batch being written past which the broker's Raft time stands
#: still (see ``ReplicaManager.ticker``).
BACKLOG_SAVES = 512

#: A batch slower than this is logged: a disk that slow holds every election back.
SLOW_BATCH_S = 1.0

State = dict[str, Any]
Record = tuple[str, int | None, State | None]


class HardStateCorruptError(Exception):
    """The journal was damaged where it had been acknowledged (not a torn tail): the broker
    must not start, since whatever it cut would be votes it gave and could give again.

    ``hint`` says what an operator can do about it (the broker prints it as it exits).
    """

    def __init__(self, path: Path, offset: int, what: str, hint: str | None = None) -> None:
        super().__init__(f"the Raft hard-state journal {path} is damaged at byte {offset}: {what}; "
                         "refusing to start, since dropping it would forget votes this broker gave "
                         "(it could then vote twice in one term)")
        self.path = path
        self.offset = offset
        self.hint = hint or (
            f"the disk under {path.parent} may be failing: keep a copy of {path.name} and check the disk; "
            "then rebuild this broker from its peers (move its data directory aside and start it on an "
            "empty one; its partitions catch up from their leaders), which is safe while the other "
            "replicas of its partitions are in sync")


@dataclass(slots=True)
class _Entry:
    topic_id: int | None
    state: State
    #: Bytes of its record in the journal (for the compaction threshold).
    size: int


def _pack_record(group: str, topic_id: int | None, state: State | None) -> bytes:
    packed: bytes = msgpack.packb([group, topic_id, state], use_bin_type=True)
    return packed


def _frames(packed: list[bytes]) -> list[tuple[bytes, int]]:
    """Frames holding the records ``packed`` in order, each with how many of them it holds:
    one frame unless they exceed ``MAX_FRAME_BYTES``."""
    out: list[tuple[bytes, int]] = []
    start = 0
    while start < len(packed):
        end, size = start, 0
        while end < len(packed) and (end == start or size + len(packed[end]) <= MAX_FRAME_BYTES - _ARRAY_HEADER):
            size += len(packed[end])
            end += 1
        payload = msgpack.Packer().pack_array_header(end - start) + b"".join(packed[start:end])
        if len(payload) > MAX_FRAME_BYTES:
            raise ValueError(f"a hard-state record of {len(packed[start])} bytes exceeds a frame")
        out.append((_frame(payload), end - start))
        start = end
    return out


def _frame(payload: bytes) -> bytes:
    prefix = _PREFIX.pack(MAGIC, FORMAT_VERSION, len(payload))
    return prefix + struct.pack(">I", crc32c(payload, crc32c(prefix))) + payload


def _whole_frame(data: bytes, pos: int) -> int | None:
    """The end of the frame at ``pos`` if a whole one of this format is there (magic, length
    within the data and the bound, CRC), else None."""
    if len(data) - pos < _FRAME.size:
        return None
    magic, version, length, crc = _FRAME.unpack_from(data, pos)
    end: int = pos + _FRAME.size + length
    if magic != MAGIC or version != FORMAT_VERSION or length > MAX_FRAME_BYTES or end > len(data):
        return None
    body = memoryview(data)[pos + _FRAME.size:end]
    if crc32c(body, crc32c(memoryview(data)[pos:pos + _PREFIX.size])) != crc:
        return None
    return end


def _next_whole_frame(data: bytes, start: int) -> int | None:
    """Where the first whole frame at or after ``start`` begins, if any. A payload may hold
    the magic (a term can spell it); what follows it must then pass the CRC as well, which
    happens by chance once in 2**32."""
    pos = data.find(_MARK, start)
    while pos >= 0:
        if _whole_frame(data, pos) is not None:
            return pos
        pos = data.find(_MARK, pos + 1)
    return None


def _records(payload: memoryview) -> list[tuple[str, int | None, State | None, int]] | None:
    """The records of a frame's payload with their sizes, or None if it is not a list of them
    (a frame that passed its CRC: written so, not torn)."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=MAX_FRAME_BYTES)
    unpacker.feed(payload)
    out: list[tuple[str, int | None, State | None, int]] = []
    try:
        count = unpacker.read_array_header()
        at = unpacker.tell()
        for _ in range(count):
            rec = unpacker.unpack()
            if not (isinstance(rec, list) and len(rec) == 3 and isinstance(rec[0], str)
                    and (rec[1] is None or isinstance(rec[1], int))
                    and (rec[2] is None or isinstance(rec[2], dict))):
                return None
            out.append((rec[0], rec[1], rec[2], unpacker.tell() - at))
            at = unpacker.tell()
    except (ValueError, TypeError, msgpack.OutOfData):
        return None
    if at != len(payload):
        return None
    return out


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _fsync_dir(directory: Path) -> None:
    dfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class HardStateJournal:
    """The broker's journal of hard states (see the module docstring). Thread-safe: writes
    come from the writer's thread, reads and the rare synchronous save from the loop.

    Opening it raises :class:`HardStateCorruptError` if it was damaged before its end.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        #: The durable state of every group (the journal's content, replayed).
        self._entries: dict[str, _Entry] = {}
        self._live_bytes = 0
        #: Bytes of the journal known good: appends start here.
        self._size = 0
        #: A failed append could not be cut back: the next write rewrites the file.
        self._broken = False
        self.fsyncs = 0
        self._fd = -1
        self._open()

    def _open(self) -> None:
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            data = b""
            if not created:
                with open(self._fd, "rb", closefd=False) as f:
                    data = f.read()
            legacy = bool(data) and not data.startswith(MAGIC)
            good = self._replay_legacy(data) if legacy else self._replay(data)
            if legacy and good == 0 and (later := _next_whole_frame(data, 0)) is not None:
                # Not the first format: a journal of frames whose first one lost its magic.
                raise HardStateCorruptError(self.path, 0, f"a bad frame is followed by a whole one at byte {later}")
            if good < len(data):
                log.warning("%s: cutting %d bytes of an unfinished or damaged %s at %d (never acknowledged "
                            "if torn by a crash)", self.path, len(data) - good,
                            "record" if legacy else "frame", good)
                os.ftruncate(self._fd, good)
                os.fsync(self._fd)
            self._size = good
            os.lseek(self._fd, good, os.SEEK_SET)
            if created:
                os.fsync(self._fd)
                _fsync_dir(self.path.parent)
            if legacy and good:
                log.info("%s: rewriting the journal's %d groups in frames (journal format %d)",
                         self.path, len(self._entries), FORMAT_VERSION)
                self._rewrite([], [])
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    def _replay(self, data: bytes) -> int:
        """Apply every frame of ``data``; returns the length of the good prefix (what follows
        it is a torn tail), or raises if a whole frame follows a bad one."""
        pos = 0
        while pos < len(data):
            end = _whole_frame(data, pos)
            if end is None:
                later = _next_whole_frame(data, pos + 1)
                if later is not None:
                    raise HardStateCorruptError(self.path, pos, f"a bad frame is followed by a whole one at byte {later}")
                if data.startswith(MAGIC, pos) and len(data) > pos + len(MAGIC) \
                        and data[pos + len(MAGIC)] != FORMAT_VERSION:
                    # A crash tears a frame into zeros or what was written, never into
                    # another version: frames of a format this broker does not know.
                    raise HardStateCorruptError(
                        self.path, pos, f"a frame of journal format {data[pos + len(MAGIC)]}, not "
                        f"{FORMAT_VERSION} (written by a newer Strata?)",
                        "run the Strata version that wrote this data directory")
                return pos  # a torn tail
            records = _records(memoryview(data)[pos + _FRAME.size:end])
            if records is None:
                raise HardStateCorruptError(self.path, pos, "a whole frame does not hold hard-state records")
            for group, topic_id, state, size in records:
                self._apply(group, topic_id, state, size)
            pos = end
        return pos

    def _replay_legacy(self, data: bytes) -> int:
        """Apply every whole record of a journal of the first format; returns the length of
        its good prefix (that format's rule: a bad record ends it)."""
        pos = 0
        n = len(data)
        while pos + _LEGACY_HEADER.size <= n:
            length, crc = _LEGACY_HEADER.unpack_from(data, pos)
            end = pos + _LEGACY_HEADER.size + length
            if length > MAX_LEGACY_RECORD_BYTES or end > n:
                break
            payload = data[pos + _LEGACY_HEADER.size:end]
            if crc32c(payload) != crc:
                break
            try:
                group, topic_id, state = msgpack.unpackb(payload, raw=False, strict_map_key=False)
            except (ValueError, TypeError):
                break
            self._apply(group, topic_id, state, end - pos)
            pos = end
        return pos

    def _apply(self, group: str, topic_id: int | None, state: State | None, size: int) -> None:
        old = self._entries.get(group)
        if state is None and (old is None or old.topic_id != topic_id):
            return  # the tombstone of an older topic of that name: the newer group stays
        if old is not None:
            self._live_bytes -= old.size
            del self._entries[group]
        if state is not None:
            self._entries[group] = _Entry(topic_id, state, size)
            self._live_bytes += size

    def get(self, group: str, topic_id: int | None) -> State | None:
        """The durable state of ``group`` if it belongs to ``topic_id``; None otherwise."""
        with self._lock:
            e = self._entries.get(group)
        if e is None or e.topic_id != topic_id:
            return None
        return e.state

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, group: object) -> bool:
        return group in self._entries

    def write(self, records: Iterable[Record]) -> None:
        """Make ``records`` durable: one frame, one append and one fdatasync (or a rewrite of
        the file).

        Raises the OS error if it could not: none of the records counts as saved then.
        """
        records = list(records)
        packed = [_pack_record(g, t, s) for g, t, s in records]
        with self._lock:
            if self._broken or (self._size >= COMPACT_MIN_BYTES and self._size >= COMPACT_RATIO * self._live_bytes):
                self._rewrite(records, packed)
                return
            done = 0
            for frame, count in _frames(packed):
                try:
                    _write_all(self._fd, frame)
                    os.fdatasync(self._fd)
                except OSError:
                    self._cut_back()
                    raise
                self.fsyncs += 1
                self._size += len(frame)
                for (g, t, s), rec in zip(records[done:done + count], packed[done:done + count], strict=True):
                    self._apply(g, t, s, len(rec))
                done += count

    def _cut_back(self) -> None:
        """After a failed append: the file ends at the last acknowledged frame again."""
        try:
            os.ftruncate(self._fd, self._size)
            os.lseek(self._fd, self._size, os.SEEK_SET)
        except OSError:
            self._broken = True

    def _rewrite(self, records: list[Record], packed: list[bytes]) -> None:
        """The live states with ``records`` applied, one record per group, atomically replace
        the file (in this format's frames)."""
        before = dict(self._entries), self._live_bytes
        for (g, t, st), rec in zip(records, packed, strict=True):
            self._apply(g, t, st, len(rec))
        live = [(g, _pack_record(g, e.topic_id, e.state)) for g, e in self._entries.items()]
        data = b"".join(frame for frame, _ in _frames([rec for _, rec in live]))
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self.path)
            _fsync_dir(self.path.parent)
            new_fd = os.open(self.path, os.O_RDWR)
        except OSError:
            self._entries, self._live_bytes = before  # none of it is acknowledged
            self._broken = True  # the old file may have been replaced: rewrite again next time
            raise
        self.fsyncs += 2
        os.lseek(new_fd, len(data), os.SEEK_SET)
        old_fd, self._fd = self._fd, new_fd
        os.close(old_fd)
        self._broken = False
        self._size = len(data)
        self._live_bytes = 0
        for g, rec in live:
            e = self._entries[g]
            self._entries[g] = _Entry(e.topic_id, e.state, len(rec))
            self._live_bytes += len(rec)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class HardStateWriter:
    """The broker's hard states: loaded from the journal (or a pre-journal file), saved in
    batches off the event loop (see the module docstring).

    The journal is opened at first use, after the broker has locked its data directory.
    """

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._journal: HardStateJournal | None = None
        #: One thread: batches are written one after another, each with one fdatasync.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="raft-state")
        #: Saves waiting for the next batch: (group, topic id, state, future).
        self._queue: list[tuple[str, int | None, State | None, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        #: The latest save of each group not yet durable: at most one per group, as a group
        #: waits for its save before its next one. Bounded by the groups this broker holds.
        self._latest: dict[str, asyncio.Future[None]] = {}
        #: The topic id of each group loaded here (what its saves are recorded under).
        self._topic_ids: dict[str, int | None] = {}
        #: Groups whose state was read from a pre-journal file, removed once journaled.
        self._legacy: set[str] = set()
        #: Saves submitted and not yet durable (queued or being written).
        self.pending = 0
        #: Batches written (one fdatasync each, two when the journal was rewritten).
        self.batches = 0

    def open(self) -> HardStateJournal:
        """The journal, opened (replayed) now if it was not yet. The broker opens it as it
        starts, so that a journal damaged where it had been acknowledged stops it with a
        message (:class:`HardStateCorruptError`) before any replica opens."""
        if self._journal is None:
            self._journal = HardStateJournal(self.data_dir / JOURNAL_NAME)
        return self._journal

    @property
    def journal(self) -> HardStateJournal:
        return self.open()

    @property
    def backlogged(self) -> bool:
        """Many saves wait behind the batch being written (a wave of elections)."""
        return len(self._queue) > BACKLOG_SAVES

    def load(self, directory: Path, topic_id: int | None) -> State:
        """The persisted state of the group in ``directory``, or an empty dict for a new one."""
        group = directory.name
        self._topic_ids[group] = topic_id
        state = self.journal.get(group, topic_id)
        if state is not None:
            return state
        legacy = _load_legacy(directory)
        if legacy:
            self._legacy.add(group)
        return legacy

    def save_now(self, directory: Path, state: State) -> None:
        """Save synchronously, on the caller's thread (a replica's opening: rare)."""
        group = directory.name
        self.journal.write([(group, self._topic_ids.get(group), state)])
        self._journaled([group])

    async def save(self, directory: Path, state: State) -> None:
        """Returns (or raises) once ``state`` is durable, written with whatever other saves
        arrived meanwhile.

        Cancelling the caller does not withdraw a save: :meth:`settle` waits for it before
        the group's directory is reopened or removed.
        """
        group = directory.name
        fut = self._enqueue(group, self._topic_ids.get(group), state)
        await asyncio.shield(fut)

    def forget(self, directory: Path, topic_id: int | None) -> None:
        """The group of ``topic_id`` in ``directory`` was deleted: record it (no one waits).

        The tombstone removes only that topic's state: a topic created again under the same
        name may already have saved its own. A tombstone lost in a crash is harmless too: a
        state is only read back for the topic id it was saved under.
        """
        group = directory.name
        if self._topic_ids.get(group, topic_id) == topic_id:
            self._topic_ids.pop(group, None)
            self._legacy.discard(group)
        if self.journal.get(group, topic_id) is not None:
            self._enqueue(group, topic_id, None)

    def _enqueue(self, group: str, topic_id: int | None, state: State | None) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        # Nobody may be left to look at a failure (a stopped replica): mark it seen.
        fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._queue.append((group, topic_id, state, fut))
        self._latest[group] = fut
        self.pending += 1
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush(), name="raft-hardstate-writer")
        return fut

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch, self._queue = self._queue, []
            try:
                t0 = time.monotonic()
                await loop.run_in_executor(self._pool, self.journal.write, [(g, t, s) for g, t, s, _ in batch])
                took = time.monotonic() - t0
                if took > SLOW_BATCH_S:
                    log.warning("saving %d Raft hard states took %.0f ms (one append and fdatasync of %s)",
                                len(batch), took * 1000, self.journal.path)
            except Exception as exc:  # full disk, failed fsync: every save of the batch fails
                for _, _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(OSError(f"saving the Raft hard state failed: {exc!r}"))
            else:
                self.batches += 1
                self._journaled([g for g, _, _, _ in batch])
                for _, _, _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
            finally:
                self.pending -= len(batch)
                for g, _, _, fut in batch:
                    if self._latest.get(g) is fut:
                        del self._latest[g]

    def _journaled(self, groups: list[str]) -> None:
        """Groups whose state is now in the journal: their pre-journal files go."""
        for g in groups:
            if g in self._legacy:
                self._legacy.discard(g)
                with contextlib.suppress(OSError):
                    (self.data_dir / g / LEGACY_FILE_NAME).unlink()

    async def settle(self, directory: Path) -> None:
        """Wait until no save of ``directory`` is pending (its outcome no longer matters).

        A replica reopened from disk (after a storage failure) must read the vote its
        previous incarnation was saving, or it could vote twice in one term.
        """
        fut = self._latest.get(directory.name)
        if fut is not None and not fut.done():
            with contextlib.suppress(Exception):
                await asyncio.shield(fut)

    def close(self) -> None:
        """Stop the thread (after the batch being written) and close the journal.

        Saves still queued were never acknowledged: nothing was sent that depends on them.
        """
        self._pool.shutdown(wait=True)
        if self._journal is not None:
            self._journal.close()


def _load_legacy(directory: Path) -> State:
    """A group's state in its pre-journal file, or an empty dict."""
    path = directory / LEGACY_FILE_NAME
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    state = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: raft state is not a map")
    return state

"""A hypothesis state machine: the on-disk Log against a list of batches in memory.

Random appends (leader and follower), reads with byte and offset bounds,
truncations, rolls, retention, clean reopens and crashes. A crash closes the file
handles without any checkpoint and tears the active segment at a random byte past
what was flushed: only unflushed batches may be lost, flushed ones must survive,
and what remains must be a prefix of what was written.
"""

from __future__ import annotations

import os
import shutil
import struct
import tempfile
from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from strata.client.batch import PARTITION_LEADER_EPOCH_OFFSET, read_header, validate_batches
from strata.storage import Log, LogConfig, OffsetOutOfRangeError
from tests.storage_helpers import Clock, make_batch

RETENTION_MS = 50_000
CONFIG = LogConfig(
    segment_bytes=1200,
    index_interval_bytes=150,
    flush_policy="never",
    retention_ms=RETENTION_MS,
    retention_bytes=None,
)


@dataclass(slots=True)
class ModelBatch:
    base: int
    last: int
    epoch: int
    timestamp: int
    data: bytes


class LogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="strata-stateful-")
        self.clock = Clock()
        self.log = Log.open(self.dir, CONFIG, clock=self.clock)
        self.batches: list[ModelBatch] = []
        self.lso = 0
        self.leo = 0
        self.flushed = 0
        self.epoch = 0
        #: Epoch of lso - 1 when it is known to the model (after a reset or retention).
        self.epoch_before: dict[int, int] = {}
        # Crashes are simulated by tearing files, so what the disk physically holds is
        # never the oracle; fsync would only spend wall time (seconds on a busy disk).
        self._real_fsync = os.fsync
        os.fsync = lambda fd: None

    def teardown(self) -> None:
        try:
            self.log.abandon()
        finally:
            os.fsync = self._real_fsync
            shutil.rmtree(self.dir, ignore_errors=True)

    # ----------------------------------------------------------------- helpers

    def _make(self, count: int, size: int, base: int, epoch: int) -> bytes:
        self.clock.now += 1000
        values = [bytes([(base + i) % 256]) * size for i in range(count)]
        return make_batch(values, base_offset=base, leader_epoch=epoch, timestamp=self.clock.now)

    def _record(self, data: bytes) -> None:
        validate_batches(data)
        pos = 0
        while pos < len(data):
            h = read_header(data, pos)
            self.batches.append(ModelBatch(h.base_offset, h.last_offset, h.partition_leader_epoch,
                                           h.max_timestamp, data[pos : pos + h.size]))
            pos += h.size
        self.leo = self.batches[-1].last + 1

    def _live(self) -> list[ModelBatch]:
        return [b for b in self.batches if b.last >= self.lso]

    def _boundaries(self) -> list[int]:
        return [b.base for b in self._live() if b.base >= self.lso]

    # ------------------------------------------------------------------- rules

    @initialize()
    def start(self) -> None:
        assert self.log.log_end_offset == 0

    @rule(count=st.integers(1, 6), size=st.integers(1, 90), bump=st.booleans())
    def append_as_leader(self, count: int, size: int, bump: bool) -> None:
        if bump:
            self.epoch += 1
        data = self._make(count, size, 0, 0)
        info = self.log.append_as_leader(data, self.epoch)
        assert (info.base_offset, info.last_offset) == (self.leo, self.leo + count - 1)
        stamped = bytearray(data)
        struct.pack_into(">q", stamped, 0, self.leo)
        struct.pack_into(">i", stamped, PARTITION_LEADER_EPOCH_OFFSET, self.epoch)
        self._record(bytes(stamped))

    @rule(specs=st.lists(st.tuples(st.integers(1, 4), st.integers(0, 1)), min_size=1, max_size=4),
          size=st.integers(1, 60))
    def append_as_follower(self, specs: list[tuple[int, int]], size: int) -> None:
        parts = []
        base = self.leo
        for count, bump in specs:
            self.epoch += bump
            parts.append(self._make(count, size, base, self.epoch))
            base += count
        data = b"".join(parts)
        info = self.log.append_as_follower(data)
        assert info.base_offset == self.leo and info.last_offset == base - 1
        self._record(data)

    @precondition(lambda self: self.leo > self.lso)
    @rule(data=st.data(), max_bytes=st.integers(1, 3000), bounded=st.booleans())
    def read(self, data: st.DataObject, max_bytes: int, bounded: bool) -> None:
        offset = data.draw(st.integers(self.lso, self.leo))
        hw = data.draw(st.integers(self.lso, self.leo)) if bounded else None
        sl = self.log.read(offset, max_bytes, hw)
        live = [b for b in self._live() if b.last >= offset]
        allowed = [b for b in live if hw is None or b.last < hw]
        if not live or not allowed or allowed[0] is not live[0]:
            assert sl is None
            return
        assert sl is not None
        got = sl.read_bytes()
        assert len(got) == sl.size
        # A prefix of the expected batches, byte for byte.
        expected = allowed[0].data
        for b in allowed[1:]:
            if len(expected) + len(b.data) > max_bytes:
                break
            expected += b.data
        assert expected.startswith(got) and len(got) >= len(allowed[0].data)
        assert sl.base_offset == allowed[0].base
        if len(got) < len(expected):
            # Stopped early: only at a segment boundary.
            assert sl.next_offset in {s.base_offset for s in self.log.segments}

    @precondition(lambda self: self.leo > self.lso)
    @rule(data=st.data())
    def out_of_range_reads_name_the_range(self, data: st.DataObject) -> None:
        offset = data.draw(st.sampled_from([self.leo + 1, self.lso - 1]))
        if offset < 0:
            return
        try:
            self.log.read(offset, 100)
        except OffsetOutOfRangeError as e:
            assert (e.log_start_offset, e.log_end_offset) == (self.lso, self.leo)
        else:
            raise AssertionError("read out of range did not raise")

    @precondition(lambda self: len([b for b in self._boundaries()]) > 0)
    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        to = data.draw(st.sampled_from(self._boundaries()))
        self.log.truncate_to(to)
        self.batches = [b for b in self.batches if b.base < to]
        self.leo = to
        self.flushed = min(self.flushed, to)
        self.epoch = max([b.epoch for b in self.batches if b.last >= self.lso - 1] + [self.epoch_before.get(self.lso, 0)])
        self.epoch = max(self.epoch, self.log.latest_epoch or 0)

    @rule()
    def roll(self) -> None:
        self.log.roll()

    @rule()
    def flush(self) -> None:
        self.log.flush()
        self.flushed = self.leo

    @precondition(lambda self: self.leo > self.lso)
    @rule(data=st.data())
    def advance_log_start(self, data: st.DataObject) -> None:
        to = data.draw(st.integers(self.lso, self.leo))
        self.log.advance_log_start_offset(to)
        self._note_epoch_before(to)
        self.lso = to

    @rule(age=st.integers(0, 120_000))
    def retention(self, age: int) -> None:
        now = self.clock.now + age
        self.log.apply_retention(now)
        new = self.log.log_start_offset
        assert new >= self.lso
        for b in self.batches:
            if self.lso <= b.base and b.last < new:
                assert now - b.timestamp > RETENTION_MS, "retention deleted a batch still inside retention_ms"
        self._note_epoch_before(new)
        self.lso = new

    def _note_epoch_before(self, lso: int) -> None:
        if lso == 0 or lso == self.lso:
            return
        for b in self.batches:
            if b.base <= lso - 1 <= b.last:
                self.epoch_before[lso] = b.epoch

    @rule(gap=st.integers(0, 50), bump=st.integers(0, 2))
    def truncate_fully(self, gap: int, bump: int) -> None:
        start = self.leo + gap
        self.epoch += bump
        self.log.truncate_fully_and_start_at(start, self.epoch)
        self.batches = []
        self.lso = self.leo = self.flushed = start
        self.epoch_before = {start: self.epoch} if start > 0 else {}

    @rule()
    def close_and_reopen(self) -> None:
        self.log.close()
        self.log = Log.open(self.dir, CONFIG, clock=self.clock)
        assert not self.log.recovery.corrupt and self.log.recovery.truncated_bytes == 0
        assert self.log.recovery.segments_scanned == 0
        self.flushed = self.leo

    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """Kill the process and lose some of the page cache: tear the active segment."""
        active = self.log.active_segment
        path = active.log_path
        base = active.base_offset
        self.log.abandon()
        size = os.path.getsize(path)
        # Bytes of the active segment that were flushed.
        flushed_pos = 0
        in_file = [b for b in self.batches if b.base >= base]
        for b in in_file:
            if b.last < self.flushed:
                flushed_pos += len(b.data)
        tear = data.draw(st.integers(flushed_pos, size))
        with open(path, "r+b") as f:
            f.truncate(tear)
        self.log = Log.open(self.dir, CONFIG, clock=self.clock)
        assert not self.log.recovery.corrupt, self.log.recovery
        new_leo = self.log.log_end_offset
        assert self.flushed <= new_leo <= self.leo
        kept = 0
        pos = 0
        for b in in_file:
            if pos + len(b.data) > tear:
                break
            pos += len(b.data)
            kept = b.last + 1
        # A log start offset moved past unflushed data leaves an empty log starting there.
        assert new_leo == max(kept, base, self.lso)
        self.batches = [b for b in self.batches if b.last < new_leo]
        self.leo = new_leo
        self.flushed = new_leo
        self.epoch = max(self.epoch_before.get(self.lso, 0), *(b.epoch for b in self.batches), 0)
        self.epoch = max(self.epoch, self.log.latest_epoch or 0)

    # -------------------------------------------------------------- invariants

    @invariant()
    def offsets_match(self) -> None:
        assert self.log.log_end_offset == self.leo
        assert self.log.log_start_offset == self.lso
        assert self.log.flushed_offset == self.flushed
        assert self.log.size_bytes == sum(s.size for s in self.log.segments)

    @invariant()
    def epochs_match(self) -> None:
        live = self._live()
        for b in live[-3:] + live[:2]:
            for o in (b.base, b.last):
                if o >= self.lso:
                    assert self.log.epoch_for_offset(o) == b.epoch, (o, b)
        if self.lso > 0 and self.lso in self.epoch_before:
            assert self.log.epoch_for_offset(self.lso - 1) == self.epoch_before[self.lso]
        if live:
            e = live[-1].epoch
            first_after = next((b.base for b in live if b.epoch > e), self.leo)
            assert self.log.end_offset_for_epoch(e) == (e, first_after)

    @invariant()
    def timestamps_match(self) -> None:
        live = self._live()
        if not live:
            return
        for t in (live[0].timestamp, live[len(live) // 2].timestamp + 1, live[-1].timestamp):
            expected = next((max(b.base, self.lso) for b in live if b.timestamp >= t), None)
            assert self.log.offset_for_timestamp(t) == expected


# STRATA_STATEFUL_EXAMPLES=5000 for a long hunt; the default keeps `make test` quick.
LogMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("STRATA_STATEFUL_EXAMPLES", "150")), stateful_step_count=40, deadline=None
)
TestLogStateful = LogMachine.TestCase

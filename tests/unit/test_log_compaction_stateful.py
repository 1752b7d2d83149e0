"""A hypothesis state machine: a compacted Log against a model of what compaction promises.

Random appends (keys from a small alphabet, tombstones, keyless records, compressed
batches, control batches), commits (the high watermark), cleaning passes with random
``removable_offset``, map sizes and clock jumps (some with the log appending, rolling
or truncating between plan and swap), rolls, truncations above the committed range,
clean reopens and crashes that tear the unflushed tail.

The model keeps every record ever appended (minus truncations) and which of them the
cleaning so far must have removed, computed from the contract, not from the cleaner:
below the cleaned offset a record survives only if no later record of its key lies
below it; a tombstone that is its key's latest goes only below ``removable_offset`` and
once ``delete_retention_ms`` passed since its offset was first cleaned; everything else
stays at its offset. After every step, reading the log from the start must give
exactly the surviving records, the batches must be exactly the appended ones, and the
logical content (each key's latest record) must equal that of the full history.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from strata.client.batch import iter_batches
from strata.client.records import ControlType, build_control_batch
from strata.storage import CleanerConfig, Log, LogCleaner, LogConfig
from strata.storage.key_map import BYTES_PER_ENTRY
from tests.storage_helpers import Clock, keyed_batch, read_batches, read_records

RETENTION = 3_000
CONFIG = LogConfig(segment_bytes=400, index_interval_bytes=128, flush_policy="never",
                   cleanup_policy="compact", delete_retention_ms=RETENTION, min_cleanable_dirty_ratio=0.0)
KEYS = [b"a", b"b", b"c", b"d", b"e", None]


@dataclass(slots=True)
class Rec:
    offset: int
    key: bytes | None
    value: bytes | None
    present: bool = True


@dataclass(slots=True)
class Batch:
    base: int
    last: int
    epoch: int
    control: bool


record_st = st.tuples(st.sampled_from(KEYS), st.one_of(st.none(), st.binary(max_size=24)))


class CompactedLogMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="strata-compaction-")
        self.clock = Clock()
        self.log = Log.open(self.dir, CONFIG, clock=self.clock)
        self.records: list[Rec] = []
        self.batches: list[Batch] = []
        self.hw = 0
        self.flushed = 0
        self.cleaned = 0
        #: offset -> when it was first cleaned (exact; the checkpoint may only be later).
        self.first_cleaned: dict[int, int] = {}
        self.epoch = 0
        self._real_fsync = os.fsync
        os.fsync = lambda fd: None  # crashes are played by tearing files, not by the disk

    def teardown(self) -> None:
        try:
            self.log.abandon()
        finally:
            os.fsync = self._real_fsync
            shutil.rmtree(self.dir, ignore_errors=True)

    @property
    def leo(self) -> int:
        return self.batches[-1].last + 1 if self.batches else 0

    # ------------------------------------------------------------------ appends

    @rule(batches=st.lists(st.lists(record_st, min_size=1, max_size=4), min_size=1, max_size=4),
          bump=st.booleans(), codec=st.sampled_from([None, None, "gzip", "zstd", "lz4"]))
    def append(self, batches: list[list[tuple[bytes | None, bytes | None]]], bump: bool, codec: str | None) -> None:
        for i, recs in enumerate(batches):
            self._append(recs, bump and i == 0, codec)

    def _append(self, recs: list[tuple[bytes | None, bytes | None]], bump: bool, codec: str | None = None) -> None:
        recs = [(k, v if k is not None or v is not None else b"") for k, v in recs]
        self.epoch += bump
        self.clock.now += 7
        batch = keyed_batch(recs, timestamp=self.clock.now, compression=codec)
        info = self.log.append_as_leader(batch, self.epoch)
        assert info.base_offset == self.leo
        for i, (k, v) in enumerate(recs):
            self.records.append(Rec(info.base_offset + i, k, v))
        self.batches.append(Batch(info.base_offset, info.last_offset, self.epoch, False))

    @rule()
    def append_control(self) -> None:
        self.epoch += 1
        info = self.log.append_as_leader(build_control_batch(ControlType.LEADER_CHANGE, self.clock.now), self.epoch)
        self.batches.append(Batch(info.base_offset, info.last_offset, self.epoch, True))

    @rule()
    def roll(self) -> None:
        self.log.roll()

    @rule(data=st.data())
    def commit(self, data: st.DataObject) -> None:
        """The high watermark moves; committed data is durable (the leader counts its own
        log toward a commit only once fsynced)."""
        self.log.flush()
        self.flushed = self.leo
        self.hw = data.draw(st.integers(self.hw, self.leo))

    @precondition(lambda self: any(b.base >= self.hw for b in self.batches))
    @rule(data=st.data())
    def truncate(self, data: st.DataObject) -> None:
        """A Raft conflict: only above the high watermark, at a batch boundary."""
        to = data.draw(st.sampled_from([b.base for b in self.batches if b.base >= self.hw]))
        self.log.truncate_to(to)
        self._truncate_model(to)

    def _truncate_model(self, to: int) -> None:
        self.records = [r for r in self.records if r.offset < to]
        self.batches = [b for b in self.batches if b.base < to]
        self.flushed = min(self.flushed, to)
        self.epoch = max([b.epoch for b in self.batches] + [self.log.latest_epoch or 0])

    # ----------------------------------------------------------------- cleaning

    @rule(data=st.data(), capacity=st.sampled_from([1, 2, 3, 1000]), force=st.booleans(),
          wait=st.sampled_from([0, 1000, RETENTION, 2 * RETENTION]),
          meanwhile=st.sampled_from([None, "append", "roll", "truncate_above"]), commit_all=st.booleans())
    def clean(self, data: st.DataObject, capacity: int, force: bool, wait: int, meanwhile: str | None,
              commit_all: bool) -> None:
        self.clock.now += wait
        if commit_all:  # everything committed and closed: the whole log is cleanable
            self.log.roll()
            self.log.flush()
            self.flushed = self.hw = self.leo
        removable = data.draw(st.integers(0, self.leo + 1))
        cleaner = LogCleaner(CleanerConfig(map_bytes=capacity * BYTES_PER_ENTRY))
        happens, map_end, reach = self._expected_pass(capacity, force)
        plan = cleaner.plan(self.log, self.hw, removable, force=force)
        assert (plan is not None) == happens, (self.cleaned, self.hw, [s.base_offset for s in self.log.segments])
        if plan is None:
            event(f"no pass (closed segments {len(self.log.segments) - 1}, hw {'=' if self.hw == self.leo else '<'} leo)")
            return
        if meanwhile == "append":
            self._append([(b"a", b"meanwhile")], False)
        elif meanwhile == "roll":
            self.log.roll()
        elif meanwhile == "truncate_above":
            above = [b.base for b in self.batches if b.base >= max(self.hw, plan.cleanable_end)]
            if above:
                self.log.truncate_to(above[-1])
                self._truncate_model(above[-1])
        plan.run()
        stats = plan.swap()
        assert stats is not None and stats.end_offset == map_end
        event(f"pass: map {'filled' if map_end < plan.cleanable_end else 'covered the dirty range'}")
        event(f"pass: tombstones removed {min(stats.tombstones_removed, 2)}, "
              f"batches emptied {min(stats.batches_emptied, 2)}, merged {stats.segments_replaced > stats.segments_written}")
        self._apply_pass(map_end, reach, removable)

    def _expected_pass(self, capacity: int, force: bool) -> tuple[bool, int, int]:
        """Whether a pass runs, where its map ends, and the end of the segments it may
        rewrite (from the contract: only closed segments wholly below the high watermark,
        which a truncation cannot reach while the pass runs)."""
        start = self.cleaned
        end = start
        closed = self.log.segments[:-1]
        for seg in closed:
            if seg.next_offset <= start:
                continue
            if seg.next_offset > self.hw:
                break
            end = seg.next_offset
        picked = [s for s in closed if s.base_offset < max(end, start) and s.next_offset <= self.hw and s.size > 0]
        reach = max((s.next_offset for s in picked), default=0)
        happens = (end > start or force) and bool(picked) and not (end <= start and start <= 0)
        control = {o for b in self.batches if b.control for o in range(b.base, b.last + 1)}
        keys: set[bytes] = set()
        for r in self.records:
            if start <= r.offset < end and r.key is not None and r.offset not in control:
                if r.key not in keys and len(keys) == capacity:
                    return happens, r.offset, reach
                keys.add(r.key)
        return happens, end, reach

    def _apply_pass(self, map_end: int, reach: int, removable: int) -> None:
        """Records go only from the segments the pass rewrote (below ``reach``): with
        nothing dirty, the segment holding the cleaned offset may reach past the high
        watermark, and its tombstones wait."""
        now = self.clock.now
        for o in range(self.cleaned, map_end):
            self.first_cleaned.setdefault(o, now)
        latest: dict[bytes, int] = {}
        for r in self.records:
            if r.present and r.key is not None and r.offset < map_end:
                latest[r.key] = r.offset
        for r in self.records:
            if not r.present or r.key is None or r.offset >= min(map_end, reach):
                continue
            if latest[r.key] != r.offset:
                r.present = False  # superseded below the cleaned offset
            elif r.value is None and r.offset < removable and now >= self.first_cleaned[r.offset] + RETENTION:
                r.present = False  # a tombstone whose time has come
        self.cleaned = max(self.cleaned, map_end)

    # ---------------------------------------------------------- restarts, crashes

    @rule()
    def close_and_reopen(self) -> None:
        self.log.close()
        self.log = Log.open(self.dir, CONFIG, clock=self.clock)
        assert not self.log.recovery.corrupt
        self.flushed = self.leo

    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """Kill the process and lose part of the unflushed tail of the active segment."""
        active = self.log.active_segment
        path, base = active.log_path, active.base_offset
        self.log.abandon()
        size = os.path.getsize(path)
        flushed_pos = sum(len(d) for h, d in self._layout_bytes(path) if h.last_offset < self.flushed)
        tear = data.draw(st.integers(flushed_pos, size))
        with open(path, "r+b") as f:
            f.truncate(tear)
        self.log = Log.open(self.dir, CONFIG, clock=self.clock)
        assert not self.log.recovery.corrupt, self.log.recovery
        new_leo = self.log.log_end_offset
        assert self.flushed <= new_leo <= self.leo and new_leo >= base
        self._truncate_model(new_leo)
        self.flushed = new_leo

    @staticmethod
    def _layout_bytes(path: str) -> list:
        with open(path, "rb") as f:
            data = f.read()
        return [(h, data[p : p + h.size]) for p, h in iter_batches(data)]

    # --------------------------------------------------------------- invariants

    @invariant()
    def reads_give_exactly_the_surviving_records(self) -> None:
        got = [(r.offset, r.key, r.value) for r in read_records(self.log)]
        control = {o for b in self.batches if b.control for o in range(b.base, b.last + 1)}
        want = [(r.offset, r.key, r.value) for r in self.records if r.present and r.offset not in control]
        assert got == want

    @invariant()
    def batches_never_move(self) -> None:
        got = [(h.base_offset, h.last_offset, h.partition_leader_epoch, h.is_control)
               for h, _ in read_batches(self.log)]
        assert got == [(b.base, b.last, b.epoch, b.control) for b in self.batches]
        assert self.log.log_end_offset == self.leo

    @invariant()
    def the_logical_content_is_that_of_the_full_history(self) -> None:
        def content(recs) -> list:
            latest: dict[bytes, tuple] = {}
            keyless = []
            for o, k, v in recs:
                if k is None:
                    keyless.append((o, k, v))
                else:
                    latest[k] = (o, k, v)
            return sorted([t for t in latest.values() if t[2] is not None] + keyless)

        history = [(r.offset, r.key, r.value) for r in self.records]
        assert content([(r.offset, r.key, r.value) for r in read_records(self.log)]) == content(history)

    @invariant()
    def the_cleaned_offset_is_where_the_passes_got(self) -> None:
        assert self.log.cleaned_offset == min(self.cleaned, self.leo)
        assert self.log.cleaner_state.in_progress is None
        assert not [n for n in os.listdir(self.dir) if n.endswith((".cleaned", ".swap"))]


# STRATA_STATEFUL_EXAMPLES=2000 for a long hunt; the default keeps `make test` quick.
CompactedLogMachine.TestCase.settings = settings(
    max_examples=int(os.environ.get("STRATA_STATEFUL_EXAMPLES", "100")), stateful_step_count=50, deadline=None
)
TestCompactedLogStateful = CompactedLogMachine.TestCase

"""Log compaction as a user of a compacted topic sees it: each key's latest record at
its own offset, batch boundaries and headers untouched, tombstones kept as long as
they must be, and the cleaner's limits (map bound, dirty ratio, lags, I/O budget)."""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import pytest
from crc32c import crc32c

from strata.broker.replication.producer_state import ProducerStateTable, Verdict
from strata.client.batch import (
    CONTROL_MASK,
    HEADER_SIZE,
    read_header,
    validate_batch,
)
from strata.client.records import ControlType, build_control_batch, decode_batch
from strata.storage import CleanerConfig, Log, LogCleaner, LogConfig, logical_digest
from strata.storage.batch_rewrite import UndecodableRecords, first_record_without_key
from strata.storage.clean_state import MAX_RANGES, CleanerState
from strata.storage.cleaner import CleanAbandonedError
from strata.storage.key_map import BYTES_PER_ENTRY, KeyOffsetMap
from strata.storage.throttle import Throttle
from tests.storage_helpers import Clock, keyed_batch, read_batches, read_records

DAY = 24 * 3600 * 1000


def config(**kw) -> LogConfig:
    base = dict(segment_bytes=2048, index_interval_bytes=256, flush_policy="never",
                cleanup_policy="compact", delete_retention_ms=10_000)
    base.update(kw)
    return LogConfig(**base)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def open_log(tmp_path, clock):
    logs: list[Log] = []

    def _open(**kw) -> Log:
        lg = Log.open(tmp_path / "p0", config(**kw), clock=clock)
        logs.append(lg)
        return lg

    yield _open
    for lg in logs:
        lg.close()


@pytest.fixture
def cleaner() -> LogCleaner:
    return LogCleaner(CleanerConfig(map_bytes=1 << 20))


def append(lg: Log, clock: Clock, records, epoch: int = 1, **kw) -> tuple[int, int]:
    clock.now += 10
    info = lg.append_as_leader(keyed_batch(records, timestamp=clock.now, **kw), epoch)
    return info.base_offset, info.last_offset


def fill(lg: Log, clock: Clock, batches: int, keys: int, *, per_batch: int = 2, value_size: int = 20) -> None:
    n = 0
    for _ in range(batches):
        recs = []
        for _ in range(per_batch):
            recs.append((b"key-%d" % (n % keys), b"%d:" % n + b"v" * value_size))
            n += 1
        append(lg, clock, recs)


def expected_after_clean(before: list, cleaned: int) -> list[tuple[int, bytes | None, bytes | None]]:
    """Below ``cleaned`` only each key's latest record below it; everything above it."""
    latest = {r.key: r.offset for r in before if r.offset < cleaned and r.key is not None}
    return [(r.offset, r.key, r.value) for r in before
            if r.offset >= cleaned or r.key is None or latest[r.key] == r.offset]


def triples(records) -> list[tuple[int, bytes | None, bytes | None]]:
    return [(r.offset, r.key, r.value) for r in records]


# ------------------------------------------------------------------- the contract


def test_a_clean_keeps_each_keys_latest_record_at_its_own_offset(open_log, clock, cleaner):
    lg = open_log()
    fill(lg, clock, 150, keys=10)
    before = read_records(lg)
    digest = logical_digest(lg)
    hw = lg.log_end_offset
    stats = cleaner.clean(lg, hw, removable_offset=0)
    assert stats is not None and stats.records_removed > 0
    cleaned = lg.cleaned_offset
    # Everything in closed segments below the high watermark was cleaned; not the active one.
    assert cleaned == lg.active_segment.base_offset
    after = read_records(lg)
    assert triples(after) == expected_after_clean(before, cleaned)
    assert [r.offset for r in after] == sorted({r.offset for r in after})
    assert logical_digest(lg) == digest
    assert lg.log_end_offset == hw and lg.size_bytes == sum(s.size for s in lg.segments)


def test_only_segments_wholly_below_the_high_watermark_are_cleaned(open_log, clock, cleaner):
    lg = open_log()
    fill(lg, clock, 150, keys=10)
    bounds = [s.base_offset for s in lg.segments]
    hw = bounds[3] + 1  # inside the fourth segment
    before = read_records(lg)
    cleaner.clean(lg, hw, removable_offset=0)
    assert lg.cleaned_offset == bounds[3]
    assert triples(read_records(lg)) == expected_after_clean(before, bounds[3])


def test_batch_boundaries_and_headers_never_change_and_emptied_batches_stay(open_log, clock, cleaner):
    lg = open_log()
    for i in range(60):
        pid = 1000 + i % 3
        append(lg, clock, [(b"a", b"%d" % i), (b"b", b"%d" % i)], epoch=1 + i // 20,
               producer=(pid, 4, 2 * (i // 3)))
    before = read_batches(lg)
    cleaner.clean(lg, lg.log_end_offset, removable_offset=0)
    after = read_batches(lg)
    assert len(after) == len(before)
    emptied = 0
    for (old, _), (new, data) in zip(before, after, strict=True):
        validate_batch(data)  # the CRC was recomputed
        for field in ("base_offset", "last_offset_delta", "partition_leader_epoch", "producer_id",
                      "producer_epoch", "base_sequence", "base_timestamp", "attributes"):
            assert getattr(new, field) == getattr(old, field), field
        if new.record_count == 0:
            emptied += 1
            assert new.size == HEADER_SIZE and new.max_timestamp == old.max_timestamp
    # Every batch wholly below the cleaned offset but the last is superseded by it.
    assert emptied == len([h for h, _ in before if h.next_offset <= lg.cleaned_offset]) - 1 > 40
    # Idempotent producers: state rebuilt from the cleaned headers still recognises a
    # retry of each producer's last batch, and takes its next sequence.
    table = ProducerStateTable()
    table.rebuild(h for h, _ in after)
    for pid in (1000, 1001, 1002):
        last = [h for h, _ in after if h.producer_id == pid][-1]
        retry = read_header(keyed_batch([(b"a", b"x"), (b"b", b"x")], producer=(pid, 4, last.base_sequence)))
        decision = table.check(retry)
        assert decision.verdict is Verdict.DUPLICATE
        assert decision.duplicate_of.base_offset == last.base_offset
        nxt = read_header(keyed_batch([(b"a", b"y")], producer=(pid, 4, last.last_sequence + 1)))
        assert table.check(nxt).verdict is Verdict.APPEND


def test_control_batches_and_records_without_a_key_are_kept_byte_for_byte(open_log, clock, cleaner):
    lg = open_log()
    controls = []
    for i in range(40):
        if i % 7 == 0:
            info = lg.append_as_leader(build_control_batch(ControlType.LEADER_CHANGE, clock.now), 1 + i // 7)
            controls.append(info.base_offset)
        append(lg, clock, [(b"k", b"%d" % i), (None, b"keyless %d" % i)], epoch=1 + i // 7)
    before = {h.base_offset: data for h, data in read_batches(lg) if h.attributes & CONTROL_MASK}
    cleaner.clean(lg, lg.log_end_offset, removable_offset=lg.log_end_offset)
    after = {h.base_offset: data for h, data in read_batches(lg) if h.attributes & CONTROL_MASK}
    assert after == before and sorted(after) == controls
    keyless = [r.value for r in read_records(lg) if r.key is None]
    assert keyless == [b"keyless %d" % i for i in range(40)]


@pytest.mark.parametrize("codec", ["gzip", "zstd", "lz4"])
def test_compressed_batches_are_rewritten_with_their_codec(open_log, clock, cleaner, codec):
    lg = open_log(segment_bytes=4096)
    for i in range(80):
        append(lg, clock, [(b"k%d" % (j % 9), b"%d-%d" % (i, j) * 8) for j in range(i % 5 + 1)],
               compression=codec)
    before = read_records(lg)
    digest = logical_digest(lg)
    stats = cleaner.clean(lg, lg.log_end_offset, removable_offset=0)
    assert stats.batches_rewritten > 0 and stats.batches_undecodable == 0
    assert triples(read_records(lg)) == expected_after_clean(before, lg.cleaned_offset)
    assert logical_digest(lg) == digest
    for h, _ in read_batches(lg):
        if h.record_count:
            assert h.compression == {"gzip": 1, "lz4": 3, "zstd": 4}[codec]
        else:
            assert h.compression == 0  # an empty batch is written uncompressed


def test_record_headers_and_timestamps_survive_a_rewrite(open_log, clock, cleaner):
    lg = open_log()
    for i in range(50):
        append(lg, clock, [(b"gone", b"x"), (b"k%d" % i, b"v%d" % i), (b"gone", b"y")])
    before = {r.offset: r for r in read_records(lg)}
    cleaner.clean(lg, lg.log_end_offset, removable_offset=0)
    for r in read_records(lg):
        assert r == before[r.offset]  # key, value, headers and timestamp


@pytest.mark.parametrize("key_size", [1, 1 << 20])
def test_keys_of_one_byte_and_of_one_mebibyte(open_log, clock, cleaner, key_size):
    lg = open_log(segment_bytes=3 << 20, max_batch_bytes=4 << 20)
    keys = [bytes([i]) * key_size for i in range(3)]
    for i in range(8):
        append(lg, clock, [(keys[i % 3], b"v%d" % i)])
        if i % 2:
            lg.roll()
    before = read_records(lg)
    cleaner.clean(lg, lg.log_end_offset, removable_offset=0)
    assert triples(read_records(lg)) == expected_after_clean(before, lg.cleaned_offset)
    kept_below = [r.key for r in read_records(lg) if r.offset < lg.cleaned_offset]
    assert sorted(kept_below) == sorted(set(kept_below))


def test_a_batch_whose_records_cannot_be_read_is_kept_whole(open_log, clock, cleaner):
    lg = open_log()
    append(lg, clock, [(b"k", b"old")])
    bad = bytearray(keyed_batch([(b"k", b"x"), (b"k", b"y")]))
    bad[HEADER_SIZE] = 0x7F  # the first record's length becomes -64; then fix the CRC
    struct.pack_into(">I", bad, 17, crc32c(bytes(bad[21:])))
    info = lg.append_as_leader(bytes(bad), 1)
    for i in range(30):
        append(lg, clock, [(b"other", b"%d" % i)])
    lg.roll()
    stats = cleaner.clean(lg, lg.log_end_offset, removable_offset=0)
    assert stats.batches_undecodable >= 1
    kept = [data for h, data in read_batches(lg) if h.base_offset == info.base_offset]
    assert len(kept) == 1 and kept[0][16:] == bytes(bad)[16:]  # as appended (past the stamp)
    # Its keys were never learnt, so the older record of "k" stays (never a guess).
    assert [r.value for r in decode_batch(read_batches(lg)[0][1]).records] == [b"old"]


# -------------------------------------------------------------------- tombstones


def tombstone_log(open_log, clock) -> tuple[Log, int]:
    lg = open_log()
    append(lg, clock, [(b"dead", b"alive"), (b"keep", b"1")])
    t_off, _ = append(lg, clock, [(b"dead", None)])
    for i in range(60):
        append(lg, clock, [(b"filler-%d" % (i % 5), b"x" * 30)])
    return lg, t_off


def tombstones(lg: Log) -> list[int]:
    return [r.offset for r in read_records(lg) if r.value is None]


def test_a_tombstone_removes_older_values_at_once_and_itself_only_below_removable_offset(open_log, clock, cleaner):
    lg, t_off = tombstone_log(open_log, clock)
    hw = lg.log_end_offset
    cleaner.clean(lg, hw, removable_offset=0)
    assert [r.value for r in read_records(lg) if r.key == b"dead"] == [None]
    # However long we wait, above removable_offset it stays.
    clock.now += 10 * DAY
    fill(lg, clock, 60, keys=5)
    cleaner.clean(lg, lg.log_end_offset, removable_offset=t_off)
    assert tombstones(lg) == [t_off]
    # Below removable_offset, once delete_retention_ms has passed since it was first cleaned: gone.
    fill(lg, clock, 60, keys=5)
    cleaner.clean(lg, lg.log_end_offset, removable_offset=t_off + 1)
    assert tombstones(lg) == []
    assert b"dead" not in {r.key for r in read_records(lg)}


def test_a_tombstone_stays_for_delete_retention_after_its_first_clean_even_across_restarts(
        open_log, clock, cleaner, tmp_path):
    lg, t_off = tombstone_log(open_log, clock)
    first_clean = clock.now
    cleaner.clean(lg, lg.log_end_offset, removable_offset=lg.log_end_offset)
    assert tombstones(lg) == [t_off]  # first cleaned just now
    lg.close()
    clock.now = first_clean + 9_999
    lg = open_log()
    cleaner.clean(lg, lg.log_end_offset, removable_offset=lg.log_end_offset, force=True)
    assert tombstones(lg) == [t_off]
    lg.close()
    clock.now = first_clean + 10_000
    lg = open_log()
    stats = cleaner.clean(lg, lg.log_end_offset, removable_offset=lg.log_end_offset, force=True)
    assert stats.tombstones_removed == 1 and tombstones(lg) == []


def test_a_superseded_tombstone_goes_like_any_superseded_record(open_log, clock, cleaner):
    lg, t_off = tombstone_log(open_log, clock)
    append(lg, clock, [(b"dead", b"reborn")])
    fill(lg, clock, 40, keys=5)
    cleaner.clean(lg, lg.log_end_offset, removable_offset=0)
    assert [r.value for r in read_records(lg) if r.key == b"dead"] == [b"reborn"]


# ------------------------------------------------------------- when to clean


def test_due_by_dirty_ratio(open_log, clock, cleaner):
    lg = open_log(min_cleanable_dirty_ratio=0.6)
    fill(lg, clock, 100, keys=10)
    status = lg.cleaning_status(lg.log_end_offset)
    assert status.dirty_ratio == 1.0 and status.due
    cleaner.clean(lg, lg.log_end_offset, removable_offset=0)
    status = lg.cleaning_status(lg.log_end_offset)
    assert status.dirty_bytes == 0 and not status.due
    clean_bytes = status.clean_bytes
    seen_below = False
    while not status.due:
        fill(lg, clock, 5, keys=10)
        status = lg.cleaning_status(lg.log_end_offset)
        assert status.clean_bytes == clean_bytes
        assert status.due == (status.dirty_ratio >= 0.6)
        assert lg.cleaner_backlog_bytes == status.dirty_bytes
        if status.dirty_bytes and not status.due:
            seen_below = True
            assert cleaner.plan(lg, lg.log_end_offset, 0) is None
    assert seen_below
    plan = cleaner.plan(lg, lg.log_end_offset, 0)
    assert plan is not None
    plan.release()


def test_min_compaction_lag_keeps_recent_segments_dirty(open_log, clock, cleaner):
    lg = open_log(min_compaction_lag_ms=60_000)
    fill(lg, clock, 100, keys=10)
    assert not lg.cleaning_status(lg.log_end_offset).due
    assert cleaner.clean(lg, lg.log_end_offset, 0) is None
    clock.now += 60_000
    assert lg.cleaning_status(lg.log_end_offset).due


def test_max_compaction_lag_forces_a_clean_below_the_ratio(open_log, clock, cleaner):
    lg = open_log(min_cleanable_dirty_ratio=0.99, max_compaction_lag_ms=3_600_000)
    fill(lg, clock, 100, keys=10)
    cleaner.clean(lg, lg.log_end_offset, 0)
    while lg.cleaning_status(lg.log_end_offset).dirty_bytes == 0:
        fill(lg, clock, 5, keys=10)
    assert not lg.cleaning_status(lg.log_end_offset).due
    clock.now += 3_600_001
    assert lg.cleaning_status(lg.log_end_offset).due
    assert cleaner.clean(lg, lg.log_end_offset, 0) is not None


def test_a_log_that_is_not_compacted_is_never_cleaned(open_log, clock, cleaner):
    lg = open_log(cleanup_policy="delete")
    fill(lg, clock, 100, keys=10)
    assert cleaner.plan(lg, lg.log_end_offset, 0, force=True) is None


def test_retention_applies_only_when_the_policy_includes_delete(tmp_path, clock):
    for policy, survives in (("compact", True), ("compact,delete", False), ("delete", False)):
        lg = Log.open(tmp_path / policy, config(cleanup_policy=policy, retention_ms=1000), clock=clock)
        fill(lg, clock, 100, keys=10)
        clock.now += 10_000
        deleted = lg.apply_retention()
        assert (deleted == 0) == survives, policy
        lg.close()


# ------------------------------------------------------------- the key map


def test_a_small_map_cleans_in_passes_each_ending_where_the_map_filled(tmp_path, clock):
    lg = Log.open(tmp_path / "p", config(segment_bytes=8192, min_cleanable_dirty_ratio=0.0), clock=clock)
    n = 0
    for _ in range(200):
        append(lg, clock, [(b"key-%d" % (n + j), b"v") for j in range(5)])
        n += 5
    for i in range(100):  # overwrite the first 500 keys
        append(lg, clock, [(b"key-%d" % (i * 5 + j), b"w") for j in range(5)])
    lg.roll()
    before = read_records(lg)
    digest = logical_digest(lg)
    capacity = 300
    cleaner = LogCleaner(CleanerConfig(map_bytes=capacity * BYTES_PER_ENTRY))
    ends = []
    while (stats := cleaner.clean(lg, lg.log_end_offset, 0)) is not None:
        ends.append(stats.end_offset)
        assert stats.keys_mapped <= capacity
        assert triples(read_records(lg)) == expected_after_clean(before, stats.end_offset)
        assert logical_digest(lg) == digest
    assert len(ends) >= 1500 // capacity and ends == sorted(ends)
    assert ends[-1] == lg.log_end_offset
    assert len(read_records(lg)) == 1000


def test_the_key_map_stays_within_its_memory_bound():
    for n_bytes in (64 << 10, 4 << 20):
        tracemalloc.start()
        kmap = KeyOffsetMap(n_bytes)
        i = 0
        while kmap.put(kmap.digest(b"key-%d" % i), (1 << 33) + i):
            i += 1
        used, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert len(kmap) == kmap.capacity == n_bytes // BYTES_PER_ENTRY
        assert peak <= n_bytes + (8 << 10), (peak, n_bytes)
        # Updating a key already there never needs room.
        assert kmap.put(kmap.digest(b"key-0"), 1 << 40)


def test_segments_merge_into_one_file_but_their_batches_do_not(open_log, clock, cleaner):
    lg = open_log(segment_bytes=2048)
    fill(lg, clock, 200, keys=4)
    batches = [(h.base_offset, h.last_offset_delta) for h, _ in read_batches(lg)]
    cleaner.clean(lg, lg.log_end_offset, 0)
    # Groups are formed by the sizes before cleaning (as Kafka does), so the shrunk
    # segments merge on the next pass.
    n_segments = lg.segment_count
    cleaner.clean(lg, lg.log_end_offset, 0, force=True)
    assert lg.segment_count <= n_segments // 2 + 1
    assert [(h.base_offset, h.last_offset_delta) for h, _ in read_batches(lg)] == batches
    assert all(s.size <= 2048 for s in lg.segments[:-1])
    names = sorted(n for n in os.listdir(lg.dir) if n.endswith(".log"))
    assert [int(n[:20]) for n in names] == [s.base_offset for s in lg.segments]


# --------------------------------------------------- concurrency with the log


def test_the_log_appends_reads_and_rolls_while_a_pass_runs_in_a_thread(open_log, clock, cleaner):
    lg = open_log()
    fill(lg, clock, 150, keys=10)
    plan = cleaner.plan(lg, lg.log_end_offset, 0)
    assert cleaner.plan(lg, lg.log_end_offset, 0) is None  # one pass at a time
    done = threading.Event()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            plan.run()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
        finally:
            done.set()

    t = threading.Thread(target=work)
    t.start()
    appended = 0
    while not done.is_set() or appended < 20:
        fill(lg, clock, 1, keys=10)
        assert read_records(lg)[-1].offset == lg.log_end_offset - 1
        appended += 1
        if appended % 10 == 0:
            lg.roll()
    t.join()
    assert not errors
    before = read_records(lg)
    stats = plan.swap()
    assert stats is not None
    assert triples(read_records(lg)) == expected_after_clean(before, lg.cleaned_offset)
    fill(lg, clock, 5, keys=10)  # and it goes on appending afterwards
    final = triples(read_records(lg))
    lg.close()
    reopened = Log.open(lg.dir, lg.config, clock=clock)
    assert not reopened.recovery.corrupt
    assert triples(read_records(reopened)) == final
    reopened.close()


def test_retention_during_a_pass_leaves_the_cleaned_offset_where_it_was(open_log, clock, cleaner):
    lg = open_log(cleanup_policy="compact,delete", segment_bytes=2048)
    fill(lg, clock, 150, keys=10)
    cleaner.clean(lg, lg.log_end_offset, 0)
    fill(lg, clock, 30, keys=10)
    cleaned = lg.cleaned_offset
    plan = cleaner.plan(lg, lg.log_end_offset, 0, force=True)
    plan.run()
    assert len(plan.groups[0].sources) > 1  # shrunk segments: the first group merges several
    lg.advance_log_start_offset(lg.segments[1].base_offset)  # retention takes the first one
    digest = logical_digest(lg)
    survivors = [s.segment for s in plan.groups[0].sources[1:]]
    assert plan.swap() is None  # later, whole groups may go in; the pass as a whole does not count
    assert lg.segments[: len(survivors)] == survivors
    assert logical_digest(lg) == digest and lg.cleaned_offset == max(cleaned, lg.log_start_offset)
    assert not [n for n in os.listdir(lg.dir) if ".cleaned" in n or ".swap" in n]
    assert cleaner.clean(lg, lg.log_end_offset, 0, force=True) is not None  # the next pass goes through
    assert lg.cleaned_offset > cleaned


def test_a_truncation_into_the_range_cancels_the_pass(open_log, clock, cleaner):
    lg = open_log()
    fill(lg, clock, 150, keys=10)
    plan = cleaner.plan(lg, lg.log_end_offset, 0)
    cut = read_batches(lg)[40][0].base_offset
    lg.truncate_to(cut)
    with pytest.raises(Exception) as info:
        plan.run()
    plan.release()
    assert type(info.value).__name__ == "CleanAbandonedError"
    assert lg.cleaned_offset == 0
    assert not [n for n in os.listdir(lg.dir) if ".cleaned" in n]


def test_a_truncation_above_the_range_does_not_disturb_the_pass(open_log, clock, cleaner):
    lg = open_log()
    fill(lg, clock, 150, keys=10)
    plan = cleaner.plan(lg, lg.log_end_offset, 0)
    plan.run()
    lg.truncate_to(read_batches(lg)[-2][0].base_offset)  # in the active segment
    assert plan.swap() is not None


def test_a_truncation_above_the_high_watermark_never_fails_a_pass_with_nothing_dirty(open_log, clock):
    """Issue 16 (found by the stateful test): the cleaned offset inside a segment that
    reaches past the high watermark, a forced pass planned, then a Raft conflict cuts
    that segment above the high watermark. The pass must not read what the cut may take
    (it used to, and failed with "shorter than when the clean began", which the broker
    takes for a faulty disk); it cleans what lies wholly below the high watermark."""
    lg = open_log()
    append(lg, clock, [(b"x", b"x" * 1900)])
    lg.roll()  # [0, 1): too big to merge with the next one
    append(lg, clock, [(b"a", b"a1"), (b"a", b"a2")])
    append(lg, clock, [(b"b", b"b1")])
    lg.roll()  # [1, 4)
    lg.flush()
    two_keys = LogCleaner(CleanerConfig(map_bytes=2 * BYTES_PER_ENTRY))
    assert two_keys.clean(lg, 4, 0) is not None
    assert lg.cleaned_offset == 3  # the map filled at b: inside the segment [1, 4)
    # The process dies with the next segment's first batch torn (it was not durable):
    # recovery drops that segment, and [1, 4) takes the appends again, past the high
    # watermark (4).
    append(lg, clock, [(b"c", b"c1")])
    active = lg.active_segment.log_path
    lg.abandon()
    with open(active, "r+b") as f:
        f.truncate(9)
    lg = open_log()
    assert [s.base_offset for s in lg.segments] == [0, 1]
    append(lg, clock, [(b"d", b"d1")])
    append(lg, clock, [(b"e", b"e1")])
    lg.roll()  # [1, 6), above the high watermark from 4
    hw = 4
    before = read_records(lg)
    plan = two_keys.plan(lg, hw, 0, force=True)
    assert plan is not None and plan.cleanable_end == 3
    lg.truncate_to(5)  # a Raft conflict: at a batch boundary above the high watermark
    plan.run()
    stats = plan.swap()
    assert stats is not None and stats.end_offset == 3
    assert lg.corruption is None and lg.cleaned_offset == 3
    assert triples(read_records(lg)) == [t for t in triples(before) if t[0] < 5]
    assert lg.log_end_offset == 5


def test_a_truncation_into_a_segment_the_pass_copies_cancels_it_even_above_the_dirty_range(open_log, clock):
    """A pass copies whole segments, and the one holding the cleaned offset may end past
    ``cleanable_end`` (here: too young for ``min_compaction_lag_ms``). A cut into it
    cancels the pass, as a cut into the dirty range does: it is not a corrupt batch."""
    lg = open_log(min_compaction_lag_ms=1000)
    append(lg, clock, [(b"x", b"x" * 1900)])
    lg.roll()  # [0, 1)
    append(lg, clock, [(b"a", b"a1"), (b"a", b"a2")])
    append(lg, clock, [(b"b", b"b1")])
    lg.roll()  # [1, 4)
    two_keys = LogCleaner(CleanerConfig(map_bytes=2 * BYTES_PER_ENTRY))
    assert two_keys.clean(lg, 4, 0, now_ms=clock.now + 10_000) is not None
    assert lg.cleaned_offset == 3
    plan = two_keys.plan(lg, 4, 0, now_ms=clock.now, force=True)  # [1, 4) too young now
    assert plan is not None and plan.cleanable_end == 3
    assert [s.base_offset for s in plan.sources] == [0, 1]
    lg.truncate_to(3)
    with pytest.raises(CleanAbandonedError) as info:
        plan.run()
    plan.release(info.value)
    assert lg.corruption is None
    assert triples(read_records(lg)) == [(0, b"x", b"x" * 1900), (2, b"a", b"a2")]


def test_closing_the_log_cancels_a_pass_and_leaves_no_temporary_files(open_log, clock, cleaner):
    lg = open_log()
    fill(lg, clock, 150, keys=10)
    plan = cleaner.plan(lg, lg.log_end_offset, 0)
    lg.close()
    with pytest.raises(Exception) as info:
        plan.run()
    plan.release()
    assert type(info.value).__name__ == "CleanAbandonedError"
    assert not [n for n in os.listdir(lg.dir) if ".cleaned" in n]


# ------------------------------------------------------------- bookkeeping


def test_the_cleaner_checkpoint_stays_bounded_and_only_keeps_tombstones_longer(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "fsync", lambda fd: None)  # 1,200 checkpoint writes; durability is not the point
    state = CleanerState(str(tmp_path / "ckpt"))
    n = MAX_RANGES + 176
    for i in range(1, n + 1):
        state.advance(i * 10, i * 1000, delete_retention_ms=10**9)
    assert len(state.ranges) == MAX_RANGES
    for offset in range(0, n * 10, 7):
        exact = (offset // 10 + 1) * 1000
        assert state.first_cleaned_ms(offset) >= exact  # merged ranges: later, never earlier
        if offset >= 200 * 10:
            assert state.first_cleaned_ms(offset) == exact  # only the oldest were merged
    assert state.first_cleaned_ms(n * 10) is None
    reloaded = CleanerState.load(state.path)
    assert reloaded.ranges == state.ranges and reloaded.cleaned_offset == n * 10
    # Once their tombstones are all past delete retention, old ranges fold into one.
    state.advance(n * 10 + 10, 10**9 + 4_000_000, delete_retention_ms=1000)
    assert len(state.ranges) == 2


def test_a_truncation_below_the_cleaned_offset_moves_it_back_durably(open_log, clock, cleaner):
    lg = open_log()
    fill(lg, clock, 150, keys=10)
    cleaner.clean(lg, lg.log_end_offset, 0)
    cut = read_batches(lg)[10][0].base_offset
    lg.truncate_to(cut)
    assert lg.cleaned_offset == cut
    lg.close()
    assert open_log().cleaned_offset == cut


def test_metrics(open_log, clock, cleaner):
    lg = open_log()
    assert lg.last_clean_time is None and lg.bytes_cleaned == 0 and lg.dirty_ratio == 0
    fill(lg, clock, 150, keys=10)
    assert lg.dirty_ratio == 1.0 and lg.cleaner_backlog_bytes > 0
    stats = cleaner.clean(lg, lg.log_end_offset, 0)
    assert lg.last_clean_time == clock.now and lg.bytes_cleaned == stats.bytes_read
    assert lg.dirty_ratio == 0.0 and lg.cleaner_backlog_bytes == 0


def test_throttle_holds_the_rate_and_shares_it():
    now = [0.0]
    t = Throttle(1000, burst_bytes=100, clock=lambda: now[0])
    assert t.reserve(100) == 0
    assert t.reserve(500) == pytest.approx(0.5)
    assert t.reserve(500) == pytest.approx(1.0)  # queued behind the first
    now[0] = 1.0
    assert t.reserve(0) == pytest.approx(0.0)
    cancel = threading.Event()
    cancel.set()
    assert t.acquire(10_000, cancel) is False  # a cancelled wait ends at once


@pytest.mark.parametrize("keys, capacity", [
    (20_000, 2_000),
    pytest.param(1_000_000, 250_000, marks=pytest.mark.slow, id="a-million-keys"),
])
def test_many_distinct_keys_and_a_small_map_are_cleaned_in_passes(tmp_path, clock, keys, capacity):
    lg = Log.open(tmp_path / "p", config(segment_bytes=8 << 20, min_cleanable_dirty_ratio=0.0), clock=clock)
    for round_ in (b"old", b"new"):
        for start in range(0, keys, 1000):
            append(lg, clock, [(b"key-%07d" % k, round_) for k in range(start, min(start + 1000, keys))])
    lg.roll()
    cleaner = LogCleaner(CleanerConfig(map_bytes=capacity * BYTES_PER_ENTRY))
    passes = 0
    while (stats := cleaner.clean(lg, lg.log_end_offset, 0)) is not None:
        passes += 1
        assert stats.keys_mapped <= capacity
    assert passes == 2 * keys // capacity
    records = read_records(lg)
    assert len(records) == keys and {r.value for r in records} == {b"new"}
    assert [r.offset for r in records] == list(range(keys, 2 * keys))
    lg.close()


def test_a_batch_with_a_record_without_a_key_is_found_for_the_produce_path():
    keyed = keyed_batch([(b"a", b"1"), (b"b", None)], compression="zstd")
    assert first_record_without_key(keyed, read_header(keyed)) is None
    mixed = keyed_batch([(b"a", b"1"), (None, b"2"), (None, b"3")], compression="gzip")
    assert first_record_without_key(mixed, read_header(mixed)) == 1
    control = build_control_batch(ControlType.LEADER_CHANGE, 0)
    assert first_record_without_key(control, read_header(control)) is None
    bad = bytearray(keyed_batch([(b"a", b"1")]))
    bad[HEADER_SIZE] = 0x7F
    with pytest.raises(UndecodableRecords):
        first_record_without_key(bytes(bad), read_header(bad))


def test_clean_in_executor_runs_the_pass_off_the_loop_while_the_loop_appends(open_log, clock):
    lg = open_log()
    fill(lg, clock, 150, keys=10)
    cleaner = LogCleaner(CleanerConfig(map_bytes=1 << 20, io_bytes_per_second=4 << 20))

    async def main() -> tuple[object, int]:
        with ThreadPoolExecutor(1) as pool:
            task = asyncio.ensure_future(cleaner.clean_in_executor(lg, lg.log_end_offset, 0, executor=pool))
            appended = 0
            while not task.done():
                fill(lg, clock, 1, keys=10)  # the loop is free while the pass runs
                appended += 1
                await asyncio.sleep(0.001)
            return task.result(), appended

    stats, appended = asyncio.run(main())
    assert stats is not None and stats.records_removed > 0
    assert appended > 1 and lg.cleaned_offset > 0
    assert read_records(lg)[-1].offset == lg.log_end_offset - 1

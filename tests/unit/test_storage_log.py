"""Log behaviour a user of the storage engine would notice: offsets, reads, epochs,
timestamps, rolls, retention, checkpoints and flush policies."""

from __future__ import annotations

import os
import struct

import pytest

from strata.client.batch import CONTROL_MASK, CorruptBatchError, iter_batches, validate_batches
from strata.storage import (
    BatchTooLargeError,
    InvalidAppendError,
    Log,
    LogConfig,
    OffsetOutOfRangeError,
)
from tests.storage_helpers import Clock, make_batch, make_batches


def batch(n: int = 3, *, ts: int = 0, size: int = 16) -> bytes:
    return make_batch([bytes([n]) * size] * n, timestamp=ts)


def small_config(**kw) -> LogConfig:
    base = dict(segment_bytes=2048, index_interval_bytes=256, flush_policy="never")
    base.update(kw)
    return LogConfig(**base)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def open_log(tmp_path, clock):
    logs: list[Log] = []

    def _open(**kw) -> Log:
        full_check = kw.pop("full_check", False)
        lg = Log.open(tmp_path / "p0", small_config(**kw), clock=clock, full_check=full_check)
        logs.append(lg)
        return lg

    yield _open
    for lg in logs:
        lg.close()


def read_all(log: Log, start: int | None = None, max_offset: int | None = None) -> list:
    """Every batch header from ``start`` to the end, reading through the public API."""
    offset = log.log_start_offset if start is None else start
    out = []
    while True:
        sl = log.read(offset, 1000, max_offset)
        if sl is None:
            return out
        hs = validate_batches(sl.read_bytes())
        assert hs[0].base_offset == sl.base_offset and hs[-1].next_offset == sl.next_offset
        out.extend(hs)
        offset = sl.next_offset


# ------------------------------------------------------------------------ appends


def test_leader_append_assigns_offsets_from_the_log_end_and_stamps_the_epoch(open_log):
    log = open_log()
    a = log.append_as_leader(batch(3), leader_epoch=4)
    b = log.append_as_leader(batch(2), leader_epoch=4)
    assert (a.base_offset, a.last_offset, b.base_offset, b.last_offset) == (0, 2, 3, 4)
    assert log.log_end_offset == 5
    hs = read_all(log)
    assert [(h.base_offset, h.partition_leader_epoch) for h in hs] == [(0, 4), (3, 4)]


def test_leader_append_does_not_modify_the_callers_buffer(open_log):
    log = open_log()
    log.append_as_leader(batch(1), 0)
    data = bytearray(batch(2))
    before = bytes(data)
    log.append_as_leader(data, 7)
    assert bytes(data) == before


def test_leader_append_accepts_several_batches_at_once(open_log):
    log = open_log()
    info = log.append_as_leader(batch(2) + batch(3), 1)
    assert (info.base_offset, info.last_offset, info.batch_count) == (0, 4, 2)
    assert [h.base_offset for h in read_all(log)] == [0, 2]


@pytest.mark.parametrize(
    "damage",
    ["crc", "lying_length_long", "lying_length_short", "record_count", "magic", "trailing_garbage"],
)
def test_a_bad_batch_raises_and_leaves_the_log_unchanged(open_log, damage):
    log = open_log()
    log.append_as_leader(batch(2), 0)
    good = bytearray(batch(3))
    if damage == "crc":
        good[-1] ^= 0x01
    elif damage == "lying_length_long":
        struct.pack_into(">i", good, 8, len(good))
    elif damage == "lying_length_short":
        struct.pack_into(">i", good, 8, len(good) - 20)
    elif damage == "record_count":
        struct.pack_into(">i", good, 57, 9)  # more records than lastOffsetDelta allows
    elif damage == "magic":
        good[16] = 1
    elif damage == "trailing_garbage":
        good += b"\x00" * 5
    before = (log.log_end_offset, log.size_bytes, [h for h in read_all(log)])
    with pytest.raises(CorruptBatchError):
        log.append_as_leader(bytes(good), 0)
    with pytest.raises(CorruptBatchError):
        log.append_as_follower(bytes(good))
    assert (log.log_end_offset, log.size_bytes, read_all(log)) == before


def test_a_batch_above_the_size_limit_is_refused(open_log):
    log = open_log(max_batch_bytes=200)
    with pytest.raises(BatchTooLargeError) as e:
        log.append_as_leader(make_batch([b"x" * 300]), 0)
    assert e.value.limit == 200
    assert log.log_end_offset == 0


def test_leader_epoch_cannot_go_back(open_log):
    log = open_log()
    log.append_as_leader(batch(1), 5)
    with pytest.raises(InvalidAppendError):
        log.append_as_leader(batch(1), 4)
    assert log.log_end_offset == 1


def test_follower_append_keeps_the_leaders_offsets_and_epochs(open_log):
    log = open_log()
    info = log.append_as_follower(make_batches([(2, 1), (3, 1), (1, 3)]))
    assert (info.base_offset, info.last_offset) == (0, 5)
    assert [(h.base_offset, h.partition_leader_epoch) for h in read_all(log)] == [(0, 1), (2, 1), (5, 3)]
    assert log.epoch_cache.entries == [(1, 0), (3, 5)]


def test_follower_append_must_be_contiguous_with_the_log_end(open_log):
    log = open_log()
    log.append_as_follower(make_batches([(2, 1)]))
    with pytest.raises(InvalidAppendError, match="expected 2"):
        log.append_as_follower(make_batches([(2, 1)], base_offset=3))
    with pytest.raises(InvalidAppendError):  # a gap inside the request
        log.append_as_follower(make_batches([(2, 1)], base_offset=2) + make_batches([(1, 1)], base_offset=9))
    with pytest.raises(InvalidAppendError, match="epoch"):
        log.append_as_follower(make_batches([(2, 0)], base_offset=2))
    assert log.log_end_offset == 2


# -------------------------------------------------------------------------- reads


def test_read_returns_whole_batches_up_to_max_bytes_but_at_least_one(open_log):
    log = open_log()
    sizes = [len(batch(i)) for i in (1, 2, 3)]
    for i in (1, 2, 3):
        log.append_as_leader(batch(i), 0)
    sl = log.read(0, sizes[0] + sizes[1] + 1)
    assert (sl.base_offset, sl.next_offset, sl.size) == (0, 3, sizes[0] + sizes[1])
    sl = log.read(0, 1)  # smaller than one batch: still one whole batch
    assert (sl.base_offset, sl.next_offset) == (0, 1)
    sl = log.read(4, 10_000)  # inside the third batch: the whole batch comes back
    assert (sl.base_offset, sl.next_offset) == (3, 6)


def test_read_never_returns_a_batch_reaching_the_high_watermark(open_log):
    log = open_log()
    for i in (2, 2, 2):
        log.append_as_leader(batch(i), 0)
    sl = log.read(0, 10_000, max_offset=4)
    assert (sl.base_offset, sl.next_offset) == (0, 4)
    assert log.read(0, 10_000, max_offset=1) is None  # first batch ends at offset 1
    assert log.read(4, 10_000, max_offset=4) is None
    assert log.read(log.log_end_offset, 100) is None


def test_read_out_of_range_names_the_valid_range(open_log):
    log = open_log()
    log.append_as_leader(batch(3), 0)
    with pytest.raises(OffsetOutOfRangeError) as e:
        log.read(4, 100)
    assert (e.value.log_start_offset, e.value.log_end_offset) == (0, 3)
    assert "[0, 3)" in str(e.value)
    log.advance_log_start_offset(2)
    with pytest.raises(OffsetOutOfRangeError) as e:
        log.read(1, 100)
    assert e.value.log_start_offset == 2


def test_reads_cross_segment_boundaries_and_sendfile_works(open_log, tmp_path):
    log = open_log(segment_bytes=600, index_interval_bytes=100)
    expected = []
    for i in range(40):
        info = log.append_as_leader(batch(1 + i % 4, ts=i), i // 10)
        expected.append((info.base_offset, info.last_offset))
    assert log.segment_count > 5
    hs = read_all(log)
    assert [(h.base_offset, h.last_offset) for h in hs] == expected
    # Every offset can be a starting point, including the first of each segment.
    for base, last in expected:
        for o in (base, last):
            sl = log.read(o, 1)
            assert sl.base_offset == base
    sl = log.read(expected[20][0], 10_000)
    out = tmp_path / "sent"
    with open(out, "wb") as f:
        assert sl.send_to(f.fileno()) == sl.size
    assert out.read_bytes() == sl.read_bytes()
    assert sl.path.endswith(".log") and sl.position > 0


def test_read_through_the_sparse_index_positions_within_a_big_segment(open_log):
    log = open_log(segment_bytes=1 << 20, index_interval_bytes=128)
    infos = [log.append_as_leader(batch(1 + i % 5, ts=i), 0) for i in range(500)]
    assert len(log.active_segment.offset_index) > 50
    for info in infos[::7]:
        sl = log.read(info.last_offset, 1)
        assert sl.base_offset == info.base_offset and sl.next_offset == info.last_offset + 1


# --------------------------------------------------------------------- truncation


def test_truncate_to_drops_the_tail_across_segments_and_the_epochs_with_it(open_log):
    log = open_log(segment_bytes=400)
    for i in range(20):
        log.append_as_leader(batch(2), i // 5)
    segs = log.segment_count
    assert log.epoch_cache.entries == [(0, 0), (1, 10), (2, 20), (3, 30)]
    log.truncate_to(14)
    assert log.log_end_offset == 14 and log.segment_count < segs
    assert [h.base_offset for h in read_all(log)] == list(range(0, 14, 2))
    assert log.epoch_cache.entries == [(0, 0), (1, 10)]
    assert log.end_offset_for_epoch(1) == (1, 14)
    with pytest.raises(ValueError, match="batch boundary"):
        log.truncate_to(13)
    # New appends continue from the truncation point.
    info = log.append_as_leader(batch(2), 5)
    assert info.base_offset == 14
    assert log.epoch_for_offset(15) == 5 and log.epoch_for_offset(13) == 1


def test_truncate_survives_reopen(open_log):
    log = open_log(segment_bytes=400)
    for _ in range(20):
        log.append_as_leader(batch(2), 0)
    log.truncate_to(10)
    log.close()
    log = open_log(segment_bytes=400)
    assert log.log_end_offset == 10
    assert [h.base_offset for h in read_all(log)] == list(range(0, 10, 2))


def test_truncate_fully_and_start_at_keeps_the_previous_term(open_log):
    log = open_log()
    log.append_as_leader(batch(3), 1)
    log.truncate_fully_and_start_at(100, epoch=6)
    assert (log.log_start_offset, log.log_end_offset) == (100, 100)
    assert log.epoch_for_offset(99) == 6  # Raft's prevLogTerm for the first entry
    with pytest.raises(OffsetOutOfRangeError):
        log.read(50, 100)
    log.append_as_follower(make_batches([(2, 7)], base_offset=100))
    assert log.epoch_for_offset(101) == 7 and log.epoch_for_offset(99) == 6
    log.close()
    log = open_log()
    assert (log.log_start_offset, log.log_end_offset) == (100, 102)
    assert log.epoch_for_offset(99) == 6 and log.epoch_for_offset(100) == 7


# ------------------------------------------------------------------------- epochs


def test_epoch_for_offset_and_end_offset_for_epoch(open_log):
    log = open_log()
    for epoch, n in [(1, 3), (1, 2), (4, 1), (7, 4)]:
        log.append_as_leader(batch(n), epoch)
    assert [log.epoch_for_offset(o) for o in range(10)] == [1, 1, 1, 1, 1, 4, 7, 7, 7, 7]
    assert log.epoch_for_offset(10) is None and log.epoch_for_offset(-1) is None
    assert log.end_offset_for_epoch(1) == (1, 5)
    assert log.end_offset_for_epoch(2) == (1, 5)  # largest epoch <= 2 is 1
    assert log.end_offset_for_epoch(4) == (4, 6)
    assert log.end_offset_for_epoch(7) == (7, 10)
    assert log.end_offset_for_epoch(0) == (-1, -1)


def test_the_term_before_the_log_start_survives_retention_and_reopen(open_log, clock):
    log = open_log(segment_bytes=300, retention_bytes=0)
    for i in range(12):
        log.append_as_leader(batch(2), i)  # a new epoch per batch
    assert log.apply_retention() > 0
    lso = log.log_start_offset
    assert lso > 0
    assert log.epoch_for_offset(lso - 1) == (lso - 1) // 2
    assert log.epoch_for_offset(lso - 2) is None or lso - 2 < 0
    assert len(log.epoch_cache.entries) <= 12 - lso // 2 + 1
    log.close()
    log = open_log(segment_bytes=300, retention_bytes=0)
    assert log.log_start_offset == lso
    assert log.epoch_for_offset(lso - 1) == (lso - 1) // 2


# ---------------------------------------------------------------------- timestamps


def test_offset_for_timestamp_finds_the_first_batch_at_or_after(open_log):
    log = open_log(segment_bytes=500, index_interval_bytes=64)
    for i in range(60):
        log.append_as_leader(batch(2, ts=1000 + 10 * i), 0)
    assert log.segment_count > 3
    assert log.offset_for_timestamp(0) == 0
    assert log.offset_for_timestamp(1000) == 0
    assert log.offset_for_timestamp(1001) == 2
    assert log.offset_for_timestamp(1250) == 50
    assert log.offset_for_timestamp(1590) == 118
    assert log.offset_for_timestamp(1591) is None
    log.close()
    log = open_log(segment_bytes=500, index_interval_bytes=64)
    assert log.offset_for_timestamp(1250) == 50


def test_offset_for_timestamp_with_timestamps_out_of_order(open_log):
    log = open_log(index_interval_bytes=64)
    for ts in [50, 10, 70, 20, 90, 30]:
        log.append_as_leader(batch(1, ts=ts), 0)
    assert log.offset_for_timestamp(60) == 2
    assert log.offset_for_timestamp(71) == 4
    assert log.offset_for_timestamp(15) == 0


# ------------------------------------------------------------------ roll, retention


def test_roll_by_size_keeps_segments_under_segment_bytes(open_log, tmp_path):
    log = open_log(segment_bytes=500)
    for _ in range(30):
        log.append_as_leader(batch(2), 0)
    names = sorted(n for n in os.listdir(tmp_path / "p0") if n.endswith(".log"))
    assert len(names) == log.segment_count > 1
    assert names[0] == "00000000000000000000.log"
    for n in names:
        assert os.path.getsize(tmp_path / "p0" / n) <= 500
    def has_indexes(n: str) -> bool:
        return all(os.path.exists(tmp_path / "p0" / n.replace(".log", suffix)) for suffix in (".index", ".timeindex"))
    # A rolled segment's indexes are written at the roll; the active one's at close.
    assert all(has_indexes(n) for n in names[:-1])
    assert not has_indexes(names[-1])
    # Names are base offsets.
    bases = [int(n[:-4]) for n in names]
    assert bases == [s.base_offset for s in log.segments]
    log.close()
    assert has_indexes(names[-1])


def test_roll_by_age_uses_the_injected_clock(open_log, clock):
    log = open_log(segment_bytes=1 << 20, segment_ms=1000)
    log.append_as_leader(batch(1), 0)
    clock.now += 999
    log.append_as_leader(batch(1), 0)
    assert log.segment_count == 1
    clock.now += 1
    log.append_as_leader(batch(1), 0)
    assert log.segment_count == 2 and log.active_segment.base_offset == 2


def test_retention_by_size_deletes_whole_old_segments_never_the_active(open_log):
    log = open_log(segment_bytes=400, retention_bytes=1000)
    for _ in range(40):
        log.append_as_leader(batch(2), 0)
    before = log.segment_count
    deleted = log.apply_retention()
    assert deleted > 0 and log.segment_count == before - deleted
    assert log.size_bytes - log.segments[0].size < 1000 <= log.size_bytes + 400
    assert log.log_start_offset == log.segments[0].base_offset
    assert read_all(log)[0].base_offset == log.log_start_offset
    log2_cfg = dict(segment_bytes=400, retention_bytes=0)
    log.close()
    log = open_log(**log2_cfg)
    log.apply_retention()
    assert log.segment_count == 1  # the active segment stays even with retention_bytes=0


def test_retention_by_age_uses_batch_timestamps(open_log, clock):
    log = open_log(segment_bytes=300, retention_ms=10_000)
    for i in range(20):
        log.append_as_leader(batch(2, ts=clock.now + i * 1000), 0)
    assert log.apply_retention(clock.now + 5_000) == 0
    deleted = log.apply_retention(clock.now + 20_000)
    assert deleted > 0
    for seg in log.segments[:-1]:
        assert seg.max_timestamp >= clock.now + 10_000


def test_log_start_offset_is_checkpointed(open_log, tmp_path):
    log = open_log(segment_bytes=300)
    for _ in range(20):
        log.append_as_leader(batch(2), 0)
    log.advance_log_start_offset(13)
    assert log.log_start_offset == 13
    assert log.segments[0].base_offset <= 13 < log.segments[0].next_offset
    sl = log.read(13, 100)
    assert sl.base_offset == 12  # the batch holding 13
    assert (tmp_path / "p0" / "log-start-offset-checkpoint").read_text().split() == ["0", "1", "13"]
    log.abandon()  # even without a clean close
    log = open_log(segment_bytes=300)
    assert log.log_start_offset == 13
    with pytest.raises(OffsetOutOfRangeError):
        log.read(12, 100)
    with pytest.raises(OffsetOutOfRangeError):
        log.advance_log_start_offset(log.log_end_offset + 1)


# ------------------------------------------------------------------ flush policies


@pytest.fixture
def fsyncs(monkeypatch):
    """Paths of the files fsynced, recorded through os.fsync."""
    seen: list[str] = []
    real = os.fsync

    def counting(fd: int) -> None:
        seen.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return seen


def log_fsyncs(seen: list[str]) -> int:
    return sum(p.endswith(".log") for p in seen)


def test_always_policy_leaves_fsync_to_flush_and_tracks_flushed_offset(open_log, fsyncs):
    log = open_log(flush_policy="always")
    fsyncs.clear()
    for _ in range(5):
        log.append_as_leader(batch(2), 0)
    assert log_fsyncs(fsyncs) == 0 and log.flushed_offset == 0
    log.flush()
    assert log_fsyncs(fsyncs) == 1 and log.flushed_offset == 10
    log.flush()  # nothing new: no fsync
    assert log_fsyncs(fsyncs) == 1


def test_interval_policy_flushes_when_the_interval_has_passed(open_log, clock, fsyncs):
    log = open_log(flush_policy="interval", flush_interval_ms=100)
    fsyncs.clear()
    log.append_as_leader(batch(1), 0)
    clock.now += 99
    log.append_as_leader(batch(1), 0)
    assert log_fsyncs(fsyncs) == 0 and log.flushed_offset == 0
    clock.now += 1
    log.append_as_leader(batch(1), 0)
    assert log_fsyncs(fsyncs) == 1 and log.flushed_offset == 3


def test_never_policy_fsyncs_only_on_flush_and_close(open_log, fsyncs):
    log = open_log(flush_policy="never", segment_bytes=300)
    fsyncs.clear()
    for _ in range(20):
        log.append_as_leader(batch(2), 0)
    assert log_fsyncs(fsyncs) == 0
    log.close()
    # The close covers every rolled segment and the active one, with their indexes.
    assert log_fsyncs(fsyncs) == log.segment_count
    assert sum(p.endswith(".index") for p in fsyncs) == log.segment_count


def test_flush_covers_rolled_segments_and_moves_the_recovery_point(open_log, tmp_path):
    log = open_log(segment_bytes=300)
    for _ in range(20):
        log.append_as_leader(batch(2), 0)
    log.flush()
    assert log.flushed_offset == log.log_end_offset
    assert log.recovery_point == log.active_segment.base_offset
    text = (tmp_path / "p0" / "recovery-point-offset-checkpoint").read_text().split()
    assert text == ["0", "1", str(log.active_segment.base_offset)]


def test_clean_close_means_the_next_open_checks_only_the_tail(open_log):
    log = open_log(segment_bytes=1 << 20, index_interval_bytes=256)
    for i in range(300):
        log.append_as_leader(batch(3, ts=i), 0)
    size = log.size_bytes
    log.close()
    log = open_log(segment_bytes=1 << 20, index_interval_bytes=256)
    assert log.recovery.segments_scanned == 0
    assert log.recovery.bytes_checked < 1024 < size
    assert log.log_end_offset == 900 and log.offset_for_timestamp(150) == 450


def test_iter_batches_of_segment_file_equals_what_reads_return(open_log, tmp_path):
    log = open_log(segment_bytes=1 << 20)
    for i in range(10):
        log.append_as_leader(batch(i + 1), 2)
    log.close()
    data = (tmp_path / "p0" / "00000000000000000000.log").read_bytes()
    log = open_log(segment_bytes=1 << 20)
    assert [h for _, h in iter_batches(data)] == read_all(log)


def test_a_new_epoch_is_saved_by_the_flush_job_not_on_the_appending_thread(open_log, tmp_path, fsyncs):
    """An election per partition must not cost an fsync on the event loop: the new epoch
    reaches leader-epoch-checkpoint through the next flush job, before its data fsync."""
    ckpt = tmp_path / "p0" / "leader-epoch-checkpoint"
    log = open_log(flush_policy="always")
    log.append_as_leader(batch(2), 3)
    log.append_as_leader(batch(2), 5)
    fsyncs.clear()
    log.append_as_leader(batch(2), 7)  # a new epoch
    # (A new log writes no checkpoint until its first flush: absent reads back as empty.)
    assert fsyncs == [] and (not ckpt.exists() or "7 4" not in ckpt.read_text())
    job = log.begin_flush()
    assert job is not None
    job.run()  # what the group-commit thread runs
    log.complete_flush(job)
    assert ckpt.read_text().split("\n")[2:5] == ["3 0", "5 2", "7 4"]
    assert fsyncs.index(str(ckpt) + ".tmp") < next(i for i, p in enumerate(fsyncs) if p.endswith(".log"))


def test_a_crash_before_the_epoch_is_saved_loses_no_epoch(open_log, tmp_path):
    log = open_log(segment_bytes=300)
    for epoch in (1, 1, 2, 2, 4):
        log.append_as_leader(batch(2), epoch)
    log.abandon()  # killed: neither a flush job nor a close saved the epochs
    log = open_log(segment_bytes=300)
    assert [log.epoch_for_offset(o) for o in (0, 3, 4, 7, 8, 9)] == [1, 1, 2, 2, 4, 4]
    assert log.end_offset_for_epoch(2) == (2, 8)


def test_a_slow_flush_job_never_puts_back_an_older_epoch_list(open_log, tmp_path):
    """A job captured before a truncation, finishing after it, must not write its list
    over the truncated one (the truncation saves at once, on the loop)."""
    ckpt = tmp_path / "p0" / "leader-epoch-checkpoint"
    log = open_log()
    log.append_as_leader(batch(2), 1)
    log.append_as_leader(batch(2), 2)
    stale = log.begin_flush()
    assert stale is not None
    log.truncate_to(2)  # epoch 2 is gone, and the checkpoint says so at once
    assert "2 2" not in ckpt.read_text()
    stale.run()
    log.complete_flush(stale)
    assert ckpt.read_text().split("\n")[1:3] == ["1", "1 0"]


def test_offset_for_timestamp_passes_over_control_batches(open_log):
    """A leader's no-op carries the broker's clock, later than records stamped by their
    producers: a lookup for those records finds them, not the no-op before them."""
    log = open_log()
    log.append_as_leader(make_batch([b"noop"], timestamp=9_000, attributes=CONTROL_MASK), 0)
    for i in range(3):
        log.append_as_leader(batch(2, ts=1000 + 10 * i), 0)
    assert log.offset_for_timestamp(0) == 1
    assert log.offset_for_timestamp(1015) == 5
    assert log.offset_for_timestamp(1021) is None

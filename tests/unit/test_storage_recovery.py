"""Crash recovery: torn tails, bit flips, damaged indexes and checkpoints.

The promise under test: after any of these, the log reopens to a prefix of what
was written (ending at the last valid batch), says in a log line what it cut, and
no read ever returns bytes that differ from what was appended.
"""

from __future__ import annotations

import logging
import os
import random
import struct
import tempfile
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strata.client.batch import PARTITION_LEADER_EPOCH_OFFSET, CorruptBatchError, validate_batches
from strata.storage import Log, LogConfig
from tests.storage_helpers import make_batch

CFG = LogConfig(segment_bytes=4096, index_interval_bytes=200, flush_policy="never")
SEG0 = "00000000000000000000.log"


def write_log(path, n: int = 30, *, seed: int = 0, clean: bool = False, cfg: LogConfig = CFG) -> list[bytes]:
    """Append ``n`` varied batches; return each batch's bytes as stored (stamped)."""
    rng = random.Random(seed)
    log = Log.open(path, cfg)
    stored = []
    for i in range(n):
        count = rng.randint(1, 5)
        b = make_batch([rng.randbytes(rng.randint(1, 120)) for _ in range(count)], timestamp=1000 + i)
        info = log.append_as_leader(b, 3)
        stamped = bytearray(b)
        struct.pack_into(">q", stamped, 0, info.base_offset)
        struct.pack_into(">i", stamped, PARTITION_LEADER_EPOCH_OFFSET, 3)
        stored.append(bytes(stamped))
    if clean:
        log.close()
    else:
        log.abandon()  # a crash: no flush, no checkpoint
    return stored


def read_everything(log: Log) -> bytes:
    out = []
    offset = log.log_start_offset
    while (sl := log.read(offset, 1 << 20)) is not None:
        out.append(sl.read_bytes())
        offset = sl.next_offset
    return b"".join(out)


def masked(data: bytes) -> bytes:
    """``data`` with each batch's partitionLeaderEpoch zeroed (the field Kafka leaves outside the CRC)."""
    buf = bytearray(data)
    pos = 0
    while pos < len(buf):
        (length,) = struct.unpack_from(">i", buf, pos + 8)
        struct.pack_into(">i", buf, pos + PARTITION_LEADER_EPOCH_OFFSET, 0)
        pos += 12 + length
    return bytes(buf)


def segment_files(path) -> list[str]:
    return sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".log"))


# ------------------------------------------------------------------- torn tails


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=10_000), seed=st.integers(0, 1000))
def test_a_tail_torn_at_any_byte_recovers_to_the_last_whole_batch(cut, seed, caplog):
    with tempfile.TemporaryDirectory() as d:
        stored = write_log(d, 12, seed=seed, cfg=LogConfig(segment_bytes=1 << 20, flush_policy="never"))
        data = b"".join(stored)
        cut %= len(data) + 1
        with open(os.path.join(d, SEG0), "r+b") as f:
            f.truncate(cut)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="strata.storage"):
            log = Log.open(d, CFG)
        whole = 0
        kept = 0
        for b in stored:
            if whole + len(b) > cut:
                break
            whole += len(b)
            kept += 1
        assert read_everything(log) == data[:whole]
        assert log.log_end_offset == sum(struct.unpack_from(">i", b, 57)[0] for b in stored[:kept])
        rep = log.recovery
        assert not rep.corrupt
        assert rep.truncated_bytes == cut - whole
        if cut > whole:
            assert rep.first_bad_offset == log.log_end_offset
            assert f"cut {cut - whole} bytes" in caplog.text and SEG0 in caplog.text and d in caplog.text
            assert "torn" in caplog.text
        log.close()


def test_a_zero_filled_tail_is_a_torn_write_not_corruption(tmp_path):
    stored = write_log(tmp_path, 10)
    with open(tmp_path / SEG0, "ab") as f:
        f.write(b"\x00" * 3000)
    log = Log.open(tmp_path, CFG)
    assert not log.recovery.corrupt and log.recovery.truncated_bytes == 3000
    assert read_everything(log) == b"".join(stored)


# -------------------------------------------------------------------- bit flips


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 10_000), data=st.data())
def test_a_bit_flip_anywhere_is_never_served(seed, data):
    with tempfile.TemporaryDirectory() as d:
        stored = write_log(d, 25, seed=seed)
        files = segment_files(d)
        path = data.draw(st.sampled_from(files), label="segment")
        size = os.path.getsize(path)
        pos = data.draw(st.integers(0, size - 1), label="byte")
        bit = data.draw(st.integers(0, 7), label="bit")
        with open(path, "r+b") as f:
            f.seek(pos)
            byte = f.read(1)[0]
            f.seek(pos)
            f.write(bytes([byte ^ (1 << bit)]))
        log = Log.open(d, CFG)
        got = read_everything(log)
        original = b"".join(stored)
        # What is served is a prefix of what was written, batch for batch.
        assert masked(got) == masked(original[: len(got)])
        hs = validate_batches(got)
        assert log.log_end_offset == (hs[-1].next_offset if hs else 0)
        # Where the damage was not in the epoch field, it ends the log exactly there.
        seg_start = sum(os.path.getsize(f) for f in files[: files.index(path)])
        damaged = seg_start + pos
        starts = [0]
        for b in stored:
            starts.append(starts[-1] + len(b))
        k = max(i for i in range(len(stored)) if starts[i] <= damaged)
        in_epoch_field = PARTITION_LEADER_EPOCH_OFFSET <= damaged - starts[k] < PARTITION_LEADER_EPOCH_OFFSET + 4
        if not in_epoch_field:
            assert len(got) == starts[k]
            assert log.recovery.corrupt
            assert log.recovery.first_bad_offset == log.log_end_offset
        log.close()


def test_a_flipped_length_in_the_middle_is_corruption_not_a_torn_tail(tmp_path, caplog):
    stored = write_log(tmp_path, 10, cfg=LogConfig(segment_bytes=1 << 20, flush_policy="never"))
    pos = sum(len(b) for b in stored[:4])
    with open(tmp_path / SEG0, "r+b") as f:
        f.seek(pos + 8)
        f.write(struct.pack(">i", 100_000))  # runs past the end of the file
    with caplog.at_level(logging.WARNING, logger="strata.storage"):
        log = Log.open(tmp_path, CFG)
    assert log.recovery.corrupt
    assert read_everything(log) == b"".join(stored[:4])
    assert "CORRUPT" in caplog.text


def test_a_crc_failure_in_a_trusted_segment_is_refused_on_read_then_repaired_by_full_check(tmp_path, caplog):
    stored = write_log(tmp_path, 40, clean=True)
    files = segment_files(tmp_path)
    assert len(files) >= 3
    # Damage the middle of the second segment: below the recovery point, so open trusts it.
    with open(files[1], "r+b") as f:
        size = os.path.getsize(files[1])
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0xFF]))
    log = Log.open(tmp_path, CFG)
    assert not log.recovery.corrupt
    with caplog.at_level(logging.ERROR, logger="strata.storage"), pytest.raises(CorruptBatchError):
        read_everything(log)
    assert log.corruption is not None
    assert "corrupt batch" in caplog.text
    lso_before = log.log_start_offset
    log.close()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="strata.storage"):
        log = Log.open(tmp_path, CFG, full_check=True)
    rep = log.recovery
    assert rep.corrupt and rep.truncated_bytes > 0
    assert log.segment_count == 2  # everything after the damage was dropped: the log stays contiguous
    got = read_everything(log)
    assert got == b"".join(stored)[: len(got)] and len(got) >= os.path.getsize(files[0])
    assert "later segment" in caplog.text
    assert log.log_start_offset == lso_before
    log.close()


def test_a_torn_rolled_segment_with_later_data_counts_as_corrupt(tmp_path):
    stored = write_log(tmp_path, 40)
    files = segment_files(tmp_path)
    with open(files[0], "r+b") as f:
        f.truncate(os.path.getsize(files[0]) - 10)
    log = Log.open(tmp_path, CFG)
    assert log.recovery.corrupt  # the torn bytes were followed by further data
    assert log.segment_count == 1
    got = read_everything(log)
    assert got == b"".join(stored)[: len(got)]


# ------------------------------------------------------------ indexes, checkpoints


@pytest.mark.parametrize("damage", ["zeroed", "missing", "garbage", "short", "timeindex_missing"])
def test_damaged_indexes_are_rebuilt(tmp_path, damage, caplog):
    stored = write_log(tmp_path, 60, clean=True)
    files = segment_files(tmp_path)
    idx = files[0].replace(".log", ".index")
    tidx = files[0].replace(".log", ".timeindex")
    assert os.path.getsize(idx) > 0
    if damage == "zeroed":
        with open(idx, "r+b") as f:
            f.write(b"\x00" * os.path.getsize(idx))
    elif damage == "missing":
        os.unlink(idx)
    elif damage == "garbage":
        with open(idx, "r+b") as f:
            f.write(os.urandom(os.path.getsize(idx)))
    elif damage == "short":
        with open(idx, "r+b") as f:
            f.truncate(os.path.getsize(idx) - 3)
    elif damage == "timeindex_missing":
        os.unlink(tidx)
    with caplog.at_level(logging.INFO, logger="strata.storage"):
        log = Log.open(tmp_path, CFG)
    assert log.recovery.indexes_rebuilt == 1 and not log.recovery.corrupt
    assert "rebuilding" in caplog.text
    assert read_everything(log) == b"".join(stored)
    for i, _ in enumerate(stored):
        assert log.offset_for_timestamp(1000 + i) is not None
    log.close()
    assert os.path.getsize(idx) % 8 == 0 and os.path.getsize(idx) > 0


def test_missing_checkpoints_mean_a_full_scan_that_rebuilds_the_epochs(tmp_path):
    log = Log.open(tmp_path, CFG)
    for e in range(1, 6):
        for _ in range(8):
            log.append_as_leader(make_batch([b"v" * 50] * 2), e)
    entries = log.epoch_cache.entries
    log.close()
    for name in ("recovery-point-offset-checkpoint", "leader-epoch-checkpoint"):
        os.unlink(tmp_path / name)
    with open(tmp_path / "log-start-offset-checkpoint", "w") as f:
        f.write("garbage")
    log = Log.open(tmp_path, CFG)
    assert log.recovery.segments_scanned == log.segment_count > 1
    assert log.epoch_cache.entries == entries
    assert log.log_end_offset == 80
    log.close()


def test_recovery_point_past_the_data_still_checks_the_tail(tmp_path):
    stored = write_log(tmp_path, 20, clean=True)
    with open(tmp_path / "recovery-point-offset-checkpoint", "w") as f:
        f.write("0\n1\n999999\n")
    files = segment_files(tmp_path)
    with open(files[-1], "ab") as f:
        f.write(b"\x07" * 30)  # garbage after the last batch
    log = Log.open(tmp_path, CFG)
    assert read_everything(log) == b"".join(stored)
    assert log.recovery.truncated_bytes == 30
    log.close()


def test_a_new_log_writes_no_checkpoint_and_reopens_empty(tmp_path):
    """Opening an empty log (every replica of a new partition) costs no checkpoint write,
    and no index file: one file, the segment's log."""
    log = Log.open(tmp_path, CFG)
    assert sorted(os.listdir(tmp_path)) == [SEG0]
    log.abandon()  # a crash before anything was written
    log = Log.open(tmp_path, CFG)
    assert (log.log_start_offset, log.log_end_offset, log.epoch_cache.entries) == (0, 0, [])
    log.append_as_leader(make_batch([b"x"]), 1)
    log.close()
    log = Log.open(tmp_path, CFG)
    assert (log.log_end_offset, log.epoch_cache.entries) == (1, [(1, 0)])
    log.close()


def test_a_crash_before_the_active_segment_wrote_its_indexes_recovers_them_from_the_log(tmp_path):
    """The active segment's indexes reach the disk at roll or close: after a crash they are
    rebuilt from the log, and reads by offset and by time find the same batches."""
    cfg = replace(CFG, segment_bytes=1 << 20)
    log = Log.open(tmp_path, cfg)
    for i in range(200):
        log.append_as_leader(make_batch([b"v%d" % i * 50], timestamp=1000 + i), 1)
    entries = len(log.active_segment.offset_index)
    assert entries > 0
    expected = read_everything(log)
    log.abandon()  # a crash: nothing persisted the indexes
    assert not (tmp_path / "00000000000000000000.index").exists()
    log = Log.open(tmp_path, cfg)
    assert len(log.active_segment.offset_index) == entries
    assert read_everything(log) == expected
    assert log.offset_for_timestamp(1150) == 150
    log.close()


def test_new_epochs_reach_the_checkpoint_with_the_next_flush(tmp_path):
    """An epoch is saved by the flush that makes its first batch durable, not on append."""
    log = Log.open(tmp_path, CFG)
    log.append_as_leader(make_batch([b"a"]), 1)
    log.append_as_leader(make_batch([b"b"]), 2)
    assert not (tmp_path / "leader-epoch-checkpoint").exists()
    log.flush()
    with open(tmp_path / "leader-epoch-checkpoint") as f:
        assert f.read().split("\n")[2:4] == ["1 0", "2 1"]
    log.append_as_leader(make_batch([b"c"]), 3)
    log.abandon()  # a crash: epoch 3 never reached the checkpoint, its batch may have
    log = Log.open(tmp_path, CFG)  # not a full check: the tail past the recovery point is scanned
    assert log.log_end_offset == 3
    assert log.epoch_cache.entries == [(1, 0), (2, 1), (3, 2)]
    log.close()


def test_epochs_of_trusted_segments_survive_a_crash_after_a_flush(tmp_path):
    """Segments below the recovery point are trusted with the checkpoint's epochs: the flush
    that moved the recovery point must have saved them."""
    log = Log.open(tmp_path, CFG)
    for e in range(1, 6):
        for _ in range(8):
            log.append_as_leader(make_batch([b"v" * 50] * 2), e)
    entries = log.epoch_cache.entries
    log.flush()
    log.abandon()
    log = Log.open(tmp_path, CFG)
    assert log.segment_count > 1 and log.recovery.segments_scanned < log.segment_count
    assert log.epoch_cache.entries == entries
    log.close()

"""A full disk: appends fail with a clear error, the log stays consistent, and every
batch reported durable is still there after a crash and a reopen."""

from __future__ import annotations

import errno
import os
import random

import pytest

from strata.storage import Log, LogConfig, LogFullError
from tests.storage_helpers import make_batch, small_tmpfs

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")

CFG = LogConfig(segment_bytes=256 << 10, index_interval_bytes=4096, flush_policy="always",
                max_batch_bytes=64 << 10)


@pytest.fixture
def small_disk(tmp_path):
    with small_tmpfs(tmp_path / "mnt", "2m") as mnt:
        yield mnt


def read_everything(log: Log) -> bytes:
    out = []
    offset = log.log_start_offset
    while (sl := log.read(offset, 1 << 20)) is not None:
        out.append(sl.read_bytes())
        offset = sl.next_offset
    return b"".join(out)


def fill_until_full(log: Log, rng: random.Random) -> tuple[list[bytes], LogFullError]:
    """Append (and flush: durable) until the disk is full; return what is durable."""
    durable: list[bytes] = []
    for _ in range(10_000):
        b = make_batch([rng.randbytes(rng.randint(500, 3000)) for _ in range(rng.randint(1, 8))])
        try:
            log.append_as_leader(b, 2)
            log.flush()
        except LogFullError as e:
            return durable, e
        sl = log.read(log.log_end_offset - 1, 1 << 20)
        durable.append(sl.read_bytes())
    raise AssertionError("the disk never filled up")


@pytest.mark.parametrize("ending", ["crash", "clean_close"])
def test_a_full_disk_fails_appends_cleanly_and_loses_nothing_durable(small_disk, ending):
    rng = random.Random(7)
    path = small_disk / "p0"
    log = Log.open(path, CFG)
    durable, err = fill_until_full(log, rng)
    assert isinstance(err, OSError) and err.errno == errno.ENOSPC
    assert "no space left" in str(err) and str(path) in str(err)
    assert len(durable) > 50 and log.segment_count > 1
    leo = log.log_end_offset
    # The log is as it was before the failed append, and still readable.
    assert read_everything(log) == b"".join(durable)
    for _ in range(3):
        with pytest.raises(LogFullError):
            log.append_as_leader(make_batch([b"y" * 20_000]), 2)
        assert log.log_end_offset == leo
    assert log.flushed_offset == leo
    if ending == "crash":
        log.abandon()
    else:
        log.close()  # checkpoints may not fit; the close must not lose data either way
    # Reopen on the still-full disk: no partial batch, every durable batch.
    log = Log.open(path, CFG)
    assert not log.recovery.corrupt
    assert log.log_end_offset == leo
    assert read_everything(log) == b"".join(durable)
    # Freeing space (retention) makes the log writable again.
    log.advance_log_start_offset(log.segments[2].base_offset)
    info = log.append_as_leader(make_batch([b"z" * 1000]), 3)
    log.flush()
    assert info.base_offset == leo
    log.close()
    log = Log.open(path, CFG)
    assert log.log_end_offset == leo + 1 and log.epoch_for_offset(leo) == 3
    log.close()

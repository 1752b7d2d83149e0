"""The broker's cleaner service (``broker/replication/cleaning.py``) when storage goes wrong.

The storage engine's own tests crash a swap at every file operation, fill a disk and flip
bits under ``LogCleaner``; these check what the broker does with those failures: a corrupt
batch makes the replica storage-faulty (``Replica.fail``, as a bad read does), a full disk
abandons the pass and leaves the log readable and unchanged, and that log is passed over
until the backoff has gone by while other logs are still cleaned.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from strata.broker.config import BrokerConfig
from strata.broker.replication.cleaning import CleanerService
from strata.client.batch import iter_batches
from strata.storage import CleanerConfig, Log, LogCleaner, LogConfig, logical_digest
from tests.storage_helpers import Clock, keyed_batch, read_records, small_tmpfs
from tests.unit.test_storage_cleaner_faults import fill_disk

CFG = LogConfig(segment_bytes=4096, index_interval_bytes=512, flush_policy="never", cleanup_policy="compact",
                delete_retention_ms=0, max_batch_bytes=64 << 10)


@dataclass(slots=True)
class FakeReplica:
    """What the cleaner service reads of a replica, and ``fail`` as the replica's own."""

    key: tuple[str, int]
    log: Log
    high_watermark: int
    topic_id: str | None = "tid"
    failed: bool = False
    failures: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.key[0]}-{self.key[1]}"

    def fail(self, reason: str) -> None:
        self.failed = True
        self.failures.append(reason)


def broker_config(tmp_path: Path, backoff_ms: int = 60_000) -> BrokerConfig:
    return BrokerConfig(node_id=1, data_dir=tmp_path, listen=("127.0.0.1", 0), peers={1: ("127.0.0.1", 0)},
                        cleaner_backoff_ms=backoff_ms)


def dirty_log(path: Path, clock: Clock, batches: int = 200) -> Log:
    """A compacted log of 6 keys written over and over, closed segments below its end."""
    lg = Log.open(path, CFG, clock=clock)
    for i in range(batches):
        clock.now += 10
        lg.append_as_leader(keyed_batch([(b"k%d" % ((i + j) % 6), b"%d:" % i + b"v" * 60) for j in range(3)],
                                        timestamp=clock.now), 1)
    lg.roll()
    return lg


def service(tmp_path: Path, replicas: dict, cleaner: LogCleaner | None = None) -> CleanerService:
    return CleanerService(broker_config(tmp_path), replicas, lambda key, tid: 0,
                          cleaner=cleaner or LogCleaner(CleanerConfig(map_bytes=1 << 20)))


def test_a_pass_cleans_the_most_dirty_log_below_its_high_watermark(tmp_path: Path) -> None:
    clock = Clock()
    a = FakeReplica(("a", 0), dirty_log(tmp_path / "a-0", clock), 0)
    a.high_watermark = a.log.log_end_offset
    before = read_records(a.log)
    digest = logical_digest(a.log)
    svc = service(tmp_path, {a.key: a})
    assert svc.pick() is a

    stats = asyncio.run(svc.clean_next())
    assert stats is not None and stats.records_removed > 0
    assert a.log.cleaned_offset > 0 and logical_digest(a.log) == digest
    assert len(read_records(a.log)) < len(before)
    assert svc.totals.passes == 1 and svc.totals.failures == 0 and not a.failed
    a.log.close()


def test_a_corrupt_batch_met_while_cleaning_makes_the_replica_storage_faulty(tmp_path: Path) -> None:
    clock = Clock()
    lg = dirty_log(tmp_path / "t-0", clock)
    seg = lg.segments[1]
    pos, h = next((p, h) for p, h in iter_batches(os.pread(seg.fd, seg.size, 0)) if h.record_count)
    with open(seg.log_path, "r+b") as f:  # a flipped bit in a record: the CRC no longer holds
        f.seek(pos + h.size - 1)
        byte = f.read(1)
        f.seek(pos + h.size - 1)
        f.write(bytes([byte[0] ^ 0x10]))
    r = FakeReplica(("t", 0), lg, lg.log_end_offset)
    files = sorted(os.listdir(lg.dir))
    svc = service(tmp_path, {r.key: r})

    assert asyncio.run(svc.clean(r)) is None
    assert r.failed and "corrupt batch" in r.failures[0] and "CRC" in r.failures[0]
    assert svc.totals.failures == 1 and svc.totals.passes == 0
    assert sorted(os.listdir(lg.dir)) == files and lg.cleaned_offset == 0  # nothing swapped in
    assert svc.pick() is None  # a failed replica is not picked again until it is reopened
    lg.close()


@pytest.fixture
def small_disk(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    with small_tmpfs(tmp_path / "mnt", "1m") as mnt:
        yield mnt


def test_a_full_disk_abandons_the_pass_and_the_log_is_passed_over_until_the_backoff(
        tmp_path: Path, small_disk: Path) -> None:
    clock = Clock()
    full = FakeReplica(("full", 0), dirty_log(small_disk / "full-0", clock), 0)
    full.high_watermark = full.log.log_end_offset
    other = FakeReplica(("other", 0), dirty_log(tmp_path / "other-0", clock, batches=120), 0)
    other.high_watermark = other.log.log_end_offset
    full.log.flush()
    before, files = read_records(full.log), sorted(os.listdir(full.log.dir))
    filler = fill_disk(small_disk)
    svc = service(tmp_path, {full.key: full, other.key: other})

    async def scenario() -> None:
        assert await svc.clean(full) is None
        # The log is as it was, readable, and not faulty: a full disk is not damage.
        assert not full.failed and svc.totals.failures == 1
        assert read_records(full.log) == before and sorted(os.listdir(full.log.dir)) == files
        assert full.log.cleaned_offset == 0
        # Within the backoff the other log is cleaned, the full one is left alone.
        assert svc.pick() is other
        assert await svc.clean_next() is not None and other.log.cleaned_offset > 0
        assert svc.pick() is None

    asyncio.run(scenario())
    os.unlink(filler)
    svc._retry_after.clear()  # the backoff has gone by: space again, and the pass goes through
    assert svc.pick() is full
    assert asyncio.run(svc.clean_next()) is not None and full.log.cleaned_offset > 0
    full.log.close()
    other.log.close()


@pytest.mark.parametrize("hw_fraction", [0.0, 0.5])
def test_nothing_at_or_above_the_high_watermark_is_cleaned(tmp_path: Path, hw_fraction: float) -> None:
    clock = Clock()
    lg = dirty_log(tmp_path / "h-0", clock)
    hw = int(lg.log_end_offset * hw_fraction)
    r = FakeReplica(("h", 0), lg, hw)
    svc = service(tmp_path, {r.key: r})
    asyncio.run(svc.clean(r, force=True))
    assert lg.cleaned_offset <= hw
    lg.close()

"""The producer under broker faults, sync and asyncio.

- A partition leader is SIGKILLed while an idempotent producer is running: every
  acknowledged record is in the log exactly once, in per-key send order, at the offset it
  was acknowledged at (no duplicates, no gaps, no reordering).
- The leader is SIGSTOPped: requests to it hang, the producer's buffer fills, and
  ``send()`` blocks for ``max_block_ms`` and then raises ``BufferFullError``.

Each test gets its own cluster (a fault leaves it changed); the fixture always stops it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import defaultdict

import pytest

from strata.client import AdminClient, Consumer, Producer, TopicPartition
from strata.client.aio import AIOProducer
from strata.client.errors import BufferFullError
from tests.integration.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.integration

TOPIC = "orders"
PARTITIONS = 3
KEYS = [b"key-%d" % i for i in range(12)]
RECORDS = 3_000


@pytest.fixture
def cluster(tmp_path):
    c = LocalCluster(root=tmp_path, n=3)
    with c:
        c.wait_ready()
        with AdminClient(c.bootstrap) as admin:
            admin.create_topic(TOPIC, partitions=PARTITIONS, replication_factor=3)
        yield c


def leader_of(bootstrap: str, partition: int) -> int:
    with AdminClient(bootstrap) as admin:
        leader = admin.describe_topic(TOPIC).partitions[partition].leader
    assert leader is not None
    return leader


def value(key: bytes, i: int) -> bytes:
    return key + b":%06d" % i


def check_exactly_once(bootstrap: str, acked: dict[bytes, tuple[int, int]]) -> None:
    """Everything acknowledged is there once, at its acknowledged offset, in order per key."""
    with Consumer(bootstrap=bootstrap, auto_offset_reset="earliest") as c:
        c.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
        records = []

        def caught_up():
            records.extend(c.poll(timeout_ms=500))
            return len(records) >= len(acked)

        wait_for(caught_up, 60, f"{len(acked)} acknowledged records to be readable")
        records.extend(c.poll(timeout_ms=500))  # anything extra (duplicates) shows up too
    values = [r.value for r in records]
    assert len(values) == len(set(values)), "duplicates in the log"
    by_value = {r.value: (r.partition, r.offset) for r in records}
    missing = [v for v in acked if v not in by_value]
    assert not missing, f"{len(missing)} acknowledged records missing, e.g. {missing[:3]}"
    assert all(by_value[v] == where for v, where in acked.items()), "record not at its acked offset"
    per_key = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        key, _, n = r.value.partition(b":")
        per_key[key].append(int(n))
    for key, ns in per_key.items():
        assert ns == sorted(ns), f"records of {key!r} out of order"
        assert ns == list(range(ns[0], ns[0] + len(ns))), f"gap in the records of {key!r}"


def test_leader_sigkill_under_idempotent_producer_loses_and_duplicates_nothing(cluster):
    victim = leader_of(cluster.bootstrap, 0)
    acked: dict[bytes, tuple[int, int]] = {}
    failures: list[BaseException] = []
    with Producer(cluster.bootstrap, linger_ms=2, request_timeout_ms=5_000) as p:
        futs = []
        for i in range(RECORDS):
            key = KEYS[i % len(KEYS)]
            futs.append((value(key, i // len(KEYS)), p.send(TOPIC, value(key, i // len(KEYS)), key=key)))
            if i == RECORDS // 3:
                cluster.kill(victim)  # SIGKILL, with batches in flight
            if i % 100 == 0:
                time.sleep(0.01)  # keep the run spread over the failover
        for v, f in futs:
            try:
                m = f.result(120)
                acked[v] = (m.partition, m.offset)
            except Exception as exc:
                failures.append(exc)
    assert not failures, f"{len(failures)} records failed, first: {failures[0]!r}"
    assert len(acked) == RECORDS
    check_exactly_once(cluster.bootstrap, acked)


def test_leader_sigkill_under_aio_producer_loses_and_duplicates_nothing(cluster):
    victim = leader_of(cluster.bootstrap, 1)
    acked: dict[bytes, tuple[int, int]] = {}

    async def run() -> None:
        async with AIOProducer(cluster.bootstrap, linger_ms=2, request_timeout_ms=5_000) as p:
            futs = []
            for i in range(RECORDS):
                key = KEYS[i % len(KEYS)]
                v = value(key, i // len(KEYS))
                futs.append((v, await p.send(TOPIC, v, key=key)))
                if i == RECORDS // 3:
                    await asyncio.to_thread(cluster.kill, victim)
                if i % 100 == 0:
                    await asyncio.sleep(0.01)
            for v, f in futs:
                m = await f
                acked[v] = (m.partition, m.offset)

    asyncio.run(run())
    assert len(acked) == RECORDS
    check_exactly_once(cluster.bootstrap, acked)


def test_stopped_leader_makes_send_block_then_raise_buffer_full(cluster):
    victim = leader_of(cluster.bootstrap, 0)
    with Producer(cluster.bootstrap, buffer_memory=64 << 10, max_block_ms=500,
                  request_timeout_ms=20_000, linger_ms=0) as p:
        p.send(TOPIC, b"warm-up", partition=0).result(30)
        cluster.pause(victim)
        try:
            with pytest.raises(BufferFullError, match="max_block_ms=500") as e:
                for _ in range(10_000):  # ~64 fit; the bound must trip long before the end
                    p.send(TOPIC, b"x" * 1024, partition=0)
            assert "buffer_memory" in str(e.value)
        finally:
            cluster.resume(victim)
        # Once the leader is back (or replaced), the buffered records are delivered.
        assert p.send(TOPIC, b"after", partition=0).result(60).offset >= 0


def test_stopped_leader_makes_aio_send_raise_buffer_full(cluster):
    victim = leader_of(cluster.bootstrap, 0)

    async def run() -> None:
        async with AIOProducer(cluster.bootstrap, buffer_memory=64 << 10, max_block_ms=500,
                               request_timeout_ms=20_000, linger_ms=0) as p:
            await p.send_and_wait(TOPIC, b"warm-up", partition=0)
            cluster.pause(victim)
            try:
                with pytest.raises(BufferFullError):
                    for _ in range(10_000):
                        await p.send(TOPIC, b"x" * 1024, partition=0)
            finally:
                cluster.resume(victim)
            m = await p.send_and_wait(TOPIC, b"after", partition=0)
            assert m.offset >= 0

    asyncio.run(run())


def test_send_from_another_thread_is_woken_when_space_frees(cluster):
    """A send blocked on a full buffer proceeds (no error) once acknowledgements free space."""
    with Producer(cluster.bootstrap, buffer_memory=32 << 10, max_block_ms=60_000) as p:
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(500):
                    p.send(TOPIC, b"y" * 1024, partition=2)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=work)
        t.start()
        t.join(120)
        assert not t.is_alive() and not errors
        p.flush()

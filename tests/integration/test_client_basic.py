"""The client library against a real 3-broker cluster: what a user of Producer, Consumer
and AdminClient (sync and asyncio) sees when things go right, and when their input is wrong.

One cluster serves the whole module (each test uses its own topics); the fixture always
stops it.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
import time

import pytest

from strata.client import AdminClient, Consumer, Producer, TopicPartition
from strata.client.aio import AIOAdminClient, AIOConsumer, AIOProducer
from strata.client.errors import (
    BatchTooLargeError,
    ClosedError,
    NoBrokersAvailableError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
    TopicAlreadyExistsError,
    UnknownPartitionError,
    UnknownTopicError,
)
from strata.client.partitioner import partition_for_key
from tests.integration.cluster import wait_for

pytestmark = pytest.mark.integration

_names = itertools.count()


def new_topic_name(prefix: str = "t") -> str:
    return f"{prefix}-{next(_names)}"


@pytest.fixture
def topic(admin):
    name = new_topic_name()
    admin.create_topic(name, partitions=3, replication_factor=3)
    return name


def consume_all(bootstrap: str, topic: str, n: int, partitions: int = 3, **kw) -> list:
    with Consumer(bootstrap=bootstrap, auto_offset_reset="earliest", **kw) as c:
        c.assign([TopicPartition(topic, p) for p in range(partitions)])
        out: list = []
        deadline = time.monotonic() + 30
        while len(out) < n and time.monotonic() < deadline:
            out += c.poll(timeout_ms=500)
        return out


# -- producing and consuming --------------------------------------------------------------


def test_round_trip_keeps_offsets_keys_headers_and_timestamps(cluster, topic):
    with Producer(cluster.bootstrap, linger_ms=2) as p:
        futs = [
            p.send(topic, b"v%d" % i, key=b"k%d" % (i % 7), headers=[("n", b"%d" % i)],
                   timestamp_ms=1_700_000_000_000 + i)
            for i in range(300)
        ]
        metas = [f.result(30) for f in futs]
    records = consume_all(cluster.bootstrap, topic, 300)
    assert len(records) == 300
    by_value = {r.value: r for r in records}
    for i, m in enumerate(metas):
        r = by_value[b"v%d" % i]
        assert (r.partition, r.offset) == (m.partition, m.offset)
        assert r.key == b"k%d" % (i % 7)
        assert r.headers == [("n", b"%d" % i)]
        assert r.timestamp == m.timestamp == 1_700_000_000_000 + i
        assert m.partition == partition_for_key(r.key, 3)  # Kafka's placement


def test_offsets_are_dense_per_partition_and_in_send_order(cluster, topic):
    with Producer(cluster.bootstrap) as p:
        futs = [p.send(topic, b"%d" % i, partition=1) for i in range(500)]
        offsets = [f.result(30).offset for f in futs]
    assert offsets == list(range(offsets[0], offsets[0] + 500))


def test_keyless_records_stick_to_a_partition_per_batch_and_spread_over_time(cluster, topic):
    with Producer(cluster.bootstrap, batch_size=2_000, linger_ms=1) as p:
        futs = [p.send(topic, b"x" * 200) for _ in range(300)]
        parts = [f.result(30).partition for f in futs]
    assert set(parts) == {0, 1, 2}
    runs = sum(1 for a, b in itertools.pairwise(parts) if a != b) + 1
    assert runs < len(parts) / 3  # long runs, not round-robin


@pytest.mark.parametrize("compression", ["gzip", "zstd", "lz4"])
def test_compressed_batches_round_trip(cluster, topic, compression):
    with Producer(cluster.bootstrap, compression_type=compression) as p:
        for i in range(50):
            p.send(topic, b"payload-%d " % i * 20, partition=0)
        p.flush()
    records = consume_all(cluster.bootstrap, topic, 50, partitions=1)
    assert [r.value for r in records] == [b"payload-%d " % i * 20 for i in range(50)]


@pytest.mark.parametrize("acks", [1, 0])
def test_weaker_acks_deliver(cluster, topic, acks):
    with Producer(cluster.bootstrap, acks=acks) as p:
        futs = [p.send(topic, b"a%d" % i, partition=2) for i in range(100)]
        p.flush()
        metas = [f.result(10) for f in futs]
    if acks == 0:
        assert all(m.offset == -1 for m in metas)
    else:
        assert [m.offset for m in metas] == sorted(m.offset for m in metas)
    assert len(consume_all(cluster.bootstrap, topic, 100, partitions=3)) == 100


def test_send_from_many_threads_loses_nothing(cluster, topic):
    with Producer(cluster.bootstrap) as p:
        results: list = []
        lock = threading.Lock()

        def work(t: int) -> None:
            futs = [p.send(topic, b"%d-%d" % (t, i), key=b"%d" % t) for i in range(200)]
            with lock:
                results.extend(futs)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        p.flush()
        assert all(f.succeeded() for f in results)
    records = consume_all(cluster.bootstrap, topic, 1600)
    assert len({r.value for r in records}) == 1600
    for t in range(8):  # one key, one partition: in each thread's send order
        mine = [int(r.value.split(b"-")[1]) for r in records if r.key == b"%d" % t]
        assert mine == sorted(mine)


def test_callbacks_report_success_and_failure(cluster, topic):
    got = []
    done = threading.Event()
    with Producer(cluster.bootstrap) as p:
        p.send(topic, b"x", callback=lambda md, exc: (got.append((md, exc)), done.set()))
        assert done.wait(30)
    md, exc = got[0]
    assert exc is None and md.topic == topic and md.offset >= 0


def test_consumer_seek_position_pause_and_iteration(cluster, topic):
    tp = TopicPartition(topic, 0)
    with Producer(cluster.bootstrap) as p:
        futs = [p.send(topic, b"%d" % i, partition=0) for i in range(20)]
        offsets = [f.result(30).offset for f in futs]
    end = offsets[-1] + 1
    with Consumer(bootstrap=cluster.bootstrap, auto_offset_reset="earliest",
                  consumer_timeout_ms=3000) as c:
        c.assign([tp])
        assert c.assignment() == {tp}
        assert c.position(tp) == 0  # the log starts at 0 (a leader's control batch may sit there)
        c.seek(tp, offsets[15])
        assert [r.value for r in c] == [b"%d" % i for i in range(15, 20)]
        assert c.position(tp) >= end  # past the last record (and any control batch after it)
        c.seek_to_beginning(tp)
        assert c.position(tp) == 0
        c.seek_to_end(tp)
        assert c.position(tp) == c.end_offsets([tp])[tp] >= end
        assert c.beginning_offsets([tp]) == {tp: 0}
        c.seek(tp, 0)
        c.pause(tp)
        assert c.paused() == {tp}
        assert c.poll(timeout_ms=300) == []
        c.resume(tp)
        got = []
        while len(got) < 20:
            got += c.poll(timeout_ms=1000)
        assert [r.offset for r in got] == offsets  # control batches skipped


def test_latest_reset_skips_old_records(cluster, topic):
    with Producer(cluster.bootstrap) as p:
        p.send(topic, b"old", partition=0).result(30)
        with Consumer(bootstrap=cluster.bootstrap, auto_offset_reset="latest") as c:
            tp = TopicPartition(topic, 0)
            c.assign([tp])
            c.position(tp)  # resolved before the new record is sent
            p.send(topic, b"new", partition=0).result(30)
            got = []
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                got = c.poll(timeout_ms=500)
    assert [r.value for r in got] == [b"new"]


def test_out_of_range_offset_is_reset_or_raised(cluster, topic):
    tp = TopicPartition(topic, 0)
    with Producer(cluster.bootstrap) as p:
        p.send(topic, b"only", partition=0).result(30)
    with Consumer(bootstrap=cluster.bootstrap, auto_offset_reset="earliest") as c:
        c.assign([tp])
        c.seek(tp, 10_000)
        got = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = c.poll(timeout_ms=500)
        assert [r.value for r in got] == [b"only"]  # reset to earliest
    with Consumer(bootstrap=cluster.bootstrap, auto_offset_reset="none") as c:
        c.assign([tp])
        with pytest.raises(NoOffsetForPartitionError):
            c.poll(timeout_ms=100)
        c.seek(tp, 10_000)
        with pytest.raises(OffsetOutOfRangeError, match="auto_offset_reset='none'"):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                c.poll(timeout_ms=500)


# -- admin --------------------------------------------------------------------------------


def test_admin_create_describe_list_delete(cluster, admin):
    name = new_topic_name("adm")
    admin.create_topic(name, partitions=2, replication_factor=3, configs={"retention.ms": "60000"})
    assert name in admin.list_topics()
    d = admin.describe_topic(name).to_dict()
    assert d["name"] == name and [p["partition"] for p in d["partitions"]] == [0, 1]
    for p in d["partitions"]:
        assert p["leader"] in (1, 2, 3)
        assert sorted(p["replicas"]) == [1, 2, 3]
        assert set(p) == {"partition", "leader", "replicas", "isr", "log_start_offset",
                          "log_end_offset", "high_watermark", "dirty_ratio"}
        assert p["dirty_ratio"] is None  # not a compacted topic
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topic(name, partitions=2, replication_factor=3)
    admin.delete_topic(name)
    assert name not in admin.list_topics()
    with pytest.raises(UnknownTopicError):
        admin.describe_topic(name)


def test_describe_cluster(cluster, admin):
    # Earlier tests' topics may still be electing their leaders: wait for that, bounded.
    d = wait_for(lambda: (lambda d: d if d.offline == 0 else None)(admin.describe_cluster()), 30,
                 "every partition to have a leader")
    assert sorted(b.id for b in d.brokers) == [1, 2, 3]
    assert all(b.alive for b in d.brokers)
    assert d.controller in (1, 2, 3)
    assert d.offline == 0


def test_bad_topic_requests_are_rejected_clearly(cluster, admin):
    from strata.client.errors import StrataError

    with pytest.raises(StrataError) as e:
        admin.create_topic("bad name!", partitions=1, replication_factor=1)
    assert e.value.code.name == "INVALID_TOPIC"
    with pytest.raises(StrataError) as e:
        admin.create_topic(new_topic_name(), partitions=1, replication_factor=5)
    assert e.value.code.name == "INVALID_REPLICATION_FACTOR"
    with pytest.raises(UnknownTopicError):
        admin.delete_topic("no-such-topic-xyz")


# -- bad input ----------------------------------------------------------------------------


def test_unknown_topic_fails_at_send_and_assign(cluster):
    with Producer(cluster.bootstrap) as p, pytest.raises(UnknownTopicError, match="does-not"):
        p.send("does-not-exist", b"x")
    with Consumer(bootstrap=cluster.bootstrap) as c, pytest.raises(UnknownTopicError):
        c.assign([TopicPartition("does-not-exist", 0)])


def test_unknown_partition_fails_at_send_and_assign(cluster, topic):
    with Producer(cluster.bootstrap) as p, pytest.raises(UnknownPartitionError, match="0-2"):
        p.send(topic, b"x", partition=3)
    with Consumer(bootstrap=cluster.bootstrap) as c, pytest.raises(UnknownPartitionError):
        c.assign([TopicPartition(topic, 9)])


def test_wrong_types_name_the_argument(cluster, topic):
    with Producer(cluster.bootstrap) as p:
        with pytest.raises(TypeError, match="value must be bytes"):
            p.send(topic, "a string")
        with pytest.raises(TypeError, match="key must be bytes"):
            p.send(topic, b"v", key=42)
        with pytest.raises(TypeError, match="header keys must be str"):
            p.send(topic, b"v", headers=[(b"k", b"v")])
        with pytest.raises(TypeError, match="timestamp_ms"):
            p.send(topic, b"v", timestamp_ms="now")


def test_record_too_large_client_side_and_broker_side(cluster, topic):
    with Producer(cluster.bootstrap) as p, pytest.raises(BatchTooLargeError, match="max_request"):
        p.send(topic, b"x" * (2 << 20))
    # Past the client's check, the broker's own limit (16 MiB) answers.
    with Producer(cluster.bootstrap, max_request_size=40 << 20, batch_size=40 << 20,
                  buffer_memory=64 << 20) as p:
        fut = p.send(topic, b"x" * (17 << 20))
        with pytest.raises(BatchTooLargeError):
            fut.result(60)
        assert p.send(topic, b"fine").result(30).offset >= 0  # the partition still works


def test_closed_producer_refuses_sends(cluster, topic):
    p = Producer(cluster.bootstrap)
    fut = p.send(topic, b"before close")
    p.close()
    assert fut.result(0).offset >= 0  # close() delivered what was buffered
    with pytest.raises(ClosedError):
        p.send(topic, b"after close")


def test_unreachable_bootstrap_fails_fast():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound but not listening: connection refused
        with pytest.raises(NoBrokersAvailableError, match=f"127.0.0.1:{port}"):
            Producer(f"127.0.0.1:{port}", connect_timeout_ms=2000)
        with pytest.raises(NoBrokersAvailableError):
            Consumer(bootstrap=f"127.0.0.1:{port}", connect_timeout_ms=2000)
        with pytest.raises(NoBrokersAvailableError):
            AdminClient(f"127.0.0.1:{port}", connect_timeout_ms=2000)


def test_bad_options_fail_at_construction():
    with pytest.raises(ValueError, match="acks"):
        Producer("127.0.0.1:1", acks=2)
    with pytest.raises(ValueError, match="idempotent"):
        Producer("127.0.0.1:1", acks=1, idempotent=True)
    with pytest.raises(TypeError, match="unknown producer option"):
        Producer("127.0.0.1:1", lingerms=5)
    with pytest.raises(ValueError, match="bootstrap"):
        Producer("no-port-here")
    with pytest.raises(ValueError, match="compression"):
        Producer("127.0.0.1:1", compression_type="brotli")


def test_subscribe_without_a_group_says_what_is_missing(cluster):
    with Consumer(bootstrap=cluster.bootstrap) as c, pytest.raises(ValueError, match="group"):
        c.subscribe(["x"])


# -- asyncio --------------------------------------------------------------------------------


def test_aio_round_trip_and_admin(cluster):
    async def go():
        name = new_topic_name("aio")
        async with AIOAdminClient(cluster.bootstrap) as admin:
            await admin.create_topic(name, partitions=2, replication_factor=3)
            assert name in await admin.list_topics()
        async with AIOProducer(cluster.bootstrap, linger_ms=1) as p:
            futs = [await p.send(name, b"m%d" % i, key=b"k%d" % i) for i in range(200)]
            metas = [await f for f in futs]
            one = await p.send_and_wait(name, b"last", partition=0)
            with pytest.raises(UnknownTopicError):
                await p.send("aio-missing-topic", b"x")
            with pytest.raises(TypeError, match="value must be bytes"):
                await p.send(name, "str")
        assert one.partition == 0
        async with AIOConsumer(bootstrap=cluster.bootstrap, auto_offset_reset="earliest") as c:
            await c.assign([TopicPartition(name, 0), TopicPartition(name, 1)])
            got = []
            while len(got) < 201:
                got += await c.poll(timeout_ms=1000)
            await c.seek(TopicPartition(name, 0), 0)
            assert await c.position(TopicPartition(name, 0)) == 0
            with pytest.raises(ValueError, match="group"):
                c.subscribe(["x"])
        offsets = {(r.partition, r.offset) for r in got}
        assert all((m.partition, m.offset) in offsets for m in metas)
        assert len(got) == 201

    asyncio.run(go())

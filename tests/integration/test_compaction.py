"""Compacted topics on real broker processes: what a user of ``cleanup.policy=compact`` sees.

Every replica cleans its own log, yet all of them keep the same meaning: each key's latest
value, at the offset it was written, even when a follower is killed in the middle of a
cleaning pass and comes back. A tombstone stays readable for ``delete.retention.ms`` after it
was first cleaned, and goes only once every replica has cleaned past it (a replica that is
down holds it back). A record without a key is refused with INVALID_RECORD. The cluster's own
``__consumer_offsets`` is compacted, and a coordinator that takes over a cleaned partition
knows every group's latest offsets.

The brokers clean often (``cleaner_backoff_ms = 100``) under a small I/O budget, so that a
pass lasts long enough to be caught in the act; topics use the smallest segments allowed
(16 KiB), so that data is soon in closed segments the cleaner may touch.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource as KafkaConfigResource
from kafka.admin import ConfigResourceType as KafkaConfigResourceType
from kafka.errors import InvalidRecordError as KafkaInvalidRecordError
from prometheus_client.parser import text_string_to_metric_families

from strata.client import AdminClient, Consumer, Producer, TopicPartition
from strata.client.admin import ConfigResource, ConfigResourceType
from strata.client.aio import AIOConsumer
from strata.client.errors import InvalidRecordError
from strata.client.records import decode_batches
from strata.storage import Log, LogConfig, logical_digest
from tests.integration.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.integration

CONFIG = """
cleaner_backoff_ms = 100
cleaner_io_bytes_per_second = 4194304
"""
COMPACTED = {"cleanup.policy": "compact", "segment.bytes": "16384", "min.cleanable.dirty.ratio": "0.05"}
#: Batches of a few KiB: segments roll at batch boundaries, so big batches would keep
#: everything in the active segment, which is never cleaned.
SMALL_BATCH = 4096
_names = itertools.count()


def new_topic(admin: AdminClient, prefix: str, **configs: str) -> str:
    name = f"{prefix}-{next(_names)}"
    admin.create_topic(name, partitions=1, replication_factor=3,
                       configs={**COMPACTED, **{k.replace("_", "."): v for k, v in configs.items()}})
    return name


@pytest.fixture(scope="module")
def cluster(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("compaction")
    (root / "broker.toml").write_text(CONFIG)
    c = LocalCluster(root=root, n=3, kafka=True, extra_args=["--config", str(root / "broker.toml")])
    with c:
        c.wait_ready()
        yield c


# -- helpers ---------------------------------------------------------------------------------


def metric(c: LocalCluster, node: int, name: str, topic: str, partition: int = 0) -> float | None:
    """One partition's series from broker ``node``'s /metrics, or None if it has none."""
    url = f"http://127.0.0.1:{c.brokers[node].metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and s.labels.get("topic") == topic and s.labels.get("partition") == str(partition):
                return s.value
    return None


def leader_and_followers(admin: AdminClient, topic: str) -> tuple[int, list[int]]:
    p = wait_for(lambda: (d := admin.describe_topic(topic).partitions[0]).leader is not None and d, 30,
                 f"a leader for {topic}")
    return p.leader, [b for b in p.replicas if b != p.leader]


def read_latest(bootstrap: str, topic: str) -> tuple[dict[bytes, bytes | None], int]:
    """Every record from offset 0 to the high watermark, as a consumer reads it: the last value
    seen per key (None: a tombstone), and how many records were read."""
    records = _records_of(bootstrap, topic)
    return {rec.key: rec.value for rec in records}, len(records)


def replica_log(c: LocalCluster, node: int, topic: str) -> Log:
    """Broker ``node``'s log of ``topic``-0, opened in this process (the broker must be stopped)."""
    return Log.open(c.brokers[node].data_dir / f"{topic}-0", LogConfig(cleanup_policy="compact"))


def latest_in_log(lg: Log, end: int) -> tuple[dict[bytes, bytes | None], int]:
    """Each key's last value in ``lg`` below ``end``, and how many records it still holds."""
    latest: dict[bytes, bytes | None] = {}
    n = 0
    offset = lg.log_start_offset
    while offset < end:
        sl = lg.read(offset, 1 << 20, max_offset=end)
        if sl is None:
            break
        for batch in decode_batches(sl.read_bytes()[: sl.size], skip_control=True):
            for rec in batch.records:
                latest[rec.key] = rec.value
                n += 1
        offset = sl.next_offset
    return latest, n


# -- the tests -------------------------------------------------------------------------------


def test_a_compacted_topic_refuses_a_record_without_a_key(cluster, admin) -> None:
    topic = new_topic(admin, "keys")
    with Producer(bootstrap=cluster.bootstrap, acks="all", linger_ms=0) as p:
        with pytest.raises(InvalidRecordError, match="without a key"):
            p.send(topic, value=b"no key", partition=0).result(timeout=30)
        # The refused batch took no sequence: the same producer goes on writing.
        meta = p.send(topic, value=b"v", key=b"k", partition=0).result(timeout=30)
    latest, _ = read_latest(cluster.bootstrap, topic)
    assert latest == {b"k": b"v"} and meta.offset >= 0


def test_kafka_clients_see_the_same_compacted_topic(cluster, admin) -> None:
    """The Kafka door goes through the same core: a keyless record is refused with Kafka's
    INVALID_RECORD (87), and DescribeConfigs reports the compaction configs."""
    topic = new_topic(admin, "kafka-door", delete_retention_ms="60000")
    kp = KafkaProducer(bootstrap_servers=cluster.kafka_bootstrap, acks="all", retries=0)
    try:
        with pytest.raises(KafkaInvalidRecordError):
            kp.send(topic, value=b"no key", partition=0).get(30)
        meta = kp.send(topic, key=b"k", value=b"v", partition=0).get(30)
    finally:
        kp.close()
    latest, _ = read_latest(cluster.bootstrap, topic)
    assert latest == {b"k": b"v"} and meta.offset >= 0
    kadmin = KafkaAdminClient(bootstrap_servers=cluster.kafka_bootstrap, request_timeout_ms=30_000)
    try:
        described = kadmin.describe_configs([KafkaConfigResource(KafkaConfigResourceType.TOPIC, topic)],
                                            config_filter="all")
    finally:
        kadmin.close()
    (by_name,) = [v for per in described.values() for v in per.values()]
    configs = {k: (c["value"] if isinstance(c, dict) else c) for k, c in by_name.items()}
    assert configs["cleanup.policy"] == "compact"
    assert configs["delete.retention.ms"] == "60000"
    assert configs["min.cleanable.dirty.ratio"] == "0.05"
    assert {"min.compaction.lag.ms", "max.compaction.lag.ms", "segment.ms"} <= set(configs)


def test_a_topic_altered_to_compact_refuses_keyless_records_without_a_restart(cluster, admin) -> None:
    name = f"plain-{next(_names)}"
    admin.create_topic(name, partitions=1, replication_factor=3)
    with Producer(bootstrap=cluster.bootstrap, acks="all", linger_ms=0) as p:
        p.send(name, value=b"keyless is fine here", partition=0).result(timeout=30)
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, {"cleanup.policy": "compact"})])

        def refused() -> bool:
            try:
                p.send(name, value=b"keyless", partition=0).result(timeout=30)
            except InvalidRecordError:
                return True
            return False

        wait_for(refused, 30, "the leader to apply cleanup.policy=compact")
    res = ConfigResource(ConfigResourceType.TOPIC, name)
    # Any broker answers DescribeConfigs from its own copy of the metadata, which may be a
    # moment behind the leader's (as in Kafka): the answer becomes "compact" within a bound.
    wait_for(lambda: admin.describe_configs([res])[res]["cleanup.policy"].value == "compact", 30,
             "every broker to describe cleanup.policy=compact")


def test_topic_describe_shows_the_cleanup_policy_and_the_dirty_ratio(cluster, admin) -> None:
    topic = new_topic(admin, "described")
    leader, _ = leader_and_followers(admin, topic)

    def describe(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "strata.broker.cli", "topic", "describe", topic,
                               "--bootstrap", cluster.bootstrap, *extra],
                              capture_output=True, text=True, timeout=120)

    def ratio() -> float | None:
        r = describe("--output", "json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert doc["cleanup_policy"] == "compact" and doc["configs"]["cleanup.policy"]["value"] == "compact"
        return doc["partitions"][0]["dirty_ratio"]

    with Producer(bootstrap=cluster.bootstrap, acks="all", batch_size=SMALL_BATCH, linger_ms=0) as p:
        fill(p, topic, 400, "a")
        wait_for(lambda: (metric(cluster, leader, "strata_partition_cleaned_offset", topic) or 0) > 0, 60,
                 "the leader to clean")
        # From now on the leader leaves dirt alone: a log is cleaned at a ratio of 1.0 only
        # while nothing of it is clean.
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"min.cleanable.dirty.ratio": "1.0"})])
        rounds = itertools.count()

        def dirty() -> float | None:
            fill(p, topic, 100, f"b{next(rounds)}")
            value = ratio()
            return value if value is not None and value > 0.2 else None

        wait_for(dirty, 60, "describe to show new dirt on the leader", interval=0.2)

    def settled() -> float | None:
        first, second = ratio(), ratio()
        return first if first is not None and first == second else None

    value = wait_for(settled, 30, "the reported ratio to settle")
    assert 0.2 < value < 1.0  # some of the log was cleaned, what came after is dirty
    r = describe()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"Topic: {topic}  cleanup.policy: compact"
    header, row = lines[1:3]
    assert header.split()[-1] == "DIRTY-RATIO" and row.split()[-1] == f"{value:.3f}"
    assert "cleanup.policy" in r.stdout.split("CONFIG", 1)[1]


def test_replicas_agree_on_each_keys_latest_value_after_a_follower_dies_mid_clean(tmp_path: Path) -> None:
    """RF=3, 100 keys written 1,000 times each. A follower is SIGKILLed while its cleaner is
    writing a cleaned segment, writes go on without it, it comes back and catches up from a
    leader whose log is already compacted. Then every replica holds exactly each key's latest
    value and the same logical content, and each has compacted its own log."""
    (tmp_path / "broker.toml").write_text(CONFIG.replace("4194304", "1048576"))
    keys, rounds = 100, 1000
    expected = {f"key-{k:03d}".encode(): f"{k}:{rounds - 1}".encode() + b"." * 40 for k in range(keys)}
    with LocalCluster(root=tmp_path, n=3, extra_args=["--config", str(tmp_path / "broker.toml")]) as c:
        c.wait_ready()
        with AdminClient(c.bootstrap) as admin:
            topic = new_topic(admin, "table")
            leader, followers = leader_and_followers(admin, topic)
        victim = followers[0]
        part_dir = c.brokers[victim].data_dir / f"{topic}-0"
        with Producer(bootstrap=c.bootstrap, acks="all", batch_size=SMALL_BATCH, linger_ms=2, idempotent=True) as p:

            def write(first: int, last: int) -> None:
                for n in range(first, last):
                    for k in range(keys):
                        p.send(topic, key=f"key-{k:03d}".encode(), value=f"{k}:{n}".encode() + b"." * 40,
                               partition=0)
                p.flush(timeout=120)

            write(0, 400)
            # Caught in the act: the victim's cleaner has a cleaned segment half written.
            wait_for(lambda: any(part_dir.glob("*.cleaned")), 60, f"broker {victim} to be writing a cleaned segment")
            c.kill(victim, signal.SIGKILL)
            write(400, 700)
            c.start(victim)
            write(700, rounds)
        c.wait_ready(victim)

        def converged() -> bool:
            ends = {metric(c, b, "strata_partition_log_end_offset", topic) for b in c.brokers}
            if len(ends) != 1:
                return False
            hw = metric(c, leader, "strata_partition_high_watermark", topic) or 0
            # Every replica has cleaned most of what it holds (the active segment never is).
            return all((metric(c, b, "strata_partition_cleaned_offset", topic) or 0) >= 0.9 * hw for b in c.brokers)

        wait_for(converged, 120, "every replica to catch up and clean")
        latest, _ = read_latest(c.bootstrap, topic)
        assert latest == expected
        assert metric(c, victim, "strata_partition_last_clean_timestamp_seconds", topic) is not None
    # The cluster is stopped: open each replica's log here.
    logs = {b: replica_log(c, b, topic) for b in c.brokers}
    try:
        end = min(lg.log_end_offset for lg in logs.values())
        assert end >= keys * rounds
        digests = {b: logical_digest(lg, max_offset=end) for b, lg in logs.items()}
        assert len(set(digests.values())) == 1, digests
        for b, lg in logs.items():
            values, held = latest_in_log(lg, end)
            assert values == expected, f"broker {b}"
            # Compacted: far fewer records than were written (the active segment stays dirty).
            assert held < keys * rounds // 4, f"broker {b} still holds {held} records"
            assert not list(Path(lg.dir).glob("*.cleaned")) and not list(Path(lg.dir).glob("*.swap"))
    finally:
        for lg in logs.values():
            lg.close()


def fill(p: Producer, topic: str, n: int, tag: str) -> None:
    """Records of 50 other keys, enough to roll segments past what came before."""
    for i in range(n):
        p.send(topic, key=f"filler-{i % 50}".encode(), value=f"{tag}:{i}".encode() + b"-" * 200, partition=0)
    p.flush(timeout=60)


def test_a_tombstone_stays_for_delete_retention_ms_then_goes(cluster, admin) -> None:
    topic = new_topic(admin, "tomb", delete_retention_ms="3600000")
    leader, _ = leader_and_followers(admin, topic)
    with Producer(bootstrap=cluster.bootstrap, acks="all", batch_size=SMALL_BATCH, linger_ms=0) as p:
        p.send(topic, key=b"gone", value=b"v1", partition=0).result(timeout=30)
        tomb = p.send(topic, key=b"gone", value=None, partition=0).result(timeout=30).offset
        p.send(topic, key=b"kept", value=b"k1", partition=0).result(timeout=30)
        fill(p, topic, 400, "a")
        wait_for(lambda: all((metric(cluster, b, "strata_partition_cleaned_offset", topic) or 0) > tomb
                             for b in cluster.brokers), 60, "every replica to clean past the tombstone")
        latest, _ = read_latest(cluster.bootstrap, topic)
        # Within delete.retention.ms: the older value is gone, the tombstone is there to see.
        assert latest[b"gone"] is None and latest[b"kept"] == b"k1"
        values = [r for r in _records_of(cluster.bootstrap, topic) if r.key == b"gone"]
        assert [(r.offset, r.value) for r in values] == [(tomb, None)]

        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, {"delete.retention.ms": "0"})])
        rounds = itertools.count()

        def tombstone_gone() -> bool:
            fill(p, topic, 100, f"b{next(rounds)}")  # new dirt: a log is cleaned when it is dirty
            return not [r for r in _records_of(cluster.bootstrap, topic) if r.key == b"gone"]

        wait_for(tombstone_gone, 90, "the tombstone to be removed once its retention is 0", interval=0.2)
    latest, _ = read_latest(cluster.bootstrap, topic)
    assert b"gone" not in latest and latest[b"kept"] == b"k1"


def test_a_replica_that_is_down_holds_tombstone_removal_back(tmp_path: Path) -> None:
    (tmp_path / "broker.toml").write_text(CONFIG)
    with LocalCluster(root=tmp_path, n=3, extra_args=["--config", str(tmp_path / "broker.toml")]) as c:
        c.wait_ready()
        with AdminClient(c.bootstrap) as admin:
            topic = new_topic(admin, "held", delete_retention_ms="0")
            leader, followers = leader_and_followers(admin, topic)
        down = followers[0]
        up = [leader, followers[1]]
        with Producer(bootstrap=c.bootstrap, acks="all", batch_size=SMALL_BATCH, linger_ms=0) as p:
            fill(p, topic, 200, "before")
            wait_for(lambda: (metric(c, down, "strata_partition_cleaned_offset", topic) or 0) > 0, 60,
                     f"broker {down} to clean once")
            c.kill(down, signal.SIGKILL)
            p.send(topic, key=b"gone", value=b"v1", partition=0).result(timeout=30)
            tomb = p.send(topic, key=b"gone", value=None, partition=0).result(timeout=30).offset
            fill(p, topic, 400, "while-down")
            wait_for(lambda: all((metric(c, b, "strata_partition_cleaned_offset", topic) or 0) > tomb + 100
                                 for b in up), 60, "the live replicas to clean past the tombstone")
            # Both live replicas have cleaned past it, with delete.retention.ms = 0, and still the
            # tombstone stays: the replica that is down may hold "gone" = v1 and has not seen it.
            assert (metric(c, leader, "strata_partition_cleaner_removable_offset", topic) or 0) <= tomb
            gone = [r for r in _records_of(c.bootstrap, topic) if r.key == b"gone"]
            assert [(r.offset, r.value) for r in gone] == [(tomb, None)]

            c.start(down)
            rounds = itertools.count()

            def removed_everywhere() -> bool:
                fill(p, topic, 100, f"after-{next(rounds)}")
                return all((metric(c, b, "strata_partition_cleaner_removable_offset", topic) or 0) > tomb
                           for b in c.brokers) and not [
                    r for r in _records_of(c.bootstrap, topic) if r.key == b"gone"]

            wait_for(removed_everywhere, 120, "the tombstone to go once every replica has cleaned past it",
                     interval=0.2)
    logs = {b: replica_log(c, b, topic) for b in c.brokers}
    try:
        end = min(lg.log_end_offset for lg in logs.values())
        assert len({logical_digest(lg, max_offset=end) for lg in logs.values()}) == 1
        for b, lg in logs.items():
            values, _ = latest_in_log(lg, end)
            assert values.get(b"gone") is None, f"broker {b} brought 'gone' back"
    finally:
        for lg in logs.values():
            lg.close()


def _records_of(bootstrap: str, topic: str) -> list:
    tp = TopicPartition(topic, 0)
    out = []
    with Consumer(bootstrap=bootstrap, auto_offset_reset="earliest") as c:
        c.assign([tp])
        end = c.end_offsets([tp])[tp]
        c.seek_to_beginning(tp)
        deadline = time.monotonic() + 60
        while c.position(tp) < end:
            assert time.monotonic() < deadline, f"reading {topic} stopped at {c.position(tp)} of {end}"
            out += c.poll(timeout_ms=500)
    return out


def test_consumer_offsets_is_compacted_and_a_new_coordinator_loads_a_cleaned_partition(cluster, admin) -> None:
    res = ConfigResource(ConfigResourceType.TOPIC, "__consumer_offsets")
    assert admin.describe_configs([res])[res]["cleanup.policy"].value == "compact"
    # Small segments, so that a few thousand commits are cleaned in this test.
    admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "__consumer_offsets",
                                        {"segment.bytes": "16384"})])
    topic = f"src-{next(_names)}"
    admin.create_topic(topic, partitions=4, replication_factor=3)
    group = f"g-{next(_names)}"
    tps = [TopicPartition(topic, q) for q in range(4)]

    async def commit_many() -> None:
        # (Not assigned: an assigned consumer's long-poll fetches share the connection, and
        # answers keep request order, so each commit would wait out a fetch.)
        async with AIOConsumer(bootstrap=cluster.bootstrap, group_id=group) as consumer:
            for n in range(1, 1501):
                await consumer.commit({tp: n for tp in tps})

    asyncio.run(commit_many())
    coordinator = admin.find_coordinator(group)
    offsets_part = _offsets_partition(admin, group)
    wait_for(lambda: (metric(cluster, coordinator, "strata_partition_log_start_offset", "__consumer_offsets",
                             offsets_part) or 0) > 0, 90, "the coordinator's partition to be cleaned and trimmed")
    cluster.kill(coordinator, signal.SIGKILL)
    try:
        got = wait_for(lambda: _try_offsets(admin, group), 60, "a new coordinator to load the group")
        assert got == {tp: 1500 for tp in tps}
    finally:
        cluster.start(coordinator)
        cluster.wait_ready(coordinator)


def _offsets_partition(admin: AdminClient, group: str) -> int:
    from strata.broker.groups.offsets_log import partition_for_group

    return partition_for_group(group, len(admin.describe_topic("__consumer_offsets").partitions))


def _try_offsets(admin: AdminClient, group: str):
    try:
        return admin.list_group_offsets(group)
    except Exception:
        return None

"""The Kafka listener with a real Kafka client (kafka-python 3, which negotiates flexible
versions): one cluster, two doors. The full client matrix (kcat, librdkafka, the Java client,
franz-go, sarama, kafkajs, aiokafka) and the differential tests against Apache Kafka are in
``tests/compat`` (``make compat``)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic
from kafka.errors import (
    InconsistentGroupProtocolError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

from strata.client import AdminClient, Consumer, Producer
from strata.client import TopicPartition as STP
from strata.client.admin.configs import ConfigResource as SConfigResource
from tests.integration.cluster import LocalCluster, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(root=tmp_path_factory.mktemp("kafka-listener"), n=3, kafka=True)
    with c:
        c.wait_ready()
        yield c


@pytest.fixture(scope="module")
def kadmin(cluster):
    a = KafkaAdminClient(bootstrap_servers=cluster.kafka_bootstrap, request_timeout_ms=30_000)
    yield a
    a.close()


def kconsumer(cluster, *topics: str, **kw) -> KafkaConsumer:
    kw.setdefault("auto_offset_reset", "earliest")
    kw.setdefault("consumer_timeout_ms", 10_000)
    return KafkaConsumer(*topics, bootstrap_servers=cluster.kafka_bootstrap, **kw)


def test_metadata_lists_every_broker_on_its_kafka_port_with_leaders_and_epochs(cluster, kadmin) -> None:
    kadmin.create_topics([NewTopic("k-meta", 3, 3)])
    md = wait_for(lambda: [t for t in kadmin.describe_topics(["k-meta"])
                           if all(p["leader_id"] >= 0 for p in t["partitions"])], 30, "leaders")
    (t,) = md
    assert len(t["partitions"]) == 3
    assert all(p["leader_epoch"] >= 1 and sorted(p["replica_nodes"]) == [1, 2, 3] for p in t["partitions"])
    brokers = {b["broker_id"]: b["port"] for b in kadmin.describe_cluster()["brokers"]}
    assert brokers == {i: b.kafka_port for i, b in cluster.brokers.items()}


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_idempotent_acks_all_produce_is_read_back_in_order_through_both_doors(cluster, kadmin, codec) -> None:
    topic = f"k-produce-{codec or 'none'}"
    kadmin.create_topics([NewTopic(topic, 2, 3)])
    p = KafkaProducer(bootstrap_servers=cluster.kafka_bootstrap, acks="all", enable_idempotence=True,
                      compression_type=codec)
    metas = [p.send(topic, key=b"k%d" % (i % 7), value=b"v%d" % i, partition=i % 2).get(30) for i in range(200)]
    p.close()
    # Offsets are dense per partition and start right after the leader's no-op (offset 0).
    for part in (0, 1):
        assert [m.offset for m in metas if m.partition == part] == list(range(1, 101))
    # The Kafka door: a fresh consumer from the earliest offset sees exactly what was produced.
    c = kconsumer(cluster)
    c.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    c.seek_to_beginning()
    got = [(m.partition, m.offset, m.value) for m in c if True]
    c.close()
    assert sorted(got) == sorted((i % 2, i // 2 + 1, b"v%d" % i) for i in range(200))
    # The native door: the same records at the same offsets.
    sc = Consumer(bootstrap=cluster.bootstrap, auto_offset_reset="earliest")
    sc.assign([STP(topic, 0), STP(topic, 1)])
    seen: list[tuple[int, int, bytes]] = []
    deadline = time.monotonic() + 30
    while len(seen) < 200 and time.monotonic() < deadline:
        seen += [(r.partition, r.offset, r.value) for r in sc.poll(timeout_ms=500)]
    sc.close()
    assert sorted(seen) == sorted(got)


def test_records_produced_natively_are_read_by_a_kafka_consumer_at_the_same_offsets(cluster, kadmin) -> None:
    with AdminClient(cluster.bootstrap) as admin:
        admin.create_topic("k-native-in", 1, 3)
    sp = Producer(bootstrap=cluster.bootstrap, acks="all")
    offsets = [sp.send("k-native-in", value=b"n%d" % i).result().offset for i in range(50)]
    sp.close()
    c = kconsumer(cluster)
    c.assign([TopicPartition("k-native-in", 0)])
    c.seek_to_beginning()
    assert [(m.offset, m.value) for m in c] == [(o, b"n%d" % i) for i, o in enumerate(offsets)]
    c.close()


def test_list_offsets_on_a_fresh_partition_then_consume_gives_exactly_the_records(cluster, kadmin) -> None:
    kadmin.create_topics([NewTopic("k-fresh", 1, 3)])
    c = kconsumer(cluster)
    tp = TopicPartition("k-fresh", 0)
    wait_for(lambda: c.beginning_offsets([tp]), 30, "ListOffsets on the new partition")
    assert c.beginning_offsets([tp]) == {tp: 0}
    p = KafkaProducer(bootstrap_servers=cluster.kafka_bootstrap, acks="all")
    for i in range(3):
        p.send("k-fresh", value=b"r%d" % i).get(30)
    p.close()
    c.assign([tp])
    c.seek_to_beginning()
    assert [m.value for m in c] == [b"r0", b"r1", b"r2"]  # the Raft no-op is a control batch, skipped
    assert c.end_offsets([tp]) == {tp: 4}
    c.close()


def test_a_kafka_consumer_group_commits_and_strata_shows_its_lag(cluster, kadmin) -> None:
    kadmin.create_topics([NewTopic("k-group", 4, 3)])
    p = KafkaProducer(bootstrap_servers=cluster.kafka_bootstrap, acks="all")
    for i in range(40):
        p.send("k-group", value=b"g%d" % i, partition=i % 4)
    p.flush()
    p.close()
    c = kconsumer(cluster, "k-group", group_id="kg", enable_auto_commit=False)
    got = []
    for m in c:
        got.append(m)
        if len(got) == 40:
            break
    c.commit()
    c.close()
    assert len(got) == 40
    with AdminClient(cluster.bootstrap) as admin:
        d = admin.describe_group("kg")
    committed = {(o.topic, o.partition): o for o in d.offsets}
    assert {k: o.committed for k, o in committed.items()} == {("k-group", p): 11 for p in range(4)}
    # Lag against each leader's high watermark as it is now, not the view a heartbeat old.
    assert {k: (o.high_watermark, o.lag) for k, o in committed.items()} == {("k-group", p): (11, 0) for p in range(4)}
    # And Kafka's admin sees the same offsets.
    kafka_view = kadmin.list_group_offsets("kg")["kg"]
    assert {(tp.topic, tp.partition): om.offset for tp, om in kafka_view.items()} == {
        ("k-group", p): 11 for p in range(4)}


def test_a_native_group_and_a_kafka_group_of_one_name_cannot_mix(cluster, kadmin) -> None:
    kadmin.create_topics([NewTopic("k-mix", 1, 3)])
    sc = Consumer(bootstrap=cluster.bootstrap, group_id="mixed", auto_offset_reset="earliest")
    sc.subscribe(["k-mix"])
    wait_for(lambda: sc.poll(timeout_ms=200) is not None and sc.assignment(), 30, "the native member's assignment")
    c = kconsumer(cluster, "k-mix", group_id="mixed", consumer_timeout_ms=3000)
    with pytest.raises(InconsistentGroupProtocolError):
        for _ in c:
            pass
    c.close()
    sc.close()


def _member(cluster, group: str, topic: str) -> subprocess.Popen:
    """A Kafka consumer in a process of its own (so that it can be killed), printing what it reads."""
    code = (
        "import sys\n"
        "from kafka import KafkaConsumer\n"
        f"c = KafkaConsumer({topic!r}, bootstrap_servers={cluster.kafka_bootstrap!r}, group_id={group!r},"
        " auto_offset_reset='earliest', session_timeout_ms=3000, heartbeat_interval_ms=500,"
        " enable_auto_commit=False)\n"
        "for m in c:\n"
        "    print(m.partition, m.offset, flush=True)\n"
        "    c.commit()\n"
    )
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)


def test_when_a_group_member_dies_the_other_takes_over_its_partitions(cluster, kadmin) -> None:
    kadmin.create_topics([NewTopic("k-failover", 2, 3)])
    a = _member(cluster, "kf", "k-failover")
    b = _member(cluster, "kf", "k-failover")
    try:
        def two_members() -> bool:
            g = kadmin.describe_groups(["kf"])["kf"]
            return g["group_state"] == "Stable" and len(g["members"]) == 2

        wait_for(two_members, 60, "both members in the group")
        a.kill()
        a.wait()
        p = KafkaProducer(bootstrap_servers=cluster.kafka_bootstrap, acks="all")
        for i in range(20):
            p.send("k-failover", value=b"x", partition=i % 2)
        p.flush()
        p.close()
        seen: set[tuple[int, int]] = set()
        assert b.stdout is not None

        def b_read_everything() -> bool:
            line = b.stdout.readline()
            if line:
                part, off = map(int, line.split())
                seen.add((part, off))
            return len(seen) >= 20

        wait_for(b_read_everything, 60, "the survivor to read both partitions", interval=0)
        assert seen == {(p, o) for p in (0, 1) for o in range(1, 11)}
    finally:
        for proc in (a, b):
            proc.kill()
            proc.wait()


def test_topic_admin_through_the_kafka_api(cluster, kadmin) -> None:
    kadmin.create_topics([NewTopic("k-admin", 1, 3, topic_configs={"retention.ms": "3600000"})])
    with pytest.raises(TopicAlreadyExistsError):
        kadmin.create_topics([NewTopic("k-admin", 1, 3)])

    def topic_configs() -> dict[str, str]:
        described = kadmin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "k-admin")],
                                            config_filter="all")
        (configs,) = [v for by_name in described.values() for v in by_name.values()]
        return {k: (c["value"] if isinstance(c, dict) else c) for k, c in configs.items()}

    assert topic_configs()["retention.ms"] == "3600000"
    kadmin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "k-admin", configs={"segment.ms": "60000"})],
                         incremental=True)
    after = topic_configs()
    assert after["segment.ms"] == "60000" and after["retention.ms"] == "3600000"
    # Strata's own door sees the change, with its source.
    with AdminClient(cluster.bootstrap) as admin:
        (entries,) = admin.describe_configs([SConfigResource("topic", "k-admin")]).values()
    assert entries["segment.ms"].value == "60000" and entries["segment.ms"].source == "topic"
    outcome = kadmin.alter_configs(
        [ConfigResource(ConfigResourceType.TOPIC, "k-admin", configs={"retention.ms": "soon"})], incremental=True)
    (result,) = [r for by_name in outcome.values() for r in by_name.values()]
    # kafka-python reports per-resource outcomes as text: Kafka's code 40, naming the key.
    assert "InvalidConfigurationError" in str(result) and "retention.ms" in str(result), result
    kadmin.create_partitions({"k-admin": NewPartitions(3)})
    wait_for(lambda: [t for t in kadmin.describe_topics(["k-admin"]) if len(t["partitions"]) == 3], 30,
             "three partitions")
    kadmin.delete_topics(["k-admin"])
    wait_for(lambda: "k-admin" not in kadmin.list_topics(), 30, "the topic to go")
    with pytest.raises(UnknownTopicOrPartitionError):
        kadmin.delete_topics(["k-admin"])


def test_delete_records_moves_the_log_start_on_every_replica(cluster, kadmin) -> None:
    kadmin.create_topics([NewTopic("k-trim", 1, 3)])
    p = KafkaProducer(bootstrap_servers=cluster.kafka_bootstrap, acks="all")
    for i in range(10):
        p.send("k-trim", value=b"t%d" % i).get(30)
    p.close()
    tp = TopicPartition("k-trim", 0)
    kadmin.delete_records({tp: 6})
    c = kconsumer(cluster)
    assert c.beginning_offsets([tp]) == {tp: 6}
    c.assign([tp])
    c.seek_to_beginning()
    assert [m.value for m in c] == [b"t5", b"t6", b"t7", b"t8", b"t9"]
    c.close()
    with AdminClient(cluster.bootstrap) as admin:
        wait_for(lambda: admin.describe_topic("k-trim").partitions[0].log_start_offset == 6, 30,
                 "the leader to report the new log start")

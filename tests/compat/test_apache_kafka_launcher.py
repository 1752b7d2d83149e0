"""The Apache Kafka launcher: a real 1-node KRaft cluster, a topic, records in and out.

The cluster test needs Apache Kafka's jars (``make kafka-dist``): it is part of ``make
compat``, which installs them (``make test`` deselects it; run by hand without the jars, it
is skipped with that command in the reason). The rest (properties, the readiness probe's
wire format) needs nothing and always runs.
"""

from __future__ import annotations

import os
import struct
import time
from pathlib import Path

import pytest

from tests.compat.apache_kafka import (
    ApacheKafkaCluster,
    KafkaClusterConfig,
    KafkaDist,
    KafkaDistMissing,
    decode_metadata_brokers,
    encode_metadata_request,
    random_cluster_id,
    server_properties,
)

try:
    KafkaDist.find()
    MISSING = ""
except KafkaDistMissing as exc:
    MISSING = str(exc)

def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.apache_kafka
@pytest.mark.compat  # make compat installs Apache Kafka and runs it; make test deselects it
@pytest.mark.integration
@pytest.mark.skipif(bool(MISSING), reason=MISSING)
def test_one_node_cluster_round_trips_records_and_stops(tmp_path: Path) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic

    with ApacheKafkaCluster(KafkaClusterConfig(nodes=1, heap="256m"), root=tmp_path) as kafka:
        pids = dict(kafka.pids)
        assert list(pids) == [1] and not _gone(pids[1])

        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap, request_timeout_ms=30_000)
        try:
            admin.create_topics([NewTopic("compat-smoke", num_partitions=2, replication_factor=1)])
        finally:
            admin.close()

        values = [f"record-{i}".encode() for i in range(100)]
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all", retries=5)
        try:
            offsets = [
                producer.send("compat-smoke", value=v, partition=i % 2).get(timeout=30)
                for i, v in enumerate(values)
            ]
        finally:
            producer.close()
        assert sorted(m.offset for m in offsets if m.partition == 0) == list(range(50))

        consumer = KafkaConsumer(
            bootstrap_servers=kafka.bootstrap, enable_auto_commit=False, consumer_timeout_ms=500
        )
        got: list[bytes] = []
        try:
            consumer.assign([TopicPartition("compat-smoke", 0), TopicPartition("compat-smoke", 1)])
            consumer.seek_to_beginning()
            deadline = time.monotonic() + 60
            while len(got) < len(values) and time.monotonic() < deadline:
                for batch in consumer.poll(timeout_ms=500).values():
                    got.extend(r.value for r in batch)
        finally:
            consumer.close()
        assert sorted(got) == sorted(values)

    # Stopped means stopped: no broker process outlives the context manager.
    deadline = time.monotonic() + 10
    while not _gone(pids[1]) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pids[1])


def test_three_node_properties_share_one_static_voter_set() -> None:
    config = KafkaClusterConfig(nodes=3, extra_properties={"log.flush.interval.messages": "1"})
    ports = {1: (9001, 9101), 2: (9002, 9102), 3: (9003, 9103)}
    props = [server_properties(config, n, ports, Path(f"/d{n}")) for n in (1, 2, 3)]
    voters = {p["controller.quorum.voters"] for p in props}
    assert voters == {"1@127.0.0.1:9101,2@127.0.0.1:9102,3@127.0.0.1:9103"}
    assert [p["node.id"] for p in props] == ["1", "2", "3"]
    assert props[1]["listeners"] == "PLAINTEXT://127.0.0.1:9002,CONTROLLER://127.0.0.1:9102"
    assert props[0]["default.replication.factor"] == "3"
    assert props[0]["min.insync.replicas"] == "2"
    assert props[0]["offsets.topic.replication.factor"] == "3"
    assert all(p["log.flush.interval.messages"] == "1" for p in props)


def test_one_node_defaults_let_internal_topics_exist() -> None:
    props = server_properties(KafkaClusterConfig(nodes=1), 1, {1: (1, 2)}, Path("/d"))
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["min.insync.replicas"] == "1"


def test_config_rejects_a_replication_factor_above_the_node_count() -> None:
    with pytest.raises(ValueError, match="replication factor"):
        KafkaClusterConfig(nodes=1, replication_factor=3)
    with pytest.raises(ValueError, match="min.insync.replicas"):
        KafkaClusterConfig(nodes=3, min_insync_replicas=4)


def test_cluster_id_is_kafka_uuid_text() -> None:
    ids = {random_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 22 and not i.startswith("-") for i in ids)


def test_metadata_probe_reads_every_broker_of_a_v4_response() -> None:
    request = encode_metadata_request(7, client_id="x")
    size, api_key, version, correlation_id = struct.unpack_from(">ihhi", request)
    assert (size, api_key, version, correlation_id) == (len(request) - 4, 3, 4, 7)

    def string(s: str | None) -> bytes:
        if s is None:
            return struct.pack(">h", -1)
        return struct.pack(">h", len(s)) + s.encode()

    brokers = [(1, "127.0.0.1", 9092, None), (2, "127.0.0.1", 9093, "rack-a")]
    body = struct.pack(">ii", 7, 0) + struct.pack(">i", len(brokers))
    for node_id, host, port, rack in brokers:
        body += struct.pack(">i", node_id) + string(host) + struct.pack(">i", port) + string(rack)
    body += string("cluster") + struct.pack(">i", 1) + struct.pack(">i", 0)
    assert decode_metadata_brokers(7, body) == [(1, "127.0.0.1", 9092), (2, "127.0.0.1", 9093)]
    with pytest.raises(ValueError, match="correlation"):
        decode_metadata_brokers(8, body)

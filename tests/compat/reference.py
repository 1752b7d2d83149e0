"""The tests' own view of a cluster, independent of the client under test.

Every scenario is checked against what this reader finds: the records stored (read with
kafka-python from the earliest offset to the end), the codec and producer id in each
stored batch's header (raw Fetch requests, :mod:`tests.compat.wire`), topic configs, and a
group's committed offsets. It also sets the stage: topics, and records with chosen
partitions and timestamps.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.protocol.consumer import FetchRequest
from kafka.protocol.metadata import MetadataRequest

from tests.compat.wire import BatchHeader, KafkaWire, batch_headers

REQUEST_TIMEOUT_MS = 30_000
FETCH_VERSION = 11  # the newest non-flexible Fetch


def unique_topic(tag: str) -> str:
    return f"compat-{tag}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True, slots=True)
class Stored:
    """A record as stored, in the form the drivers print it."""

    partition: int
    offset: int
    key: str | None
    value: str | None
    timestamp: int

    @classmethod
    def of_event(cls, e: dict[str, Any]) -> Stored:
        return cls(e["partition"], e["offset"], e["key"], e["value"], e["timestamp"])


def _text(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")


class Reference:
    """kafka-python's admin, producer and consumer on one cluster; close it when done."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self.admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=REQUEST_TIMEOUT_MS)

    def close(self) -> None:
        self.admin.close()

    # -- topics --

    def create_topic(self, name: str, partitions: int, replication_factor: int,
                     configs: dict[str, str] | None = None) -> str:  # fmt: skip
        self.admin.create_topics({name: {"num_partitions": partitions,
                                         "replication_factor": replication_factor,
                                         "configs": configs or {}}},
                                 wait_for_metadata=True)  # fmt: skip
        return name

    def topic_exists(self, name: str) -> bool:
        return name in self.admin.list_topics()

    def partitions(self, topic: str) -> list[dict[str, Any]]:
        (described,) = self.admin.describe_topics([topic])
        return sorted(described["partitions"], key=lambda p: p["partition_index"])

    def leader_of(self, topic: str, partition: int) -> int:
        return next(p["leader_id"] for p in self.partitions(topic) if p["partition_index"] == partition)

    def brokers(self) -> dict[int, str]:
        """Node id -> ``host:port`` from a Metadata request (not DescribeCluster, a newer API)."""
        with KafkaWire.connect(self.bootstrap) as wire:
            response = wire.send(MetadataRequest(topics=[], allow_auto_topic_creation=False), version=4)
        return {b.node_id: f"{b.host}:{b.port}" for b in response.brokers}

    def configs(self, topic: str, keys: Sequence[str]) -> dict[str, str]:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        found = self.admin.describe_configs([resource], config_filter="all")["topic"][topic]
        return {k: found[k]["value"] for k in keys if k in found}

    def group_offsets(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets for ``topic`` (partitions without a commit left out)."""
        found = self.admin.list_group_offsets({group: None})[group]
        return {tp.partition: meta.offset for tp, meta in found.items()
                if tp.topic == topic and meta.offset >= 0}  # fmt: skip

    # -- records --

    def produce(self, topic: str, records: Sequence[tuple[int, str, str, int]]) -> list[Stored]:
        """Send (partition, key, value, timestamp) records in order, acks=all; what was stored."""
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        try:
            futures = [(p, k, v, ts, producer.send(topic, key=k.encode(), value=v.encode(),
                                                   partition=p, timestamp_ms=ts))
                       for p, k, v, ts in records]  # fmt: skip
            return [Stored(p, f.get(timeout=REQUEST_TIMEOUT_MS / 1000).offset, k, v, ts)
                    for p, k, v, ts, f in futures]  # fmt: skip
        finally:
            producer.close(timeout=10)

    def read_all(self, topic: str, timeout_s: float = 60.0) -> list[Stored]:
        """Every record from each partition's earliest offset up to its end offset now."""
        consumer = KafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                 enable_auto_commit=False)  # fmt: skip
        try:
            tps = [TopicPartition(topic, p["partition_index"]) for p in self.partitions(topic)]
            consumer.assign(tps)
            consumer.seek_to_beginning(*tps)
            ends = consumer.end_offsets(tps)
            found: list[Stored] = []
            deadline = time.monotonic() + timeout_s
            while any(consumer.position(tp) < ends[tp] for tp in tps):
                if time.monotonic() > deadline:
                    raise AssertionError(f"reading {topic} to {ends} took over {timeout_s}s")
                for records in consumer.poll(timeout_ms=200).values():
                    found.extend(Stored(r.partition, r.offset, _text(r.key), _text(r.value), r.timestamp)
                                 for r in records)  # fmt: skip
            return found
        finally:
            consumer.close()

    def batches(self, topic: str) -> dict[int, list[BatchHeader]]:
        """The stored batches' headers per partition, fetched from each partition's leader."""
        brokers = self.brokers()
        out: dict[int, list[BatchHeader]] = {}
        for p in self.partitions(topic):
            index = p["partition_index"]
            out[index] = []
            with KafkaWire.connect(brokers[p["leader_id"]]) as wire:
                offset = 0
                while True:
                    part = _fetch(wire, topic, index, offset)
                    if part.error_code:
                        raise AssertionError(f"fetch {topic}[{index}]@{offset}: error {part.error_code}")
                    headers = list(batch_headers(part.records))
                    out[index].extend(headers)
                    if not headers or headers[-1].last_offset + 1 >= part.high_watermark:
                        break
                    offset = headers[-1].last_offset + 1
        return out


def _fetch(wire: KafkaWire, topic: str, partition: int, offset: int) -> Any:
    request = FetchRequest(
        replica_id=-1, max_wait_ms=0, min_bytes=0, max_bytes=4 << 20, isolation_level=0,
        topics=[FetchRequest.FetchTopic(topic=topic, partitions=[FetchRequest.FetchTopic.FetchPartition(
            partition=partition, fetch_offset=offset, log_start_offset=-1, partition_max_bytes=4 << 20)])],
    )  # fmt: skip
    response = wire.send(request, version=FETCH_VERSION)
    return response.responses[0].partitions[0]

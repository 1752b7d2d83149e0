"""The cluster metadata: a deterministic state machine over the controller's Raft log.

Every broker applies the same committed records in the same order, so every broker holds
the same image: brokers, topics with their partition assignments and configs, and the
producer-id blocks handed out. The records are msgpack maps with a ``t`` (type) field,
carried as record values in the controller partition's batches.

Nothing here does I/O; the controller (``broker/cluster/controller.py``) feeds committed records in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import msgpack

from strata.client.errors import ErrorCode, error_for

INTERNAL_TOPIC_PREFIX = "__"
OFFSETS_TOPIC = "__consumer_offsets"
METADATA_TOPIC = "__cluster_metadata"
TOPIC_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
PRODUCER_ID_BLOCK = 1000

ConfigValue = int | float | str


@dataclass(slots=True)
class BrokerInfo:
    node_id: int
    host: str
    port: int
    metrics_port: int | None = None
    #: Addresses clients of the broker's other listeners are told (``external``, ``kafka``).
    endpoints: dict[str, tuple[str, int]] = field(default_factory=dict)


@dataclass(slots=True)
class TopicInfo:
    name: str
    topic_id: int
    replicas: list[list[int]]
    configs: dict[str, ConfigValue] = field(default_factory=dict)

    @property
    def internal(self) -> bool:
        return self.name.startswith(INTERNAL_TOPIC_PREFIX)

    @property
    def partitions(self) -> int:
        return len(self.replicas)


@dataclass(slots=True)
class MetadataImage:
    """What every broker knows once it has applied the controller log up to ``applied_offset``."""

    brokers: dict[int, BrokerInfo] = field(default_factory=dict)
    topics: dict[str, TopicInfo] = field(default_factory=dict)
    next_topic_id: int = 1
    next_producer_id: int = 1
    producer_id_blocks: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: Cluster-wide settings (``default.replication.factor``, ...), see ``configs.CLUSTER_CONFIGS``.
    cluster_configs: dict[str, ConfigValue] = field(default_factory=dict)
    applied_offset: int = -1

    # -- applying committed records ---------------------------------------------------

    def apply(self, offset: int, record: dict[str, Any]) -> None:
        """Apply one committed record. Records that no longer make sense are ignored, never raise:
        the log is the truth, and a record validated on the leader may be stale by commit time
        (for example two creates of one name racing)."""
        assert offset > self.applied_offset, (offset, self.applied_offset)
        self.applied_offset = offset
        kind = record.get("t")
        if kind == "broker":
            self.brokers[record["id"]] = BrokerInfo(
                record["id"], record["host"], record["port"], record.get("mport"),
                {name: (h, p) for name, (h, p) in (record.get("endpoints") or {}).items()},
            )
        elif kind == "topic":
            name = record["name"]
            if name in self.topics:
                return
            self.topics[name] = TopicInfo(
                name, self.next_topic_id, [list(r) for r in record["replicas"]], dict(record.get("configs", {}))
            )
            self.next_topic_id += 1
        elif kind == "delete_topic":
            self.topics.pop(record["name"], None)
        elif kind == "pid_block":
            start = self.next_producer_id
            self.producer_id_blocks[record["broker"]] = (start, PRODUCER_ID_BLOCK)
            self.next_producer_id += PRODUCER_ID_BLOCK
        elif kind == "partitions":
            topic = self._topic_of(record)
            # Applied only onto the partition count it was planned for: of two additions
            # validated against the same count, the second is stale and ignored.
            if topic is not None and topic.partitions == record["from"]:
                topic.replicas.extend(list(r) for r in record["replicas"])
        elif kind == "config":
            topic = self._topic_of(record)
            if topic is not None:
                topic.configs.update(record["configs"])
                for key in record.get("delete", ()):
                    topic.configs.pop(key, None)
        elif kind == "cluster_config":
            self.cluster_configs.update(record["configs"])
            for key in record.get("delete", ()):
                self.cluster_configs.pop(key, None)

    def _topic_of(self, record: dict[str, Any]) -> TopicInfo | None:
        """The topic a change names, if it is still the topic the change was made for."""
        topic = self.topics.get(record["name"])
        if topic is None:
            return None
        tid = record.get("topic_id")
        return topic if tid is None or tid == topic.topic_id else None

    # -- validating proposals (on the controller leader) -------------------------------

    def validate_create(
        self, name: str, partitions: int, replication_factor: int, live: list[int],
        *, max_partitions: int, allow_internal: bool = False,
    ) -> None:
        """Raise the StrataError a creation of this topic should fail with, if any (configs are
        checked by ``configs.parse_topic_configs``)."""
        if not isinstance(name, str) or not TOPIC_NAME_RE.match(name) or name in (".", ".."):
            raise error_for(
                ErrorCode.INVALID_TOPIC,
                f"topic name {name!r} is invalid: use 1-249 characters from [A-Za-z0-9._-]",
            )
        if name.startswith(INTERNAL_TOPIC_PREFIX) and not allow_internal:
            raise error_for(ErrorCode.INVALID_TOPIC, f"topic names starting with '__' are internal: {name!r}")
        if name in self.topics:
            raise error_for(ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {name!r} already exists")
        if not 1 <= partitions <= max_partitions:
            raise error_for(
                ErrorCode.INVALID_PARTITIONS, f"partitions must be between 1 and {max_partitions}, got {partitions}"
            )
        if replication_factor < 1:
            raise error_for(ErrorCode.INVALID_REPLICATION_FACTOR, "replication factor must be at least 1")
        if replication_factor > len(live):
            raise error_for(
                ErrorCode.INVALID_REPLICATION_FACTOR,
                f"replication factor {replication_factor} is larger than the {len(live)} live broker(s) "
                f"({', '.join(map(str, sorted(live)))})",
            )

    def assign_replicas(self, partitions: int, replication_factor: int, live: list[int]) -> list[list[int]]:
        """Spread replicas and preferred leaders evenly, as Kafka's rack-unaware assignment does.

        Partition ``p`` gets ``replication_factor`` consecutive brokers (in id order) starting at
        a position that rotates with ``p``, so preferred leaders (the first replica) go round
        the brokers; the start is the broker that leads the fewest partitions so far.
        """
        brokers = sorted(live)
        n = len(brokers)
        lead_count = dict.fromkeys(brokers, 0)
        for topic in self.topics.values():
            for reps in topic.replicas:
                if reps and reps[0] in lead_count:
                    lead_count[reps[0]] += 1
        start = min(range(n), key=lambda i: (lead_count[brokers[i]], i))
        return [
            [brokers[(start + p + i) % n] for i in range(replication_factor)] for p in range(partitions)
        ]

    # -- snapshots (for tests and debugging) --------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "brokers": {i: [b.host, b.port, b.metrics_port, b.endpoints] for i, b in self.brokers.items()},
            "topics": {n: {"id": t.topic_id, "replicas": t.replicas, "configs": t.configs} for n, t in self.topics.items()},
            "next_topic_id": self.next_topic_id,
            "next_producer_id": self.next_producer_id,
            "cluster_configs": dict(self.cluster_configs),
        }


def encode_record(record: dict[str, Any]) -> bytes:
    return bytes(msgpack.packb(record, use_bin_type=True))


def decode_record(data: bytes) -> dict[str, Any]:
    rec = msgpack.unpackb(data, raw=False, strict_map_key=False)
    if not isinstance(rec, dict) or "t" not in rec:
        raise ValueError(f"metadata record is not a typed map: {rec!r:.80}")
    return rec

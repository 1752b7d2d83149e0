"""What the admin client takes and answers: topics to create, descriptions of topics,
the cluster and groups, and group offset changes. ``to_dict()`` gives the stable JSON
shapes the CLI prints with ``--output json`` (DESIGN.md)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from strata.client._types import TopicPartition


@dataclass(slots=True, frozen=True)
class NewTopic:
    """A topic to create. ``replication_factor=-1`` (the default) lets the cluster choose
    (its ``default.replication.factor``: min(3, brokers) unless configured)."""

    name: str
    partitions: int = 1
    replication_factor: int = -1
    configs: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class CreatedTopic:
    """What the controller created: the partition count and replication factor it used."""

    name: str
    partitions: int
    replication_factor: int


@dataclass(slots=True, frozen=True)
class OffsetChange:
    """One partition of a group seek: the committed offset before (None: nothing was
    committed) and the one it moves to (None: left alone, e.g. a shift with no start)."""

    topic: str
    partition: int
    old: int | None
    new: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "old": self.old, "new": self.new}


@dataclass(slots=True, frozen=True)
class PartitionDescription:
    partition: int
    leader: int | None
    replicas: list[int]
    isr: list[int]
    log_start_offset: int
    log_end_offset: int
    high_watermark: int
    #: Compacted topics: dirty bytes / cleanable bytes below the high watermark on the
    #: leader, as last reported to the controller; ``None`` for other topics or not known yet.
    dirty_ratio: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "partition": self.partition,
            "leader": self.leader,
            "replicas": list(self.replicas),
            "isr": list(self.isr),
            "log_start_offset": self.log_start_offset,
            "log_end_offset": self.log_end_offset,
            "high_watermark": self.high_watermark,
            "dirty_ratio": self.dirty_ratio,
        }


@dataclass(slots=True, frozen=True)
class TopicDescription:
    name: str
    partitions: list[PartitionDescription]
    internal: bool = False
    configs: Mapping[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of ``strata topic describe --output json``."""
        return {"name": self.name, "partitions": [p.to_dict() for p in self.partitions]}


@dataclass(slots=True, frozen=True)
class BrokerDescription:
    id: int
    host: str
    port: int
    alive: bool
    rack: str = ""
    metrics_port: int = -1


@dataclass(slots=True, frozen=True)
class ClusterDescription:
    cluster_id: str
    controller: int | None
    brokers: list[BrokerDescription]
    voters: list[int]
    topics: int
    partitions: int
    under_replicated: int
    offline: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "cluster_id": self.cluster_id,
            "controller": self.controller,
            "brokers": [
                {
                    "id": b.id,
                    "host": b.host,
                    "port": b.port,
                    "alive": b.alive,
                    "rack": b.rack,
                    "metrics_port": b.metrics_port,
                }
                for b in self.brokers
            ],
            "voters": list(self.voters),
            "topics": self.topics,
            "partitions": self.partitions,
            "under_replicated": self.under_replicated,
            "offline": self.offline,
        }


@dataclass(slots=True, frozen=True)
class GroupListing:
    group: str
    state: str
    #: The broker coordinating the group (the one that listed it).
    coordinator: int

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "state": self.state, "coordinator": self.coordinator}


@dataclass(slots=True, frozen=True)
class MemberDescription:
    member_id: str
    client_id: str
    host: str
    member_epoch: int
    subscribed: list[str]
    assignment: list[TopicPartition]


def consumer_lag(committed: int, high_watermark: int) -> int:
    """Records between a committed offset and the high watermark (``-1`` when the high
    watermark is unknown; never negative)."""
    return max(0, high_watermark - committed) if high_watermark >= 0 else -1


@dataclass(slots=True, frozen=True)
class OffsetDescription:
    """A committed offset, with the partition's high watermark and the lag between them
    (``-1`` when the partition has no known leader)."""

    topic: str
    partition: int
    committed: int
    high_watermark: int
    lag: int

    def at(self, high_watermark: int) -> OffsetDescription:
        """The same committed offset against another high watermark."""
        return replace(self, high_watermark=high_watermark,
                       lag=consumer_lag(self.committed, high_watermark))


@dataclass(slots=True, frozen=True)
class GroupDescription:
    group: str
    state: str
    epoch: int
    assignor: str
    coordinator: int
    members: list[MemberDescription]
    offsets: list[OffsetDescription]

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON shape of ``strata group describe --output json`` (DESIGN.md)."""
        return {
            "group": self.group,
            "state": self.state,
            "members": [
                {
                    "member_id": m.member_id,
                    "client_id": m.client_id,
                    "assignment": [
                        {"topic": tp.topic, "partition": tp.partition} for tp in m.assignment
                    ],
                }
                for m in self.members
            ],
            "offsets": [
                {
                    "topic": o.topic,
                    "partition": o.partition,
                    "committed": o.committed,
                    "high_watermark": o.high_watermark,
                    "lag": o.lag,
                }
                for o in self.offsets
            ],
        }

    @classmethod
    def from_wire(cls, entry: Mapping[str, Any], coordinator: int) -> GroupDescription:
        """One DESCRIBE_GROUPS entry (without error)."""
        return cls(
            group=entry["group"],
            state=entry.get("state", ""),
            epoch=entry.get("epoch", -1),
            assignor=entry.get("assignor", ""),
            coordinator=coordinator,
            members=sorted(
                (
                    MemberDescription(
                        m["member_id"],
                        m.get("client_id", ""),
                        m.get("host", ""),
                        m.get("member_epoch", -1),
                        list(m.get("subscribed", ())),
                        sorted(
                            TopicPartition(a["topic"], p)
                            for a in m.get("assignment", ())
                            for p in a["partitions"]
                        ),
                    )
                    for m in entry.get("members", ())
                ),
                key=lambda m: (m.assignment[:1], m.member_id),
            ),
            offsets=sorted(
                (
                    OffsetDescription(
                        o["topic"],
                        o["partition"],
                        o["committed"],
                        o.get("high_watermark", -1),
                        o.get("lag", -1),
                    )
                    for o in entry.get("offsets", ())
                ),
                key=lambda o: (o.topic, o.partition),
            ),
        )


__all__ = [
    "BrokerDescription",
    "ClusterDescription",
    "CreatedTopic",
    "GroupDescription",
    "GroupListing",
    "MemberDescription",
    "NewTopic",
    "OffsetChange",
    "OffsetDescription",
    "PartitionDescription",
    "TopicDescription",
]

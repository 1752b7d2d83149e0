"""Typed arguments and results of the broker's core operations.

Every front-end (the native protocol, the Kafka protocol) decodes its requests into these,
calls the core, and encodes what comes back; errors travel as ``StrataError`` exceptions
(``strata.client.errors``) with a code, a message and details, raised by the core and
mapped to each protocol's codes by its front-end. Nothing here knows a wire format.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strata.client.errors import StrataError
    from strata.storage.segment import FileSlice

#: A Raft group, i.e. a partition: (topic, partition).
GroupKey = tuple[str, int]

#: ``ListOffsets`` timestamps with a special meaning (Kafka's numbers).
LATEST_TIMESTAMP = -1  # the high watermark: where new records go
EARLIEST_TIMESTAMP = -2  # the log start offset

#: ``acks`` values a producer may ask for.
ACKS_ALL = -1
ACKS_LEADER = 1
ACKS_NONE = 0


# -- produce and fetch ----------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class ProduceResult:
    base_offset: int
    last_offset: int
    log_start_offset: int


@dataclass(slots=True, frozen=True)
class FetchPartition:
    """One partition a fetch asks for."""

    topic: str
    partition: int
    offset: int
    max_bytes: int
    #: The fetcher's view of the leader epoch (Kafka's current_leader_epoch); -1 = unchecked.
    leader_epoch: int = -1


@dataclass(slots=True)
class FetchedPartition:
    """What a fetch returns for one partition: whole batches below the high watermark.

    ``records`` is a storage slice: either bytes already read and CRC-checked (``data``) or,
    for large reads, a range of a segment file that the front-end sends with ``sendfile``
    (``data is None``; the slice owns a duplicated descriptor, closed once sent or dropped).
    """

    topic: str
    partition: int
    error: StrataError | None = None
    high_watermark: int = -1
    log_start_offset: int = -1
    log_end_offset: int = -1
    records: FileSlice | None = None

    @property
    def size(self) -> int:
        return 0 if self.records is None else self.records.size


@dataclass(slots=True, frozen=True)
class FetchRequest:
    partitions: list[FetchPartition]
    max_wait_ms: int
    min_bytes: int
    max_bytes: int


@dataclass(slots=True, frozen=True)
class OffsetQuery:
    topic: str
    partition: int
    #: ms since the epoch, or LATEST_TIMESTAMP / EARLIEST_TIMESTAMP.
    timestamp: int
    #: The client's view of the leader epoch; -1 = unchecked.
    leader_epoch: int = -1


@dataclass(slots=True, frozen=True)
class ListedOffset:
    topic: str
    partition: int
    error: StrataError | None = None
    #: The offset found: -1 when no record is at or after the timestamp.
    offset: int = -1
    timestamp: int = -1
    leader_epoch: int = -1
    log_start_offset: int = -1
    high_watermark: int = -1
    log_end_offset: int = -1


# -- metadata -------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class BrokerEndpoint:
    node_id: int
    host: str
    port: int
    rack: str | None = None
    alive: bool = True
    metrics_port: int = -1


@dataclass(slots=True, frozen=True)
class PartitionState:
    """Leader, replicas and offsets of one partition, as this broker knows them.

    First-hand when this broker leads the partition; otherwise from the controller's view
    (at most a heartbeat old) or this broker's own follower replica.
    """

    partition: int
    leader: int | None
    leader_epoch: int
    replicas: list[int]
    isr: list[int]
    log_start_offset: int = -1
    log_end_offset: int = -1
    high_watermark: int = -1
    #: Compacted topics: dirty bytes / cleanable bytes on the leader; None for other topics.
    dirty_ratio: float | None = None

    @property
    def offline_replicas(self) -> list[int]:
        return [] if self.leader is not None else list(self.replicas)


@dataclass(slots=True, frozen=True)
class TopicMetadata:
    name: str
    error: StrataError | None = None
    topic_id: int = 0
    internal: bool = False
    partitions: list[PartitionState] = field(default_factory=list)
    configs: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class ClusterMetadata:
    cluster_id: str
    controller_id: int | None
    brokers: list[BrokerEndpoint]
    topics: list[TopicMetadata]


@dataclass(slots=True, frozen=True)
class ClusterSummary:
    """What ``strata cluster status`` shows: brokers and partition health."""

    cluster_id: str
    controller_id: int | None
    brokers: list[BrokerEndpoint]
    voters: list[int]
    topics: int
    partitions: int
    under_replicated: int
    offline: int


# -- topic administration -------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class NewTopic:
    name: str
    partitions: int
    #: -1: the cluster's default.replication.factor.
    replication_factor: int = -1
    configs: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class TopicResult:
    """The outcome for one topic of a create/delete/add-partitions request."""

    name: str
    error: StrataError | None = None
    partitions: int = -1
    replication_factor: int = -1


@dataclass(slots=True, frozen=True)
class PartitionIncrease:
    name: str
    #: The new total number of partitions (Kafka's CreatePartitions count).
    count: int


# -- configs --------------------------------------------------------------------------------

RESOURCE_TOPIC = "topic"
RESOURCE_BROKER = "broker"


@dataclass(slots=True, frozen=True)
class ConfigEntry:
    name: str
    value: str | None
    #: "default" (nothing set), "topic" (set on the topic), "broker" (the broker's setting).
    source: str
    read_only: bool = False
    sensitive: bool = False
    doc: str = ""


@dataclass(slots=True, frozen=True)
class ConfigResource:
    type: str  # RESOURCE_TOPIC or RESOURCE_BROKER
    name: str


@dataclass(slots=True, frozen=True)
class DescribedConfigs:
    resource: ConfigResource
    error: StrataError | None = None
    entries: list[ConfigEntry] = field(default_factory=list)


@dataclass(slots=True, frozen=True)
class ConfigOp:
    """One change: ``set`` a value, or ``delete`` it (back to the default)."""

    name: str
    op: str  # "set" | "delete"
    value: str | None = None


@dataclass(slots=True, frozen=True)
class ConfigChange:
    resource: ConfigResource
    ops: list[ConfigOp]


@dataclass(slots=True, frozen=True)
class ConfigResult:
    resource: ConfigResource
    error: StrataError | None = None

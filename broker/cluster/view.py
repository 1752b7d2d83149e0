"""The cluster view every broker holds: who leads each partition, which brokers are alive.

Leadership and liveness are soft state (``docs/decisions.md``, "Cluster"): the controller
leader collects them from the brokers' heartbeats and answers each heartbeat with the whole
view when it changed; every broker adopts it here, so any broker can say who leads any
partition. A view can be a moment old; a client that reaches a stale leader gets
``NOT_LEADER`` naming the current one, which comes first-hand from the partition's own Raft
group.

Entries carry the **topic id**: a topic deleted and created again under the same name is a
different topic, and what was known of the old one (its leader, its epochs, its offsets)
must never be taken for the new one's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strata.broker.core.types import PartitionState

if TYPE_CHECKING:
    from strata.broker.cluster.metadata import TopicInfo
    from strata.broker.replication.replica import Replica


@dataclass(slots=True, frozen=True)
class PartitionView:
    """One partition as its leader last reported it."""

    topic_id: int
    leader: int | None
    epoch: int
    isr: list[int]
    log_start_offset: int
    log_end_offset: int
    high_watermark: int
    #: A compacted partition's dirty ratio on its leader (rounded), None for other topics.
    dirty_ratio: float | None = None

    def to_wire(self, topic: str, partition: int) -> list[Any]:
        return [topic, partition, self.topic_id, self.leader, self.epoch, self.isr, self.log_start_offset,
                self.log_end_offset, self.high_watermark, self.dirty_ratio]

    @staticmethod
    def from_wire(item: list[Any]) -> tuple[tuple[str, int], PartitionView]:
        t, p, tid, leader, epoch, isr, lso, leo, hw, *more = item
        return (t, p), PartitionView(tid, leader, epoch, list(isr), lso, leo, hw, more[0] if more else None)


def dirty_ratio(r: Replica) -> float | None:
    """What the leader reports of a compacted partition: the dirty share of its cleanable
    bytes below the high watermark (3 decimals: the view is re-sent when it changes)."""
    lg = r.log
    if not lg.config.compact:
        return None
    return round(lg.cleaning_status(r.high_watermark).dirty_ratio, 3)


class ClusterView:
    """This broker's copy of the controller's view, and the partition states built from it."""

    def __init__(self, node_id: int, replicas: Mapping[tuple[str, int], Replica]) -> None:
        self.node_id = node_id
        self._replicas = replicas
        self.partitions: dict[tuple[str, int], PartitionView] = {}
        #: Brokers the controller heard from lately (empty until the first answer).
        self.live: set[int] = set()
        self.version = 0

    def apply(self, resp: Mapping[str, Any]) -> None:
        """Adopt a heartbeat answer from the controller leader (it sends the view when it changed)."""
        if "parts" in resp:
            self.partitions = dict(PartitionView.from_wire(item) for item in resp["parts"])
            self.live = set(resp.get("live", ()))
            self.version = resp["version"]

    def leader_of(self, topic: TopicInfo, partition: int) -> int | None:
        return self.partition_state(topic, partition).leader

    def partition_state(self, topic: TopicInfo, partition: int) -> PartitionState:
        """Leader, ISR and offsets of a partition: first-hand if we lead it, else the view.

        A view entry of another topic id (the topic was deleted and created again) is
        ignored; so is a local replica of an older topic of the same name that is still
        being removed.
        """
        key = (topic.name, partition)
        reps = topic.replicas[partition]
        r = self._replicas.get(key)
        if r is not None and r.topic_id not in (None, topic.topic_id):
            r = None
        if r is not None and r.is_leader:
            lg = r.log
            return PartitionState(partition, self.node_id, r.node.term, reps, r.in_sync_replicas(),
                                  lg.log_start_offset, lg.log_end_offset, r.high_watermark, dirty_ratio(r))
        v = self.partitions.get(key)
        if v is not None and v.topic_id != topic.topic_id:
            v = None
        leader: int | None = None
        epoch = -1
        if v is not None:
            leader, epoch = v.leader, v.epoch
        if r is not None and r.node.leader is not None and r.node.term >= epoch:
            # First-hand: this broker's own replica follows that leader in that term.
            leader, epoch = r.node.leader, r.node.term
        if v is not None:
            return PartitionState(partition, leader, epoch, reps, v.isr if leader == v.leader else [],
                                  v.log_start_offset, v.log_end_offset, v.high_watermark, v.dirty_ratio)
        return PartitionState(partition, leader, r.node.term if r is not None else -1, reps, [])

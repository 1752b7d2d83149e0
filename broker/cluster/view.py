"""The cluster view every broker holds: who leads each partition, which brokers are alive.

Leadership and liveness are soft state (``docs/decisions.md``, "Cluster"): the controller
leader collects them from the brokers' heartbeats and answers each heartbeat with what
changed in the view since the version that broker holds (the whole view when it holds none
of this controller's, see :class:`ViewHistory`); every broker adopts it here, so any broker
can say who leads any partition. A view can be a moment old; a client that reaches a stale leader gets
``NOT_LEADER`` naming the current one, which comes first-hand from the partition's own Raft
group.

Entries carry the **topic id**: a topic deleted and created again under the same name is a
different topic, and what was known of the old one (its leader, its epochs, its offsets)
must never be taken for the new one's.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
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


#: Changed view entries the controller remembers, to answer a heartbeat with a delta. A
#: broker further behind than this gets the whole view (so does one of another controller).
VIEW_CHANGES_KEPT = 65_536


class ViewHistory:
    """Which view entries changed at which version: what the controller leader answers
    a heartbeat with is the entries changed since the version that broker holds.

    Sending the whole view whenever it changed cost the controller and every broker in
    proportion to the partitions, four times a second per broker, as long as anything moved
    (5,000 partitions: 60,000 entries a second built, encoded, decoded and adopted while
    leaders moved), which is exactly when a busy cluster can least afford it.

    A version is ``[epoch, n]``: the epoch is the controller leader's term, so a version
    handed out by another controller (or by this one in an earlier term) is never taken for
    one of this history, and its holder gets the whole view. Bounded: the last
    ``VIEW_CHANGES_KEPT`` changes; a holder of a version older than those gets everything.
    """

    __slots__ = ("_changes", "_floor", "epoch", "n")

    def __init__(self, epoch: int = -1) -> None:
        self.epoch = epoch
        self.n = 0
        #: The oldest version a delta can be computed from.
        self._floor = 0
        self._changes: deque[tuple[int, tuple[str, int]]] = deque()

    @property
    def version(self) -> list[int]:
        return [self.epoch, self.n]

    def restart(self, epoch: int) -> None:
        """A new term of the controller: versions of the old one are not diffed against."""
        self.epoch = epoch
        self.n += 1
        self._floor = self.n
        self._changes.clear()

    def record(self, keys: Iterable[tuple[str, int]]) -> None:
        """A new version in which ``keys`` changed (added, updated or removed)."""
        self.n += 1
        changes = self._changes
        for key in keys:
            if len(changes) >= VIEW_CHANGES_KEPT:
                self._floor = changes.popleft()[0]
            changes.append((self.n, key))

    def changed_since(self, version: object, limit: int) -> set[tuple[str, int]] | None:
        """The keys changed after ``version``; None when that cannot be told (another epoch,
        too old, not a version) or when more than ``limit`` changed (the whole view is then
        no bigger than the delta)."""
        if not (isinstance(version, list) and len(version) == 2 and version[0] == self.epoch
                and isinstance(version[1], int) and self._floor <= version[1] <= self.n):
            return None
        since = version[1]
        keys: set[tuple[str, int]] = set()
        for n, key in reversed(self._changes):
            if n <= since:
                break
            keys.add(key)
            if len(keys) > limit:
                return None
        return keys


class ClusterView:
    """This broker's copy of the controller's view, and the partition states built from it."""

    def __init__(self, node_id: int, replicas: Mapping[tuple[str, int], Replica]) -> None:
        self.node_id = node_id
        self._replicas = replicas
        self.partitions: dict[tuple[str, int], PartitionView] = {}
        #: Brokers the controller heard from lately (empty until the first answer).
        self.live: set[int] = set()
        #: The controller's version of the view held here (see ViewHistory), None: none.
        self.version: Any = None

    def apply(self, resp: Mapping[str, Any]) -> None:
        """Adopt a heartbeat answer from the controller leader: nothing when the view did not
        change, the entries that changed (and those gone) when it says ``delta``, else the
        whole view."""
        if "parts" not in resp:
            return
        if resp.get("delta"):
            partitions = self.partitions
            partitions.update(PartitionView.from_wire(item) for item in resp["parts"])
            for t, p in resp.get("gone", ()):
                partitions.pop((t, p), None)
        else:
            self.partitions = dict(PartitionView.from_wire(item) for item in resp["parts"])
        self.live = set(resp.get("live", ()))
        self.version = resp.get("view")

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

"""How far every replica of a compacted partition has cleaned, and the minimum each must respect.

Each replica compacts its own log, but a tombstone may be dropped only below an offset that
*every* replica of the partition has cleaned past (``removable_offset``, see
``docs/compaction.md``): a replica that has cleaned past an offset has already dropped every
older value of each key with a record below it, so none of them can bring a deleted key back
once its tombstone is gone. Otherwise a follower that had not fetched a tombstone yet would
receive, from its leader's cleaned log, an empty batch in its place, and keep the value it
deleted for ever.

The channel is the controller heartbeat (``docs/decisions.md``, "Compaction in the broker"):

* every broker reports, in its heartbeat, the ``cleaned_offset`` of each compacted replica it
  holds (followers too): the changed ones, or all of them when the controller asks
  (``cleaned_full``: a new controller leader starts with an empty table) and after a failed
  heartbeat;
* the controller leader keeps the last report per (partition, broker) in :class:`CleanedOffsets`
  and answers each broker, when the table changed, with the minimum over the partition's
  assigned replicas for every compacted partition that broker holds. A replica with no report
  (its broker never reported to this controller, or it is down since before the controller
  took over) makes the minimum 0; one that is down keeps its last report. Either way it holds
  the minimum back, and tombstone removal pauses until it returns, as Redpanda's does;
* every broker keeps the answer in :class:`RemovableOffsets`, which the cleaner asks.

Reports are keyed by topic id: a topic deleted and created again under the same name starts
from nothing. The controller's table is soft state, rebuilt after a controller failover from
the full reports it asks for; until then the minimum of a partition is 0.

A minimum that is out of date (a replica's cleaned offset went down since: its checkpoint was
lost, recovery cut its log, its disk was replaced) is still safe: once every replica *has*
cleaned past an offset, no replica holds a value older than a record below it any more, and a
replica that starts again from less can only copy from replicas that hold none. What matters
is that the minimum was true once, which a report guarantees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from strata.broker.core.types import GroupKey

if TYPE_CHECKING:
    from strata.broker.cluster.metadata import MetadataImage
    from strata.broker.replication.replica import Replica


class CleanedOffsets:
    """The controller leader's table of reports, and the per-partition minimum it hands out."""

    def __init__(self) -> None:
        #: broker -> (topic, partition) -> (topic id, cleaned offset it last reported)
        self.reports: dict[int, dict[GroupKey, tuple[int, int]]] = {}
        #: Brokers that sent a full report to this controller leader, in this term.
        self._full_from: set[int] = set()
        self._term = -1
        #: Bumped whenever a report changes: brokers that know an older version get the
        #: minimums again. Sent as ``[term, n]``, so two controller leaders never share one.
        self._changes = 0

    def handle(self, term: int, bid: int, req: Mapping[str, Any], image: MetadataImage) -> dict[str, Any]:
        """Take broker ``bid``'s report from its heartbeat ``req``; the fields to add to the answer."""
        if term != self._term:
            # A new term of the controller group: what an earlier leadership of this broker
            # collected may be stale (another broker led meanwhile), so start again.
            self._term = term
            self.reports.clear()
            self._full_from.clear()
            self._changes = 0
        items = req.get("cleaned")
        if items is not None:
            mine = self.reports.setdefault(bid, {})
            if req.get("cleaned_full"):
                self._full_from.add(bid)
                fresh = {(t, p): (tid, off) for t, p, tid, off in items}
                if fresh != mine:
                    self.reports[bid] = fresh
                    self._changes += 1
            else:
                for t, p, tid, off in items:
                    if mine.get((t, p)) != (tid, off):
                        mine[(t, p)] = (tid, off)
                        self._changes += 1
        version = [self._term, self._changes]
        out: dict[str, Any] = {}
        if bid not in self._full_from:
            out["cleaned_full"] = True
        if req.get("known_removable") != version:
            out["removable"] = self.removable_for(bid, image)
            out["removable_version"] = version
        return out

    def minimum(self, key: GroupKey, topic_id: int, replicas: Iterable[int]) -> int:
        """The offset below which every replica in ``replicas`` has cleaned (0 if one never said)."""
        low: int | None = None
        for b in replicas:
            got = self.reports.get(b, {}).get(key)
            if got is None or got[0] != topic_id:
                return 0
            low = got[1] if low is None else min(low, got[1])
        return low or 0

    def removable_for(self, bid: int, image: MetadataImage) -> list[list[Any]]:
        """``[topic, partition, topic id, removable offset]`` for each partition broker ``bid``
        reported as compacted."""
        out: list[list[Any]] = []
        for (t, p), (tid, _) in self.reports.get(bid, {}).items():
            topic = image.topics.get(t)
            if topic is None or topic.topic_id != tid or p >= topic.partitions:
                continue
            out.append([t, p, tid, self.minimum((t, p), tid, topic.replicas[p])])
        return out


class RemovableOffsets:
    """A broker's side: what it reports, and the minimums the controller answered with."""

    def __init__(self, replicas: Mapping[GroupKey, Replica]) -> None:
        self._replicas = replicas
        #: What the controller acknowledged last: (topic id, cleaned offset) per partition.
        self._acked: dict[GroupKey, tuple[int, int]] = {}
        self._full = True
        self._version: list[int] | None = None
        self._removable: dict[GroupKey, tuple[int, int]] = {}

    def request_fields(self) -> dict[str, Any]:
        """The heartbeat's report: changed cleaned offsets of compacted replicas (or all)."""
        items = []
        full = self._full
        for key, r in self._replicas.items():
            tid = r.topic_id
            if tid is None or not r.log.config.compact:
                continue
            got = (tid, r.log.cleaned_offset)
            if full or self._acked.get(key) != got:
                items.append([key[0], key[1], got[0], got[1]])
        return {"cleaned": items, "cleaned_full": full, "known_removable": self._version}

    def answered(self, req: Mapping[str, Any], resp: Mapping[str, Any]) -> None:
        """The controller took ``req``'s report and answered ``resp``."""
        if req.get("cleaned_full"):
            self._acked.clear()
        for t, p, tid, off in req.get("cleaned", ()):
            self._acked[(t, p)] = (tid, off)
        self._full = bool(resp.get("cleaned_full"))
        if "removable" in resp:
            self._removable = {(t, p): (tid, off) for t, p, tid, off in resp["removable"]}
            self._version = resp.get("removable_version")

    def failed(self) -> None:
        """A heartbeat went unanswered: the controller may have changed, so report everything."""
        self._full = True

    def removable_offset(self, key: GroupKey, topic_id: int | None) -> int:
        """Tombstones of ``key``'s log may go below this offset (0 until the controller said)."""
        got = self._removable.get(key)
        if got is None or got[0] != topic_id:
            return 0
        return got[1]

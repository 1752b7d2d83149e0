"""The controller: cluster metadata as a Raft log, liveness, and the authoritative cluster view.

* **Metadata** (brokers, topics, assignments, configs, producer-id blocks) is a log of
  msgpack records in the partition ``__cluster_metadata-0``, replicated by a Raft group over
  the voter brokers. Topic creation is a commit of that log; every broker applies committed
  records to its :class:`MetadataImage` and starts or stops the replicas it is assigned.
* **Liveness and leadership** are soft state: every broker sends the controller leader a
  heartbeat every ``HEARTBEAT_S`` with its address and the partitions it leads (topic id,
  leader epoch, in-sync replicas, offsets). The controller leader answers with what changed
  in the view since the version that broker holds (every broker adopts it, see :mod:`.view`),
  so any broker can answer a Metadata request about any partition.
* **Preferred leaders**: the controller leader asks a partition's leader to hand leadership
  to the first replica in its assignment when that broker is alive and in sync again.

Every broker runs a ``Controller``; only the controller group's leader makes decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from strata.broker.cluster.cleaning import CleanedOffsets
from strata.broker.cluster.configs import (
    ConfigValue,
    check_topic_configs,
    cluster_config_def,
    config_ops,
    parse_topic_configs,
    topic_config_def,
)
from strata.broker.cluster.metadata import (
    METADATA_TOPIC,
    OFFSETS_TOPIC,
    MetadataImage,
    decode_record,
    encode_record,
)
from strata.broker.cluster.view import PartitionView, ViewHistory
from strata.client.errors import ErrorCode, StrataError, error_for
from strata.client.records import RecordBatchBuilder, decode_batches
from strata.client.tasks import TaskOwner

if TYPE_CHECKING:
    from strata.broker.replication.replica import Replica

log = logging.getLogger("strata.broker.controller")

HEARTBEAT_S = 0.25
#: A broker not heard from for this long is considered down: Kafka's default
#: ``broker.session.timeout.ms`` (9 s), counted in the controller's liveness clock, which
#: stands still while the controller itself is starved (see ``docs/decisions.md``,
#: "A broker's session").
SESSION_TIMEOUT_S = 9.0
#: How often the controller leader looks for partitions away from their preferred leader.
PREFERRED_CHECK_S = 5.0
#: How long a metadata write may wait for its commit.
PROPOSE_TIMEOUT_S = 10.0


@dataclass(slots=True, frozen=True)
class ControllerSettings:
    """The broker settings the controller decides with."""

    node_id: int
    voters: list[int]
    max_partitions_per_topic: int
    offsets_partitions: int
    #: ``default.replication.factor`` when the cluster has none set: -1 = min(3, voters).
    default_replication_factor: int = -1
    #: ``num.partitions`` when the cluster has none set.
    default_partitions: int = 1


class Controller:
    """Runs on every broker; only the controller group's leader makes decisions."""

    def __init__(self, settings: ControllerSettings, *, on_change: Callable[[], None], tasks: TaskOwner,
                 liveness_s: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        #: Seconds of the clock brokers' sessions are counted in: the broker's liveness clock
        #: (``ReplicaManager.liveness``), which stands still while this process is starved,
        #: so that a controller that could not read its sockets expires nobody for it.
        self._liveness_s = liveness_s
        self.node_id = settings.node_id
        self.image = MetadataImage()
        self._on_change = on_change
        self._tasks = tasks
        self.replica: Replica | None = None  # of __cluster_metadata-0, set once it is open
        #: The controller leader's soft state: last heartbeat time per broker (liveness clock),
        #: partitions' views.
        self.last_seen: dict[int, float] = {}
        self.partitions: dict[tuple[str, int], PartitionView] = {}
        self.live: set[int] = set()
        self.view_version = 0
        #: Which entries changed at which version, for delta answers (see ViewHistory).
        self.view_history = ViewHistory()
        #: Partition entries sent in heartbeat answers since start (a diagnostic: the cost of
        #: telling brokers about the view grows with it).
        self.view_entries_sent = 0
        self._applied_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._last_preferred_check = time.monotonic()
        self._pending_transfers: dict[int, list[list[Any]]] = {}
        self._pid_next = 0
        self._pid_end = 0
        self._pid_lock = asyncio.Lock()
        self._creating_offsets_topic = False
        #: Compacted replicas' cleaned offsets, and the minimum each partition may drop
        #: tombstones below (reported and answered with the heartbeats).
        self.cleaning = CleanedOffsets()
        #: When this broker last became the controller leader, and a wake-up for each heartbeat
        #: it hears: a new leader knows no broker's liveness until their heartbeats arrive.
        self._leading_since = 0.0
        self._heartbeat_heard = asyncio.Event()

    def leadership_changed(self, replica: Replica) -> None:
        if replica.is_leader:
            self._leading_since = time.monotonic()

    # -- applying the metadata log --------------------------------------------------------

    def on_commit(self, replica: Replica, old_hw: int, new_hw: int) -> None:
        """Apply committed metadata records in [old_hw, new_hw)."""
        offset = max(old_hw, self.image.applied_offset + 1)
        changed = False
        while offset < new_hw:
            sl = replica.log.read(offset, 1 << 20, max_offset=new_hw)
            if sl is None:
                break
            next_offset = offset
            for batch in decode_batches(sl.read_bytes()[: sl.size]):
                next_offset = batch.header.next_offset
                if batch.header.is_control:
                    continue
                for rec in batch.records:
                    if rec.offset <= self.image.applied_offset:
                        continue
                    try:
                        record = decode_record(rec.value or b"")
                    except Exception as exc:
                        log.error("skipping undecodable metadata record at offset %d: %s", rec.offset, exc)
                        continue
                    self.image.apply(rec.offset, record)
                    changed = True
            if next_offset <= offset:
                break
            offset = next_offset
        self.image.applied_offset = max(self.image.applied_offset, offset - 1)
        still = []
        for off, fut in self._applied_waiters:
            if self.image.applied_offset >= off:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((off, fut))
        self._applied_waiters = still
        if changed:
            self._forget_views_of_gone_topics()
            self._on_change()

    async def wait_applied(self, offset: int, timeout_s: float) -> None:
        if self.image.applied_offset >= offset:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._applied_waiters.append((offset, fut))
        async with asyncio.timeout(timeout_s):
            await fut

    def caught_up(self) -> bool:
        """Has this broker applied the metadata log as far as its leader has committed it?

        A broker that just started knows no topic until it has replayed the log: it must not
        answer "unknown topic" (or an empty topic list) for topics that exist, so until then
        the core answers a retriable error.
        """
        r = self.replica
        if r is None or r.node.leader is None or r.high_watermark <= 0:
            return False
        return self.image.applied_offset + 1 >= r.high_watermark

    def require_caught_up(self) -> None:
        if not self.caught_up():
            raise error_for(ErrorCode.LEADER_NOT_AVAILABLE,
                            f"broker {self.node_id} is still loading the cluster metadata; retry shortly")

    # -- proposing (controller leader only) -----------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.replica is not None and self.replica.is_leader

    @property
    def leader_id(self) -> int | None:
        return self.replica.node.leader if self.replica is not None else None

    def require_leader(self) -> Replica:
        r = self.replica
        if r is None or not r.is_leader:
            leader = self.leader_id
            raise error_for(
                ErrorCode.NOT_CONTROLLER,
                f"broker {self.node_id} is not the controller"
                + (f"; broker {leader} is" if leader is not None else "; no controller is elected yet"),
                controller=-1 if leader is None else leader,
            )
        return r

    async def propose(self, records: list[dict[str, Any]], timeout_s: float = PROPOSE_TIMEOUT_S) -> int:
        """Commit metadata records and wait until this broker applied them; returns the last offset."""
        r = self.require_leader()
        b = RecordBatchBuilder()
        now = int(time.time() * 1000)
        for rec in records:
            b.append(now, None, encode_record(rec), [])
        _, last = await r.propose(b.build())
        try:
            await r.wait_committed(last, timeout_s)
            await self.wait_applied(last, timeout_s)
        except TimeoutError:
            raise error_for(ErrorCode.TIMED_OUT,
                            "the controller did not commit the change in time; it may still take effect") from None
        return last

    def live_brokers(self) -> list[int]:
        now = self._liveness_s()
        live = {b for b, t in self.last_seen.items() if now - t < SESSION_TIMEOUT_S}
        live.add(self.node_id)
        return sorted(b for b in live if b in self.settings.voters)

    async def await_live(self, want: int) -> list[int]:
        """The live brokers, once ``want`` of them are, or once this leader has led long enough
        to have heard every live broker's heartbeat.

        A controller elected a moment ago (at a cluster's start, or after a failover) has heard
        only some heartbeats yet; it must not refuse a creation as "only 1 broker is live" in
        that window, nor place replicas on the few brokers it heard first.
        """
        while True:
            live = self.live_brokers()
            left = self._leading_since + SESSION_TIMEOUT_S - time.monotonic()
            if len(live) >= want or left <= 0 or not self.is_leader:
                return live
            self._heartbeat_heard.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await self._heartbeat_heard.wait()

    def default_replication_factor(self) -> int:
        """The cluster's ``default.replication.factor``: set in the metadata, else the broker
        setting, else min(3, brokers)."""
        value = self.image.cluster_configs.get("default.replication.factor")
        if isinstance(value, int) and value > 0:
            return value
        if self.settings.default_replication_factor > 0:
            return self.settings.default_replication_factor
        return min(3, len(self.settings.voters))

    def default_partitions(self) -> int:
        value = self.image.cluster_configs.get("num.partitions")
        return value if isinstance(value, int) and value > 0 else self.settings.default_partitions

    async def validate_topic(self, name: str, partitions: int, rf: int, configs: Mapping[str, object], *,
                             allow_internal: bool = False) -> tuple[int, dict[str, ConfigValue]]:
        """Check a creation on the controller leader; returns the replication factor to use and
        the typed configs."""
        self.require_leader()
        if rf == -1:
            rf = self.default_replication_factor()
        await self.await_live(rf)
        self.image.validate_create(
            name, partitions, rf, self.live_brokers(),
            max_partitions=self.settings.max_partitions_per_topic, allow_internal=allow_internal,
        )
        return rf, parse_topic_configs(configs)

    async def create_topic(self, name: str, partitions: int, rf: int, configs: Mapping[str, object], *,
                           allow_internal: bool = False) -> int:
        """Create a topic; returns the replication factor used (``rf`` -1: the cluster default)."""
        rf, typed = await self.validate_topic(name, partitions, rf, configs, allow_internal=allow_internal)
        replicas = self.image.assign_replicas(partitions, rf, self.live_brokers())
        await self.propose([{"t": "topic", "name": name, "replicas": replicas, "configs": typed}])
        if name not in self.image.topics:
            raise error_for(ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {name!r} was created concurrently")
        return rf

    async def delete_topic(self, name: str) -> None:
        self.require_leader()
        if name not in self.image.topics:
            raise error_for(ErrorCode.UNKNOWN_TOPIC, f"topic {name!r} does not exist")
        if name.startswith("__"):
            raise error_for(ErrorCode.INVALID_TOPIC, f"internal topic {name!r} cannot be deleted")
        await self.propose([{"t": "delete_topic", "name": name}])

    async def validate_partitions(self, name: str, count: int) -> list[list[int]]:
        """The assignments of the partitions to add so that ``name`` has ``count`` in all."""
        self.require_leader()
        topic = self.image.topics.get(name)
        if topic is None:
            raise error_for(ErrorCode.UNKNOWN_TOPIC, f"topic {name!r} does not exist")
        if name.startswith("__"):
            raise error_for(ErrorCode.INVALID_TOPIC, f"internal topic {name!r} cannot be resized")
        limit = self.settings.max_partitions_per_topic
        if count <= topic.partitions:
            raise error_for(ErrorCode.INVALID_PARTITIONS,
                            f"topic {name!r} has {topic.partitions} partitions; the new count ({count}) must be "
                            "larger (partitions can be added, never removed)")
        if count > limit:
            raise error_for(ErrorCode.INVALID_PARTITIONS, f"partitions must be at most {limit}, got {count}")
        rf = len(topic.replicas[0])
        live = await self.await_live(rf)
        if rf > len(live):
            raise error_for(ErrorCode.INVALID_REPLICATION_FACTOR,
                            f"topic {name!r} has replication factor {rf} but only {len(live)} broker(s) are live")
        return self.image.assign_replicas(count - topic.partitions, rf, live)

    async def create_partitions(self, name: str, count: int) -> None:
        added = await self.validate_partitions(name, count)
        tid = self.image.topics[name].topic_id
        old = self.image.topics[name].partitions
        await self.propose([{"t": "partitions", "name": name, "topic_id": tid, "from": old, "replicas": added}])
        if self.image.topics.get(name) is None or self.image.topics[name].partitions != count:
            raise error_for(ErrorCode.INVALID_PARTITIONS,
                            f"topic {name!r} was changed concurrently; it has "
                            f"{self.image.topics[name].partitions if name in self.image.topics else 0} partitions")

    def validate_topic_config_ops(self, name: str, ops: list[tuple[str, str, str | None]]
                                  ) -> tuple[dict[str, ConfigValue], list[str]]:
        """``(set, delete)`` for a topic's incremental config change; raises on a bad key or value."""
        self.require_leader()
        if name not in self.image.topics:
            raise error_for(ErrorCode.UNKNOWN_TOPIC, f"topic {name!r} does not exist")
        to_set, to_delete = config_ops(ops, topic_config_def)
        merged = {k: v for k, v in self.image.topics[name].configs.items() if k not in to_delete}
        check_topic_configs({**merged, **to_set})
        return to_set, to_delete

    async def alter_topic_configs(self, name: str, ops: list[tuple[str, str, str | None]]) -> None:
        to_set, to_delete = self.validate_topic_config_ops(name, ops)
        tid = self.image.topics[name].topic_id
        await self.propose([{"t": "config", "name": name, "topic_id": tid, "configs": to_set,
                             "delete": to_delete}])

    def validate_cluster_config_ops(self, ops: list[tuple[str, str, str | None]]
                                    ) -> tuple[dict[str, ConfigValue], list[str]]:
        self.require_leader()
        return config_ops(ops, cluster_config_def)

    async def alter_cluster_configs(self, ops: list[tuple[str, str, str | None]]) -> None:
        to_set, to_delete = self.validate_cluster_config_ops(ops)
        await self.propose([{"t": "cluster_config", "configs": to_set, "delete": to_delete}])

    async def allocate_producer_id(self) -> int:
        """Producer ids come from blocks the controller commits, so no two brokers or terms reuse one."""
        self.require_leader()
        async with self._pid_lock:
            if self._pid_next >= self._pid_end:
                await self.propose([{"t": "pid_block", "broker": self.node_id}])
                start, size = self.image.producer_id_blocks[self.node_id]
                self._pid_next, self._pid_end = start, start + size
            pid = self._pid_next
            self._pid_next += 1
            return pid

    def ensure_offsets_topic(self) -> None:
        """On the controller leader: create ``__consumer_offsets`` once enough brokers are up,
        or make it compacted if an earlier version created it with the delete policy."""
        if not self.is_leader or self._creating_offsets_topic:
            return
        topic = self.image.topics.get(OFFSETS_TOPIC)
        if topic is None:
            self._creating_offsets_topic = True
            self._tasks.spawn(self._create_offsets_topic(), name="create-offsets-topic")
        elif topic.configs.get("cleanup.policy", "delete") == "delete":
            self._creating_offsets_topic = True
            self._tasks.spawn(self._compact_offsets_topic(), name="compact-offsets-topic")

    async def _compact_offsets_topic(self) -> None:
        """An offsets topic from before compaction: its coordinators re-wrote live offsets to
        outrun time retention; now the cleaner keeps them instead (``docs/groups.md``)."""
        try:
            await self.alter_topic_configs(OFFSETS_TOPIC, [("cleanup.policy", "set", "compact")])
            log.info("%s is now compacted (cleanup.policy=compact)", OFFSETS_TOPIC)
        except StrataError as exc:
            log.warning("could not make %s compacted yet: %s", OFFSETS_TOPIC, exc.message)
        finally:
            self._creating_offsets_topic = False

    async def _create_offsets_topic(self) -> None:
        try:
            rf = min(3, len(self.settings.voters))
            if OFFSETS_TOPIC in self.image.topics or len(self.live_brokers()) < rf:
                return
            # Compacted: each group's latest offsets stay as long as the group does, and what a
            # new coordinator replays does not grow with history (docs/groups.md).
            await self.create_topic(OFFSETS_TOPIC, self.settings.offsets_partitions, rf,
                                    {"cleanup.policy": "compact", "segment.bytes": 16 << 20}, allow_internal=True)
        except StrataError as exc:
            if exc.code != ErrorCode.TOPIC_ALREADY_EXISTS:
                log.warning("could not create %s yet: %s", OFFSETS_TOPIC, exc.message)
        finally:
            self._creating_offsets_topic = False

    # -- heartbeats -----------------------------------------------------------------------

    def handle_heartbeat(self, req: Mapping[str, Any]) -> dict[str, Any]:
        """On the controller leader: record a broker's liveness and leaderships; answer the view."""
        r = self.require_leader()
        bid = req["id"]
        self.last_seen[bid] = self._liveness_s()
        self._heartbeat_heard.set()
        # Heartbeats carry only what changed since the last one this controller answered in
        # this term (see heartbeat.py): a broker whose session is not the current one must
        # send everything again.
        session = [self.node_id, r.node.term]
        resync = not req.get("full") and req.get("session") != session
        if self.view_history.epoch != r.node.term:
            self.view_history.restart(r.node.term)
        changed = False
        touched: list[tuple[str, int]] = []
        topics = self.image.topics
        for item in req.get("parts", ()):
            key, new = PartitionView.from_wire(item)
            topic = topics.get(key[0])
            if topic is None or topic.topic_id != new.topic_id:
                continue  # a deleted topic, or an older topic of that name
            new = replace(new, leader=bid)  # what a broker reports is what it leads
            cur = self.partitions.get(key)
            if (cur is None or cur.topic_id != new.topic_id or new.epoch >= cur.epoch) and cur != new:
                self.partitions[key] = new
                touched.append(key)
        for t, p, tid in req.get("lost", ()):
            cur = self.partitions.get((t, p))
            if cur is not None and cur.leader == bid and cur.topic_id == tid:
                self.partitions[(t, p)] = replace(cur, leader=None, isr=[])
                touched.append((t, p))
        live = set(self.live_brokers())
        if live != self.live:
            self.live = live
            changed = True
        if changed or touched:
            self.view_version += 1
            self.view_history.record(touched)
        registered = self.image.brokers.get(bid)
        endpoints = {name: (h, p) for name, (h, p) in (req.get("endpoints") or {}).items()}
        if registered is None or (registered.host, registered.port, registered.metrics_port,
                                  registered.endpoints) != (req["host"], req["port"], req.get("mport"), endpoints):
            self._tasks.spawn(self._register(bid, req["host"], req["port"], req.get("mport"), endpoints),
                              name=f"register-broker-{bid}")
        resp: dict[str, Any] = {"version": self.view_version, "controller": self.node_id, "session": session}
        if resync:
            resp["resync"] = True
        self._answer_view(req, resp)
        self._plan_preferred_transfers()
        resp["transfers"] = self._pending_transfers.pop(bid, [])
        resp.update(self.cleaning.handle(self.require_leader().node.term, bid, req, self.image))
        return resp

    def _answer_view(self, req: Mapping[str, Any], resp: dict[str, Any]) -> None:
        """Add the view to a heartbeat answer: nothing if the broker holds this version, the
        entries changed since its version if this history can tell them, else all of it."""
        history = self.view_history
        if "view" not in req:
            # A broker of an earlier build: the whole view when its number is not ours.
            if req.get("known_version") != self.view_version:
                resp["live"] = sorted(self.live)
                resp["parts"] = [v.to_wire(t, p) for (t, p), v in self.partitions.items()]
                self.view_entries_sent += len(resp["parts"])
            return
        version = history.version
        resp["view"] = version
        known = req["view"]
        if known == version:
            return
        resp["live"] = sorted(self.live)
        partitions = self.partitions
        keys = history.changed_since(known, limit=len(partitions) // 2)
        if keys is None:
            resp["parts"] = [v.to_wire(t, p) for (t, p), v in partitions.items()]
        else:
            resp["delta"] = True
            resp["parts"] = [v.to_wire(*k) for k in keys if (v := partitions.get(k)) is not None]
            resp["gone"] = [list(k) for k in keys if k not in partitions]
        self.view_entries_sent += len(resp["parts"])

    async def _register(self, bid: int, host: str, port: int, mport: int | None,
                        endpoints: dict[str, tuple[str, int]]) -> None:
        try:
            await self.propose([{"t": "broker", "id": bid, "host": host, "port": port, "mport": mport,
                                 "endpoints": {k: list(v) for k, v in endpoints.items()}}])
        except StrataError as exc:
            log.info("registering broker %d: %s (retried on its next heartbeat)", bid, exc.message)

    def _forget_views_of_gone_topics(self) -> None:
        """Drop what the view says of partitions whose topic is gone or was created anew."""
        topics = self.image.topics
        stale = [k for k, v in self.partitions.items()
                 if (t := topics.get(k[0])) is None or t.topic_id != v.topic_id or k[1] >= t.partitions]
        for k in stale:
            del self.partitions[k]
        if stale:
            self.view_version += 1
            self.view_history.record(stale)

    def _plan_preferred_transfers(self) -> None:
        """Every PREFERRED_CHECK_S: which leaders should hand a partition back to its preferred
        replica (the first in its assignment), now alive and in sync again. Each broker gets
        its list with its next heartbeat answer."""
        now = time.monotonic()
        if now - self._last_preferred_check < PREFERRED_CHECK_S:
            return
        self._last_preferred_check = now
        plan: dict[int, list[list[Any]]] = {}
        live = self.live
        for name, topic in self.image.topics.items():
            if name == METADATA_TOPIC:
                continue
            for p, reps in enumerate(topic.replicas):
                v = self.partitions.get((name, p))
                if v is None or v.leader is None or not reps or v.topic_id != topic.topic_id:
                    continue
                pref = reps[0]
                if v.leader != pref and pref in live and pref in v.isr:
                    plan.setdefault(v.leader, []).append([name, p, pref])
        self._pending_transfers = plan

"""The controller: cluster metadata as a Raft log, liveness, and the cluster view.

* **Metadata** (brokers, topics, assignments, configs, producer-id blocks) is a log of
  msgpack records in the partition ``__cluster_metadata-0``, replicated by a Raft group over
  the voter brokers. Topic creation is a commit of that log; every broker applies committed
  records to its :class:`MetadataImage` and starts or stops the replicas it is assigned.
* **Liveness and leadership** are soft state: every broker sends the controller leader a
  heartbeat every ``HEARTBEAT_S`` with its address and the partitions it leads (leader epoch,
  in-sync replicas, offsets). The controller leader answers with the whole cluster view, so
  any broker can answer a Metadata request about any partition. A view can be a moment old;
  a client that reaches a stale leader gets ``NOT_LEADER`` with the current leader's id.
* **Preferred leaders**: the controller leader asks a partition's leader to hand leadership
  to the first replica in its assignment when that broker is alive and in sync again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from strata.broker.cluster.metadata import (
    METADATA_TOPIC,
    MetadataError,
    MetadataImage,
    decode_record,
    encode_record,
)
from strata.client.errors import ErrorCode

log = logging.getLogger("strata.broker.cluster.controller")

HEARTBEAT_S = 0.25
#: A broker not heard from for this long is considered down.
SESSION_TIMEOUT_S = 3.0
#: How often the controller leader looks for partitions away from their preferred leader.
PREFERRED_CHECK_S = 5.0


@dataclass(slots=True)
class PartitionView:
    leader: int | None
    epoch: int
    isr: list[int]
    log_start_offset: int
    log_end_offset: int
    high_watermark: int


class Controller:
    """Runs on every broker; only the controller group's leader makes decisions."""

    def __init__(self, broker) -> None:
        self.broker = broker
        self.node_id = broker.config.node_id
        self.image = MetadataImage()
        self.replica = None  # the Replica of __cluster_metadata-0, set by the broker
        #: The controller leader's soft state: last heartbeat time per broker, partitions' views.
        self.last_seen: dict[int, float] = {}
        self.view: dict[tuple[str, int], PartitionView] = {}
        self.live: set[int] = set()
        self.view_version = 0
        self._applied_waiters: list[tuple[int, asyncio.Future]] = []
        self._last_preferred_check = time.monotonic()
        self._pending_transfers: dict[int, list] = {}
        self._pid_next = 0
        self._pid_end = 0
        self._pid_lock = asyncio.Lock()

    # -- applying the metadata log --------------------------------------------------------

    def on_commit(self, replica, old_hw: int, new_hw: int) -> None:
        """Apply committed metadata records in [old_hw, new_hw)."""
        from strata.client.records import decode_batches

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
            self.broker.metadata_changed()

    async def wait_applied(self, offset: int, timeout_s: float) -> None:
        if self.image.applied_offset >= offset:
            return
        fut = asyncio.get_running_loop().create_future()
        self._applied_waiters.append((offset, fut))
        async with asyncio.timeout(timeout_s):
            await fut

    # -- proposing (controller leader only) -----------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self.replica is not None and self.replica.is_leader

    @property
    def leader_id(self) -> int | None:
        return self.replica.node.leader if self.replica is not None else None

    def require_leader(self) -> None:
        if not self.is_leader:
            leader = self.leader_id
            raise MetadataError(
                ErrorCode.NOT_CONTROLLER,
                f"broker {self.node_id} is not the controller"
                + (f"; broker {leader} is" if leader is not None else "; no controller is elected yet"),
            )

    async def propose(self, records: list[dict], timeout_s: float = 10.0) -> int:
        """Commit metadata records and wait until this broker applied them; returns the last offset."""
        from strata.client.records import RecordBatchBuilder

        self.require_leader()
        b = RecordBatchBuilder()
        now = int(time.time() * 1000)
        for r in records:
            b.append(now, None, encode_record(r), [])
        _, last = await self.replica.propose(b.build())
        await self.replica.wait_committed(last, timeout_s)
        await self.wait_applied(last, timeout_s)
        return last

    def live_brokers(self) -> list[int]:
        now = time.monotonic()
        live = {b for b, t in self.last_seen.items() if now - t < SESSION_TIMEOUT_S}
        live.add(self.node_id)
        return sorted(b for b in live if b in self.broker.config.peers)

    async def create_topic(self, name: str, partitions: int, rf: int, configs: dict, *,
                           allow_internal: bool = False) -> None:
        self.require_leader()
        live = self.live_brokers()
        clean = self.image.validate_create(
            name, partitions, rf, configs, live,
            max_partitions=self.broker.config.limits.max_partitions_per_topic, allow_internal=allow_internal,
        )
        replicas = self.image.assign_replicas(partitions, rf, live)
        await self.propose([{"t": "topic", "name": name, "replicas": replicas, "configs": clean}])
        if name not in self.image.topics:
            raise MetadataError(ErrorCode.TOPIC_ALREADY_EXISTS, f"topic {name!r} was created concurrently")

    async def delete_topic(self, name: str) -> None:
        self.require_leader()
        if name not in self.image.topics:
            raise MetadataError(ErrorCode.UNKNOWN_TOPIC, f"topic {name!r} does not exist")
        if name.startswith("__"):
            raise MetadataError(ErrorCode.INVALID_TOPIC, f"internal topic {name!r} cannot be deleted")
        await self.propose([{"t": "delete_topic", "name": name}])

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

    # -- heartbeats -----------------------------------------------------------------------

    def handle_heartbeat(self, req: dict) -> dict:
        """On the controller leader: record a broker's liveness and leaderships; answer the view."""
        self.require_leader()
        bid = req["id"]
        self.last_seen[bid] = time.monotonic()
        changed = False
        for item in req.get("parts", ()):
            topic, p, epoch, isr, lso, leo, hw = item
            key = (topic, p)
            cur = self.view.get(key)
            if cur is None or epoch >= cur.epoch:
                new = PartitionView(bid, epoch, list(isr), lso, leo, hw)
                if cur != new:
                    self.view[key] = new
                    changed = True
        for key in req.get("lost", ()):
            cur = self.view.get(tuple(key))
            if cur is not None and cur.leader == bid:
                self.view[tuple(key)] = PartitionView(None, cur.epoch, [], cur.log_start_offset,
                                                      cur.log_end_offset, cur.high_watermark)
                changed = True
        live = set(self.live_brokers())
        if live != self.live:
            self.live = live
            changed = True
        if changed:
            self.view_version += 1
        registered = self.image.brokers.get(bid)
        if registered is None or (registered.host, registered.port, registered.metrics_port) != (
            req["host"], req["port"], req.get("mport")
        ):
            self.broker.spawn(self.propose([{"t": "broker", "id": bid, "host": req["host"], "port": req["port"],
                                             "mport": req.get("mport")}]))
        resp = {"version": self.view_version, "controller": self.node_id}
        if req.get("known_version") != self.view_version:
            resp["live"] = sorted(self.live)
            resp["parts"] = [
                [t, p, v.leader, v.epoch, v.isr, v.log_start_offset, v.log_end_offset, v.high_watermark]
                for (t, p), v in self.view.items()
            ]
        self._plan_preferred_transfers()
        resp["transfers"] = self._pending_transfers.pop(bid, [])
        return resp

    def _plan_preferred_transfers(self) -> None:
        """Every PREFERRED_CHECK_S: which leaders should hand a partition back to its preferred
        replica (the first in its assignment), now alive and in sync again. Each broker gets
        its list with its next heartbeat answer."""
        now = time.monotonic()
        if now - self._last_preferred_check < PREFERRED_CHECK_S:
            return
        self._last_preferred_check = now
        plan: dict[int, list] = {}
        live = self.live
        for name, topic in self.image.topics.items():
            if name == METADATA_TOPIC:
                continue
            for p, reps in enumerate(topic.replicas):
                v = self.view.get((name, p))
                if v is None or v.leader is None or not reps:
                    continue
                pref = reps[0]
                if v.leader != pref and pref in live and pref in v.isr:
                    plan.setdefault(v.leader, []).append([name, p, pref])
        self._pending_transfers = plan

    def apply_view(self, resp: dict) -> None:
        """On every broker: adopt the controller's answer."""
        if "parts" in resp:
            self.view = {
                (t, p): PartitionView(leader, epoch, list(isr), lso, leo, hw)
                for t, p, leader, epoch, isr, lso, leo, hw in resp["parts"]
            }
            self.live = set(resp.get("live", ()))
            self.view_version = resp["version"]

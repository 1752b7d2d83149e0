"""The group coordinator: consumer groups and their committed offsets, kept in ``__consumer_offsets``.

A group belongs to partition ``murmur2(group) % N`` of ``__consumer_offsets`` (see
:mod:`strata.broker.groups.offsets_log`), and its coordinator is whichever broker leads that
partition. Each partition this broker leads is a :class:`Shard`: on gaining leadership the
shard waits for its own term to commit (so everything earlier is committed too), replays the
partition into memory — the latest offset per (group, topic, partition) and the latest state
of each group — and only then answers (``COORDINATOR_LOAD_IN_PROGRESS`` until then). On losing
leadership the shard is dropped: the next leader loads it from the same replicated log.

Writes go through Raft like any produce: a commit, a membership change or a deletion is
proposed to the partition and answered only once committed, and applied to the in-memory
state (for offsets) only then, so OFFSET_FETCH never shows what could still be lost. Group
membership (the pure state machine of :mod:`strata.broker.groups.group_state`) changes in memory
first and is persisted as one record per change; the heartbeat that caused it is answered
after that record commits, so a member never holds an epoch or an assignment a new
coordinator would not know.

Retention: ``__consumer_offsets`` is retained by time like any topic, but a latest offset must
be kept forever. Every minute each shard re-writes the entries (offsets and group records)
whose record is older than half the retention time, so a live key's latest record is always
in a segment too young to be deleted; segments that hold only superseded records age out.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from strata.broker.cluster.metadata import OFFSETS_TOPIC
from strata.broker.frontends.native.connection import Response
from strata.broker.groups.group_state import (
    TP,
    Group,
    GroupError,
    HeartbeatRequest,
    topic_lists_to_tps,
    tps_to_topic_lists,
    validate_group_id,
)
from strata.broker.groups.offsets_log import (
    GroupRecord,
    OffsetRecord,
    OffsetValue,
    build_batches,
    decode_records,
    group_key,
    group_value,
    offset_key,
    offset_value,
    partition_for_group,
)
from strata.broker.replication.replica import ReplicaError
from strata.client.errors import ErrorCode
from strata.client.protocol import Api

log = logging.getLogger("strata.broker.groups.coordinator")

#: Bounds on what clients can make a coordinator hold.
MAX_GROUPS_PER_COORDINATOR = 100_000
MAX_OFFSETS_PER_GROUP = 100_000
MAX_OFFSETS_PER_COMMIT = 1_000
MAX_METADATA_LEN = 4_096
#: How long a write may wait for Raft to commit before the client hears TIMED_OUT.
WRITE_TIMEOUT_S = 10.0
#: Session expiry and topic-size checks run this often.
SWEEP_INTERVAL_S = 0.05
REFRESH_INTERVAL_S = 60.0
LOAD_READ_BYTES = 1 << 20


@dataclass(slots=True)
class OffsetEntry:
    value: OffsetValue
    written_ms: int  # wall clock of the record that holds it (for the retention refresh)
    log_offset: int  # where it was written: a late-finishing older commit never overwrites a newer one


@dataclass(slots=True)
class Shard:
    """What this broker coordinates for one partition of ``__consumer_offsets`` it leads."""

    partition: int
    replica: object
    term: int
    loaded: bool = False
    groups: dict[str, Group] = field(default_factory=dict)
    offsets: dict[str, dict[TP, OffsetEntry]] = field(default_factory=dict)
    #: The last group record proposed per group (its bytes) and when, to skip writing no-change.
    written: dict[str, tuple[bytes | None, int]] = field(default_factory=dict)
    task: asyncio.Task | None = None


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _err(code: ErrorCode, message: str, **fields) -> Response:
    return Response({"err": int(code), "msg": message, **fields}, [])


class GroupCoordinator:
    def __init__(self, broker) -> None:
        self.broker = broker
        self.shards: dict[int, Shard] = {}
        self._tasks: set[asyncio.Task] = set()
        self._sweeper: asyncio.Task | None = None

    def handlers(self) -> dict:
        """Extra request handlers: {Api: async handler(conn, header, payload) -> Response}."""
        return {
            Api.FIND_COORDINATOR: self.h_find_coordinator,
            Api.GROUP_HEARTBEAT: self.h_heartbeat,
            Api.OFFSET_COMMIT: self.h_offset_commit,
            Api.OFFSET_FETCH: self.h_offset_fetch,
            Api.LIST_GROUPS: self.h_list_groups,
            Api.DESCRIBE_GROUPS: self.h_describe_groups,
            Api.DELETE_GROUPS: self.h_delete_groups,
        }

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop(), name="coordinator-sweep")

    async def stop(self) -> None:
        tasks = [t for t in [self._sweeper, *self._tasks, *(s.task for s in self.shards.values())] if t]
        for t in tasks:
            t.cancel()
        for t in tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):
                pass
        self.shards.clear()

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("coordinator task %s failed", task.get_name(), exc_info=task.exception())

    def leadership_changed(self, replica) -> None:
        """A replica of ``__consumer_offsets`` gained or lost leadership on this broker."""
        p = replica.key[1]
        shard = self.shards.get(p)
        if replica.is_leader:
            term = replica.node.term
            if shard is not None and shard.term == term and shard.replica is replica:
                return
            if shard is not None and shard.task:
                shard.task.cancel()
            shard = Shard(partition=p, replica=replica, term=term)
            self.shards[p] = shard
            shard.task = self._spawn(self._load(shard), f"coordinator-load-{p}")
        elif shard is not None:
            if shard.task:
                shard.task.cancel()
            del self.shards[p]
            log.info("no longer coordinating %s-%d: %d groups handed over", OFFSETS_TOPIC, p, len(shard.groups))

    def on_commit(self, replica, old_hw: int, new_hw: int) -> None:
        """Records in [old_hw, new_hw) of a ``__consumer_offsets`` partition were committed.

        Nothing to do: a leader applies its own writes once they commit, a follower's copy
        is only read when it becomes leader.
        """

    def _current(self, shard: Shard) -> bool:
        r = shard.replica
        return self.shards.get(shard.partition) is shard and r.is_leader and r.node.term == shard.term

    # -- loading -------------------------------------------------------------------------

    async def _load(self, shard: Shard) -> None:
        r = shard.replica
        started = time.monotonic()
        # Our term's first entry (the leader's no-op) is in the log now; once it commits, every
        # entry before it has committed too, and nobody else writes this partition.
        end = r.log.log_end_offset
        while r.high_watermark < end:
            if not self._current(shard):
                return
            await r.wait_for_data(r.high_watermark, 0.5)
        hw = r.high_watermark
        offsets: dict[str, dict[TP, OffsetEntry]] = {}
        groups: dict[str, tuple[dict, int]] = {}
        offset = r.log.log_start_offset
        n = 0
        while offset < hw:
            sl = r.log.read(offset, LOAD_READ_BYTES, max_offset=hw)
            if sl is None:
                break
            data = sl.read_bytes()[: sl.size]
            for rec in decode_records(data):
                n += 1
                if isinstance(rec, OffsetRecord):
                    tps = offsets.setdefault(rec.group, {})
                    if rec.value is None:
                        tps.pop((rec.topic, rec.partition), None)
                    else:
                        tps[(rec.topic, rec.partition)] = OffsetEntry(rec.value, rec.timestamp, -1)
                elif isinstance(rec, GroupRecord):
                    if rec.state is None:
                        groups.pop(rec.group, None)
                    else:
                        groups[rec.group] = (rec.state, rec.timestamp)
            offset = sl.next_offset
            await asyncio.sleep(0)  # a big partition does not stall the broker
            if not self._current(shard):
                return
        now = _now_ms()
        shard.offsets = {g: tps for g, tps in offsets.items() if tps}
        for gid, (state, ts) in groups.items():
            g = Group.from_wire(gid, state)
            g.reset_sessions(now)
            shard.groups[gid] = g
            shard.written[gid] = (None, ts)  # re-written on its first change
        for gid in shard.offsets:
            if gid not in shard.groups:
                shard.groups[gid] = Group(gid)
        shard.loaded = True
        log.info("coordinating %s-%d (term %d): loaded %d groups from %d records in %.2fs",
                 OFFSETS_TOPIC, shard.partition, shard.term, len(shard.groups), n, time.monotonic() - started)

    # -- routing and writes --------------------------------------------------------------

    def _topics(self) -> dict[str, int]:
        return {name: t.partitions for name, t in self.broker.controller.image.topics.items()
                if not name.startswith("__")}

    def _coordinator_of(self, group: str) -> tuple[int, int]:
        """(partition, leader broker id or -1) for ``group``."""
        t = self.broker.controller.image.topics.get(OFFSETS_TOPIC)
        if t is None:
            raise GroupError(ErrorCode.COORDINATOR_NOT_AVAILABLE,
                             f"{OFFSETS_TOPIC} does not exist yet (it is created once enough brokers are up)")
        p = partition_for_group(group, t.partitions)
        st = self.broker.partition_state(OFFSETS_TOPIC, p, t.replicas[p])
        return p, st["leader"]

    def _shard(self, group: str) -> Shard:
        validate_group_id(group)
        p, leader = self._coordinator_of(group)
        shard = self.shards.get(p)
        if shard is None or not self._current(shard):
            hint = f"broker {leader} is" if leader >= 0 and leader != self.broker.node_id else "no broker is known yet"
            raise GroupError(ErrorCode.NOT_COORDINATOR,
                             f"broker {self.broker.node_id} is not the coordinator of group {group!r} "
                             f"({OFFSETS_TOPIC}-{p}); {hint}: send FIND_COORDINATOR again")
        if not shard.loaded:
            raise GroupError(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
                             f"broker {self.broker.node_id} is loading {OFFSETS_TOPIC}-{p}; retry shortly")
        return shard

    async def _write(self, shard: Shard, records: list[tuple[bytes, bytes | None]]) -> tuple[int, int]:
        """Propose records and wait until Raft commits them; (batch's last offset, wall ms)."""
        r = shard.replica
        now = _wall_ms()
        last = -1
        try:
            for batch in build_batches(records, now):
                if not self._current(shard):
                    raise r.not_leader_error()
                _, last = await r.propose(batch)
            await r.wait_committed(last, WRITE_TIMEOUT_S)
        except ReplicaError as exc:
            if exc.code == ErrorCode.NOT_LEADER:
                raise GroupError(ErrorCode.NOT_COORDINATOR,
                                 f"broker {self.broker.node_id} lost the coordination of {OFFSETS_TOPIC}-"
                                 f"{shard.partition} during the write ({exc.message}); find the coordinator "
                                 "and retry") from None
            if exc.code == ErrorCode.TIMED_OUT:
                raise GroupError(ErrorCode.TIMED_OUT, exc.message) from None
            raise GroupError(ErrorCode.COORDINATOR_NOT_AVAILABLE, exc.message) from None
        if not self._current(shard):
            raise GroupError(ErrorCode.NOT_COORDINATOR,
                             f"broker {self.broker.node_id} lost the coordination of {OFFSETS_TOPIC}-"
                             f"{shard.partition}; find the coordinator and retry")
        return last, now

    async def _persist_group(self, shard: Shard, g: Group) -> None:
        """Write the group's state if it changed; forget a group with no members and no offsets."""
        if not g.members and not shard.offsets.get(g.group_id):
            if shard.groups.get(g.group_id) is g:
                del shard.groups[g.group_id]
            prev = shard.written.pop(g.group_id, None)
            if prev is not None:
                await self._write(shard, [(group_key(g.group_id), None)])
            return
        value = group_value(g.to_wire())
        prev = shard.written.get(g.group_id)
        if prev is not None and prev[0] == value:
            return
        shard.written[g.group_id] = (value, _wall_ms())
        await self._write(shard, [(group_key(g.group_id), value)])

    # -- handlers ------------------------------------------------------------------------

    async def h_find_coordinator(self, conn, hdr: dict, payload) -> Response:
        group = hdr["group"]
        try:
            validate_group_id(group)
            p, leader = self._coordinator_of(group)
        except GroupError as exc:
            return _err(exc.code, exc.message)
        if leader < 0:
            return _err(ErrorCode.COORDINATOR_NOT_AVAILABLE,
                        f"{OFFSETS_TOPIC}-{p} (group {group!r}) has no leader right now; retry shortly")
        addr = self.broker._broker_address(leader)
        if addr is None:
            return _err(ErrorCode.COORDINATOR_NOT_AVAILABLE, f"the address of broker {leader} is not known yet")
        return Response({"coordinator": leader, "host": addr[0], "port": addr[1], "partition": p}, [])

    async def h_heartbeat(self, conn, hdr: dict, payload) -> Response:
        group = hdr["group"]
        try:
            shard = self._shard(group)
            g = shard.groups.get(group)
            epoch = hdr["member_epoch"]
            if g is None:
                if epoch == -1:
                    return Response({"member_id": hdr["member_id"], "member_epoch": -1}, [])
                if epoch != 0:
                    raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID,
                                     f"group {group!r} has no member {hdr['member_id']!r} (the group does not "
                                     "exist); rejoin with member epoch 0")
                if sum(len(s.groups) for s in self.shards.values()) >= MAX_GROUPS_PER_COORDINATOR:
                    raise GroupError(ErrorCode.GROUP_MAX_SIZE_REACHED,
                                     f"broker {self.broker.node_id} coordinates {MAX_GROUPS_PER_COORDINATOR} "
                                     "groups already")
                g = Group(group)
            owned = hdr.get("owned")
            req = HeartbeatRequest(
                member_id=hdr["member_id"], member_epoch=epoch, subscribed=hdr.get("subscribed"),
                assignor=hdr.get("assignor"), owned=None if owned is None else topic_lists_to_tps(owned),
                session_timeout_ms=hdr.get("session_timeout_ms", -1),
                rebalance_timeout_ms=hdr.get("rebalance_timeout_ms", -1),
                client_id=getattr(conn, "client_id", ""), host=getattr(conn, "remote", "") or "")
            before = len(g.members)
            res = g.heartbeat(req, _now_ms(), self._topics(), lambda: uuid.uuid4().hex)
            if group not in shard.groups and g.members:
                shard.groups[group] = g
            if len(g.members) != before:
                log.info("group %r: %s %s (epoch %d, %d members)", group, res.member_id,
                         "left" if epoch == -1 else "joined", g.epoch, len(g.members))
            await self._persist_group(shard, g)
        except GroupError as exc:
            return _err(exc.code, exc.message)
        fields = {"member_id": res.member_id, "member_epoch": res.member_epoch, "heartbeat_ms": res.heartbeat_ms}
        if res.member_epoch >= 0:
            fields["assignment"] = tps_to_topic_lists(res.assignment)
        return Response(fields, [])

    async def h_offset_commit(self, conn, hdr: dict, payload) -> Response:
        group, member_id, epoch = hdr["group"], hdr["member_id"], hdr["member_epoch"]
        wants = hdr["partitions"]
        if len(wants) > MAX_OFFSETS_PER_COMMIT:
            return _err(ErrorCode.INVALID_REQUEST,
                        f"commit at most {MAX_OFFSETS_PER_COMMIT} partitions per request, not {len(wants)}")
        try:
            shard = self._shard(group)
            g = shard.groups.get(group)
            admin = member_id == "" and epoch == -1
            errs: dict[TP, GroupError] = {}
            if admin:
                if g is not None and g.members:
                    raise GroupError(ErrorCode.NON_EMPTY_GROUP,
                                     f"group {group!r} has {len(g.members)} live members; offsets can only be "
                                     "reset while no consumer of the group is running")
            elif g is None:
                raise GroupError(ErrorCode.GROUP_ID_NOT_FOUND,
                                 f"group {group!r} does not exist; join it first (or commit as admin with an "
                                 "empty member_id and member epoch -1)")
            else:
                errs = g.check_commit(member_id, epoch, [(w["topic"], w["partition"]) for w in wants])
            topics = self._topics()
            have = shard.offsets.get(group, {})
            records: list[tuple[bytes, bytes | None]] = []
            accepted: list[tuple[TP, OffsetValue]] = []
            new_keys = 0
            for w in wants:
                tp = (w["topic"], w["partition"])
                if tp in errs:
                    continue
                n = topics.get(tp[0])
                if n is None:
                    errs[tp] = GroupError(ErrorCode.UNKNOWN_TOPIC, f"topic {tp[0]!r} does not exist")
                elif not 0 <= tp[1] < n:
                    errs[tp] = GroupError(ErrorCode.UNKNOWN_PARTITION,
                                          f"topic {tp[0]!r} has partitions 0-{n - 1}, not {tp[1]}")
                elif w["offset"] < 0:
                    errs[tp] = GroupError(ErrorCode.INVALID_REQUEST,
                                          f"offset {w['offset']} for {tp[0]}-{tp[1]} is negative")
                elif len(w.get("metadata", "")) > MAX_METADATA_LEN:
                    errs[tp] = GroupError(ErrorCode.INVALID_REQUEST,
                                          f"commit metadata is limited to {MAX_METADATA_LEN} characters")
                elif tp not in have and len(have) + new_keys >= MAX_OFFSETS_PER_GROUP:
                    errs[tp] = GroupError(ErrorCode.INVALID_REQUEST,
                                          f"group {group!r} already has {MAX_OFFSETS_PER_GROUP} committed partitions")
                else:
                    new_keys += tp not in have
                    v = OffsetValue(w["offset"], w.get("leader_epoch", -1), w.get("metadata", ""))
                    accepted.append((tp, v))
                    records.append((offset_key(group, *tp), offset_value(v)))
            if records:
                last, wall = await self._write(shard, records)
                tps = shard.offsets.setdefault(group, {})
                for tp, v in accepted:
                    cur = tps.get(tp)
                    if cur is None or cur.log_offset < last:
                        tps[tp] = OffsetEntry(v, wall, last)
                if group not in shard.groups:
                    shard.groups[group] = Group(group)
        except GroupError as exc:
            return _err(exc.code, exc.message, partitions=[])
        out = []
        for w in wants:
            tp = (w["topic"], w["partition"])
            e = errs.get(tp)
            out.append({"topic": tp[0], "partition": tp[1], **({"err": int(e.code), "msg": e.message} if e else {})})
        return Response({"partitions": out}, [])

    async def h_offset_fetch(self, conn, hdr: dict, payload) -> Response:
        group = hdr["group"]
        try:
            shard = self._shard(group)
        except GroupError as exc:
            return _err(exc.code, exc.message, partitions=[])
        have = shard.offsets.get(group, {})
        wants = hdr.get("partitions")
        tps = sorted(have) if wants is None else [(w["topic"], w["partition"]) for w in wants]
        out = []
        for tp in tps:
            e = have.get(tp)
            out.append({"topic": tp[0], "partition": tp[1], "offset": e.value.offset if e else -1,
                        "leader_epoch": e.value.leader_epoch if e else -1, "metadata": e.value.metadata if e else ""})
        return Response({"partitions": out}, [])

    async def h_list_groups(self, conn, hdr: dict, payload) -> Response:
        states = set(hdr.get("states") or ())
        out = []
        for shard in self.shards.values():
            if not shard.loaded or not self._current(shard):
                continue
            for gid, g in shard.groups.items():
                st = g.state
                if not states or st in states:
                    out.append({"group": gid, "state": st})
        out.sort(key=lambda x: x["group"])
        return Response({"groups": out}, [])

    def _high_watermark(self, topic: str, p: int) -> int:
        t = self.broker.controller.image.topics.get(topic)
        if t is None or not 0 <= p < t.partitions:
            return -1
        return self.broker.partition_state(topic, p, t.replicas[p])["high_watermark"]

    def _offsets_with_lag(self, shard: Shard, group: str) -> list[dict]:
        out = []
        for (t, p), e in sorted(shard.offsets.get(group, {}).items()):
            hw = self._high_watermark(t, p)
            lag = max(0, hw - e.value.offset) if hw >= 0 else -1
            out.append({"topic": t, "partition": p, "committed": e.value.offset, "high_watermark": hw, "lag": lag})
        return out

    async def h_describe_groups(self, conn, hdr: dict, payload) -> Response:
        out = []
        for group in hdr["groups"]:
            try:
                shard = self._shard(group)
                g = shard.groups.get(group)
                if g is None:
                    raise GroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"group {group!r} does not exist")
            except GroupError as exc:
                out.append({"group": group, "err": int(exc.code), "msg": exc.message,
                            "state": "dead" if exc.code == ErrorCode.GROUP_ID_NOT_FOUND else ""})
                continue
            members = [{"member_id": m.member_id, "client_id": m.client_id, "host": m.host,
                        "member_epoch": m.member_epoch, "subscribed": list(m.subscribed),
                        "assignment": tps_to_topic_lists(m.assigned)} for m in g.members.values()]
            out.append({"group": group, "state": g.state, "epoch": g.epoch, "assignor": g.assignor,
                        "members": members, "offsets": self._offsets_with_lag(shard, group)})
        return Response({"groups": out}, [])

    async def h_delete_groups(self, conn, hdr: dict, payload) -> Response:
        out = []
        for group in hdr["groups"]:
            try:
                shard = self._shard(group)
                g = shard.groups.get(group)
                if g is None:
                    raise GroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"group {group!r} does not exist")
                if g.members:
                    raise GroupError(ErrorCode.NON_EMPTY_GROUP,
                                     f"group {group!r} has {len(g.members)} live members; stop its consumers "
                                     "(or wait for their sessions to expire) before deleting it")
                records: list[tuple[bytes, bytes | None]] = [(group_key(group), None)]
                records.extend((offset_key(group, t, p), None) for t, p in sorted(shard.offsets.get(group, {})))
                await self._write(shard, records)
                shard.offsets.pop(group, None)  # tombstoned, whatever happened meanwhile
                if shard.groups.get(group) is g and not g.members:
                    del shard.groups[group]
                    shard.written.pop(group, None)
                elif group in shard.groups:
                    # A member joined while the tombstones were written: keep its state written.
                    shard.written.pop(group, None)
                    await self._persist_group(shard, shard.groups[group])
                log.info("group %r deleted (%d committed offsets)", group, len(records) - 1)
                out.append({"group": group})
            except GroupError as exc:
                out.append({"group": group, "err": int(exc.code), "msg": exc.message})
        return Response({"groups": out}, [])

    # -- metrics -------------------------------------------------------------------------

    def lag_snapshot(self) -> list[tuple[str, str, int, int, int, int]]:
        """(group, topic, partition, committed, high_watermark, lag) for every committed offset of
        every group this broker coordinates; lag is -1 when the high watermark is unknown."""
        out = []
        for shard in list(self.shards.values()):
            if not shard.loaded:
                continue
            for group in list(shard.offsets):
                for d in self._offsets_with_lag(shard, group):
                    out.append((group, d["topic"], d["partition"], d["committed"], d["high_watermark"], d["lag"]))
        return out

    # -- timers --------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        """Expire dead members, follow topic size changes, refresh entries before retention."""
        next_refresh = time.monotonic() + REFRESH_INTERVAL_S
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = _now_ms()
            topics = self._topics()
            for shard in list(self.shards.values()):
                if not shard.loaded or not self._current(shard):
                    continue
                for g in list(shard.groups.values()):
                    gone = g.expire(now, topics)
                    for mid, why in gone:
                        log.info("group %r: removed member %s: %s (epoch %d)", g.group_id, mid, why, g.epoch)
                    if gone or g.refresh_topics(topics):
                        self._spawn(self._persist_quietly(shard, g), f"persist-{g.group_id}")
            if time.monotonic() >= next_refresh:
                next_refresh = time.monotonic() + REFRESH_INTERVAL_S
                for shard in list(self.shards.values()):
                    if shard.loaded and self._current(shard):
                        self._spawn(self._refresh(shard), f"refresh-{shard.partition}")

    async def _persist_quietly(self, shard: Shard, g: Group) -> None:
        try:
            await self._persist_group(shard, g)
        except GroupError as exc:
            log.warning("group %r: could not persist its state: %s", g.group_id, exc.message)

    def _retention_ms(self) -> int:
        t = self.broker.controller.image.topics.get(OFFSETS_TOPIC)
        configs: Mapping = t.configs if t is not None else {}
        v = configs.get("retention.ms", self.broker.config.retention_ms)
        return int(v)

    async def _refresh(self, shard: Shard) -> None:
        """Re-write entries whose record is older than half the retention time."""
        retention = self._retention_ms()
        if retention < 0:
            return
        cutoff = _wall_ms() - retention // 2
        records: list[tuple[bytes, bytes | None]] = []
        stale_offsets: list[tuple[str, TP, OffsetEntry]] = []
        for group, tps in shard.offsets.items():
            for tp, e in tps.items():
                if e.written_ms < cutoff:
                    stale_offsets.append((group, tp, e))
                    records.append((offset_key(group, *tp), offset_value(e.value)))
        stale_groups = [gid for gid, (_, ts) in shard.written.items() if ts < cutoff and gid in shard.groups]
        for gid in stale_groups:
            records.append((group_key(gid), group_value(shard.groups[gid].to_wire())))
        if not records:
            return
        try:
            last, wall = await self._write(shard, records)
        except GroupError as exc:
            log.warning("%s-%d: could not refresh %d entries before retention: %s", OFFSETS_TOPIC,
                        shard.partition, len(records), exc.message)
            return
        for _group, _tp, e in stale_offsets:
            e.written_ms = wall
        for gid in stale_groups:
            v, _ = shard.written.get(gid, (None, 0))
            shard.written[gid] = (v, wall)
        log.info("%s-%d: re-wrote %d entries ahead of retention", OFFSETS_TOPIC, shard.partition, len(records))

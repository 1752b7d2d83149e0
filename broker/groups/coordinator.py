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

Retention: ``__consumer_offsets`` is compacted (``cleanup.policy=compact``): the log cleaner
keeps each key's latest record, drops the ones a later commit superseded, and moves the log
start past the empty head (``strata.broker.replication.cleaning``), so what a new coordinator
replays grows with the live groups, not with history. Offsets go when their group goes:
deleted (``delete_groups``), or expired (Kafka's ``offsets.retention.minutes``): an empty group's
offsets are tombstoned once it has been empty for the retention time; offsets committed
without a group (admin commits) once their commit is that old; and a live group's offsets of
topics no member subscribes to any more, once their commit is that old.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from strata.broker.cluster.metadata import OFFSETS_TOPIC
from strata.broker.config import INTERNAL
from strata.broker.core.auth import (
    CLUSTER,
    Authorizer,
    Operation,
    Principal,
    Resource,
    ResourceType,
)
from strata.broker.groups.classic import ClassicGroup, is_classic
from strata.broker.groups.classic_ops import ClassicOps
from strata.broker.groups.group_state import (
    TP,
    Group,
    GroupError,
    HeartbeatRequest,
    HeartbeatResult,
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
from strata.client.admin.types import consumer_lag
from strata.client.errors import ErrorCode, StrataError
from strata.client.tasks import TaskOwner

if TYPE_CHECKING:
    from strata.broker.cluster.controller import Controller
    from strata.broker.cluster.view import ClusterView
    from strata.broker.replication.replica import Replica

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
#: Offsets past their retention are looked for this often (Kafka's
#: ``offsets.retention.check.interval.ms`` is 10 minutes).
EXPIRE_INTERVAL_S = 60.0
LOAD_READ_BYTES = 1 << 20


@dataclass(slots=True)
class OffsetEntry:
    value: OffsetValue
    written_ms: int  # wall clock of the record that holds it: the commit time (for expiry)
    log_offset: int  # where it was written: a late-finishing older commit never overwrites a newer one


@dataclass(slots=True, frozen=True)
class CoordinatorAddress:
    node_id: int
    host: str
    port: int
    #: The ``__consumer_offsets`` partition that holds the group.
    partition: int


@dataclass(slots=True, frozen=True)
class OffsetCommit:
    topic: str
    partition: int
    offset: int
    leader_epoch: int = -1
    metadata: str = ""


@dataclass(slots=True, frozen=True)
class CommittedOffset:
    topic: str
    partition: int
    #: -1 when the group has committed nothing for the partition.
    offset: int
    leader_epoch: int = -1
    metadata: str = ""


@dataclass(slots=True, frozen=True)
class OffsetLag:
    topic: str
    partition: int
    committed: int
    high_watermark: int
    #: -1 when the partition's high watermark is not known right now.
    lag: int


@dataclass(slots=True, frozen=True)
class GroupDescription:
    """A group as either door describes it. ``classic`` groups are Kafka's classic protocol
    (``members`` are ``ClassicMember``, ``epoch`` is the generation, ``assignor`` the chosen
    protocol); the others Strata's native one (``Member``, member epochs, a broker-side assignor)."""

    group: str
    error: StrataError | None = None
    state: str = ""
    epoch: int = -1
    assignor: str = ""
    members: list[Any] = field(default_factory=list)
    offsets: list[OffsetLag] = field(default_factory=list)
    classic: bool = False
    protocol_type: str = "consumer"


@dataclass(slots=True)
class Shard:
    """What this broker coordinates for one partition of ``__consumer_offsets`` it leads."""

    partition: int
    replica: Replica
    term: int
    loaded: bool = False
    #: Native groups (``Group``) and Kafka's classic ones (``ClassicGroup``): one id, one kind.
    groups: dict[str, Group | ClassicGroup] = field(default_factory=dict)
    offsets: dict[str, dict[TP, OffsetEntry]] = field(default_factory=dict)
    #: The last group record proposed per group (its bytes) and when, to skip writing no-change.
    written: dict[str, tuple[bytes | None, int]] = field(default_factory=dict)
    #: When each group without members became empty (wall ms; from its group record on load).
    empty_since: dict[str, int] = field(default_factory=dict)
    #: Commits being written per group: its offsets are not expired meanwhile.
    pending_commits: dict[str, int] = field(default_factory=dict)
    task: asyncio.Task[None] | None = None


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


def _wall_ms() -> int:
    return int(time.time() * 1000)


def _group(group: str) -> Resource:
    return Resource(ResourceType.GROUP, group)


class GroupCoordinator(ClassicOps):
    """The groups whose ``__consumer_offsets`` partition this broker leads."""

    def __init__(
        self,
        *,
        node_id: int,
        controller: Controller,
        view: ClusterView,
        broker_address: Callable[[int, str], tuple[str, int] | None],
        offsets_retention_ms: int,
        authorizer: Authorizer,
    ) -> None:
        self.node_id = node_id
        self._controller = controller
        self._view = view
        self._address = broker_address
        self._offsets_retention_ms = offsets_retention_ms
        self._authz = authorizer
        self.shards: dict[int, Shard] = {}
        self._stopping = False
        self._tasks = TaskOwner(log, "group coordinator")

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._tasks.spawn(self._sweep_loop(), name="coordinator-sweep")

    async def stop(self) -> None:
        self._stopping = True
        for shard in self.shards.values():
            if shard.task is not None:
                shard.task.cancel()
        await self._tasks.close()
        self.shards.clear()

    def leadership_changed(self, replica: Replica) -> None:
        """A replica of ``__consumer_offsets`` gained or lost leadership on this broker."""
        if self._stopping:
            return  # shutting down: the next leader loads the groups
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
            shard.task = self._tasks.spawn(self._load(shard), name=f"coordinator-load-{p}")
        elif shard is not None:
            if shard.task:
                shard.task.cancel()
            self._fail_classic_waiters(shard)
            del self.shards[p]
            log.info("no longer coordinating %s-%d: %d groups handed over", OFFSETS_TOPIC, p, len(shard.groups))

    def on_commit(self, replica: Replica, old_hw: int, new_hw: int) -> None:
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
        groups: dict[str, tuple[dict[str, Any], int]] = {}
        offset = r.log.log_start_offset
        n = 0
        while offset < hw:
            # (The cleaner may move the log start past an empty head meanwhile: nothing to read there.)
            offset = max(offset, r.log.log_start_offset)
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
            g: Group | ClassicGroup
            if is_classic(state):
                g = ClassicGroup.from_wire(gid, state, now)
            else:
                g = Group.from_wire(gid, state)
                g.reset_sessions(now)
            shard.groups[gid] = g
            shard.written[gid] = (None, ts)  # re-written on its first change
            if not g.members:
                shard.empty_since[gid] = ts  # its last record was written when it became empty
        for gid in shard.offsets:
            if gid not in shard.groups:
                shard.groups[gid] = Group(gid)
        shard.loaded = True
        log.info("coordinating %s-%d (term %d): loaded %d groups from %d records in %.2fs",
                 OFFSETS_TOPIC, shard.partition, shard.term, len(shard.groups), n, time.monotonic() - started)

    # -- routing and writes --------------------------------------------------------------

    def _topics(self) -> dict[str, int]:
        return {name: t.partitions for name, t in self._controller.image.topics.items()
                if not name.startswith("__")}

    def _coordinator_of(self, group: str) -> tuple[int, int]:
        """(partition, leader broker id or -1) for ``group``."""
        t = self._controller.image.topics.get(OFFSETS_TOPIC)
        if t is None:
            raise GroupError(ErrorCode.COORDINATOR_NOT_AVAILABLE,
                             f"{OFFSETS_TOPIC} does not exist yet (it is created once enough brokers are up)")
        p = partition_for_group(group, t.partitions)
        leader = self._view.leader_of(t, p)
        return p, -1 if leader is None else leader

    def _shard(self, group: str) -> Shard:
        validate_group_id(group)
        p, leader = self._coordinator_of(group)
        shard = self.shards.get(p)
        if shard is None or not self._current(shard):
            hint = f"broker {leader} is" if leader >= 0 and leader != self.node_id else "no broker is known yet"
            raise GroupError(ErrorCode.NOT_COORDINATOR,
                             f"broker {self.node_id} is not the coordinator of group {group!r} "
                             f"({OFFSETS_TOPIC}-{p}); {hint}: send FIND_COORDINATOR again")
        if not shard.loaded:
            raise GroupError(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
                             f"broker {self.node_id} is loading {OFFSETS_TOPIC}-{p}; retry shortly")
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
        except StrataError as exc:
            if exc.code == ErrorCode.NOT_LEADER:
                raise GroupError(ErrorCode.NOT_COORDINATOR,
                                 f"broker {self.node_id} lost the coordination of {OFFSETS_TOPIC}-"
                                 f"{shard.partition} during the write ({exc.message}); find the coordinator "
                                 "and retry") from None
            if exc.code == ErrorCode.TIMED_OUT:
                raise GroupError(ErrorCode.TIMED_OUT, exc.message) from None
            raise GroupError(ErrorCode.COORDINATOR_NOT_AVAILABLE, exc.message) from None
        if not self._current(shard):
            raise GroupError(ErrorCode.NOT_COORDINATOR,
                             f"broker {self.node_id} lost the coordination of {OFFSETS_TOPIC}-"
                             f"{shard.partition}; find the coordinator and retry")
        return last, now

    async def _persist_group(self, shard: Shard, g: Group | ClassicGroup) -> None:
        """Write the group's state if it changed; forget a group with no members and no offsets."""
        if not g.members and not shard.offsets.get(g.group_id):
            if shard.groups.get(g.group_id) is g:
                del shard.groups[g.group_id]
                shard.empty_since.pop(g.group_id, None)
            prev = shard.written.pop(g.group_id, None)
            if prev is not None:
                await self._write(shard, [(group_key(g.group_id), None)])
            return
        if g.members:
            shard.empty_since.pop(g.group_id, None)
        else:
            shard.empty_since.setdefault(g.group_id, _wall_ms())
        value = group_value(g.to_wire())
        prev = shard.written.get(g.group_id)
        if prev is not None and prev[0] == value:
            return
        shard.written[g.group_id] = (value, _wall_ms())
        await self._write(shard, [(group_key(g.group_id), value)])

    # -- the operations (typed; every front-end calls these) --------------------------------

    def find_coordinator(self, principal: Principal, group: str, listener: str = INTERNAL) -> CoordinatorAddress:
        """Where ``group``'s coordinator is: the leader of its ``__consumer_offsets`` partition."""
        self._authz.authorize(principal, Operation.DESCRIBE, _group(group))
        validate_group_id(group)
        p, leader = self._coordinator_of(group)
        if leader < 0:
            raise GroupError(ErrorCode.COORDINATOR_NOT_AVAILABLE,
                             f"{OFFSETS_TOPIC}-{p} (group {group!r}) has no leader right now; retry shortly")
        addr = self._address(leader, listener)
        if addr is None:
            raise GroupError(ErrorCode.COORDINATOR_NOT_AVAILABLE, f"the address of broker {leader} is not known yet")
        return CoordinatorAddress(leader, addr[0], addr[1], p)

    async def heartbeat(self, principal: Principal, group: str, req: HeartbeatRequest) -> HeartbeatResult:
        """A member's heartbeat (KIP-848 style): join, keep alive, reconcile, or leave (epoch -1)."""
        self._authz.authorize(principal, Operation.READ, _group(group))
        shard = self._shard(group)
        found = shard.groups.get(group)
        if isinstance(found, ClassicGroup):
            if found.members:
                raise self._mixed(group, "Kafka's classic protocol (a Kafka consumer group)")
            del shard.groups[group]  # an empty classic group, offsets only: becomes a native one
            found = None
        g = found
        epoch = req.member_epoch
        if g is None:
            if epoch == -1:
                return HeartbeatResult(req.member_id, -1, 0, [])
            if epoch != 0:
                raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID,
                                 f"group {group!r} has no member {req.member_id!r} (the group does not "
                                 "exist); rejoin with member epoch 0")
            if sum(len(s.groups) for s in self.shards.values()) >= MAX_GROUPS_PER_COORDINATOR:
                raise GroupError(ErrorCode.GROUP_MAX_SIZE_REACHED,
                                 f"broker {self.node_id} coordinates {MAX_GROUPS_PER_COORDINATOR} groups already")
            g = Group(group)
        before = len(g.members)
        res = g.heartbeat(req, _now_ms(), self._topics(), lambda: uuid.uuid4().hex)
        if group not in shard.groups and g.members:
            shard.groups[group] = g
        if len(g.members) != before:
            log.info("group %r: %s %s (epoch %d, %d members)", group, res.member_id,
                     "left" if epoch == -1 else "joined", g.epoch, len(g.members))
        await self._persist_group(shard, g)
        return res

    async def commit_offsets(self, principal: Principal, group: str, member_id: str, member_epoch: int,
                             offsets: list[OffsetCommit], *, generation: int | None = None,
                             instance_id: str | None = None) -> dict[TP, StrataError]:
        """Commit offsets through Raft; returns the partitions refused, with why.

        Native door: ``member_id`` "" with epoch -1 is an admin commit (allowed only while the
        group has no live member). Kafka door (``generation`` given): Kafka's classic rules
        (a member of the current generation, or a consumer outside any group committing with
        generation -1 while the group has no members). Errors for the whole request are raised.
        """
        self._authz.authorize(principal, Operation.READ, _group(group))
        if len(offsets) > MAX_OFFSETS_PER_COMMIT:
            raise GroupError(ErrorCode.INVALID_REQUEST,
                             f"commit at most {MAX_OFFSETS_PER_COMMIT} partitions per request, not {len(offsets)}")
        shard = self._shard(group)
        g = shard.groups.get(group)
        errs: dict[TP, StrataError] = {}
        if generation is not None:
            self.check_classic_commit(group, g, member_id, instance_id, generation)
        elif member_id == "" and member_epoch == -1:
            if g is not None and g.members:
                raise GroupError(ErrorCode.NON_EMPTY_GROUP,
                                 f"group {group!r} has {len(g.members)} live members; offsets can only be "
                                 "reset while no consumer of the group is running")
        elif g is None:
            raise GroupError(ErrorCode.GROUP_ID_NOT_FOUND,
                             f"group {group!r} does not exist; join it first (or commit as admin with an "
                             "empty member_id and member epoch -1)")
        elif isinstance(g, ClassicGroup):
            raise self._mixed(group, "Kafka's classic protocol (a Kafka consumer group)")
        else:
            errs.update(g.check_commit(member_id, member_epoch, [(o.topic, o.partition) for o in offsets]))
        topics = self._topics()
        have = shard.offsets.get(group, {})
        records: list[tuple[bytes, bytes | None]] = []
        accepted: list[tuple[TP, OffsetValue]] = []
        new_keys = 0
        for o in offsets:
            tp = (o.topic, o.partition)
            if tp in errs:
                continue
            try:
                self._authz.authorize(principal, Operation.READ, Resource(ResourceType.TOPIC, o.topic))
            except StrataError as exc:
                errs[tp] = exc
                continue
            n = topics.get(tp[0])
            if n is None:
                errs[tp] = GroupError(ErrorCode.UNKNOWN_TOPIC, f"topic {tp[0]!r} does not exist")
            elif not 0 <= tp[1] < n:
                errs[tp] = GroupError(ErrorCode.UNKNOWN_PARTITION, f"topic {tp[0]!r} has partitions 0-{n - 1}, not {tp[1]}")
            elif o.offset < 0:
                errs[tp] = GroupError(ErrorCode.INVALID_REQUEST, f"offset {o.offset} for {tp[0]}-{tp[1]} is negative")
            elif len(o.metadata) > MAX_METADATA_LEN:
                errs[tp] = GroupError(ErrorCode.INVALID_REQUEST,
                                      f"commit metadata is limited to {MAX_METADATA_LEN} characters")
            elif tp not in have and len(have) + new_keys >= MAX_OFFSETS_PER_GROUP:
                errs[tp] = GroupError(ErrorCode.INVALID_REQUEST,
                                      f"group {group!r} already has {MAX_OFFSETS_PER_GROUP} committed partitions")
            else:
                new_keys += tp not in have
                v = OffsetValue(o.offset, o.leader_epoch, o.metadata)
                accepted.append((tp, v))
                records.append((offset_key(group, *tp), offset_value(v)))
        if records:
            # While this commit is being written, the group's offsets are not expired: a
            # tombstone proposed after it would delete what it commits.
            shard.pending_commits[group] = shard.pending_commits.get(group, 0) + 1
            try:
                last, wall = await self._write(shard, records)
            finally:
                left = shard.pending_commits.pop(group) - 1
                if left:
                    shard.pending_commits[group] = left
            tps = shard.offsets.setdefault(group, {})
            for tp, v in accepted:
                cur = tps.get(tp)
                if cur is None or cur.log_offset < last:
                    tps[tp] = OffsetEntry(v, wall, last)
            if group not in shard.groups:
                shard.groups[group] = Group(group)
        return errs

    def fetch_offsets(self, principal: Principal, group: str, partitions: list[TP] | None) -> list[CommittedOffset]:
        """The group's committed offsets for ``partitions`` (None: every partition it has)."""
        self._authz.authorize(principal, Operation.DESCRIBE, _group(group))
        shard = self._shard(group)
        have = shard.offsets.get(group, {})
        tps = sorted(have) if partitions is None else partitions
        out = []
        for tp in tps:
            e = have.get(tp)
            if e is None:
                out.append(CommittedOffset(tp[0], tp[1], -1))
            else:
                out.append(CommittedOffset(tp[0], tp[1], e.value.offset, e.value.leader_epoch, e.value.metadata))
        return out

    def list_groups(self, principal: Principal, states: set[str] | None = None) -> list[tuple[str, str]]:
        """``(group, state)`` of every group this broker coordinates (each broker lists its own)."""
        self._authz.authorize(principal, Operation.DESCRIBE, CLUSTER)
        out = []
        for shard in self.shards.values():
            if not shard.loaded or not self._current(shard):
                continue
            for gid, g in shard.groups.items():
                st = g.state
                if not states or st in states:
                    out.append((gid, st))
        out.sort()
        return out

    def list_group_kinds(self, principal: Principal) -> list[tuple[str, str, bool]]:
        """``(group, state, classic)`` of every group this broker coordinates."""
        self._authz.authorize(principal, Operation.DESCRIBE, CLUSTER)
        out: list[tuple[str, str, bool]] = []
        for shard in self.shards.values():
            if shard.loaded and self._current(shard):
                out.extend((gid, g.state, isinstance(g, ClassicGroup)) for gid, g in shard.groups.items())
        out.sort()
        return out

    def describe_groups(self, principal: Principal, groups: list[str]) -> list[GroupDescription]:
        out = []
        for group in groups:
            try:
                self._authz.authorize(principal, Operation.DESCRIBE, _group(group))
                shard = self._shard(group)
                g = shard.groups.get(group)
                if g is None:
                    raise GroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"group {group!r} does not exist")
            except StrataError as exc:
                out.append(GroupDescription(group, exc, "dead" if exc.code == ErrorCode.GROUP_ID_NOT_FOUND else ""))
                continue
            if isinstance(g, ClassicGroup):
                out.append(GroupDescription(group, None, g.state, g.generation, g.protocol_name or "",
                                            list(g.members.values()), self._offsets_with_lag(shard, group),
                                            classic=True, protocol_type=g.protocol_type or "consumer"))
            else:
                out.append(GroupDescription(group, None, g.state, g.epoch, g.assignor, list(g.members.values()),
                                            self._offsets_with_lag(shard, group)))
        return out

    async def delete_groups(self, principal: Principal, groups: list[str]) -> dict[str, StrataError | None]:
        """Delete each group and tombstone its offsets (only groups without live members)."""
        out: dict[str, StrataError | None] = {}
        for group in groups:
            try:
                self._authz.authorize(principal, Operation.DELETE, _group(group))
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
                out[group] = None
            except StrataError as exc:
                out[group] = exc
        return out

    async def delete_offsets(self, principal: Principal, group: str, partitions: list[TP]
                             ) -> dict[TP, StrataError | None]:
        """Forget the group's committed offsets for ``partitions`` (Kafka's OffsetDelete): not
        for a topic the group's live members consume."""
        self._authz.authorize(principal, Operation.DELETE, _group(group))
        shard = self._shard(group)
        g = shard.groups.get(group)
        if g is None:
            raise GroupError(ErrorCode.GROUP_ID_NOT_FOUND, f"group {group!r} does not exist")
        if isinstance(g, ClassicGroup):
            subscribed = {t for m in g.members.values() for t in m.subscribed}
        else:
            subscribed = g.subscribed_topics()
        have = shard.offsets.get(group, {})
        out: dict[TP, StrataError | None] = {}
        records: list[tuple[bytes, bytes | None]] = []
        for tp in partitions:
            if tp[0] in subscribed:
                out[tp] = GroupError(ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC,
                                     f"members of group {group!r} consume {tp[0]!r}")
                continue
            out[tp] = None
            if tp in have:
                records.append((offset_key(group, *tp), None))
        if records:
            await self._write(shard, records)
            for (t, p), err in out.items():
                if err is None:
                    have.pop((t, p), None)
        return out

    def _high_watermark(self, topic: str, p: int) -> int:
        t = self._controller.image.topics.get(topic)
        if t is None or not 0 <= p < t.partitions:
            return -1
        return self._view.partition_state(t, p).high_watermark

    def _offsets_with_lag(self, shard: Shard, group: str) -> list[OffsetLag]:
        out = []
        for (t, p), e in sorted(shard.offsets.get(group, {}).items()):
            hw = self._high_watermark(t, p)
            out.append(OffsetLag(t, p, e.value.offset, hw, consumer_lag(e.value.offset, hw)))
        return out

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
                    out.append((group, d.topic, d.partition, d.committed, d.high_watermark, d.lag))
        return out

    # -- timers --------------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        """Expire dead members, follow topic size changes, expire offsets past their retention."""
        next_expiry = time.monotonic() + EXPIRE_INTERVAL_S
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            now = _now_ms()
            topics = self._topics()
            for shard in list(self.shards.values()):
                if not shard.loaded or not self._current(shard):
                    continue
                for g in list(shard.groups.values()):
                    if isinstance(g, ClassicGroup):
                        self.expire_classic(shard, g, now)
                        continue
                    gone = g.expire(now, topics)
                    for mid, why in gone:
                        log.info("group %r: removed member %s: %s (epoch %d)", g.group_id, mid, why, g.epoch)
                    if gone or g.refresh_topics(topics):
                        self._tasks.spawn(self._persist_quietly(shard, g), name=f"persist-{g.group_id}")
            if time.monotonic() >= next_expiry:
                next_expiry = time.monotonic() + EXPIRE_INTERVAL_S
                for shard in list(self.shards.values()):
                    if shard.loaded and self._current(shard):
                        self._tasks.spawn(self.expire_offsets(shard), name=f"expire-offsets-{shard.partition}")

    async def _persist_quietly(self, shard: Shard, g: Group | ClassicGroup) -> None:
        try:
            await self._persist_group(shard, g)
        except GroupError as exc:
            log.warning("group %r: could not persist its state: %s", g.group_id, exc.message)

    def expired_offsets(self, shard: Shard, now_ms: int) -> dict[str, list[TP]]:
        """The offsets past ``offsets.retention.minutes``, per group (Kafka's rules, KIP-211):

        * a group without members: all of its offsets once it has been empty that long; if
          when it became empty is unknown (offsets committed without ever joining), each
          offset once its commit is that old;
        * a native group with members: its offsets of topics no member subscribes to, once
          their commit is that old; a classic (Kafka protocol) group with members: none (its
          members' subscriptions are opaque bytes of their assignor's protocol).

        A group with a commit being written is left alone this round.
        """
        retention = self._offsets_retention_ms
        out: dict[str, list[TP]] = {}
        for group, tps in shard.offsets.items():
            if shard.pending_commits.get(group):
                continue
            g = shard.groups.get(group)
            if isinstance(g, ClassicGroup) and g.members:
                gone = []  # a classic group's subscriptions are opaque to the broker: kept while it lives
            elif isinstance(g, Group) and g.members:
                subscribed = g.subscribed_topics()
                gone = [tp for tp, e in tps.items() if tp[0] not in subscribed and now_ms - e.written_ms >= retention]
            else:
                since = shard.empty_since.get(group)
                if since is not None:
                    gone = list(tps) if now_ms - since >= retention else []
                else:
                    gone = [tp for tp, e in tps.items() if now_ms - e.written_ms >= retention]
            if gone:
                out[group] = sorted(gone)
        return out

    async def expire_offsets(self, shard: Shard, now_ms: int | None = None) -> int:
        """Tombstone the offsets past their retention (and the groups left with nothing);
        returns how many offsets went."""
        expired = self.expired_offsets(shard, _wall_ms() if now_ms is None else now_ms)
        if not expired:
            return 0
        records: list[tuple[bytes, bytes | None]] = []
        emptied: list[str] = []
        for group, tps in expired.items():
            records.extend((offset_key(group, *tp), None) for tp in tps)
            g = shard.groups.get(group)
            if (g is None or not g.members) and len(tps) == len(shard.offsets.get(group, {})):
                emptied.append(group)
                if group in shard.written:
                    records.append((group_key(group), None))
        try:
            last, _ = await self._write(shard, records)
        except GroupError as exc:
            log.warning("%s-%d: could not expire the offsets of %d groups: %s", OFFSETS_TOPIC, shard.partition,
                        len(expired), exc.message)
            return 0
        n = 0
        for group, tps in expired.items():
            have = shard.offsets.get(group, {})
            for tp in tps:
                e = have.get(tp)
                if e is not None and e.log_offset < last:  # not committed again meanwhile
                    del have[tp]
                    n += 1
            if not have:
                shard.offsets.pop(group, None)
        for group in emptied:
            g = shard.groups.get(group)
            if g is not None and not g.members and group not in shard.offsets:
                del shard.groups[group]
                shard.written.pop(group, None)
                shard.empty_since.pop(group, None)
        log.info("%s-%d: expired %d committed offsets of %d groups (%d groups removed), after %d minutes",
                 OFFSETS_TOPIC, shard.partition, n, len(expired), len(emptied), self._offsets_retention_ms // 60_000)
        return n

"""The group coordinator's operations for Kafka's classic group protocol (JoinGroup,
SyncGroup, Heartbeat, LeaveGroup), over the state machine in :mod:`.classic`.

A mixin of :class:`~strata.broker.groups.coordinator.GroupCoordinator`: it uses the
coordinator's shards, its Raft writes and its clock. A group id belongs to one protocol at a
time: a Kafka consumer group (classic) and a native Strata group of the same name are
refused (``INCONSISTENT_GROUP_PROTOCOL``) while the other one has live members — as Kafka
refuses to mix its classic and consumer protocols — and share their committed offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING

from strata.broker.core.auth import Operation, Principal, Resource, ResourceType
from strata.broker.groups.classic import ClassicGroup, JoinRequest, JoinResult
from strata.broker.groups.group_state import Group, GroupError, validate_group_id
from strata.client.errors import ErrorCode, StrataError

if TYPE_CHECKING:
    from strata.broker.core.auth import Authorizer
    from strata.broker.groups.coordinator import Shard
    from strata.client.tasks import TaskOwner

log = logging.getLogger("strata.broker.groups.classic")

#: A JoinGroup waits for the barrier at most its rebalance timeout plus this.
JOIN_GRACE_S = 5.0


def _now_ms() -> int:
    return int(time.monotonic() * 1000)


class ClassicOps:
    # Provided by GroupCoordinator.
    _authz: Authorizer
    _tasks: TaskOwner
    node_id: int

    def _shard(self, group: str) -> Shard:
        raise NotImplementedError

    async def _persist_group(self, shard: Shard, g: Group | ClassicGroup) -> None:
        raise NotImplementedError

    async def _persist_quietly(self, shard: Shard, g: Group | ClassicGroup) -> None:
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _mixed(group: str, other: str) -> GroupError:
        return GroupError(ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
                          f"group {group!r} has live members using {other}; a group id serves one protocol "
                          "at a time: use another group id")

    def _classic(self, shard: Shard, group: str, *, create: bool) -> ClassicGroup | None:
        g = shard.groups.get(group)
        if isinstance(g, ClassicGroup):
            return g
        if g is not None and g.members:
            raise self._mixed(group, "Strata's native group protocol")
        if not create:
            return None
        # A new group, or one that only holds committed offsets: it becomes a classic group.
        cg = ClassicGroup(group)
        shard.groups[group] = cg
        return cg

    def _fail_classic_waiters(self, shard: Shard) -> None:
        exc = GroupError(ErrorCode.NOT_COORDINATOR,
                         f"broker {self.node_id} is no longer the coordinator; find the coordinator and rejoin")
        for g in shard.groups.values():
            if isinstance(g, ClassicGroup):
                g.fail_all(exc)

    def check_classic_commit(self, group: str, g: Group | ClassicGroup | None, member_id: str,
                             instance_id: str | None, generation: int) -> None:
        if isinstance(g, ClassicGroup):
            g.check_commit(member_id, instance_id, generation)
        elif g is not None and g.members:
            raise self._mixed(group, "Strata's native group protocol")
        elif g is None and generation >= 0:
            # Kafka's answer for a generation of a group that does not exist (4.x).
            raise GroupError(ErrorCode.ILLEGAL_GENERATION,
                             f"group {group!r} does not exist, so it has no generation {generation}; rejoin")
        elif generation >= 0 or member_id:
            raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID,
                             f"group {group!r} has no member {member_id!r} (generation {generation}); rejoin")

    def expire_classic(self, shard: Shard, g: ClassicGroup, now_ms: int) -> None:
        before = (g.state, g.generation)
        gone = g.expire(now_ms)
        for mid in gone:
            log.info("group %r: removed member %s (session or rebalance timeout)", g.group_id, mid)
        if gone or (g.state, g.generation) != before:
            self._tasks.spawn(self._persist_quietly(shard, g), name=f"persist-{g.group_id}")

    # -- the operations --------------------------------------------------------------------

    async def join_group(self, principal: Principal, group: str, req: JoinRequest) -> JoinResult:
        """JoinGroup: returns once the join barrier completes (or with an immediate answer)."""
        self._authz.authorize(principal, Operation.READ, Resource(ResourceType.GROUP, group))
        validate_group_id(group)
        shard = self._shard(group)
        g = self._classic(shard, group, create=True)
        assert g is not None
        outcome = g.join(req, _now_ms(), lambda: f"{req.client_id or 'member'}-{uuid.uuid4()}")
        if isinstance(outcome, JoinResult):
            return outcome
        timeout = max(req.rebalance_timeout_ms, req.session_timeout_ms) / 1000 + JOIN_GRACE_S
        try:
            async with asyncio.timeout(timeout):
                result = await outcome
        except TimeoutError:
            raise GroupError(ErrorCode.REBALANCE_IN_PROGRESS,
                             f"group {group!r} did not complete its rebalance in time; rejoin") from None
        if result.error is None and result.member_id == result.leader:
            log.info("group %r: generation %d, %d members, protocol %s, leader %s", group, result.generation,
                     len(g.members), result.protocol_name, result.leader)
        return result

    async def sync_group(self, principal: Principal, group: str, member_id: str, instance_id: str | None,
                         generation: int, assignments: dict[str, bytes]) -> bytes:
        """SyncGroup: this member's assignment (the leader's sync completes the rebalance)."""
        self._authz.authorize(principal, Operation.READ, Resource(ResourceType.GROUP, group))
        shard = self._shard(group)
        g = self._classic(shard, group, create=False)
        if g is None:
            raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID, f"group {group!r} has no member {member_id!r}; rejoin")
        was_stable = g.state
        outcome = g.sync(member_id, instance_id, generation, assignments)
        if g.state != was_stable:
            # The leader's assignment completed the rebalance: the group's state is written so
            # a new coordinator knows it; members get their assignment once it is committed.
            await self._persist_group(shard, g)
        if isinstance(outcome, bytes):
            return outcome
        async with asyncio.timeout(max(m.rebalance_timeout_ms for m in g.members.values()) / 1000 + JOIN_GRACE_S
                                   if g.members else JOIN_GRACE_S):
            return await outcome

    async def classic_heartbeat(self, principal: Principal, group: str, member_id: str, instance_id: str | None,
                                generation: int) -> None:
        self._authz.authorize(principal, Operation.READ, Resource(ResourceType.GROUP, group))
        shard = self._shard(group)
        g = self._classic(shard, group, create=False)
        if g is None:
            raise GroupError(ErrorCode.UNKNOWN_MEMBER_ID, f"group {group!r} has no member {member_id!r}; rejoin")
        g.heartbeat(member_id, instance_id, generation, _now_ms())

    async def leave_group(self, principal: Principal, group: str, members: list[tuple[str, str | None]]
                          ) -> list[StrataError | None]:
        """LeaveGroup: remove each member; the rest rebalance. One outcome per member."""
        self._authz.authorize(principal, Operation.READ, Resource(ResourceType.GROUP, group))
        shard = self._shard(group)
        g = self._classic(shard, group, create=False)
        out: list[StrataError | None] = []
        for member_id, instance_id in members:
            if g is None:
                out.append(GroupError(ErrorCode.UNKNOWN_MEMBER_ID, f"group {group!r} has no member {member_id!r}"))
                continue
            try:
                g.leave(member_id, instance_id, _now_ms())
                log.info("group %r: member %s left (%d remain)", group, member_id or instance_id, len(g.members))
                out.append(None)
            except GroupError as exc:
                out.append(exc)
        if g is not None:
            await self._persist_group(shard, g)
        return out

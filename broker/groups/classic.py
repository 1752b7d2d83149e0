"""Kafka's classic consumer-group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), as a
state machine per group, for Kafka clients on the Kafka listener.

The members choose their assignment themselves (client-side assignors: range, roundrobin,
cooperative-sticky): the coordinator collects every member's JoinGroup (the *join barrier*),
picks a protocol all of them support, names a leader and hands it everyone's subscription;
the leader's SyncGroup carries the assignment, which the coordinator hands to each member.
States, as Kafka names them: ``Empty`` -> ``PreparingRebalance`` (waiting for members to
(re)join) -> ``CompletingRebalance`` (waiting for the leader's assignment) -> ``Stable``.

A member that does not rejoin within the rebalance timeout is removed; a member silent for
its session timeout is removed (and the others rebalance). Static members
(``group.instance.id``) keep their place across restarts: rejoining under a new member id
replaces the old one, which is fenced. The group's state (generation, members, their
subscriptions and assignments) is written to ``__consumer_offsets`` once an assignment is
complete, so a new coordinator knows it and members keep consuming through a failover.

Nothing here does I/O; the coordinator persists and answers. The join and sync barriers are
asyncio futures the coordinator's handlers await.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from strata.broker.groups.consumer_protocol import decode_assignment, decode_subscription
from strata.broker.groups.group_state import GroupError
from strata.client.errors import ErrorCode

EMPTY = "Empty"
PREPARING = "PreparingRebalance"
COMPLETING = "CompletingRebalance"
STABLE = "Stable"
DEAD = "Dead"

#: Kafka's group.min/max.session.timeout.ms are 6 s and 30 min; the lower bound is kept
#: lower so tests and impatient clients can fail over fast.
MIN_SESSION_TIMEOUT_MS = 1_000
MAX_SESSION_TIMEOUT_MS = 1_800_000
MAX_MEMBERS = 1_000
MAX_METADATA_BYTES = 1 << 20


@dataclass(slots=True)
class ClassicMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    deadline_ms: int = 0
    join_waiter: asyncio.Future[JoinResult] | None = None
    sync_waiter: asyncio.Future[bytes] | None = None

    def metadata_for(self, protocol: str) -> bytes:
        for name, meta in self.protocols:
            if name == protocol:
                return meta
        return b""

    @property
    def assigned(self) -> list[tuple[str, int]]:
        """The partitions in its assignment (for describe and lag); none if it does not parse."""
        try:
            return decode_assignment(self.assignment)
        except ValueError:
            return []

    @property
    def subscribed(self) -> list[str]:
        for _, meta in self.protocols[:1]:
            try:
                return decode_subscription(meta)
            except ValueError:
                return []
        return []


@dataclass(slots=True, frozen=True)
class JoinRequest:
    member_id: str
    group_instance_id: str | None
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    client_id: str
    client_host: str
    #: JoinGroup v4+: an unknown member is first given a member id to join with.
    require_known_member_id: bool


@dataclass(slots=True, frozen=True)
class JoinResult:
    member_id: str
    generation: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    #: For the leader: every member's (member id, instance id, metadata); empty for others.
    members: list[tuple[str, str | None, bytes]] = field(default_factory=list)
    error: GroupError | None = None


def _err(code: ErrorCode, message: str) -> GroupError:
    return GroupError(code, message)


@dataclass(slots=True)
class ClassicGroup:
    group_id: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str | None = None
    members: dict[str, ClassicMember] = field(default_factory=dict)
    #: group.instance.id -> member id of the member that holds it.
    static: dict[str, str] = field(default_factory=dict)
    #: Member ids handed out with MEMBER_ID_REQUIRED, awaiting their join: id -> deadline.
    pending: dict[str, int] = field(default_factory=dict)
    rebalance_deadline_ms: int = 0

    # -- joining ---------------------------------------------------------------------------

    def join(self, req: JoinRequest, now_ms: int, new_member_id: Callable[[], str]
             ) -> JoinResult | asyncio.Future[JoinResult]:
        """Handle a JoinGroup: an immediate answer, or a future the join barrier resolves."""
        if not MIN_SESSION_TIMEOUT_MS <= req.session_timeout_ms <= MAX_SESSION_TIMEOUT_MS:
            raise _err(ErrorCode.INVALID_SESSION_TIMEOUT,
                       f"session timeout {req.session_timeout_ms} ms is outside "
                       f"[{MIN_SESSION_TIMEOUT_MS}, {MAX_SESSION_TIMEOUT_MS}]")
        if not req.protocol_type or not req.protocols:
            raise _err(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, "a join needs a protocol type and protocols")
        if any(len(m) > MAX_METADATA_BYTES for _, m in req.protocols):
            raise _err(ErrorCode.INVALID_REQUEST, f"protocol metadata is limited to {MAX_METADATA_BYTES} bytes")
        if self.members and (req.protocol_type != self.protocol_type or not self._common(req.protocols)):
            raise _err(ErrorCode.INCONSISTENT_GROUP_PROTOCOL,
                       f"group {self.group_id!r} uses protocol type {self.protocol_type!r} with protocols "
                       f"{sorted(self._candidates())}; this member offers {req.protocol_type!r} "
                       f"{[n for n, _ in req.protocols]}")
        member_id = req.member_id
        if member_id == "":
            if req.group_instance_id is not None:
                return self._join_static(req, now_ms, new_member_id)
            member_id = new_member_id()
            if req.require_known_member_id:
                # KIP-394: the member must come back with this id (so a client that times out
                # and retries never leaves a ghost member behind).
                self.pending[member_id] = now_ms + req.session_timeout_ms
                return JoinResult(member_id, error=_err(ErrorCode.MEMBER_ID_REQUIRED,
                                                        "join again with the member id given"))
            return self._add_and_wait(member_id, req, now_ms)
        m = self.members.get(member_id)
        if m is None:
            if member_id in self.pending:
                del self.pending[member_id]
                return self._add_and_wait(member_id, req, now_ms)
            raise self._unknown(member_id, req.group_instance_id)
        self._check_instance(m, req.group_instance_id)
        changed = m.protocols != req.protocols
        self._update(m, req, now_ms)
        if self.state == STABLE and not changed and member_id != self.leader_id:
            # Nothing to rebalance for: the member learns the current generation again.
            return self._result_for(m)
        return self._wait_join(m, now_ms)

    def _join_static(self, req: JoinRequest, now_ms: int, new_member_id: Callable[[], str]
                     ) -> JoinResult | asyncio.Future[JoinResult]:
        assert req.group_instance_id is not None
        old_id = self.static.get(req.group_instance_id)
        new_id = new_member_id()
        if old_id is None or old_id not in self.members:
            return self._add_and_wait(new_id, req, now_ms)
        # The same static member restarted: it takes over its old place under a new id, and
        # the old id is fenced from now on.
        old = self.members.pop(old_id)
        self._fail_waiters(old, _err(ErrorCode.FENCED_INSTANCE_ID,
                                     f"group.instance.id {req.group_instance_id!r} was taken over"))
        changed = old.protocols != req.protocols
        old.member_id = new_id
        self.members[new_id] = old
        self.static[req.group_instance_id] = new_id
        if self.leader_id == old_id:
            self.leader_id = new_id
        self._update(old, req, now_ms)
        if self.state == STABLE and not changed:
            return self._result_for(old)
        return self._wait_join(old, now_ms)

    def _add_and_wait(self, member_id: str, req: JoinRequest, now_ms: int) -> asyncio.Future[JoinResult]:
        if len(self.members) >= MAX_MEMBERS:
            raise _err(ErrorCode.GROUP_MAX_SIZE_REACHED, f"group {self.group_id!r} has {MAX_MEMBERS} members")
        m = ClassicMember(member_id, req.group_instance_id, req.client_id, req.client_host,
                          req.session_timeout_ms, req.rebalance_timeout_ms, list(req.protocols))
        self.members[member_id] = m
        if req.group_instance_id is not None:
            self.static[req.group_instance_id] = member_id
        if not self.protocol_type:
            self.protocol_type = req.protocol_type
        return self._wait_join(m, now_ms)

    def _update(self, m: ClassicMember, req: JoinRequest, now_ms: int) -> None:
        m.protocols = list(req.protocols)
        m.session_timeout_ms = req.session_timeout_ms
        m.rebalance_timeout_ms = req.rebalance_timeout_ms
        m.client_id, m.client_host = req.client_id, req.client_host
        m.deadline_ms = now_ms + req.session_timeout_ms

    def _wait_join(self, m: ClassicMember, now_ms: int) -> asyncio.Future[JoinResult]:
        if self.state != PREPARING:
            self._prepare_rebalance(now_ms)
        if m.join_waiter is not None and not m.join_waiter.done():
            m.join_waiter.set_result(JoinResult(m.member_id, error=_err(
                ErrorCode.REBALANCE_IN_PROGRESS, "superseded by a newer join of the same member")))
        m.join_waiter = asyncio.get_running_loop().create_future()
        waiter = m.join_waiter
        self.maybe_complete_join(now_ms)
        return waiter

    def _prepare_rebalance(self, now_ms: int) -> None:
        for m in self.members.values():
            if m.sync_waiter is not None and not m.sync_waiter.done():
                m.sync_waiter.set_exception(_err(ErrorCode.REBALANCE_IN_PROGRESS, "the group is rebalancing"))
            m.sync_waiter = None
        self.state = PREPARING
        timeout = max((m.rebalance_timeout_ms for m in self.members.values()), default=0)
        self.rebalance_deadline_ms = now_ms + max(timeout, 0)

    def maybe_complete_join(self, now_ms: int, *, force: bool = False) -> bool:
        """End the join barrier when every member has rejoined (or, ``force``, the rebalance
        timeout passed: members that did not rejoin are removed)."""
        if self.state != PREPARING:
            return False
        waiting = [m for m in self.members.values() if m.join_waiter is not None]
        if len(waiting) < len(self.members) or self.pending:
            if not force:
                return False
            for m in list(self.members.values()):
                if m.join_waiter is None:
                    self._remove(m)
            self.pending.clear()
        self.generation += 1
        if not self.members:
            self.state = EMPTY
            self.protocol_name = None
            self.leader_id = None
            self.protocol_type = None
            return True
        self.protocol_name = self._select_protocol()
        if self.leader_id not in self.members:
            self.leader_id = next(iter(self.members))
        self.state = COMPLETING
        for m in self.members.values():
            m.assignment = b""
            m.deadline_ms = now_ms + m.session_timeout_ms
            waiter, m.join_waiter = m.join_waiter, None
            if waiter is not None and not waiter.done():
                waiter.set_result(self._result_for(m))
        return True

    def _result_for(self, m: ClassicMember) -> JoinResult:
        members: list[tuple[str, str | None, bytes]] = []
        if m.member_id == self.leader_id and self.protocol_name is not None:
            members = [(x.member_id, x.group_instance_id, x.metadata_for(self.protocol_name))
                       for x in self.members.values()]
        return JoinResult(m.member_id, self.generation, self.protocol_type, self.protocol_name,
                          self.leader_id or "", members)

    def _candidates(self) -> set[str]:
        sets = [{n for n, _ in m.protocols} for m in self.members.values()]
        return set.intersection(*sets) if sets else set()

    def _common(self, protocols: list[tuple[str, bytes]]) -> bool:
        return bool(self._candidates() & {n for n, _ in protocols})

    def _select_protocol(self) -> str:
        """The protocol every member supports that most members prefer (Kafka's vote)."""
        candidates = self._candidates()
        votes: Counter[str] = Counter()
        for m in self.members.values():
            for name, _ in m.protocols:
                if name in candidates:
                    votes[name] += 1
                    break
        return max(sorted(votes), key=lambda n: votes[n])

    # -- syncing ---------------------------------------------------------------------------

    def sync(self, member_id: str, instance_id: str | None, generation: int,
             assignments: dict[str, bytes]) -> bytes | asyncio.Future[bytes]:
        """Handle a SyncGroup: the member's assignment, now or once the leader has sent it.

        Returns the assignment (or a future of it). The leader's sync completes the
        rebalance; the caller persists the group after it (state ``Stable``).
        """
        m = self._member(member_id, instance_id)
        if generation != self.generation:
            raise _err(ErrorCode.ILLEGAL_GENERATION,
                       f"generation {generation} is not the group's current {self.generation}")
        if self.state == PREPARING:
            raise _err(ErrorCode.REBALANCE_IN_PROGRESS, "the group is rebalancing: rejoin")
        if self.state == STABLE:
            return m.assignment
        if member_id == self.leader_id:
            for x in self.members.values():
                x.assignment = assignments.get(x.member_id, b"")
            self.state = STABLE
            for x in self.members.values():
                if x.sync_waiter is not None and not x.sync_waiter.done():
                    x.sync_waiter.set_result(x.assignment)
                x.sync_waiter = None
            return m.assignment
        if m.sync_waiter is None or m.sync_waiter.done():
            m.sync_waiter = asyncio.get_running_loop().create_future()
        return m.sync_waiter

    # -- heartbeats, leaving, expiry -------------------------------------------------------

    def heartbeat(self, member_id: str, instance_id: str | None, generation: int, now_ms: int) -> None:
        if self.state == EMPTY:
            raise self._unknown(member_id, instance_id)
        m = self._member(member_id, instance_id)
        if generation != self.generation:
            raise _err(ErrorCode.ILLEGAL_GENERATION,
                       f"generation {generation} is not the group's current {self.generation}")
        m.deadline_ms = now_ms + m.session_timeout_ms
        if self.state == PREPARING:
            raise _err(ErrorCode.REBALANCE_IN_PROGRESS, "the group is rebalancing: rejoin")

    def leave(self, member_id: str, instance_id: str | None, now_ms: int) -> None:
        """Remove a member (by id, or by instance id for a static member); the others rebalance."""
        if instance_id is not None and member_id == "":
            member_id = self.static.get(instance_id, "")
        m = self._member(member_id, instance_id)
        self._remove(m)
        self._membership_changed(now_ms)

    def expire(self, now_ms: int) -> list[str]:
        """Remove members whose session expired, and end a join barrier whose time is up;
        returns the ids removed."""
        gone: list[str] = []
        for mid, deadline in list(self.pending.items()):
            if now_ms >= deadline:
                del self.pending[mid]
        for m in list(self.members.values()):
            waiting_in_join = self.state == PREPARING and m.join_waiter is not None
            if not waiting_in_join and now_ms >= m.deadline_ms:
                gone.append(m.member_id)
                self._remove(m)
        if gone:
            self._membership_changed(now_ms)
        if self.state == PREPARING and now_ms >= self.rebalance_deadline_ms:
            before = set(self.members)
            self.maybe_complete_join(now_ms, force=True)
            gone.extend(before - set(self.members))
        return gone

    def _membership_changed(self, now_ms: int) -> None:
        if self.state in (STABLE, COMPLETING):
            if self.members:
                self._prepare_rebalance(now_ms)
            else:
                self.state = EMPTY
                self.generation += 1
                self.leader_id = None
                self.protocol_name = None
                self.protocol_type = None
        elif self.state == PREPARING:
            self.maybe_complete_join(now_ms)

    def _remove(self, m: ClassicMember) -> None:
        self.members.pop(m.member_id, None)
        if m.group_instance_id is not None and self.static.get(m.group_instance_id) == m.member_id:
            del self.static[m.group_instance_id]
        self._fail_waiters(m, _err(ErrorCode.UNKNOWN_MEMBER_ID, f"member {m.member_id} was removed"))

    @staticmethod
    def _fail_waiters(m: ClassicMember, exc: GroupError) -> None:
        if m.join_waiter is not None and not m.join_waiter.done():
            m.join_waiter.set_result(JoinResult(m.member_id, error=exc))
        if m.sync_waiter is not None and not m.sync_waiter.done():
            m.sync_waiter.set_exception(exc)
        m.join_waiter = m.sync_waiter = None

    def fail_all(self, exc: GroupError) -> None:
        """The coordinator lost the group (leadership moved): every waiting request hears it."""
        for m in self.members.values():
            self._fail_waiters(m, exc)

    # -- offsets ---------------------------------------------------------------------------

    def check_commit(self, member_id: str, instance_id: str | None, generation: int) -> None:
        """May this member commit offsets now? (Kafka's rules; a "simple" consumer that
        assigns partitions itself commits with generation -1 and no member id, while the
        group has no members.)"""
        if generation < 0 and member_id == "":
            if self.members:
                raise _err(ErrorCode.UNKNOWN_MEMBER_ID,
                           f"group {self.group_id!r} has {len(self.members)} members; a consumer outside "
                           "the group cannot commit for it")
            return
        m = self._member(member_id, instance_id)
        if generation != self.generation:
            raise _err(ErrorCode.ILLEGAL_GENERATION,
                       f"generation {generation} is not the group's current {self.generation}")
        # While the group prepares a rebalance, members of the current generation still
        # commit (Kafka's rule: an eager consumer commits what it read before it gives its
        # partitions up); once the join is done, the new generation has no assignment yet.
        if self.state == COMPLETING:
            raise _err(ErrorCode.REBALANCE_IN_PROGRESS, "the group is rebalancing: rejoin, then commit")
        del m

    def _member(self, member_id: str, instance_id: str | None) -> ClassicMember:
        m = self.members.get(member_id)
        if m is None:
            raise self._unknown(member_id, instance_id)
        self._check_instance(m, instance_id)
        return m

    def _unknown(self, member_id: str, instance_id: str | None) -> GroupError:
        if instance_id is not None and instance_id in self.static and self.static[instance_id] != member_id:
            return _err(ErrorCode.FENCED_INSTANCE_ID,
                        f"group.instance.id {instance_id!r} is now held by another member")
        return _err(ErrorCode.UNKNOWN_MEMBER_ID, f"group {self.group_id!r} has no member {member_id!r}; rejoin")

    @staticmethod
    def _check_instance(m: ClassicMember, instance_id: str | None) -> None:
        if instance_id is not None and m.group_instance_id is not None and instance_id != m.group_instance_id:
            raise _err(ErrorCode.FENCED_INSTANCE_ID,
                       f"member {m.member_id} holds group.instance.id {m.group_instance_id!r}, not {instance_id!r}")

    # -- persistence -----------------------------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        return {
            "kind": "classic", "gen": self.generation, "ptype": self.protocol_type, "pname": self.protocol_name,
            "leader": self.leader_id,
            "members": [[m.member_id, m.group_instance_id, m.client_id, m.client_host, m.session_timeout_ms,
                         m.rebalance_timeout_ms, [[n, meta] for n, meta in m.protocols], m.assignment]
                        for m in self.members.values()],
        }

    @classmethod
    def from_wire(cls, group_id: str, d: dict[str, Any], now_ms: int) -> ClassicGroup:
        """A group as its last complete assignment left it; every member gets a fresh session."""
        g = cls(group_id, generation=d["gen"], protocol_type=d.get("ptype"), protocol_name=d.get("pname"),
                leader_id=d.get("leader"))
        for mid, inst, client_id, host, session, rebalance, protocols, assignment in d.get("members", ()):
            m = ClassicMember(mid, inst, client_id, host, session, rebalance,
                              [(n, bytes(meta)) for n, meta in protocols], bytes(assignment), now_ms + session)
            g.members[mid] = m
            if inst is not None:
                g.static[inst] = mid
        g.state = STABLE if g.members else EMPTY
        return g


def is_classic(state: dict[str, Any]) -> bool:
    return state.get("kind") == "classic"

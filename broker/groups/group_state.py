"""Consumer groups as a pure state machine: members, epochs, target assignment, reconciliation.

No I/O, no clock, no randomness: the coordinator passes ``now_ms``, the topics' partition
counts and (for a join without a member id) a fresh id, and persists what comes out. That is
what lets the unit tests drive every path (joins, revocations, expiry, zombies) exactly.

The model is Kafka's KIP-848, simplified:

- The **group epoch** goes up whenever what the assignment depends on changes: a member
  joins or leaves or is expired, a subscription changes, a subscribed topic's partition
  count changes. The **target assignment** is recomputed at once, by the group's assignor.
- Each member has what it has been told to hold (``assigned``), what it was told to give
  up but has not yet confirmed giving up (``revoking``), and its **member epoch**.
- Reconciling a member towards its target is incremental: partitions leave its assignment
  first (``revoking``); the member confirms by no longer listing them in ``owned``; only then
  does its member epoch move to the group epoch. A partition is handed to its new owner only
  once no other member holds it (``assigned`` or ``revoking``), so no partition ever has two
  owners, and members that keep a partition never see it leave their assignment.
- Commits are fenced by member epoch: the current epoch and the one before it are accepted
  (the member may not have heard of its bump yet); an older epoch is stale, a newer one (or
  an unknown member) belongs to nobody the coordinator knows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from strata.client.errors import ErrorCode, StrataError

TP = tuple[str, int]

#: Assignor names accepted on the wire; "sticky" is an alias of "uniform".
ASSIGNORS = ("uniform", "range")
ASSIGNOR_ALIASES = {"sticky": "uniform", "uniform": "uniform", "range": "range"}
DEFAULT_ASSIGNOR = "uniform"

DEFAULT_SESSION_TIMEOUT_MS = 10_000
MIN_SESSION_TIMEOUT_MS = 100
MAX_SESSION_TIMEOUT_MS = 300_000
DEFAULT_REBALANCE_TIMEOUT_MS = 60_000
MAX_REBALANCE_TIMEOUT_MS = 600_000
MAX_MEMBERS_PER_GROUP = 1_000
MAX_SUBSCRIBED_TOPICS = 1_000
MAX_GROUP_ID_LEN = 255


class GroupError(StrataError):
    """A request the group refuses: a wire error code and a message for people."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message, code=code)


@dataclass(slots=True)
class Member:
    member_id: str
    member_epoch: int
    #: The epoch before the latest bump: commits under it are still accepted.
    previous_epoch: int
    subscribed: tuple[str, ...]
    client_id: str = ""
    host: str = ""
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS
    rebalance_timeout_ms: int = DEFAULT_REBALANCE_TIMEOUT_MS
    assigned: set[TP] = field(default_factory=set)
    revoking: set[TP] = field(default_factory=set)
    #: Monotonic deadlines (ms); not persisted: a new coordinator gives every member a fresh session.
    session_deadline_ms: int = 0
    revoke_deadline_ms: int | None = None

    def holds(self) -> set[TP]:
        return self.assigned | self.revoking


@dataclass(slots=True)
class HeartbeatRequest:
    member_id: str
    member_epoch: int
    subscribed: list[str] | None = None
    assignor: str | None = None
    owned: list[TP] | None = None
    session_timeout_ms: int = -1
    rebalance_timeout_ms: int = -1
    client_id: str = ""
    host: str = ""


@dataclass(slots=True)
class HeartbeatResult:
    member_id: str
    member_epoch: int
    heartbeat_ms: int
    assignment: list[TP]


def heartbeat_interval_ms(session_timeout_ms: int) -> int:
    """A third of the session: two heartbeats may be lost before the member is expired."""
    return max(20, session_timeout_ms // 3)


def normalize_assignor(name: str | None) -> str | None:
    if name is None or name == "":
        return None
    canon = ASSIGNOR_ALIASES.get(name)
    if canon is None:
        raise GroupError(ErrorCode.UNSUPPORTED_ASSIGNOR,
                         f"assignor {name!r} is not known; use one of: {', '.join(sorted(ASSIGNOR_ALIASES))}")
    return canon


def validate_group_id(group: str) -> None:
    if not group or len(group) > MAX_GROUP_ID_LEN:
        raise GroupError(ErrorCode.INVALID_GROUP_ID,
                         f"group id must be 1 to {MAX_GROUP_ID_LEN} characters, got {len(group)}")


# -- assignors -----------------------------------------------------------------------------


def range_assign(subscriptions: Mapping[str, Iterable[str]], topics: Mapping[str, int],
                 previous: Mapping[str, set[TP]] | None = None) -> dict[str, set[TP]]:
    """Kafka's range assignor: per topic, contiguous ranges to members sorted by id."""
    out: dict[str, set[TP]] = {m: set() for m in subscriptions}
    by_topic: dict[str, list[str]] = {}
    for m, subs in subscriptions.items():
        for t in subs:
            if t in topics:
                by_topic.setdefault(t, []).append(m)
    for t, members in by_topic.items():
        members.sort()
        n = topics[t]
        q, r = divmod(n, len(members))
        p = 0
        for i, m in enumerate(members):
            take = q + (1 if i < r else 0)
            out[m].update((t, x) for x in range(p, p + take))
            p += take
    return out


def uniform_assign(subscriptions: Mapping[str, Iterable[str]], topics: Mapping[str, int],
                   previous: Mapping[str, set[TP]] | None = None) -> dict[str, set[TP]]:
    """Balanced and sticky: members keep what they had (up to a fair share), the rest is spread.

    With identical subscriptions the result differs by at most one partition between any two
    members. With different subscriptions it is balanced as far as eligibility allows: a
    partition moves from a member with at least two more than an eligible other one.
    """
    previous = previous or {}
    subs = {m: frozenset(t for t in s if t in topics) for m, s in subscriptions.items()}
    members = sorted(subs)
    out: dict[str, set[TP]] = {m: set() for m in members}
    if not members:
        return out
    eligible: dict[TP, list[str]] = {}
    for m in members:
        for t in subs[m]:
            for p in range(topics[t]):
                eligible.setdefault((t, p), []).append(m)
    total = len(eligible)
    cap = -(-total // len(members))  # ceil: no member keeps more than a fair share
    taken: set[TP] = set()
    for m in members:  # 1. stickiness: keep what is still valid
        for tp in sorted(previous.get(m, ())):
            if len(out[m]) >= cap:
                break
            if tp in eligible and tp not in taken and m in eligible[tp]:
                out[m].add(tp)
                taken.add(tp)
    for tp in sorted(eligible):  # 2. the rest to the least loaded eligible member
        if tp not in taken:
            m = min(eligible[tp], key=lambda x: (len(out[x]), x))
            out[m].add(tp)
    # 3. level: move from the most loaded to an eligible member with at least two fewer.
    for _ in range(total + 1):
        moved = False
        for src in sorted(members, key=lambda x: (-len(out[x]), x)):
            for tp in sorted(out[src]):
                dst = min(eligible[tp], key=lambda x: (len(out[x]), x))
                if len(out[dst]) + 2 <= len(out[src]):
                    out[src].discard(tp)
                    out[dst].add(tp)
                    moved = True
                    break
            if moved:
                break
        if not moved:
            break
    return out


ASSIGNOR_FUNCS: dict[str, Callable[..., dict[str, set[TP]]]] = {
    "range": range_assign,
    "uniform": uniform_assign,
}


# -- the group -----------------------------------------------------------------------------


@dataclass(slots=True)
class Group:
    group_id: str
    epoch: int = 0
    assignor: str = DEFAULT_ASSIGNOR
    members: dict[str, Member] = field(default_factory=dict)
    target: dict[str, set[TP]] = field(default_factory=dict)
    #: Partition counts of the subscribed topics the target was computed for.
    topic_sizes: dict[str, int] = field(default_factory=dict)
    #: Members removed lately, with why: a zombie's request gets a message that says so.
    removed: dict[str, str] = field(default_factory=dict)

    MAX_REMOVED_REMEMBERED = 256

    # -- views --

    @property
    def state(self) -> str:
        if not self.members:
            return "empty"
        for m in self.members.values():
            if m.member_epoch != self.epoch or m.revoking or m.assigned != self.target.get(m.member_id, set()):
                return "reconciling"
        return "stable"

    def owner_of(self) -> dict[TP, str]:
        """Who holds each partition now (assigned or still revoking)."""
        out: dict[TP, str] = {}
        for m in self.members.values():
            for tp in m.holds():
                assert tp not in out, f"{tp} held by {out[tp]} and {m.member_id}"
                out[tp] = m.member_id
        return out

    def subscribed_topics(self) -> set[str]:
        out: set[str] = set()
        for m in self.members.values():
            out.update(m.subscribed)
        return out

    # -- changes --

    def _bump(self, topics: Mapping[str, int]) -> None:
        self.epoch += 1
        sizes = {t: topics[t] for t in self.subscribed_topics() if t in topics}
        self.topic_sizes = sizes
        subs = {mid: m.subscribed for mid, m in self.members.items()}
        prev = {mid: self.target.get(mid, set()) for mid in self.members}
        self.target = ASSIGNOR_FUNCS[self.assignor](subs, sizes, prev)

    def _check_topics(self, topics: Mapping[str, int]) -> bool:
        """A subscribed topic appeared, vanished or grew: the target is out of date."""
        sizes = {t: topics[t] for t in self.subscribed_topics() if t in topics}
        return sizes != self.topic_sizes

    def _forget(self, member_id: str, why: str) -> None:
        self.members.pop(member_id, None)
        self.target.pop(member_id, None)
        self.removed[member_id] = why
        while len(self.removed) > self.MAX_REMOVED_REMEMBERED:
            self.removed.pop(next(iter(self.removed)))

    def _unknown(self, member_id: str) -> GroupError:
        why = self.removed.get(member_id)
        if why is not None:
            return GroupError(ErrorCode.FENCED_MEMBER_EPOCH,
                              f"member {member_id} is no longer in group {self.group_id!r} ({why}); "
                              "rejoin with member epoch 0")
        return GroupError(ErrorCode.UNKNOWN_MEMBER_ID,
                          f"member {member_id!r} is not in group {self.group_id!r}; rejoin with member epoch 0")

    def heartbeat(self, req: HeartbeatRequest, now_ms: int, topics: Mapping[str, int],
                  new_member_id: Callable[[], str]) -> HeartbeatResult:
        """One GROUP_HEARTBEAT: join (epoch 0), leave (epoch -1) or keep going."""
        if req.member_epoch == -1:
            if req.member_id in self.members:
                self._forget(req.member_id, "it left the group")
                self._bump(topics)
            return HeartbeatResult(req.member_id, -1, 0, [])
        assignor = normalize_assignor(req.assignor)
        if req.member_epoch == 0:
            m = self._join(req, assignor, now_ms, topics, new_member_id)
        else:
            m = self._existing(req)
            if assignor is not None and assignor != self.assignor:
                if len(self.members) > 1:
                    raise self._assignor_conflict(assignor)
                self.assignor = assignor  # a lone member may change its mind
                self._bump(topics)
            if req.subscribed is not None:
                subs = _subscription(req.subscribed)
                if subs != m.subscribed:
                    m.subscribed = subs
                    self._bump(topics)
        if req.session_timeout_ms > 0:
            m.session_timeout_ms = _clamp(req.session_timeout_ms, MIN_SESSION_TIMEOUT_MS, MAX_SESSION_TIMEOUT_MS)
        if req.rebalance_timeout_ms > 0:
            m.rebalance_timeout_ms = min(req.rebalance_timeout_ms, MAX_REBALANCE_TIMEOUT_MS)
        if req.client_id:
            m.client_id = req.client_id
        if req.host:
            m.host = req.host
        m.session_deadline_ms = now_ms + m.session_timeout_ms
        if self._check_topics(topics):
            self._bump(topics)
        if req.owned is not None:
            m.revoking &= set(req.owned)  # what it no longer lists, it has given up
        self._reconcile(m, now_ms)
        # Partitions released by this heartbeat may be waiting for other members: they pick
        # them up on their own next heartbeat.
        return HeartbeatResult(m.member_id, m.member_epoch, heartbeat_interval_ms(m.session_timeout_ms),
                               sorted(m.assigned))

    def _assignor_conflict(self, asked: str) -> GroupError:
        return GroupError(ErrorCode.UNSUPPORTED_ASSIGNOR,
                          f"group {self.group_id!r} uses the {self.assignor!r} assignor (chosen by its first "
                          f"member); this member asked for {asked!r}: use the same assignor in every member")

    def _join(self, req: HeartbeatRequest, assignor: str | None, now_ms: int, topics: Mapping[str, int],
              new_member_id: Callable[[], str]) -> Member:
        if req.subscribed is None:
            raise GroupError(ErrorCode.INVALID_REQUEST, "a join (member epoch 0) must list its subscribed topics")
        if req.member_id and req.member_id in self.members:
            # The member lost its state and starts over: its old incarnation is gone.
            self._forget(req.member_id, "it rejoined")
        elif len(self.members) >= MAX_MEMBERS_PER_GROUP:
            raise GroupError(ErrorCode.GROUP_MAX_SIZE_REACHED,
                             f"group {self.group_id!r} already has {MAX_MEMBERS_PER_GROUP} members")
        if assignor is not None:
            if not self.members:
                self.assignor = assignor
            elif assignor != self.assignor:
                raise self._assignor_conflict(assignor)
        member_id = req.member_id or new_member_id()
        self.removed.pop(member_id, None)
        m = Member(member_id=member_id, member_epoch=0, previous_epoch=0, subscribed=_subscription(req.subscribed),
                   client_id=req.client_id, host=req.host)
        self.members[member_id] = m
        self._bump(topics)
        # A newcomer holds nothing, so it has nothing to revoke: it enters at the new epoch.
        m.member_epoch = m.previous_epoch = self.epoch
        return m

    def _existing(self, req: HeartbeatRequest) -> Member:
        m = self.members.get(req.member_id)
        if m is None:
            raise self._unknown(req.member_id)
        if req.member_epoch not in (m.member_epoch, m.previous_epoch):
            if req.member_epoch > m.member_epoch:
                raise GroupError(ErrorCode.FENCED_MEMBER_EPOCH,
                                 f"member {m.member_id} sent epoch {req.member_epoch}, newer than its epoch "
                                 f"{m.member_epoch} in group {self.group_id!r}; rejoin with member epoch 0")
            raise GroupError(ErrorCode.FENCED_MEMBER_EPOCH,
                             f"member {m.member_id} sent epoch {req.member_epoch}, but its epoch is "
                             f"{m.member_epoch} in group {self.group_id!r}; rejoin with member epoch 0")
        return m

    def _reconcile(self, m: Member, now_ms: int) -> None:
        """Move ``m`` one step towards its target: revoke first, then assign what is free."""
        target = self.target.get(m.member_id, set())
        drop = m.assigned - target
        if drop:
            m.assigned -= drop
            m.revoking |= drop
        if m.revoking:
            if m.revoke_deadline_ms is None:
                m.revoke_deadline_ms = now_ms + m.rebalance_timeout_ms
            return  # the epoch moves on only once the member has let go
        m.revoke_deadline_ms = None
        if m.member_epoch != self.epoch:
            m.previous_epoch, m.member_epoch = m.member_epoch, self.epoch
        want = target - m.assigned
        if want:
            held = {tp for o in self.members.values() if o is not m for tp in o.holds()}
            m.assigned |= want - held

    def expire(self, now_ms: int, topics: Mapping[str, int]) -> list[tuple[str, str]]:
        """Remove members whose session ran out or that did not revoke in time."""
        gone: list[tuple[str, str]] = []
        for mid, m in list(self.members.items()):
            if now_ms >= m.session_deadline_ms:
                why = f"no heartbeat within its session timeout of {m.session_timeout_ms} ms"
            elif m.revoke_deadline_ms is not None and now_ms >= m.revoke_deadline_ms:
                why = f"it did not give up revoked partitions within {m.rebalance_timeout_ms} ms"
            else:
                continue
            self._forget(mid, why)
            gone.append((mid, why))
        if gone:
            self._bump(topics)
        return gone

    def refresh_topics(self, topics: Mapping[str, int]) -> bool:
        """Recompute the target if a subscribed topic changed size (the coordinator's timer)."""
        if self.members and self._check_topics(topics):
            self._bump(topics)
            return True
        return False

    def reset_sessions(self, now_ms: int) -> None:
        """After a load: every member gets a full session to find the new coordinator."""
        for m in self.members.values():
            m.session_deadline_ms = now_ms + m.session_timeout_ms
            m.revoke_deadline_ms = now_ms + m.rebalance_timeout_ms if m.revoking else None

    # -- commits --

    def check_commit(self, member_id: str, member_epoch: int, tps: Iterable[TP]) -> dict[TP, GroupError]:
        """Whether this member may commit these partitions; raises for the whole request."""
        m = self.members.get(member_id)
        if m is None:
            raise self._unknown(member_id)
        if member_epoch > m.member_epoch:
            raise GroupError(ErrorCode.FENCED_MEMBER_EPOCH,
                             f"member {member_id} committed with epoch {member_epoch}, newer than its epoch "
                             f"{m.member_epoch} in group {self.group_id!r}; rejoin with member epoch 0")
        if member_epoch < m.previous_epoch:
            raise GroupError(ErrorCode.STALE_MEMBER_EPOCH,
                             f"member {member_id} committed with epoch {member_epoch}, but its epoch is "
                             f"{m.member_epoch} in group {self.group_id!r}; heartbeat, then commit again")
        holds = m.holds()
        errs: dict[TP, GroupError] = {}
        for tp in tps:
            if tp not in holds:
                errs[tp] = GroupError(
                    ErrorCode.STALE_MEMBER_EPOCH,
                    f"member {member_id} does not own {tp[0]}-{tp[1]} in group {self.group_id!r} (epoch "
                    f"{m.member_epoch}); heartbeat to learn its assignment and commit only partitions it holds")
        return errs

    # -- persistence (the coordinator writes this as one record per change) --

    def to_wire(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "assignor": self.assignor,
            "sizes": self.topic_sizes,
            "members": [
                {"id": m.member_id, "epoch": m.member_epoch, "prev": m.previous_epoch, "subs": list(m.subscribed),
                 "client": m.client_id, "host": m.host, "session": m.session_timeout_ms,
                 "rebalance": m.rebalance_timeout_ms, "assigned": _tps_wire(m.assigned),
                 "revoking": _tps_wire(m.revoking), "target": _tps_wire(self.target.get(m.member_id, set()))}
                for m in self.members.values()
            ],
        }

    @classmethod
    def from_wire(cls, group_id: str, d: dict[str, Any]) -> Group:
        g = cls(group_id=group_id, epoch=d["epoch"], assignor=d["assignor"], topic_sizes=dict(d.get("sizes", {})))
        for md in d["members"]:
            m = Member(member_id=md["id"], member_epoch=md["epoch"], previous_epoch=md["prev"],
                       subscribed=tuple(md["subs"]), client_id=md.get("client", ""), host=md.get("host", ""),
                       session_timeout_ms=md["session"], rebalance_timeout_ms=md["rebalance"],
                       assigned=_tps_from_wire(md["assigned"]), revoking=_tps_from_wire(md["revoking"]))
            g.members[m.member_id] = m
            g.target[m.member_id] = _tps_from_wire(md["target"])
        return g


def _subscription(topics: Iterable[str]) -> tuple[str, ...]:
    subs = tuple(sorted(set(topics)))
    if len(subs) > MAX_SUBSCRIBED_TOPICS:
        raise GroupError(ErrorCode.INVALID_REQUEST,
                         f"a member may subscribe to at most {MAX_SUBSCRIBED_TOPICS} topics, not {len(subs)}")
    return subs


def _clamp(v: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, v))


def tps_to_topic_lists(tps: Iterable[TP]) -> list[dict[str, Any]]:
    """``[(t, p)]`` as the wire's ``[{"topic": t, "partitions": [p...]}]``, sorted."""
    by: dict[str, list[int]] = {}
    for t, p in sorted(tps):
        by.setdefault(t, []).append(p)
    return [{"topic": t, "partitions": ps} for t, ps in by.items()]


def topic_lists_to_tps(items: Iterable[Mapping[str, Any]]) -> list[TP]:
    return [(it["topic"], p) for it in items for p in it["partitions"]]


def _tps_wire(tps: set[TP]) -> list[list[Any]]:
    return [[t, p] for t, p in sorted(tps)]


def _tps_from_wire(items: Iterable[list[Any]]) -> set[TP]:
    return {(t, p) for t, p in items}

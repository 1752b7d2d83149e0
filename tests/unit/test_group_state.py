"""The group state machine: joins, incremental revoke-then-assign, expiry, epoch fencing.

Members here follow docs/groups.md exactly: each heartbeat reports as ``owned`` the
assignment of the previous response (a partition missing from the new assignment is
given up before the next heartbeat). The checks are what a consumer would notice: who owns
what, whether a partition ever had two owners, whether a member that keeps a partition ever
saw it taken away.
"""

from __future__ import annotations

import itertools
import random

import pytest

from strata.broker.groups.group_state import (
    Group,
    GroupError,
    HeartbeatRequest,
    range_assign,
    uniform_assign,
)
from strata.client.errors import ErrorCode

TOPICS = {"events": 12}


class Sim:
    """A group and well-behaved members, driven with an explicit clock."""

    def __init__(self, assignor: str = "uniform", topics: dict[str, int] | None = None) -> None:
        self.group = Group("g")
        self.topics = dict(topics or TOPICS)
        self.assignor = assignor
        self.now = 0
        self.ids = (f"m{i}" for i in itertools.count())
        self.epochs: dict[str, int] = {}
        self.owned: dict[str, set] = {}
        #: Every (member, partition) ever removed from a member's assignment.
        self.removed_from: set[tuple[str, tuple[str, int]]] = set()

    def join(self, subscribed=("events",), session_timeout_ms: int = 1000) -> str:
        r = self.group.heartbeat(HeartbeatRequest("", 0, list(subscribed), self.assignor, [],
                                                  session_timeout_ms=session_timeout_ms),
                                 self.now, self.topics, lambda: next(self.ids))
        self.epochs[r.member_id] = r.member_epoch
        self.owned[r.member_id] = set(r.assignment)
        return r.member_id

    def beat(self, mid: str) -> set:
        r = self.group.heartbeat(HeartbeatRequest(mid, self.epochs[mid], owned=sorted(self.owned[mid])),
                                 self.now, self.topics, lambda: next(self.ids))
        new = set(r.assignment)
        for tp in self.owned[mid] - new:
            self.removed_from.add((mid, tp))
        self.epochs[mid] = r.member_epoch
        self.owned[mid] = new
        self.check_exclusive()
        return new

    def round(self, members=None) -> None:
        for mid in list(members if members is not None else self.group.members):
            self.beat(mid)

    def settle(self, rounds: int = 10) -> None:
        for _ in range(rounds):
            self.round()
            if self.group.state == "stable":
                return
        raise AssertionError(f"group did not settle: {self.group.state}")

    def check_exclusive(self) -> None:
        seen: dict = {}
        for mid, tps in self.owned.items():
            if mid not in self.group.members:
                continue
            for tp in tps:
                assert tp not in seen, f"{tp} owned by {seen[tp]} and {mid}"
                seen[tp] = mid
        self.group.owner_of()  # asserts the coordinator's own view is exclusive too

    def all_owned(self) -> list:
        return sorted(tp for mid in self.group.members for tp in self.owned[mid])


def every_partition(topics=TOPICS) -> list:
    return sorted((t, p) for t, n in topics.items() for p in range(n))


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_three_members_own_every_partition_exactly_once(assignor: str) -> None:
    s = Sim(assignor)
    for _ in range(3):
        s.join()
    s.settle()
    assert s.all_owned() == every_partition()
    assert sorted(len(s.owned[m]) for m in s.group.members) == [4, 4, 4]


@pytest.mark.parametrize("assignor", ["uniform", "range"])
def test_joining_member_gets_partitions_only_after_the_old_owner_revokes(assignor: str) -> None:
    s = Sim(assignor)
    a, b, c = s.join(), s.join(), s.join()
    s.settle()
    before = {m: set(s.owned[m]) for m in (a, b, c)}
    d = s.join()
    assert s.owned[d] == set(), "a newcomer must not get partitions others still hold"
    s.beat(d)
    assert s.owned[d] == set()
    s.settle()
    assert s.all_owned() == every_partition()
    assert sorted(len(s.owned[m]) for m in s.group.members) == [3, 3, 3, 3]
    for m in (a, b, c):
        kept = before[m] & s.owned[m]
        # A partition the member keeps was never removed from its assignment on the way.
        assert not {(m, tp) for tp in kept} & s.removed_from
        if assignor == "uniform":
            assert len(kept) == 3, "sticky: each old member keeps three of its four"


def test_revoking_member_keeps_epoch_until_it_lets_go_and_newcomer_waits() -> None:
    s = Sim()
    a = s.join()
    assert len(s.owned[a]) == 12
    b = s.join()
    epoch_a = s.epochs[a]
    # a's next heartbeat still lists its 12: it is told to give up 6 and keeps its epoch.
    r = s.group.heartbeat(HeartbeatRequest(a, epoch_a, owned=sorted(s.owned[a])), s.now, s.topics, lambda: "x")
    assert len(r.assignment) == 6 and r.member_epoch == epoch_a
    assert s.group.state == "reconciling"
    # b asks for its share while a still holds it: nothing yet.
    assert s.beat(b) == set()
    # a lets go (reports owning only its 6): its epoch moves on; b then gets the 6.
    r = s.group.heartbeat(HeartbeatRequest(a, epoch_a, owned=r.assignment), s.now, s.topics, lambda: "x")
    assert r.member_epoch == s.group.epoch
    s.epochs[a], s.owned[a] = r.member_epoch, set(r.assignment)
    assert len(s.beat(b)) == 6
    s.settle()
    assert s.group.state == "stable"


def test_session_expiry_moves_partitions_to_the_survivors() -> None:
    s = Sim()
    a, b, c = s.join(), s.join(), s.join()
    s.settle()
    lost = set(s.owned[c])
    s.now += 600
    s.round([a, b])
    assert s.group.expire(s.now, s.topics) == []
    s.now += 600  # c has not heard from the coordinator for 1200 ms > 1000 ms
    s.round([a, b])
    gone = s.group.expire(s.now, s.topics)
    assert [m for m, _ in gone] == [c] and "session timeout" in gone[0][1]
    s.settle()
    assert s.all_owned() == every_partition()
    assert lost <= s.owned[a] | s.owned[b]
    assert sorted(len(s.owned[m]) for m in (a, b)) == [6, 6]


def test_member_that_never_revokes_is_removed_after_the_rebalance_timeout() -> None:
    s = Sim()
    a = s.join()
    s.group.members[a].rebalance_timeout_ms = 500
    b = s.join()
    r = s.group.heartbeat(HeartbeatRequest(a, s.epochs[a], owned=sorted(s.owned[a])), s.now, s.topics, lambda: "x")
    assert len(r.assignment) == 6
    removed = []
    for _ in range(4):  # a keeps heartbeating but keeps listing all 12
        s.now += 200
        s.group.heartbeat(HeartbeatRequest(a, s.epochs[a], owned=sorted(s.owned[a])), s.now, s.topics, lambda: "x")
        s.beat(b)
        removed = s.group.expire(s.now, s.topics)
        if removed:
            break
    assert [m for m, _ in removed] == [a] and "did not give up" in removed[0][1]
    assert s.now == 600
    s.settle()
    assert s.all_owned() == every_partition() and s.owned[b] == set(every_partition())


def test_zombie_commit_and_heartbeat_are_fenced_with_a_reason() -> None:
    s = Sim()
    a, b = s.join(), s.join()
    s.settle()
    epoch = s.epochs[a]
    tp = sorted(s.owned[a])[0]
    s.now += 5000
    s.beat(b)
    s.group.expire(s.now, s.topics)
    assert a not in s.group.members
    with pytest.raises(GroupError) as exc:
        s.group.check_commit(a, epoch, [tp])
    assert exc.value.code == ErrorCode.FENCED_MEMBER_EPOCH and "session timeout" in exc.value.message
    with pytest.raises(GroupError) as exc:
        s.group.heartbeat(HeartbeatRequest(a, epoch), s.now, s.topics, lambda: "x")
    assert exc.value.code == ErrorCode.FENCED_MEMBER_EPOCH
    with pytest.raises(GroupError) as exc:
        s.group.check_commit("never-seen", 3, [tp])
    assert exc.value.code == ErrorCode.UNKNOWN_MEMBER_ID


def test_commit_epochs_and_ownership() -> None:
    s = Sim()
    a = s.join()
    mine = sorted(s.owned[a])
    epoch = s.epochs[a]
    assert s.group.check_commit(a, epoch, mine) == {}
    b = s.join()
    s.settle()
    # After the bump, the previous epoch is still accepted (the member may not know yet)...
    assert s.epochs[a] > epoch
    kept = sorted(s.owned[a])
    assert s.group.check_commit(a, s.group.members[a].previous_epoch, kept) == {}
    # ...but partitions it gave up are refused with a clear message.
    given = sorted(s.owned[b])[0]
    errs = s.group.check_commit(a, s.epochs[a], [given])
    assert errs[given].code == ErrorCode.STALE_MEMBER_EPOCH and "does not own" in errs[given].message
    # Older than the previous epoch: stale. Newer than the current: fenced.
    s.join()
    s.settle()
    with pytest.raises(GroupError) as exc:
        s.group.check_commit(a, epoch, kept)
    assert exc.value.code == ErrorCode.STALE_MEMBER_EPOCH
    with pytest.raises(GroupError) as exc:
        s.group.check_commit(a, s.epochs[a] + 5, kept)
    assert exc.value.code == ErrorCode.FENCED_MEMBER_EPOCH


def test_heartbeat_with_a_wrong_epoch_is_fenced() -> None:
    s = Sim()
    a = s.join()
    with pytest.raises(GroupError) as exc:
        s.group.heartbeat(HeartbeatRequest(a, s.epochs[a] + 1), s.now, s.topics, lambda: "x")
    assert exc.value.code == ErrorCode.FENCED_MEMBER_EPOCH


def test_leave_frees_partitions_at_once() -> None:
    s = Sim()
    a, b = s.join(), s.join()
    s.settle()
    r = s.group.heartbeat(HeartbeatRequest(b, -1), s.now, s.topics, lambda: "x")
    assert r.member_epoch == -1 and b not in s.group.members
    del s.owned[b]
    assert s.beat(a) == set(every_partition())


def test_assignor_choice_and_conflicts() -> None:
    s = Sim("range")
    s.join()
    assert s.group.assignor == "range"
    with pytest.raises(GroupError) as exc:
        s.group.heartbeat(HeartbeatRequest("", 0, ["events"], "uniform"), s.now, s.topics, lambda: "y")
    assert exc.value.code == ErrorCode.UNSUPPORTED_ASSIGNOR and "'range'" in exc.value.message
    with pytest.raises(GroupError) as exc:
        s.group.heartbeat(HeartbeatRequest("", 0, ["events"], "roundrobin-ish"), s.now, s.topics, lambda: "y")
    assert exc.value.code == ErrorCode.UNSUPPORTED_ASSIGNOR


def test_subscription_change_and_topic_growth_move_partitions() -> None:
    s = Sim(topics={"events": 4, "other": 4})
    a = s.join(["events"])
    b = s.join(["events"])
    s.settle()
    assert s.all_owned() == every_partition({"events": 4})
    s.group.heartbeat(HeartbeatRequest(b, s.epochs[b], subscribed=["events", "other"],
                                       owned=sorted(s.owned[b])), s.now, s.topics, lambda: "x")
    s.settle()
    assert s.all_owned() == every_partition({"events": 4, "other": 4})
    assert all(t == "events" for t, _ in s.owned[a])
    s.topics["events"] = 6
    assert s.group.refresh_topics(s.topics)
    s.settle()
    assert s.all_owned() == every_partition({"events": 6, "other": 4})


def test_state_survives_a_round_trip_through_its_record() -> None:
    s = Sim()
    a = s.join()
    s.join()
    s.round([a])
    g2 = Group.from_wire("g", s.group.to_wire())
    assert g2.to_wire() == s.group.to_wire()
    assert g2.state == s.group.state == "reconciling"


def test_random_churn_never_double_assigns() -> None:
    rng = random.Random(7)
    for assignor in ("uniform", "range"):
        s = Sim(assignor, topics={"a": 7, "b": 5})
        for _ in range(300):
            op = rng.random()
            members = list(s.group.members)
            if op < 0.15 and len(members) < 6:
                s.join(rng.choice([["a"], ["b"], ["a", "b"]]))
            elif op < 0.25 and members:
                mid = rng.choice(members)
                s.group.heartbeat(HeartbeatRequest(mid, -1), s.now, s.topics, lambda: "x")
                del s.owned[mid]
            elif members:
                s.beat(rng.choice(members))
        s.settle(30)
        subscribed = {t for m in s.group.members.values() for t in m.subscribed}
        assert s.all_owned() == every_partition({t: n for t, n in s.topics.items() if t in subscribed})


# -- assignors -------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [range_assign, uniform_assign])
@pytest.mark.parametrize("n_members,n_parts", [(1, 12), (3, 12), (5, 12), (12, 12), (13, 12), (7, 100)])
def test_assignors_cover_every_partition_once_and_balance(fn, n_members: int, n_parts: int) -> None:
    subs = {f"m{i:02d}": ["t"] for i in range(n_members)}
    out = fn(subs, {"t": n_parts})
    flat = [tp for tps in out.values() for tp in tps]
    assert sorted(flat) == [("t", p) for p in range(n_parts)]
    sizes = [len(v) for v in out.values()]
    assert max(sizes) - min(sizes) <= 1


def test_range_gives_contiguous_ranges_per_topic() -> None:
    out = range_assign({"a": ["t"], "b": ["t"], "c": ["t"]}, {"t": 8})
    assert out == {"a": {("t", p) for p in (0, 1, 2)}, "b": {("t", p) for p in (3, 4, 5)},
                   "c": {("t", p) for p in (6, 7)}}


def test_uniform_is_sticky_and_balanced_when_a_member_joins() -> None:
    subs = {"a": ["t"], "b": ["t"], "c": ["t"]}
    first = uniform_assign(subs, {"t": 12})
    second = uniform_assign({**subs, "d": ["t"]}, {"t": 12}, first)
    assert sorted(len(v) for v in second.values()) == [3, 3, 3, 3]
    for m in ("a", "b", "c"):
        assert second[m] <= first[m], "old members only lose partitions, never trade them"


def test_uniform_respects_subscriptions() -> None:
    out = uniform_assign({"a": ["x"], "b": ["x", "y"]}, {"x": 4, "y": 4})
    assert all(t == "x" for t, _ in out["a"])
    assert len(out["a"]) + len(out["b"]) == 8
    assert abs(len(out["a"]) - len(out["b"])) <= 2

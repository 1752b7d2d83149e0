"""The consumer's group membership (strata.client.consumer.group) against a scripted coordinator.

What docs/groups.md asks of a client, checked step by step without a broker: a revocation
stops fetching, commits the positions, tells the listener and only then drops the
partitions (and heartbeats at once to say so); an assignment starts at the committed
offsets; a fenced member drops everything without committing and rejoins with epoch 0;
a commit refused as fenced says the member rejoined. Plus the describe JSON shape.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

from strata.client._types import TopicPartition
from strata.client.aio import GroupDescription
from strata.client.consumer.config import ConsumerConfig
from strata.client.consumer.group import (
    GroupMember,
    tps_to_wire,
    wire_to_tps,
)
from strata.client.errors import ErrorCode, FencedMemberEpochError, error_for
from strata.client.protocol import Api

T = "events"


def tp(p: int) -> TopicPartition:
    return TopicPartition(T, p)


class FakeCluster:
    def __init__(self) -> None:
        self.interest: set[str] = set()

    async def refresh(self, topics: Iterable[str] = (), *, force: bool = False) -> None:
        self.interest.update(topics)


class FakeCoordinator:
    """Answers requests from a script; remembers every request in ``log``."""

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.group = "g"
        self.cluster = FakeCluster()
        self.log = log
        self.heartbeats: list[dict[str, Any]] = []
        self.assignment: set[int] = set()
        self.committed: dict[TopicPartition, int] = {}
        self.fence_next_heartbeat = False
        self.fence_commits = False
        self.epoch = 1

    async def request(self, api: Api, fields: Mapping[str, Any], **_: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        if api == Api.GROUP_HEARTBEAT:
            self.heartbeats.append(dict(fields))
            self.log.append(("heartbeat", sorted(wire_to_tps(fields.get("owned")))))
            if fields["member_epoch"] == -1:
                return {"member_id": fields["member_id"], "member_epoch": -1}
            if self.fence_next_heartbeat and fields["member_epoch"] > 0:
                self.fence_next_heartbeat = False
                raise error_for(ErrorCode.FENCED_MEMBER_EPOCH, "no heartbeat within its session")
            return {"member_id": "m1", "member_epoch": self.epoch, "heartbeat_ms": 20,
                    "assignment": tps_to_wire(tp(p) for p in self.assignment)}
        if api == Api.OFFSET_FETCH:
            parts = fields["partitions"]
            return {"partitions": [
                {"topic": p["topic"], "partition": p["partition"],
                 "offset": self.committed.get(TopicPartition(p["topic"], p["partition"]), -1)}
                for p in parts]}
        if api == Api.OFFSET_COMMIT:
            if self.fence_commits:
                raise error_for(ErrorCode.FENCED_MEMBER_EPOCH, "member m1 is no longer in group")
            got = {TopicPartition(p["topic"], p["partition"]): p["offset"]
                   for p in fields["partitions"]}
            self.log.append(("commit", got))
            self.committed.update(got)
            return {"partitions": [{"topic": p["topic"], "partition": p["partition"]}
                                   for p in fields["partitions"]]}
        raise AssertionError(f"unexpected {api}")


class FakeFetcher:
    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log
        self.held: dict[TopicPartition, int | None] = {}

    def add_partitions(self, offsets: Mapping[TopicPartition, int | None]) -> None:
        self.log.append(("add", dict(offsets)))
        self.held.update(offsets)

    def stop_fetching(self, tps: Iterable[TopicPartition]) -> None:
        self.log.append(("stop", sorted(tps)))

    def remove_partitions(self, tps: Iterable[TopicPartition]) -> None:
        tps = sorted(tps)
        self.log.append(("remove", tps))
        for x in tps:
            self.held.pop(x, None)

    def positions(self) -> dict[TopicPartition, int]:
        return {x: (100 + x.partition if o is None else o) for x, o in self.held.items()}


class Listener:
    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.log = log

    def on_partitions_revoked(self, tps: set[TopicPartition]) -> None:
        self.log.append(("revoked", sorted(tps)))

    def on_partitions_assigned(self, tps: set[TopicPartition]) -> None:
        self.log.append(("assigned", sorted(tps)))

    def on_partitions_lost(self, tps: set[TopicPartition]) -> None:
        self.log.append(("lost", sorted(tps)))


async def until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 5
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def member(auto_commit: bool = True) -> tuple[GroupMember, FakeCoordinator, FakeFetcher, list]:
    log: list[tuple[str, Any]] = []
    coord = FakeCoordinator(log)
    fetcher = FakeFetcher(log)
    m = GroupMember(coord, fetcher, ConsumerConfig(group_id="g", session_timeout_ms=300,  # type: ignore[arg-type]
                                                enable_auto_commit=auto_commit,
                                                auto_commit_interval_ms=60_000),
                    [T], Listener(log))
    return m, coord, fetcher, log


def test_join_then_assignment_starts_at_the_committed_offsets():
    async def go():
        m, coord, fetcher, log = member()
        coord.assignment = {0, 1}
        coord.committed = {tp(0): 42}
        m.start()
        await until(lambda: m.owned == {tp(0), tp(1)}, "the assignment")
        first = coord.heartbeats[0]
        assert first["member_epoch"] == 0 and first["subscribed"] == [T] and first["owned"] == []
        assert first["assignor"] == "uniform" and first["session_timeout_ms"] == 300
        assert ("add", {tp(0): 42, tp(1): None}) in log
        assert log.index(("add", {tp(0): 42, tp(1): None})) < log.index(("assigned", [tp(0), tp(1)]))
        assert T in coord.cluster.interest  # the fetcher can find the leaders
        await until(lambda: any(h.get("owned") == tps_to_wire([tp(0), tp(1)])
                                for h in coord.heartbeats), "owned in a heartbeat")
        await m.leave()
        assert coord.heartbeats[-1] == {"member_id": "m1", "member_epoch": -1}

    asyncio.run(go())


def test_revocation_commits_tells_the_listener_then_drops_and_heartbeats_at_once():
    async def go():
        m, coord, fetcher, log = member()
        coord.assignment = {0, 1, 2}
        m.start()
        await until(lambda: len(m.owned) == 3, "the assignment")
        coord.assignment = {0}
        coord.epoch = 2
        await until(lambda: m.owned == {tp(0)}, "the revocation")
        await until(lambda: log[-1][0] == "heartbeat" and log[-1][1] == [tp(0)], "the ack heartbeat")
        i = log.index(("stop", [tp(1), tp(2)]))
        # The order docs/groups.md asks for: stop, commit, listener, drop, heartbeat.
        assert log[i + 1] == ("commit", {tp(1): 101, tp(2): 102})
        assert log[i + 2] == ("revoked", [tp(1), tp(2)])
        assert log[i + 3] == ("remove", [tp(1), tp(2)])
        assert ("stop", [tp(0)]) not in log and all(
            tp(0) not in e[1] for e in log if e[0] in ("stop", "remove", "revoked"))
        await m.leave()
        # Leaving commits what it still holds (auto-commit) and revokes it.
        assert ("commit", {tp(0): 100}) in log and ("revoked", [tp(0)]) in log

    asyncio.run(go())


def test_without_auto_commit_a_revocation_commits_nothing():
    async def go():
        m, coord, fetcher, log = member(auto_commit=False)
        coord.assignment = {0, 1}
        m.start()
        await until(lambda: len(m.owned) == 2, "the assignment")
        coord.assignment = {1}
        await until(lambda: m.owned == {tp(1)}, "the revocation")
        assert not [e for e in log if e[0] == "commit"]
        await m.leave()

    asyncio.run(go())


def test_a_fenced_member_loses_everything_without_committing_and_rejoins():
    async def go():
        m, coord, fetcher, log = member()
        coord.assignment = {0, 1}
        m.start()
        await until(lambda: len(m.owned) == 2, "the assignment")
        commits_before = [e for e in log if e[0] == "commit"]
        coord.fence_next_heartbeat = True
        await until(lambda: ("lost", [tp(0), tp(1)]) in log, "on_partitions_lost")
        await until(lambda: m.owned == {tp(0), tp(1)} and log[-1][0] != "lost", "rejoined")
        rejoin = [h for h in coord.heartbeats if h["member_epoch"] == 0]
        assert len(rejoin) == 2 and rejoin[1]["owned"] == [] and rejoin[1]["member_id"] == "m1"
        assert [e for e in log if e[0] == "commit"] == commits_before
        assert ("revoked", [tp(0), tp(1)]) not in log
        await m.leave()

    asyncio.run(go())


def test_a_commit_refused_as_fenced_says_the_member_rejoined():
    async def go():
        m, coord, fetcher, log = member(auto_commit=False)
        coord.assignment = {0}
        m.start()
        await until(lambda: len(m.owned) == 1, "the assignment")
        coord.fence_commits = True
        with pytest.raises(FencedMemberEpochError, match="rejoined") as info:
            await m.commit()
        assert "delivered again" in info.value.message
        await until(lambda: ("lost", [tp(0)]) in log, "the partitions dropped")
        coord.fence_commits = False
        await until(lambda: m.owned == {tp(0)} and m.member_epoch > 0, "rejoined")
        await m.commit({tp(0): 7})
        assert coord.committed[tp(0)] == 7
        with pytest.raises(ValueError, match="non-negative"):
            await m.commit({tp(0): -1})
        await m.leave()

    asyncio.run(go())


def test_wire_helpers_and_the_describe_json_shape():
    tps = {tp(2), tp(0), TopicPartition("a", 1)}
    assert tps_to_wire(tps) == [{"topic": "a", "partitions": [1]},
                                {"topic": T, "partitions": [0, 2]}]
    assert wire_to_tps(tps_to_wire(tps)) == tps
    d = GroupDescription.from_wire({
        "group": "g", "state": "stable", "epoch": 3, "assignor": "uniform",
        "members": [{"member_id": "m", "client_id": "c", "host": "h", "member_epoch": 3,
                     "subscribed": [T], "assignment": [{"topic": T, "partitions": [1, 0]}]}],
        "offsets": [{"topic": T, "partition": 0, "committed": 5, "high_watermark": 9, "lag": 4}],
    }, coordinator=2)
    assert d.to_dict() == {
        "group": "g", "state": "stable",
        "members": [{"member_id": "m", "client_id": "c",
                     "assignment": [{"topic": T, "partition": 0}, {"topic": T, "partition": 1}]}],
        "offsets": [{"topic": T, "partition": 0, "committed": 5, "high_watermark": 9, "lag": 4}],
    }
    assert d.coordinator == 2 and d.assignor == "uniform"

"""Consumer groups against real broker processes, driven over the wire protocol directly.

What a consumer relies on: every partition of a subscribed topic is owned by exactly one
member; a member joining or dying moves only the partitions that must move (members that
keep a partition never see it taken away); a member that stops heartbeating loses its
partitions to the others; a committed offset survives the coordinator's SIGKILL and a
whole-cluster restart; every bad request gets a clear coded error.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from strata.client.errors import ErrorCode, StrataError
from strata.client.protocol import Api
from tests.integration.cluster import LocalCluster
from tests.integration.rawclient import RawClient

pytestmark = pytest.mark.integration

TOPIC = "events"
PARTITIONS = 12
RETRY = {ErrorCode.NOT_COORDINATOR, ErrorCode.COORDINATOR_NOT_AVAILABLE, ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
         ErrorCode.TIMED_OUT}


class GroupClient:
    """Finds a group's coordinator and sends it requests, following it when it moves."""

    def __init__(self, client: RawClient, group: str, timeout_s: float = 60.0) -> None:
        self.client = client
        self.group = group
        self.timeout_s = timeout_s
        self.coordinator = -1

    async def find(self) -> int:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                await self.client.metadata([])
                hdr, _ = await (await self.client._any()).request(
                    Api.FIND_COORDINATOR, {"group": self.group}, timeout=5.0, raise_on_error=False)
                if hdr["err"] == 0:
                    self.coordinator = hdr["coordinator"]
                    return self.coordinator
                assert ErrorCode(hdr["err"]) in RETRY, hdr
            except StrataError:
                self.client._boot = None
            if time.monotonic() > deadline:
                raise TimeoutError(f"no coordinator found for {self.group}")
            await asyncio.sleep(0.05)

    async def call(self, api: Api, fields: dict) -> dict:
        """The coordinator's answer; retriable coordinator errors and lost connections are retried."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            if self.coordinator < 0:
                await self.find()
            try:
                hdr, _ = await (await self.client.conn(self.coordinator)).request(
                    api, {"group": self.group, **fields}, timeout=10.0, raise_on_error=False)
                if hdr["err"] == 0 or ErrorCode(hdr["err"]) not in RETRY:
                    return hdr
            except (StrataError, OSError):
                self.client.conns.pop(self.coordinator, None)
            self.coordinator = -1
            if time.monotonic() > deadline:
                raise TimeoutError(f"{api.name} for {self.group} never succeeded")
            await asyncio.sleep(0.05)

    async def commit(self, offsets: dict[int, int], member_id: str = "", member_epoch: int = -1,
                     topic: str = TOPIC) -> dict:
        return await self.call(Api.OFFSET_COMMIT, {
            "member_id": member_id, "member_epoch": member_epoch,
            "partitions": [{"topic": topic, "partition": p, "offset": o} for p, o in offsets.items()]})

    async def fetch(self) -> dict[tuple[str, int], int]:
        hdr = await self.call(Api.OFFSET_FETCH, {"partitions": None})
        assert hdr["err"] == 0, hdr
        return {(p["topic"], p["partition"]): p["offset"] for p in hdr["partitions"]}


@dataclass
class Member:
    """A well-behaved member as docs/groups.md tells a client to be."""

    gc: GroupClient
    session_timeout_ms: int = 4000
    member_id: str = ""
    epoch: int = 0
    owned: set[int] = field(default_factory=set)
    #: Partitions ever taken out of this member's assignment.
    removed: set[int] = field(default_factory=set)

    async def heartbeat(self) -> dict:
        fields = {"member_id": self.member_id, "member_epoch": self.epoch,
                  "session_timeout_ms": self.session_timeout_ms,
                  "owned": [{"topic": TOPIC, "partitions": sorted(self.owned)}]}
        if self.epoch == 0:
            fields.update(subscribed=[TOPIC], assignor="uniform")
        hdr = await self.gc.call(Api.GROUP_HEARTBEAT, fields)
        assert hdr["err"] == 0, hdr
        self.member_id, self.epoch = hdr["member_id"], hdr["member_epoch"]
        new = {p for t in hdr["assignment"] for p in t["partitions"] if t["topic"] == TOPIC}
        self.removed |= self.owned - new
        self.owned = new
        return hdr


def assert_exclusive(members: list[Member]) -> None:
    seen: dict[int, str] = {}
    for m in members:
        for p in m.owned:
            assert p not in seen, f"partition {p} owned by {seen[p]} and {m.member_id}"
            seen[p] = m.member_id


async def settle(members: list[Member], rounds: int = 100) -> None:
    """Heartbeat round after round until the members together own every partition and the
    coordinator has nothing left to move (bounded)."""
    for _ in range(rounds):
        for m in members:
            await m.heartbeat()
            assert_exclusive(members)
        owned = sorted(p for m in members for p in m.owned)
        if owned == list(range(PARTITIONS)):
            desc = await members[0].gc.call(Api.DESCRIBE_GROUPS, {"groups": [members[0].gc.group]})
            if desc["groups"][0]["state"] == "stable":
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"group never settled: {[sorted(m.owned) for m in members]}")


def describe(hdr: dict) -> dict:
    assert hdr["err"] == 0, hdr
    return hdr["groups"][0]


def test_membership_rebalances_incrementally_and_bad_requests_get_coded_errors(tmp_path: Path) -> None:
    with LocalCluster(root=tmp_path, n=3) as cluster:
        cluster.wait_ready()

        async def scenario():
            client = RawClient(cluster.bootstrap)
            try:
                await client.create_topic(TOPIC, PARTITIONS, 3)
                gc = GroupClient(client, "readers")
                members = [Member(gc) for _ in range(3)]
                await settle(members)
                assert sorted(len(m.owned) for m in members) == [4, 4, 4]

                # A fourth joins: the others only give partitions up, never lose one they keep.
                before = {m.member_id: set(m.owned) for m in members}
                members.append(Member(gc))
                await settle(members)
                assert sorted(len(m.owned) for m in members) == [3, 3, 3, 3]
                for m in members[:3]:
                    kept = before[m.member_id] & m.owned
                    assert len(kept) == 3
                    assert not (kept & m.removed), "a retained partition was taken away and given back"

                d = describe(await gc.call(Api.DESCRIBE_GROUPS, {"groups": ["readers"]}))
                assert d["state"] == "stable" and d["assignor"] == "uniform"
                assert {x["member_id"]: sorted(x["assignment"][0]["partitions"]) for x in d["members"]} == {
                    m.member_id: sorted(m.owned) for m in members}
                assert all(x["client_id"] == "rawclient" for x in d["members"])

                # Commits: a member commits what it owns.
                m0 = members[0]
                mine = sorted(m0.owned)
                ok = await gc.commit({p: 10 + p for p in mine}, m0.member_id, m0.epoch)
                assert ok["err"] == 0 and all(p["err"] == 0 for p in ok["partitions"]), ok
                # ... but not a partition another member owns.
                other = sorted(members[1].owned)[0]
                bad = await gc.commit({other: 5}, m0.member_id, m0.epoch)
                assert bad["partitions"][0]["err"] == ErrorCode.STALE_MEMBER_EPOCH
                assert "does not own" in bad["partitions"][0]["msg"]
                # ... nor from an epoch it never had.
                bad = await gc.commit({mine[0]: 5}, m0.member_id, m0.epoch + 10)
                assert bad["err"] == ErrorCode.FENCED_MEMBER_EPOCH, bad
                bad = await gc.commit({mine[0]: 5}, "no-such-member", 3)
                assert bad["err"] == ErrorCode.UNKNOWN_MEMBER_ID, bad
                # A member commit to a group that does not exist.
                bad = await GroupClient(client, "nobody-here").commit({0: 1}, "someone", 1)
                assert bad["err"] == ErrorCode.GROUP_ID_NOT_FOUND and "does not exist" in bad["msg"], bad
                # A reset (admin commit) while the group has live members.
                bad = await gc.commit({0: 0})
                assert bad["err"] == ErrorCode.NON_EMPTY_GROUP and "live members" in bad["msg"], bad
                # Deleting a live group is refused; describing an unknown group is a coded error.
                hdr = await gc.call(Api.DELETE_GROUPS, {"groups": ["readers"]})
                assert hdr["groups"][0]["err"] == ErrorCode.NON_EMPTY_GROUP, hdr
                hdr = await GroupClient(client, "ghost").call(Api.DESCRIBE_GROUPS, {"groups": ["ghost"]})
                assert hdr["groups"][0]["err"] == ErrorCode.GROUP_ID_NOT_FOUND, hdr
                hdr = await GroupClient(client, "bad").call(Api.GROUP_HEARTBEAT, {
                    "member_epoch": 0, "subscribed": [TOPIC], "assignor": "no-such-assignor"})
                assert hdr["err"] == ErrorCode.UNSUPPORTED_ASSIGNOR, hdr
                # Nothing of that reached the committed offsets.
                assert await gc.fetch() == {(TOPIC, p): 10 + p for p in mine}

                # One member stops heartbeating: within its session its partitions move to the others.
                dead = members.pop()
                orphaned = set(dead.owned)
                before = {m.member_id: set(m.owned) for m in members}
                deadline = time.monotonic() + dead.session_timeout_ms / 1000 + 30
                while not orphaned <= {p for m in members for p in m.owned}:
                    assert time.monotonic() < deadline, "the dead member's partitions never moved"
                    for m in members:
                        await m.heartbeat()
                        assert_exclusive(members)
                    await asyncio.sleep(0.1)
                await settle(members)
                for m in members:
                    assert before[m.member_id] <= m.owned and not (before[m.member_id] & m.removed)
                # The dead member, come back as a zombie, is fenced.
                hdr = await gc.call(Api.GROUP_HEARTBEAT, {"member_id": dead.member_id, "member_epoch": dead.epoch})
                assert hdr["err"] == ErrorCode.FENCED_MEMBER_EPOCH and "session timeout" in hdr["msg"], hdr
                bad = await gc.commit({sorted(orphaned)[0]: 99}, dead.member_id, dead.epoch)
                assert bad["err"] == ErrorCode.FENCED_MEMBER_EPOCH, bad

                # Everyone leaves: the group is empty, and now a reset and a delete are accepted.
                for m in members:
                    hdr = await gc.call(Api.GROUP_HEARTBEAT, {"member_id": m.member_id, "member_epoch": -1})
                    assert hdr["err"] == 0 and hdr["member_epoch"] == -1
                assert describe(await gc.call(Api.DESCRIBE_GROUPS, {"groups": ["readers"]}))["state"] == "empty"
                ok = await gc.commit({p: 0 for p in range(PARTITIONS)})
                assert ok["err"] == 0 and all(p["err"] == 0 for p in ok["partitions"]), ok
                assert await gc.fetch() == {(TOPIC, p): 0 for p in range(PARTITIONS)}
                hdr = await gc.call(Api.LIST_GROUPS, {})
                assert {"group": "readers", "state": "empty"} in hdr["groups"]
                hdr = await gc.call(Api.DELETE_GROUPS, {"groups": ["readers"]})
                assert hdr["groups"][0]["err"] == 0, hdr
                hdr = await gc.call(Api.DESCRIBE_GROUPS, {"groups": ["readers"]})
                assert hdr["groups"][0]["err"] == ErrorCode.GROUP_ID_NOT_FOUND
            finally:
                await client.close()

        asyncio.run(scenario())


GROUPS = [f"g{i}" for i in range(8)]


def test_committed_offsets_survive_coordinator_kill_and_whole_cluster_restart(tmp_path: Path) -> None:
    cluster = LocalCluster(root=tmp_path, n=3)
    try:
        cluster.start()
        cluster.wait_ready()
        expected: dict[str, dict[tuple[str, int], int]] = {}
        victim: list[int] = []

        async def commit_kill_check():
            client = RawClient(cluster.bootstrap)
            try:
                await client.create_topic(TOPIC, PARTITIONS, 3)
                # Admin commits for several groups (spread over several coordinators)...
                for i, g in enumerate(GROUPS):
                    gc = GroupClient(client, g)
                    offs = {p: 100 * i + p for p in range(PARTITIONS)}
                    hdr = await gc.commit(offs)
                    assert hdr["err"] == 0 and all(p["err"] == 0 for p in hdr["partitions"]), hdr
                    expected[g] = {(TOPIC, p): o for p, o in offs.items()}
                # ... and member commits from a live group, then a later commit that supersedes them.
                gc = GroupClient(client, "live")
                m = Member(gc, session_timeout_ms=60_000)
                await settle([m])
                for round_ in range(3):
                    hdr = await gc.commit({p: 1000 + round_ for p in m.owned}, m.member_id, m.epoch)
                    assert hdr["err"] == 0 and all(p["err"] == 0 for p in hdr["partitions"]), hdr
                expected["live"] = {(TOPIC, p): 1002 for p in range(PARTITIONS)}
                assert await gc.fetch() == expected["live"]

                # SIGKILL the live group's coordinator: the coordinator moves, nothing committed is lost.
                old = await gc.find()
                victim.append(old)
                cluster.kill(old)
                client.conns.pop(old, None)
                deadline = time.monotonic() + 60
                while (await gc.find()) == old:
                    assert time.monotonic() < deadline, "the coordinator never moved"
                    await asyncio.sleep(0.1)
                for g, offs in expected.items():
                    assert await GroupClient(client, g).fetch() == offs, g
                # The member carries on with the new coordinator: same id, same epoch, same partitions.
                owned = set(m.owned)
                await m.heartbeat()
                assert m.owned == owned
                hdr = await gc.commit({p: 2000 for p in m.owned}, m.member_id, m.epoch)
                assert hdr["err"] == 0 and all(p["err"] == 0 for p in hdr["partitions"]), hdr
                expected["live"] = {(TOPIC, p): 2000 for p in range(PARTITIONS)}
                # A group deleted now stays deleted through the restart.
                hdr = await GroupClient(client, GROUPS[0]).call(Api.DELETE_GROUPS, {"groups": [GROUPS[0]]})
                assert hdr["groups"][0]["err"] == 0, hdr
                del expected[GROUPS[0]]
            finally:
                await client.close()

        asyncio.run(commit_kill_check())
        cluster.start(victim[0])
        cluster.wait_ready(victim[0])
        cluster.stop()
        cluster.start()
        cluster.wait_ready()

        async def check_after_restart():
            client = RawClient(cluster.bootstrap)
            try:
                for g, offs in expected.items():
                    assert await GroupClient(client, g).fetch() == offs, g
                hdr = await GroupClient(client, GROUPS[0]).call(Api.DESCRIBE_GROUPS, {"groups": [GROUPS[0]]})
                assert hdr["groups"][0]["err"] == ErrorCode.GROUP_ID_NOT_FOUND, hdr
                assert await GroupClient(client, GROUPS[0]).fetch() == {}
                # Lag is reported against the partitions' high watermarks (nothing produced: 0).
                d = describe(await GroupClient(client, GROUPS[1]).call(Api.DESCRIBE_GROUPS,
                                                                        {"groups": [GROUPS[1]]}))
                assert {(o["partition"], o["committed"]) for o in d["offsets"]} == {
                    (p, 100 + p) for p in range(PARTITIONS)}
            finally:
                await client.close()

        asyncio.run(check_after_restart())
    finally:
        cluster.stop()

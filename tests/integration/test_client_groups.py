"""Consumer groups through the client library (sync and asyncio), against real brokers.

What a user of ``Consumer(group_id=...).subscribe()`` relies on: the group's partitions are
shared so that each has exactly one owner; a consumer joining takes partitions only from
members that must give some up, and the others keep receiving theirs without a revocation;
a consumer that dies (SIGKILL: it never leaves) loses its partitions to the others once its
session expires, and with commit-after-processing no record is skipped; a commit, once
acknowledged, survives the coordinator's SIGKILL and a whole-cluster restart; mistakes
(a zombie's commit, a reset of an active group, an unknown group) get clear coded errors.

One cluster serves the module; the last test restarts its brokers.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict

import pytest

from strata.client import AdminClient, Consumer, Producer, TopicPartition
from strata.client.aio import AIOAdminClient, AIOConsumer, AIOProducer
from strata.client.errors import (
    FencedMemberEpochError,
    GroupIdNotFoundError,
    NonEmptyGroupError,
    StaleMemberEpochError,
)
from tests.integration.cluster import wait_for

pytestmark = pytest.mark.integration

SESSION_MS = 2000
_ids = itertools.count()


class Recorder:
    """A rebalance listener that remembers every call."""

    def __init__(self) -> None:
        self.revoked: list[set[TopicPartition]] = []
        self.assigned: list[set[TopicPartition]] = []
        self.lost: list[set[TopicPartition]] = []

    def on_partitions_revoked(self, tps: set[TopicPartition]) -> None:
        self.revoked.append(set(tps))

    def on_partitions_assigned(self, tps: set[TopicPartition]) -> None:
        self.assigned.append(set(tps))

    def on_partitions_lost(self, tps: set[TopicPartition]) -> None:
        self.lost.append(set(tps))

    def ever_revoked(self) -> set[int]:
        return {tp.partition for s in self.revoked + self.lost for tp in s}


class Reader(threading.Thread):
    """A group member polling in its own thread; commits after processing each batch."""

    def __init__(self, bootstrap: str, group: str, topic: str, client_id: str = "reader") -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer(bootstrap=bootstrap, group_id=group, auto_offset_reset="earliest",
                                 session_timeout_ms=SESSION_MS, enable_auto_commit=False,
                                 client_id=client_id)
        self.listener = Recorder()
        self.consumer.subscribe([topic], listener=self.listener)
        self.records: dict[int, list[int]] = defaultdict(list)
        self.halt = threading.Event()
        self.failure: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                batch = self.consumer.poll(timeout_ms=100)
                for r in batch:
                    self.records[r.partition].append(r.offset)
                if batch:
                    self.consumer.commit()
        except BaseException as exc:  # surfaced by stop()
            self.failure = exc

    def owned(self) -> set[int]:
        return {tp.partition for tp in self.consumer.assignment()}

    def stop(self) -> None:
        self.halt.set()
        self.join(30)
        self.consumer.close()
        assert self.failure is None, f"reader failed: {self.failure!r}"


class Feeder(threading.Thread):
    """Produces to every partition in turn until stopped; remembers every acknowledged offset."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        super().__init__(daemon=True)
        self.producer = Producer(bootstrap, linger_ms=1)
        self.topic, self.partitions = topic, partitions
        self.halt = threading.Event()
        self.produced: dict[int, list[int]] = defaultdict(list)
        self.start()

    def run(self) -> None:
        while not self.halt.is_set():
            futs = [self.producer.send(self.topic, b"x", partition=p) for p in range(self.partitions)]
            for f in futs:
                m = f.result()
                self.produced[m.partition].append(m.offset)
            time.sleep(0.01)  # pacing only: a steady trickle, not a flood

    def stop(self) -> None:
        self.halt.set()
        self.join(30)
        self.producer.close()


def received_everything(feeder: Feeder, *sources: dict[int, list[int]]) -> bool:
    return all(
        set(offsets) <= {o for s in sources for o in s.get(p, ())}
        for p, offsets in feeder.produced.items()
    )


def assert_exclusive_cover(owned: list[set[int]], partitions: int) -> None:
    every = [p for s in owned for p in s]
    assert sorted(every) == list(range(partitions)), owned


def stable(admin: AdminClient, group: str, members: int) -> bool:
    d = admin.describe_group(group)
    return d.state == "stable" and len(d.members) == members


def test_members_share_partitions_and_a_joiner_does_not_disturb_retained_ones(cluster, admin):
    topic, group, n = "g-join", "g-join", 12
    admin.create_topic(topic, partitions=n, replication_factor=3)
    feeder = Feeder(cluster.bootstrap, topic, n)
    readers = [Reader(cluster.bootstrap, group, topic) for _ in range(3)]
    try:
        wait_for(lambda: stable(admin, group, 3), 30, "three members, stable")
        wait_for(lambda: sorted(p for r in readers for p in r.owned()) == list(range(n)), 30,
                 "every partition owned")
        before = [r.owned() for r in readers]
        assert_exclusive_cover(before, n)
        assert sorted(len(s) for s in before) == [4, 4, 4]

        readers.append(Reader(cluster.bootstrap, group, topic))
        wait_for(lambda: stable(admin, group, 4), 30, "four members, stable")
        wait_for(lambda: sorted(len(r.owned()) for r in readers) == [3, 3, 3, 3], 30,
                 "the joiner's share")
        after = [r.owned() for r in readers]
        assert_exclusive_cover(after, n)
        desc = admin.describe_group(group)
        assert sorted(tp.partition for m in desc.members for tp in m.assignment) == list(range(n))

        # Records keep arriving after the rebalance...
        mark = {p: offs[-1] for p, offs in list(feeder.produced.items())}
        wait_for(lambda: all(any(o > mark[p] for r in readers for o in r.records.get(p, ()))
                             for p in range(n)), 30, "records produced after the rebalance")
        feeder.stop()
        wait_for(lambda: received_everything(feeder, *(r.records for r in readers)), 30,
                 "every produced record consumed")

        for r, mine_before, mine_after in zip(readers[:3], before, after[:3], strict=True):
            retained = mine_before & mine_after
            assert len(retained) == 3, (mine_before, mine_after)
            # ... and a member never lost a partition it kept (no revocation, no pause) ...
            assert not (retained & r.listener.ever_revoked()), r.listener.revoked
            assert retained <= {tp.partition for s in r.listener.assigned for tp in s}
            for p in retained:
                # ... and got every record of it, in order, from its first one to the end.
                got = r.records[p]
                assert got == sorted(got) and len(set(got)) == len(got)
                assert got == [o for o in feeder.produced[p] if o >= got[0]]
        assert not readers[3].listener.revoked  # the joiner only received

        # Mistakes get clear coded errors.
        a, b = readers[0], readers[1]
        theirs = TopicPartition(topic, sorted(b.owned())[0])
        with pytest.raises(StaleMemberEpochError, match="does not own"):
            a.consumer.commit({theirs: 1})
        with pytest.raises(NonEmptyGroupError, match="live members"):
            admin.reset_offsets(group, topic, "earliest")
        with pytest.raises(NonEmptyGroupError):
            admin.delete_group(group)
        with pytest.raises(GroupIdNotFoundError, match="does not exist"):
            admin.describe_group("no-such-group")
        with Consumer(bootstrap=cluster.bootstrap, group_id=group) as manual:
            manual.assign([TopicPartition(topic, 0)])
            with pytest.raises(NonEmptyGroupError):
                manual.commit({TopicPartition(topic, 0): 1})
        with Consumer(bootstrap=cluster.bootstrap) as no_group:
            with pytest.raises(ValueError, match="group_id"):
                no_group.subscribe([topic])
            with pytest.raises(ValueError, match="group_id"):
                no_group.commit()
    finally:
        feeder.stop()
        for r in readers:
            r.stop()
    # Everyone left on close: the group is empty at once (no session timeout to wait for).
    assert admin.describe_group(group).state == "empty"
    assert group in [g.group for g in admin.list_groups()]


VICTIM = r"""
import sys
from strata.client import Consumer
bootstrap, topic, group = sys.argv[1:4]
c = Consumer(bootstrap=bootstrap, group_id=group, auto_offset_reset="earliest",
             session_timeout_ms=int(sys.argv[4]), enable_auto_commit=False, client_id="victim")
c.subscribe([topic])
while True:
    batch = c.poll(timeout_ms=100, max_records=3)
    for r in batch:
        print(r.partition, r.offset, flush=True)   # "processing"
    if batch:
        c.commit()                                  # at least once: commit after processing
"""


def test_a_killed_member_loses_its_partitions_and_no_record_is_skipped(cluster, admin):
    topic, group, n = "g-kill", "g-kill", 6
    admin.create_topic(topic, partitions=n, replication_factor=3)
    feeder = Feeder(cluster.bootstrap, topic, n)
    victim = subprocess.Popen(
        [sys.executable, "-c", VICTIM, cluster.bootstrap, topic, group, str(SESSION_MS)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    processed: dict[int, list[int]] = defaultdict(list)

    def read_victim() -> None:
        assert victim.stdout is not None
        for line in victim.stdout:
            p, o = line.split()
            processed[int(p)].append(int(o))

    reader_thread = threading.Thread(target=read_victim, daemon=True)
    reader_thread.start()
    readers: list[Reader] = []
    try:
        wait_for(lambda: stable(admin, group, 1), 30, "the victim joined")
        readers = [Reader(cluster.bootstrap, group, topic, "survivor") for _ in range(2)]
        wait_for(lambda: stable(admin, group, 3), 30, "three members, stable")
        desc = admin.describe_group(group)
        (victim_member,) = [m for m in desc.members if m.client_id == "victim"]
        victims = {tp.partition for tp in victim_member.assignment}
        assert len(victims) == 2
        wait_for(lambda: all(processed.get(p) for p in victims), 30, "the victim processing")

        victim.send_signal(signal.SIGKILL)  # no leave, no last commit
        victim.wait(30)
        reader_thread.join(30)

        def moved() -> bool:
            d = admin.describe_group(group)
            return (d.state == "stable" and {m.client_id for m in d.members} == {"survivor"}
                    and sorted(tp.partition for m in d.members for tp in m.assignment)
                    == list(range(n)))
        wait_for(moved, 30, "the victim's partitions moved to the survivors")
        # ... and the survivors took them up (each partition held by exactly one of them).
        wait_for(lambda: sorted(p for r in readers for p in r.owned()) == list(range(n)), 30,
                 "the survivors holding every partition")

        feeder.stop()
        wait_for(lambda: received_everything(feeder, processed, *(r.records for r in readers)),
                 30, "every produced record processed")
        for p in victims:
            # The survivors went on from the victim's last commit: at most a redelivery.
            got = sorted(o for r in readers for o in r.records.get(p, ()))
            assert got and got[0] <= max(processed[p]) + 1
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait(30)
        feeder.stop()
        for r in readers:
            r.stop()


def test_asyncio_members_rebalance_commit_and_a_zombie_is_fenced(cluster):
    topic, group, n = "g-aio", "g-aio", 4

    class AsyncRecorder(Recorder):
        async def on_partitions_assigned(self, tps: set[TopicPartition]) -> None:
            await asyncio.sleep(0)
            self.assigned.append(set(tps))

    async def drain(consumers: list[AIOConsumer], want: int) -> list:
        got: list = []
        deadline = time.monotonic() + 30
        while len(got) < want and time.monotonic() < deadline:
            for c in consumers:
                got += await c.poll(timeout_ms=100)
        return got

    async def wait_async(cond, what: str) -> None:
        deadline = time.monotonic() + 30
        while not await cond():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    async def scenario() -> None:
        async with AIOAdminClient(cluster.bootstrap) as admin:
            await admin.create_topic(topic, partitions=n, replication_factor=3)
            async with AIOProducer(cluster.bootstrap) as p:
                for i in range(40):
                    await p.send_and_wait(topic, b"a%d" % i, partition=i % n)
            listeners = [AsyncRecorder(), AsyncRecorder()]
            cs = [AIOConsumer(bootstrap=cluster.bootstrap, group_id=group, session_timeout_ms=1000,
                              auto_offset_reset="earliest", enable_auto_commit=True,
                              auto_commit_interval_ms=200) for _ in range(2)]
            for c, lst in zip(cs, listeners, strict=True):
                await c.start()
                c.subscribe([topic], listener=lst)

            async def shared() -> bool:
                d = await admin.describe_group(group)
                return d.state == "stable" and sorted(len(m.assignment) for m in d.members) == [2, 2]
            await wait_async(shared, "two members with two partitions each")
            got = await drain(cs, 40)
            assert len(got) == 40 and len({(r.partition, r.offset) for r in got}) == 40
            for c in cs:
                await c.commit()
                for tp in c.assignment():
                    assert await c.committed(tp) == await c.position(tp)

            # One leaves: the other takes its partitions at once and keeps its own.
            kept = cs[1].assignment()
            await cs[0].close()

            async def took_all() -> bool:
                return len(cs[1].assignment()) == n
            await wait_async(took_all, "the remaining member owning every partition")
            assert not listeners[1].revoked
            assert kept <= {tp for s in listeners[1].assigned for tp in s}

            # A zombie: its heartbeats stop (a hung process), the coordinator expires it.
            zombie = cs[1]
            assert zombie._group is not None
            zombie._group._hb_task.cancel()

            async def expired() -> bool:
                return (await admin.describe_group(group)).state == "empty"
            await wait_async(expired, "the zombie's session to expire")
            with pytest.raises(FencedMemberEpochError, match="rejoined"):
                await zombie.commit({TopicPartition(topic, 0): 1})

            async def lost() -> bool:  # it dropped what it held, without committing
                return bool(listeners[1].lost)
            await wait_async(lost, "on_partitions_lost")

            async def rejoined() -> bool:
                return len(zombie.assignment()) == n
            await wait_async(rejoined, "the fenced member rejoining")
            await zombie.commit()
            await zombie.close()
            assert (await admin.describe_group(group)).state == "empty"

    asyncio.run(scenario())


def test_commits_survive_the_coordinator_kill_and_a_full_restart(cluster, admin):
    topic, group, n = "g-durable", "g-durable", 6
    admin.create_topic(topic, partitions=n, replication_factor=3)
    with Producer(cluster.bootstrap) as p:
        for i in range(60):
            p.send(topic, b"d%d" % i, partition=i % n)
    c = Consumer(bootstrap=cluster.bootstrap, group_id=group, auto_offset_reset="earliest",
                 session_timeout_ms=3000, enable_auto_commit=False)
    try:
        c.subscribe([topic])
        wait_for(lambda: len(c.assignment()) == n, 30, "the member owning every partition")
        tps = [TopicPartition(topic, p) for p in range(n)]
        first = {tp: 3 + tp.partition for tp in tps}
        c.commit(first)

        coordinator = admin.find_coordinator(group)
        cluster.kill(coordinator)
        assert {tp: c.committed(tp) for tp in tps} == first  # from the new coordinator
        assert admin.find_coordinator(group) != coordinator
        second = {tp: 7 + tp.partition for tp in tps}
        # The member carries on under the new coordinator (rejoining if it had to).
        wait_for(lambda: c.commit(second) is None, 30, "a commit under the new coordinator")
        cluster.start(coordinator)
        cluster.wait_ready(coordinator)
    finally:
        c.close()

    for b in cluster.brokers:
        cluster.kill(b)
    cluster.start()
    cluster.wait_ready()
    with Consumer(bootstrap=cluster.bootstrap, group_id=group) as after:
        assert {tp: after.committed(tp) for tp in tps} == second
    with AdminClient(cluster.bootstrap) as fresh:
        d = fresh.describe_group(group)
        assert d.state == "empty"
        assert {(o.partition, o.committed) for o in d.offsets} == {
            (tp.partition, off) for tp, off in second.items()}

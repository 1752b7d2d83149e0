"""The broker's peer watch: a silent peer's quiesced groups are woken after one election
timeout, later when this broker was itself starved of CPU (it cannot judge its peers then),
and only those that need it; a new partition's first vote request is not lost while the
partition is being opened; full garbage collections skip the replicas' heap."""

from __future__ import annotations

import asyncio
import gc
import logging
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from strata.broker.config import BrokerConfig
from strata.broker.raft.membership import Membership
from strata.broker.raft.messages import Message, VoteRequest, VoteResponse, from_wire
from strata.broker.raft.node import Role
from strata.broker.replication.manager import (
    LAG_BACKOFF,
    LAG_CAP_TIMEOUTS,
    OBJECTS_PER_REPLICA,
    PEER_GAP_MEMORY_TICKS,
    REFREEZE_SHARE,
    Assignment,
    FrozenHeap,
    LivenessClock,
    ReplicaManager,
)
from strata.broker.replication.replica import Replica
from strata.broker.replication.transport import PeerTransport
from strata.client.tasks import TaskOwner
from strata.storage import GroupCommit

PEERS = {1: ("127.0.0.1", 1), 2: ("127.0.0.1", 2), 3: ("127.0.0.1", 3)}


class FakeReplica:
    def __init__(self) -> None:
        self.silent: list[tuple[int, int]] = []

    def peer_silent(self, peer: int, silent_for: int, silent: object) -> None:
        self.silent.append((peer, silent_for))


def manager(tmp_path: Path) -> tuple[ReplicaManager, FakeReplica]:
    cfg = BrokerConfig(node_id=1, listen=PEERS[1], peers=PEERS, data_dir=str(tmp_path))
    m = ReplicaManager(cfg, group_commit=GroupCommit(), transport=PeerTransport(1, PEERS),
                       tasks=TaskOwner(logging.getLogger("test"), "test"), on_leadership=lambda r: None)
    r = FakeReplica()
    m.replicas[("t", 0)] = r  # type: ignore[assignment]
    return m, r


def run_ticks(m: ReplicaManager, n: int, late: float = 0.0, heard: tuple[int, ...] = (3,)) -> None:
    """``n`` ticks of the ticker in which only the brokers ``heard`` send frames, each
    ``late`` ticks late."""
    for _ in range(n):
        m.ticks += 1
        if m.liveness.tick(late):
            m._watch_peers()
        for peer in heard:
            m.deliver(peer, [], memoryview(b""))


def test_a_healthy_broker_wakes_a_silent_peers_groups_after_one_election_timeout(tmp_path: Path) -> None:
    m, r = manager(tmp_path)
    election = m.config.raft.election_ticks
    run_ticks(m, election, late=0.1)  # timer jitter is not starvation
    assert r.silent == []
    run_ticks(m, 1)
    assert r.silent == [(2, election + 1)]
    run_ticks(m, 5)
    assert r.silent == [(2, election + 1)], "woken once per silence, not every tick"


def test_a_starved_broker_gives_its_peers_longer_in_proportion_to_its_own_lag(tmp_path: Path) -> None:
    m, r = manager(tmp_path)
    election = m.config.raft.election_ticks
    # One tick came two ticks late (1.8 beyond the slack): the clock stands still for that
    # tick and the next two (2 x 1.8 = 3.6 ticks of hold), so the silence needs 3 more ticks.
    run_ticks(m, 1, late=2.0)
    run_ticks(m, election + 2)
    assert r.silent == []
    run_ticks(m, 1)
    assert r.silent == [(2, election + 1)]


def test_the_hold_is_capped_so_a_dead_peer_is_still_noticed(tmp_path: Path) -> None:
    m, r = manager(tmp_path)
    election = m.config.raft.election_ticks
    run_ticks(m, 1, late=1000.0)  # a long stall
    run_ticks(m, LAG_CAP_TIMEOUTS * election + 1)
    assert r.silent and r.silent[0][0] == 2


def test_a_broker_that_stays_starved_still_judges_at_a_third_of_the_speed() -> None:
    clock = LivenessClock(cap_ticks=30)
    counted = sum(clock.tick(1.0) for _ in range(99))  # every tick a whole tick late
    assert counted == 33, "one tick in 1 + LAG_BACKOFF counts however late they come"
    assert clock.hold <= 30
    counted = sum(clock.tick(0.0) for _ in range(100))
    assert counted == 100 - 30, "the hold left (at the cap) is still held, two ticks in every three"


class RecordingTransport:
    """Stands in for the peer transport: what the replicas send, and nothing on the wire."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, list[Any], Message]] = []

    def send(self, to: int, group: list[Any], fields: list[Any], payload: Any) -> None:
        self.sent.append((to, group, from_wire(fields, payload or b"")))

    def ping(self) -> None:
        pass


def test_a_vote_request_for_a_partition_still_being_opened_is_answered_once_it_opens(tmp_path: Path) -> None:
    """A new topic is opened in slices; the preferred replica's first (pre-)vote request must
    not be lost on a broker that has not reached its partition yet."""

    async def run() -> list[tuple[int, list[Any], Message]]:
        cfg = BrokerConfig(node_id=2, listen=PEERS[2], peers=PEERS, data_dir=str(tmp_path))
        transport = RecordingTransport()
        m = ReplicaManager(cfg, group_commit=GroupCommit(), transport=transport,  # type: ignore[arg-type]
                           tasks=TaskOwner(logging.getLogger("test"), "test"), on_leadership=lambda r: None)
        wanted = {("t", 0): Assignment([1, 2, 3], 7, {})}
        assert m.reconcile(wanted, keep=(), on_commit_for=lambda k: None, budget_s=-1.0), "nothing opened yet"
        fields, _ = VoteRequest(1, 2, 1, -1, 0, pre=True).to_wire()
        m.deliver(1, [[["t", 0], fields, 0, 0]], memoryview(b""))
        # A message for a partition that is not assigned here is not kept.
        m.deliver(1, [[["other", 0], fields, 0, 0]], memoryview(b""))
        assert not m.reconcile(wanted, keep=(), on_commit_for=lambda k: None)
        for _ in range(100):
            if transport.sent:
                break
            await asyncio.sleep(0.01)
        await m.stop()
        m.close()
        return transport.sent

    sent = asyncio.run(run())
    votes = [(to, msg) for to, group, msg in sent if isinstance(msg, VoteResponse)]
    assert votes == [(1, VoteResponse(2, 1, 1, True, pre=True))]


class SleepingGroup:
    """What ``Replica.peer_silent`` looks at: a quiesced group, led here or by a peer."""

    def __init__(self, node_id: int, leader: int) -> None:
        self.node_id = node_id
        self.node = SimpleNamespace(quiesced=True, leader=leader,
                                    role=Role.LEADER if leader == node_id else Role.FOLLOWER,
                                    membership=Membership(frozenset({1, 2, 3})))
        self.activity = 0
        self.woken: list[tuple[str, int]] = []

    def wake(self, cause: str, leader_silent: int = 0) -> None:
        self.woken.append((cause, leader_silent))


def test_a_silent_peer_wakes_the_groups_it_leads_and_only_marks_those_that_keep_their_quorum() -> None:
    led_by_2, led_here = SleepingGroup(1, leader=2), SleepingGroup(1, leader=1)
    for g in (led_by_2, led_here):
        Replica.peer_silent(g, 2, 12, {2})  # type: ignore[arg-type]
    assert led_by_2.woken == [("leader_silent", 12)], "its followers must elect another leader"
    assert led_here.woken == [], "1 and 3 are still a quorum: nothing to decide"
    assert led_here.activity == 1, "but its in-sync replicas changed: the controller heartbeat looks again"
    Replica.peer_silent(led_here, 3, 11, {2, 3})  # type: ignore[arg-type]
    assert led_here.woken == [("quorum_silent", 0)], "without a quorum it must wake to step down"


def test_the_replicas_heap_is_frozen_once_opened_and_collected_again_after_enough_removals() -> None:
    """Full collections skip what the replicas hold (a pause of most of a second at 5,000
    partitions); what removed replicas leave in cycles is collected once it adds up."""

    class Cycle:
        me: Cycle

    heap = FrozenHeap()
    try:
        gc.unfreeze()
        garbage = Cycle()
        garbage.me = garbage
        ref = weakref.ref(garbage)
        heap.opened()
        heap.settle()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        del garbage
        gc.collect()
        assert ref() is not None, "a frozen cycle waits"
        for _ in range(int(REFREEZE_SHARE * frozen) // OBJECTS_PER_REPLICA):
            heap.removed()
        heap.settle()
        assert ref() is not None, "not yet: one pause for a good share of the heap, not one per removal"
        heap.removed()
        heap.removed()
        heap.settle()
        assert ref() is None
        assert gc.get_freeze_count() > 0, "and the rest is frozen again"
    finally:
        gc.unfreeze()


def test_a_peer_that_lagged_lately_is_given_that_much_more_before_its_groups_are_woken(tmp_path: Path) -> None:
    m, r = manager(tmp_path)
    election = m.config.raft.election_ticks
    assert m.silence_limit(2) == election
    run_ticks(m, 8)  # broker 2 silent for 8 ticks (under a timeout), then heard again
    m.deliver(2, [], memoryview(b""))
    assert r.silent == []
    assert m.silence_limit(2) == max(election, int(LAG_BACKOFF * 8))
    run_ticks(m, 2 * 8)  # a lag as long again is not taken for a death
    assert r.silent == []
    run_ticks(m, 1)
    assert r.silent and r.silent[0][0] == 2, "a longer silence still is"
    assert m.silence_limit(3) == election, "a peer that kept time is judged as before"
    run_ticks(m, LAG_CAP_TIMEOUTS * election)
    m.deliver(2, [], memoryview(b""))
    assert m.silence_limit(2) == LAG_CAP_TIMEOUTS * election, "at most the cap"
    run_ticks(m, PEER_GAP_MEMORY_TICKS + 1, heard=(2, 3))
    assert m.silence_limit(2) == election, "and only for a while"

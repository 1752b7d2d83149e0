"""The broker's peer watch: a silent peer's quiesced groups are woken after one election
timeout, later when this broker was itself starved of CPU (it cannot judge its peers then)."""

from __future__ import annotations

import logging
from pathlib import Path

from strata.broker.config import BrokerConfig
from strata.broker.replication.manager import LAG_CAP_TIMEOUTS, OwnLag, ReplicaManager
from strata.broker.replication.transport import PeerTransport
from strata.client.tasks import TaskOwner
from strata.storage import GroupCommit

PEERS = {1: ("127.0.0.1", 1), 2: ("127.0.0.1", 2), 3: ("127.0.0.1", 3)}


class FakeReplica:
    def __init__(self) -> None:
        self.silent: list[tuple[int, int]] = []

    def peer_silent(self, peer: int, silent_for: int) -> None:
        self.silent.append((peer, silent_for))


def manager(tmp_path: Path) -> tuple[ReplicaManager, FakeReplica]:
    cfg = BrokerConfig(node_id=1, listen=PEERS[1], peers=PEERS, data_dir=str(tmp_path))
    m = ReplicaManager(cfg, group_commit=GroupCommit(), transport=PeerTransport(1, PEERS),
                       tasks=TaskOwner(logging.getLogger("test"), "test"), on_leadership=lambda r: None)
    r = FakeReplica()
    m.replicas[("t", 0)] = r  # type: ignore[assignment]
    return m, r


def run_ticks(m: ReplicaManager, n: int, late: float = 0.0) -> None:
    """``n`` ticks in which only broker 3 is heard from, each ``late`` ticks late."""
    for _ in range(n):
        m.ticks += 1
        m.own_lag.note(late)
        m.peer_heard[3] = m.ticks
        m._watch_peers()


def test_a_healthy_broker_wakes_a_silent_peers_groups_after_one_election_timeout(tmp_path: Path) -> None:
    m, r = manager(tmp_path)
    election = m.config.raft.election_ticks
    run_ticks(m, election)
    assert r.silent == []
    run_ticks(m, 1)
    assert r.silent == [(2, election + 1)]
    run_ticks(m, 5)
    assert r.silent == [(2, election + 1)], "woken once per silence, not every tick"


def test_a_starved_broker_gives_its_peers_longer_in_proportion_to_its_own_lag(tmp_path: Path) -> None:
    m, r = manager(tmp_path)
    election = m.config.raft.election_ticks
    run_ticks(m, election + 1, late=1.0)  # every tick came a whole tick late
    assert r.silent == []
    limit = m.silence_limit()
    assert limit > election
    for _ in range(200):
        if r.silent:
            break
        run_ticks(m, 1, late=1.0)
    assert r.silent and r.silent[0][0] == 2
    assert r.silent[0][1] <= LAG_CAP_TIMEOUTS * election + 1, "the back-off is capped"


def test_the_back_off_ends_when_the_broker_catches_up(tmp_path: Path) -> None:
    m, r = manager(tmp_path)
    election = m.config.raft.election_ticks
    m.own_lag.note(100.0)  # one long stall
    assert m.silence_limit() == LAG_CAP_TIMEOUTS * election
    for _ in range(2 * election):
        m.own_lag.note(0.0)
    assert m.silence_limit() == election


def test_own_lag_sums_the_lateness_of_the_last_window_of_ticks() -> None:
    lag = OwnLag(4)
    for late in (1.0, -0.5, 2.0, 0.5):  # early ticks count as on time
        lag.note(late)
    assert lag.total == 3.5
    lag.note(0.0)  # the first (1.0) leaves the window
    assert lag.total == 2.5

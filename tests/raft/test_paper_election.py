"""Raft paper §5.2 (leader election), plus pre-vote (§9.6) and check-quorum, etcd-style."""

from __future__ import annotations

import pytest

from strata.broker.raft.messages import (
    Append,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    VoteRequest,
    VoteResponse,
)
from strata.broker.raft.node import HardState, Role

from .harness import Network, drain, log_with, node


def test_starts_as_follower():
    n = node(1, [1, 2, 3])
    assert n.role is Role.FOLLOWER and n.term == 0 and n.leader is None


@pytest.mark.parametrize("role", ["follower", "candidate", "leader"])
def test_higher_term_message_makes_any_role_a_follower(role):
    """§5.1: a server that sees a larger term adopts it and becomes a follower."""
    n = node(1, [1, 2, 3])
    if role != "follower":
        n.campaign()
        drain(n)
    if role == "leader":
        n.step(VoteResponse(2, 1, n.term, True))
        drain(n)
        assert n.role is Role.LEADER
    n.step(Append(2, 1, 7, -1, 0, 0, -1, 7))
    assert n.role is Role.FOLLOWER and n.term == 7 and n.leader == 2


def test_stale_term_messages_are_ignored():
    n = node(1, [1, 2, 3], hard_state=HardState(term=5))
    n.step(Append(2, 1, 4, -1, 0, 0, -1, 4))
    assert n.term == 5 and n.leader is None
    # ...but the stale leader is told the current term, so that it steps down.
    assert any(isinstance(m, HeartbeatResponse) and m.term == 5 for m in drain(n))


def test_leader_broadcasts_heartbeats_every_interval():
    net = Network.of(3, heartbeat_interval=2)
    net.campaign(1)
    leader = net.nodes[1]
    drain(leader)
    leader.tick()
    assert not [m for m in drain(leader) if isinstance(m, Heartbeat)]
    leader.tick()
    hb = [m for m in drain(leader) if isinstance(m, Heartbeat)]
    assert sorted(m.dst for m in hb) == [2, 3]
    assert all(m.term == leader.term for m in hb)


def test_follower_starts_election_after_timeout_and_persists_before_asking():
    n = node(1, [1, 2, 3], election_timeout=10)
    for _ in range(19):
        if n.role is Role.CANDIDATE:
            break
        n.tick()
    assert n.role is Role.CANDIDATE and n.term == 1 and n.vote == 1
    rd = n.ready()
    # The vote requests carry our own vote: they must wait for the hard state.
    assert rd.hard_state == HardState(term=1, vote=1, configs=rd.hard_state.configs)
    assert not [m for m in rd.messages if isinstance(m, VoteRequest)]
    reqs = [m for m in n.advance(rd) if isinstance(m, VoteRequest)]
    assert sorted(m.dst for m in reqs) == [2, 3]
    assert all((m.term, m.last_offset, m.last_term) == (1, -1, 0) for m in reqs)


@pytest.mark.parametrize(
    ("size", "grants", "rejects", "role"),
    [
        (1, [], [], Role.LEADER),
        (3, [2], [], Role.LEADER),
        (3, [2, 3], [], Role.LEADER),
        (3, [], [2], Role.CANDIDATE),
        (3, [], [2, 3], Role.FOLLOWER),
        (5, [2], [], Role.CANDIDATE),
        (5, [2, 3], [], Role.LEADER),
        (5, [2], [3, 4], Role.CANDIDATE),
        (5, [], [2, 3, 4], Role.FOLLOWER),
    ],
)
def test_election_in_one_round(size, grants, rejects, role):
    """§5.2: a candidate wins with a majority, loses with a majority against it, else waits."""
    n = node(1, list(range(1, size + 1)))
    n.campaign()
    drain(n)
    for v in grants:
        n.step(VoteResponse(v, 1, 1, True))
    for v in rejects:
        n.step(VoteResponse(v, 1, 1, False))
    assert n.role is role
    assert n.term == 1


@pytest.mark.parametrize(
    ("voted", "candidate", "granted"),
    [(None, 2, True), (None, 3, True), (2, 2, True), (2, 3, False), (3, 2, False), (3, 3, True)],
)
def test_one_vote_per_term_first_come(voted, candidate, granted):
    n = node(1, [1, 2, 3], hard_state=HardState(term=1, vote=voted))
    n.step(VoteRequest(candidate, 1, 1, -1, 0))
    (resp,) = [m for m in drain(n) if isinstance(m, VoteResponse)]
    assert resp.granted is granted
    assert n.vote == (candidate if granted else voted)


def test_vote_grant_is_released_only_after_the_vote_is_persisted():
    n = node(1, [1, 2, 3])
    n.step(VoteRequest(2, 1, 1, -1, 0))
    rd = n.ready()
    assert rd.hard_state is not None and rd.hard_state.vote == 2
    assert not rd.messages
    assert [m.granted for m in n.advance(rd)] == [True]


def test_candidate_steps_down_on_append_from_leader_of_same_term():
    n = node(1, [1, 2, 3])
    n.campaign()
    drain(n)
    n.step(Append(2, 1, 1, -1, 0, 0, -1, 1))
    assert n.role is Role.FOLLOWER and n.leader == 2 and n.term == 1


def test_election_timeouts_are_randomized_in_t_to_2t():
    seen = set()
    for seed in range(40):
        n = node(1, [1, 2, 3], election_timeout=10, seed=seed)
        ticks = 0
        while n.role is Role.FOLLOWER:
            n.tick()
            ticks += 1
            assert ticks < 20
        seen.add(ticks)
    assert min(seen) >= 10 and max(seen) <= 19 and len(seen) > 3


def test_a_network_elects_exactly_one_leader():
    net = Network.of(5)
    net.campaign(3)
    roles = {i: n.role for i, n in net.nodes.items()}
    assert roles[3] is Role.LEADER
    assert sum(r is Role.LEADER for r in roles.values()) == 1
    assert all(n.leader == 3 for n in net.nodes.values())


# --- pre-vote ----------------------------------------------------------------------------------


def test_prevote_does_not_change_terms_when_it_fails():
    """A partitioned node with pre-vote does not inflate its term, so it cannot disrupt on rejoin."""
    net = Network.of(3, pre_vote=True)
    net.campaign(1)
    assert net.nodes[1].role is Role.LEADER
    term = net.nodes[1].term
    net.isolate(3)
    for _ in range(10):
        net.campaign(3)
    assert net.nodes[3].term == term
    net.heal()
    net.tick(1, 5)
    assert net.nodes[1].role is Role.LEADER and net.nodes[1].term == term


def test_prevote_then_vote_elects_and_persists_only_the_real_vote():
    net = Network.of(3, pre_vote=True)
    n = net.nodes[1]
    n.campaign()
    assert n.role is Role.PRE_CANDIDATE and n.term == 0
    rd = n.ready()
    assert rd.hard_state is None  # a pre-vote changes nothing durable...
    assert all(isinstance(m, VoteRequest) and m.pre and m.term == 1 for m in rd.messages)
    net.send(rd.messages + n.advance(rd))  # ...so it may go out at once
    assert n.role is Role.LEADER and n.term == 1


def test_prevote_rejected_when_candidate_log_is_behind():
    n = node(2, [1, 2, 3], log=log_with([1, 1, 2]), hard_state=HardState(term=2), pre_vote=True)
    n.step(VoteRequest(1, 2, 3, 1, 1, pre=True))
    (resp,) = drain(n)
    assert resp.pre and not resp.granted and n.term == 2


# --- check-quorum ------------------------------------------------------------------------------


def test_leader_steps_down_without_a_quorum_within_an_election_timeout():
    net = Network.of(3, check_quorum=True, election_timeout=10)
    net.campaign(1)
    net.isolate(1)
    for _ in range(20):
        net.tick(1)
    assert net.nodes[1].role is Role.FOLLOWER


def test_a_new_leader_gets_a_whole_election_timeout_before_its_first_quorum_check():
    """Counted from the campaign, the check could come right after the election, before any
    follower had answered an append (many groups electing at once on a busy machine: new
    leaders stepped down by the hundred)."""
    net = Network.of(3, check_quorum=True, election_timeout=10)
    net.nodes[1].campaign()
    requests = drain(net.nodes[1])
    for _ in range(9):  # the votes take most of a timeout to come back
        net.nodes[1].tick()
        drain(net.nodes[1])
    # ... and the followers' answers to the first appends are slow too: dropped here.
    net.drop = lambda m: isinstance(m, AppendResponse | HeartbeatResponse)
    net.send(requests)
    assert net.nodes[1].role is Role.LEADER
    for _ in range(9):
        net.tick(1)
    assert net.nodes[1].role is Role.LEADER
    for _ in range(11):
        net.tick(1)
    assert net.nodes[1].role is Role.FOLLOWER


def test_ticks_that_do_not_judge_keep_a_leader_heartbeating_and_judge_no_one():
    """A starved broker's ticks (judge=False): its leaders keep their followers' leases up
    with heartbeats but do not check their quorum; its followers do not time out."""
    net = Network.of(3, check_quorum=True, election_timeout=10)
    net.campaign(1)
    net.isolate(1)
    for _ in range(50):
        net.nodes[1].tick(judge=False)
        net.nodes[2].tick(judge=False)
    assert net.nodes[1].role is Role.LEADER and net.nodes[2].role is Role.FOLLOWER
    heartbeats = [m for m in drain(net.nodes[1]) if isinstance(m, Heartbeat)]
    assert len(heartbeats) >= 2 * 20, "a heartbeat to each follower every other tick"
    for _ in range(20):
        net.tick(1)
    assert net.nodes[1].role is Role.FOLLOWER


def test_leader_with_a_quorum_stays():
    net = Network.of(3, check_quorum=True, election_timeout=10)
    net.campaign(1)
    net.down.add(3)
    for _ in range(50):
        net.tick(1)
    assert net.nodes[1].role is Role.LEADER


def test_follower_in_lease_ignores_a_disruptive_candidate():
    net = Network.of(3, check_quorum=True)
    net.campaign(1)
    term = net.nodes[1].term
    net.nodes[2].step(VoteRequest(3, 2, term + 1, 100, term + 5))
    assert net.nodes[2].term == term and not drain(net.nodes[2])

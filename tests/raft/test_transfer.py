"""Leader transfer (dissertation §3.10): TimeoutNow once the target has caught up."""

from __future__ import annotations

import pytest

from strata.broker.raft.messages import TimeoutNow
from strata.broker.raft.node import NotLeaderError, ProposalDroppedError, Role

from .harness import Network, drain


def test_transfer_to_an_up_to_date_follower():
    net = Network.of(3, check_quorum=True, pre_vote=True)
    net.campaign(1)
    term = net.nodes[1].term
    net.nodes[1].transfer_leadership(2)
    net.send(drain(net.nodes[1]))
    assert net.nodes[2].role is Role.LEADER and net.nodes[2].term == term + 1
    assert net.nodes[1].role is Role.FOLLOWER and net.nodes[1].leader == 2


def test_transfer_to_a_lagging_follower_catches_it_up_first():
    net = Network.of(3)
    net.campaign(1)
    net.down.add(3)
    for i in range(4):
        net.propose(1, b"%d" % i)
    net.down.clear()
    net.nodes[1].transfer_leadership(3)
    msgs = drain(net.nodes[1])
    assert not [m for m in msgs if isinstance(m, TimeoutNow)]  # not before it caught up
    net.send(msgs)
    net.tick_all(2)
    assert net.nodes[3].role is Role.LEADER
    assert net.nodes[3].log.log_end_offset >= 6


def test_proposals_are_refused_during_a_transfer():
    net = Network.of(3)
    net.campaign(1)
    net.down.add(2)
    net.nodes[1].transfer_leadership(2)
    with pytest.raises(ProposalDroppedError):
        net.nodes[1].propose(b"")


def test_transfer_is_abandoned_after_an_election_timeout():
    net = Network.of(3, election_timeout=10)
    net.campaign(1)
    net.down.add(2)
    net.nodes[1].transfer_leadership(2)
    net.tick(1, 10)
    assert net.nodes[1].transferee is None
    net.propose(1)  # accepted again


def test_only_a_leader_transfers():
    net = Network.of(3)
    net.campaign(1)
    with pytest.raises(NotLeaderError) as e:
        net.nodes[2].transfer_leadership(3)
    assert e.value.leader == 1

"""Raft dissertation §4: single-server membership changes, one at a time, learners first."""

from __future__ import annotations

import pytest

from strata.broker.raft.membership import ChangeKind, Membership, MembershipChange
from strata.broker.raft.messages import Append, VoteRequest
from strata.broker.raft.node import HardState, ProposalDroppedError, Role

from .harness import Network, drain, node


def cluster_with_spare(n: int = 3) -> Network:
    ids = list(range(1, n + 1))
    nodes = {i: node(i, ids) for i in ids}
    nodes[n + 1] = node(n + 1, ids)  # knows the initial voters, is not one of them
    net = Network(nodes)
    net.campaign(1)
    return net


def change(net: Network, kind: ChangeKind, who: int) -> int:
    offset = net.nodes[1].change_membership(MembershipChange(kind, who))
    net.send(drain(net.nodes[1]))
    net.tick_all(3)
    return offset


def test_add_learner_then_promote():
    net = cluster_with_spare()
    change(net, ChangeKind.ADD_LEARNER, 4)
    assert all(n.membership == Membership(frozenset({1, 2, 3}), frozenset({4}))
               for n in net.nodes.values())
    assert net.nodes[4].log.log_end_offset == net.nodes[1].log.log_end_offset  # replicated
    change(net, ChangeKind.PROMOTE_LEARNER, 4)
    assert all(n.membership.voters == {1, 2, 3, 4} for n in net.nodes.values())
    # four voters: a commit now needs three of them
    net.down.update({2, 3})
    before = net.nodes[1].commit
    net.propose(1)
    assert net.nodes[1].commit == before


def test_learner_does_not_vote_or_campaign_and_does_not_count():
    net = cluster_with_spare()
    change(net, ChangeKind.ADD_LEARNER, 4)
    learner = net.nodes[4]
    for _ in range(50):
        learner.tick()
    assert learner.role is Role.FOLLOWER and not [m for m in drain(learner) if isinstance(m, VoteRequest)]
    net.down.update({2, 3})
    before = net.nodes[1].commit
    net.propose(1)
    assert net.nodes[1].commit == before  # the learner's ack does not make a quorum


def test_one_change_at_a_time():
    net = cluster_with_spare()
    leader = net.nodes[1]
    leader.change_membership(MembershipChange(ChangeKind.ADD_LEARNER, 4))
    with pytest.raises(ProposalDroppedError):
        leader.change_membership(MembershipChange(ChangeKind.REMOVE, 3))


def test_no_change_before_the_leader_commits_in_its_term():
    n = node(1, [1, 2, 3])
    n.campaign()
    drain(n)
    from strata.broker.raft.messages import VoteResponse

    n.step(VoteResponse(2, 1, 1, True))
    drain(n)
    assert n.role is Role.LEADER and n.commit == 0
    with pytest.raises(ProposalDroppedError):
        n.change_membership(MembershipChange(ChangeKind.ADD_LEARNER, 4))


def test_membership_batch_is_appended_only_after_the_record_is_durable():
    net = cluster_with_spare()
    leader = net.nodes[1]
    leo = leader.log.log_end_offset
    offset = leader.change_membership(MembershipChange(ChangeKind.ADD_LEARNER, 4))
    assert offset == leo and leader.log.log_end_offset == leo  # recorded, not appended
    rd = leader.ready()
    assert rd.hard_state is not None and rd.hard_state.configs[-1].offset == offset
    leader.advance(rd)
    assert leader.log.log_end_offset == leo + 1  # appended once the hard state is durable


def test_follower_stops_before_an_unrecorded_membership_batch():
    net = cluster_with_spare()
    leader = net.nodes[1]
    offset = leader.change_membership(MembershipChange(ChangeKind.ADD_LEARNER, 4))
    msgs = drain(leader)
    app = next(m for m in msgs if isinstance(m, Append) and m.dst == 2 and m.data)
    f = net.nodes[2]
    f.step(app)
    rd = f.ready()
    assert f.log.log_end_offset == offset  # stopped before the batch...
    assert rd.hard_state.configs[-1].offset == offset  # ...and recorded it
    f.advance(rd)
    f.step(app)  # the leader's resend
    drain(f)
    assert f.log.log_end_offset == offset + 1 and 4 in f.membership.learners


def test_removed_leader_steps_down_once_the_removal_commits():
    net = cluster_with_spare()
    change(net, ChangeKind.REMOVE, 1)
    assert net.nodes[1].role is Role.FOLLOWER
    assert all(net.nodes[i].membership.voters == {2, 3} for i in (1, 2, 3))
    net.tick_all(40)
    leaders = [i for i, n in net.nodes.items() if n.role is Role.LEADER]
    assert len(leaders) == 1 and leaders[0] in (2, 3)


def test_restart_drops_a_configuration_whose_batch_was_lost():
    net = cluster_with_spare()
    leader = net.nodes[1]
    leader.change_membership(MembershipChange(ChangeKind.ADD_LEARNER, 4))
    rd = leader.ready()
    hs = rd.hard_state
    leader.advance(rd)  # appended, but (say) the crash cut it before any sync
    leader.log.cut(hs.configs[-1].offset)
    again = node(1, [1, 2, 3], log=leader.log, hard_state=hs)
    assert again.membership == Membership(frozenset({1, 2, 3}))


def test_change_validation():
    m = Membership(frozenset({1, 2, 3}))
    with pytest.raises(ValueError):
        MembershipChange(ChangeKind.PROMOTE_LEARNER, 4).apply(m)
    with pytest.raises(ValueError):
        MembershipChange(ChangeKind.ADD_LEARNER, 2).apply(m)
    with pytest.raises(ValueError):
        MembershipChange(ChangeKind.REMOVE, 1).apply(Membership(frozenset({1})))
    assert MembershipChange(ChangeKind.ADD_VOTER, 4).apply(m).voters == {1, 2, 3, 4}


def test_hard_state_wire_round_trip():
    import msgpack

    from strata.broker.raft.membership import ConfigEntry

    hs = HardState(7, 2, (ConfigEntry(-1, 0, Membership(frozenset({1, 2}), frozenset({3}))),), True)
    assert HardState.from_wire(msgpack.unpackb(msgpack.packb(hs.to_wire()))) == hs

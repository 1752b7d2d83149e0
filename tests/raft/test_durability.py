"""The persistence contract, storage faults (PAR, FAST 2018), and the wire form of messages."""

from __future__ import annotations

import msgpack
import pytest

from strata.broker.raft.log import MemoryRaftLog
from strata.broker.raft.membership import Membership
from strata.broker.raft.messages import (
    Append,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallLogStart,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
    from_wire,
)
from strata.broker.raft.node import Fault, HardState, Role

from .harness import Network, batch, drain, log_with, node


def test_no_input_between_ready_and_advance():
    n = node(1, [1, 2, 3])
    n.campaign()
    n.ready()
    with pytest.raises(AssertionError):
        n.tick()
    with pytest.raises(AssertionError):
        n.ready()


def test_everything_waits_when_the_hard_state_changed():
    n = node(1, [1, 2, 3], hard_state=HardState(term=1))
    n.step(Heartbeat(2, 1, 2, 0))  # new term: the response must not precede the term's fsync
    rd = n.ready()
    assert rd.hard_state is not None and rd.hard_state.term == 2
    assert rd.messages == []
    assert [type(m) for m in n.advance(rd)] == [HeartbeatResponse]


def test_leader_appends_leave_before_the_leaders_fsync():
    net = Network.of(3)
    net.campaign(1)
    ldr = net.nodes[1]
    ldr.propose(batch())
    rd = ldr.ready()
    assert rd.hard_state is None and rd.sync_end == 2
    assert {m.dst for m in rd.messages if isinstance(m, Append) and m.data} == {2, 3}
    ldr.advance(rd)


def test_forget_vote_fault_leaves_the_vote_out():
    n = node(1, [1, 2, 3], faults=frozenset({Fault.FORGET_VOTE}))
    n.step(VoteRequest(2, 1, 1, -1, 0))
    rd = n.ready()
    assert rd.hard_state.term == 1 and rd.hard_state.vote is None


def test_ack_before_persist_fault_releases_acks_early():
    f = node(2, [1, 2, 3], hard_state=HardState(term=1), faults=frozenset({Fault.ACK_BEFORE_PERSIST}))
    run = log_with([1]).read(0, 1 << 20)
    f.step(Append(1, 2, 1, -1, 0, 0, run.last, run.term, run.data))
    rd = f.ready()
    assert [type(m) for m in rd.messages] == [AppendResponse]


# --- storage faults ----------------------------------------------------------------------------


def faulty_follower():
    """Node 3 lost acknowledged data: its log was cut at a corrupt batch on recovery."""
    log = log_with([1, 1])
    return node(3, [1, 2, 3], log=log, hard_state=HardState(term=1, vote=1), storage_faulty=True)


def test_faulty_node_bumps_its_term_and_persists_the_flag():
    n = faulty_follower()
    assert n.faulty and n.term == 2 and n.vote is None
    rd = n.ready()
    assert rd.hard_state.storage_faulty and rd.hard_state.term == 2


def test_faulty_node_neither_votes_nor_campaigns():
    n = faulty_follower()
    drain(n)
    n.step(VoteRequest(2, 3, 3, 100, 3))
    (resp,) = drain(n)
    assert not resp.granted
    for _ in range(100):
        n.tick()
    assert n.role is Role.FOLLOWER and n.term == 3
    n.step(TimeoutNow(1, 3, 3))
    assert n.role is Role.FOLLOWER


def test_vote_while_faulty_fault_grants():
    log = log_with([1])
    n = node(3, [1, 2, 3], log=log, storage_faulty=True, faults=frozenset({Fault.VOTE_WHILE_FAULTY}))
    drain(n)
    n.step(VoteRequest(2, 3, 5, 100, 3))
    (resp,) = drain(n)
    assert resp.granted


def test_faulty_node_is_excluded_from_commit_until_caught_up():
    ids = [1, 2, 3]
    nodes = {i: node(i, ids, log=log_with([1, 1]), hard_state=HardState(term=1)) for i in (1, 2)}
    nodes[3] = faulty_follower()
    net = Network(nodes)
    net.down.add(2)
    net.campaign(3)
    assert nodes[3].role is Role.FOLLOWER  # refuses to campaign
    net.down.clear()
    # Node 1 is elected (term 2) by node 2, whose appends are then lost: node 3 alone acks.
    net.drop = lambda m: isinstance(m, Append) and m.dst == 2
    net.campaign(1)
    assert nodes[1].role is Role.LEADER and nodes[1].term == 2
    net.tick_all(3)
    assert nodes[3].log.log_end_offset == 3 and nodes[3].faulty
    assert nodes[1].commit == 0  # node 3's ack does not count while it is faulty
    # Node 2 comes back: the no-op commits; node 3 learns a commit of this term and recovers.
    net.drop = None
    net.tick_all(3)
    assert nodes[1].commit == 3 and not nodes[3].faulty
    # ...and now counts: with node 2 gone, node 3 makes the quorum.
    net.down.add(2)
    net.propose(1)
    net.tick_all(2)
    assert nodes[1].commit == 4


def test_faulty_acks_say_so():
    net = Network({i: node(i, [1, 2, 3]) for i in (1, 2)} | {3: faulty_follower()})
    net.campaign(1)  # loses: node 3's term (bumped at restart) is higher
    net.campaign(1)
    assert net.nodes[1].role is Role.LEADER
    acks = [m for m in net.delivered if isinstance(m, AppendResponse) and m.src == 3]
    assert acks and acks[0].faulty


# --- the wire -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "msg",
    [
        VoteRequest(1, 2, 3, 10, 2, pre=True, force=False),
        VoteResponse(2, 1, 3, True, pre=True),
        Append(1, 2, 3, 4, 2, 5, 9, 3, b"\x00" * 70),
        Append(1, 2, 3, 4, 2, 5, 4, 3),
        AppendResponse(2, 1, 3, True, 4, 2, 1, True),
        Heartbeat(1, 2, 3, 5),
        HeartbeatResponse(2, 1, 3),
        InstallLogStart(1, 2, 3, 100, 2, Membership(frozenset({1, 2, 3}), frozenset({4}))),
        TimeoutNow(1, 2, 3),
    ],
)
def test_messages_round_trip_through_msgpack_with_the_payload_apart(msg):
    header, payload = msg.to_wire()
    packed = msgpack.packb(header)
    back = from_wire(msgpack.unpackb(packed), payload)
    assert back == msg
    assert len(packed) < 40  # small fixed fields; batches travel in the payload


# --- MemoryRaftLog -----------------------------------------------------------------------------


def test_memory_log_terms_reads_and_truncation():
    log = MemoryRaftLog()
    assert log.append_as_leader(batch(b"a", count=3), 1) == (0, 2)
    assert log.append_as_leader(batch(b"b"), 1) == (3, 3)
    assert log.append_as_leader(batch(b"c", count=2), 4) == (4, 5)
    assert [log.term_at(i) for i in range(-1, 7)] == [0, 1, 1, 1, 1, 4, 4, None]
    assert log.end_offset_for_term(0) == (0, 0)
    assert log.end_offset_for_term(2) == (1, 4)
    assert log.end_offset_for_term(9) == (4, 6)
    run = log.read(1, 1 << 20)
    assert (run.base, run.last, run.term) == (0, 3, 1)  # whole batches, one term
    assert log.read(0, 1).last == 2  # at least one batch, whatever the byte limit
    assert log.read(6, 100) is None
    log.truncate_to(4)
    assert log.log_end_offset == 4
    with pytest.raises(AssertionError):
        log.truncate_to(2)  # not a batch boundary
    log.advance_log_start(3)
    assert (log.log_start_offset, log.log_start_term, log.term_at(2)) == (3, 1, 1)

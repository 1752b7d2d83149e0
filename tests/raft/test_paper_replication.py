"""Raft paper §5.3 (log replication), with the batch log: Raft index = offset, entry = batch."""

from __future__ import annotations

from strata.broker.raft.log import MemoryRaftLog
from strata.broker.raft.messages import Append, AppendResponse, VoteResponse
from strata.broker.raft.node import HardState, Role

from .harness import Network, batch, drain, log_with, node


def elected(voters, **kw):
    n = node(1, voters, **kw)
    n.campaign()
    drain(n)
    for v in sorted(set(voters) - {1}):
        n.step(VoteResponse(v, 1, n.term, True))
    assert n.role is Role.LEADER
    drain(n)
    return n


def test_new_leader_appends_a_noop_of_its_term():
    n = elected([1, 2, 3])
    assert n.log.log_end_offset == 1 and n.log.term_at(0) == n.term


def test_leader_replicates_a_proposal_to_every_follower():
    net = Network.of(3)
    net.campaign(1)
    base, last = net.propose(1, b"hello")
    assert (base, last) == (1, 1)
    for n in net.nodes.values():
        assert n.log.log_end_offset == 2 and n.log.term_at(1) == 1
    assert net.nodes[1].commit == 2
    assert [net.nodes[i].commit for i in (2, 3)] == [1, 1]  # no round of empty appends to tell them
    net.tick(1, net.nodes[1].cfg.heartbeat_interval)
    assert [n.commit for n in net.nodes.values()] == [2, 2, 2]  # the next heartbeat does


def test_a_group_that_broadcasts_commits_tells_followers_at_once():
    """The controller's group: every broker applies its committed records."""
    net = Network.of(3, broadcast_commit=True)
    net.campaign(1)
    net.propose(1, b"hello")
    assert [n.commit for n in net.nodes.values()] == [2, 2, 2]


def test_leader_appends_carry_prev_offset_and_term_and_one_term_per_run():
    n = elected([1, 2, 3])
    # followers acknowledge the no-op
    n.step(AppendResponse(2, 1, 1, False, 0))
    n.step(AppendResponse(3, 1, 1, False, 0))
    drain(n)
    n.propose(batch(b"a", count=3))
    apps = [m for m in drain(n) if isinstance(m, Append) and m.data]
    assert sorted(m.dst for m in apps) == [2, 3]
    m = apps[0]
    assert (m.prev_offset, m.prev_term, m.last, m.entries_term, m.commit) == (0, 1, 3, 1, 1)


def test_commit_needs_a_majority_and_the_leaders_own_durable_copy():
    n = elected([1, 2, 3])
    n.propose(batch())
    rd = n.ready()  # not yet advanced: the leader's own copy is not durable
    assert rd.sync_end == 2
    assert n.commit == 0
    n.advance(rd)
    n.step(AppendResponse(2, 1, 1, False, 1))
    assert n.commit == 2  # leader (durable) + follower 2


def test_leader_does_not_count_its_unsynced_log():
    n = elected([1, 2, 3])
    n.propose(batch())
    n.step(AppendResponse(2, 1, 1, False, 1))
    assert n.commit == 1  # the no-op only: offset 1 is durable on one node of three
    rd = n.ready()
    n.advance(rd)
    assert n.commit == 2


def test_followers_learn_the_commit_index():
    net = Network.of(3)
    net.campaign(1)
    net.propose(1)
    net.tick_all(3)
    assert [n.commit for n in net.nodes.values()] == [2, 2, 2]


def test_follower_rejects_on_prev_mismatch_with_a_term_hint():
    f = node(2, [1, 2, 3], log=log_with([1, 1, 2, 2, 2]), hard_state=HardState(term=3))
    f.step(Append(1, 2, 3, 4, 3, 0, 4, 3))
    (resp,) = drain(f)
    assert resp.reject and resp.match == 4
    # the last offset whose term is <= 3 is 4 (term 2): the leader can skip the whole term 2
    assert (resp.hint_offset, resp.hint_term) == (4, 2)


def test_follower_truncates_a_conflicting_suffix_and_appends():
    f = node(2, [1, 2, 3], log=log_with([1, 1, 2, 2]), hard_state=HardState(term=3))
    leader_log = log_with([1, 1, 3])
    run = leader_log.read(2, 1 << 20)
    f.step(Append(1, 2, 3, 1, 1, 0, run.last, run.term, run.data))
    (resp,) = drain(f)
    assert not resp.reject and resp.match == 2
    assert [f.log.term_at(i) for i in range(3)] == [1, 1, 3] and f.log.log_end_offset == 3


def test_follower_ignores_entries_it_already_has():
    log = log_with([1, 1, 1])
    f = node(2, [1, 2, 3], log=log, hard_state=HardState(term=1))
    run = log_with([1, 1, 1]).read(1, 1 << 20)
    f.step(Append(1, 2, 1, 0, 1, 0, run.last, run.term, run.data))
    (resp,) = drain(f)
    assert resp.match == 2 and f.log.log_end_offset == 3


def test_follower_ack_is_released_only_after_its_log_is_durable():
    f = node(2, [1, 2, 3], hard_state=HardState(term=1))
    f.log.on_append = None
    run = log_with([1]).read(0, 1 << 20)
    f.step(Append(1, 2, 1, -1, 0, 0, run.last, run.term, run.data))
    rd = f.ready()
    assert rd.sync_end == 1
    assert not [m for m in rd.messages if isinstance(m, AppendResponse)]
    (ack,) = f.advance(rd)
    assert isinstance(ack, AppendResponse) and ack.match == 0


def test_leader_brings_divergent_followers_in_line():
    """§5.3 Figure 7: followers missing entries, with extra entries, or both, converge."""
    leader_terms = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
    followers = [
        [1, 1, 1, 4, 4, 5, 5, 6, 6],  # (a) missing one
        [1, 1, 1, 4],  # (b) missing many
        [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],  # (c) one extra uncommitted
        [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],  # (d) extra of a later term
        [1, 1, 1, 4, 4, 4, 4],  # (e) missing and extra
        [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],  # (f) a different history
    ]
    for f_terms in followers:
        ldr = node(1, [1, 2, 3], log=log_with(leader_terms), hard_state=HardState(term=8))
        f = node(2, [1, 2, 3], log=log_with(f_terms), hard_state=HardState(term=8))
        third = node(3, [1, 2, 3], hard_state=HardState(term=8))
        net = Network({1: ldr, 2: f, 3: third})
        net.campaign(1)
        assert ldr.role is Role.LEADER
        net.tick_all(5)
        ours = [ldr.log.term_at(i) for i in range(ldr.log.log_end_offset)]
        theirs = [f.log.term_at(i) for i in range(f.log.log_end_offset)]
        assert theirs == ours, f_terms
        assert ours[:10] == leader_terms


def test_backtracking_skips_a_term_per_round_trip():
    """Fast backtracking: a follower with a long divergent term costs O(terms) probes, not O(entries)."""
    ldr = node(1, [1, 2, 3], log=log_with([1] * 3 + [3] * 40), hard_state=HardState(term=5))
    f = node(2, [1, 2, 3], log=log_with([1] * 3 + [2] * 40), hard_state=HardState(term=5))
    net = Network({1: ldr, 2: f, 3: node(3, [1, 2, 3], hard_state=HardState(term=5))})
    net.campaign(1)
    rejects = [m for m in net.delivered if isinstance(m, AppendResponse) and m.reject and m.src == 2]
    assert len(rejects) <= 2
    assert [f.log.term_at(i) for i in range(3, 43)] == [3] * 40


def test_pipelining_is_bounded_by_inflight_messages():
    n = elected([1, 2, 3], max_inflight_msgs=2, max_append_bytes=80)
    n.step(AppendResponse(2, 1, 1, False, 0))
    drain(n)
    for i in range(6):
        n.propose(batch(b"p%d" % i))
    to2 = [m for m in drain(n) if isinstance(m, Append) and m.dst == 2 and m.data]
    assert len(to2) == 2  # the window is full; the rest waits for acks
    n.step(AppendResponse(2, 1, 1, False, to2[0].last))
    more = [m for m in drain(n) if isinstance(m, Append) and m.dst == 2 and m.data]
    assert len(more) == 1 and more[0].prev_offset == to2[1].last


def test_follower_below_leader_log_start_restarts_there():
    net = Network.of(3)
    net.campaign(1)
    net.down.add(3)
    for i in range(5):
        net.propose(1, b"v%d" % i)
    ldr = net.nodes[1]
    assert ldr.commit == 6
    ldr.log.advance_log_start(4)  # retention below the high watermark
    net.down.clear()
    net.tick_all(4)
    f = net.nodes[3]
    assert f.log.log_start_offset == 4 and f.log.log_end_offset == 6
    assert f.commit == 6 and f.log.term_at(5) == ldr.log.term_at(5)
    assert f.log.log_start_term == ldr.log.log_start_term


def test_empty_log_with_start_offset_memory_log_read_and_terms():
    log = MemoryRaftLog(start_offset=10, start_term=3)
    assert log.term_at(9) == 3 and log.term_at(10) is None
    assert log.end_offset_for_term(5) == (3, 10)

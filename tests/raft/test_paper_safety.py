"""Raft paper §5.4 (safety): the election restriction, and committing only the current term."""

from __future__ import annotations

import pytest

from strata.broker.raft.messages import Append, AppendResponse, VoteRequest, VoteResponse
from strata.broker.raft.node import Fault, HardState, Role

from .harness import Network, drain, log_with, node


@pytest.mark.parametrize(
    ("terms", "cand_last", "cand_term", "granted"),
    [
        ([1, 1], 1, 1, True),  # same last term, same length
        ([1, 1], 0, 1, False),  # same last term, shorter
        ([1, 1], 5, 1, True),  # same last term, longer
        ([1, 2], 9, 1, False),  # lower last term, however long
        ([1, 2], 0, 3, True),  # higher last term, however short
        ([], -1, 0, True),
    ],
)
def test_voter_grants_only_to_an_up_to_date_log(terms, cand_last, cand_term, granted):
    """§5.4.1: a vote goes only to a candidate whose log is at least as up to date."""
    n = node(1, [1, 2, 3], log=log_with(terms), hard_state=HardState(term=3))
    n.step(VoteRequest(2, 1, 4, cand_last, cand_term))
    (resp,) = drain(n)
    assert resp.granted is granted


def test_leader_never_commits_an_earlier_term_by_counting_replicas():
    """§5.4.2: an old-term entry on a majority is not committed until a current-term one is."""
    # Leader of term 3 holds offset 0 of term 1 (and appends its no-op at offset 1).
    n = node(1, [1, 2, 3], log=log_with([1]), hard_state=HardState(term=2))
    n.campaign()
    drain(n)
    n.step(VoteResponse(2, 1, 3, True))
    drain(n)
    assert n.role is Role.LEADER and n.log.term_at(1) == 3
    n.step(AppendResponse(2, 1, 3, False, 0))  # follower 2 matches the term-1 entry only
    assert n.commit == 0
    n.step(AppendResponse(2, 1, 3, False, 1))  # and now the no-op of term 3
    assert n.commit == 2


def _figure_8(faults=frozenset()):
    """Figure 8 (c) -> (d), replayed on five nodes: returns (S1's commit, the logs after S5 wins)."""
    voters = [1, 2, 3, 4, 5]
    logs = {1: [1, 2], 2: [1, 2], 3: [1], 4: [1], 5: [1, 3]}
    net = Network({
        i: node(i, voters, log=log_with(t), hard_state=HardState(term=3), faults=faults)
        for i, t in logs.items()
    })
    s1, s5 = net.nodes[1], net.nodes[5]
    # (c) S1 is elected in term 4 (S5 is down) and copies its term-2 entry to a majority,
    # but its own no-op (term 4) is lost on the way.
    net.down.add(5)

    def lose_noop(m):  # the no-op is lost once the follower has the term-2 entry
        return (
            isinstance(m, Append) and m.entries_term == 4 and bool(m.data)
            and net.nodes[m.dst].log.log_end_offset >= 2
        )

    net.drop = lose_noop
    net.campaign(1)
    net.tick(1, 4)
    assert s1.role is Role.LEADER and s1.term == 4
    assert [net.nodes[i].log.term_at(1) for i in (2, 3, 4)] == [2, 2, 2]
    commit = s1.commit
    # (d) S1 crashes; S5 (last term 3) is elected by S2, S3, S4 and imposes its log.
    net.down = {1}
    net.drop = None
    net.campaign(5)  # term 4 is taken (the others voted for S1): S5 learns that and loses
    assert s5.role is Role.FOLLOWER and s5.term == 4
    net.campaign(5)  # term 5
    assert s5.role is Role.LEADER and s5.term == 5
    net.tick(5, 3)
    return commit, {i: net.nodes[i].log.term_at(1) for i in (2, 3, 4, 5)}


def test_figure_8():
    """The term-2 entry reached a majority but was never committed; S5 rightly overwrites it."""
    commit, terms_at_1 = _figure_8()
    assert commit == 0  # offsets 0 and 1 are of earlier terms: S1 commits neither
    assert terms_at_1 == {2: 3, 3: 3, 4: 3, 5: 3}


def test_figure_8_with_the_bug_commits_what_is_then_lost():
    """With COMMIT_PREVIOUS_TERM, S1 reports offset 1 committed, and S5 then overwrites it."""
    commit, terms_at_1 = _figure_8(frozenset({Fault.COMMIT_PREVIOUS_TERM}))
    assert commit == 2
    assert terms_at_1[2] == 3  # the "committed" term-2 entry is gone


def test_figure_8_old_term_entry_is_not_committed_and_may_be_overwritten():
    """Figure 8 (c)-(d): S1 re-elected in term 4 replicates its term-2 entry to a majority; it
    must not count it as committed, because S5 (last term 3) can still win and overwrite it."""
    # Logs as in (c): S1 [1, 2] term 4 leader, S2 [1, 2], S3 [1, 2] (S1 just copied it),
    # S4 [1], S5 [1, 3].
    s1 = node(1, [1, 2, 3, 4, 5], log=log_with([1, 2]), hard_state=HardState(term=3))
    s1.campaign()
    drain(s1)
    for v in (2, 3):
        s1.step(VoteResponse(v, 1, 4, True))
    drain(s1)
    assert s1.role is Role.LEADER and s1.term == 4 and s1.log.term_at(2) == 4  # its no-op
    for v in (2, 3):
        s1.step(AppendResponse(v, 1, 4, False, 1))  # S2, S3 hold offset 1 (term 2)
    assert s1.commit == 0  # offset 1 is on 3 of 5, but it is of term 2: not committed
    # (d) S5 can indeed be elected by S2, S3, S4 (its last term 3 beats their 2): had S1
    # committed offset 1, S5 would now overwrite a committed entry.
    s3 = node(3, [1, 2, 3, 4, 5], log=log_with([1, 2]), hard_state=HardState(term=4))
    s3.step(VoteRequest(5, 3, 5, 1, 3))
    (resp,) = drain(s3)
    assert resp.granted
    # (e) once S1's own-term entry reaches the majority, everything before it commits.
    for v in (2, 3):
        s1.step(AppendResponse(v, 1, 4, False, 2))
    assert s1.commit == 3


def test_state_machine_safety_committed_prefix_survives_leader_changes():
    net = Network.of(3)
    net.campaign(1)
    for i in range(3):
        net.propose(1, b"a%d" % i)
    committed = [net.nodes[1].log.batch_at(b) for b in range(4)]
    net.down.add(1)
    net.campaign(2)
    assert net.nodes[2].role is Role.LEADER
    net.propose(2, b"b")
    for n in (net.nodes[2], net.nodes[3]):
        assert [n.log.batch_at(b) for b in range(4)] == committed

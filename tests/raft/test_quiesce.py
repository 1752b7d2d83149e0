"""Quiescence: an idle group stops ticking and heartbeating, and every way back wakes it."""

from __future__ import annotations

from strata.broker.raft.messages import Heartbeat, HeartbeatResponse, Message
from strata.broker.raft.node import Role

from .harness import Network, drain, node

HB = 2
TIMEOUT = 10


def idle_cluster(n: int = 3) -> Network:
    net = Network.of(n, quiesce=True, check_quorum=True, pre_vote=True, heartbeat_interval=HB,
                     election_timeout=TIMEOUT)
    net.campaign(1)
    net.propose(1, b"a")
    net.tick_all(2 * HB)  # one round answered, then the quiesce round
    return net


def test_an_idle_group_quiesces_and_then_sends_nothing():
    net = idle_cluster()
    assert all(n.quiesced for n in net.nodes.values())
    assert net.nodes[1].role is Role.LEADER
    before = len(net.delivered)
    net.tick_all(10 * TIMEOUT)  # ten election timeouts: no heartbeat, no election
    assert len(net.delivered) == before
    assert net.nodes[1].role is Role.LEADER and all(n.quiesced for n in net.nodes.values())


def test_a_group_does_not_quiesce_while_a_follower_is_behind_or_silent():
    net = Network.of(3, quiesce=True, check_quorum=True, pre_vote=True, heartbeat_interval=HB,
                     election_timeout=TIMEOUT)
    net.campaign(1)
    net.down.add(3)
    net.propose(1, b"a")
    net.tick_all(5 * HB)
    assert not net.nodes[1].quiesced
    hb = [m for m in net.delivered[-4:] if isinstance(m, Heartbeat)]
    assert hb and not any(m.quiesce for m in hb)


def test_a_proposal_wakes_the_group_and_commits():
    net = idle_cluster()
    base, last = net.propose(1, b"b")
    leader = net.nodes[1]
    assert leader.commit == last + 1
    assert all(n.log.log_end_offset == last + 1 for n in net.nodes.values())
    net.tick_all(2 * HB)
    assert all(n.quiesced for n in net.nodes.values())


def test_waking_a_follower_for_a_silent_leader_elects_a_new_one_within_a_timeout():
    net = idle_cluster()
    net.down.add(1)
    # The driver saw broker 1 silent for an election timeout.
    for i in (2, 3):
        net.nodes[i].wake(TIMEOUT)
        net.send(drain(net.nodes[i]))
    net.tick_all(TIMEOUT)  # at most one further timeout (randomized in [T, 2T))
    leaders = [i for i, n in net.nodes.items() if i != 1 and n.role is Role.LEADER]
    assert len(leaders) == 1


def test_a_leader_woken_for_a_silent_majority_steps_down():
    net = idle_cluster()
    net.isolate(1)
    net.nodes[1].wake()
    net.send(drain(net.nodes[1]))
    net.tick(1, 2 * TIMEOUT)
    assert net.nodes[1].role is Role.FOLLOWER


def test_a_restarted_storage_faulty_leader_wakes_its_sleeping_followers():
    """It may not campaign, so it says "I am here" once per election timeout; the followers
    wake, elect a leader among themselves, and that leader repairs it."""
    net = idle_cluster()
    old = net.nodes[1]
    # The leader's process restarts at once (no silence for a driver to see), with a log
    # that recovery cut: storage-faulty.
    old.log.truncate_to(0)
    net.nodes[1] = node(1, [1, 2, 3], log=old.log, hard_state=old._hard_state(), storage_faulty=True,
                        quiesce=True, check_quorum=True, pre_vote=True, heartbeat_interval=HB,
                        election_timeout=TIMEOUT)
    net.tick(1, 2 * TIMEOUT)
    assert any(isinstance(m, HeartbeatResponse) and m.src == 1 for m in net.delivered)
    net.tick_all(4 * TIMEOUT)
    leaders = [i for i, n in net.nodes.items() if n.role is Role.LEADER]
    assert leaders and leaders[0] != 1
    net.tick_all(4 * TIMEOUT)
    assert not net.nodes[1].faulty
    assert net.nodes[1].log.log_end_offset == net.nodes[leaders[0]].log.log_end_offset


def test_a_stray_message_wakes_a_quiesced_node_and_it_goes_back_to_sleep():
    net = idle_cluster()
    f = net.nodes[2]
    net.send([HeartbeatResponse(3, 2, f.term)])
    assert not f.quiesced
    net.tick_all(2 * TIMEOUT)
    assert net.nodes[1].role is Role.LEADER
    assert all(n.quiesced for n in net.nodes.values())


def test_late_answers_to_an_earlier_round_do_not_wake_a_quiesced_leader():
    """Answers slower than a heartbeat interval: the leader sleeps on one round's answers
    while the next round's are still on their way. Those must not wake it (each wake sent a
    new round to every follower, whose answers came late in turn: waves without end)."""
    net = idle_cluster()
    leader = net.nodes[1]
    late: list[Message] = []

    def hold_answers(m: Message) -> bool:
        if isinstance(m, HeartbeatResponse) and m.dst == 1:
            late.append(m)
            return True
        return False

    net.drop = hold_answers
    leader.wake()  # (a stray message, say): round k goes out, its answers are held back
    net.send(drain(leader))
    net.tick(1, HB)  # round k + 1 (round k unanswered, so no quiesce yet): held back too
    assert len(late) == 4 and not leader.quiesced
    net.drop = None
    round_k, round_k1 = late[:2], late[2:]
    net.send(round_k)  # round k's answers arrive: the leader takes them for the last round's
    net.tick(1, HB)
    assert leader.quiesced, "it slept on round k's answers"
    before = len(net.delivered)
    net.send(round_k1)
    assert leader.quiesced, "round k + 1's answers said nothing new"
    assert net.delivered[before:] == round_k1, "and nothing was sent for them"
    net.tick_all(5 * TIMEOUT)
    assert all(n.quiesced for n in net.nodes.values()) and leader.role is Role.LEADER


def test_a_faulty_followers_answer_still_wakes_a_quiesced_leader():
    net = idle_cluster()
    leader = net.nodes[1]
    net.send([HeartbeatResponse(2, 1, leader.term, faulty=True)])
    assert not leader.quiesced

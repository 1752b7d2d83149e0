"""The Raft core: one group's state machine, with no I/O, no clock and no randomness of its own.

Inputs are method calls: :meth:`RaftNode.tick`, :meth:`RaftNode.step` (a message),
:meth:`RaftNode.propose` (a record batch), :meth:`RaftNode.transfer_leadership`,
:meth:`RaftNode.change_membership`. The core appends to and truncates its
:class:`~strata.broker.raft.log.RaftLog` directly (that is the partition log), but nothing it
does is assumed durable until the driver says so. After inputs, the driver collects one
:class:`Ready`::

    node.tick() / node.step(msg) / node.propose(batch) / ...   # any number of inputs
    if node.has_ready():
        rd = node.ready()
        for m in rd.messages: send(m)        # safe now: they depend on nothing unpersisted
        if rd.hard_state is not None:
            save(rd.hard_state)              # write + fsync + rename
        log.flush_through(rd.sync_end)       # offsets < sync_end must be durable
        for m in node.advance(rd): send(m)   # votes and acks: only once the above is durable
        set_high_watermark(rd.commit)

No input may be given between ``ready()`` and ``advance()`` (asserted): a driver that fsyncs
in the background buffers its inputs meanwhile. What makes the persistence order hard to
get wrong is that messages which depend on persisted state — vote grants, vote requests
(they carry the node's own vote), append acknowledgements — are not in ``rd.messages`` at
all: only :meth:`RaftNode.advance` hands them out, and the core counts its own log toward a
commit only up to ``sync_end`` of an advanced Ready. ``rd.messages`` holds what a leader
sends to followers (appends may go out before the leader's own fsync, Raft dissertation
§10.2.1) and pre-votes; when the hard state changed, everything waits for ``advance``.

Terms and offsets. Raft index = log offset; a log entry is a record batch ``[base, last]``
whose term is its ``partitionLeaderEpoch``. ``commit`` is exclusive, Kafka's high watermark:
offsets below it are committed. Everything below the log start counts as committed.

Features: randomized election timeouts (``[T, 2T)`` ticks from the injected ``random.Random``),
pre-vote, check-quorum (a leader that has not heard from a majority within an election
timeout steps down; a follower that heard from a leader within one ignores vote requests),
no leases. Replication is pipelined per follower (:mod:`~strata.broker.raft.progress`) with
fast backtracking on rejection. A new leader appends a no-op batch (``noop_batch()`` from the
config; the broker makes it a Kafka control batch) and commits only through an entry of its
own term (§5.4.2). Leader transfer sends ``TimeoutNow`` once the target is caught up. A
follower below the leader's log start receives ``InstallLogStart`` and restarts its log there.

Membership. A configuration change is a control batch built by ``membership_batch()`` and
recognised by ``decode_membership()`` (both from the config). It takes effect once its batch is
in the log (§4.1), committed or not, and the hard state records the last configurations
(:class:`~strata.broker.raft.membership.ConfigEntry`, at most the latest two in the log plus
one about to be appended) so that a restart needs no log scan. The order that makes this
crash-safe: a membership batch is appended only after a hard state naming it is durable.
A leader records the change, and appends the batch in ``advance()``; a follower appends up
to the batch, records it, and takes the batch itself when the leader resends it. A batch in
a log is therefore always known to the hard state; at restart, recorded configurations whose
batch is not in the log (cut with an unsynced tail) are dropped.

Storage faults (Alagappan et al., "Protocol-Aware Recovery for Consensus-Based Storage",
FAST 2018). A node constructed with ``storage_faulty=True`` lost acknowledged data (storage
recovery found a corrupt batch, not just an unsynced tail). Until it has caught up again it
grants no votes, does not campaign, and tells the leader (``AppendResponse.faulty``) not to
count it toward a commit; the flag is persisted in the hard state so a second crash cannot
launder it. It bumps its term at restart so that an acknowledgement it sent before the crash
(for data it may now lack) can never be counted again: leaders ignore responses of older
terms. It has caught up once, in some term T above its pre-crash term, its durable log
reaches the commit of T's leader and the entry below that commit is of term T: then it holds
every entry committed before T, which includes all it had ever acknowledged that mattered.

The driver must keep passing ``storage_faulty=True`` at restart until a hard state with
the flag set has been persisted (recovery truncated the corrupt batch, so a second restart
would not see it again).

Known limitation: a faulty node's silence can cost liveness. If a faulty minority coincides
with an uncommitted membership change, the remaining voters may lack a quorum that will
elect anyone (the simulator reports this as a "known stall", about one seed in 8,000).
Recovering a faulty node's vote without a leader (PAR's full protocol) is not implemented.

A new commit index is broadcast only with ``RaftConfig.broadcast_commit``: otherwise
followers learn it from the next append or heartbeat (at most ``heartbeat_interval`` ticks
later). For a partition nothing on a follower waits for it (a leader answers every read and
every ack), and a round of empty appends with their answers at every commit would double the
messages of a lightly loaded group. A group whose followers act on what is committed (the
controller's metadata log, which every broker applies) broadcasts, as etcd's Raft does.

Quiescence (CockroachDB's quiesced ranges). With ``RaftConfig.quiesce`` an idle group stops
costing anything: when a heartbeat falls due and every follower has answered the last round,
matches the whole log, and all of it is committed, the leader sends a last heartbeat marked
``quiesce`` and stops ticking; a follower whose log ends exactly at that commit stops ticking
too, without answering. Any input wakes a node (a message, a proposal, a transfer, a
membership change), except a quiesce heartbeat itself and, on a leader, a late answer to a
heartbeat round it sent before it slept that says nothing new (see
``_answer_to_an_earlier_round``). A node that has no leader always
speaks up once per election timeout: it campaigns, or, if it may not (storage-faulty,
removed), sends its members a heartbeat response, so a restarted node wakes its group.
What the core cannot see is a leader that died while its followers sleep: the driver must
watch its peers (the broker: one liveness ping per broker pair, whatever the number of
groups) and call :meth:`RaftNode.wake` on the groups of a peer that went silent, passing
how long the leader has been silent so the election does not wait a further timeout. A driver that was itself stalled (a paused process)
must wake all its groups: a leader deposed meanwhile learns the new term only once awake.
Quiescence changes timers only; no safety argument depends on it.

Test-only :class:`Fault` switches break the core on purpose; the simulator must catch each.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from .batches import iter_spans, position_of
from .log import RaftLog
from .membership import ConfigEntry, Membership, MembershipChange
from .messages import (
    Append,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    InstallLogStart,
    Message,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from .progress import Progress, ProgressState


class Role(Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


class Fault(Enum):
    """Deliberate bugs, for proving that the simulator notices. Never set outside tests."""

    #: Commit an entry of an earlier term by counting replicas (Raft paper, Figure 8).
    COMMIT_PREVIOUS_TERM = "commit_previous_term"
    #: Leave the vote out of the persisted hard state.
    FORGET_VOTE = "forget_vote"
    #: Release append acknowledgements before the acknowledged entries are durable.
    ACK_BEFORE_PERSIST = "ack_before_persist"
    #: Grant votes while storage-faulty.
    VOTE_WHILE_FAULTY = "vote_while_faulty"


class NotLeaderError(Exception):
    """A leader-only request reached a node that is not the leader (``leader`` is a hint)."""

    def __init__(self, leader: int | None) -> None:
        super().__init__(f"not the leader (leader hint: {leader})")
        self.leader = leader


class ProposalDroppedError(Exception):
    """The leader cannot take this proposal now (transfer or membership change in progress)."""


@dataclass(slots=True, frozen=True)
class HardState:
    """What must survive a crash, written with write + fsync + rename before dependent sends."""

    term: int = 0
    vote: int | None = None
    configs: tuple[ConfigEntry, ...] = ()
    storage_faulty: bool = False

    def to_wire(self) -> list[Any]:
        return [self.term, self.vote, [c.to_wire() for c in self.configs], self.storage_faulty]

    @classmethod
    def from_wire(cls, w: list[Any]) -> HardState:
        return cls(w[0], w[1], tuple(ConfigEntry.from_wire(c) for c in w[2]), w[3])


@dataclass(slots=True)
class RaftConfig:
    node_id: int
    #: A batch for the no-op a new leader appends (the broker: a Kafka control batch).
    noop_batch: Callable[[], bytes]
    #: A control batch carrying a configuration.
    membership_batch: Callable[[Membership], bytes]
    #: The configuration in a control batch, or None if it is some other control batch.
    decode_membership: Callable[[memoryview], Membership | None]
    election_timeout: int = 10
    heartbeat_interval: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_inflight_msgs: int = 32
    max_inflight_bytes: int = 8 << 20
    max_append_bytes: int = 1 << 20
    #: Idle groups stop ticking (see "Quiescence" above); the driver must then call wake().
    quiesce: bool = False
    #: Tell followers of a new commit at once (an append, empty if need be), not with the
    #: next append or heartbeat: for groups whose followers apply what is committed.
    broadcast_commit: bool = False
    faults: frozenset[Fault] = frozenset()

    def __post_init__(self) -> None:
        assert 0 < self.heartbeat_interval < self.election_timeout
        assert self.max_inflight_msgs > 0 and self.max_append_bytes > 0


@dataclass(slots=True)
class Ready:
    """One batch of work for the driver; see the module docstring for the order."""

    #: Persist before ``advance`` (None: unchanged).
    hard_state: HardState | None
    #: Offsets below this must be durable before ``advance``.
    sync_end: int
    #: The high watermark (exclusive).
    commit: int
    term: int
    role: Role
    leader: int | None
    #: Lowest offset the core truncated from since the last Ready (the driver may have to
    #: fail waiters for offsets at or above it), or None.
    truncated_to: int | None
    #: Send now.
    messages: list[Message]
    _after_persist: list[Message] = field(default_factory=list, repr=False)


_LEADER_MSGS = (Append, Heartbeat, InstallLogStart, TimeoutNow)


class RaftNode:
    """One member of one Raft group. Not thread-safe; one driver calls it."""

    def __init__(
        self,
        config: RaftConfig,
        log: RaftLog,
        rng: random.Random,
        hard_state: HardState | None = None,
        *,
        initial: Membership,
        storage_faulty: bool = False,
    ) -> None:
        hs = hard_state or HardState()
        self.cfg = config
        self.id = config.node_id
        self.log = log
        self._rng = rng
        self._faults = config.faults
        self.term = hs.term
        self.vote = hs.vote
        self.faulty = storage_faulty or hs.storage_faulty
        self._hs_dirty = False
        if storage_faulty:
            # Acks sent before the crash were in terms <= hs.term; make them uncountable.
            self.term += 1
            self.vote = None
            self._hs_dirty = True
        self._persisted = hs
        self._configs = self._recover_configs(hs.configs, initial)
        self.membership = self._configs[-1].membership
        self.role = Role.FOLLOWER
        self.leader: int | None = None
        self.commit = log.log_start_offset
        #: Offsets below are durable: what recovery found, then what the driver confirmed.
        self.durable_end = log.log_end_offset
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        #: Idle: tick() does nothing until an input or wake() (see "Quiescence").
        self.quiesced = False
        self._timeout = self._random_timeout()
        self._votes: dict[int, bool] = {}
        self.progress: dict[int, Progress] = {}
        self.transferee: int | None = None
        self._noop_offset = -1
        self._config_batch: bytes | None = None
        self._leader_commit_seen = 0
        self._broadcast = False
        self._msgs: list[Message] = []
        self._after: list[Message] = []
        self._outstanding: Ready | None = None
        self._last_commit = self.commit
        self._last_soft: tuple[Role, int | None, int] = (self.role, self.leader, self.term)
        self._truncated_to: int | None = None
        self._check()

    @property
    def leader_knows_commit(self) -> bool:
        """A new leader learns the commit index only once an entry of its own term commits
        (Raft §5.4.2, §8): before that its ``commit`` may lag what was already committed, so
        it must not serve reads from it."""
        return self.role is Role.LEADER and self.commit > self._noop_offset

    # ------------------------------------------------------------------ inputs

    def tick(self, *, judge: bool = True) -> None:
        """One unit of logical time. O(1) unless a heartbeat or quorum check falls due.

        ``judge=False``: the driver's process was starved (its ticks came late), so it
        cannot tell a silent peer from one whose messages wait unread: the time that judges
        others (a follower's election timeout, a leader's quorum check) stands still, and a
        leader only keeps its heartbeats going. Timing only; safety does not depend on it.
        """
        assert self._outstanding is None, "tick() between ready() and advance()"
        if self.quiesced:
            return
        if not judge:
            if self.role is Role.LEADER:
                self._tick_heartbeat()
            return
        self.election_elapsed += 1
        if self.role is Role.LEADER:
            if self.election_elapsed >= self.cfg.election_timeout:
                self.election_elapsed = 0
                if self.cfg.check_quorum and not self._quorum_recently_active():
                    self._become_follower(self.term, None)
                    return
                self.transferee = None  # a transfer that did not finish in time is abandoned
            self._tick_heartbeat()
        elif self.election_elapsed >= self._timeout:
            if self._promotable():
                self.election_elapsed = 0
                self._campaign(pre=self.cfg.pre_vote)
            elif self.cfg.quiesce and (self.election_elapsed - self._timeout) % self.cfg.election_timeout == 0:
                # A node that may not campaign keeps counting (its lease on the old leader
                # expires, so it can vote for someone else), but where groups quiesce it must
                # not stay silent: its peers may sleep under a leader that is gone (this very
                # node, restarted). "I am here" wakes them; a leader answers with heartbeats.
                for p in self.membership.members:
                    if p != self.id:
                        self._send_now(HeartbeatResponse(self.id, p, self.term, self.faulty))

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        if self.heartbeat_elapsed >= self.cfg.heartbeat_interval:
            self.heartbeat_elapsed = 0
            if self._can_quiesce():
                self._send_heartbeats(quiesce=True)
                self.quiesced = True
            else:
                self._send_heartbeats()

    def wake(self, leader_silent: int = 0) -> None:
        """Leave quiescence (a no-op if not quiesced).

        The driver calls this when a peer of the group went silent, or after a stall of its
        own. ``leader_silent``: ticks since this node's leader was last heard from, if the
        leader is the silent peer; a follower counts them toward its election timeout.
        """
        assert self._outstanding is None, "wake() between ready() and advance()"
        if not self.quiesced:
            return
        self.quiesced = False
        if self.role is Role.LEADER:
            # A fresh check-quorum round: the followers' answers to the heartbeats sent
            # now (they wake on them) show who is still there.
            self.election_elapsed = 0
            self.heartbeat_elapsed = 0
            self._send_heartbeats()
        else:
            self.election_elapsed = max(self.election_elapsed, leader_silent)

    def delay_election(self, ticks: int) -> None:
        """Push this node's next election timeout ``ticks`` further out.

        For a replica that should let another campaign first (a new partition's preferred
        replica): timing only, so safety is untouched; if the other never wins, this node
        campaigns as usual, just later.
        """
        assert ticks >= 0
        self.election_elapsed -= ticks

    def campaign(self) -> None:
        """Start an election now, as if the election timeout had passed (etcd's MsgHup)."""
        assert self._outstanding is None
        self.wake()
        if self.role is not Role.LEADER and self._promotable():
            self.election_elapsed = 0
            self._campaign(pre=self.cfg.pre_vote)

    def propose(self, batch: bytes | memoryview, checked: Any = None) -> tuple[int, int]:
        """Append a record batch as leader; returns its ``(base, last)`` offsets.

        ``checked`` goes to the log's ``append_as_leader`` untouched (the driver's note of
        what it already verified about the batch, so the log need not look again).
        """
        assert self._outstanding is None, "propose() between ready() and advance()"
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.leader)
        self.wake()
        if self.transferee is not None:
            raise ProposalDroppedError("leadership transfer in progress")
        if self._config_batch is not None:
            raise ProposalDroppedError("membership change being recorded")
        base, last = self.log.append_as_leader(batch, self.term, checked)
        self._broadcast = True
        return base, last

    def transfer_leadership(self, to: int) -> None:
        """Hand leadership to voter ``to`` once it has caught up (TimeoutNow)."""
        assert self._outstanding is None
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.leader)
        if to == self.id:
            return
        self.wake()
        if to not in self.membership.voters:
            raise ValueError(f"node {to} is not a voter")
        self.transferee = to
        self.election_elapsed = 0
        if self.progress[to].match == self.log.log_end_offset - 1:
            self._send_now(TimeoutNow(self.id, to, self.term))
        else:
            self._send_append(to, allow_empty=True)

    def change_membership(self, change: MembershipChange) -> int:
        """Propose one single-server change; returns the offset its batch will have.

        Refused unless the latest configuration is committed and this leader has committed
        an entry of its own term (the single-server change fix).
        """
        assert self._outstanding is None
        if self.role is not Role.LEADER:
            raise NotLeaderError(self.leader)
        self.wake()
        if self.transferee is not None or self._config_batch is not None:
            raise ProposalDroppedError("another change is in progress")
        if self._configs[-1].offset >= self.commit:
            raise ProposalDroppedError("the previous membership change is not committed yet")
        if self.commit <= self._noop_offset:
            raise ProposalDroppedError("this leader has not committed an entry of its term yet")
        new = change.apply(self.membership)
        self._refresh_membership()  # prune to the latest two, so the record stays bounded
        offset = self.log.log_end_offset
        self._configs.append(ConfigEntry(offset, self.term, new))
        self._hs_dirty = True
        self._config_batch = self.cfg.membership_batch(new)
        return offset

    def step(self, m: Message) -> None:
        """Handle one message addressed to this node."""
        assert self._outstanding is None, "step() between ready() and advance()"
        assert m.dst == self.id
        if self.quiesced and not (isinstance(m, Heartbeat) and m.quiesce):
            if self._answer_to_an_earlier_round(m):
                return
            self.wake()
        if m.term > self.term:
            if isinstance(m, VoteRequest):
                if self._in_lease() and not m.force:
                    return  # a follower with a live leader ignores disruptive candidates
                if not m.pre:
                    self._become_follower(m.term, None)
            elif isinstance(m, VoteResponse) and m.pre and m.granted:
                pass  # a granted pre-vote carries the term we would campaign in
            elif isinstance(m, _LEADER_MSGS):
                self._become_follower(m.term, m.src)
            else:
                self._become_follower(m.term, None)
        elif m.term < self.term:
            if isinstance(m, (Append, Heartbeat)):
                # A deposed leader learns the new term and steps down (needed with
                # check-quorum and pre-vote, or it could stay leader of a minority forever).
                self._send_after(HeartbeatResponse(self.id, m.src, self.term))
            elif isinstance(m, VoteRequest) and m.pre:
                self._send_after(VoteResponse(self.id, m.src, self.term, False, pre=True))
            return

        if isinstance(m, VoteRequest):
            self._on_vote_request(m)
        elif self.role is Role.LEADER:
            assert not isinstance(m, _LEADER_MSGS), f"two leaders in term {self.term}"
            if isinstance(m, AppendResponse):
                self._on_append_response(m)
            elif isinstance(m, HeartbeatResponse):
                self._on_heartbeat_response(m)
        elif isinstance(m, VoteResponse):
            self._on_vote_response(m)
        elif isinstance(m, _LEADER_MSGS):
            if self.role is not Role.FOLLOWER:
                self._become_follower(self.term, m.src)
            self.leader = m.src
            self.election_elapsed = 0
            if isinstance(m, Append):
                self._on_append(m)
            elif isinstance(m, Heartbeat):
                self._on_heartbeat(m)
            elif isinstance(m, InstallLogStart):
                self._on_install_log_start(m)
            else:
                self._on_timeout_now()

    # ------------------------------------------------------------------ ready / advance

    def has_ready(self) -> bool:
        if self._outstanding is not None:
            return False
        return bool(
            self._msgs
            or self._after
            or self._broadcast
            or self._hs_dirty
            or self.log.log_end_offset != self.durable_end
            or self.commit != self._last_commit
            or self._truncated_to is not None
            or self._last_soft != (self.role, self.leader, self.term)
        )

    def ready(self) -> Ready:
        assert self._outstanding is None, "advance() the previous Ready first"
        if self._broadcast:
            self._broadcast = False
            if self.role is Role.LEADER:
                for peer in self.progress:
                    self._send_append(peer, allow_empty=True)
        hs = self._hard_state() if self._hs_dirty else None
        now, after = self._msgs, self._after
        if hs is not None:
            after = now + after
            now = []
        rd = Ready(
            hard_state=hs,
            sync_end=self.log.log_end_offset,
            commit=self.commit,
            term=self.term,
            role=self.role,
            leader=self.leader,
            truncated_to=self._truncated_to,
            messages=now,
            _after_persist=after,
        )
        self._msgs, self._after = [], []
        self._hs_dirty = False
        self._truncated_to = None
        self._last_commit = self.commit
        self._last_soft = (self.role, self.leader, self.term)
        self._outstanding = rd
        return rd

    def advance(self, rd: Ready) -> list[Message]:
        """The driver made ``rd`` durable; returns the messages that were waiting for that."""
        assert rd is self._outstanding, "advance() takes the Ready last returned by ready()"
        self._outstanding = None
        if rd.hard_state is not None:
            self._persisted = rd.hard_state
        assert rd.sync_end <= self.log.log_end_offset
        if rd.sync_end > self.durable_end:
            self.durable_end = rd.sync_end
        if self.role is Role.LEADER:
            if self._maybe_commit() and self.cfg.broadcast_commit:
                self._broadcast = True  # else followers hear of it with the next append or heartbeat
            if self._config_batch is not None and self._configs[-1] in self._persisted.configs:
                self._append_config_batch()
        self._maybe_clear_faulty()
        self._check()
        return rd._after_persist

    # ------------------------------------------------------------------ elections

    def _campaign(self, *, pre: bool, force: bool = False) -> None:
        if pre:
            self.role = Role.PRE_CANDIDATE
            self.leader = None
            self._timeout = self._random_timeout()
            term = self.term + 1
        else:
            self._reset(self.term + 1)
            self.role = Role.CANDIDATE
            self.vote = self.id
            self._hs_dirty = True
            term = self.term
        self._votes = {self.id: True}
        if self._tally()[0] >= self.membership.quorum():
            self._won(pre)
            return
        last = self.log.log_end_offset - 1
        last_term = self._term_at(last)
        for v in self.membership.voters:
            if v != self.id:
                req = VoteRequest(self.id, v, term, last, last_term, pre=pre, force=force)
                if pre:
                    self._send_now(req)
                else:
                    self._send_after(req)

    def _won(self, pre: bool) -> None:
        if pre:
            self._campaign(pre=False)
        else:
            self._become_leader()

    def _tally(self) -> tuple[int, int]:
        granted = rejected = 0
        for v, g in self._votes.items():
            if v in self.membership.voters:
                if g:
                    granted += 1
                else:
                    rejected += 1
        return granted, rejected

    def _on_vote_response(self, m: VoteResponse) -> None:
        if (self.role is Role.PRE_CANDIDATE and m.pre) or (self.role is Role.CANDIDATE and not m.pre):
            self._votes.setdefault(m.src, m.granted)
            granted, rejected = self._tally()
            if granted >= self.membership.quorum():
                self._won(m.pre)
            elif len(self.membership.voters) - rejected < self.membership.quorum():
                self._become_follower(self.term, None)

    def _on_vote_request(self, m: VoteRequest) -> None:
        can_vote = (
            self.vote == m.src
            or (self.vote is None and self.leader is None)
            or (m.pre and m.term > self.term)
        )
        if self.faulty and Fault.VOTE_WHILE_FAULTY not in self._faults:
            can_vote = False  # it may lack entries it once acknowledged
        last = self.log.log_end_offset - 1
        up_to_date = (m.last_term, m.last_offset) >= (self._term_at(last), last)
        if can_vote and up_to_date:
            if m.pre:
                self._send_after(VoteResponse(self.id, m.src, m.term, True, pre=True))
            else:
                self.vote = m.src
                self._hs_dirty = True
                self.election_elapsed = 0
                self._send_after(VoteResponse(self.id, m.src, self.term, True))
        else:
            self._send_after(VoteResponse(self.id, m.src, self.term, False, pre=m.pre))

    def _in_lease(self) -> bool:
        return (
            self.cfg.check_quorum
            and self.leader is not None
            and self.election_elapsed < self.cfg.election_timeout
        )

    def _promotable(self) -> bool:
        if self.faulty:
            return False
        if self.id in self.membership.voters:
            return True
        # Dissertation §4.2.2: a server removed by a configuration that is not committed yet
        # may still be needed (it may hold the most up-to-date log), so it keeps starting
        # elections, without counting its own vote, until the removal commits.
        leo = self.log.log_end_offset
        active = [c for c in self._configs if c.offset < leo]
        return (
            len(active) >= 2
            and active[-1].offset >= self.commit
            and self.id in active[-2].membership.voters
        )

    def _on_timeout_now(self) -> None:
        if self._promotable():
            self._campaign(pre=False, force=True)

    # ------------------------------------------------------------------ roles

    def _reset(self, term: int) -> None:
        if term != self.term:
            assert term > self.term, "terms only go up"
            self.term = term
            self.vote = None
            self._hs_dirty = True
            self._leader_commit_seen = 0
        self.leader = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.quiesced = False
        self._timeout = self._random_timeout()
        self._votes = {}
        self.progress = {}
        self.transferee = None
        if self._config_batch is not None:
            # A leader's change that never reached the log: forget it.
            dropped = self._configs.pop()
            assert dropped.offset == self.log.log_end_offset
            self._config_batch = None
            self._hs_dirty = True

    def _become_follower(self, term: int, leader: int | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _become_leader(self) -> None:
        assert self.role is Role.CANDIDATE and self.vote == self.id
        self.role = Role.LEADER
        self.leader = self.id
        # A whole election timeout before the first check-quorum (etcd's becomeLeader resets
        # it too): counted from the campaign, the check came while the first appends were
        # still on their way, and with many groups electing on a busy machine new leaders
        # stepped down by the hundred, their followers campaigned, and the terms climbed.
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        leo = self.log.log_end_offset
        # A configuration a follower recorded for a batch it had not appended yet will never
        # be in this log: the no-op takes that offset.
        while len(self._configs) > 1 and self._configs[-1].offset >= leo:
            self._configs.pop()
            self._hs_dirty = True
        self.progress = {
            p: Progress(match=-1, next=leo) for p in self.membership.members if p != self.id
        }
        _, self._noop_offset = self.log.append_as_leader(self.cfg.noop_batch(), self.term)
        self._broadcast = True

    def _answer_to_an_earlier_round(self, m: Message) -> bool:
        """Is ``m``, reaching this quiesced leader, an answer to a heartbeat round it sent
        before it went to sleep, which can change nothing?

        A leader quiesces once every follower answered a round, but an answer does not say
        which round it is for: when answers take longer than a heartbeat interval (a busy
        loop, a full garbage collection), the answer to the last round arrives after the
        leader already slept on an earlier one's. Waking for it sent a new round to every
        follower (waking them too), whose answers came late in turn: with 5,000 partitions
        on a busy machine, groups woke and slept in waves that never ended (tens of
        thousands of wakes a minute per broker, every one by a heartbeat or its answer).
        Such an answer (this term, from a follower that holds the whole log, not faulty)
        is dropped without waking. Any other message still wakes the group: a faulty
        follower's answer (it needs repair), one of a higher term, a vote request.
        """
        if not (isinstance(m, HeartbeatResponse) and self.role is Role.LEADER
                and m.term == self.term and not m.faulty):
            return False
        pr = self.progress.get(m.src)
        return (pr is not None and not pr.faulty and pr.state is ProgressState.REPLICATE
                and pr.match == self.log.log_end_offset - 1)

    def _quorum_recently_active(self) -> bool:
        active = 1 if self.id in self.membership.voters else 0
        for p, pr in self.progress.items():
            if pr.recent_active and p in self.membership.voters:
                active += 1
            pr.recent_active = False
        return active >= self.membership.quorum()

    def _random_timeout(self) -> int:
        t = self.cfg.election_timeout
        return self._rng.randrange(t, 2 * t)

    # ------------------------------------------------------------------ leader: replication

    def _send_heartbeats(self, *, quiesce: bool = False) -> None:
        for p, pr in self.progress.items():
            pr.replied = False
            self._send_now(Heartbeat(self.id, p, self.term, min(self.commit, pr.match + 1), quiesce))

    def _can_quiesce(self) -> bool:
        """Idle: nothing to send, nothing to commit, and every follower answered the last
        heartbeat round, healthy, holding the whole log."""
        if (
            not self.cfg.quiesce
            or self.transferee is not None
            or self._config_batch is not None
            or self._broadcast
        ):
            return False
        leo = self.log.log_end_offset
        if self.commit != leo or self.durable_end != leo or not self.leader_knows_commit:
            return False
        for pr in self.progress.values():
            if (
                not pr.replied
                or pr.faulty
                or pr.match != leo - 1
                or pr.state is not ProgressState.REPLICATE
                or pr.inflight
            ):
                return False
        return True

    def _send_append(self, peer: int, *, allow_empty: bool) -> None:
        """Send what ``peer`` needs next, as far as its flow control allows."""
        pr = self.progress[peer]
        log = self.log
        cfg = self.cfg
        while not pr.paused(cfg.max_inflight_msgs, cfg.max_inflight_bytes):
            if pr.next < log.log_start_offset:
                self._send_now(
                    InstallLogStart(
                        self.id, peer, self.term, log.log_start_offset, log.log_start_term,
                        self._config_at_log_start(),
                    )
                )
                pr.become_snapshot()
                return
            run = log.read(pr.next, cfg.max_append_bytes)
            if run is None:
                if allow_empty:
                    prev = pr.next - 1
                    self._send_now(
                        Append(self.id, peer, self.term, prev, self._term_at(prev), self.commit,
                               prev, self.term)
                    )
                    if pr.state is ProgressState.PROBE:
                        pr.probe_prev = prev
                        pr.probe_sent = True
                return
            prev = run.base - 1
            self._send_now(
                Append(self.id, peer, self.term, prev, self._term_at(prev), self.commit, run.last,
                       run.term, run.data)
            )
            if pr.state is ProgressState.PROBE:
                pr.probe_prev = prev
            pr.sent(run.last, len(run.data))
            allow_empty = False

    def _on_heartbeat_response(self, m: HeartbeatResponse) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        pr.replied = True
        pr.faulty = m.faulty
        if pr.state is ProgressState.SNAPSHOT:
            pr.become_probe(pr.match + 1)  # the InstallLogStart may be lost: try again
        elif pr.state is ProgressState.PROBE:
            pr.probe_sent = False
        elif pr.inflight and pr.paused(self.cfg.max_inflight_msgs, self.cfg.max_inflight_bytes):
            # Acks may have been lost; free one slot so a message (and then a rejection that
            # turns this into a probe) can get through.
            pr.inflight_bytes -= pr.inflight.popleft()[1]
        if pr.match < self.log.log_end_offset - 1:
            self._send_append(m.src, allow_empty=True)

    def _on_append_response(self, m: AppendResponse) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        pr.replied = True
        pr.faulty = m.faulty
        if m.reject:
            rejected = m.match
            if rejected <= pr.match:
                return  # stale: it matched there before
            if pr.state is ProgressState.PROBE and rejected != pr.probe_prev:
                return  # stale: answers an older probe
            hint = m.hint_offset
            if m.hint_term > 0:
                hint = min(hint, self.log.end_offset_for_term(m.hint_term)[1] - 1)
            pr.become_probe(max(pr.match + 1, min(rejected, hint + 1)))
            self._send_append(m.src, allow_empty=True)
            return
        news = pr.acked(m.match)
        if pr.state is not ProgressState.REPLICATE:
            pr.become_replicate()
        if news and self._maybe_commit():
            if self.role is not Role.LEADER:
                return  # the commit completed our own removal
            if self.cfg.broadcast_commit:
                self._broadcast = True
        if m.src == self.transferee and pr.match == self.log.log_end_offset - 1:
            self._send_now(TimeoutNow(self.id, m.src, self.term))
        self._send_append(m.src, allow_empty=False)

    def _maybe_commit(self) -> bool:
        voters = self.membership.voters
        matches = [self.durable_end - 1] if self.id in voters else []
        for p, pr in self.progress.items():
            if p in voters:
                matches.append(-1 if pr.faulty else pr.match)
        assert len(matches) == len(voters)
        matches.sort(reverse=True)
        candidate = matches[self.membership.quorum() - 1] + 1
        if candidate <= self.commit:
            return False
        if (
            self._term_at(candidate - 1) != self.term
            and Fault.COMMIT_PREVIOUS_TERM not in self._faults
        ):
            return False  # §5.4.2: never commit an earlier term's entry by counting replicas
        self._commit_to(candidate)
        if self.id not in self.membership.voters and self._configs[-1].offset < self.commit:
            self._become_follower(self.term, None)  # removed, and the removal is committed
        return True

    def _config_at_log_start(self) -> Membership:
        start = self.log.log_start_offset
        for c in reversed(self._configs):
            if c.offset < start:
                return c.membership
        # Both recorded configurations are above the log start: the older one is committed,
        # and the follower will replay the newer one from the log.
        return self._configs[0].membership

    # ------------------------------------------------------------------ follower

    def _on_append(self, m: Append) -> None:
        log = self.log
        prev = m.prev_offset
        leo = log.log_end_offset
        if not (prev < self.commit or (prev < leo and log.term_at(prev) == m.prev_term)):
            self._reject(m, leo)
            return
        match = m.last
        if m.data and m.last >= self.commit:
            data = memoryview(m.data)
            base = prev + 1
            if base < self.commit:  # entries below our commit are committed: they match
                data = data[position_of(data, self.commit) :]
                base = self.commit
            start = base
            if base < leo:
                if log.term_at(base) == m.entries_term:
                    start = log.end_offset_for_term(m.entries_term)[1]
                if start < leo and start <= m.last:
                    assert start >= self.commit, "never truncate a committed entry"
                    self._truncate(start)
            if start <= m.last:
                if start > base:
                    data = data[position_of(data, start) :]
                match = self._append_run(data, start, m.last, m.entries_term)
        self._send_after(
            AppendResponse(self.id, m.src, self.term, False, match, faulty=self.faulty)
        )
        self._commit_to(min(m.commit, match + 1))
        self._leader_commit_seen = max(self._leader_commit_seen, m.commit)
        self._maybe_clear_faulty()

    def _reject(self, m: Append, leo: int) -> None:
        log = self.log
        hint = min(m.prev_offset, leo - 1, log.end_offset_for_term(m.prev_term)[1] - 1)
        hint = max(hint, self.commit - 1, log.log_start_offset - 1)
        hint_term = log.term_at(hint) or 0
        self._send_after(
            AppendResponse(self.id, m.src, self.term, True, m.prev_offset, hint, hint_term,
                           self.faulty)
        )

    def _append_run(self, data: memoryview, start: int, last: int, term: int) -> int:
        """Append ``data`` (batches from ``start``); returns the last offset appended.

        Stops before a membership batch the durable hard state does not know yet, and
        records it: the leader resends it, and it is appended after the record is durable.
        """
        cut = len(data)
        present: list[ConfigEntry] = []
        found: ConfigEntry | None = None
        for span in iter_spans(data):
            if not span.control:
                continue
            membership = self.cfg.decode_membership(data[span.pos : span.pos + span.size])
            if membership is None:
                continue
            entry = ConfigEntry(span.base, term, membership)
            if entry in self._configs and entry in self._persisted.configs:
                present.append(entry)
                continue
            found = entry
            cut = span.pos
            last = span.base - 1
            break
        # A configuration recorded at or above ``start`` that is not being appended now
        # belonged to a batch that will never be in this log.
        configs = self._configs
        while len(configs) > 1 and configs[-1].offset >= start and configs[-1] not in present:
            configs.pop()
            self._hs_dirty = True
        if cut:
            self.log.append_as_follower(data[:cut])
            assert self.log.log_end_offset == last + 1
        if found is not None:
            while configs and configs[-1].offset >= found.offset:
                configs.pop()
            configs.append(found)
            self._hs_dirty = True
        assert configs, "a configuration always remains"
        self._refresh_membership()
        return last

    def _on_heartbeat(self, m: Heartbeat) -> None:
        self._commit_to(min(m.commit, self.log.log_end_offset))
        self._leader_commit_seen = max(self._leader_commit_seen, m.commit)
        self._maybe_clear_faulty()
        if (
            m.quiesce
            and self.cfg.quiesce
            and not self.faulty
            and self.commit == m.commit == self.log.log_end_offset
        ):
            self.quiesced = True  # no answer: it would wake the leader
            return
        self._send_after(HeartbeatResponse(self.id, m.src, self.term, self.faulty))

    def _on_install_log_start(self, m: InstallLogStart) -> None:
        log = self.log
        s = m.offset
        if s <= self.commit:
            match = self.commit - 1
        elif s - 1 < log.log_end_offset and log.term_at(s - 1) == m.start_term:
            match = s - 1  # our log already matches through s - 1
        else:
            match = s - 1
            self._truncate(log.log_start_offset, full=(s, m.start_term))
            self._configs = [ConfigEntry(s - 1, m.start_term, m.config)]
            self._hs_dirty = True
            self._refresh_membership()
            self.commit = s
            self.durable_end = s
        self._send_after(AppendResponse(self.id, m.src, self.term, False, match, faulty=self.faulty))

    def _maybe_clear_faulty(self) -> None:
        if not self.faulty or self.role is not Role.FOLLOWER:
            return
        c = self._leader_commit_seen
        if c > 0 and self.durable_end >= c and self.log.term_at(c - 1) == self.term:
            self.faulty = False
            self._hs_dirty = True

    # ------------------------------------------------------------------ log and membership

    def _truncate(self, offset: int, *, full: tuple[int, int] | None = None) -> None:
        if full is None:
            assert offset >= self.commit, "never truncate a committed entry"
            self.log.truncate_to(offset)
        else:
            self.log.truncate_fully_and_start_at(*full)
        if self._truncated_to is None or offset < self._truncated_to:
            self._truncated_to = offset
        self.durable_end = min(self.durable_end, self.log.log_end_offset)
        if full is None and self._configs[-1].offset >= offset:
            # Only the latest configuration can be uncommitted, so one always remains.
            while self._configs[-1].offset >= offset:
                self._configs.pop()
                assert self._configs, "truncation removed a committed configuration"
            self._hs_dirty = True
            self._refresh_membership()

    def _append_config_batch(self) -> None:
        assert self._config_batch is not None and self.role is Role.LEADER
        base, _ = self.log.append_as_leader(self._config_batch, self.term)
        assert base == self._configs[-1].offset
        self._config_batch = None
        self._refresh_membership()
        self._broadcast = True

    def _refresh_membership(self) -> None:
        leo = self.log.log_end_offset
        while len(self._configs) > 3 or (
            len(self._configs) == 3 and self._configs[2].offset < leo
        ):
            self._configs.pop(0)  # keep the latest two in the log (+ one about to be)
            self._hs_dirty = True
        active = self._configs[0]
        for c in self._configs:
            if c.offset < leo:
                active = c
        if active.membership == self.membership:
            return
        self.membership = active.membership
        if self.role is Role.LEADER:
            for p in self.membership.members:
                if p != self.id and p not in self.progress:
                    self.progress[p] = Progress(match=-1, next=leo)
            for p in list(self.progress):
                if p not in self.membership.members:
                    del self.progress[p]
            if self.transferee is not None and self.transferee not in self.membership.voters:
                self.transferee = None
        elif self.role is not Role.FOLLOWER and self.id not in self.membership.voters:
            self._become_follower(self.term, None)

    def _recover_configs(
        self, recorded: tuple[ConfigEntry, ...], initial: Membership
    ) -> list[ConfigEntry]:
        if not recorded:
            return [ConfigEntry(-1, 0, initial)]
        log = self.log
        kept = [
            c for c in recorded
            if c.offset < log.log_start_offset
            or (c.offset < log.log_end_offset and log.term_at(c.offset) == c.term)
        ]
        if len(kept) != len(recorded):
            self._hs_dirty = True
        # The oldest recorded configuration is committed; without a better one, keep it.
        return kept or [recorded[0]]

    def _commit_to(self, c: int) -> None:
        if c > self.commit:
            assert c <= self.log.log_end_offset
            self.commit = c

    def _term_at(self, offset: int) -> int:
        t = self.log.term_at(offset)
        return 0 if t is None else t

    def _hard_state(self) -> HardState:
        vote = None if Fault.FORGET_VOTE in self._faults else self.vote
        return HardState(self.term, vote, tuple(self._configs), self.faulty)

    # ------------------------------------------------------------------ outbox

    def _send_now(self, m: Message) -> None:
        self._msgs.append(m)

    def _send_after(self, m: Message) -> None:
        if isinstance(m, AppendResponse) and Fault.ACK_BEFORE_PERSIST in self._faults:
            self._msgs.append(m)
        else:
            self._after.append(m)

    def _check(self) -> None:
        """Invariants that hold between inputs (TigerBeetle style: in production code)."""
        log = self.log
        assert log.log_start_offset <= self.commit <= log.log_end_offset, (
            f"commit {self.commit} outside [{log.log_start_offset}, {log.log_end_offset}]"
        )
        assert self.durable_end <= log.log_end_offset
        assert 1 <= len(self._configs) <= 3
        assert (self.role is Role.LEADER) == (self.leader == self.id)
        assert self.role is not Role.CANDIDATE or self.vote == self.id
        assert not self.quiesced or (
            self.role in (Role.LEADER, Role.FOLLOWER) and self.commit == log.log_end_offset
        ), f"quiesced {self.role} with commit {self.commit} below the log end {log.log_end_offset}"



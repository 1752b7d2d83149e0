"""A seeded, single-threaded, deterministic simulation of one Raft group under attack.

One :class:`Simulation` = one seed. Every step: maybe a fault (crash, restart, storage
corruption, partition, heal), maybe a leader transfer, a membership change or retention,
client proposals, message deliveries (dropped, duplicated, delayed, reordered), fsync
completions, and one tick per running node. After every step the :class:`Checker` looks at
every node. The last part of the run is quiet (faults heal, every node restarts, the network
is reliable): a leader must emerge and a proposal made then must commit before the end.

Quiescence (half the swarmed seeds, or ``--quiesce``): idle groups stop ticking, and the
simulator plays the broker's part in waking them. Every node pings every other node each
heartbeat interval (pings cross the same faulty network); a node that has heard nothing from
a peer for an election timeout wakes its group if that peer is its leader or, for a leader,
one of its members.

Persistence is modelled the way a real driver sees it: ``ready()`` hands out the hard state
and the log end to sync; the fsync completes a few steps later (``advance()``) and until then
the node takes no input. A crash loses the hard state of an unfinished Ready and cuts the
log's unsynced tail at a random batch boundary. Storage corruption (on at most a minority at
a time) cuts a node's log at a random *synced* batch at restart, and the node restarts
flagged storage-faulty.

Everything random comes from one ``random.Random(seed)``; nodes get their own generators
seeded from it. Same seed, same options => the same trace, bit for bit (``digest``).
"""

from __future__ import annotations

import dataclasses
import heapq
import random
import zlib
from dataclasses import dataclass, field
from typing import ClassVar

from strata.broker.raft.batches import SimCodec, make_batch
from strata.broker.raft.log import MemoryRaftLog
from strata.broker.raft.membership import ChangeKind, Membership, MembershipChange
from strata.broker.raft.messages import Message
from strata.broker.raft.node import (
    Fault,
    HardState,
    NotLeaderError,
    ProposalDroppedError,
    RaftConfig,
    RaftNode,
    Ready,
    Role,
)

from .checker import Checker, Violation


class KnownStall(Violation):
    """A liveness stall the design knowingly accepts (reported, not failed)."""


@dataclass(slots=True)
class SimOptions:
    nodes: int = 3
    #: Steps of the fault phase (a step is one tick of every running node).
    steps: int = 300
    #: Once faults stop, a proposal made afterwards must commit within this many steps.
    liveness_ticks: int = 600
    faults: frozenset[Fault] = frozenset()
    election_timeout: int = 10
    heartbeat_interval: int = 2
    p_propose: float = 0.35
    p_drop: float = 0.05
    p_dup: float = 0.03
    p_long_delay: float = 0.08
    p_crash: float = 0.004
    p_restart: float = 0.08
    p_corrupt: float = 0.5
    p_partition: float = 0.01
    p_heal: float = 0.06
    p_transfer: float = 0.006
    p_membership: float = 0.01
    p_retention: float = 0.01
    #: Crash a node right at an interesting moment (it just voted; it just became leader;
    #: as leader it just moved its commit index; it just took a proposal). A quarter of the
    #: time the whole cluster loses power instead; otherwise the node often restarts at once.
    p_pounce_vote: float = 0.1
    p_pounce_elected: float = 0.05
    p_pounce_commit: float = 0.02
    p_pounce_propose: float = 0.02
    #: A crashed node's messages still in flight are lost (its connections reset).
    p_lose_inflight: float = 0.5
    #: Every node loses power in the same step.
    p_power_loss: float = 0.0015
    max_inflight_msgs: int = 4
    #: Swarm testing (Groce et al., ISSTA 2012): each seed scales every fault's rate by a
    #: random factor, often zero, and may turn pre-vote or check-quorum off, so that seeds
    #: differ in kind and not only in detail.
    swarm: bool = True
    pre_vote: bool = True
    check_quorum: bool = True
    max_append_bytes: int = 600
    #: Idle groups quiesce (with swarm: decided per seed, half of them).
    quiesce: bool = False

    def replay_command(self, seed: int) -> str:
        cmd = f"python -m tests.sim.run --replay {seed} --nodes {self.nodes} --steps {self.steps}"
        if not self.swarm:
            cmd += " --no-swarm"
            if self.quiesce:
                cmd += " --quiesce"
        for f in sorted(f.value for f in self.faults):
            cmd += f" --fault {f}"
        return cmd


@dataclass(slots=True)
class SimNode:
    id: int
    log: MemoryRaftLog
    hard_state: HardState | None = None
    raft: RaftNode | None = None
    #: (Ready, step at which its fsync completes)
    pending: tuple[Ready, int] | None = None
    #: Recovery found corruption and no hard state saying so is durable yet.
    corrupt: bool = False
    missed_ticks: int = 0
    last_vote: tuple[int, int | None] | None = None
    last_role: Role | None = None
    #: Quiescence: the step this node last heard from each peer, and the peers it counts as
    #: silent (an election timeout without a word).
    heard: dict[int, int] = field(default_factory=dict)
    silent: set[int] = field(default_factory=set)


@dataclass(slots=True)
class Ping:
    """The driver-level liveness ping between two nodes (the broker sends one per peer)."""

    TYPE: ClassVar[int] = 0
    src: int
    dst: int
    term: int = 0


@dataclass(slots=True)
class Outcome:
    seed: int
    violation: str | None
    digest: int
    steps: int
    elections: int
    committed: int
    trace: list[tuple] = field(default_factory=list)
    #: A liveness stall of a known, documented kind (not counted as a failure).
    stall: str | None = None


class Simulation:
    def __init__(self, seed: int, opts: SimOptions, *, record: bool = False) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        if opts.swarm:
            opts = _swarm(opts, self.rng)
            # From a generator of its own, so the seeds that do not quiesce replay as before.
            opts = dataclasses.replace(opts, quiesce=random.Random(seed * 7919 + 17).random() < 0.5)
        self.opts = opts
        self.checker = Checker()
        self.now = 0
        self.ids = list(range(1, opts.nodes + 2))  # one spare for membership changes
        self.initial = Membership(frozenset(range(1, opts.nodes + 1)))
        self.max_faulty = (opts.nodes - 1) // 2
        self.nodes: dict[int, SimNode] = {}
        self.net: list[tuple[int, int, Message]] = []
        self._seq = 0
        self.blocked: set[tuple[int, int]] = set()
        self.quiet = False
        self.digest = 0
        self.record = record
        self.trace: list[tuple] = []
        self._proposal = 0
        self.membership_changes = 0
        for i in self.ids:
            log = MemoryRaftLog()
            self._hook(i, log)
            node = SimNode(i, log)
            self.nodes[i] = node
            self._start(node)

    # ---------------------------------------------------------------------------- running

    def run(self) -> Outcome:
        opts = self.opts
        violation = None
        stall = None
        try:
            for step in range(opts.steps + opts.liveness_ticks):
                self.now = step
                if step == opts.steps:
                    self._go_quiet()
                self._step()
                for node in self.nodes.values():
                    if node.raft is not None:
                        self._observe(node)
                if self.checker.watch_hit:
                    break
            else:
                self._fail_liveness()
        except KnownStall as e:
            stall = f"step {self.now}: {e}"
        except Violation as e:
            violation = f"step {self.now}: {e}"
        except AssertionError as e:
            violation = f"step {self.now}: assertion failed: {e}"
        except Exception as e:  # a crash of the core is a finding too
            violation = f"step {self.now}: {type(e).__name__}: {e}"
        return Outcome(
            self.seed, violation, self.digest, self.now + 1,
            len(self.checker.leaders), len(self.checker.committed), self.trace, stall,
        )

    def _step(self) -> None:
        rng = self.rng
        o = self.opts
        # With quiescence, clients go idle half the time (40 steps on, 40 off) so that
        # groups do quiesce, under faults and in the quiet phase, and must wake again.
        idle = o.quiesce and (self.now // 40) % 2 == 1
        if not self.quiet:
            self._faults()
            if not idle and rng.random() < o.p_transfer:
                self._transfer()
            if not idle and rng.random() < o.p_membership:
                self._membership()
            if rng.random() < o.p_retention:
                self._retention()
        if not idle and rng.random() < o.p_propose:
            self._propose()
        for node in self.nodes.values():
            if node.pending is not None and node.pending[1] <= self.now:
                self._complete(node)
        self._deliver()
        if o.quiesce:
            self._liveness()
        for node in self.nodes.values():
            if node.raft is not None:
                if node.pending is None:
                    node.raft.tick()
                    self._drive(node)
                else:
                    node.missed_ticks += 1

    def _liveness(self) -> None:
        """The broker's part in quiescence: pings, and waking the groups of a silent peer."""
        o = self.opts
        for node in self.nodes.values():
            raft = node.raft
            if raft is None:
                continue
            if self.now % o.heartbeat_interval == 0:
                for j in self.ids:
                    if j != node.id:
                        self._send(Ping(node.id, j))
            for j in self.ids:
                if j == node.id:
                    continue
                silent_for = self.now - node.heard.get(j, -1)
                if silent_for <= o.election_timeout:
                    node.silent.discard(j)
                    continue
                if j in node.silent or node.pending is not None:
                    continue  # already handled; or fsyncing: no input now, try next step
                node.silent.add(j)
                if not raft.quiesced:
                    continue
                # As the broker does (Replica.peer_silent): a silent leader wakes the group;
                # a silent follower only if the silent peers cost the leader its quorum.
                m = raft.membership
                if raft.leader == j or (
                    raft.role is Role.LEADER and j in m.members
                    and sum(1 for v in m.voters if v == node.id or v not in node.silent) < m.quorum()
                ):
                    self._event("wake", node.id, j)
                    raft.wake(silent_for if raft.leader == j else 0)
                    self._drive(node)

    def _observe(self, node: SimNode) -> None:
        raft = node.raft
        assert raft is not None
        old_commit = self.checker.commit_seen.get(node.id, -1)
        self.checker.observe(node.id, raft, node.log)
        if self.quiet:
            return
        o = self.opts
        vote = (raft.term, raft.vote)
        p = 0.0
        if raft.vote is not None and vote != node.last_vote:
            p = o.p_pounce_vote
        node.last_vote = vote
        if raft.role is Role.LEADER:
            if node.last_role is not Role.LEADER:
                p = max(p, o.p_pounce_elected)
            elif raft.commit > old_commit >= 0:
                p = max(p, o.p_pounce_commit)
        node.last_role = raft.role
        if p and self.rng.random() < p:
            r = self.rng.random()
            if r < 0.2:
                self._power_loss()
            elif r < 0.5:
                self._isolate(node.id)
            else:
                self._crash(node)
                if r < 0.8:
                    self._start(node)

    def _go_quiet(self) -> None:
        self.quiet = True
        self.blocked.clear()
        self._event("quiet")
        for node in self.nodes.values():
            if node.raft is None:
                self._start(node)

    def _fail_liveness(self) -> None:
        ticks = self.opts.liveness_ticks
        faulty = [n.id for n in self.nodes.values() if n.raft is not None and n.raft.faulty]
        if faulty and self.membership_changes:
            # Known limitation (see the report in node.py's "Storage faults"): a storage-faulty
            # node may not vote until a leader has caught it up, and with a membership change
            # in flight the remaining voters can lack a quorum that will elect anyone.
            raise KnownStall(
                f"no commit in {ticks} quiet ticks; storage-faulty {faulty} cannot vote and "
                "a membership change is in flight"
            )
        if not self.checker.watch:
            raise Violation(f"liveness: no leader took a proposal in the {ticks} quiet ticks")
        raise Violation(f"liveness: no proposal committed in the {ticks} quiet ticks")

    # ---------------------------------------------------------------------------- nodes

    def _hook(self, i: int, log: MemoryRaftLog) -> None:
        checker = self.checker
        log.on_append = lambda lg, b, la, t, d, p: checker.on_append(i, b, la, t, d, p)
        log.on_truncate = lambda lg, off, full: checker.on_truncate(i, lg, off, full)

    def _start(self, node: SimNode) -> None:
        o = self.opts
        cfg = RaftConfig(
            node_id=node.id,
            noop_batch=SimCodec.noop_batch,
            membership_batch=SimCodec.membership_batch,
            decode_membership=SimCodec.decode_membership,
            election_timeout=o.election_timeout,
            heartbeat_interval=o.heartbeat_interval,
            max_inflight_msgs=o.max_inflight_msgs,
            max_append_bytes=o.max_append_bytes,
            pre_vote=o.pre_vote,
            check_quorum=o.check_quorum,
            quiesce=o.quiesce,
            faults=o.faults,
        )
        node.raft = RaftNode(
            cfg, node.log, random.Random(self.rng.getrandbits(32)), node.hard_state,
            initial=self.initial, storage_faulty=node.corrupt,
        )
        node.missed_ticks = 0
        node.heard = dict.fromkeys(self.ids, self.now)  # a fresh process: a grace period
        node.silent = set()
        self.checker.node_restarted(node.id)
        self._event("start", node.id, node.corrupt)
        self._drive(node)

    def _drive(self, node: SimNode) -> None:
        """Take the node's Ready, if any: send what may go now, start its fsync."""
        raft = node.raft
        assert raft is not None
        for _ in range(100):
            if node.pending is not None or not raft.has_ready():
                return
            rd = raft.ready()
            for m in rd.messages:
                self._send(m)
            delay = self.rng.choice((0, 0, 0, 1, 2))
            node.pending = (rd, self.now + delay)
            if delay:
                return
            self._complete(node)
        raise Violation(f"node {node.id} produced 100 Readies in a row")

    def _complete(self, node: SimNode) -> None:
        """The fsync of the pending Ready finished: persist, advance, send the rest."""
        assert node.pending is not None and node.raft is not None
        rd, _ = node.pending
        node.pending = None
        if rd.hard_state is not None:
            node.hard_state = rd.hard_state
            if rd.hard_state.storage_faulty:
                node.corrupt = False  # the flag is durable in the hard state now
        node.log.sync(rd.sync_end)
        for m in node.raft.advance(rd):
            self._send(m)
        self._drive(node)

    def _crash(self, node: SimNode) -> None:
        rng = self.rng
        log = node.log
        node.raft = None
        node.pending = None
        if rng.random() < self.opts.p_lose_inflight:
            self.net = [e for e in self.net if e[2].src != node.id]
            heapq.heapify(self.net)
        bounds = [b for b in log.batch_bounds() if b >= log.synced_end]
        cut = rng.choice(bounds)
        log.cut(cut)
        at = -1
        if rng.random() < self.opts.p_corrupt and self._faulty_count() < self.max_faulty:
            synced = [b for b in log.batch_bounds() if b < log.synced_end]
            if synced:
                at = rng.choice(synced)
                log.cut(at)
                node.corrupt = True
        self._event("crash", node.id, cut, at)

    def _power_loss(self) -> None:
        self._event("power_loss")
        for node in self.nodes.values():
            if node.raft is not None:
                self._crash(node)

    def _faulty_count(self) -> int:
        n = 0
        for node in self.nodes.values():
            if (
                node.corrupt
                or (node.raft is not None and node.raft.faulty)
                or (node.hard_state is not None and node.hard_state.storage_faulty)
            ):
                n += 1
        return n

    # ---------------------------------------------------------------------------- network

    def _send(self, m: Message) -> None:
        rng = self.rng
        o = self.opts
        copies = 1
        if not self.quiet:
            if rng.random() < o.p_drop:
                return
            if rng.random() < o.p_dup:
                copies = 2
        for _ in range(copies):
            if not self.quiet and rng.random() < o.p_long_delay:
                delay = rng.randint(2, 12)
            else:
                delay = rng.choice((0, 0, 1))
            self._seq += 1
            heapq.heappush(self.net, (self.now + delay, self._seq, m))

    def _deliver(self) -> None:
        """Deliver what is due, a node's messages together (one Ready for all, as a driver
        reading a socket would); a node waiting for its fsync keeps its messages queued."""
        net = self.net
        due: dict[int, list[Message]] = {}
        while net and net[0][0] <= self.now:
            m = heapq.heappop(net)[2]
            due.setdefault(m.dst, []).append(m)
        for dst in sorted(due):
            node = self.nodes[dst]
            if node.raft is None:
                continue
            if node.pending is not None:
                for m in due[dst]:
                    self._seq += 1
                    heapq.heappush(net, (self.now + 1, self._seq, m))
                continue
            for m in due[dst]:
                if (m.src, m.dst) in self.blocked:
                    continue
                node.heard[m.src] = self.now
                if isinstance(m, Ping):
                    continue
                self._event("msg", int(m.TYPE), m.src, m.dst, m.term)
                node.raft.step(m)
            self._drive(node)

    # ---------------------------------------------------------------------------- actions

    def _faults(self) -> None:
        rng = self.rng
        o = self.opts
        for node in self.nodes.values():
            if node.raft is not None:
                if rng.random() < o.p_crash:
                    self._crash(node)
            elif rng.random() < o.p_restart:
                self._start(node)
        if rng.random() < o.p_power_loss:
            self._power_loss()
        r = rng.random()
        if r < o.p_partition:
            self._partition()
        elif r < o.p_partition + o.p_heal and self.blocked:
            self.blocked.clear()
            self._event("heal")

    def _partition(self) -> None:
        rng = self.rng
        ids = self.ids[:]
        rng.shuffle(ids)
        kind = rng.randrange(4)
        self.blocked.clear()
        if kind == 3:  # isolate a leader if there is one (Jepsen's partition-leader)
            leaders = [n.id for n in self.nodes.values() if n.raft and n.raft.role is Role.LEADER]
            self._isolate(rng.choice(leaders) if leaders else ids[0])
            return
        if kind == 0:  # symmetric split
            cut = rng.randint(1, len(ids) - 1)
            a, b = ids[:cut], ids[cut:]
            for x in a:
                for y in b:
                    self.blocked.add((x, y))
                    self.blocked.add((y, x))
        elif kind == 1:  # asymmetric: some links work one way only
            for x in ids:
                for y in ids:
                    if x != y and rng.random() < 0.3:
                        self.blocked.add((x, y))
        else:  # bridge: two sides that only a bridge node reaches
            bridge, rest = ids[0], ids[1:]
            cut = max(1, len(rest) // 2)
            a, b = rest[:cut], rest[cut:]
            for x in a:
                for y in b:
                    self.blocked.add((x, y))
                    self.blocked.add((y, x))
            del bridge
        self._event("partition", kind, len(self.blocked))

    def _isolate(self, i: int) -> None:
        """Cut one node off from everyone (messages already in flight to or from it are lost)."""
        self.blocked.clear()
        for j in self.ids:
            if j != i:
                self.blocked.add((i, j))
                self.blocked.add((j, i))
        self._event("isolate", i)

    def _leaders(self) -> list[SimNode]:
        return [
            n for n in self.nodes.values()
            if n.raft is not None and n.pending is None and n.raft.role is Role.LEADER
        ]

    def _propose(self) -> None:
        leaders = self._leaders()
        if not leaders:
            return
        node = self.rng.choice(leaders)
        self._proposal += 1
        payload = b"p%d" % self._proposal
        batch = make_batch(payload, count=self.rng.randint(1, 3))
        try:
            node.raft.propose(batch)
        except (NotLeaderError, ProposalDroppedError):
            return
        if self.quiet:
            self.checker.watch.add(payload)
        self._event("propose", node.id, self._proposal)
        if not self.quiet and self.rng.random() < self.opts.p_pounce_propose:
            self._crash(node)  # before anything it appended could leave
            return
        self._drive(node)

    def _transfer(self) -> None:
        leaders = self._leaders()
        if not leaders:
            return
        node = self.rng.choice(leaders)
        raft = node.raft
        to = self.rng.choice(sorted(raft.membership.voters))
        raft.transfer_leadership(to)
        self._event("transfer", node.id, to)
        self._drive(node)

    def _membership(self) -> None:
        leaders = self._leaders()
        if not leaders:
            return
        node = self.rng.choice(leaders)
        raft = node.raft
        m = raft.membership
        rng = self.rng
        if m.learners:
            change = MembershipChange(ChangeKind.PROMOTE_LEARNER, rng.choice(sorted(m.learners)))
        elif len(m.voters) > self.opts.nodes:
            change = MembershipChange(ChangeKind.REMOVE, rng.choice(sorted(m.voters)))
        else:
            outside = [i for i in self.ids if i not in m.members]
            if not outside:
                return
            change = MembershipChange(ChangeKind.ADD_LEARNER, rng.choice(outside))
        try:
            offset = raft.change_membership(change)
        except (NotLeaderError, ProposalDroppedError):
            return
        self.membership_changes += 1
        self._event("membership", node.id, change.kind.value == "remove", change.node, offset)
        self._drive(node)

    def _retention(self) -> None:
        node = self.nodes[self.rng.choice(self.ids)]
        if node.raft is None or node.pending is not None:
            return
        log = node.log
        choices = [b for b in log.batch_bounds() if log.log_start_offset < b <= node.raft.commit]
        if choices:
            at = self.rng.choice(choices)
            log.advance_log_start(at)
            self._event("retention", node.id, at)

    def _event(self, *ev: object) -> None:
        ev = (self.now, *ev)
        self.digest = zlib.crc32(repr(ev).encode(), self.digest)
        if self.record:
            self.trace.append(ev)


_SWARMED = (
    "p_drop", "p_dup", "p_long_delay", "p_crash", "p_partition", "p_transfer", "p_membership",
    "p_retention", "p_pounce_vote", "p_pounce_elected", "p_pounce_commit", "p_pounce_propose",
    "p_power_loss", "p_corrupt",
)


def _swarm(opts: SimOptions, rng: random.Random) -> SimOptions:
    changes: dict[str, object] = {
        name: getattr(opts, name) * rng.choice((0.0, 0.5, 1.0, 1.0, 2.0, 3.0))
        for name in _SWARMED
    }
    changes["pre_vote"] = opts.pre_vote and rng.random() < 0.75
    changes["check_quorum"] = opts.check_quorum and rng.random() < 0.75
    changes["swarm"] = False
    return dataclasses.replace(opts, **changes)


def run_seed(seed: int, opts: SimOptions, *, record: bool = False) -> Outcome:
    return Simulation(seed, opts, record=record).run()

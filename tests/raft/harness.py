"""A tiny deterministic network for driving RaftNodes by hand (etcd's ``network`` in raft_test.go).

The harness plays the driver honestly: it takes a node's Ready, sends ``rd.messages``,
"persists" (saves the hard state, syncs the log), then sends what ``advance`` returns.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from strata.broker.raft.batches import SimCodec, make_batch
from strata.broker.raft.log import MemoryRaftLog
from strata.broker.raft.membership import Membership
from strata.broker.raft.messages import Message
from strata.broker.raft.node import Fault, HardState, RaftConfig, RaftNode


def config(node_id: int, **kw) -> RaftConfig:
    return RaftConfig(
        node_id=node_id,
        noop_batch=SimCodec.noop_batch,
        membership_batch=SimCodec.membership_batch,
        decode_membership=SimCodec.decode_membership,
        **kw,
    )


def batch(payload: bytes = b"x", count: int = 1) -> bytes:
    return make_batch(payload, count=count)


def log_with(terms: list[int]) -> MemoryRaftLog:
    """A log of one-offset batches with the given terms (offset i has term terms[i])."""
    log = MemoryRaftLog()
    for i, t in enumerate(terms):
        log.append_as_leader(make_batch(b"e%d" % i), t)
    log.sync(log.log_end_offset)
    return log


def node(
    node_id: int,
    voters: list[int],
    *,
    log: MemoryRaftLog | None = None,
    hard_state: HardState | None = None,
    learners: list[int] = (),
    faults: frozenset[Fault] = frozenset(),
    storage_faulty: bool = False,
    seed: int = 0,
    **kw,
) -> RaftNode:
    kw.setdefault("pre_vote", False)
    kw.setdefault("check_quorum", False)
    return RaftNode(
        config(node_id, faults=faults, **kw),
        log if log is not None else MemoryRaftLog(),
        random.Random(seed * 1000 + node_id),
        hard_state,
        initial=Membership(frozenset(voters), frozenset(learners)),
        storage_faulty=storage_faulty,
    )


def drain(n: RaftNode) -> list[Message]:
    """Run the node's Readies to completion, as an honest driver; return every message."""
    out: list[Message] = []
    while n.has_ready():
        rd = n.ready()
        out.extend(rd.messages)
        n.log.sync(rd.sync_end)  # type: ignore[attr-defined]
        out.extend(n.advance(rd))
    return out


@dataclass
class Network:
    nodes: dict[int, RaftNode]
    #: directed links that drop everything
    cut: set[tuple[int, int]] = field(default_factory=set)
    #: nodes that are down (drop everything to and from them)
    down: set[int] = field(default_factory=set)
    delivered: list[Message] = field(default_factory=list)
    #: drop any message for which this returns True
    drop: Callable[[Message], bool] | None = None

    @classmethod
    def of(cls, n: int, **kw) -> Network:
        ids = list(range(1, n + 1))
        return cls({i: node(i, ids, **kw) for i in ids})

    def send(self, msgs: list[Message], *, limit: int = 10_000) -> None:
        """Deliver messages, and everything they cause, until the network is quiet."""
        queue = list(msgs)
        while queue:
            limit -= 1
            assert limit > 0, "the network never went quiet"
            m = queue.pop(0)
            if m.dst in self.down or m.src in self.down or (m.src, m.dst) in self.cut:
                continue
            if self.drop is not None and self.drop(m):
                continue
            self.delivered.append(m)
            n = self.nodes[m.dst]
            n.step(m)
            queue.extend(drain(n))

    def settle(self) -> None:
        for n in list(self.nodes.values()):
            self.send(drain(n))

    def campaign(self, i: int) -> None:
        self.nodes[i].campaign()
        self.send(drain(self.nodes[i]))

    def tick(self, i: int, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[i].tick()
            self.send(drain(self.nodes[i]))

    def tick_all(self, n: int = 1) -> None:
        for _ in range(n):
            for i in sorted(self.nodes):
                if i not in self.down:
                    self.nodes[i].tick()
                    self.send(drain(self.nodes[i]))

    def propose(self, i: int, payload: bytes = b"x") -> tuple[int, int]:
        r = self.nodes[i].propose(batch(payload))
        self.send(drain(self.nodes[i]))
        return r

    def isolate(self, i: int) -> None:
        for j in self.nodes:
            if j != i:
                self.cut.add((i, j))
                self.cut.add((j, i))

    def heal(self) -> None:
        self.cut.clear()

"""The Raft core's own CPU cost: proposals committed per second through a 3-node cluster.

No I/O at all: in-memory logs, an in-process "network" that hands messages over directly,
fsync modelled as instantaneous. What is left is the core (Ready/advance, replication,
commit) plus MemoryRaftLog's stamping and copying. ``python -m benchmarks.bench_raft``.

Two shapes: one proposal per driver round (latency-bound, every proposal is its own
AppendEntries), and 32 proposals per round (the broker's shape under load: many produce
requests land in one loop turn and share one Ready, one AppendEntries per follower).
"""

from __future__ import annotations

import argparse
import random
import time
from collections import deque

from strata.broker.raft.batches import SimCodec, make_batch
from strata.broker.raft.log import MemoryRaftLog
from strata.broker.raft.membership import Membership
from strata.broker.raft.node import RaftConfig, RaftNode, Role


def cluster(n: int = 3) -> dict[int, RaftNode]:
    ids = frozenset(range(1, n + 1))
    nodes = {}
    for i in ids:
        cfg = RaftConfig(
            node_id=i, noop_batch=SimCodec.noop_batch, membership_batch=SimCodec.membership_batch,
            decode_membership=SimCodec.decode_membership, max_inflight_msgs=256,
        )
        nodes[i] = RaftNode(cfg, MemoryRaftLog(), random.Random(i), initial=Membership(ids))
    return nodes


def pump(nodes: dict[int, RaftNode], queue: deque) -> None:
    while True:
        for n in nodes.values():
            if n.has_ready():
                rd = n.ready()
                queue.extend(rd.messages)
                queue.extend(n.advance(rd))
        if not queue:
            return
        while queue:
            m = queue.popleft()
            nodes[m.dst].step(m)


def run(total: int, per_round: int, record_bytes: int) -> float:
    nodes = cluster()
    queue: deque = deque()
    nodes[1].campaign()
    pump(nodes, queue)
    leader = nodes[1]
    assert leader.role is Role.LEADER
    batch = make_batch(b"x" * record_bytes, count=10)
    start_commit = leader.commit
    t0 = time.perf_counter()
    for _ in range(total // per_round):
        for _ in range(per_round):
            leader.propose(batch)
        pump(nodes, queue)
    elapsed = time.perf_counter() - t0
    committed_batches = (leader.commit - start_commit) // 10
    assert committed_batches == (total // per_round) * per_round
    return committed_batches / elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--proposals", type=int, default=50_000)
    ap.add_argument("--record-bytes", type=int, default=1000, help="bytes per batch body")
    args = ap.parse_args()
    for per_round in (1, 32):
        rate = run(args.proposals, per_round, args.record_bytes)
        print(f"3 nodes, {per_round:>2} proposal(s) per round: {rate:>10,.0f} proposals committed/s "
              f"({1e6 / rate:.1f} us each)")


if __name__ == "__main__":
    main()

"""The simulator's safety checker: Raft's invariants, checked incrementally after every change.

* Election safety: at most one leader per term.
* Log matching: a batch is identified by ``(base, term)``; every copy of it anywhere has the
  same bytes, the same last offset and the same predecessor ``(base, term)``. By induction
  that is "same index and term => identical prefix", checked at every append.
* Leader completeness: a node that becomes leader holds every batch committed so far.
* State machine safety: a global committed history is built from every node's commit index;
  a node's log below its commit must agree with it, and the core may never truncate a
  committed batch it holds. (A node *may* append something else at a committed offset: a
  deposed leader it still follows can send it stale entries, which a later leader truncates.)
* A running node's commit index never moves back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from strata.broker.raft.log import MemoryRaftLog
from strata.broker.raft.node import Role
from strata.client.batch import HEADER_SIZE

if TYPE_CHECKING:
    from strata.broker.raft.node import RaftNode


class Violation(Exception):
    """A broken invariant; the message says which and where."""


class Checker:
    def __init__(self) -> None:
        #: (base, term) -> (last, data, predecessor (base, term) or None)
        self.batches: dict[tuple[int, int], tuple[int, bytes, tuple[int, int] | None]] = {}
        #: committed batches in offset order, and base -> index
        self.committed: list[tuple[int, int, int, bytes]] = []
        self.committed_at: dict[int, int] = {}
        self.committed_end = 0
        self.leaders: dict[int, int] = {}
        self.commit_seen: dict[int, int] = {}
        #: Record payloads to watch for (the liveness phase's proposals), and whether one
        #: has committed.
        self.watch: set[bytes] = set()
        self.watch_hit = False

    # -- hooks installed on every MemoryRaftLog ------------------------------------------------

    def on_append(
        self, node: int, base: int, last: int, term: int, data: bytes, prev: tuple[int, int] | None
    ) -> None:
        key = (base, term)
        known = self.batches.get(key)
        if known is None:
            self.batches[key] = (last, data, prev)
        else:
            if known[0] != last or known[1] != data:
                raise Violation(
                    f"log matching: node {node} appended a different batch at offset {base} term {term}"
                )
            if prev is not None:
                if known[2] is None:
                    self.batches[key] = (last, data, prev)
                elif known[2] != prev:
                    raise Violation(
                        f"log matching: node {node} holds batch ({base}, term {term}) after "
                        f"{prev}, elsewhere it follows {known[2]}"
                    )

    def on_truncate(self, node: int, log: MemoryRaftLog, offset: int, full: bool) -> None:
        if offset >= self.committed_end:
            return
        for base, last, term, data in log.batches(offset):
            if base >= self.committed_end:
                break
            i = self.committed_at.get(base)
            if i is not None and self.committed[i][1:] == (last, term, data):
                kind = "truncate_fully_and_start_at" if full else "truncate_to"
                raise Violation(
                    f"state machine safety: node {node} {kind}({offset}) drops committed batch "
                    f"at offset {base} (term {term})"
                )

    # -- after every step --------------------------------------------------------------------

    def node_restarted(self, node: int) -> None:
        self.commit_seen.pop(node, None)

    def observe(self, node: int, raft: RaftNode, log: MemoryRaftLog) -> None:
        c = raft.commit
        seen = self.commit_seen.get(node)
        if seen is None:
            seen = log.log_start_offset
        elif c < seen:
            raise Violation(f"node {node}'s commit index moved back from {seen} to {c}")
        if c > seen:
            self._record_commits(node, log, seen, c)
        self.commit_seen[node] = c
        if raft.role is Role.LEADER:
            holder = self.leaders.get(raft.term)
            if holder is None:
                self.leaders[raft.term] = node
                self._check_completeness(node, raft.term, log)
            elif holder != node:
                raise Violation(f"election safety: nodes {holder} and {node} both lead term {raft.term}")

    def _record_commits(self, node: int, log: MemoryRaftLog, lo: int, hi: int) -> None:
        for base, last, term, data in log.batches(max(lo, log.log_start_offset)):
            if base >= hi:
                break
            if base < self.committed_end:
                i = self.committed_at.get(base)
                if i is None or self.committed[i][1:] != (last, term, data):
                    raise Violation(
                        f"state machine safety: node {node} committed offset {base} (term {term}) "
                        "which differs from what was committed before"
                    )
            elif base == self.committed_end:
                self.committed_at[base] = len(self.committed)
                self.committed.append((base, last, term, data))
                self.committed_end = last + 1
                if self.watch and data[HEADER_SIZE:] in self.watch:
                    self.watch_hit = True
            else:
                raise Violation(
                    f"node {node} committed offset {base} but the committed history ends at "
                    f"{self.committed_end}"
                )

    def _check_completeness(self, node: int, term: int, log: MemoryRaftLog) -> None:
        start = log.log_start_offset
        for base, last, cterm, data in self.committed:
            if base < start:
                continue
            held = log.batch_at(base)
            if held != (last, cterm, data):
                raise Violation(
                    f"leader completeness: node {node} leads term {term} without committed batch "
                    f"at offset {base} (term {cterm})"
                )

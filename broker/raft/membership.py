"""Cluster membership of one Raft group: voters and learners, and where each configuration came from.

A configuration takes effect as soon as its entry is in a node's log, committed or not
(Raft dissertation §4.1), and changes are single-server, one at a time: a leader proposes
the next change only once the previous configuration entry is committed and it has
committed an entry of its own term (the fix for the single-server change bug Ongaro
reported on raft-dev in 2015). Two consequences the core relies on:

* In any log, every configuration entry except possibly the last is committed, so a
  truncation can only ever remove the latest one, and keeping the previous configuration is
  enough to roll back.
* Any two configurations in use at the same time differ by at most one voter, so their
  majorities overlap.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any


@dataclass(slots=True, frozen=True)
class Membership:
    """Who votes and who only replicates. A node is never both."""

    voters: frozenset[int]
    learners: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        assert self.voters, "a configuration needs at least one voter"
        assert not (self.voters & self.learners), "a node is either a voter or a learner"

    @property
    def members(self) -> frozenset[int]:
        return self.voters | self.learners

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    def to_wire(self) -> list[list[int]]:
        return [sorted(self.voters), sorted(self.learners)]

    @classmethod
    def from_wire(cls, w: list[list[int]]) -> Membership:
        return cls(frozenset(w[0]), frozenset(w[1]))


class ChangeKind(Enum):
    ADD_LEARNER = "add_learner"
    PROMOTE_LEARNER = "promote_learner"
    ADD_VOTER = "add_voter"
    REMOVE = "remove"


@dataclass(slots=True, frozen=True)
class MembershipChange:
    kind: ChangeKind
    node: int

    def apply(self, m: Membership) -> Membership:
        """The configuration after this change; ``ValueError`` if it does not apply to ``m``."""
        n = self.node
        if self.kind is ChangeKind.ADD_LEARNER:
            if n in m.members:
                raise ValueError(f"node {n} is already a member")
            return Membership(m.voters, m.learners | {n})
        if self.kind is ChangeKind.PROMOTE_LEARNER:
            if n not in m.learners:
                raise ValueError(f"node {n} is not a learner")
            return Membership(m.voters | {n}, m.learners - {n})
        if self.kind is ChangeKind.ADD_VOTER:
            if n in m.voters:
                raise ValueError(f"node {n} is already a voter")
            return Membership(m.voters | {n}, m.learners - {n})
        if n not in m.members:
            raise ValueError(f"node {n} is not a member")
        if m.voters == {n}:
            raise ValueError("cannot remove the last voter")
        return Membership(m.voters - {n}, m.learners - {n})


@dataclass(slots=True, frozen=True)
class ConfigEntry:
    """A configuration and the log entry it came from.

    ``offset`` is the base offset of the membership batch (``-1`` for the bootstrap
    configuration the group was created with, or the offset just below the log start when a
    follower restarted from the leader's log start); ``term`` is that batch's term.
    """

    offset: int
    term: int
    membership: Membership

    def to_wire(self) -> list[Any]:
        return [self.offset, self.term, self.membership.to_wire()]

    @classmethod
    def from_wire(cls, w: list[Any]) -> ConfigEntry:
        return cls(w[0], w[1], Membership.from_wire(w[2]))

"""Raft messages: small slotted dataclasses of plain fields, cheap to build and to serialise.

Every message has ``src``, ``dst`` and ``term``. The group (partition) is not a field: the
driver that multiplexes many groups over one connection adds it when it frames a message.

``to_wire()`` returns ``(header, payload)``: ``header`` is a list of ints/bools that msgpack
encodes as-is, and ``payload`` is the raw record-batch bytes (only :class:`Append` has any),
kept apart so the wire layer can send batches untouched, straight from the log.
``from_wire(header, payload)`` is the inverse. The first header element is the
:class:`MsgType`.

Heartbeats have small fixed fields (term, commit) and no entries, so that a driver can
coalesce the heartbeats of all groups between two brokers into one frame per tick.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

from .membership import Membership


class MsgType(IntEnum):
    VOTE = 1
    VOTE_RESPONSE = 2
    APPEND = 3
    APPEND_RESPONSE = 4
    HEARTBEAT = 5
    HEARTBEAT_RESPONSE = 6
    INSTALL_LOG_START = 7
    TIMEOUT_NOW = 8


@dataclass(slots=True)
class VoteRequest:
    """RequestVote, or PreVote when ``pre`` (§9.6: ``term`` is the term the sender *would* take).

    ``force`` is set by a campaign started by :class:`TimeoutNow` (leader transfer): it lets
    the vote through a voter's check-quorum lease.
    """

    TYPE: ClassVar[MsgType] = MsgType.VOTE
    src: int
    dst: int
    term: int
    last_offset: int
    last_term: int
    pre: bool = False
    force: bool = False

    def to_wire(self) -> tuple[list[Any], bytes]:
        return [
            self.TYPE, self.src, self.dst, self.term, self.last_offset, self.last_term,
            self.pre, self.force,
        ], b""


@dataclass(slots=True)
class VoteResponse:
    TYPE: ClassVar[MsgType] = MsgType.VOTE_RESPONSE
    src: int
    dst: int
    term: int
    granted: bool
    pre: bool = False

    def to_wire(self) -> tuple[list[Any], bytes]:
        return [self.TYPE, self.src, self.dst, self.term, self.granted, self.pre], b""


@dataclass(slots=True)
class Append:
    """AppendEntries carrying one run of whole batches, all of term ``entries_term``.

    The run covers offsets ``[prev_offset + 1, last]``; ``data`` is the batches' bytes back to
    back, as the log stores them. An empty ``data`` (``last == prev_offset``) is a probe or a
    commit notification. ``commit`` is the leader's high watermark (exclusive).
    """

    TYPE: ClassVar[MsgType] = MsgType.APPEND
    src: int
    dst: int
    term: int
    prev_offset: int
    prev_term: int
    commit: int
    last: int
    entries_term: int
    data: bytes | memoryview = b""

    def to_wire(self) -> tuple[list[Any], bytes | memoryview]:
        return [
            self.TYPE, self.src, self.dst, self.term, self.prev_offset, self.prev_term,
            self.commit, self.last, self.entries_term,
        ], self.data


@dataclass(slots=True)
class AppendResponse:
    """Answer to :class:`Append` or :class:`InstallLogStart`.

    On success ``match`` is the last offset now known to match the leader's log *and be
    durable* on the sender. On rejection ``match`` is the ``prev_offset`` that failed, and
    ``hint_offset``/``hint_term`` let the leader skip a whole term at a time: the last offset
    at or below the rejected one whose term is at most the leader's ``prev_term``.
    ``faulty`` tells the leader that this replica lost acknowledged data to storage
    corruption and must not count toward a commit yet.
    """

    TYPE: ClassVar[MsgType] = MsgType.APPEND_RESPONSE
    src: int
    dst: int
    term: int
    reject: bool
    match: int
    hint_offset: int = -1
    hint_term: int = 0
    faulty: bool = False

    def to_wire(self) -> tuple[list[Any], bytes]:
        return [
            self.TYPE, self.src, self.dst, self.term, self.reject, self.match,
            self.hint_offset, self.hint_term, self.faulty,
        ], b""


@dataclass(slots=True)
class Heartbeat:
    """Leader liveness and commit, no entries. ``commit`` never exceeds what ``dst`` matched.

    ``quiesce``: the group is idle (every follower matched the whole log, all of it
    committed); a follower whose log ends at ``commit`` stops ticking and does not answer.
    """

    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT
    src: int
    dst: int
    term: int
    commit: int
    quiesce: bool = False

    def to_wire(self) -> tuple[list[Any], bytes]:
        return [self.TYPE, self.src, self.dst, self.term, self.commit, self.quiesce], b""


@dataclass(slots=True)
class HeartbeatResponse:
    TYPE: ClassVar[MsgType] = MsgType.HEARTBEAT_RESPONSE
    src: int
    dst: int
    term: int
    #: The follower is still storage-faulty. A follower repaired while no appends flow
    #: (it clears the flag on a heartbeat) tells its leader here.
    faulty: bool = False

    def to_wire(self) -> tuple[list[Any], bytes]:
        return [self.TYPE, self.src, self.dst, self.term, self.faulty], b""


@dataclass(slots=True)
class InstallLogStart:
    """The log's "snapshot": the follower is below the leader's log start.

    The follower drops its whole log and starts empty at ``offset`` (unless it already holds
    the entry just below ``offset`` with term ``start_term``, in which case its log matches and
    nothing is dropped). ``config`` is the leader's configuration to adopt, since the
    membership entries below ``offset`` will never reach the follower.
    """

    TYPE: ClassVar[MsgType] = MsgType.INSTALL_LOG_START
    src: int
    dst: int
    term: int
    offset: int
    start_term: int
    config: Membership

    def to_wire(self) -> tuple[list[Any], bytes]:
        return [
            self.TYPE, self.src, self.dst, self.term, self.offset, self.start_term,
            self.config.to_wire(),
        ], b""


@dataclass(slots=True)
class TimeoutNow:
    """Leader transfer: the target, fully caught up, campaigns at once (no pre-vote)."""

    TYPE: ClassVar[MsgType] = MsgType.TIMEOUT_NOW
    src: int
    dst: int
    term: int

    def to_wire(self) -> tuple[list[Any], bytes]:
        return [self.TYPE, self.src, self.dst, self.term], b""


Message = (
    VoteRequest | VoteResponse | Append | AppendResponse | Heartbeat | HeartbeatResponse
    | InstallLogStart | TimeoutNow
)


def from_wire(header: list[Any], payload: bytes | memoryview = b"") -> Message:
    """Rebuild a message from ``to_wire()``'s output (after a msgpack round trip)."""
    t = _TYPES[header[0]]  # a dict, not MsgType(...): an enum call costs more than the rest
    f = header[1:]
    if t is MsgType.APPEND:
        src, dst, term, prev_offset, prev_term, commit, last, entries_term = f
        return Append(src, dst, term, prev_offset, prev_term, commit, last, entries_term, payload)
    if t is MsgType.INSTALL_LOG_START:
        src, dst, term, offset, start_term, config = f
        return InstallLogStart(src, dst, term, offset, start_term, Membership.from_wire(config))
    message: Message = _SIMPLE[t](*f)
    return message


_TYPES: dict[int, MsgType] = {int(t): t for t in MsgType}

_SIMPLE: dict[MsgType, type] = {
    MsgType.VOTE: VoteRequest,
    MsgType.VOTE_RESPONSE: VoteResponse,
    MsgType.APPEND_RESPONSE: AppendResponse,
    MsgType.HEARTBEAT: Heartbeat,
    MsgType.HEARTBEAT_RESPONSE: HeartbeatResponse,
    MsgType.TIMEOUT_NOW: TimeoutNow,
}

"""What a leader knows about one follower's log, and how hard it may push (etcd's ``Progress``).

* ``PROBE``: the leader does not know where the follower's log matches. One ``Append`` at a
  time; each rejection moves ``next`` back (a whole term at a time, thanks to the hint).
* ``REPLICATE``: the logs match up to ``match``; the leader streams runs optimistically
  (``next`` moves as it sends), bounded by ``max_inflight_msgs`` and ``max_inflight_bytes``
  so a slow follower cannot make the leader buffer without limit.
* ``SNAPSHOT``: the follower is below the leader's log start; an ``InstallLogStart`` is in
  flight and nothing else is sent until it is answered (or a heartbeat response shows the
  follower alive, in which case it is resent).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import Enum


class ProgressState(Enum):
    PROBE = "probe"
    REPLICATE = "replicate"
    SNAPSHOT = "snapshot"


@dataclass(slots=True)
class Progress:
    match: int
    next: int
    state: ProgressState = ProgressState.PROBE
    #: PROBE: an Append is out and unanswered; wait for its answer or a heartbeat response.
    probe_sent: bool = False
    #: PROBE: the prev_offset of the last probe, to recognise stale rejections.
    probe_prev: int = -2
    #: Heard from since the last check-quorum round.
    recent_active: bool = False
    #: Answered since the last heartbeat round (a group may quiesce only if all have).
    replied: bool = False
    #: Lost acknowledged data to storage corruption; excluded from commit quorums.
    faulty: bool = False
    #: REPLICATE: (last offset, bytes) of each Append in flight, oldest first.
    inflight: deque[tuple[int, int]] = field(default_factory=deque)
    inflight_bytes: int = 0

    def paused(self, max_msgs: int, max_bytes: int) -> bool:
        if self.state is ProgressState.PROBE:
            return self.probe_sent
        if self.state is ProgressState.REPLICATE:
            return len(self.inflight) >= max_msgs or self.inflight_bytes >= max_bytes
        return True

    def become_probe(self, next_offset: int) -> None:
        assert next_offset > self.match
        self.state = ProgressState.PROBE
        self.next = next_offset
        self.probe_sent = False
        self._clear_inflight()

    def become_replicate(self) -> None:
        self.state = ProgressState.REPLICATE
        self.next = self.match + 1
        self.probe_sent = False
        self._clear_inflight()

    def become_snapshot(self) -> None:
        self.state = ProgressState.SNAPSHOT
        self.probe_sent = False
        self._clear_inflight()

    def sent(self, last: int, nbytes: int) -> None:
        """An Append carrying entries up to ``last`` went out."""
        if self.state is ProgressState.REPLICATE:
            assert last >= self.next - 1
            self.next = last + 1
            self.inflight.append((last, nbytes))
            self.inflight_bytes += nbytes
        else:
            self.probe_sent = True

    def acked(self, match: int) -> bool:
        """The follower matches through ``match``; True if that is news."""
        while self.inflight and self.inflight[0][0] <= match:
            self.inflight_bytes -= self.inflight.popleft()[1]
        if match <= self.match:
            return False
        self.match = match
        if self.next <= match:
            self.next = match + 1
        return True

    def _clear_inflight(self) -> None:
        self.inflight.clear()
        self.inflight_bytes = 0

"""``Throttle``: a token bucket that caps the cleaner's disk I/O in bytes per second.

Kafka's ``log.cleaner.io.max.bytes.per.second`` exists because a cleaner that reads
and rewrites whole segments at full speed takes the disk from producers and
consumers. Every byte the cleaner reads or writes passes :meth:`Throttle.acquire`
first; several cleaner threads may share one throttle (it is the broker's budget,
not a log's).

Reservations may run the bucket negative: a caller takes what it needs at once and
sleeps until the bucket has refilled to zero, so one large request waits in
proportion to its size and callers are served in arrival order without a queue.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["Throttle"]


class Throttle:
    """At most ``bytes_per_second`` on average, with bursts up to ``burst_bytes``."""

    __slots__ = ("_clock", "_last", "_lock", "_tokens", "burst_bytes", "bytes_per_second")

    def __init__(self, bytes_per_second: float, *, burst_bytes: int | None = None,
                 clock: Callable[[], float] = time.monotonic):
        if bytes_per_second <= 0:
            raise ValueError(f"bytes_per_second must be positive, got {bytes_per_second}")
        self.bytes_per_second = float(bytes_per_second)
        #: Default burst: a tenth of a second of budget, at least 64 KiB.
        self.burst_bytes = burst_bytes if burst_bytes is not None else max(64 << 10, int(bytes_per_second / 10))
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(self.burst_bytes)
        self._last = clock()

    def reserve(self, n: int) -> float:
        """Take ``n`` bytes of budget; return how many seconds the caller must wait."""
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.burst_bytes),
                               self._tokens + (now - self._last) * self.bytes_per_second)
            self._last = now
            self._tokens -= n
            return 0.0 if self._tokens >= 0 else -self._tokens / self.bytes_per_second

    def acquire(self, n: int, cancel: threading.Event | None = None) -> bool:
        """Wait until ``n`` bytes fit the budget. ``False`` if ``cancel`` was set meanwhile
        (the wait ends at once then)."""
        wait = self.reserve(n)
        if wait <= 0:
            return cancel is None or not cancel.is_set()
        if cancel is None:
            time.sleep(wait)
            return True
        return not cancel.wait(wait)

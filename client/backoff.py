"""Exponential backoff with a bound, shared by every client loop that retries.

A loop that retries without waiting burns a core while the cluster is away (issue 13
saw a producer spin at 98 % of a core with no partition leader). Every retry loop in the
client waits on a condition or for ``Backoff.next()``: the delay doubles from
``initial_s`` up to ``max_s`` and goes back to ``initial_s`` on :meth:`reset`, which a
loop calls when an attempt made progress. A little jitter (±20 %, as Kafka's
``retry.backoff.max.ms`` has) keeps many clients that lost the same broker from
retrying in lockstep.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

#: Fraction of the delay added or taken away at random.
JITTER = 0.2


@dataclass(slots=True)
class Backoff:
    initial_s: float
    max_s: float
    multiplier: float = 2.0
    jitter: float = JITTER
    rng: random.Random = field(default_factory=random.Random, repr=False)
    _next: float = field(init=False, default=0.0)
    #: Attempts since the last reset (0: the next delay is ``initial_s``).
    attempts: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if self.initial_s < 0 or self.max_s < self.initial_s:
            raise ValueError("backoff needs 0 <= initial_s <= max_s")
        self._next = self.initial_s

    def next(self) -> float:
        """The delay before the next attempt (seconds); the one after grows."""
        base = self._next
        self._next = min(self.max_s, max(self._next * self.multiplier, 1e-3))
        self.attempts += 1
        if not self.jitter:
            return base
        return max(0.0, base * (1 + self.rng.uniform(-self.jitter, self.jitter)))

    def reset(self) -> None:
        """The last attempt made progress: start again from ``initial_s``."""
        self._next = self.initial_s
        self.attempts = 0

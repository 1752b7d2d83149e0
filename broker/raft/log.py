"""The log Raft drives: the ``RaftLog`` protocol, and ``MemoryRaftLog`` for tests and the simulator.

The partition log *is* the Raft log. An entry is a record batch covering
``[base, last]`` offsets; its Raft term is the batch's ``partitionLeaderEpoch``; Raft index =
offset. The protocol is batch-oriented and deliberately small, so that the storage ``Log``
(:mod:`strata.storage`) fits it through a thin adapter:

=============================  ==============================================================
``RaftLog``                    storage ``Log``
=============================  ==============================================================
``log_start_offset``           ``log_start_offset``
``log_end_offset``             ``log_end_offset``
``log_start_term``             remembered by the adapter: the term of offset
                               ``log_start_offset - 1`` (``0`` when the log starts at 0); set
                               by ``truncate_fully_and_start_at`` and by retention
``term_at(o)``                 ``epoch_for_offset(o)`` (and ``log_start_term`` at start - 1)
``end_offset_for_term(t)``     ``end_offset_for_epoch(t)``, mapping "undefined" to
                               ``(log_start_term, log_start_offset)``
``append_as_leader(b, t)``     ``append_as_leader(b, t)`` -> ``(base_offset, last_offset)``
``append_as_follower(data)``   ``append_as_follower(data)``
``truncate_to(o)``             ``truncate_to(o)``
``truncate_fully_and_start_at`` ``truncate_fully_and_start_at(o, t)``
``read(o, max_bytes)``         ``read(o, max_bytes, max_offset=end of o's epoch)`` -> ``Run``
=============================  ==============================================================

Durability is *not* part of the protocol: appends may sit in the page cache. The core tells
the driver, through ``Ready.sync_end``, what must be durable before it may send the messages
that depend on it. Truncations are not required to be durable (a truncated tail that
reappears after a crash is an old state the node really was in, and it acknowledged nothing
based on the truncation).

Below ``log_start_offset`` everything is committed (the driver only moves the log start
below the high watermark), so the core treats that prefix as held and matching.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from strata.client.batch import stamp

from .batches import iter_spans, last_offset_delta, leader_epoch


@dataclass(slots=True)
class Run:
    """A contiguous run of whole batches of one term, as one blob: what ``Append`` carries."""

    base: int
    last: int
    term: int
    data: bytes | memoryview


class RaftLog(Protocol):
    @property
    def log_start_offset(self) -> int: ...

    @property
    def log_end_offset(self) -> int: ...

    @property
    def log_start_term(self) -> int: ...

    def term_at(self, offset: int) -> int | None:
        """Term of the batch holding ``offset``, for ``log_start - 1 <= offset < end``; else None."""
        ...

    def end_offset_for_term(self, term: int) -> tuple[int, int]:
        """``(t, end)``: ``t`` the largest term <= ``term`` in the log, ``end`` one past its last offset.

        When no batch has a term <= ``term``: ``(log_start_term, log_start_offset)``.
        """
        ...

    def append_as_leader(self, batch: bytes | memoryview, term: int, checked: Any = None) -> tuple[int, int]:
        """Stamp ``batch`` with the next offset and ``term``, append it; return ``(base, last)``.

        ``checked`` is whatever the driver passed to ``RaftNode.propose`` with the batch
        (the storage adapter: the batch headers the driver already validated); opaque here.
        """
        ...

    def append_as_follower(self, data: bytes | memoryview) -> None:
        """Append stamped batches; the first base offset is ``log_end_offset``."""
        ...

    def truncate_to(self, offset: int) -> None:
        """Drop every offset >= ``offset`` (a batch boundary)."""
        ...

    def truncate_fully_and_start_at(self, offset: int, term: int) -> None:
        """Drop everything; the log restarts empty at ``offset``; ``term`` is the term of ``offset - 1``."""
        ...

    def read(self, offset: int, max_bytes: int) -> Run | None:
        """Whole batches from the one holding ``offset``, all of that batch's term, stopping by
        ``max_bytes`` but always at least one batch. ``None`` at or past the end."""
        ...


# (log, base, last, term, data, prev) where prev is (base, term) of the batch before, or None.
AppendHook = Callable[["MemoryRaftLog", int, int, int, bytes, "tuple[int, int] | None"], None]
# (log, offset, full): offsets >= offset are about to be dropped (all of them if full).
TruncateHook = Callable[["MemoryRaftLog", int, bool], None]


class MemoryRaftLog:
    """An in-memory ``RaftLog``: parallel lists of batch bases, lasts, terms and bytes.

    ``synced_end`` models durability for the simulator: offsets below it survive a crash,
    the rest may be cut anywhere (:meth:`crash`). ``on_append``/``on_truncate`` let the
    simulator's checker watch every change the core makes.
    """

    __slots__ = (
        "_bases", "_lasts", "_terms", "_data", "_start", "_start_term", "synced_end",
        "on_append", "on_truncate",
    )

    def __init__(self, start_offset: int = 0, start_term: int = 0) -> None:
        self._bases: list[int] = []
        self._lasts: list[int] = []
        self._terms: list[int] = []
        self._data: list[bytes] = []
        self._start = start_offset
        self._start_term = start_term
        self.synced_end = start_offset
        self.on_append: AppendHook | None = None
        self.on_truncate: TruncateHook | None = None

    # -- the protocol -------------------------------------------------------------------------

    @property
    def log_start_offset(self) -> int:
        return self._start

    @property
    def log_end_offset(self) -> int:
        return self._lasts[-1] + 1 if self._lasts else self._start

    @property
    def log_start_term(self) -> int:
        return self._start_term

    def term_at(self, offset: int) -> int | None:
        if offset == self._start - 1:
            return self._start_term
        if offset < self._start or not self._lasts or offset > self._lasts[-1]:
            return None
        return self._terms[bisect_right(self._bases, offset) - 1]

    def end_offset_for_term(self, term: int) -> tuple[int, int]:
        i = bisect_right(self._terms, term)
        if i == 0:
            return self._start_term, self._start
        if i == len(self._terms):
            return self._terms[-1], self._lasts[-1] + 1
        return self._terms[i - 1], self._bases[i]

    def append_as_leader(self, batch: bytes, term: int, checked: Any = None) -> tuple[int, int]:
        assert not self._terms or term >= self._terms[-1], "terms never go down in a log"
        base = self.log_end_offset
        buf = bytearray(batch)
        stamp(buf, 0, base, term)
        last = base + last_offset_delta(buf)
        self._push(base, last, term, bytes(buf))
        return base, last

    def append_as_follower(self, data: bytes | memoryview) -> None:
        mv = memoryview(data)
        for span in iter_spans(mv):
            assert span.base == self.log_end_offset, "follower append must start at the log end"
            term = leader_epoch(mv, span.pos)
            assert not self._terms or term >= self._terms[-1], "terms never go down in a log"
            self._push(span.base, span.last, term, bytes(mv[span.pos : span.pos + span.size]))

    def truncate_to(self, offset: int) -> None:
        assert self._start <= offset <= self.log_end_offset
        i = bisect_right(self._bases, offset - 1)
        if i < len(self._bases):
            assert self._bases[i] == offset, "truncation point must be a batch boundary"
        if self.on_truncate is not None:
            self.on_truncate(self, offset, False)
        del self._bases[i:], self._lasts[i:], self._terms[i:], self._data[i:]
        self.synced_end = min(self.synced_end, offset)

    def truncate_fully_and_start_at(self, offset: int, term: int) -> None:
        if self.on_truncate is not None:
            self.on_truncate(self, offset, True)
        self._bases.clear()
        self._lasts.clear()
        self._terms.clear()
        self._data.clear()
        self._start = offset
        self._start_term = term
        self.synced_end = offset

    def read(self, offset: int, max_bytes: int) -> Run | None:
        if offset < self._start or offset >= self.log_end_offset:
            return None
        i = bisect_right(self._bases, offset) - 1
        term = self._terms[i]
        j = i + 1
        size = len(self._data[i])
        n = len(self._bases)
        while j < n and self._terms[j] == term and size + len(self._data[j]) <= max_bytes:
            size += len(self._data[j])
            j += 1
        data = self._data[i] if j == i + 1 else b"".join(self._data[i:j])
        return Run(self._bases[i], self._lasts[j - 1], term, data)

    # -- beyond the protocol: retention, crashes, inspection -------------------------------------

    def advance_log_start(self, offset: int) -> None:
        """Retention: drop whole batches below ``offset`` (a batch boundary)."""
        assert self._start <= offset <= self.log_end_offset
        i = bisect_right(self._bases, offset - 1)
        assert i == len(self._bases) or self._bases[i] == offset
        if i:
            self._start_term = self._terms[i - 1]
        del self._bases[:i], self._lasts[:i], self._terms[:i], self._data[:i]
        self._start = offset
        self.synced_end = max(self.synced_end, offset)

    def sync(self, end: int) -> None:
        """Everything below ``end`` is now durable (the simulator's fsync)."""
        assert end <= self.log_end_offset
        self.synced_end = max(self.synced_end, end)

    def cut(self, offset: int) -> None:
        """Lose every batch from ``offset`` on, bypassing the hooks (a crash or a corruption)."""
        i = bisect_right(self._bases, offset - 1)
        del self._bases[i:], self._lasts[i:], self._terms[i:], self._data[i:]
        self.synced_end = min(self.synced_end, self.log_end_offset)

    def batch_bounds(self) -> list[int]:
        """Every batch base offset, plus the log end: the places a cut may land."""
        return [*self._bases, self.log_end_offset]

    def batches(self, start: int = 0) -> list[tuple[int, int, int, bytes]]:
        """``(base, last, term, data)`` for every batch whose base is >= ``start``."""
        i = bisect_right(self._bases, start - 1)
        return list(
            zip(self._bases[i:], self._lasts[i:], self._terms[i:], self._data[i:], strict=True)
        )

    def batch_at(self, base: int) -> tuple[int, int, bytes] | None:
        """``(last, term, data)`` of the batch starting at ``base``, if there is one."""
        i = bisect_right(self._bases, base) - 1
        if i < 0 or self._bases[i] != base:
            return None
        return self._lasts[i], self._terms[i], self._data[i]

    def _push(self, base: int, last: int, term: int, data: bytes) -> None:
        if self.on_append is not None:
            prev = (self._bases[-1], self._terms[-1]) if self._bases else None
            self.on_append(self, base, last, term, data, prev)
        self._bases.append(base)
        self._lasts.append(last)
        self._terms.append(term)
        self._data.append(data)

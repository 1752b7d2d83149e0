"""Latency histograms, the send schedule behind publish-delay, and CPU sampling.

These are the pure parts of the benchmark (no sockets, no servers), kept apart
so that the unit tests can check the arithmetic the reported figures rest on.

Latency is recorded the way the OpenMessaging Benchmark reports it:

* **publish latency**: from the moment a send started to its acknowledgement;
* **publish delay**: how late a send *started* against the schedule the rate
  limiter intended. A producer that stalls for a second sends nothing during
  that second, so its publish latency looks fine; the delay of every send that
  was due during the stall exposes it (the "coordinated omission" problem);
* **end-to-end latency**: from the send's start (a timestamp carried in the
  payload) to its delivery to a consumer.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

K = TypeVar("K")

#: The percentiles OMB prints, as (label, percentile) pairs; ``max`` is exact.
PERCENTILES: tuple[tuple[str, float], ...] = (
    ("p50", 50.0),
    ("p99", 99.0),
    ("p99.9", 99.9),
    ("p99.99", 99.99),
)
SUMMARY_KEYS: tuple[str, ...] = (*(label for label, _ in PERCENTILES), "max")

_SUB_BUCKET_BITS = 7  # 128 sub-buckets per power of two: under 1 % relative error.
_SUB_BUCKETS = 1 << _SUB_BUCKET_BITS


def _bucket_of(value: int) -> int:
    """Map a non-negative integer to its bucket; exact below 128, log-linear above."""
    if value < _SUB_BUCKETS:
        return value
    shift = value.bit_length() - _SUB_BUCKET_BITS
    return (shift << _SUB_BUCKET_BITS) + (value >> shift)


def _bucket_high(bucket: int) -> int:
    """The highest value that lands in ``bucket`` (what HdrHistogram reports)."""
    if bucket < _SUB_BUCKETS:
        return bucket
    shift = bucket >> _SUB_BUCKET_BITS
    mantissa = bucket & (_SUB_BUCKETS - 1)  # in [64, 128): the top 7 bits of the value
    return ((mantissa + 1) << shift) - 1


@dataclass(slots=True)
class LatencyHistogram:
    """A bounded-memory latency histogram in microseconds (HdrHistogram's idea).

    Millions of samples per run must not cost millions of list entries, so
    values go into log-linear buckets: at most 128 buckets per power of two,
    at most ~64 powers; a quantile is the top of the bucket holding it (so it
    never under-reports), within 1 % of the true sample. ``max`` is exact.
    """

    counts: dict[int, int] = field(default_factory=dict)
    total: int = 0
    max_us: int = 0
    sum_us: int = 0

    def record(self, value_us: float) -> None:
        """Record one latency; negative values (clock steps) are clamped to 0."""
        value = max(0, int(value_us))
        bucket = _bucket_of(value)
        self.counts[bucket] = self.counts.get(bucket, 0) + 1
        self.total += 1
        self.sum_us += value
        if value > self.max_us:
            self.max_us = value

    def record_ns(self, value_ns: int) -> None:
        self.record(value_ns // 1000)

    def merge(self, other: LatencyHistogram) -> None:
        for bucket, count in other.counts.items():
            self.counts[bucket] = self.counts.get(bucket, 0) + count
        self.total += other.total
        self.sum_us += other.sum_us
        self.max_us = max(self.max_us, other.max_us)

    def reset(self) -> None:
        """Forget everything: called at the end of the warm-up, as OMB does."""
        self.counts.clear()
        self.total = 0
        self.max_us = 0
        self.sum_us = 0

    def percentile_us(self, pct: float) -> int:
        """The value at percentile ``pct`` (0..100): the sample of rank ceil(pct/100 * n)."""
        if not 0.0 <= pct <= 100.0:
            raise ValueError(f"percentile must be within [0, 100], got {pct}")
        if self.total == 0:
            raise ValueError("no samples recorded")
        rank = max(1, math.ceil(pct / 100.0 * self.total))
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return min(_bucket_high(bucket), self.max_us)
        return self.max_us

    def summary_ms(self) -> dict[str, float] | None:
        """``{p50, p99, p99.9, p99.99, max}`` in milliseconds, or None without samples."""
        if self.total == 0:
            return None
        out = {label: self.percentile_us(pct) / 1000.0 for label, pct in PERCENTILES}
        out["max"] = self.max_us / 1000.0
        return out

    @property
    def mean_us(self) -> float:
        return self.sum_us / self.total if self.total else 0.0


@dataclass(slots=True)
class SendSchedule:
    """When each send of a fixed-rate producer was *supposed* to start.

    Send ``i`` is due at ``start_ns + i / rate``; the publish delay of a send is
    how late it actually started. A rate of 0 means "as fast as possible": no
    send is ever late, and no publish delay is reported (OMB's max-rate runs
    report a publish delay that only reflects its own rate limiter).
    """

    rate_per_s: float
    start_ns: int

    def __post_init__(self) -> None:
        if self.rate_per_s < 0:
            raise ValueError(f"rate must be >= 0, got {self.rate_per_s}")

    @property
    def unlimited(self) -> bool:
        return self.rate_per_s == 0

    def due_ns(self, index: int) -> int:
        """When send ``index`` (0-based) was due."""
        if self.unlimited:
            return self.start_ns
        return self.start_ns + round(index * 1e9 / self.rate_per_s)

    def due_count(self, now_ns: int) -> int:
        """How many sends were due by ``now_ns`` (sends 0..n-1)."""
        if self.unlimited:
            raise ValueError("an unlimited schedule has no due count")
        if now_ns < self.start_ns:
            return 0
        return math.floor((now_ns - self.start_ns) * self.rate_per_s / 1e9) + 1

    def delay_ns(self, index: int, started_ns: int) -> int:
        """Publish delay of send ``index`` that started at ``started_ns`` (never negative)."""
        if self.unlimited:
            return 0
        return max(0, started_ns - self.due_ns(index))


def median(values: Iterable[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median of nothing")
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2.0


# --- CPU time of server processes, from /proc/<pid>/stat ------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of one ``/proc/<pid>/stat`` line that CPU accounting needs (clock ticks)."""

    pid: int
    pgrp: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def own_ticks(self) -> int:
        """User + system time of every thread of the process (Linux sums them per process)."""
        return self.utime + self.stime

    @property
    def reaped_children_ticks(self) -> int:
        """User + system time of children the process has waited for (``cutime + cstime``)."""
        return self.cutime + self.cstime


def parse_proc_stat(stat_line: str) -> ProcStat:
    """Parse one ``/proc/<pid>/stat`` line.

    The command name (field 2) is in parentheses and may itself contain spaces
    or parentheses, so fields are counted from the *last* ``)``: after it come
    field 3 (state) onwards, which puts pgrp (field 5) at offset 2, utime and
    stime (fields 14, 15) at offsets 11 and 12, cutime and cstime (16, 17) at 13 and 14.
    """
    close = stat_line.rindex(")")
    pid = int(stat_line[: stat_line.index("(")].strip())
    rest = stat_line[close + 2 :].split()
    return ProcStat(
        pid=pid,
        pgrp=int(rest[2]),
        utime=int(rest[11]),
        stime=int(rest[12]),
        cutime=int(rest[13]),
        cstime=int(rest[14]),
    )


def parse_proc_stat_cpu_ticks(stat_line: str) -> int:
    """utime + stime (clock ticks) from one ``/proc/<pid>/stat`` line."""
    return parse_proc_stat(stat_line).own_ticks


def read_cpu_ticks(pid: int, proc_root: Path = Path("/proc")) -> int:
    return parse_proc_stat_cpu_ticks((proc_root / str(pid) / "stat").read_text())


def read_all_proc_stats(proc_root: Path = Path("/proc")) -> list[ProcStat]:
    """Every process's stat line; one that exits while being read is left out."""
    stats = []
    for entry in proc_root.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stats.append(parse_proc_stat((entry / "stat").read_text()))
        except (OSError, ValueError, IndexError):
            continue
    return stats


def server_cpu_ticks(pids: Iterable[int], stats: Iterable[ProcStat]) -> dict[int, int]:
    """CPU ticks used so far by each server, counting everything it runs as part of it.

    A server started in its own process group (as the drivers start them) is the
    whole group: every live member's own time, plus the leader's reaped children
    (a Redis AOF rewrite is a forked child: its time lands in the parent's
    ``cutime`` once reaped, so a child that lives and dies inside a window is still
    counted, and one reaped mid-window moves from one term to the other without a
    jump). A server that does not lead its group counts alone. A pid with no stat
    (exited) is absent from the result, so a caller can tell a dead server from an
    idle one.
    """
    by_pid: dict[int, ProcStat] = {}
    by_group: dict[int, int] = {}
    for st in stats:
        by_pid[st.pid] = st
        by_group[st.pgrp] = by_group.get(st.pgrp, 0) + st.own_ticks
    out: dict[int, int] = {}
    for pid in pids:
        st = by_pid.get(pid)
        if st is None:
            continue
        if st.pgrp == pid:
            out[pid] = by_group[pid] + st.reaped_children_ticks
        else:
            out[pid] = st.own_ticks + st.reaped_children_ticks
    return out


def cpu_percent(
    before: Mapping[K, int],
    after: Mapping[K, int],
    window_s: float,
    ticks_per_s: int = CLOCK_TICKS,
) -> dict[K, float]:
    """Per-key CPU use over a window, in percent of one core (100 = one core busy)."""
    if window_s <= 0:
        raise ValueError("window must be positive")
    return {
        key: 100.0 * (after[key] - before[key]) / ticks_per_s / window_s
        for key in before
        if key in after
    }


def cpu_ms_per_mib(cpu_seconds: float | None, mib: float) -> float | None:
    """CPU milliseconds per MiB moved: the cost of each acknowledged (or read) MiB.

    None when there is nothing to divide (no CPU figure, or no data moved): a ratio
    over zero bytes would be a number with no meaning.
    """
    if cpu_seconds is None or mib <= 0:
        return None
    return 1000.0 * cpu_seconds / mib


@dataclass(frozen=True, slots=True)
class CpuUsage:
    """What a :class:`CpuWindow` measured: servers and the load generator, over ``window_s``."""

    window_s: float
    #: Seconds of CPU by server label; a server that died during the window is missing.
    server_seconds_by_label: dict[str, float]
    #: Total over every server, or None if one died (its last ticks are lost with it).
    server_seconds: float | None
    client_seconds: float

    def metrics(self, mib: float, prefix: str = "") -> dict[str, float | dict[str, float] | None]:
        """The figures the results record, for ``mib`` MiB acknowledged (or read) in the window."""
        window = self.window_s if self.window_s > 0 else float("nan")
        server = self.server_seconds
        return {
            f"{prefix}server_cpu_seconds": server,
            f"{prefix}server_cpu_percent": None if server is None else 100.0 * server / window,
            f"{prefix}server_cpu_ms_per_mib": cpu_ms_per_mib(server, mib),
            f"{prefix}client_cpu_percent": 100.0 * self.client_seconds / window,
            f"{prefix}client_cpu_ms_per_mib": cpu_ms_per_mib(self.client_seconds, mib),
        }


@dataclass(slots=True)
class CpuWindow:
    """Servers' CPU (from /proc, per process group) and this process's own, over one window.

    ``begin`` and ``end`` bracket exactly the span whose bytes are counted, so that
    CPU seconds ÷ MiB is the cost of those bytes. This process is the load generator
    of the Python rows: its own time (every thread, e.g. librdkafka's) is
    ``os.times()``'s user + system, which leaves out the servers it started.
    """

    pids: dict[str, int]
    start_ticks: dict[int, int]
    start_client_s: float
    start_wall: float
    proc_root: Path = Path("/proc")

    @classmethod
    def begin(cls, pids: Mapping[str, int], proc_root: Path = Path("/proc")) -> CpuWindow:
        ticks = server_cpu_ticks(pids.values(), read_all_proc_stats(proc_root))
        return cls(dict(pids), ticks, _self_cpu_seconds(), time.perf_counter(), proc_root)

    def end(self, ticks_per_s: int = CLOCK_TICKS) -> CpuUsage:
        after = server_cpu_ticks(self.pids.values(), read_all_proc_stats(self.proc_root))
        client = _self_cpu_seconds() - self.start_client_s
        window = time.perf_counter() - self.start_wall
        by_label = {
            label: (after[pid] - self.start_ticks[pid]) / ticks_per_s
            for label, pid in self.pids.items()
            if pid in after and pid in self.start_ticks
        }
        complete = len(by_label) == len(self.pids)
        total = sum(by_label.values()) if complete and by_label else None
        return CpuUsage(window, by_label, total, client)


def _self_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system

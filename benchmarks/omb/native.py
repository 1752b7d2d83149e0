"""A native load generator: Apache Kafka's own perf tools, pointed at any Kafka bootstrap.

The Python rows measure the client as much as the servers: on this machine one Python
process producing 1 KiB records tops out at one core. These scenarios drive a system
with ``org.apache.kafka.tools.ProducerPerformance`` (and ``ConsumerPerformance`` for a
catch-up read), the JVM tools behind ``kafka-producer-perf-test.sh``, from the jars
``make kafka-dist`` installs. They need nothing from a system but a Kafka-protocol
bootstrap address (:meth:`Driver.kafka_bootstrap`): Apache Kafka today, Strata's Kafka
listener when it exists.

What is measured, and how:

* **max-rate**: a first tool run of ``warmup_s`` (JIT warm-up of the tool and, for a
  JVM broker, of the brokers) is stopped and gives the rate; the measured run then
  sends ``rate × (duration_s + 1)`` records with the first second's worth as the
  tool's ``--warmup-records``, and its *steady-state* summary is the figure. The tool
  ends on a record count, not a clock, so the estimate keeps the run near
  ``duration_s``.
* **fixed-rate**: one run of ``rate × (warmup + duration)`` records throttled to the
  rate (the tool's ``--throughput``), the warm-up's records excluded the same way.
* **backlog**: the backlog produced at full speed, then one ConsumerPerformance reading
  it all; its overall MiB/s (group join included, as the Python catch-up includes
  opening its consumers) is the figure.

Latency comes from the tool: from ``send()`` to the acknowledgement callback, in whole
milliseconds (``System.currentTimeMillis``), percentiles p50/p95/p99/p99.9 from a
sample of at most 500,000 records, and max. It has no end-to-end or publish-delay
figure. Producer settings: ``acks=all`` and ``linger.ms=1`` like the Python rows; the
rest is the Java client's defaults (idempotence on, 16 KiB batches, no compression);
the payload is the tool's (random letters A-Z, regenerated per record).

CPU: the servers' CPU (``CpuWindow``, /proc) from the measured tool's launch to its
exit, divided by the MiB it got acknowledged (or read); the tool's own CPU (user +
system of the JVM, start-up included) from ``wait4``, reported separately as the load
generator's. The tool can be pinned to CPUs with ``taskset`` (``--pin-load-generator``).
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.omb.driver import Driver
from benchmarks.omb.procs import ToolExit, ToolProcess
from benchmarks.omb.scenarios import topic_names
from benchmarks.omb.stats import CpuUsage, CpuWindow, cpu_ms_per_mib

Progress = Callable[[str], None]
MIB = float(1 << 20)
PRODUCER_PERF = "org.apache.kafka.tools.ProducerPerformance"
CONSUMER_PERF = "org.apache.kafka.tools.ConsumerPerformance"
#: What kafka-producer-perf-test.sh gives the tool (-Xmx512M).
TOOL_HEAP = "512m"
#: kafka-run-class.sh's JVM flags (minus -server, implied on a 64-bit JVM).
TOOL_JVM_FLAGS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
)
REPORT_INTERVAL_MS = 1000
#: Producer settings the tool is given; everything else is the Java client's default.
PRODUCER_PROPS = {"acks": "all", "linger.ms": "1"}
MIN_RECORDS = 1_000
MAX_RECORDS = 100_000_000
#: ConsumerPerformance gives up after this long without a record.
CONSUMER_TIMEOUT_MS = 30_000


# --- output parsing ---------------------------------------------------------------------

_NUM = r"([0-9]+(?:\.[0-9]+)?)"
_WINDOW_RE = re.compile(
    rf"^(\d+) records sent, {_NUM} records/sec \({_NUM} MB/sec\), {_NUM} ms avg latency, "
    rf"{_NUM} ms max latency\.$"
)
_TOTAL_RE = re.compile(
    rf"^(\d+)( steady state)? records sent, {_NUM} records/sec \({_NUM} MB/sec\), "
    rf"{_NUM} ms avg latency, {_NUM} ms max latency, (\d+) ms 50th, (\d+) ms 95th, "
    r"(\d+) ms 99th, (\d+) ms 99\.9th\.$"
)


@dataclass(frozen=True, slots=True)
class PerfWindow:
    """One progress line of ProducerPerformance (one reporting interval)."""

    records: int
    records_per_s: float
    mib_per_s: float
    avg_ms: float
    max_ms: float


@dataclass(frozen=True, slots=True)
class PerfTotal:
    """ProducerPerformance's summary line: the whole run, or its steady state."""

    records: int
    records_per_s: float
    mib_per_s: float
    avg_ms: float
    max_ms: float
    p50_ms: int
    p95_ms: int
    p99_ms: int
    p999_ms: int
    steady_state: bool

    def latency_ms(self) -> dict[str, float]:
        """The tool's percentiles under the report's keys (it has no p99.99; p95 and avg extra)."""
        return {
            "p50": float(self.p50_ms),
            "p95": float(self.p95_ms),
            "p99": float(self.p99_ms),
            "p99.9": float(self.p999_ms),
            "max": self.max_ms,
            "avg": self.avg_ms,
        }


@dataclass(frozen=True, slots=True)
class ProducerPerfOutput:
    windows: list[PerfWindow]
    total: PerfTotal | None
    steady: PerfTotal | None

    @property
    def summary(self) -> PerfTotal | None:
        """The figure to report: the steady state when the run had a warm-up, else the total."""
        return self.steady or self.total


def parse_producer_line(line: str) -> PerfWindow | PerfTotal | None:
    """One stdout line of ProducerPerformance, or None for anything else (banners, warnings).

    Covers Kafka 4.0-4.4: the summary's records/sec is ``%.1f`` before 4.2 and ``%f``
    from 4.2; a run with ``--warmup-records`` adds a ``N steady state records sent``
    summary after the total one.
    """
    text = line.strip()
    m = _TOTAL_RE.match(text)
    if m:
        return PerfTotal(
            records=int(m.group(1)),
            steady_state=m.group(2) is not None,
            records_per_s=float(m.group(3)),
            mib_per_s=float(m.group(4)),
            avg_ms=float(m.group(5)),
            max_ms=float(m.group(6)),
            p50_ms=int(m.group(7)),
            p95_ms=int(m.group(8)),
            p99_ms=int(m.group(9)),
            p999_ms=int(m.group(10)),
        )
    m = _WINDOW_RE.match(text)
    if m:
        return PerfWindow(
            records=int(m.group(1)),
            records_per_s=float(m.group(2)),
            mib_per_s=float(m.group(3)),
            avg_ms=float(m.group(4)),
            max_ms=float(m.group(5)),
        )
    return None


def parse_producer_perf(lines: Iterable[str]) -> ProducerPerfOutput:
    windows: list[PerfWindow] = []
    total = steady = None
    for line in lines:
        parsed = parse_producer_line(line)
        if isinstance(parsed, PerfWindow):
            windows.append(parsed)
        elif isinstance(parsed, PerfTotal):
            if parsed.steady_state:
                steady = parsed
            else:
                total = parsed
    return ProducerPerfOutput(windows, total, steady)


def estimate_rate(windows: list[PerfWindow]) -> float:
    """Records/s the producer sustains: the mean of its progress windows after the first.

    The first window holds the client's start (connections, metadata, producer id) and
    the JIT's first compilations; with a single window there is nothing else to use.
    """
    if not windows:
        raise ValueError("the producer printed no progress line: no rate to go on")
    usable = windows[1:] or windows
    return sum(w.records_per_s for w in usable) / len(usable)


@dataclass(frozen=True, slots=True)
class ConsumerPerfOutput:
    """ConsumerPerformance's one summary line (sizes in MiB: the tool's "MB" is 1024²)."""

    mib: float
    mib_per_s: float
    records: int
    records_per_s: float
    rebalance_ms: int
    fetch_ms: int
    fetch_mib_per_s: float
    fetch_records_per_s: float
    timed_out: bool


def parse_consumer_perf(lines: Iterable[str]) -> ConsumerPerfOutput:
    """The CSV line after ConsumerPerformance's ``start.time, end.time, ...`` header."""
    header_seen = False
    timed_out = False
    for line in lines:
        text = line.strip()
        if text.startswith("WARNING: Exiting before consuming the expected number"):
            timed_out = True
        elif text.startswith("start.time, end.time,"):
            header_seen = True
        elif header_seen and text:
            fields = [f.strip() for f in text.split(",")]
            if len(fields) != 10:
                continue
            return ConsumerPerfOutput(
                mib=float(fields[2]),
                mib_per_s=float(fields[3]),
                records=int(fields[4]),
                records_per_s=float(fields[5]),
                rebalance_ms=int(fields[6]),
                fetch_ms=int(fields[7]),
                fetch_mib_per_s=float(fields[8]),
                fetch_records_per_s=float(fields[9]),
                timed_out=timed_out,
            )
    raise ValueError("no ConsumerPerformance summary line in the output")


# --- running the tools ------------------------------------------------------------------


def tool_client_name(version: str, scenario: str) -> str:
    """The label of a native row's client: the tool(s) and the Kafka release they come from."""
    tools = "kafka-producer-perf-test"
    if scenario == "backlog":
        tools += " + kafka-consumer-perf-test"
    return f"{tools} (Apache Kafka {version}, JVM)"


def producer_args(
    bootstrap: str,
    topic: str,
    *,
    num_records: int,
    record_size: int,
    throughput: float,
    warmup_records: int = 0,
) -> list[str]:
    """ProducerPerformance's command line (the 4.2+ options; ``--producer-props`` is deprecated)."""
    args = [
        "--bootstrap-server", bootstrap,
        "--topic", topic,
        "--num-records", str(num_records),
        "--record-size", str(record_size),
        "--throughput", str(-1 if throughput <= 0 else max(1, round(throughput))),
        "--reporting-interval", str(REPORT_INTERVAL_MS),
        "--command-property", *(f"{k}={v}" for k, v in PRODUCER_PROPS.items()),
    ]  # fmt: skip
    if warmup_records > 0:
        args += ["--warmup-records", str(warmup_records)]
    return args


def consumer_args(bootstrap: str, topic: str, *, num_records: int) -> list[str]:
    return [
        "--bootstrap-server", bootstrap,
        "--topic", topic,
        "--num-records", str(num_records),
        "--timeout", str(CONSUMER_TIMEOUT_MS),
        "--reporting-interval", str(REPORT_INTERVAL_MS),
    ]  # fmt: skip


@dataclass(slots=True)
class NativeTarget:
    """Where the tools run against, and how: a bootstrap, the installed jars, a pin."""

    bootstrap: str
    dist: Any  # tests.compat.apache_kafka.KafkaDist
    workdir: Path
    cpus: str | None = None

    @classmethod
    def for_driver(cls, driver: Driver, workdir: Path, cpus: str | None) -> NativeTarget:
        from tests.compat.apache_kafka import KafkaDist

        bootstrap = driver.kafka_bootstrap()
        if bootstrap is None:
            raise RuntimeError(f"{driver.name} has no Kafka-protocol bootstrap")
        return cls(bootstrap, KafkaDist.find(), workdir, cpus)

    async def run(
        self,
        main_class: str,
        args: list[str],
        *,
        on_line: Callable[[str], None] | None = None,
        stop_when: Awaitable[Any] | None = None,
        stop_bound_s: float = 120.0,
    ) -> ToolExit:
        """Run one tool to its end; always reaped.

        With ``stop_when``, the tool is SIGKILLed once that completes, or after
        ``stop_bound_s`` if it never does (a run of ``MAX_RECORDS`` is not meant to end).
        """
        argv = self.dist.tool_argv(main_class, args, heap=TOOL_HEAP, jvm_flags=TOOL_JVM_FLAGS)
        self.workdir.mkdir(parents=True, exist_ok=True)
        tool = ToolProcess(argv, self.workdir / "tool-stderr.log", self.workdir, self.cpus)
        tool.start()
        waiter = asyncio.ensure_future(asyncio.to_thread(tool.wait, on_line))
        try:
            if stop_when is not None:
                stopper = asyncio.ensure_future(stop_when)
                try:
                    await asyncio.wait(
                        {waiter, stopper}, timeout=stop_bound_s,
                        return_when=asyncio.FIRST_COMPLETED,
                    )  # fmt: skip
                finally:
                    stopper.cancel()
                tool.kill()
            return await waiter
        except BaseException:
            tool.kill()  # the waiting thread then sees stdout end and reaps the tool
            raise

    def stderr_tail(self, lines: int = 15) -> str:
        try:
            text = (self.workdir / "tool-stderr.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def _line_reporter(progress: Progress, label: str) -> Callable[[str], None]:
    """Forward the tool's progress lines (read in a thread) to the loop's progress printer."""
    loop = asyncio.get_running_loop()

    def on_line(line: str) -> None:
        if isinstance(parse_producer_line(line), PerfWindow):
            loop.call_soon_threadsafe(progress, f"{label}: {line.strip()}")

    return on_line


def _tool_metrics(run: ToolExit, mib: float, prefix: str = "") -> dict[str, Any]:
    """The load generator's own CPU: the tool's, from wait4 (the runner's is irrelevant here)."""
    wall = run.wall_s if run.wall_s > 0 else float("nan")
    return {
        f"{prefix}client_cpu_seconds": run.cpu_s,
        f"{prefix}client_cpu_percent": 100.0 * run.cpu_s / wall,
        f"{prefix}client_cpu_ms_per_mib": cpu_ms_per_mib(run.cpu_s, mib),
    }


def _server_metrics(usage: CpuUsage, mib: float, prefix: str = "") -> dict[str, Any]:
    return {k: v for k, v in usage.metrics(mib, prefix).items() if "client_cpu" not in k}


def _check(run: ToolExit, target: NativeTarget, what: str) -> None:
    if run.returncode != 0:
        raise RuntimeError(f"{what} exited with {run.returncode}:\n{target.stderr_tail()}")


async def _produce(
    target: NativeTarget,
    driver: Driver,
    topic: str,
    progress: Progress,
    *,
    records: int,
    size: int,
    throughput: float,
    warmup_records: int,
    label: str,
) -> tuple[ProducerPerfOutput, ToolExit, CpuUsage]:
    cpu = CpuWindow.begin(driver.server_pids())
    run = await target.run(
        PRODUCER_PERF,
        producer_args(target.bootstrap, topic, num_records=records, record_size=size,
                      throughput=throughput, warmup_records=warmup_records),
        on_line=_line_reporter(progress, label),
    )  # fmt: skip
    usage = cpu.end()
    _check(run, target, "ProducerPerformance")
    out = parse_producer_perf(run.stdout)
    if out.total is None or out.summary is None:
        raise RuntimeError(f"ProducerPerformance printed no summary:\n{target.stderr_tail()}")
    return out, run, usage


def _clamp_records(n: float) -> int:
    return int(min(MAX_RECORDS, max(MIN_RECORDS, math.ceil(n))))


def _producer_result(
    out: ProducerPerfOutput, run: ToolExit, usage: CpuUsage, sent: int, size: int
) -> dict[str, Any]:
    assert out.total is not None and out.summary is not None
    summary = out.summary
    acked_mib = out.total.records * size / MIB
    return {
        "publish_rate_msgs": summary.records_per_s,
        "publish_rate_mib": summary.records_per_s * size / MIB,
        "publish_latency_ms": summary.latency_ms(),
        "publish_delay_ms": None,
        "end_to_end_latency_ms": None,
        "latency_resolution_ms": 1,
        "steady_state_records": summary.records if summary.steady_state else None,
        "sent": sent,
        "acked": out.total.records,
        "failed": sent - out.total.records,
        "tool_seconds": run.wall_s,
        **_server_metrics(usage, acked_mib),
        **_tool_metrics(run, acked_mib),
    }


async def _prepare(
    driver: Driver, w: Any, workdir: Path, cpus: str | None
) -> tuple[NativeTarget, str]:
    """The tool's target and the workload's topic, created (one topic: one tool process)."""
    target = NativeTarget.for_driver(driver, workdir, cpus)
    topic = topic_names(w.name, 1)[0]
    await driver.create_topic(topic, w.partitions_per_topic, w.replication_factor)
    return target, topic


async def run_native_max_rate(
    driver: Driver, w: Any, progress: Progress, *, workdir: Path, cpus: str | None = None
) -> dict[str, Any]:
    target, topic = await _prepare(driver, w, workdir, cpus)

    windows: list[PerfWindow] = []
    first_window = asyncio.Event()
    loop = asyncio.get_running_loop()
    report = _line_reporter(progress, "warm-up")

    def collect(line: str) -> None:  # in the tool's reader thread
        parsed = parse_producer_line(line)
        if isinstance(parsed, PerfWindow):
            windows.append(parsed)
            loop.call_soon_threadsafe(first_window.set)
        report(line)

    async def warmed_up() -> None:
        # The warm-up counts from the first progress line: the JVM's own start (a second
        # or two, more on a busy machine) is not warm-up of anything that is measured.
        await first_window.wait()
        await asyncio.sleep(w.warmup_s)

    warm = await target.run(
        PRODUCER_PERF,
        producer_args(target.bootstrap, topic, num_records=MAX_RECORDS,
                      record_size=w.message_size, throughput=-1),
        on_line=collect,
        stop_when=warmed_up(),
    )  # fmt: skip
    if not windows:
        raise RuntimeError(f"ProducerPerformance (warm-up) failed:\n{target.stderr_tail()}")
    rate = estimate_rate(windows)
    warmup_records = max(1, round(rate))  # the measured run's first second
    records = _clamp_records(rate * w.duration_s) + warmup_records
    progress(f"warm-up rate {rate:,.0f} msg/s: measuring {records:,} records")
    out, run, usage = await _produce(
        target, driver, topic, progress, records=records, size=w.message_size, throughput=-1,
        warmup_records=warmup_records, label="measured",
    )  # fmt: skip
    return {
        "target_rate_msgs": None,
        "warmup_rate_msgs": rate,
        "warmup_tool_seconds": warm.wall_s,
        **_producer_result(out, run, usage, records, w.message_size),
    }


async def run_native_fixed_rate(
    driver: Driver, w: Any, progress: Progress, *, workdir: Path, cpus: str | None = None
) -> dict[str, Any]:
    target, topic = await _prepare(driver, w, workdir, cpus)
    warmup_records = round(w.producer_rate * w.warmup_s)
    records = _clamp_records(w.producer_rate * w.duration_s) + warmup_records
    out, run, usage = await _produce(
        target, driver, topic, progress, records=records, size=w.message_size,
        throughput=w.producer_rate, warmup_records=warmup_records, label="paced",
    )  # fmt: skip
    return {
        "target_rate_msgs": w.producer_rate,
        **_producer_result(out, run, usage, records, w.message_size),
    }


async def run_native_backlog(
    driver: Driver, w: Any, progress: Progress, *, workdir: Path, cpus: str | None = None
) -> dict[str, Any]:
    target, topic = await _prepare(driver, w, workdir, cpus)
    total = math.ceil(w.backlog_bytes / w.message_size)
    out, prun, pusage = await _produce(
        target, driver, topic, progress, records=total, size=w.message_size, throughput=-1,
        warmup_records=0, label="backlog",
    )  # fmt: skip
    assert out.total is not None
    if out.total.records != total:
        raise RuntimeError(f"{total - out.total.records} of {total} backlog writes failed")
    backlog_mib = total * w.message_size / MIB

    cpu = CpuWindow.begin(driver.server_pids())
    crun = await target.run(
        CONSUMER_PERF, consumer_args(target.bootstrap, topic, num_records=total)
    )
    rusage = cpu.end()
    _check(crun, target, "ConsumerPerformance")
    read = parse_consumer_perf(crun.stdout)
    if read.timed_out or read.records < total:
        raise TimeoutError(f"catch-up read {read.records}/{total} records")
    read_mib = read.records * w.message_size / MIB
    return {
        "backlog_messages": total,
        "backlog_mib": backlog_mib,
        "backlog_publish_rate_mib": out.total.records_per_s * w.message_size / MIB,
        "catchup_seconds": read.records / read.records_per_s if read.records_per_s else None,
        "catchup_rate_msgs": read.records_per_s,
        "catchup_rate_mib": read.mib_per_s,
        "catchup_fetch_rate_mib": read.fetch_mib_per_s,
        "catchup_rebalance_ms": read.rebalance_ms,
        **_server_metrics(pusage, backlog_mib, prefix="backlog_"),
        **_tool_metrics(prun, backlog_mib, prefix="backlog_"),
        **_server_metrics(rusage, read_mib, prefix="catchup_"),
        **_tool_metrics(crun, read_mib, prefix="catchup_"),
    }


NATIVE_RUNNERS = {
    "max-rate": run_native_max_rate,
    "fixed-rate": run_native_fixed_rate,
    "backlog": run_native_backlog,
}

"""The Go load generator of one produce in flight (``loadGenerator: go-lone``).

Issue 17's first goal compares a lone write's p50 with JetStream's *as driven by its
Go client*: a Python client's event loop adds a few hundred microseconds to every
round trip, which is the very figure being measured. ``build/golat``
(``benchmarks/native/golat``, built by ``make golat``) publishes one record at a time
— send, wait for the acknowledgement, send the next — with a Go client:

* to a system with a Kafka-protocol bootstrap (Strata's Kafka listener, Apache
  Kafka), franz-go with ``acks=all``, idempotence on (Kafka 4's defaults), linger 0,
  no compression, to partition 0;
* to NATS JetStream, nats.go's JetStream ``Publish``, which returns on the stream's
  ack (the driver creates the stream R3, one stream per partition).

Systems with neither show ``n/a``. The tool warms up for ``warmupDurationSeconds``
(at least one acknowledged record, so connection, metadata and producer id are
behind it), then measures for ``testDurationSeconds`` and prints one JSON line:
count, rate, latency p50/p99/p99.9/max/mean in ms (nanosecond clock, exact
nearest-rank percentiles of every sample, no histogram), and its own CPU.

CPU: golat prints ``golat: measuring`` and ``golat: measured`` around its measured
window; the servers' CPU (``CpuWindow``) is sampled between those two lines, so a
row's server CPU per MiB covers the same records as its latency. The load
generator's CPU is golat's own over the same window (its rusage), and its whole run
(start-up and warm-up included, from ``wait4``) is kept as ``client_cpu_seconds_total``.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.omb.driver import Driver
from benchmarks.omb.procs import ToolExit, ToolProcess
from benchmarks.omb.scenarios import topic_names
from benchmarks.omb.stats import CpuUsage, CpuWindow, cpu_ms_per_mib

Progress = Callable[[str], None]
MIB = float(1 << 20)
REPO = Path(__file__).resolve().parent.parent.parent
GOLAT_DIR = REPO / "benchmarks" / "native" / "golat"
GOLAT_BINARY = REPO / "build" / "golat"
MARK_MEASURING = "golat: measuring"
MARK_MEASURED = "golat: measured"
#: One send's acknowledgement timeout: far above any healthy round trip, so that a
#: wedged cluster fails the run (golat gives up after 100 failed sends) instead of
#: silently measuring timeouts.
SEND_TIMEOUT_S = 10.0
#: The partition golat writes to (the workload has exactly one).
PARTITION = 0

#: Modes golat runs, by what the system speaks.
KAFKA = "kafka"
JETSTREAM = "jetstream"


class GolatError(RuntimeError):
    """golat could not run, or printed something other than its result."""


@dataclass(frozen=True, slots=True)
class GolatResult:
    """golat's JSON line: the measured window only (warm-up excluded)."""

    mode: str
    records: int
    errors: int
    seconds: float
    rate: float
    latency_ms: dict[str, float]
    warmup_records: int
    cpu_seconds: float
    measured_cpu_seconds: float
    size: int
    truncated: bool


_LATENCY_KEYS = ("p50", "p99", "p99.9", "max", "mean")


def parse_golat_output(lines: Iterable[str]) -> GolatResult:
    """The result from golat's stdout: the line that follows ``golat: measured``.

    What comes before the marker is skipped; a missing or malformed result
    is an error that says what was missing, never a row of zeros.
    """
    measured = False
    for line in lines:
        text = line.strip()
        if text == MARK_MEASURED:
            measured = True
            continue
        if not (measured and text):
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GolatError(f"golat's result is not JSON: {text[:200]!r}") from exc
        return _result_from(data)
    raise GolatError("golat printed no result line" + ("" if measured else " (never measured)"))


def _result_from(data: Any) -> GolatResult:
    if not isinstance(data, dict):
        raise GolatError(f"golat's result is not an object: {data!r}")
    try:
        latency = data["latency_ms"]
        result = GolatResult(
            mode=str(data["mode"]),
            records=int(data["records"]),
            errors=int(data["errors"]),
            seconds=float(data["seconds"]),
            rate=float(data["rate"]),
            latency_ms={k: float(latency[k]) for k in _LATENCY_KEYS},
            warmup_records=int(data["warmup_records"]),
            cpu_seconds=float(data["cpu_seconds"]),
            measured_cpu_seconds=float(data["measured_cpu_seconds"]),
            size=int(data["size"]),
            truncated=bool(data.get("truncated", False)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise GolatError(f"golat's result lacks or garbles {exc}: {data!r}") from exc
    if result.records < 1 or result.seconds <= 0:
        raise GolatError(f"golat measured no acknowledged record: {data!r}")
    return result


def golat_mode(driver: Driver) -> str | None:
    """Which client golat drives a system with, or None when neither applies (n/a).

    Kafka first: a system that spoke both would be a Kafka-protocol system here.
    """
    if driver.speaks_kafka:
        return KAFKA
    if driver.speaks_jetstream:
        return JETSTREAM
    return None


_REQUIRE_RE = re.compile(r"^\s*(?:require\s+)?(github\.com/\S+)\s+(v\S+)\s*$")


def module_versions(go_mod: Path = GOLAT_DIR / "go.mod") -> dict[str, str]:
    """Module -> version from golat's go.mod (direct and indirect requirements)."""
    versions: dict[str, str] = {}
    try:
        text = go_mod.read_text()
    except OSError:
        return versions
    for line in text.splitlines():
        m = _REQUIRE_RE.match(line.split("//")[0])
        if m:
            versions[m.group(1)] = m.group(2)
    return versions


def golat_client_name(mode: str | None) -> str:
    """The label of a go-lone row's client: golat and the Go client library it used."""
    versions = module_versions()
    if mode == KAFKA:
        lib = f"franz-go {versions.get('github.com/twmb/franz-go', '?')}"
    elif mode == JETSTREAM:
        lib = f"nats.go {versions.get('github.com/nats-io/nats.go', '?')}"
    else:
        return "golat (Go)"
    return f"golat (Go, {lib})"


def golat_args(
    mode: str, *, address: str, destination: str, size: int, warmup_s: float, duration_s: float
) -> list[str]:
    """golat's command line: ``address`` is the Kafka bootstrap or the NATS server URLs,
    ``destination`` the topic or the stream's subject."""
    args = ["--mode", mode]
    if mode == KAFKA:
        args += ["--bootstrap", address, "--topic", destination, "--partition", str(PARTITION)]
    elif mode == JETSTREAM:
        args += ["--servers", address, "--subject", destination]
    else:
        raise ValueError(f"golat has no mode {mode!r}")
    return args + [
        "--size", str(size),
        "--warmup", f"{max(0.0, warmup_s):g}s",
        "--duration", f"{duration_s:g}s",
        "--timeout", f"{SEND_TIMEOUT_S:g}s",
    ]  # fmt: skip


def find_golat(binary: Path | None = None) -> Path:
    """The built tool (``GOLAT_BINARY`` unless given): never built on the fly mid-run."""
    binary = GOLAT_BINARY if binary is None else binary
    if not binary.is_file():
        raise GolatError(f"{binary} is not built: run `make golat` (or `make bench`)")
    return binary


class _Bracket:
    """Samples the servers' CPU between golat's two markers (called from the reader thread)."""

    def __init__(self, pids: dict[str, int], progress: Progress, loop: Any) -> None:
        self._pids = pids
        self._progress = progress
        self._loop = loop
        self._lock = threading.Lock()
        self.window: CpuWindow | None = None
        self.usage: CpuUsage | None = None

    def on_line(self, line: str) -> None:
        text = line.strip()
        with self._lock:
            if text == MARK_MEASURING and self.window is None:
                self.window = CpuWindow.begin(self._pids)
                self._loop.call_soon_threadsafe(self._progress, "warm-up done: measuring")
            elif text == MARK_MEASURED and self.window is not None and self.usage is None:
                self.usage = self.window.end()


def golat_metrics(result: GolatResult, usage: CpuUsage, run: ToolExit) -> dict[str, Any]:
    """A go-lone row's metrics, under the keys every max-rate row uses.

    The load generator's CPU is golat's own over the measured window (its rusage), not
    the runner's: the runner only waits.
    """
    mib = result.records * result.size / MIB
    server = {k: v for k, v in usage.metrics(mib).items() if "client_cpu" not in k}
    window = result.seconds
    return {
        "mode": result.mode,
        "target_rate_msgs": None,
        "publish_rate_msgs": result.rate,
        "publish_rate_mib": result.rate * result.size / MIB,
        "publish_latency_ms": {
            "p50": result.latency_ms["p50"],
            "p99": result.latency_ms["p99"],
            "p99.9": result.latency_ms["p99.9"],
            "max": result.latency_ms["max"],
            "avg": result.latency_ms["mean"],
        },
        "publish_delay_ms": None,
        "end_to_end_latency_ms": None,
        "latency_resolution_ms": 0.001,
        "sent": result.records + result.errors,
        "acked": result.records,
        "failed": result.errors,
        "warmup_records": result.warmup_records,
        "measured_seconds": result.seconds,
        "truncated": result.truncated,
        "tool_seconds": run.wall_s,
        **server,
        "client_cpu_seconds": result.measured_cpu_seconds,
        "client_cpu_percent": 100.0 * result.measured_cpu_seconds / window,
        "client_cpu_ms_per_mib": cpu_ms_per_mib(result.measured_cpu_seconds, mib),
        "client_cpu_seconds_total": run.cpu_s,
    }


async def run_go_lone(
    driver: Driver, w: Any, progress: Progress, *, workdir: Path, cpus: str | None = None
) -> dict[str, Any]:
    """One golat run against ``driver``'s running cluster: topic created, then measured."""
    mode = golat_mode(driver)
    if mode is None:
        raise GolatError(f"{driver.name} speaks neither the Kafka protocol nor JetStream")
    binary = find_golat()
    topic = topic_names(w.name, 1)[0]
    await driver.create_topic(topic, w.partitions_per_topic, w.replication_factor)
    if mode == KAFKA:
        address = driver.kafka_bootstrap()
        destination = topic
    else:
        address = driver.jetstream_servers()
        destination = driver.jetstream_subject(topic, PARTITION)
    if not address or not destination:
        raise GolatError(f"{driver.name} gave no address for golat's {mode} mode")
    argv = [str(binary), *golat_args(
        mode, address=address, destination=destination, size=w.message_size,
        warmup_s=w.warmup_s, duration_s=w.duration_s,
    )]  # fmt: skip
    workdir.mkdir(parents=True, exist_ok=True)
    bracket = _Bracket(driver.server_pids(), progress, asyncio.get_running_loop())
    tool = ToolProcess(argv, workdir / "golat-stderr.log", workdir, cpus)
    tool.start()
    try:
        run = await asyncio.to_thread(tool.wait, bracket.on_line)
    except BaseException:
        tool.kill()  # the reading thread then sees stdout end and reaps it
        raise
    if run.returncode != 0:
        raise GolatError(
            f"golat exited with {run.returncode}:\n{_tail(workdir / 'golat-stderr.log')}"
        )
    result = parse_golat_output(run.stdout)
    if bracket.usage is None:
        raise GolatError("golat's measured window was never bracketed on stdout")
    return golat_metrics(result, bracket.usage, run)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""

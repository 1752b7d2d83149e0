"""Workload files: the OpenMessaging Benchmark's fields, scaled down to seconds.

A workload file (YAML or JSON) in ``benchmarks/workloads/`` uses OMB's field
names so that it reads like the OMB workload it scales down. The extensions
this framework needs are documented in ``benchmarks/README.md`` and below.
Unknown fields are rejected: a typo (``partitionPerTopic``) must not silently
benchmark the default.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.omb.payload import HEADER_SIZE

WORKLOAD_DIR = Path(__file__).resolve().parent.parent / "workloads"

#: What a workload measures. OMB expresses most of these through its fields
#: alone; the explicit name keeps the runner's dispatch obvious and lets the
#: validator check that the fields fit the intent.
SCENARIOS = ("max-rate", "fixed-rate", "backlog", "failover", "idle")
#: Who produces and consumes: ``python`` is the driver's own client in the runner's
#: process (every system); ``kafka-perf`` is Apache Kafka's ProducerPerformance and
#: ConsumerPerformance (a JVM), pointed at a system's Kafka-protocol bootstrap, so that
#: the client is not the ceiling. Systems without a Kafka listener show n/a for it.
#: ``go-lone`` is ``build/golat`` (Go: franz-go, or nats.go for JetStream) publishing one
#: record at a time: the lone-write latency with a Go client (``benchmarks/omb/golat.py``).
LOAD_GENERATORS = ("python", "kafka-perf", "go-lone")
#: Scenarios the native tools can run (they cannot kill brokers or sit idle).
NATIVE_SCENARIOS = ("max-rate", "fixed-rate", "backlog")

OMB_FIELDS = frozenset(
    {
        "name",
        "topics",
        "partitionsPerTopic",
        "messageSize",
        "subscriptionsPerTopic",
        "producersPerTopic",
        "consumerPerSubscription",
        "producerRate",
        "consumerBacklogSizeGB",
        "testDurationMinutes",
        "warmupDurationMinutes",
    }
)
EXTENSION_FIELDS = frozenset(
    {
        "description",
        "scenario",
        "replicationFactor",
        "testDurationSeconds",
        "warmupDurationSeconds",
        "producerRateRelativeTo",
        "producerRateFraction",
        "maxInFlight",
        "failoverTrials",
        "loadGenerator",
        "quick",
    }
)
MAX_MESSAGE_SIZE = 1 << 20


class WorkloadError(ValueError):
    """A workload file that cannot be run as written; the message names file and field."""


@dataclass(frozen=True, slots=True)
class Workload:
    """One workload, after defaults, ``quick`` overrides and validation."""

    name: str
    scenario: str
    topics: int = 1
    partitions_per_topic: int = 1
    message_size: int = 1024
    subscriptions_per_topic: int = 1
    producers_per_topic: int = 1
    consumer_per_subscription: int = 1
    producer_rate: float = 0.0
    consumer_backlog_size_gb: float = 0.0
    duration_s: float = 60.0
    warmup_s: float = 0.0
    replication_factor: int = 3
    producer_rate_relative_to: str | None = None
    producer_rate_fraction: float = 1.0
    max_in_flight: int = 1000
    failover_trials: int = 10
    load_generator: str = "python"
    description: str = ""
    source: str = field(default="<memory>", compare=False)

    @property
    def backlog_bytes(self) -> int:
        """The backlog to build before a catch-up read (GB here means GiB, as in OMB)."""
        return int(self.consumer_backlog_size_gb * (1 << 30))

    @property
    def native(self) -> bool:
        """Driven by a native Kafka load generator instead of the driver's Python client."""
        return self.load_generator != "python"

    @property
    def total_partitions(self) -> int:
        return self.topics * self.partitions_per_topic

    def with_rate(self, rate: float) -> Workload:
        """This workload with a resolved fixed producer rate (msgs/s for the whole topic set)."""
        return replace(self, producer_rate=rate, producer_rate_relative_to=None)


def _need(data: Mapping[str, Any], key: str, kind: type | tuple[type, ...], source: str) -> Any:
    value = data[key]
    # bool is an int in Python; a YAML "yes" for a count is a mistake, not a 1.
    if isinstance(value, bool) or not isinstance(value, kind):
        raise WorkloadError(f"{source}: field {key!r} must be {_kind_name(kind)}, got {value!r}")
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(k.__name__ for k in kinds)


def _number(data: Mapping[str, Any], key: str, default: float, source: str) -> float:
    if key not in data:
        return default
    value = float(_need(data, key, (int, float), source))
    if not math.isfinite(value):
        raise WorkloadError(f"{source}: field {key!r} must be finite, got {value!r}")
    return value


def _integer(data: Mapping[str, Any], key: str, default: int, source: str) -> int:
    if key not in data:
        return default
    return int(_need(data, key, int, source))


def _check_fields(data: Mapping[str, Any], source: str, allowed: frozenset[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise WorkloadError(
            f"{source}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}"
        )


def parse_workload(
    data: Mapping[str, Any], *, name: str, source: str, quick: bool = False
) -> Workload:
    """Build and validate a :class:`Workload` from a parsed file.

    With ``quick``, the file's ``quick:`` mapping overrides its fields first, so a
    quick run is the same workload made smaller, not a different one.
    """
    if not isinstance(data, Mapping):
        raise WorkloadError(
            f"{source}: a workload file must hold a mapping, got {type(data).__name__}"
        )
    _check_fields(data, source, OMB_FIELDS | EXTENSION_FIELDS)
    merged: dict[str, Any] = {k: v for k, v in data.items() if k != "quick"}
    overrides = data.get("quick", {})
    if not isinstance(overrides, Mapping):
        raise WorkloadError(f"{source}: field 'quick' must be a mapping of overrides")
    _check_fields(
        overrides, f"{source} (quick)", (OMB_FIELDS | EXTENSION_FIELDS) - {"quick", "name"}
    )
    if quick:
        merged.update(overrides)

    if "name" in merged and _need(merged, "name", str, source) != name:
        raise WorkloadError(
            f"{source}: name {merged['name']!r} differs from the file name {name!r}"
        )
    if "scenario" not in merged:
        raise WorkloadError(
            f"{source}: field 'scenario' is required (one of {', '.join(SCENARIOS)})"
        )
    scenario = _need(merged, "scenario", str, source)
    if scenario not in SCENARIOS:
        raise WorkloadError(f"{source}: scenario {scenario!r} is not one of {', '.join(SCENARIOS)}")

    # Seconds win over OMB's minutes: the whole point here is runs of seconds.
    duration = _number(merged, "testDurationMinutes", 1.0, source) * 60.0
    duration = _number(merged, "testDurationSeconds", duration, source)
    warmup = _number(merged, "warmupDurationMinutes", 0.0, source) * 60.0
    warmup = _number(merged, "warmupDurationSeconds", warmup, source)

    relative = merged.get("producerRateRelativeTo")
    if relative is not None:
        relative = _need(merged, "producerRateRelativeTo", str, source)

    workload = Workload(
        name=name,
        scenario=scenario,
        topics=_integer(merged, "topics", 1, source),
        partitions_per_topic=_integer(merged, "partitionsPerTopic", 1, source),
        message_size=_integer(merged, "messageSize", 1024, source),
        subscriptions_per_topic=_integer(merged, "subscriptionsPerTopic", 1, source),
        producers_per_topic=_integer(merged, "producersPerTopic", 1, source),
        consumer_per_subscription=_integer(merged, "consumerPerSubscription", 1, source),
        producer_rate=_number(merged, "producerRate", 0.0, source),
        consumer_backlog_size_gb=_number(merged, "consumerBacklogSizeGB", 0.0, source),
        duration_s=duration,
        warmup_s=warmup,
        replication_factor=_integer(merged, "replicationFactor", 3, source),
        producer_rate_relative_to=relative,
        producer_rate_fraction=_number(merged, "producerRateFraction", 1.0, source),
        max_in_flight=_integer(merged, "maxInFlight", 1000, source),
        failover_trials=_integer(merged, "failoverTrials", 10, source),
        load_generator=_need(merged, "loadGenerator", str, source)
        if "loadGenerator" in merged
        else "python",
        description=str(merged.get("description", "")),
        source=source,
    )
    validate(workload)
    return workload


def validate(w: Workload) -> None:
    """Reject a workload whose fields contradict each other or its scenario."""
    src = w.source

    def fail(message: str) -> None:
        raise WorkloadError(f"{src}: {message}")

    if w.topics < 1:
        fail(f"topics must be >= 1, got {w.topics}")
    if w.partitions_per_topic < 1:
        fail(f"partitionsPerTopic must be >= 1, got {w.partitions_per_topic}")
    if not HEADER_SIZE <= w.message_size <= MAX_MESSAGE_SIZE:
        fail(
            f"messageSize must be within [{HEADER_SIZE}, {MAX_MESSAGE_SIZE}] "
            f"(the payload carries a {HEADER_SIZE}-byte timestamp header), got {w.message_size}"
        )
    if w.replication_factor < 1:
        fail(f"replicationFactor must be >= 1, got {w.replication_factor}")
    if w.producer_rate < 0:
        fail(f"producerRate must be >= 0 (0 = max rate), got {w.producer_rate}")
    if (
        w.producers_per_topic < 0
        or w.consumer_per_subscription < 0
        or w.subscriptions_per_topic < 0
    ):
        fail("producersPerTopic, consumerPerSubscription and subscriptionsPerTopic must be >= 0")
    if w.duration_s <= 0:
        fail(f"the test duration must be positive, got {w.duration_s}s")
    if w.warmup_s < 0:
        fail(f"the warm-up duration must be >= 0, got {w.warmup_s}s")
    if w.max_in_flight < 1:
        fail(f"maxInFlight must be >= 1, got {w.max_in_flight}")
    if w.consumer_backlog_size_gb < 0:
        fail(f"consumerBacklogSizeGB must be >= 0, got {w.consumer_backlog_size_gb}")

    producing = w.scenario in ("max-rate", "fixed-rate", "backlog", "failover")
    if producing and w.producers_per_topic < 1:
        fail(f"scenario {w.scenario} needs producersPerTopic >= 1")
    if w.load_generator not in LOAD_GENERATORS:
        fail(f"loadGenerator {w.load_generator!r} is not one of {', '.join(LOAD_GENERATORS)}")
    if w.load_generator == "go-lone":
        _validate_go_lone(w, fail)
    elif w.native:
        _validate_native(w, fail)
    elif w.scenario in ("max-rate", "fixed-rate", "backlog") and (
        w.consumer_per_subscription < 1 or w.subscriptions_per_topic < 1
    ):
        fail(f"scenario {w.scenario} needs at least one consumer")
    if w.scenario == "max-rate" and w.producer_rate != 0:
        fail(f"scenario max-rate needs producerRate: 0, got {w.producer_rate}")
    if w.scenario == "fixed-rate":
        if w.producer_rate_relative_to is None and w.producer_rate <= 0:
            fail("scenario fixed-rate needs producerRate > 0 or producerRateRelativeTo")
        if not 0 < w.producer_rate_fraction <= 1:
            fail(f"producerRateFraction must be within (0, 1], got {w.producer_rate_fraction}")
    elif w.producer_rate_relative_to is not None:
        fail("producerRateRelativeTo only makes sense for scenario fixed-rate")
    if w.scenario == "backlog" and w.backlog_bytes < w.message_size:
        fail("scenario backlog needs consumerBacklogSizeGB of at least one message")
    if w.scenario != "backlog" and w.consumer_backlog_size_gb > 0:
        fail("consumerBacklogSizeGB only makes sense for scenario backlog")
    if w.scenario == "idle" and (w.producers_per_topic != 0 or w.consumer_per_subscription != 0):
        fail("scenario idle needs producersPerTopic: 0 and consumerPerSubscription: 0")
    if w.scenario == "failover":
        if w.failover_trials < 1:
            fail(f"failoverTrials must be >= 1, got {w.failover_trials}")
        if w.replication_factor < 3:
            fail("scenario failover needs replicationFactor >= 3 (a leader must be able to die)")


def _validate_native(w: Workload, fail: Any) -> None:
    """What one ProducerPerformance (and one ConsumerPerformance) process can run."""
    if w.scenario not in NATIVE_SCENARIOS:
        fail(f"loadGenerator {w.load_generator} runs {', '.join(NATIVE_SCENARIOS)}, not {w.scenario}")
    if w.topics != 1 or w.producers_per_topic != 1:
        fail(f"loadGenerator {w.load_generator} runs one producer on one topic")
    if w.scenario == "backlog":
        if w.subscriptions_per_topic != 1 or w.consumer_per_subscription != 1:
            fail(f"loadGenerator {w.load_generator} reads a backlog with one consumer")
    elif w.subscriptions_per_topic != 0 or w.consumer_per_subscription != 0:
        fail(
            f"loadGenerator {w.load_generator} only produces in {w.scenario}: "
            "subscriptionsPerTopic and consumerPerSubscription must be 0"
        )


def _validate_go_lone(w: Workload, fail: Any) -> None:
    """What golat runs: one producer, one record in flight, to partition 0, nothing else."""
    if w.scenario != "max-rate":
        fail(f"loadGenerator go-lone runs max-rate (one record in flight), not {w.scenario}")
    if w.max_in_flight != 1:
        fail(f"loadGenerator go-lone keeps one record in flight: maxInFlight must be 1, got {w.max_in_flight}")
    if w.topics != 1 or w.partitions_per_topic != 1 or w.producers_per_topic != 1:
        fail("loadGenerator go-lone runs one producer on one topic of one partition")
    if w.subscriptions_per_topic != 0 or w.consumer_per_subscription != 0:
        fail(
            "loadGenerator go-lone only produces: "
            "subscriptionsPerTopic and consumerPerSubscription must be 0"
        )


def read_mapping(path: Path) -> Any:
    """Parse a workload file: YAML (as OMB's) or JSON, chosen by its suffix."""
    text = path.read_text()
    if path.suffix == ".json":
        return json.loads(text)
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise WorkloadError(
                f"{path}: reading YAML needs PyYAML (pip install pyyaml, or `make bench`)"
            ) from exc
        return yaml.safe_load(text)
    raise WorkloadError(f"{path}: a workload file ends in .yaml, .yml or .json")


def load_workload(path: Path, *, quick: bool = False) -> Workload:
    return parse_workload(read_mapping(path), name=path.stem, source=str(path), quick=quick)


def workload_files(directory: Path = WORKLOAD_DIR) -> dict[str, Path]:
    files = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    return {p.stem: p for p in files}


def load_workloads(
    names: Iterable[str] | None = None, *, quick: bool = False, directory: Path = WORKLOAD_DIR
) -> list[Workload]:
    """Load the named workloads (all of them by default) in run order.

    Run order is by scenario (the order of :data:`SCENARIOS`), then by name: a
    fixed-rate workload defined relative to a max-rate one
    (``producerRateRelativeTo``) so runs after it, and the many-partition idle
    workload comes last, where its thousand partitions bother no other run. The
    referenced max-rate workload is pulled in if it was not named, since half of
    an unmeasured rate is no rate at all.
    """
    available = workload_files(directory)
    wanted = list(available) if names is None else list(names)
    missing = [n for n in wanted if n not in available]
    if missing:
        raise WorkloadError(
            f"unknown workload(s) {', '.join(missing)}; available: {', '.join(available)}"
        )
    loaded: dict[str, Workload] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if name in loaded:
            return
        if name not in available:
            raise WorkloadError(
                f"{chain[-1]}: producerRateRelativeTo names unknown workload {name!r}"
            )
        workload = load_workload(available[name], quick=quick)
        loaded[name] = workload
        ref = workload.producer_rate_relative_to
        if ref is not None:
            visit(ref, (*chain, name))
            if loaded[ref].scenario != "max-rate":
                raise WorkloadError(
                    f"{workload.source}: producerRateRelativeTo must name a max-rate workload, "
                    f"{ref!r} is {loaded[ref].scenario}"
                )

    for name in wanted:
        visit(name, ())
    return sorted(loaded.values(), key=lambda w: (SCENARIOS.index(w.scenario), w.name))

"""The Go lone-produce load generator's Python side: workload, result parsing, wiring.

golat itself is Go (``benchmarks/native/golat``, built by ``make golat``); these tests
need no Go toolchain and no server. A stand-in script that prints what golat prints
checks that the runner passes the right command line and brackets the servers' CPU
with golat's measured window.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from benchmarks.omb import golat
from benchmarks.omb.golat import (
    GolatError,
    golat_args,
    golat_client_name,
    golat_metrics,
    golat_mode,
    module_versions,
    parse_golat_output,
    run_go_lone,
)
from benchmarks.omb.procs import ToolExit
from benchmarks.omb.report import render_summary
from benchmarks.omb.stats import CpuUsage
from benchmarks.omb.workload import WorkloadError, load_workloads, parse_workload

GO_LONE: dict[str, Any] = {
    "scenario": "max-rate",
    "loadGenerator": "go-lone",
    "topics": 1,
    "partitionsPerTopic": 1,
    "replicationFactor": 3,
    "messageSize": 1024,
    "subscriptionsPerTopic": 0,
    "consumerPerSubscription": 0,
    "producersPerTopic": 1,
    "producerRate": 0,
    "maxInFlight": 1,
    "testDurationSeconds": 15,
    "warmupDurationSeconds": 3,
}


def go_lone(**fields: Any) -> Any:
    return parse_workload({**GO_LONE, **fields}, name="w", source="w.yaml")


RESULT = {
    "mode": "kafka", "records": 4000, "errors": 0, "seconds": 2.0, "rate": 2000.0,
    "latency_ms": {"p50": 0.412, "p99": 1.25, "p99.9": 3.5, "max": 7.0, "mean": 0.5},
    "warmup_records": 900, "cpu_seconds": 1.5, "measured_cpu_seconds": 0.5, "size": 1024,
    "truncated": False,
}  # fmt: skip


# --- the workload -----------------------------------------------------------------------


def test_shipped_go_lone_workload_is_one_record_in_flight_to_one_r3_partition() -> None:
    for quick in (False, True):
        w = next(w for w in load_workloads(quick=quick)
                 if w.name == "native-lone-produce-1-topic-1-partition-1kb")  # fmt: skip
        assert (w.load_generator, w.scenario, w.native) == ("go-lone", "max-rate", True)
        assert (w.topics, w.partitions_per_topic, w.replication_factor) == (1, 1, 3)
        assert (w.max_in_flight, w.message_size, w.consumer_per_subscription) == (1, 1024, 0)
    assert w.duration_s < 15  # the quick overrides apply


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"maxInFlight": 1000}, "maxInFlight must be 1"),
        ({"partitionsPerTopic": 6}, "one topic of one partition"),
        ({"topics": 2}, "one topic of one partition"),
        ({"producersPerTopic": 2}, "one topic of one partition"),
        ({"subscriptionsPerTopic": 1, "consumerPerSubscription": 1}, "only produces"),
        ({"scenario": "fixed-rate", "producerRate": 5000}, "runs max-rate"),
        ({"loadGenerator": "go-many"}, "is not one of python, kafka-perf, go-lone"),
    ],
)
def test_go_lone_workloads_that_golat_cannot_run_are_rejected(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(WorkloadError, match=message):
        go_lone(**fields)
    assert go_lone().load_generator == "go-lone"


# --- golat's output ---------------------------------------------------------------------


def test_result_is_the_json_line_after_the_measured_marker() -> None:
    lines = ["golat: measuring", "golat: measured", json.dumps(RESULT)]
    r = parse_golat_output(lines)
    assert (r.mode, r.records, r.errors, r.rate, r.size) == ("kafka", 4000, 0, 2000.0, 1024)
    assert r.latency_ms == {"p50": 0.412, "p99": 1.25, "p99.9": 3.5, "max": 7.0, "mean": 0.5}
    assert (r.cpu_seconds, r.measured_cpu_seconds, r.warmup_records) == (1.5, 0.5, 900)


def test_a_json_line_before_the_measured_window_is_not_the_result() -> None:
    with pytest.raises(GolatError, match="never measured"):
        parse_golat_output([json.dumps(RESULT), "golat: measuring"])


@pytest.mark.parametrize(
    ("last", "message"),
    [
        ("{not json", "not JSON"),
        (json.dumps({**RESULT, "latency_ms": {"p50": 1.0}}), "lacks or garbles"),
        (json.dumps({k: v for k, v in RESULT.items() if k != "records"}), "lacks or garbles"),
        (json.dumps({**RESULT, "records": 0}), "no acknowledged record"),
        (json.dumps([1, 2]), "not an object"),
    ],
)
def test_a_broken_result_is_an_error_not_a_row_of_zeros(last: str, message: str) -> None:
    with pytest.raises(GolatError, match=message):
        parse_golat_output(["golat: measuring", "golat: measured", last])
    with pytest.raises(GolatError, match="no result line"):
        parse_golat_output(["golat: measuring", "golat: measured"])


def test_metrics_put_golat_figures_under_the_max_rate_keys() -> None:
    r = parse_golat_output(["golat: measured", json.dumps(RESULT)])
    usage = CpuUsage(window_s=2.0, server_seconds_by_label={"n1": 1.0, "n2": 0.5},
                     server_seconds=1.5, client_seconds=99.0)  # fmt: skip
    run = ToolExit(returncode=0, stdout=[], user_s=1.0, system_s=0.6, wall_s=6.0)
    m = golat_metrics(r, usage, run)
    mib = 4000 * 1024 / (1 << 20)
    assert m["publish_rate_msgs"] == 2000.0
    assert m["publish_latency_ms"]["p50"] == 0.412 and m["publish_latency_ms"]["avg"] == 0.5
    assert (m["acked"], m["failed"], m["end_to_end_latency_ms"]) == (4000, 0, None)
    assert m["server_cpu_ms_per_mib"] == pytest.approx(1000 * 1.5 / mib)
    # The load generator is golat over the measured window, never the runner's process.
    assert m["client_cpu_percent"] == pytest.approx(25.0)
    assert m["client_cpu_seconds_total"] == pytest.approx(1.6)


# --- which client, which command line -----------------------------------------------------


class _Driver:
    name = "fake"
    speaks_kafka = False
    speaks_jetstream = False


def test_mode_follows_what_the_system_speaks() -> None:
    kafka, nats, neither = _Driver(), _Driver(), _Driver()
    kafka.speaks_kafka = True
    nats.speaks_jetstream = True
    assert [golat_mode(d) for d in (kafka, nats, neither)] == ["kafka", "jetstream", None]  # type: ignore[arg-type]


def test_client_names_the_go_library_pinned_in_go_mod() -> None:
    versions = module_versions()
    assert versions["github.com/twmb/franz-go"] == "v1.22.3"
    assert versions["github.com/nats-io/nats.go"] == "v1.56.0"
    assert golat_client_name("kafka") == "golat (Go, franz-go v1.22.3)"
    assert golat_client_name("jetstream") == "golat (Go, nats.go v1.56.0)"


def test_command_lines() -> None:
    assert golat_args("kafka", address="127.0.0.1:9092", destination="t", size=1024,
                      warmup_s=3, duration_s=15) == [
        "--mode", "kafka", "--bootstrap", "127.0.0.1:9092", "--topic", "t", "--partition", "0",
        "--size", "1024", "--warmup", "3s", "--duration", "15s", "--timeout", "10s",
    ]  # fmt: skip
    js = golat_args("jetstream", address="nats://a:1,nats://b:2", destination="t.0", size=100,
                    warmup_s=0.5, duration_s=2)  # fmt: skip
    assert js[:5] == ["--mode", "jetstream", "--servers", "nats://a:1,nats://b:2", "--subject"]
    assert js[5:9] == ["t.0", "--size", "100", "--warmup"] and js[9] == "0.5s"
    with pytest.raises(ValueError, match="no mode"):
        golat_args("redis", address="x", destination="y", size=1, warmup_s=0, duration_s=1)


def test_the_nats_driver_gives_golat_its_servers_and_the_partition_subject() -> None:
    from benchmarks.omb.drivers import DRIVERS

    nats, redis = DRIVERS["nats-jetstream"](), DRIVERS["redis-aof-always"]()
    assert (nats.speaks_jetstream, nats.jetstream_servers()) == (True, None)  # not started
    nats.client_ports = [4222, 4223]  # type: ignore[attr-defined]
    assert nats.jetstream_servers() == "nats://127.0.0.1:4222,nats://127.0.0.1:4223"
    assert nats.jetstream_subject("topic", 0) == "topic.0"
    assert (redis.speaks_jetstream, golat_mode(redis)) == (False, None)


def test_runner_marks_go_lone_n_a_only_where_golat_has_no_client() -> None:
    from benchmarks.omb.run import _not_applicable

    w = go_lone()
    kafka, nats, neither = _Driver(), _Driver(), _Driver()
    kafka.speaks_kafka = True
    nats.speaks_jetstream = True
    assert _not_applicable(w, kafka) is None  # type: ignore[arg-type]
    assert _not_applicable(w, nats) is None  # type: ignore[arg-type]
    assert "nor JetStream" in (_not_applicable(w, neither) or "")  # type: ignore[arg-type]


def test_summary_shows_the_go_client_p50_and_p99() -> None:
    systems = [{"name": n, "client": "c", "server_version": "v", "durability": "d", "status": "ran"}
               for n in ("strata-never", "strata-kafka", "nats-jetstream")]  # fmt: skip
    lat = {"p50": 0.3456, "p99": 1.5}
    results = [
        {"system": "strata-never", "workload": "native-lone-produce-1-topic-1-partition-1kb",
         "status": "n/a", "metrics": {}},
        {"system": "strata-kafka", "workload": "native-lone-produce-1-topic-1-partition-1kb",
         "status": "ok", "metrics": {"publish_latency_ms": lat}},
    ]  # fmt: skip
    table = render_summary(
        [{"name": "native-lone-produce-1-topic-1-partition-1kb"}], systems, results
    )
    p50 = next(ln for ln in table.splitlines() if "Go client: publish p50" in ln)
    assert [c.strip() for c in p50.strip("|").split("|")][1:] == ["n/a", "0.346", "not run"]
    assert "Go client: publish p99 (ms) ↓ | n/a | 1.500 |" in table


# --- the runner against a stand-in golat ------------------------------------------------


class _KafkaDriver(_Driver):
    """A Kafka-speaking system whose 'server' is this test process."""

    speaks_kafka = True

    def __init__(self) -> None:
        self.created: list[tuple[str, int, int]] = []

    async def create_topic(self, topic: str, partitions: int, replicas: int) -> None:
        self.created.append((topic, partitions, replicas))

    def kafka_bootstrap(self) -> str:
        return "127.0.0.1:9"

    def server_pids(self) -> dict[str, int]:
        return {"self": os.getpid()}


def test_run_go_lone_passes_the_target_and_brackets_the_measured_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv_file = tmp_path / "argv"
    fake = tmp_path / "golat"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" > {argv_file}\n'
        "echo 'golat: measuring'\n"
        "echo 'golat: measured'\n"
        f"echo '{json.dumps(RESULT)}'\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(golat, "GOLAT_BINARY", fake)
    driver = _KafkaDriver()
    progress: list[str] = []
    metrics = asyncio.run(
        run_go_lone(driver, go_lone(), progress.append, workdir=tmp_path / "tool")  # type: ignore[arg-type]
    )
    assert [c[1:] for c in driver.created] == [(1, 3)]
    args = argv_file.read_text().split()
    assert args[:4] == ["--mode", "kafka", "--bootstrap", "127.0.0.1:9"]
    assert args[args.index("--topic") + 1] == driver.created[0][0]
    assert metrics["publish_latency_ms"]["p99"] == 1.25
    assert metrics["server_cpu_seconds"] is not None  # sampled between the two markers
    assert progress == ["warm-up done: measuring"]


def test_run_go_lone_says_how_to_build_a_missing_golat(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(golat, "GOLAT_BINARY", tmp_path / "absent")
    with pytest.raises(GolatError, match="make golat"):
        asyncio.run(run_go_lone(_KafkaDriver(), go_lone(), print, workdir=tmp_path))  # type: ignore[arg-type]


def test_run_go_lone_reports_golat_failing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "golat"
    fake.write_text("#!/bin/sh\necho 'golat: more than 100 failed sends' >&2\nexit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setattr(golat, "GOLAT_BINARY", fake)
    with pytest.raises(GolatError, match="exited with 1(.|\n)*more than 100 failed sends"):
        asyncio.run(run_go_lone(_KafkaDriver(), go_lone(), print, workdir=tmp_path / "t"))  # type: ignore[arg-type]


def test_results_name_suffix_is_checked_as_part_of_a_path() -> None:
    from benchmarks.omb.run import parse_args

    assert parse_args(["--name", "lone"]).name == "lone"
    assert parse_args([]).name is None
    with pytest.raises(SystemExit):
        parse_args(["--name", "../escape"])

"""Unit tests of the benchmark framework's pure parts: no servers, no clocks, no sockets.

The figures the benchmark publishes are only as good as the arithmetic under
them: workload files must mean what they say, percentiles must not
under-report, and publish-delay must expose a stalled producer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks.omb.drivers import resolve
from benchmarks.omb.loopback import parse_iperf3_json
from benchmarks.omb.payload import HEADER_SIZE, PayloadFactory, header, send_time_ns
from benchmarks.omb.report import FIGURES, ratio, render_markdown, render_workload_table
from benchmarks.omb.scenarios import split_partitions
from benchmarks.omb.stats import (
    LatencyHistogram,
    SendSchedule,
    cpu_percent,
    median,
    parse_proc_stat_cpu_ticks,
)
from benchmarks.omb.workload import (
    WORKLOAD_DIR,
    WorkloadError,
    load_workloads,
    parse_workload,
    workload_files,
)

# --- workload files -------------------------------------------------------------------

BASE: dict[str, Any] = {
    "scenario": "max-rate",
    "topics": 1,
    "partitionsPerTopic": 6,
    "messageSize": 1024,
    "subscriptionsPerTopic": 1,
    "consumerPerSubscription": 1,
    "producersPerTopic": 1,
    "producerRate": 0,
    "consumerBacklogSizeGB": 0,
    "testDurationMinutes": 1,
    "warmupDurationMinutes": 0,
}


def parse(quick_mode: bool = False, **fields: Any) -> Any:
    return parse_workload({**BASE, **fields}, name="w", source="w.yaml", quick=quick_mode)


def test_shipped_workloads_load_in_both_modes() -> None:
    for quick in (False, True):
        workloads = load_workloads(quick=quick)
        assert {w.name for w in workloads} == set(workload_files())
        scenarios = {w.scenario for w in workloads}
        assert scenarios == {"max-rate", "fixed-rate", "backlog", "idle", "failover"}


def test_shipped_workloads_cover_the_issue() -> None:
    by_name = {w.name: w for w in load_workloads()}
    one_kb = by_name["max-rate-1-topic-6-partitions-1kb"]
    assert (one_kb.partitions_per_topic, one_kb.message_size, one_kb.replication_factor) == (
        6,
        1024,
        3,
    )
    assert by_name["max-rate-1-topic-6-partitions-100b"].message_size == 100
    half = by_name["1-topic-6-partitions-1kb"]
    assert half.producer_rate_relative_to == one_kb.name and half.producer_rate_fraction == 0.5
    assert by_name["backlog-1-topic-6-partitions-1kb"].backlog_bytes == 1 << 30
    assert by_name["1-topic-1000-partitions-idle"].total_partitions == 1000
    assert by_name["leader-failover-1-topic-1-partition"].failover_trials == 10


def test_quick_overrides_shrink_the_same_workload() -> None:
    full = parse(testDurationSeconds=30, quick={"testDurationSeconds": 4, "partitionsPerTopic": 2})
    quick = parse(
        True, testDurationSeconds=30, quick={"testDurationSeconds": 4, "partitionsPerTopic": 2}
    )
    assert (full.duration_s, full.partitions_per_topic) == (30, 6)
    assert (quick.duration_s, quick.partitions_per_topic) == (4, 2)


def test_minutes_are_omb_fields_and_seconds_win() -> None:
    assert parse().duration_s == 60
    assert parse(testDurationMinutes=2, warmupDurationMinutes=0.5).warmup_s == 30
    assert parse(testDurationMinutes=15, testDurationSeconds=20).duration_s == 20


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"partitionPerTopic": 6}, "unknown field"),
        ({"partitionsPerTopic": True}, "must be int"),
        ({"partitionsPerTopic": 0}, "partitionsPerTopic must be >= 1"),
        ({"messageSize": 8}, "messageSize must be within"),
        ({"producerRate": 500}, "max-rate needs producerRate: 0"),
        ({"scenario": "fixed-rate"}, "producerRate > 0 or producerRateRelativeTo"),
        (
            {"scenario": "fixed-rate", "producerRate": 10, "producerRateFraction": 1.5},
            "within (0, 1]",
        ),
        ({"scenario": "backlog"}, "consumerBacklogSizeGB"),
        ({"consumerBacklogSizeGB": 1}, "only makes sense for scenario backlog"),
        ({"scenario": "idle"}, "producersPerTopic: 0"),
        ({"scenario": "failover", "replicationFactor": 1}, "replicationFactor >= 3"),
        ({"scenario": "nap"}, "is not one of"),
        ({"name": "other"}, "differs from the file name"),
        ({"testDurationSeconds": 0}, "duration must be positive"),
        ({"quick": {"bogus": 1}}, "unknown field"),
    ],
)
def test_invalid_workloads_say_what_is_wrong(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(WorkloadError) as err:
        parse(**fields)
    assert message in str(err.value)
    assert "w.yaml" in str(err.value)


def test_scenario_is_required() -> None:
    data = {k: v for k, v in BASE.items() if k != "scenario"}
    with pytest.raises(WorkloadError, match="'scenario' is required"):
        parse_workload(data, name="w", source="w.yaml")


def write(directory: Path, name: str, **fields: Any) -> None:
    (directory / f"{name}.json").write_text(json.dumps({**BASE, **fields}))


def test_load_orders_by_scenario_and_pulls_in_the_rate_reference(tmp_path: Path) -> None:
    write(tmp_path, "a-idle", scenario="idle", producersPerTopic=0, consumerPerSubscription=0)
    write(tmp_path, "b-max")
    write(
        tmp_path,
        "c-half",
        scenario="fixed-rate",
        producerRateRelativeTo="b-max",
        producerRateFraction=0.5,
    )
    names = [w.name for w in load_workloads(["a-idle", "c-half"], directory=tmp_path)]
    assert names == ["b-max", "c-half", "a-idle"]


def test_rate_reference_must_be_a_known_max_rate_workload(tmp_path: Path) -> None:
    write(tmp_path, "f1", scenario="fixed-rate", producerRateRelativeTo="f2")
    write(tmp_path, "f2", scenario="fixed-rate", producerRateRelativeTo="f1")
    write(tmp_path, "f3", scenario="fixed-rate", producerRateRelativeTo="missing")
    with pytest.raises(WorkloadError, match="must name a max-rate workload"):
        load_workloads(["f1"], directory=tmp_path)
    with pytest.raises(WorkloadError, match="unknown workload 'missing'"):
        load_workloads(["f3"], directory=tmp_path)
    with pytest.raises(WorkloadError, match="unknown workload"):
        load_workloads(["nope"], directory=tmp_path)


def test_workload_dir_is_the_shipped_one() -> None:
    assert WORKLOAD_DIR.name == "workloads" and WORKLOAD_DIR.parent.name == "benchmarks"


# --- histogram and percentiles -----------------------------------------------------------


def test_small_values_are_exact() -> None:
    h = LatencyHistogram()
    for v in range(1, 101):
        h.record(v)
    assert h.percentile_us(50) == 50
    assert h.percentile_us(99) == 99
    assert h.percentile_us(100) == 100
    assert h.percentile_us(0) == 1


def test_large_values_never_under_report_and_stay_within_one_percent() -> None:
    h = LatencyHistogram()
    values = [1000 + 37 * i for i in range(10_000)]
    for v in values:
        h.record(v)
    ordered = sorted(values)
    for pct in (50.0, 99.0, 99.9, 99.99):
        true = ordered[max(0, -(-int(pct * 100) * len(values) // 10_000) - 1)]
        got = h.percentile_us(pct)
        assert true <= got <= true * 1.01, (pct, true, got)
    assert h.summary_ms() is not None
    assert h.summary_ms()["max"] == max(values) / 1000  # type: ignore[index]


def test_summary_has_omb_percentiles_and_exact_max() -> None:
    h = LatencyHistogram()
    for _ in range(9999):
        h.record(1000)
    h.record(250_000)
    s = h.summary_ms()
    assert s is not None
    assert list(s) == ["p50", "p99", "p99.9", "p99.99", "max"]
    assert s["p50"] == pytest.approx(1.0, rel=0.01)
    assert s["p99.99"] == pytest.approx(1.0, rel=0.01)  # 1 sample in 10,000 is above p99.99
    assert s["max"] == 250.0


def test_empty_merge_reset_and_bounds() -> None:
    h = LatencyHistogram()
    assert h.summary_ms() is None
    with pytest.raises(ValueError):
        h.percentile_us(50)
    h.record(-5)  # a clock step is clamped, not a crash
    other = LatencyHistogram()
    other.record(2000)
    h.merge(other)
    assert h.total == 2 and h.max_us == 2000
    with pytest.raises(ValueError):
        h.percentile_us(101)
    h.reset()
    assert h.total == 0 and h.summary_ms() is None


# --- publish delay against a schedule ------------------------------------------------------

MS = 1_000_000


def test_schedule_due_times() -> None:
    s = SendSchedule(rate_per_s=1000, start_ns=5 * MS)
    assert s.due_ns(0) == 5 * MS
    assert s.due_ns(10) == 15 * MS
    assert s.due_count(4 * MS) == 0
    assert s.due_count(5 * MS) == 1
    assert s.due_count(15 * MS) == 11
    assert s.delay_ns(10, 14 * MS) == 0  # early is not negative delay
    assert s.delay_ns(10, 17 * MS) == 2 * MS


def test_publish_delay_exposes_a_stall_that_publish_latency_hides() -> None:
    """A producer at 1,000/s stalls for 100 ms, then sends what was due at once.

    Every ack comes 1 ms after its send, so publish latency is flat; the sends
    due during the stall started up to 100 ms late, and publish delay says so.
    """
    s = SendSchedule(rate_per_s=1000, start_ns=0)
    delay, latency = LatencyHistogram(), LatencyHistogram()
    now = 0
    for i in range(1000):
        due = s.due_ns(i)
        if i == 500:
            now = due + 100 * MS  # the stall
        now = max(now, due)
        delay.record_ns(s.delay_ns(i, now))
        latency.record_ns(1 * MS)
    d, lat = delay.summary_ms(), latency.summary_ms()
    assert d is not None and lat is not None
    assert lat["max"] == 1.0 and lat["p99.9"] <= 1.01
    assert d["max"] == 100.0
    assert d["p50"] == 0.0
    assert 90.0 <= d["p99"] <= 100.0  # the ~100 sends due during the stall are the top 10 %


def test_unlimited_schedule_has_no_delay() -> None:
    s = SendSchedule(rate_per_s=0, start_ns=0)
    assert s.unlimited and s.delay_ns(10**6, 10**12) == 0
    with pytest.raises(ValueError):
        s.due_count(1)
    with pytest.raises(ValueError):
        SendSchedule(rate_per_s=-1, start_ns=0)


def test_median() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 2.0, 3.0]) == 2.5
    with pytest.raises(ValueError):
        median([])


# --- CPU from /proc/<pid>/stat -------------------------------------------------------------


def test_proc_stat_parsing_survives_odd_command_names() -> None:
    fields = ["S", "1", "2", "3", "0", "-1", "4194560", "10", "0", "0", "0", "250", "50"]
    line = "1234 (nats (srv) x) " + " ".join(fields) + " 0 0 20 0 5 0 100 2000000 300"
    assert parse_proc_stat_cpu_ticks(line) == 300


def test_cpu_percent_of_one_core() -> None:
    usage = cpu_percent({1: 100, 2: 0, 3: 7}, {1: 150, 2: 200}, window_s=2.0, ticks_per_s=100)
    assert usage == {1: 25.0, 2: 100.0}  # pid 3 died during the window: not reported
    with pytest.raises(ValueError):
        cpu_percent({}, {}, 0)


# --- payload, partition split, drivers, iperf3 -------------------------------------------------


def test_payload_carries_its_send_time() -> None:
    factory = PayloadFactory(100)
    payload = factory.make(123_456_789, 7, 42)
    assert len(payload) == 100
    assert send_time_ns(payload) == 123_456_789
    assert header(payload) == (123_456_789, 7, 42)
    with pytest.raises(ValueError):
        PayloadFactory(HEADER_SIZE - 1)


def test_partitions_split_round_robin_over_consumers() -> None:
    assert split_partitions(6, 1) == [[0, 1, 2, 3, 4, 5]]
    assert split_partitions(6, 4) == [[0, 4], [1, 5], [2], [3]]
    assert split_partitions(2, 3) == [[0], [1]]


def test_driver_aliases() -> None:
    assert resolve(["redis"]) == ["redis-aof-always", "redis-aof-everysec"]
    assert resolve(["nats", "strata"]) == ["strata-always", "strata-never", "nats-jetstream"]
    assert resolve(None)[0] == "strata-always"
    assert resolve(["kafka", "strata-never"]) == ["strata-never", "apache-kafka"]
    assert "apache-kafka" in resolve(["peers"])
    with pytest.raises(ValueError, match="unknown driver"):
        resolve(["kafka-2"])


def test_iperf3_json() -> None:
    good = {"end": {"sum_received": {"bits_per_second": 2.5e10}}}
    assert parse_iperf3_json(json.dumps(good)) == 2.5e10
    with pytest.raises(RuntimeError, match="refused"):
        parse_iperf3_json(json.dumps({"error": "unable to connect to server: Connection refused"}))


# --- ratio tables --------------------------------------------------------------------------


def system(name: str, client: str, status: str = "ran") -> dict[str, Any]:
    return {"name": name, "client": client, "server_version": "v", "durability": "d", "status": status,
            "reason": None if status == "ran" else "Strata driver arrives with the cluster issue"}  # fmt: skip


def steady(system_name: str, rate: float, p99: float, status: str = "ok") -> dict[str, Any]:
    summary = {"p50": p99 / 2, "p99": p99, "p99.9": p99, "p99.99": p99, "max": p99}
    return {
        "system": system_name,
        "workload": "w",
        "scenario": "max-rate",
        "client": "c",
        "status": status,
        "reason": None,
        "metrics": {} if status != "ok" else {
            "publish_rate_msgs": rate, "publish_rate_mib": rate / 1024, "consume_rate_msgs": rate,
            "publish_latency_ms": summary, "publish_delay_ms": None, "end_to_end_latency_ms": summary,
        },
    }  # fmt: skip


def row(table: str, label: str) -> list[str]:
    line = next(ln for ln in table.splitlines() if ln.startswith(f"| {label}"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_ratio() -> None:
    assert ratio(10.0, 5.0) == 2.0
    assert ratio(None, 5.0) is None
    assert ratio(1.0, 0.0) is None
    assert ratio(1.0, None) is None


def test_table_shows_clients_and_strata_ratios() -> None:
    systems = [system("strata", "strata client"), system("nats-jetstream", "nats-py 2.16.0"),
               system("redis-aof-always", "redis-py 8.1.0")]  # fmt: skip
    results = [steady("strata", 20_000, 4.0), steady("nats-jetstream", 10_000, 8.0),
               steady("redis-aof-always", 40_000, 2.0)]  # fmt: skip
    table = render_workload_table("w", "max-rate", systems, results)
    head = table.splitlines()[0]
    assert "nats-jetstream<br>(nats-py 2.16.0)" in head and "strata<br>(strata client)" in head
    assert "strata ÷ nats-jetstream" in head and "strata ÷ redis-aof-always" in head
    assert row(table, "publish rate (msg/s) ↑") == ["publish rate (msg/s) ↑", "20,000", "10,000",
                                                    "40,000", "2.00×", "0.50×"]  # fmt: skip
    assert row(table, "end-to-end p99 (ms) ↓")[-2:] == ["0.50×", "2.00×"]
    assert not any("publish delay" in line for line in table.splitlines())  # max rate: no schedule
    assert len(table.splitlines()) == 2 + len(FIGURES["max-rate"])


def test_fixed_rate_table_shows_publish_delay() -> None:
    systems = [system("nats-jetstream", "nats-py")]
    result = steady("nats-jetstream", 5_000, 8.0)
    result["scenario"] = "fixed-rate"
    result["metrics"]["publish_delay_ms"] = {
        "p50": 0.1,
        "p99": 3.0,
        "p99.9": 9.0,
        "p99.99": 9.5,
        "max": 12.0,
    }
    table = render_workload_table("w", "fixed-rate", systems, [result])
    assert row(table, "publish delay p99 (ms) ↓")[1:] == ["3.00"]
    assert row(table, "target rate (msg/s) ↑")[1:] == ["–"]


def test_table_without_strata_figures_has_no_ratio_columns() -> None:
    systems = [system("strata", "strata client"), system("nats-jetstream", "nats-py")]
    results = [steady("strata", 0, 0, status="error"), steady("nats-jetstream", 10_000, 8.0)]
    results[0]["reason"] = "boom"
    table = render_workload_table("w", "max-rate", systems, results)
    assert "÷" not in table.splitlines()[0]
    assert row(table, "publish rate (msg/s) ↑")[1:] == ["error", "10,000"]
    assert "- strata: error: boom" in table


def test_markdown_report_leaves_skipped_systems_out_of_the_tables() -> None:
    report = {
        "date": "2025-01-01T00:00:00+00:00",
        "quick": True,
        "elapsed_seconds": 100.0,
        "host": {"cpus": 2, "platform": "Linux", "python": "3.11"},
        "loopback": {"seconds": 1, "gbit_per_s": 20.0, "mib_per_s": 2384.0},
        "systems": [
            system("strata", "strata client", "skipped"),
            system("nats-jetstream", "nats-py"),
        ],
        "workloads": [
            {
                "name": "w",
                "scenario": "max-rate",
                "description": "d",
                "topics": 1,
                "partitions_per_topic": 6,
                "replication_factor": 3,
                "message_size": 1024,
                "producers_per_topic": 1,
                "max_in_flight": 1000,
                "warmup_s": 1,
                "duration_s": 4,
                "producer_rate_relative_to": None,
            }
        ],  # fmt: skip
        "results": [
            steady("strata", 0, 0, status="skipped"),
            steady("nats-jetstream", 10_000, 8.0),
        ],
    }
    md = render_markdown(report)
    assert "skipped: Strata driver arrives with the cluster issue" in md
    assert "20.0 Gbit/s" in md and "(quick)" in md
    table_head = next(ln for ln in md.splitlines() if ln.startswith("| figure"))
    assert "strata" not in table_head and "nats-py" in table_head

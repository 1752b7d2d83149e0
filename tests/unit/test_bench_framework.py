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
from benchmarks.omb.native import (
    estimate_rate,
    parse_consumer_perf,
    parse_producer_line,
    parse_producer_perf,
    producer_args,
)
from benchmarks.omb.payload import HEADER_SIZE, PayloadFactory, header, send_time_ns
from benchmarks.omb.procs import ToolProcess
from benchmarks.omb.report import (
    FIGURES,
    ratio,
    render_markdown,
    render_summary,
    render_workload_table,
)
from benchmarks.omb.scenarios import split_partitions
from benchmarks.omb.stats import (
    CpuUsage,
    CpuWindow,
    LatencyHistogram,
    SendSchedule,
    cpu_ms_per_mib,
    cpu_percent,
    median,
    parse_proc_stat,
    parse_proc_stat_cpu_ticks,
    server_cpu_ticks,
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
    assert resolve(["nats", "strata"]) == [
        "strata-always", "strata-never", "strata-kafka", "nats-jetstream"]  # fmt: skip
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


# --- server CPU per MiB ----------------------------------------------------------------


def stat_line(pid: int, pgrp: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0) -> str:
    rest = ["S", "1", str(pgrp), str(pgrp), "0", "-1", "0", "0", "0", "0", "0",
            str(utime), str(stime), str(cutime), str(cstime), "20", "0", "5"]  # fmt: skip
    return f"{pid} (java srv) " + " ".join(rest)


def test_proc_stat_fields_for_group_accounting() -> None:
    st = parse_proc_stat(stat_line(42, 40, 300, 100, 7, 3))
    assert (st.pid, st.pgrp, st.own_ticks, st.reaped_children_ticks) == (42, 40, 400, 10)


def test_a_server_is_its_whole_process_group_and_its_reaped_children() -> None:
    stats = [
        parse_proc_stat(stat_line(100, 100, 500, 100, cutime=40, cstime=10)),  # server 1 (leader)
        parse_proc_stat(stat_line(101, 100, 30, 20)),  # a child it forked (same group)
        parse_proc_stat(stat_line(200, 200, 10, 0)),  # server 2, alone
        parse_proc_stat(stat_line(300, 1, 70, 5)),  # not a group leader: counted alone
        parse_proc_stat(stat_line(301, 1, 999, 999)),  # someone else in its group
    ]
    ticks = server_cpu_ticks([100, 200, 300, 400], stats)
    # 600 own + 50 live child + 50 reaped children; pid 400 is gone: absent, not 0.
    assert ticks == {100: 700, 200: 10, 300: 75}


def test_cpu_ms_per_mib() -> None:
    assert cpu_ms_per_mib(1.5, 30.0) == pytest.approx(50.0)  # 1.5 CPU-s over 30 MiB
    assert cpu_ms_per_mib(None, 30.0) is None  # a server died: no figure
    assert cpu_ms_per_mib(1.0, 0.0) is None  # nothing acknowledged: no ratio


def test_cpu_usage_metrics_divide_servers_and_load_generator_by_the_same_mib() -> None:
    usage = CpuUsage(window_s=10.0, server_seconds_by_label={"n1": 6.0, "n2": 4.0},
                     server_seconds=10.0, client_seconds=8.0)  # fmt: skip
    m = usage.metrics(200.0)
    assert m["server_cpu_ms_per_mib"] == pytest.approx(50.0)
    assert m["server_cpu_percent"] == pytest.approx(100.0)
    assert m["client_cpu_percent"] == pytest.approx(80.0)
    assert m["client_cpu_ms_per_mib"] == pytest.approx(40.0)
    assert set(usage.metrics(1.0, prefix="catchup_")) == {f"catchup_{k}" for k in m}
    dead = CpuUsage(10.0, {"n1": 6.0}, None, 1.0)
    assert dead.metrics(200.0)["server_cpu_ms_per_mib"] is None


def test_cpu_window_reads_a_fake_proc(tmp_path: Path) -> None:
    def write(pid: int, utime: int) -> None:
        (tmp_path / str(pid)).mkdir(exist_ok=True)
        (tmp_path / str(pid) / "stat").write_text(stat_line(pid, pid, utime, 0))

    write(10, 100)
    write(20, 50)
    (tmp_path / "self").mkdir()  # not a pid: ignored
    window = CpuWindow.begin({"node-1": 10, "node-2": 20}, proc_root=tmp_path)
    write(10, 300)
    write(20, 150)
    usage = window.end(ticks_per_s=100)
    assert usage.server_seconds_by_label == {"node-1": 2.0, "node-2": 1.0}
    assert usage.server_seconds == 3.0
    (tmp_path / "20" / "stat").unlink()  # node-2 died
    assert window.end(ticks_per_s=100).server_seconds is None


# --- native load generator: the perf tools' output -------------------------------------

PRODUCER_43 = """\
Warmup first 5000 records. Steady state results will print after the complete test summary.
16830 records sent, 16830.0 records/sec (16.44 MB/sec), 2144.6 ms avg latency, 2361.0 ms max latency.
In steady state.
30330 records sent, 30330.0 records/sec (29.62 MB/sec), 1510.6 ms avg latency, 1976.0 ms max latency.
200000 records sent, 17265.193370 records/sec (16.86 MB/sec), 1491.27 ms avg latency, 3186.00 ms max latency, 1154 ms 50th, 2876 ms 95th, 3111 ms 99th, 3168 ms 99.9th.
195000 steady state records sent, 18000.500000 records/sec (17.58 MB/sec), 1400.00 ms avg latency, 3000.00 ms max latency, 1100 ms 50th, 2800 ms 95th, 3100 ms 99th, 3160 ms 99.9th.
"""
# Kafka 4.0/4.1 print the summary's records/sec with one decimal, and no steady state.
PRODUCER_41 = (
    "1000 records sent, 998.0 records/sec (0.97 MB/sec), 2.05 ms avg latency, 40.00 ms max "
    "latency, 2 ms 50th, 3 ms 95th, 9 ms 99th, 40 ms 99.9th."
)


def test_producer_perf_output_parses_windows_total_and_steady_state() -> None:
    out = parse_producer_perf(PRODUCER_43.splitlines())
    assert [w.records for w in out.windows] == [16830, 30330]
    assert out.total is not None and out.total.records == 200_000
    assert out.total.records_per_s == pytest.approx(17265.19337)
    assert (out.total.p50_ms, out.total.p99_ms, out.total.p999_ms) == (1154, 3111, 3168)
    assert out.steady is not None and out.steady.steady_state and out.steady.records == 195_000
    assert out.summary is out.steady  # the figure a warmed-up run reports
    assert out.steady.latency_ms() == {"p50": 1100.0, "p95": 2800.0, "p99": 3100.0,
                                       "p99.9": 3160.0, "max": 3000.0, "avg": 1400.0}  # fmt: skip


def test_producer_perf_4_1_summary_and_noise() -> None:
    out = parse_producer_perf(["WARN something on stdout", PRODUCER_41, ""])
    assert out.windows == [] and out.steady is None
    assert out.summary is out.total and out.total is not None
    assert (out.total.records, out.total.records_per_s, out.total.p95_ms) == (1000, 998.0, 3)
    assert parse_producer_line("12 records sent, bogus") is None


def test_rate_estimate_skips_the_first_window() -> None:
    out = parse_producer_perf(PRODUCER_43.splitlines())
    assert estimate_rate(out.windows) == pytest.approx(30330.0)
    assert estimate_rate(out.windows[:1]) == pytest.approx(16830.0)
    with pytest.raises(ValueError, match="no progress"):
        estimate_rate([])


CONSUMER = """\
start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec
2026-12-03 10:00:00:000, 2026-12-03 10:00:10:000, 1024.0000, 102.4000, 1048576, 104857.6000, 3000, 7000, 146.2857, 149796.5714
"""


def test_consumer_perf_summary_line() -> None:
    out = parse_consumer_perf(CONSUMER.splitlines())
    assert (out.mib, out.mib_per_s, out.records) == (1024.0, 102.4, 1_048_576)
    assert (out.rebalance_ms, out.fetch_ms, out.fetch_mib_per_s) == (3000, 7000, 146.2857)
    assert not out.timed_out
    warned = parse_consumer_perf(
        ["WARNING: Exiting before consuming the expected number of records: timeout (30000 ms) "
         "exceeded.", *CONSUMER.splitlines()]
    )  # fmt: skip
    assert warned.timed_out
    with pytest.raises(ValueError, match="no ConsumerPerformance summary"):
        parse_consumer_perf(["start.time, end.time, x"])


def test_producer_args_use_the_4_2_options_and_acks_all() -> None:
    args = producer_args("h:1", "t", num_records=10, record_size=1024, throughput=0,
                         warmup_records=2)  # fmt: skip
    assert args[args.index("--throughput") + 1] == "-1"
    assert args[args.index("--bootstrap-server") + 1] == "h:1"
    assert "acks=all" in args and args[-2:] == ["--warmup-records", "2"]
    paced = producer_args("h:1", "t", num_records=10, record_size=100, throughput=5000.4)
    assert paced[paced.index("--throughput") + 1] == "5000" and "--warmup-records" not in paced


def test_tool_process_reports_its_lines_exit_and_cpu(tmp_path: Path) -> None:
    import sys

    tool = ToolProcess(
        [sys.executable, "-c", "print('one'); print('two'); raise SystemExit(3)"],
        tmp_path / "err.log", tmp_path,
    )  # fmt: skip
    tool.start()
    seen: list[str] = []
    result = tool.wait(seen.append)
    assert result.stdout == seen == ["one", "two"]
    assert result.returncode == 3
    assert result.cpu_s >= 0 and result.user_s >= 0


def test_tool_process_kill_ends_a_tool_that_would_run_forever(tmp_path: Path) -> None:
    import sys
    import threading

    tool = ToolProcess(
        [sys.executable, "-c", "import time\nprint('up', flush=True)\nwhile True: time.sleep(1)"],
        tmp_path / "err.log", tmp_path,
    )  # fmt: skip
    tool.start()
    up = threading.Event()
    waiter_result: list[Any] = []
    waiter = threading.Thread(target=lambda: waiter_result.append(tool.wait(lambda _l: up.set())))
    waiter.start()
    assert up.wait(30)
    tool.kill()
    waiter.join(30)
    assert not waiter.is_alive()
    assert waiter_result[0].returncode == -9 and tool.killed


# --- native workloads in files, runner and report --------------------------------------


def test_native_workload_fields_are_validated() -> None:
    native = {**BASE, "loadGenerator": "kafka-perf", "subscriptionsPerTopic": 0,
              "consumerPerSubscription": 0}  # fmt: skip
    w = parse_workload(native, name="w", source="w.yaml")
    assert w.native and w.load_generator == "kafka-perf"
    assert not parse(scenario="max-rate").native
    with pytest.raises(WorkloadError, match="one of python, kafka-perf"):
        parse(loadGenerator="kafka-java")
    with pytest.raises(WorkloadError, match="only produces"):
        parse_workload({**native, "subscriptionsPerTopic": 1, "consumerPerSubscription": 1},
                       name="w", source="w.yaml")  # fmt: skip
    with pytest.raises(WorkloadError, match="one producer on one topic"):
        parse_workload({**native, "topics": 2}, name="w", source="w.yaml")
    with pytest.raises(WorkloadError, match="not idle"):
        parse_workload({**native, "scenario": "idle", "producersPerTopic": 0},
                       name="w", source="w.yaml")  # fmt: skip


def test_shipped_native_workloads() -> None:
    by_name = {w.name: w for w in load_workloads()}
    native = {n: w for n, w in by_name.items() if w.native}
    assert set(native) == {
        "native-max-rate-1-topic-6-partitions-1kb",
        "native-paced-5000-1-topic-6-partitions-1kb",
        "native-backlog-1-topic-6-partitions-1kb",
        "native-lone-produce-1-topic-1-partition-1kb",
        "native-max-rate-1-topic-1000-partitions-1kb",
    }
    spread = native["native-max-rate-1-topic-1000-partitions-1kb"]
    assert (spread.partitions_per_topic, spread.replication_factor, spread.producer_rate) == (1000, 3, 0)
    paced = native["native-paced-5000-1-topic-6-partitions-1kb"]
    assert (paced.producer_rate, paced.message_size, paced.replication_factor) == (5000, 1024, 3)


class _NoKafkaDriver:
    """Just enough of a driver for the runner to decide a native workload does not apply."""

    name = "redis-aof-always"
    speaks_kafka = False
    supports_failover = False
    quick = True
    stopped = 0

    async def stop(self) -> None:
        self.stopped += 1

    async def start(self, nodes: int, workdir: Path) -> None:  # pragma: no cover - must not run
        raise AssertionError("a native workload must not start a system without Kafka")


def test_runner_marks_native_workloads_n_a_without_a_kafka_listener() -> None:
    import asyncio

    from benchmarks.omb.run import Console, run_system

    w = next(w for w in load_workloads(quick=True) if w.name.startswith("native-max-rate"))
    driver = _NoKafkaDriver()
    info = {"client": "redis-py"}
    results = asyncio.run(run_system(driver, [w], Console(), {}, info))  # type: ignore[arg-type]
    assert [(r["status"], r["reason"]) for r in results] == [
        ("n/a", "no Kafka-protocol listener for the native load generator")
    ]
    assert results[0]["client"].startswith("kafka-producer-perf-test")
    assert driver.stopped == 1


class _NativeOnlyDriver(_NoKafkaDriver):
    """A row that exists only for the native load generator (Strata's Kafka listener)."""

    name = "strata-kafka"
    speaks_kafka = True
    native_only = True


def test_runner_marks_python_workloads_n_a_for_a_native_only_row() -> None:
    import asyncio

    from benchmarks.omb.run import Console, run_system

    w = next(w for w in load_workloads(quick=True) if w.name == "max-rate-1-topic-6-partitions-1kb")
    driver = _NativeOnlyDriver()
    results = asyncio.run(run_system(driver, [w], Console(), {}, {"client": "x"}))  # type: ignore[arg-type]
    assert [r["status"] for r in results] == ["n/a"]
    assert "native load generator only" in results[0]["reason"]


def test_strata_kafka_row_advertises_its_kafka_listener() -> None:
    from benchmarks.omb.drivers import DRIVERS

    kafka_row, plain = DRIVERS["strata-kafka"](), DRIVERS["strata-never"]()
    assert (kafka_row.name, kafka_row.speaks_kafka, kafka_row.native_only) == ("strata-kafka", True, True)
    assert (plain.speaks_kafka, plain.native_only, plain.kafka_bootstrap()) == (False, False, None)
    kafka_row.kafka_ports = [9092, 9093]  # type: ignore[attr-defined]
    assert kafka_row.kafka_bootstrap() == "127.0.0.1:9092,127.0.0.1:9093"


def test_summary_puts_server_cpu_per_mib_beside_throughput() -> None:
    systems = [system("strata-never", "strata client"), system("apache-kafka", "confluent-kafka")]
    ok = steady("strata-never", 20_000, 4.0)
    ok["workload"] = "max-rate-1-topic-6-partitions-1kb"
    ok["metrics"]["server_cpu_ms_per_mib"] = 42.25
    kafka = steady("apache-kafka", 30_000, 3.0)
    kafka["workload"] = "max-rate-1-topic-6-partitions-1kb"
    kafka["metrics"]["server_cpu_ms_per_mib"] = 20.0
    native_na = {"system": "strata-never", "workload": "native-max-rate-1-topic-6-partitions-1kb",
                 "scenario": "max-rate", "client": "tool", "status": "n/a", "reason": "x",
                 "metrics": {}}  # fmt: skip
    workloads = [{"name": "max-rate-1-topic-6-partitions-1kb"},
                 {"name": "native-max-rate-1-topic-6-partitions-1kb"}]  # fmt: skip
    table = render_summary(workloads, systems, [ok, kafka, native_na])
    assert row(table, "max-rate 1 KiB: server CPU per MiB acknowledged (CPU-ms) ↓")[1:] == [
        "42.2", "20.0"]  # fmt: skip
    assert row(table, "native max-rate 1 KiB: publish (MiB/s) ↑")[1:] == ["n/a", "not run"]
    assert not any("paced" in line for line in table.splitlines())  # not run: no row
    assert render_summary([{"name": "other"}], systems, []) == ""


def test_table_header_names_the_tool_for_native_rows() -> None:
    systems = [system("apache-kafka", "confluent-kafka 2.16")]
    result = steady("apache-kafka", 50_000, 9.0)
    result["client"] = "kafka-producer-perf-test (Apache Kafka 4.3.1, JVM)"
    result["metrics"]["server_cpu_ms_per_mib"] = 12.5
    assert "confluent-kafka" in render_workload_table("w", "max-rate", systems, [result])
    table = render_workload_table("w", "max-rate", systems, [result], native=True)
    assert "apache-kafka<br>(kafka-producer-perf-test (Apache Kafka 4.3.1, JVM))" in table
    assert row(table, "server CPU per MiB acknowledged (CPU-ms) ↓")[1:] == ["12.5"]

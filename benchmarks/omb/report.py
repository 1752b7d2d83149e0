"""Results: the JSON record, the Markdown tables with Strata's ratios, and the PNG chart.

The JSON file is the record (everything measured, with versions and the host);
the Markdown and the chart are views of it, rendered by pure functions so that
the tables can be unit-tested and regenerated from an old JSON file
(``python -m benchmarks.omb.report results/<date>.json``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.omb.stats import SUMMARY_KEYS

STRATA = "strata"


def is_strata(name: str) -> bool:
    """Strata's rows: ``strata`` or one per flush policy (``strata-always``, ``strata-never``)."""
    return name == STRATA or name.startswith(STRATA + "-")


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of a workload's table: where the number lives and which way is better."""

    label: str
    path: tuple[str, ...]
    higher_is_better: bool
    digits: int = 1

    def value(self, metrics: dict[str, Any]) -> float | None:
        node: Any = metrics
        for key in self.path:
            if not isinstance(node, dict) or node.get(key) is None:
                return None
            node = node[key]
        return float(node) if isinstance(node, int | float) else None

    @property
    def title(self) -> str:
        return f"{self.label} {'↑' if self.higher_is_better else '↓'}"


def _latency_rows(key: str, label: str) -> list[Figure]:
    return [Figure(f"{label} {p} (ms)", (key, p), False, 2) for p in SUMMARY_KEYS]


def _cpu_rows(prefix: str, what: str) -> list[Figure]:
    """Servers' CPU per MiB (the first-class cost figure), then both sides' CPU in % of a core."""
    return [
        Figure(f"server CPU per MiB {what} (CPU-ms)", (f"{prefix}server_cpu_ms_per_mib",), False, 1),
        Figure("server CPU, all servers (% of a core)", (f"{prefix}server_cpu_percent",), False, 0),
        Figure("load generator CPU (% of a core)", (f"{prefix}client_cpu_percent",), False, 0),
    ]


RATE_FIGURES: list[Figure] = [
    Figure("publish rate (msg/s)", ("publish_rate_msgs",), True, 0),
    Figure("publish throughput (MiB/s)", ("publish_rate_mib",), True, 1),
    *_cpu_rows("", "acknowledged"),
    Figure("consume rate (msg/s)", ("consume_rate_msgs",), True, 0),
    *_latency_rows("publish_latency_ms", "publish latency"),
]
E2E_FIGURES = _latency_rows("end_to_end_latency_ms", "end-to-end")
FIGURES: dict[str, list[Figure]] = {
    # Publish delay is measured against a schedule; a max-rate producer has none.
    "max-rate": [*RATE_FIGURES, *E2E_FIGURES],
    "fixed-rate": [
        Figure("target rate (msg/s)", ("target_rate_msgs",), True, 0),
        *RATE_FIGURES,
        *_latency_rows("publish_delay_ms", "publish delay"),
        *E2E_FIGURES,
    ],
    "backlog": [
        Figure("backlog (MiB)", ("backlog_mib",), True, 0),
        Figure("backlog publish (MiB/s)", ("backlog_publish_rate_mib",), True, 1),
        Figure("backlog: server CPU per MiB acknowledged (CPU-ms)",
               ("backlog_server_cpu_ms_per_mib",), False, 1),  # fmt: skip
        Figure("catch-up read (MiB/s)", ("catchup_rate_mib",), True, 1),
        Figure("catch-up read (msg/s)", ("catchup_rate_msgs",), True, 0),
        Figure("catch-up ÷ loopback TCP", ("loopback_ratio",), True, 4),
        Figure("catch-up: server CPU per MiB read (CPU-ms)",
               ("catchup_server_cpu_ms_per_mib",), False, 1),  # fmt: skip
        Figure("catch-up: load generator CPU (% of a core)",
               ("catchup_client_cpu_percent",), False, 0),  # fmt: skip
    ],
    "failover": [
        Figure("kill → next ack, median (ms)", ("failover_ms_median",), False, 0),
        Figure("kill → next ack, max (ms)", ("failover_ms_max",), False, 0),
        Figure("trials", ("trials",), True, 0),
    ],
    "idle": [
        Figure("partitions", ("partitions",), True, 0),
        Figure("CPU per broker process, mean (% of a core)", ("cpu_percent_mean",), False, 2),
        Figure("CPU per broker process, max (% of a core)", ("cpu_percent_max",), False, 2),
        Figure("topic creation (s)", ("topic_create_seconds",), False, 1),
    ],
}


def ratio(strata: float | None, peer: float | None) -> float | None:
    """Strata ÷ peer, or None when either side is missing or the peer's figure is 0."""
    if strata is None or peer is None or peer == 0:
        return None
    return strata / peer


def fmt(value: float | None, digits: int) -> str:
    if value is None:
        return "–"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _cell(result: dict[str, Any] | None, figure: Figure) -> str:
    if result is None:
        return "not run"
    if result["status"] != "ok":
        return str(result["status"])
    return fmt(figure.value(result["metrics"]), figure.digits)


def render_workload_table(
    workload: str,
    scenario: str,
    systems: Sequence[dict[str, Any]],
    results: Sequence[dict[str, Any]],
    *,
    native: bool = False,
) -> str:
    """One workload's table: a column per system (headed with its client), then Strata's ratios.

    For a ``native`` workload the header names the tool that produced the figures.

    Ratio columns appear only for Strata rows with figures for this workload (one
    set per flush policy); a ratio is Strata ÷ peer, so for ↑ rows above 1
    favours Strata and for ↓ rows below 1 does.
    """
    by_system = {r["system"]: r for r in results if r["workload"] == workload}
    names = [s["name"] for s in systems]
    mine_ok = [
        n for n in names if is_strata(n) and n in by_system and by_system[n]["status"] == "ok"
    ]
    peers = [n for n in names if not is_strata(n)]
    pairs = [(m, p) for m in mine_ok for p in peers]
    # A native workload's figures come from the tool, not the system's Python client.
    clients = {
        s["name"]: (by_system.get(s["name"], {}).get("client") if native else None) or s["client"]
        for s in systems
    }
    header = ["figure", *(f"{s['name']}<br>({clients[s['name']]})" for s in systems)]
    header += [f"{m} ÷ {p}" for m, p in pairs]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for figure in FIGURES[scenario]:
        row = [figure.title, *(_cell(by_system.get(n), figure) for n in names)]
        for m, p in pairs:
            mine = figure.value(by_system[m]["metrics"])
            peer = by_system.get(p)
            theirs = figure.value(peer["metrics"]) if peer and peer["status"] == "ok" else None
            r = ratio(mine, theirs)
            row.append("–" if r is None else f"{r:.2f}×")
        lines.append("| " + " | ".join(row) + " |")
    notes = [
        f"- {n}: {by_system[n]['status']}: {by_system[n].get('reason')}"
        for n in names
        if n in by_system and by_system[n]["status"] != "ok" and by_system[n].get("reason")
    ]
    return "\n".join(lines + ([""] + notes if notes else []))


#: The summary: one row per headline figure, (workload, label, figure). Rows whose
#: workload was not run are left out.
SUMMARY_ROWS: list[tuple[str, str, Figure]] = [
    ("max-rate-1-topic-6-partitions-1kb", "max-rate 1 KiB: publish (MiB/s)",
     Figure("", ("publish_rate_mib",), True, 1)),
    ("max-rate-1-topic-6-partitions-1kb", "max-rate 1 KiB: server CPU per MiB acknowledged (CPU-ms)",
     Figure("", ("server_cpu_ms_per_mib",), False, 1)),
    ("max-rate-1-topic-6-partitions-100b", "max-rate 100 B: publish (msg/s)",
     Figure("", ("publish_rate_msgs",), True, 0)),
    ("max-rate-1-topic-6-partitions-100b", "max-rate 100 B: server CPU per MiB acknowledged (CPU-ms)",
     Figure("", ("server_cpu_ms_per_mib",), False, 1)),
    ("lone-produce-1-topic-1-partition-1kb", "one produce in flight: publish p50 (ms)",
     Figure("", ("publish_latency_ms", "p50"), False, 2)),
    ("lone-produce-1-topic-1-partition-1kb", "one produce in flight: publish p99 (ms)",
     Figure("", ("publish_latency_ms", "p99"), False, 2)),
    ("lone-produce-1-topic-1-partition-1kb", "one produce in flight: server CPU per MiB (CPU-ms)",
     Figure("", ("server_cpu_ms_per_mib",), False, 1)),
    ("paced-5000-1-topic-6-partitions-1kb", "paced 5,000 msg/s: publish p50 (ms)",
     Figure("", ("publish_latency_ms", "p50"), False, 2)),
    ("paced-5000-1-topic-6-partitions-1kb", "paced 5,000 msg/s: publish p99 (ms)",
     Figure("", ("publish_latency_ms", "p99"), False, 2)),
    ("paced-5000-1-topic-6-partitions-1kb", "paced 5,000 msg/s: server CPU per MiB (CPU-ms)",
     Figure("", ("server_cpu_ms_per_mib",), False, 1)),
    ("backlog-1-topic-6-partitions-1kb", "catch-up read (MiB/s)",
     Figure("", ("catchup_rate_mib",), True, 1)),
    ("backlog-1-topic-6-partitions-1kb", "catch-up: server CPU per MiB read (CPU-ms)",
     Figure("", ("catchup_server_cpu_ms_per_mib",), False, 1)),
    ("leader-failover-1-topic-1-partition", "leader failover, median (ms)",
     Figure("", ("failover_ms_median",), False, 0)),
    ("1-topic-1000-partitions-idle", "idle partitions: CPU per broker, mean (% of a core)",
     Figure("", ("cpu_percent_mean",), False, 2)),
    ("native-max-rate-1-topic-6-partitions-1kb", "native max-rate 1 KiB: publish (MiB/s)",
     Figure("", ("publish_rate_mib",), True, 1)),
    ("native-max-rate-1-topic-6-partitions-1kb", "native max-rate 1 KiB: server CPU per MiB (CPU-ms)",
     Figure("", ("server_cpu_ms_per_mib",), False, 1)),
    ("native-paced-5000-1-topic-6-partitions-1kb", "native paced 5,000 msg/s: publish p50 (ms)",
     Figure("", ("publish_latency_ms", "p50"), False, 0)),
    ("native-paced-5000-1-topic-6-partitions-1kb", "native paced 5,000 msg/s: publish p99 (ms)",
     Figure("", ("publish_latency_ms", "p99"), False, 0)),
    ("native-backlog-1-topic-6-partitions-1kb", "native catch-up read (MiB/s)",
     Figure("", ("catchup_rate_mib",), True, 1)),
]  # fmt: skip


def render_summary(
    workloads: Sequence[dict[str, Any]],
    systems: Sequence[dict[str, Any]],
    results: Sequence[dict[str, Any]],
) -> str:
    """The headline figures of every system side by side (the README-style table).

    Server CPU per MiB is the cost figure: every server process's CPU (user + system,
    from /proc) over the measured window, divided by the MiB acknowledged (or read) in
    it; it does not depend on how fast the client could push.
    """
    ran = {w["name"] for w in workloads}
    rows = [(w, label, fig) for w, label, fig in SUMMARY_ROWS if w in ran]
    if not rows:
        return ""
    cell = {(r["system"], r["workload"]): r for r in results}
    names = [s["name"] for s in systems]
    lines = [
        "| figure | " + " | ".join(names) + " |",
        "|" + "---|" * (len(names) + 1),
    ]
    for workload, label, fig in rows:
        arrow = "↑" if fig.higher_is_better else "↓"
        values = [_cell(cell.get((n, workload)), fig) for n in names]
        lines.append(f"| {label} {arrow} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def describe_run(w: dict[str, Any]) -> str:
    """The parameters a workload actually ran with (after ``--quick`` overrides)."""
    parts = [
        f"{w['topics']} topic × {w['partitions_per_topic']} partitions",
        f"{w['replication_factor']} replicas",
        f"{w['message_size']} B records",
    ]
    scenario = w["scenario"]
    if scenario in ("max-rate", "fixed-rate"):
        if w.get("load_generator", "python") == "python":
            parts.append(
                f"{w['producers_per_topic']} producer(s) with ≤ {w['max_in_flight']} in flight"
            )
        else:  # the Java producer's own bound: buffer.memory (32 MiB), not a record count
            parts.append(f"{w['producers_per_topic']} producer(s)")
        if w.get("producer_rate_relative_to"):
            parts.append(f"rate {w['producer_rate_fraction']:g} × {w['producer_rate_relative_to']}")
        parts.append(f"warm-up {w['warmup_s']:g}s, measured {w['duration_s']:g}s")
    elif scenario == "backlog":
        parts.append(f"backlog {w['consumer_backlog_size_gb'] * 1024:g} MiB")
    elif scenario == "idle":
        parts.append(f"settle {w['warmup_s']:g}s, CPU window {w['duration_s']:g}s")
    elif scenario == "failover":
        parts.append(f"{w['failover_trials']} trials")
    if w.get("load_generator", "python") != "python":
        parts.append(f"load generator {w['load_generator']} (native, JVM)")
    return ", ".join(parts)


def render_markdown(report: dict[str, Any]) -> str:
    """The whole Markdown report from the JSON record."""
    systems: list[dict[str, Any]] = report["systems"]
    results: list[dict[str, Any]] = report["results"]
    host = report["host"]
    out = [
        f"# Strata vs peers — {report['date']}{' (quick)' if report['quick'] else ''}",
        "",
        f"Host: {host.get('cpus')} CPUs, {host.get('platform')}, Python {host.get('python')}. "
        f"Run took {report.get('elapsed_seconds', 0):.0f}s. "
        "Every figure is from one run on one machine, servers and clients sharing its cores: "
        "read the numbers as indicative, and the ratios as the point.",
        "",
    ]
    loop = report.get("loopback") or {}
    if "gbit_per_s" in loop:
        out.append(
            f"Loopback TCP (iperf3, one stream, {loop['seconds']:g}s, same run): "
            f"{loop['gbit_per_s']:.1f} Gbit/s = {loop['mib_per_s']:,.0f} MiB/s."
        )
    else:
        out.append(f"Loopback TCP: not measured ({loop.get('error', 'skipped')}).")
    out += [
        "",
        "## Systems",
        "",
        "| system | server | client (produced its figures) | acknowledgement means | status |",
        "|---|---|---|---|---|",
    ]
    for s in systems:
        status = s["status"] if not s.get("reason") else f"{s['status']}: {s['reason']}"
        out.append(
            f"| {s['name']} | {s['server_version']} | {s['client']} | {s['durability']} | {status} |"
        )
    out += [
        "",
        "↑: higher is better, ↓: lower is better. Ratios are Strata ÷ peer. "
        "Publish delay is how late each send started against the producer's schedule "
        "(fixed-rate runs only), so a stall cannot hide behind coordinated omission.",
    ]
    # A skipped system has no figures anywhere: the Systems table says why, once.
    shown = [s for s in systems if s["status"] != "skipped"]
    summary = render_summary(report["workloads"], shown, results)
    if summary:
        out += [
            "",
            "## Summary",
            "",
            "Headline figures from the tables below. *Server CPU per MiB* is every server "
            "process's CPU (user + system, /proc) over the measured window ÷ the MiB "
            "acknowledged (or read) in it: what each MiB costs the servers, whoever the "
            "client. Native rows are Apache Kafka's perf tools (JVM) instead of a Python "
            "client; `n/a` where a system has no Kafka-protocol listener. What an "
            "acknowledgement means differs per system: see the Systems table (Apache Kafka "
            "and strata-never acknowledge before fsync; strata-always after).",
            "",
            summary,
        ]
    for w in report["workloads"]:
        out += ["", f"## {w['name']} ({w['scenario']})", ""]
        if w.get("description"):
            out += [w["description"], ""]
        out += [f"As run: {describe_run(w)}.", ""]
        native = w.get("load_generator", "python") != "python"
        out.append(render_workload_table(w["name"], w["scenario"], shown, results, native=native))
    return "\n".join(out) + "\n"


def write_chart(report: dict[str, Any], path: Path) -> None:
    """Throughput bars and latency-percentile lines per system (PNG, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in report["results"] if r["status"] == "ok"]
    systems = [s["name"] for s in report["systems"] if any(r["system"] == s["name"] for r in ok)]
    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))

    # 1. throughput: max-rate publish and catch-up read, grouped by workload.
    bars: list[tuple[str, Callable[[dict[str, Any]], float | None]]] = []
    for w in report["workloads"]:
        if w["scenario"] == "max-rate":
            bars.append((f"{w['name']}\npublish", _getter(w["name"], "publish_rate_mib")))
        elif w["scenario"] == "backlog":
            bars.append((f"{w['name']}\ncatch-up", _getter(w["name"], "catchup_rate_mib")))
    ax = axes[0]
    width = 0.8 / max(1, len(systems))
    for i, system in enumerate(systems):
        values = [get({"system": system, "results": ok}) or 0.0 for _, get in bars]
        xs = [j + i * width for j in range(len(bars))]
        ax.bar(xs, values, width, label=system)
    ax.set_xticks([j + width * (len(systems) - 1) / 2 for j in range(len(bars))])
    ax.set_xticklabels([label.replace("-1-topic-", "\n1-topic-") for label, _ in bars], fontsize=7)
    ax.set_ylabel("MiB/s")
    ax.set_title("Throughput")
    ax.legend(fontsize=8)

    # 2 and 3. latency percentiles: end-to-end at fixed rate, publish at max rate.
    panels = [
        ("fixed-rate", "end_to_end_latency_ms", "End-to-end latency, fixed rate"),
        ("max-rate", "publish_latency_ms", "Publish latency, max rate"),
    ]
    for ax, (scenario, key, title) in zip(axes[1:], panels, strict=True):
        names = [w["name"] for w in report["workloads"] if w["scenario"] == scenario]
        for r in ok:
            if r["workload"] in names and r["metrics"].get(key):
                summary = r["metrics"][key]
                label = r["system"] if len(names) == 1 else f"{r['system']} / {r['workload']}"
                ax.plot(
                    list(SUMMARY_KEYS), [summary.get(k) for k in SUMMARY_KEYS], marker="o", label=label
                )
        ax.set_yscale("log")
        ax.set_ylabel("ms (log)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"Strata vs peers — {report['date']}{' (quick)' if report['quick'] else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _getter(workload: str, key: str) -> Callable[[dict[str, Any]], float | None]:
    def get(ctx: dict[str, Any]) -> float | None:
        for r in ctx["results"]:
            if r["system"] == ctx["system"] and r["workload"] == workload:
                value = r["metrics"].get(key)
                return float(value) if value is not None else None
        return None

    return get


def write_all(report: dict[str, Any], stem: Path) -> list[Path]:
    """Write ``<stem>.json``, ``<stem>.md`` and ``<stem>.png``; returns the paths written."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md")]
    paths[0].write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    paths[1].write_text(render_markdown(report))
    try:
        write_chart(report, stem.with_suffix(".png"))
        paths.append(stem.with_suffix(".png"))
    except ImportError as exc:  # the tables matter more than the picture
        print(f"chart skipped: {exc} (pip install matplotlib, or `make bench`)", file=sys.stderr)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """Re-render the Markdown and chart of an existing results JSON."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print(
            "usage: python -m benchmarks.omb.report benchmarks/results/<date>.json", file=sys.stderr
        )
        return 2
    path = Path(args[0])
    for written in write_all(json.loads(path.read_text()), path.with_suffix("")):
        print(written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

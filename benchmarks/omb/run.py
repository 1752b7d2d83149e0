"""Run every selected system on every selected workload, then write the results.

    python -m benchmarks.omb.run [--quick] [--workloads NAME ...] [--drivers NAME ...]

One invocation measures loopback TCP with iperf3, then, system by system, runs
the workloads in order on one cluster per system (topics are deleted between
workloads; a failed workload gets a fresh cluster for the next one), and writes
``benchmarks/results/<date>[-quick].{json,md,png}``. A system whose driver
raises NotImplementedError when starting is skipped with a line saying so: this
is a benchmark, a missing system is not a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.omb import procs
from benchmarks.omb.driver import Driver, FailoverNotSupported
from benchmarks.omb.drivers import DRIVERS, resolve
from benchmarks.omb.golat import golat_client_name, golat_mode, run_go_lone
from benchmarks.omb.loopback import measure_loopback
from benchmarks.omb.native import NATIVE_RUNNERS, tool_client_name
from benchmarks.omb.report import write_all
from benchmarks.omb.scenarios import SCENARIO_RUNNERS, topic_names
from benchmarks.omb.workload import Workload, WorkloadError, load_workloads, workload_files

RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
SETUP_TIMEOUT_S = 120.0


class Console:
    """Progress lines with the time since the run began, flushed at once (runs are watched)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()

    def say(self, line: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {line}", flush=True)

    def scoped(self, system: str, workload: str) -> Any:
        return lambda msg: self.say(f"{system:<20} {workload:<38} {msg}")


def _workload_budget(w: Workload) -> float:
    """A hard ceiling per workload, so that one wedged system cannot eat the whole run."""
    base = SETUP_TIMEOUT_S + w.warmup_s + w.duration_s
    if w.scenario == "backlog":
        base += 2 * max(120.0, w.backlog_bytes / (1 << 20))
    if w.scenario == "failover":
        base += w.failover_trials * 90.0
    return base


def _result(system: str, w: Workload, client: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "system": system,
        "workload": w.name,
        "scenario": w.scenario,
        "client": client,
        "status": status,
        "reason": extra.get("reason"),
        "seconds": extra.get("seconds"),
        "metrics": extra.get("metrics", {}),
    }


async def run_system(
    driver: Driver,
    workloads: Sequence[Workload],
    console: Console,
    loopback: dict[str, Any],
    info: dict[str, Any],
    native_cpus: str | None = None,
) -> list[dict[str, Any]]:
    """All workloads on one system; always stops the system's servers before returning."""
    results: list[dict[str, Any]] = []
    done: dict[str, dict[str, Any]] = {}
    running: int | None = None
    starts = 0
    with tempfile.TemporaryDirectory(
        prefix=f"strata-bench-{driver.name}-", ignore_cleanup_errors=True
    ) as tmp:
        try:
            for index, w in enumerate(workloads):
                say = console.scoped(driver.name, w.name)
                client = _client_for(w, info["client"], driver)
                reason = _not_applicable(w, driver)
                if reason is not None:
                    results.append(_result(driver.name, w, client, "n/a", reason=reason))
                    say(f"n/a: {reason}")
                    continue
                if not w.native and driver.native_only:
                    reason = "native load generator only (the Python-client rows are strata-never's)"
                    results.append(_result(driver.name, w, client, "n/a", reason=reason))
                    say(f"n/a: {reason}")
                    continue
                if w.scenario == "failover" and not driver.supports_failover:
                    results.append(
                        _result(
                            driver.name,
                            w,
                            client,
                            "n/a",
                            reason="no leader to kill (single server)",
                        )
                    )
                    say("n/a: no leader to kill")
                    continue
                if w.producer_rate_relative_to is not None:
                    ref = done.get(w.producer_rate_relative_to)
                    rate = (ref or {}).get("metrics", {}).get("publish_rate_msgs")
                    if not rate:
                        reason = f"needs the max rate measured by {w.producer_rate_relative_to}"
                        results.append(_result(driver.name, w, client, "skipped", reason=reason))
                        say(f"skipped: {reason}")
                        continue
                    say(f"fixed rate {rate * w.producer_rate_fraction:,.0f} msg/s "
                        f"({w.producer_rate_fraction:g} × {w.producer_rate_relative_to})")  # fmt: skip
                    w = w.with_rate(rate * w.producer_rate_fraction)
                nodes = driver.nodes_for(w.replication_factor)
                if running != nodes:
                    if running is not None:
                        await driver.stop()
                        running = None
                    starts += 1
                    say(f"starting {nodes} node(s)")
                    try:
                        async with asyncio.timeout(SETUP_TIMEOUT_S):
                            await driver.start(nodes, Path(tmp) / f"cluster-{starts}")
                    except NotImplementedError as exc:
                        info["status"], info["reason"] = "skipped", str(exc)
                        console.say(f"SKIP {driver.name}: {exc}")
                        for rest in workloads[index:]:
                            results.append(
                                _result(
                                    driver.name, rest, _client_for(rest, info["client"], driver),
                                    "skipped", reason=str(exc),
                                )  # fmt: skip
                            )
                        return results
                    except Exception as exc:
                        await driver.stop()
                        reason = f"start failed: {type(exc).__name__}: {exc}"
                        results.append(_result(driver.name, w, client, "error", reason=reason))
                        say(reason)
                        continue
                    running = nodes
                t0 = time.monotonic()
                try:
                    async with asyncio.timeout(_workload_budget(w)):
                        if w.load_generator == "go-lone":
                            metrics = await run_go_lone(
                                driver, w, say, workdir=Path(tmp) / f"tool-{index}",
                                cpus=native_cpus,
                            )  # fmt: skip
                        elif w.native:
                            metrics = await NATIVE_RUNNERS[w.scenario](
                                driver, w, say, workdir=Path(tmp) / f"tool-{index}",
                                cpus=native_cpus,
                            )  # fmt: skip
                        else:
                            metrics = await SCENARIO_RUNNERS[w.scenario](driver, w, say)
                except Exception as exc:
                    reason = f"{type(exc).__name__}: {exc}"
                    say(f"ERROR {reason}")
                    traceback.print_exc(limit=4, file=sys.stdout)
                    results.append(_result(driver.name, w, client, "error", reason=reason))
                    await driver.stop()  # the next workload gets a fresh cluster
                    running = None
                    continue
                if w.scenario == "backlog" and loopback.get("mib_per_s"):
                    metrics["loopback_ratio"] = metrics["catchup_rate_mib"] / loopback["mib_per_s"]
                result = _result(
                    driver.name, w, client, "ok", metrics=metrics, seconds=time.monotonic() - t0
                )
                results.append(result)
                done[w.name] = result
                say(_headline(w, metrics))
                if index + 1 < len(workloads) and running is not None:
                    for topic in topic_names(w.name, 1 if w.scenario == "failover" else w.topics):
                        with contextlib.suppress(Exception):
                            async with asyncio.timeout(SETUP_TIMEOUT_S):
                                await driver.delete_topic(topic)
        except FailoverNotSupported as exc:  # pragma: no cover - a driver contradicting itself
            console.say(f"{driver.name}: {exc}")
        finally:
            await driver.stop()
    return results


def _not_applicable(w: Workload, driver: Driver) -> str | None:
    """Why a native workload cannot run on this system (its row then reads n/a), or None."""
    if w.load_generator == "go-lone":
        if golat_mode(driver) is None:
            return "neither a Kafka-protocol listener nor JetStream for the Go load generator"
        return None
    if w.native and not driver.speaks_kafka:
        return "no Kafka-protocol listener for the native load generator"
    return None


def _client_for(w: Workload, driver_client: str, driver: Driver) -> str:
    """Who produced a workload's figures: the driver's client, or the native tool."""
    if not w.native:
        return driver_client
    if w.load_generator == "go-lone":
        return golat_client_name(golat_mode(driver))
    try:
        from tests.compat.apache_kafka import KafkaDist

        version = KafkaDist.find().version
    except Exception:
        version = "not installed"
    return tool_client_name(version, w.scenario)


def _headline(w: Workload, m: dict[str, Any]) -> str:
    if w.scenario in ("max-rate", "fixed-rate"):
        e2e = m.get("end_to_end_latency_ms") or {}
        pub = m.get("publish_latency_ms") or {}
        line = (
            f"done: {m['publish_rate_msgs']:,.0f} msg/s ({m['publish_rate_mib']:.1f} MiB/s), "
            f"publish p50 {pub.get('p50', float('nan')):.2f} ms p99 {pub.get('p99', float('nan')):.1f} ms"
        )
        # Producer-only rows (native tools) have no end-to-end figure to show.
        return line + (f", e2e p99 {e2e['p99']:.1f} ms" if e2e.get("p99") is not None else "")
    if w.scenario == "backlog":
        return f"done: catch-up {m['catchup_rate_mib']:.1f} MiB/s over {m['backlog_mib']:.0f} MiB"
    if w.scenario == "idle":
        return f"done: CPU per broker mean {m['cpu_percent_mean']:.2f}% max {m['cpu_percent_max']:.2f}%"
    return f"done: failover median {m['failover_ms_median']:.0f} ms over {m['trials']} trials"


def _install_uvloop() -> str:
    """Use uvloop when present (Strata's broker runs on it): client overhead is then equal for all."""
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return f"uvloop {uvloop.__version__}"


async def run_all(
    args: argparse.Namespace, workloads: list[Workload], drivers: list[str], console: Console
) -> dict[str, Any]:
    # SIGTERM cancels the run like Ctrl-C does, so every driver's finally stops its
    # servers (a plain signal.signal handler is not run promptly under uvloop);
    # procs.kill_all (atexit) catches anything left.
    main_task = asyncio.current_task()
    if main_task is not None:
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    report: dict[str, Any] = {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "quick": args.quick,
        "host": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "event_loop": args.loop_name,
        },
        "workloads": [{**asdict(w), "source": Path(w.source).name} for w in workloads],
        "load_generator_cpus": args.pin_load_generator,
        "systems": [],
        "results": [],
    }
    if args.no_loopback:
        report["loopback"] = {"error": "skipped (--no-loopback)"}
    else:
        seconds = 1.0 if args.quick else 3.0
        console.say(f"measuring loopback TCP with iperf3 for {seconds:g}s")
        try:
            report["loopback"] = await asyncio.to_thread(measure_loopback, seconds)
            console.say(f"loopback TCP: {report['loopback']['gbit_per_s']:.1f} Gbit/s")
        except Exception as exc:
            report["loopback"] = {"error": f"{type(exc).__name__}: {exc}"}
            console.say(f"loopback not measured: {exc}")
    for name in drivers:
        try:
            driver = DRIVERS[name]()
            driver.quick = bool(args.quick)
            info = {
                "name": name,
                "client": driver.client_name,
                "server_version": driver.server_version(),
                "durability": driver.durability(),
                "status": "ran",
                "reason": None,
            }
        except Exception as exc:
            console.say(f"SKIP {name}: cannot set up its driver: {type(exc).__name__}: {exc}")
            report["systems"].append({"name": name, "client": "?", "server_version": "?", "durability": "?",
                                      "status": "skipped", "reason": str(exc)})  # fmt: skip
            continue
        report["systems"].append(info)
        console.say(f"== {name}: {info['server_version']}, client {info['client']}")
        report["results"] += await run_system(
            driver, workloads, console, report["loopback"], info, args.pin_load_generator
        )
    return report


def _file_suffix(text: str) -> str:
    """A results-file suffix: letters, digits, '-' and '_' only (it becomes part of a path)."""
    if not text or not all(c.isalnum() or c in "-_" for c in text):
        raise argparse.ArgumentTypeError(f"{text!r}: use letters, digits, '-' and '_'")
    return text


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.omb.run",
        description="Strata side by side with NATS JetStream and Redis Streams (OpenMessaging-style).",
        epilog="Example: python -m benchmarks.omb.run --quick --drivers nats redis",
    )
    parser.add_argument(
        "--quick", action="store_true", help="the workloads' quick overrides (a smoke test, minutes)"
    )
    parser.add_argument(
        "--workloads", nargs="+", metavar="NAME", help="workload names (default: all)"
    )
    parser.add_argument(
        "--drivers", nargs="+", metavar="NAME", help="systems: strata, nats-jetstream, redis-aof-always, "
        "redis-aof-everysec, or nats, redis, peers, all (default: all)",
    )  # fmt: skip
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR, help="where results go")
    parser.add_argument("--no-loopback", action="store_true", help="skip the iperf3 measurement")
    parser.add_argument(
        "--name", metavar="SUFFIX", default=None, type=_file_suffix,
        help="results file suffix: <date>[-quick]-SUFFIX.{json,md,png} (default: none)",
    )  # fmt: skip
    parser.add_argument(
        "--pin-load-generator", metavar="CPUS", default=None,
        help="taskset CPU list for the native load generator (e.g. 1); default: not pinned",
    )  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list workloads and drivers, then exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        for name, path in workload_files().items():
            print(f"workload  {name:<40} {path}")
        for name in DRIVERS:
            print(f"driver    {name}")
        return 0
    try:
        workloads = load_workloads(args.workloads, quick=args.quick)
        drivers = resolve(args.drivers)
    except (WorkloadError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    args.loop_name = _install_uvloop()
    console = Console()
    console.say(
        f"{len(drivers)} system(s) × {len(workloads)} workload(s){' (quick)' if args.quick else ''}: "
        f"{', '.join(drivers)}"
    )
    started = time.monotonic()
    try:
        report = asyncio.run(run_all(args, workloads, drivers, console))
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.say("interrupted; servers stopped, no results written")
        return 130
    finally:
        procs.kill_all()
    report["elapsed_seconds"] = time.monotonic() - started
    stamp = dt.date.today().isoformat() + ("-quick" if args.quick else "")
    if args.name:
        stamp += f"-{args.name}"
    for path in write_all(report, args.results_dir / stamp):
        console.say(f"wrote {path}")
    failed = [r for r in report["results"] if r["status"] == "error"]
    if failed:
        console.say(
            f"{len(failed)} workload run(s) failed: "
            + ", ".join(f"{r['system']}/{r['workload']}" for r in failed)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

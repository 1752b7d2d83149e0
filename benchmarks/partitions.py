"""Cost as partitions grow: create N partitions x RF=3 until all have leaders, then idle CPU and RSS.

Usage::

    .venv/bin/python -m benchmarks.partitions --create 1000
    .venv/bin/python -m benchmarks.partitions --create 1000 --idle 1000 5000 10000 --out FILE.json

Starts 3 brokers (``flush never`` unless ``--flush-policy``) the way the OMB runner's Strata
driver does (:class:`benchmarks.omb.drivers.strata.StrataDriver`), then:

* **create**: one ``CreateTopics`` of ``--create`` partitions x 3 replicas; reports the time
  until the request returned, until every partition has a leader (what a producer needs), and
  until every partition is led by its preferred replica with all replicas in sync (what the
  benchmark waits for), each broker's CPU seconds over that span (a figure the machine's
  other load disturbs less than the wall-clock ones) and the system (kernel) part of it, and the highest and mean leader epoch
  (Raft term) at the end (1 when every partition was elected once: higher terms are
  re-elections). Polled with ``describe_topic`` every 50 ms, so each figure is late by
  at most one poll plus a describe.
* **idle** (optional): topics are added until the cluster holds each ``--idle`` total of
  partitions (the created topic counts), the cluster is left ``--settle`` seconds to quiesce,
  and each broker's CPU (utime + stime of its process group, /proc) over ``--window`` seconds
  and its RSS (``VmRSS``) are recorded.

Figures are single runs on a shared machine: the load average (``/proc/loadavg``) is recorded
beside each. Nothing here is a test; nothing asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.omb.drivers.strata import StrataDriver
from benchmarks.omb.stats import CpuWindow

POLL_S = 0.05


def load_average() -> str:
    """The 1, 5 and 15-minute load averages, as ``uptime`` shows them."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def file_creation_ms(directory: Path, n: int = 200) -> float:
    """Kernel CPU per file this machine spends creating a directory and four files in
    ``directory`` (what opening a new partition does), in ms: on some disks here it was
    0.02 ms and on others (same filesystem, other directories) 0.7 ms, which alone is
    seconds of a broker's CPU for 1,000 partitions. Recorded beside each creation."""
    probe = directory / f"fs-probe-{os.getpid()}"
    probe.mkdir(parents=True, exist_ok=True)
    t0 = os.times()
    try:
        for i in range(n // 5):
            d = probe / str(i)
            d.mkdir()
            for name in ("a", "b", "c", "d"):
                fd = os.open(d / name, os.O_RDWR | os.O_CREAT, 0o644)
                os.write(fd, b"x")
                os.close(fd)
        t1 = os.times()
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    return round(1000 * (t1.system - t0.system + t1.user - t0.user) / n, 3)


def system_cpu_s(pids: dict[str, int]) -> dict[str, float]:
    """Each process's system (kernel) CPU seconds so far: file creation, fsync, sockets."""
    out: dict[str, float] = {}
    for label, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        out[label] = int(fields[12]) / os.sysconf("SC_CLK_TCK")  # stime (field 15 of stat)
    return out


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


async def create_and_time(driver: StrataDriver, topic: str, partitions: int, timeout_s: float) -> dict[str, Any]:
    """Create ``topic``; the seconds until it returned, had leaders everywhere, and settled."""
    admin = driver._admin
    cpu = CpuWindow.begin(driver.server_pids())
    sys0 = system_cpu_s(driver.server_pids())
    t0 = time.perf_counter()
    # wait=False: the admin client's own wait gives up when a broker is slow to answer
    # metadata; the loop below polls (and tolerates such answers) until the bound.
    await admin.create_topic(topic, partitions, 3, wait=False, timeout_ms=int(timeout_s * 1000))
    out: dict[str, Any] = {"partitions": partitions, "returned_s": time.perf_counter() - t0,
                           "load_before": load_average(), "describe_errors": 0}
    deadline = t0 + timeout_s
    while time.perf_counter() < deadline:
        try:
            desc = await admin.describe_topic(topic)
        except Exception:  # e.g. "still loading the cluster metadata": counted, and polled again
            out["describe_errors"] += 1
            await asyncio.sleep(POLL_S)
            continue
        parts = desc.partitions
        now = time.perf_counter() - t0
        led = sum(1 for p in parts if p.leader is not None)
        if "all_leaders_s" not in out and len(parts) == partitions and led == partitions:
            out["all_leaders_s"] = now
            out["preferred_at_first"] = sum(1 for p in parts if p.replicas and p.leader == p.replicas[0])
        if "all_leaders_s" in out and all(
            p.replicas and p.leader == p.replicas[0] and sorted(p.isr) == sorted(p.replicas) for p in parts
        ):
            out["settled_s"] = now
            break
        await asyncio.sleep(POLL_S)
    usage = cpu.end()
    out["broker_cpu_s"] = usage.server_seconds_by_label
    sys1 = system_cpu_s(driver.server_pids())
    out["broker_system_cpu_s"] = {k: round(sys1[k] - sys0[k], 2) for k in sys1 if k in sys0}
    # Leader epochs (Raft terms) at the end: 1 for a partition elected once; a storm of
    # re-elections shows as higher terms. (Raw metadata: the description has no epochs.)
    try:
        header = await admin._cluster.metadata([topic])
        epochs = [p.get("leader_epoch", -1) for t in header.get("topics", ()) for p in t.get("partitions", ())]
        epochs = [e for e in epochs if e >= 0]
        if epochs:
            out["epoch_max"] = max(epochs)
            out["epoch_mean"] = round(sum(epochs) / len(epochs), 2)
    except Exception as exc:  # a figure, not the run: note it and go on
        out["epoch_error"] = repr(exc)
    out["load_after"] = load_average()
    return out


async def scrape_gauges(port: int, names: tuple[str, ...]) -> dict[str, float]:
    """The samples of the families ``names`` from a broker's ``/metrics``, keyed by the
    sample as written (``name`` or ``name{label="value"}``; missing ones left out)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        await writer.drain()
        body = (await asyncio.wait_for(reader.read(), 10)).decode("utf-8", "replace")
    finally:
        writer.close()
    out: dict[str, float] = {}
    for line in body.splitlines():
        name, _, value = line.rpartition(" ")
        if name.partition("{")[0] in names:
            out[name] = float(value)
    return out


#: What the idle window reports of each broker: groups held and asleep, and the counters
#: of wakes (by cause), sleeps and view entries the controller sent, as deltas over the
#: settling time and the window.
IDLE_GAUGES = ("strata_partitions", "strata_raft_quiesced_groups")
IDLE_COUNTERS = ("strata_raft_wakes_total", "strata_raft_sleeps_total", "strata_controller_view_entries_sent_total")


async def scrape_all(driver: StrataDriver, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for server, port in zip(driver.servers, driver.metrics_ports, strict=True):
        t0 = time.perf_counter()
        try:
            out[server.name] = await scrape_gauges(port, names)
        except (OSError, TimeoutError) as exc:
            out[server.name] = {"error": str(exc)}  # type: ignore[dict-item]
        # How long the broker took to answer /metrics (its loop is held meanwhile).
        out[server.name]["scrape_s"] = round(time.perf_counter() - t0, 3)
    return out


async def measure_idle(driver: StrataDriver, settle_s: float, window_s: float) -> dict[str, Any]:
    # The counters are read before the settling time, not just before the window: a scrape
    # renders every partition's series on the broker's loop (10,000 partitions: ~100,000
    # samples), which holds it long enough for its peers to take it for silent; the settling
    # time lets what that sets off die down before the CPU window. Their deltas cover the
    # settling time and the window.
    before = await scrape_all(driver, IDLE_COUNTERS)
    await asyncio.sleep(settle_s)
    pids = driver.server_pids()
    cpu = CpuWindow.begin(pids)
    await asyncio.sleep(window_s)
    usage = cpu.end()
    per = {k: 100 * v / usage.window_s for k, v in usage.server_seconds_by_label.items()}
    after = await scrape_all(driver, IDLE_GAUGES + IDLE_COUNTERS)
    groups: dict[str, dict[str, float]] = {}
    for label, samples in after.items():
        was = before.get(label, {})
        groups[label] = {k: (v - was.get(k, 0) if k.partition("{")[0] in IDLE_COUNTERS else v)
                         for k, v in samples.items()}
    return {
        "cpu_percent_by_broker": per,
        "cpu_percent_max": max(per.values()) if per else None,
        "rss_mib_by_broker": {k: rss_mib(pid) for k, pid in pids.items()},
        "groups_by_broker": groups,
        "window_s": usage.window_s,
        "load": load_average(),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    driver = StrataDriver(args.flush_policy)
    report: dict[str, Any] = {"command": " ".join(sys.argv), "host_cpus": os.cpu_count()}
    with contextlib.ExitStack() as stack:
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
            tmp = str(args.workdir)
        else:
            tmp = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="strata-partitions-", ignore_cleanup_errors=True))
        await driver.start(3, Path(tmp))
        try:
            report["pids"] = driver.server_pids()
            report["fs_create_ms_per_file"] = file_creation_ms(Path(tmp))
            if args.profile_pids_file:
                Path(args.profile_pids_file).write_text(" ".join(map(str, report["pids"].values())))
                await asyncio.sleep(args.profile_delay)
            total = 0
            if args.create:
                probe = file_creation_ms(Path(tmp))
                res = await create_and_time(driver, "create-test", args.create, args.timeout)
                res["fs_create_ms_per_file"] = probe
                print(f"create {args.create} x RF=3: {json.dumps(res)}", flush=True)
                report["create"] = res
                total = args.create
            report["idle"] = []
            for n, target in enumerate(sorted(args.idle or ())):
                if target > total:
                    res = await create_and_time(driver, f"idle-{n}", target - total, args.timeout)
                    print(f"added {target - total} (total {target}): {json.dumps(res)}", flush=True)
                    total = target
                idle = await measure_idle(driver, args.settle, args.window)
                idle["partitions"] = total
                print(f"idle at {total}: {json.dumps(idle)}", flush=True)
                report["idle"].append(idle)
        finally:
            await driver.stop()
    return report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--create", type=int, default=1000, help="partitions of the timed topic (0: none)")
    ap.add_argument("--idle", type=int, nargs="*", help="partition totals to measure idle CPU/RSS at")
    ap.add_argument("--settle", type=float, default=30.0, help="seconds to quiesce before an idle window")
    ap.add_argument("--window", type=float, default=20.0, help="idle CPU window, seconds")
    ap.add_argument("--timeout", type=float, default=300.0, help="bound on each creation, seconds")
    ap.add_argument("--flush-policy", choices=("always", "never"), default="never")
    ap.add_argument("--out", type=Path, help="write the report as JSON here")
    ap.add_argument("--workdir", type=Path, help="keep the brokers' data and logs here (default: a temporary "
                    "directory, removed)")
    ap.add_argument("--profile-pids-file", help="write the brokers' pids here once started (for py-spy)")
    ap.add_argument("--profile-delay", type=float, default=3.0, help="seconds to wait after writing pids")
    return ap.parse_args(argv)


if __name__ == "__main__":
    ns = parse_args()
    result = asyncio.run(main(ns))
    if ns.out:
        ns.out.write_text(json.dumps(result, indent=2) + "\n")

"""What metrics cost a broker: produce throughput with metrics on and off, and scrape time.

    .venv/bin/python -m benchmarks.bench_metrics [--quick] [--rounds N] [--partitions P]

1. **Produce throughput**: one broker, flush policy ``never`` (so the disk does not hide the
   per-request cost), ``WRITERS`` concurrent writers each sending small acks=1 batches to its
   own partition. "off" starts the broker without ``--metrics-listen`` (handlers unwrapped,
   byte counters skipped); "on" with it, and Prometheus-style scrapes every second during the
   run. Rounds alternate off/on; the medians are compared. Goal: on within 5% of off.
2. **Scrape time**: one broker holding ``--partitions`` (default 1000) partitions; the time of
   a full ``GET /metrics`` (collector + text exposition + HTTP on loopback). Goal: < 100 ms.

Not a test: nothing here passes or fails; the figures are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from tests.integration.cluster import LocalCluster
from tests.integration.rawclient import RawClient, make_batch

WRITERS = 8
RECORDS_PER_BATCH = 10
RECORD = b"x" * 100


class Cluster(LocalCluster):
    """A LocalCluster whose brokers may run without a metrics listener."""

    metrics: bool = True

    def command(self, b) -> list[str]:
        cmd = super().command(b)
        if not self.metrics:
            i = cmd.index("--metrics-listen")
            del cmd[i: i + 2]
        return cmd


async def produce_round(bootstrap: str, topic: str, batches_per_writer: int) -> float:
    """Batches per second over all writers."""
    client = RawClient(bootstrap)
    batch = make_batch([RECORD] * RECORDS_PER_BATCH)
    try:
        for p in range(WRITERS):  # warm the connections and the leader cache
            await client.produce(topic, p, batch, acks=1)

        async def writer(p: int) -> None:
            for _ in range(batches_per_writer):
                resp = await client.produce(topic, p, batch, acks=1)
                assert resp["err"] == 0, resp

        t0 = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for p in range(WRITERS):
                tg.create_task(writer(p))
        return WRITERS * batches_per_writer / (time.perf_counter() - t0)
    finally:
        await client.close()


def scraper(port: int, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
        except OSError:
            pass


def throughput(rounds: int, batches_per_writer: int) -> tuple[list[float], list[float]]:
    results: dict[bool, list[float]] = {False: [], True: []}
    for r in range(rounds):
        for metrics in (False, True) if r % 2 == 0 else (True, False):
            with tempfile.TemporaryDirectory() as d:
                c = Cluster(Path(d), n=1, extra_args=["--flush-policy", "never"])
                c.metrics = metrics
                with c:
                    client = RawClient(c.bootstrap)
                    asyncio.run(client.create_topic("bench", WRITERS, 1))
                    asyncio.run(client.close())
                    stop = threading.Event()
                    t = threading.Thread(target=scraper, args=(c.brokers[1].metrics_port, stop), daemon=True)
                    if metrics:
                        t.start()
                    try:
                        rate = asyncio.run(produce_round(c.bootstrap, "bench", batches_per_writer))
                    finally:
                        stop.set()
                        if metrics:
                            t.join()
                results[metrics].append(rate)
                print(f"  round {r + 1} metrics {'on ' if metrics else 'off'}: {rate:10.0f} batches/s", flush=True)
    return results[False], results[True]


def scrape_time(partitions: int, samples: int) -> tuple[list[float], int, int]:
    with tempfile.TemporaryDirectory() as d, LocalCluster(Path(d), n=1, extra_args=["--flush-policy", "never"]) as c:
        c.wait_ready(timeout=60)
        client = RawClient(c.bootstrap, timeout_s=300)
        asyncio.run(client.create_topic("many", partitions, 1))
        asyncio.run(client.close())
        url = f"http://127.0.0.1:{c.brokers[1].metrics_port}/metrics"
        deadline = time.monotonic() + 120
        while True:  # until the broker has opened every replica
            body = urllib.request.urlopen(url, timeout=10).read()
            held = next((float(line.split()[-1]) for line in body.decode().splitlines()
                         if line.startswith("strata_partitions ")), 0)
            if held >= partitions or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        times = []
        for _ in range(samples):
            t0 = time.perf_counter()
            body = urllib.request.urlopen(url, timeout=10).read()
            times.append(time.perf_counter() - t0)
        series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
        return times, len(body), series


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer rounds and batches")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--partitions", type=int, default=1000)
    args = ap.parse_args()
    rounds = args.rounds or (2 if args.quick else 4)
    per_writer = 500 if args.quick else 2000

    print(f"produce: 1 broker, {WRITERS} writers x {per_writer} batches of {RECORDS_PER_BATCH} x "
          f"{len(RECORD)} B, acks=1, flush never, {rounds} rounds")
    off, on = throughput(rounds, per_writer)
    m_off, m_on = statistics.median(off), statistics.median(on)
    print(f"produce throughput  metrics off: {m_off:10.0f} batches/s (median)")
    print(f"produce throughput  metrics on:  {m_on:10.0f} batches/s (median)")
    print(f"on / off: {m_on / m_off:.3f}  (goal >= 0.95)")

    times, size, series = scrape_time(args.partitions, 10 if args.quick else 30)
    ms = sorted(t * 1000 for t in times)
    print(f"scrape: 1 broker holding {args.partitions} partitions (+ internal): {series} samples, {size / 1024:.0f} KiB")
    print(f"scrape time  median {statistics.median(ms):.1f} ms  max {ms[-1]:.1f} ms  (goal < 100 ms)")


if __name__ == "__main__":
    main()

"""What the log cleaner costs produce, in a running broker.

    .venv/bin/python -m benchmarks.bench_cleaning_produce [--quick] [--budgets 16777216,0]

One broker process per I/O budget (``cleaner_io_bytes_per_second``; 0 is unthrottled;
flush policy ``never``, so the disk does not hide the CPU cost) with:

* ``load``: ``WRITERS`` partitions, ``cleanup.policy=delete``; ``WRITERS`` concurrent writers
  send small ``acks=1`` batches to their own partition without pause for the whole run;
* ``table-0`` .. ``table-{CYCLES-1}``: compacted partitions-to-be, each filled beforehand with
  ``--table-mib`` of keyed 1 KiB records over 10,000 keys (8 MiB segments) while their
  policy is still ``delete``, so that nothing cleans them yet.

Then, ``CYCLES`` times: ``--idle`` seconds with nothing to clean, then one table is altered
to ``compact`` and the broker's cleaner works through it. A sampler counts acknowledged
batches every ``SAMPLE_S`` and notes whether a pass is writing a cleaned segment at that
moment (a ``*.cleaned`` file in a table's directory). The figure is the median rate of the
samples taken while cleaning over the median of the others: interleaving idle and cleaning
spans keeps a machine whose load drifts (other work on it) from passing for the cleaner.

Not a test: nothing here passes or fails; the figures are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from strata.client import AdminClient
from strata.client.admin import ConfigResource, ConfigResourceType
from strata.client.records import RecordBatchBuilder
from tests.integration.cluster import LocalCluster
from tests.integration.rawclient import RawClient, make_batch

MiB = 1 << 20
WRITERS = 8
RECORDS_PER_BATCH = 10
RECORD = b"x" * 100
TABLE_KEYS = 10_000
TABLE_VALUE = 1024
CYCLES = 3
SAMPLE_S = 0.5


@dataclass(slots=True)
class Result:
    budget: int
    idle_samples: int
    cleaning_samples: int
    idle_batches_per_s: float
    cleaning_batches_per_s: float

    @property
    def ratio(self) -> float:
        return self.cleaning_batches_per_s / self.idle_batches_per_s if self.idle_batches_per_s else 0.0


async def fill_table(bootstrap: str, topic: str, mib: int) -> None:
    client = RawClient(bootstrap, timeout_s=120)
    rng = random.Random(1)
    try:
        written = 0
        while written < mib * MiB:
            b = RecordBatchBuilder(max_batch_bytes=1 << 30)
            now = int(time.time() * 1000)
            for _ in range(64):
                b.append(now, b"key-%d" % rng.randrange(TABLE_KEYS), rng.randbytes(TABLE_VALUE // 2) * 2)
            batch = b.build()
            resp = await client.produce(topic, 0, batch, acks=1)
            assert resp["err"] == 0, resp
            written += len(batch)
    finally:
        await client.close()


async def timeline(c: LocalCluster, admin: AdminClient, table_dirs: list[Path], idle_s: float,
                   budget: int) -> Result:
    """Produce without pause; clean one table per cycle; sample the rate and whether a pass runs."""
    client = RawClient(c.bootstrap)
    batch = make_batch([RECORD] * RECORDS_PER_BATCH)
    done = 0
    stop = asyncio.Event()
    samples: list[tuple[float, bool]] = []

    async def writer(p: int) -> None:
        nonlocal done
        while not stop.is_set():
            resp = await client.produce("load", p, batch, acks=1)
            assert resp["err"] == 0, resp
            done += 1

    def cleaning() -> bool:
        return any(any(d.glob("*.cleaned")) for d in table_dirs)

    async def sampler() -> None:
        last, t_last = done, time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(SAMPLE_S)
            busy = cleaning()
            now = time.perf_counter()
            samples.append(((done - last) / (now - t_last), busy))
            last, t_last = done, now

    loop = asyncio.get_running_loop()
    try:
        for p in range(WRITERS):  # warm the connections and the leader cache
            await client.produce("load", p, batch, acks=1)
        async with asyncio.TaskGroup() as tg:
            for p in range(WRITERS):
                tg.create_task(writer(p))
            tg.create_task(sampler())
            for i in range(len(table_dirs)):
                await asyncio.sleep(idle_s)
                res = ConfigResource(ConfigResourceType.TOPIC, f"table-{i}", {"cleanup.policy": "compact"})
                await loop.run_in_executor(None, admin.alter_configs, [res])
                deadline = time.monotonic() + 60
                while not cleaning() and time.monotonic() < deadline:  # the pass starts
                    await asyncio.sleep(0.05)
                deadline = time.monotonic() + 600
                while cleaning() and time.monotonic() < deadline:  # ...and ends
                    await asyncio.sleep(0.05)
                print(f"    cycle {i + 1}: {sum(1 for _, b in samples if b)} cleaning samples so far", flush=True)
            await asyncio.sleep(idle_s)
            stop.set()
    finally:
        await client.close()
    idle = [r for r, busy in samples if not busy]
    busy = [r for r, b in samples if b]
    return Result(budget, len(idle), len(busy), statistics.median(idle) if idle else 0.0,
                  statistics.median(busy) if busy else 0.0)


def one_budget(budget: int, table_mib: int, idle_s: float) -> Result:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "broker.toml").write_text(f"cleaner_backoff_ms = 100\ncleaner_io_bytes_per_second = {budget}\n")
        with LocalCluster(root, n=1, extra_args=["--flush-policy", "never", "--config", str(root / "broker.toml")]) as c:
            c.wait_ready(timeout=60)
            with AdminClient(c.bootstrap) as admin:
                admin.create_topic("load", partitions=WRITERS, replication_factor=1)
                for i in range(CYCLES):
                    admin.create_topic(f"table-{i}", partitions=1, replication_factor=1,
                                       configs={"cleanup.policy": "delete", "segment.bytes": str(8 * MiB),
                                                "min.cleanable.dirty.ratio": "0.01"})
                    asyncio.run(fill_table(c.bootstrap, f"table-{i}", table_mib))
                dirs = [c.brokers[1].data_dir / f"table-{i}-0" for i in range(CYCLES)]
                return asyncio.run(timeline(c, admin, dirs, idle_s, budget))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller tables and shorter idle spans")
    ap.add_argument("--budgets", default=f"{16 * MiB},0", help="cleaner I/O budgets in bytes/s (0: unthrottled)")
    ap.add_argument("--table-mib", type=int, default=None, help="dirty bytes per table (default 64, quick 24)")
    ap.add_argument("--idle", type=float, default=None, help="seconds between cleans (default 8, quick 4)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args()
    table_mib = args.table_mib or (24 if args.quick else 64)
    idle_s = args.idle or (4.0 if args.quick else 8.0)
    results = []
    for budget in (int(b) for b in args.budgets.split(",")):
        label = f"{budget // MiB} MiB/s" if budget else "unthrottled"
        print(f"  budget {label}", flush=True)
        r = one_budget(budget, table_mib, idle_s)
        results.append(r)
        print(f"  budget {label}: idle {r.idle_batches_per_s:.0f} batches/s ({r.idle_samples} samples), "
              f"cleaning {r.cleaning_batches_per_s:.0f} ({r.cleaning_samples}), ratio {r.ratio:.2f}", flush=True)
    print()
    print(f"{'budget':>12} {'idle b/s':>9} {'cleaning b/s':>13} {'ratio':>6} {'samples idle/cleaning':>22}")
    for r in results:
        label = f"{r.budget // MiB} MiB/s" if r.budget else "unthrottled"
        print(f"{label:>12} {r.idle_batches_per_s:9.0f} {r.cleaning_batches_per_s:13.0f} {r.ratio:6.2f} "
              f"{f'{r.idle_samples}/{r.cleaning_samples}':>22}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) | {"ratio": r.ratio} for r in results], f, indent=2)


if __name__ == "__main__":
    main()

"""Log cleaner throughput, and what a cleaning pass costs an appender on the same event loop.

    .venv/bin/python -m benchmarks.bench_compaction [--quick] [--dir DIR] [--json FILE]

Throughput: a log of 1 KiB records (64 per batch, keys drawn at random from 10,000
or 1,000,000 distinct keys; values half-compressible), uncompressed and zstd, all
of it dirty. ``LogCleaner.clean`` runs pass after pass (default 128 MiB key map:
about 700,000 keys a pass) until the whole log is clean. The figure is MiB of dirty
log per second of cleaning (wall time over all passes), with what was read and
written.

Appender: an asyncio task appends 16 KiB batches (16 records of 1 KiB) to one log as
fast as it can, yielding to the loop after each append (``flush_policy=never``:
this measures CPU and the GIL, not fsync), while a ticker task measures how late
1 ms sleeps wake up (loop lag). First alone, then while
``LogCleaner.clean_in_executor`` cleans another partition's dirty log in a worker
thread, unthrottled and at two I/O budgets (read + write bytes per second). The
figures are appends/s during the clean, their ratio to appends/s alone, and the
loop lag (p99, max).

Not a test: nothing here passes or fails. Figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass

from strata.client.records import RecordBatchBuilder
from strata.storage import CleanerConfig, Log, LogCleaner, LogConfig

MiB = 1 << 20
RECORD = 1024
PER_BATCH = 64
LOG_CFG = LogConfig(segment_bytes=64 * MiB, cleanup_policy="compact", flush_policy="never",
                    retention_ms=None, min_cleanable_dirty_ratio=0.0)


@dataclass(slots=True)
class ThroughputRow:
    keys: int
    codec: str
    records: int
    dirty_mib: float
    passes: int
    seconds: float
    read_mib: float
    written_mib: float

    @property
    def mib_per_s(self) -> float:
        return self.dirty_mib / self.seconds


@dataclass(slots=True)
class AppenderRow:
    cleaner: str
    appends_per_s: float
    baseline_per_s: float
    clean_s: float
    cleaned_mib: float
    lag_p99_ms: float
    lag_max_ms: float

    @property
    def ratio(self) -> float:
        return self.appends_per_s / self.baseline_per_s


def values(n: int, rng: random.Random) -> list[bytes]:
    """Distinct ~1 KiB values that zstd halves (hex of random bytes)."""
    return [rng.randbytes(RECORD // 2 - 8).hex().encode() for _ in range(n)]


def build_log(path: str, records: int, keys: int, codec: str | None, seed: int = 1) -> Log:
    rng = random.Random(seed)
    pool = values(512, rng)
    lg = Log.open(path, LOG_CFG)
    n = 0
    while n < records:
        b = RecordBatchBuilder(compression=codec, max_batch_bytes=1 << 30)
        for _ in range(min(PER_BATCH, records - n)):
            b.append(1_700_000_000_000 + n, b"key-%07d" % rng.randrange(keys), pool[rng.randrange(512)])
            n += 1
        lg.append_as_leader(b.build(), 1)
    lg.roll()
    return lg


def throughput(root: str, records: int, keys: int, codec: str | None) -> ThroughputRow:
    d = tempfile.mkdtemp(dir=root)
    try:
        lg = build_log(d, records, keys, codec)
        dirty = lg.size_bytes
        cleaner = LogCleaner()
        gc.collect()
        passes, read, written = 0, 0, 0
        t0 = time.perf_counter()
        while lg.cleaned_offset < lg.log_end_offset:
            stats = cleaner.clean(lg, lg.log_end_offset, removable_offset=0)
            assert stats is not None
            passes += 1
            read += stats.bytes_read
            written += stats.bytes_written
        dt = time.perf_counter() - t0
        lg.close()
        return ThroughputRow(keys, codec or "none", records, dirty / MiB, passes, dt, read / MiB, written / MiB)
    finally:
        shutil.rmtree(d, ignore_errors=True)


async def _append_and_watch(lg: Log, batch: bytes, until: asyncio.Future | float) -> tuple[int, list[float]]:
    """Append ``batch`` in a loop and record loop lag, until ``until`` (a future, or a
    duration in seconds) is done. Returns (appends, lags in ms)."""
    loop = asyncio.get_running_loop()
    appends = 0
    lags: list[float] = []
    stop = loop.time() + until if isinstance(until, float) else None

    def finished() -> bool:
        return loop.time() >= stop if stop is not None else until.done()  # type: ignore[union-attr]

    async def ticker() -> None:
        while not finished():
            t = loop.time()
            await asyncio.sleep(0.001)
            lags.append((loop.time() - t - 0.001) * 1000)

    async def appender() -> None:
        nonlocal appends
        while not finished():
            lg.append_as_leader(batch, 1)
            appends += 1
            if appends % 4096 == 0:
                lg.truncate_fully_and_start_at(lg.log_end_offset, 1)  # keep the disk use flat
            await asyncio.sleep(0)

    await asyncio.gather(ticker(), appender())
    return appends, lags


async def appender_cost(root: str, hot_root: str, dirty_records: int,
                        variants: list[tuple[str, CleanerConfig]], baseline_s: float) -> list[AppenderRow]:
    rng = random.Random(2)
    b = RecordBatchBuilder()
    for i, v in enumerate(values(16, rng)):
        b.append(0, b"hot-%d" % i, v)
    batch = b.build()
    hot = Log.open(tempfile.mkdtemp(dir=hot_root), LogConfig(flush_policy="never", retention_ms=None))
    n, lags = await _append_and_watch(hot, batch, baseline_s)
    baseline = n / baseline_s
    lags.sort()
    rows = [AppenderRow("none (the appender alone)", baseline, baseline, 0.0, 0.0,
                        lags[int(len(lags) * 0.99)], lags[-1])]
    with ThreadPoolExecutor(1) as pool:
        for label, cfg in variants:
            d = tempfile.mkdtemp(dir=root)
            try:
                lg = build_log(d, dirty_records, 10_000, None, seed=3)
                dirty = lg.size_bytes
                cleaner = LogCleaner(cfg)
                gc.collect()
                loop = asyncio.get_running_loop()
                t0 = loop.time()
                task = asyncio.ensure_future(cleaner.clean_in_executor(lg, lg.log_end_offset, 0, executor=pool))
                n, lags = await _append_and_watch(hot, batch, task)
                dt = loop.time() - t0
                assert task.result() is not None
                lg.close()
            finally:
                shutil.rmtree(d, ignore_errors=True)
            lags.sort()
            rows.append(AppenderRow(label, n / dt, baseline, dt, dirty / MiB,
                                    lags[int(len(lags) * 0.99)] if lags else 0.0, lags[-1] if lags else 0.0))
    hot.close()
    return rows


def print_tables(tput: list[ThroughputRow], app: list[AppenderRow]) -> None:
    head = (f"{'keys':>9} {'codec':<5} {'records':>9} {'dirty MiB':>9} {'passes':>6} {'s':>7} "
            f"{'MiB/s':>7} {'read MiB':>9} {'written MiB':>11}")
    print(head)
    print("-" * len(head))
    for r in tput:
        print(f"{r.keys:>9,} {r.codec:<5} {r.records:>9,} {r.dirty_mib:>9.0f} {r.passes:>6} {r.seconds:>7.1f} "
              f"{r.mib_per_s:>7.1f} {r.read_mib:>9.0f} {r.written_mib:>11.0f}")
    print()
    head = (f"{'cleaner':<24} {'appends/s':>10} {'alone/s':>9} {'ratio':>6} {'clean s':>8} "
            f"{'cleaned MiB':>11} {'lag p99 ms':>10} {'lag max ms':>10}")
    print(head)
    print("-" * len(head))
    for a in app:
        print(f"{a.cleaner:<24} {a.appends_per_s:>10.0f} {a.baseline_per_s:>9.0f} {a.ratio:>6.2f} {a.clean_s:>8.1f} "
              f"{a.cleaned_mib:>11.0f} {a.lag_p99_ms:>10.1f} {a.lag_max_ms:>10.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller logs (about a minute)")
    ap.add_argument("--dir", default=None, help="where to write (default: the system temp dir)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--hot-dir", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                    help="where the appender's log lives (default /dev/shm: the appender measures CPU "
                         "and the GIL, so its own disk should not be the limit)")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="strata-bench-compaction-", dir=args.dir)
    hot_root = tempfile.mkdtemp(prefix="strata-bench-hot-", dir=args.hot_dir)
    if args.quick:
        cells = [(32_768, 10_000), (200_000, 100_000)]
        dirty, budgets, baseline_s = 32_768, (32 * MiB, 8 * MiB), 3.0
    else:
        cells = [(262_144, 10_000), (2_000_000, 1_000_000)]
        dirty, budgets, baseline_s = 131_072, (64 * MiB, 16 * MiB), 5.0
    variants = [("unthrottled, no GIL yield", CleanerConfig(yield_every_ms=None)),
                ("unthrottled", CleanerConfig()),
                *((f"{b // MiB} MiB/s", CleanerConfig(io_bytes_per_second=b)) for b in budgets)]
    try:
        tput = [throughput(root, records, keys, codec) for records, keys in cells for codec in (None, "zstd")]
        app = asyncio.run(appender_cost(root, hot_root, dirty, variants, baseline_s))
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(hot_root, ignore_errors=True)
    print_tables(tput, app)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"throughput": [asdict(r) | {"mib_per_s": r.mib_per_s} for r in tput],
                       "appender": [asdict(a) | {"ratio": a.ratio} for a in app]}, f, indent=2)


if __name__ == "__main__":
    main()

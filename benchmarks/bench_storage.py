"""Storage engine throughput beside the plain file I/O it is built on.

    .venv/bin/python -m benchmarks.bench_storage [--quick] [--dir DIR]

Appends: 1 KiB records in 1 MiB and in 16 KiB batches, under each flush policy,
next to a plain sequential ``os.write`` of the same bytes with the same fsync
cadence (every batch for ``always``, every 100 ms for ``interval``, only at the end
for ``never``). Reads: a sequential pass over the log with ``Log.read`` (1 MiB per
call, the slice's buffer taken as a server would send it) next to ``os.read`` of the
same segment files in 1 MiB chunks, both from a warm page cache; once with the
default CRC check on read (``crc``) and once with ``verify_crc_on_read=False``. The ratio column is log / plain; the
goal is >= 0.8 for 1 MiB batches and for reads.

Not a test: nothing here passes or fails. Numbers depend on the disk; compare
ratios, which put the engine's own overhead (validation, stamping, indexing, CRC on
read) in the light.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass

from strata.storage import Log, LogConfig
from tests.storage_helpers import make_batch

MiB = 1 << 20
RECORD = 1024
INTERVAL_MS = 100


@dataclass(slots=True)
class Row:
    workload: str
    policy: str
    total_bytes: int
    log_s: float
    plain_s: float
    fsyncs: int

    @property
    def ratio(self) -> float:
        return self.plain_s / self.log_s if self.log_s else 0.0


def build_batches(batch_bytes: int, count: int = 4) -> list[bytes]:
    """A few distinct batches of 1 KiB records, about ``batch_bytes`` each."""
    per = max(1, batch_bytes // (RECORD + 10))
    return [make_batch([bytes([i + j % 7]) * RECORD for j in range(per)], timestamp=1_700_000_000_000)
            for i in range(count)]


def fsync_counter() -> tuple[Callable[[], int], Callable[[], None]]:
    real = os.fsync
    n = [0]

    def counting(fd: int) -> None:
        n[0] += 1
        real(fd)

    os.fsync = counting

    def restore() -> None:
        os.fsync = real

    return (lambda: n[0]), restore


def append_log(path: str, batches: list[bytes], total: int, policy: str) -> tuple[float, int]:
    cfg = LogConfig(flush_policy=policy, flush_interval_ms=INTERVAL_MS, retention_ms=None)
    count, restore = fsync_counter()
    try:
        log = Log.open(path, cfg)
        written = 0
        i = 0
        t0 = time.perf_counter()
        base = count()
        while written < total:
            b = batches[i % len(batches)]
            log.append_as_leader(b, 1)
            if policy == "always":
                log.flush()
            written += len(b)
            i += 1
        fsyncs = count() - base
        log.close()  # the final fsync, as the plain writer does
        dt = time.perf_counter() - t0
        return dt, fsyncs
    finally:
        restore()


def append_plain(path: str, batches: list[bytes], total: int, policy: str) -> float:
    os.makedirs(path, exist_ok=True)
    fd = os.open(os.path.join(path, "plain.bin"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    written = 0
    i = 0
    last_sync = time.monotonic()
    t0 = time.perf_counter()
    while written < total:
        b = batches[i % len(batches)]
        os.write(fd, b)
        if policy == "always":
            os.fsync(fd)
        elif policy == "interval" and (time.monotonic() - last_sync) * 1000 >= INTERVAL_MS:
            os.fsync(fd)
            last_sync = time.monotonic()
        written += len(b)
        i += 1
    os.fsync(fd)
    os.close(fd)
    return time.perf_counter() - t0


def read_log(path: str, chunk: int, verify: bool = True) -> tuple[float, int]:
    log = Log.open(path, LogConfig(retention_ms=None, verify_crc_on_read=verify))
    t0 = time.perf_counter()
    offset = log.log_start_offset
    n = 0
    while (sl := log.read(offset, chunk)) is not None:
        n += len(sl.view())  # what a server sends: no copy
        offset = sl.next_offset
    dt = time.perf_counter() - t0
    log.close()
    return dt, n


def read_plain(path: str, chunk: int) -> tuple[float, int]:
    files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.endswith(".log"))
    t0 = time.perf_counter()
    n = 0
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        while data := os.read(fd, chunk):
            n += len(data)
        os.close(fd)
    return time.perf_counter() - t0, n


def run(root: str, quick: bool, repeat: int) -> list[Row]:
    rows: list[Row] = []
    big = 64 * MiB if quick else 1024 * MiB
    plans = [
        ("1 MiB batches", MiB, {"always": big if quick else 256 * MiB, "interval": big, "never": big}),
        ("16 KiB batches", 16 << 10, {"always": 16 * MiB if quick else 64 * MiB, "interval": big, "never": big}),
    ]
    for name, size, totals in plans:
        batches = build_batches(size)
        for policy, total in totals.items():
            best_log, best_plain, fsyncs = float("inf"), float("inf"), 0
            for _ in range(repeat):
                for kind in ("log", "plain"):
                    d = tempfile.mkdtemp(dir=root)
                    gc.collect()
                    os.sync()  # start each run with no writeback pending from the last
                    try:
                        if kind == "log":
                            dt, fsyncs = append_log(d, batches, total, policy)
                            best_log = min(best_log, dt)
                        else:
                            best_plain = min(best_plain, append_plain(d, batches, total, policy))
                    finally:
                        shutil.rmtree(d)
            rows.append(Row(f"append {name}", policy, total, best_log, best_plain, fsyncs))
    for name, size in (("1 MiB batches", MiB), ("16 KiB batches", 16 << 10)):
        d = tempfile.mkdtemp(dir=root)
        try:
            total = 256 * MiB if quick else 1024 * MiB
            append_log(d, build_batches(size), total, "never")
            read_plain(d, MiB)  # warm the page cache for both
            best_log, best_nocrc, best_plain = float("inf"), float("inf"), float("inf")
            for _ in range(repeat):
                dt, n1 = read_log(d, MiB)
                best_log = min(best_log, dt)
                dt, _ = read_log(d, MiB, verify=False)
                best_nocrc = min(best_nocrc, dt)
                dt, n2 = read_plain(d, MiB)
                best_plain = min(best_plain, dt)
                assert n1 == n2
            rows.append(Row(f"read {name}", "crc", n2, best_log, best_plain, 0))
            rows.append(Row(f"read {name}", "no crc", n2, best_nocrc, best_plain, 0))
        finally:
            shutil.rmtree(d)
    return rows


def print_table(rows: list[Row]) -> None:
    head = f"{'workload':<24} {'policy':<9} {'MiB':>6} {'log MiB/s':>10} {'plain MiB/s':>12} {'ratio':>6} {'fsyncs':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        mib = r.total_bytes / MiB
        print(f"{r.workload:<24} {r.policy:<9} {mib:>6.0f} {mib / r.log_s:>10.0f} {mib / r.plain_s:>12.0f} "
              f"{r.ratio:>6.2f} {r.fsyncs:>7}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="smaller sizes (about a minute)")
    ap.add_argument("--dir", default=None, help="where to write (default: the system temp dir)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per cell; the best is kept")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="strata-bench-", dir=args.dir)
    try:
        rows = run(root, args.quick, args.repeat or 3)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(rows)


if __name__ == "__main__":
    main()

"""How long a new group coordinator takes to load a ``__consumer_offsets`` partition, by history.

    .venv/bin/python -m benchmarks.bench_offsets_load [--quick] [--dir DIR] [--json FILE]

One partition of ``__consumer_offsets`` receives commits: 1,000 groups of 10 partitions
each (10,000 distinct keys), one commit request per batch, each committing one offset
(the worst case for headers per record). At checkpoints of the history (250k, 500k and 1M
commits; ``--quick``: 50k, 100k, 200k) the coordinator's own load routine
(``GroupCoordinator._load``, on a stand-in replica that leads the partition) reads it twice:

* **before** (``cleanup.policy=delete``, what the offsets topic was before compaction: with
  7 days of retention, every commit of the last week is replayed);
* **after**: a copy of the same partition as the broker leaves it with ``cleanup.policy=compact``:
  cleaned pass after pass by ``LogCleaner`` (tombstones removable everywhere) and its head of
  emptied batches trimmed by ``CleanerService.trim_head``, as the broker does after each pass
  of this topic. The active segment (16 MiB, the topic's ``segment.bytes``) is never
  cleaned, so what is replayed after is the live keys plus at most one segment of history.

The figures: load seconds, records replayed, bytes on disk. Not a test: nothing here
passes or fails; figures depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from strata.broker.config import BrokerConfig
from strata.broker.groups.coordinator import GroupCoordinator, Shard
from strata.broker.groups.offsets_log import OffsetValue, build_batches, offset_key, offset_value
from strata.broker.replication.cleaning import CleanerService
from strata.client.records import decode_batches
from strata.storage import CleanerConfig, Log, LogCleaner, LogConfig

MiB = 1 << 20
GROUPS = 1_000
PARTITIONS = 10
#: The offsets topic's segment size (``Controller._create_offsets_topic``).
SEGMENT_BYTES = 16 * MiB


@dataclass(slots=True)
class Row:
    commits: int
    policy: str
    load_s: float
    records_replayed: int
    log_bytes: int
    groups_loaded: int


@dataclass(slots=True)
class StandInReplica:
    """What ``GroupCoordinator._load`` and ``CleanerService.trim_head`` read of a replica: a
    leader whose whole log is committed."""

    log: Log
    key: tuple[str, int] = ("__consumer_offsets", 0)
    failed: bool = False
    is_leader: bool = True
    node: Any = field(default_factory=lambda: SimpleNamespace(term=1))

    @property
    def high_watermark(self) -> int:
        return self.log.log_end_offset

    @property
    def name(self) -> str:
        return "__consumer_offsets-0"

    async def wait_for_data(self, offset: int, timeout: float) -> None:
        return None


def append_commits(lg: Log, first: int, last: int) -> None:
    """Commits number ``first`` to ``last - 1``: group ``n % GROUPS`` commits one partition."""
    now = int(time.time() * 1000)
    for n in range(first, last):
        g, p = n % GROUPS, (n // GROUPS) % PARTITIONS
        record = (offset_key(f"group-{g}", "events", p), offset_value(OffsetValue(n)))
        for batch in build_batches([record], now):
            lg.append_as_leader(batch, 1)


async def load(lg: Log) -> tuple[float, int, int]:
    """Seconds, records replayed and groups known after the coordinator's load routine."""
    coordinator = GroupCoordinator.__new__(GroupCoordinator)  # only its load routine is used
    replica = StandInReplica(lg)
    shard = Shard(0, replica, 1)  # type: ignore[arg-type]
    coordinator.shards = {0: shard}
    replayed = 0
    start = lg.log_start_offset
    t0 = time.perf_counter()
    await coordinator._load(shard)
    elapsed = time.perf_counter() - t0
    assert shard.loaded
    # Records below the high watermark from the log start: what the load walked.
    offset = start
    while (sl := lg.read(offset, 1 << 20)) is not None:
        for b in decode_batches(sl.read_bytes()[: sl.size], skip_control=True):
            replayed += len(b.records)
        offset = sl.next_offset
    return elapsed, replayed, len(shard.groups)


def log_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.iterdir() if f.name.endswith(".log"))


async def compact_like_the_broker(path: Path, root: str) -> Log:
    """Clean until nothing dirty is left below the active segment, then trim the head."""
    lg = Log.open(path, LogConfig(segment_bytes=SEGMENT_BYTES, cleanup_policy="compact", flush_policy="never",
                                  retention_ms=None, min_cleanable_dirty_ratio=0.0))
    cleaner = LogCleaner(CleanerConfig())
    while cleaner.clean(lg, lg.log_end_offset, lg.log_end_offset) is not None:
        pass
    config = BrokerConfig(node_id=1, data_dir=Path(root), listen=("127.0.0.1", 0), peers={1: ("127.0.0.1", 0)})
    replica = StandInReplica(lg)
    service = CleanerService(config, {replica.key: replica}, lambda key, tid: lg.log_end_offset)  # type: ignore[dict-item]
    await service.trim_head(replica)  # type: ignore[arg-type]
    return lg


async def run(root: str, checkpoints: list[int]) -> list[Row]:
    rows: list[Row] = []
    history = Path(root) / "history" / "__consumer_offsets-0"
    lg = Log.open(history, LogConfig(segment_bytes=SEGMENT_BYTES, flush_policy="never", retention_ms=None))
    written = 0
    try:
        for n in checkpoints:
            append_commits(lg, written, n)
            written = n
            lg.flush()
            seconds, replayed, groups = await load(lg)
            rows.append(Row(n, "delete", seconds, replayed, log_bytes(history), groups))
            print(f"{n:>9,} commits  delete   load {seconds:6.2f}s  {replayed:>9,} records", flush=True)
            copy = Path(root) / f"compacted-{n}" / "__consumer_offsets-0"
            shutil.copytree(history, copy)
            clean = await compact_like_the_broker(copy, root)
            try:
                seconds, replayed, groups_after = await load(clean)
            finally:
                clean.close()
            assert groups_after == groups, (groups_after, groups)
            rows.append(Row(n, "compact", seconds, replayed, log_bytes(copy), groups_after))
            print(f"{n:>9,} commits  compact  load {seconds:6.2f}s  {replayed:>9,} records", flush=True)
            shutil.rmtree(copy.parent)
    finally:
        lg.close()
    return rows


def print_table(rows: list[Row]) -> None:
    print()
    print(f"{'commits':>10}  {'policy':<8} {'load s':>8} {'replayed':>10} {'MiB':>8} {'groups':>7}")
    for r in rows:
        print(f"{r.commits:>10,}  {r.policy:<8} {r.load_s:>8.2f} {r.records_replayed:>10,} "
              f"{r.log_bytes / MiB:>8.1f} {r.groups_loaded:>7}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="50k to 200k commits (about a minute)")
    ap.add_argument("--dir", default=None, help="where to write (default: the system temp dir)")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    ap.add_argument("--checkpoints", default=None, help="commit counts to load at, comma-separated")
    args = ap.parse_args()
    checkpoints = [50_000, 100_000, 200_000] if args.quick else [250_000, 500_000, 1_000_000]
    if args.checkpoints:
        checkpoints = [int(n) for n in args.checkpoints.split(",")]
    root = tempfile.mkdtemp(prefix="strata-bench-offsets-", dir=args.dir)
    try:
        rows = asyncio.run(run(root, checkpoints))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print_table(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in rows], f, indent=2)


if __name__ == "__main__":
    main()

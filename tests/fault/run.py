"""The chaos runner: for each seed, build a cluster, run a workload under the nemesis, check it.

    python -m tests.fault.run --seeds 1,2,10-12 --duration 300 --nodes 5 \\
        --workload tests.fault.workload:ToyLogWorkload

Each seed gets a directory under ``--report-dir`` holding ``report.txt``
(the checker's verdict and counts), ``history.jsonl`` (re-checkable offline
with ``--recheck``), ``schedule.json`` (the nemesis plan) and every node's
log. The exit status is 1 if any seed found an anomaly, so CI can gate on it.
A seed replays its fault schedule exactly; client timing, of course, differs.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import random
import shutil
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.fault.checker import CheckResult, check
from tests.fault.cluster import Cluster
from tests.fault.history import History
from tests.fault.nemesis import FaultKind, Nemesis, NemesisConfig, plan
from tests.fault.net import Network, cleanup_leftovers, require_harness
from tests.fault.workload import RunContext, Workload

DEFAULT_REPORTS = Path(__file__).with_name("reports")


def parse_seeds(text: str) -> list[int]:
    """A bare number N means seeds 0..N-1 (as ``make sim SEEDS=N``); lists and ranges
    (``"3,5,10-12"``, ``"7-7"`` for seed 7 alone) name seeds exactly."""
    if "," not in text and "-" not in text:
        return list(range(int(text)))
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            seeds.extend(range(int(lo), int(hi) + 1))
        elif part:
            seeds.append(int(part))
    return seeds


def load_workload(spec: str) -> Workload:
    """``module:Class`` (or a factory) -> a workload instance."""
    module, _, attr = spec.partition(":")
    factory = getattr(importlib.import_module(module), attr)
    workload: Workload = factory()
    return workload


@dataclasses.dataclass(slots=True, frozen=True)
class RunOptions:
    """One chaos run's knobs, shared by every seed."""

    duration: float
    nodes: int
    settle: float
    gap: tuple[float, float]
    fault_duration: tuple[float, float]
    report_dir: Path
    exclude: tuple[FaultKind, ...] = ()
    """Fault kinds left out of the schedule (e.g. one a known broker bug makes pointless)."""


Script = Callable[[RunContext, Nemesis], None]
"""Hand-made faults for one run (instead of the seeded schedule): called in the nemesis thread."""


#: Room per second of a run on the node with a small disk: a long soak's data must fit in
#: it (an unplanned full disk would show as divergent replicas), while the fill-disk fault
#: still fills it on purpose.
TMPFS_BYTES_PER_SECOND = 256 << 10


def tmpfs_size(base: int, duration: float) -> int:
    return max(base, int(duration * TMPFS_BYTES_PER_SECOND))


def run_seed(seed: int, workload: Workload, opts: RunOptions,
             script: Script | None = None) -> tuple[bool, Path]:
    """One seed end to end; returns (valid, report directory).

    With ``script``, the seeded schedule is replaced by the script's faults; healing,
    settling, final reads and the check are the same.
    """
    out = opts.report_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{workload.name}-seed{seed}"
    out.mkdir(parents=True, exist_ok=True)
    history = History()
    tmpfs_node = opts.nodes if workload.tmpfs_bytes else 0
    config = NemesisConfig(nodes=tuple(range(1, opts.nodes + 1)), duration=opts.duration,
                           gap=opts.gap, fault_duration=opts.fault_duration,
                           election_timeout=workload.election_timeout,
                           tmpfs_nodes=(tmpfs_node,) if tmpfs_node else (),
                           kinds=tuple(k for k in FaultKind if k not in opts.exclude),
                           settle=opts.settle)
    schedule = plan(seed, config) if script is None else []
    (out / "schedule.json").write_text(json.dumps(
        {"seed": seed, "config": dataclasses.asdict(config),
         "faults": [dataclasses.asdict(f) for f in schedule]}, indent=2, default=str))
    with Network(opts.nodes) as network, Cluster(
            workload.command, network=network, port=workload.port,
            tmpfs={tmpfs_node: tmpfs_size(workload.tmpfs_bytes, opts.duration)} if tmpfs_node else {}) as cluster:
        try:
            cluster.start_all()
            cluster.wait_all_ready()
            ctx = RunContext(seed, network, cluster, history, random.Random(seed))
            workload.setup(ctx)
            nemesis = Nemesis(cluster, history, schedule, network=network,
                              leader=lambda: workload.leader(ctx), settle=opts.settle,
                              after_start=lambda n: cluster.wait_ready(n))
            if script is not None:
                nemesis.script = lambda: script(ctx, nemesis)
            clients = threading.Thread(target=workload.run, args=(ctx,), name="workload",
                                       daemon=True)
            clients.start()
            nemesis.start()
            try:
                nemesis.join()
            finally:
                ctx.stop.set()
                clients.join(120)
            if clients.is_alive():
                raise TimeoutError("the workload did not stop within 120 s of the stop signal")
            workload.final(ctx)
        finally:
            history.write_jsonl(out / "history.jsonl")
            for node in cluster.nodes.values():
                if node.log_path.exists():
                    shutil.copy(node.log_path, out / f"node{node.id}.log")
    result = check(history)
    header = f"seed {seed}, workload {workload.name}, {opts.nodes} nodes, {opts.duration}s\n"
    (out / "report.txt").write_text(header + result.report())
    return result.valid, out


def check_report(out: Path) -> CheckResult:
    """Re-check the history a seed's report directory holds (tests assert on the result)."""
    return check(History.read_jsonl(out / "history.jsonl"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fault.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="1",
                        help="N (seeds 0..N-1) or a list/ranges like 3,5,10-12")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds of faults per seed (settling comes after)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--gap", type=float, nargs=2, default=(1.0, 5.0), metavar=("MIN", "MAX"))
    parser.add_argument("--fault-duration", type=float, nargs=2, default=(2.0, 10.0),
                        metavar=("MIN", "MAX"))
    parser.add_argument("--exclude", default="",
                        help="comma-separated fault kinds to leave out, e.g. fill-disk")
    parser.add_argument("--workload", default="tests.fault.workload:ToyLogWorkload",
                        help="module:Class implementing tests.fault.workload.Workload")
    parser.add_argument("--report-dir", type=Path, default=DEFAULT_REPORTS)
    parser.add_argument("--recheck", type=Path, metavar="HISTORY_JSONL",
                        help="only re-run the checker on a recorded history")
    args = parser.parse_args(argv)

    if args.recheck:
        result = check(History.read_jsonl(args.recheck))
        print(result.report(), end="")
        return 0 if result.valid else 1

    require_harness()
    for leftover in cleanup_leftovers():
        print(f"removed leftover {leftover}", file=sys.stderr)
    opts = RunOptions(args.duration, args.nodes, args.settle, tuple(args.gap),
                      tuple(args.fault_duration), args.report_dir,
                      tuple(FaultKind(k.strip()) for k in args.exclude.split(",") if k.strip()))
    failed = []
    for seed in parse_seeds(args.seeds):
        workload = load_workload(args.workload)
        valid, out = run_seed(seed, workload, opts)
        first = (out / "report.txt").read_text().splitlines()[1]
        print(f"seed {seed}: {first}  ({out})")
        if not valid:
            failed.append(seed)
    if failed:
        print(f"anomalies in seeds {failed}; replay one with --seeds {failed[0]}-{failed[0]}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the Raft simulator over many seeds, or replay one: ``python -m tests.sim.run``.

    python -m tests.sim.run --seeds 100000 [--start 0] [--nodes 3|5] [--steps 300]
    python -m tests.sim.run --replay SEED --nodes 5 --steps 300 [--fault ack_before_persist] [-v]

A failing seed prints the one-line command that replays it; a replay is bit-for-bit the same
run (the trace digest is printed so two replays can be compared).
"""

from __future__ import annotations

import argparse
import sys
import time

from strata.broker.raft.node import Fault

from .cluster import SimOptions, run_seed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.sim.run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=1000, help="how many seeds to run")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--nodes", type=int, default=0,
                    help="cluster size (default: alternate 3 and 5 by seed)")
    ap.add_argument("--steps", type=int, default=300, help="steps of the fault phase per seed")
    ap.add_argument("--no-swarm", action="store_true",
                    help="use the default fault rates for every seed (no swarm testing)")
    ap.add_argument("--quiesce", action="store_true",
                    help="idle groups quiesce (with --no-swarm; swarmed seeds decide per seed)")
    ap.add_argument("--fault", action="append", default=[],
                    choices=[f.value for f in Fault], help="break the core on purpose (tests)")
    ap.add_argument("--replay", type=int, default=None, metavar="SEED", help="replay one seed")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the trace (with --replay)")
    args = ap.parse_args(argv)
    faults = frozenset(Fault(f) for f in args.fault)

    def options(seed: int) -> SimOptions:
        nodes = args.nodes or (3 if seed % 2 == 0 else 5)
        return SimOptions(nodes=nodes, steps=args.steps, faults=faults, swarm=not args.no_swarm,
                          quiesce=args.quiesce)

    if args.replay is not None:
        opts = options(args.replay)
        out = run_seed(args.replay, opts, record=args.verbose)
        for ev in out.trace:
            print(*ev)
        if out.stall:
            print(f"known stall: {out.stall}")
        print(f"seed {out.seed}: {'FAIL ' + out.violation if out.violation else 'ok'}; "
              f"{out.steps} steps, {out.elections} terms with a leader, "
              f"{out.committed} committed batches, trace digest {out.digest:#010x}")
        return 1 if out.violation else 0

    failures = 0
    stalls = 0
    t0 = time.perf_counter()
    last_report = t0
    end = args.start + args.seeds
    for seed in range(args.start, end):
        opts = options(seed)
        out = run_seed(seed, opts)
        if out.stall:
            stalls += 1
        if out.violation:
            failures += 1
            print(f"FAIL seed {seed}: {out.violation}", flush=True)
            print(f"  replay: {opts.replay_command(seed)}", flush=True)
        now = time.perf_counter()
        done = seed - args.start + 1
        if now - last_report >= 5 or done == args.seeds:
            last_report = now
            rate = done / (now - t0)
            print(f"{done}/{args.seeds} seeds, {failures} failed, {stalls} known stalls, "
                  f"{rate:.1f} seeds/s", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

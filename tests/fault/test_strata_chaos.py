"""Fault injection against real Strata brokers: the short schedule ``make test`` runs.

* Two fixed seeds, 75 s of mixed faults each on three brokers in their own network
  namespaces. Together the two schedules inject every fault kind the nemesis has (kill,
  kill the leader, pause, the four partition shapes, corruption of a stopped minority, a
  whole-cluster restart) except the full disk, which currently wedges a broker for good
  (see ``test_regressions.py``; put it back in ``EXCLUDE``'s place once that is fixed).
  The checker must find nothing, and the run must have done enough (acknowledged
  writes, polls, faults) for "nothing" to mean something.
* The proof that the suite bites: the same workload against brokers started with the
  ``ack-before-commit`` test hook (``tests.fault.unsafe_broker``), under a scripted fault that isolates the
  leader and kills it, must be reported as ``lost`` writes; the same script against a
  correct broker must come out clean (so the script alone loses nothing).

Long soaks are ``make chaos`` (see docs/fault-injection.md). Reports of these runs go to
``tests/fault/reports/pytest-<test>/`` (kept: history, schedule, broker logs); a failing
assertion prints the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.checker import AnomalyKind
from tests.fault.nemesis import FaultKind, NemesisConfig, plan
from tests.fault.run import RunOptions, check_report, run_seed
from tests.fault.strata_workload import (
    StrataWorkload,
    isolate_and_kill_leader,
    unsafe_ack_before_commit,
)

SEEDS = (0, 28)
DURATION = 75.0
NODES = 3
EXCLUDE = (FaultKind.FILL_DISK,)
"""Left out until the broker survives a full disk (tests/fault/test_regressions.py)."""


def _options(report_dir: Path, duration: float = DURATION) -> RunOptions:
    return RunOptions(duration=duration, nodes=NODES, settle=10.0, gap=(1.0, 5.0),
                      fault_duration=(2.0, 10.0), report_dir=report_dir, exclude=EXCLUDE)


def test_the_short_schedule_covers_every_fault_kind() -> None:
    """The two seeds are chosen for coverage; a nemesis change that loses it must show here."""
    workload = StrataWorkload()
    kinds: set[FaultKind] = set()
    for seed in SEEDS:
        config = NemesisConfig(nodes=tuple(range(1, NODES + 1)), duration=DURATION,
                               election_timeout=workload.election_timeout,
                               tmpfs_nodes=(NODES,), settle=10.0,
                               kinds=tuple(k for k in FaultKind if k not in EXCLUDE))
        kinds |= {f.kind for f in plan(seed, config)}
    assert kinds == set(FaultKind) - set(EXCLUDE)


@pytest.mark.parametrize("seed", SEEDS)
def test_brokers_survive_mixed_faults(harness: None, reports: Path, seed: int) -> None:
    valid, out = run_seed(seed, StrataWorkload(), _options(reports))
    report = (out / "report.txt").read_text()
    result = check_report(out)
    assert valid, (f"seed {seed} found anomalies (replay: make chaos SEEDS={seed}-{seed} "
                   f"CHAOS_EXCLUDE=fill-disk):\n{report}")
    assert result.counts.acknowledged >= 1000, report
    assert result.counts.polls >= result.counts.acknowledged, report
    assert result.counts.faults >= 5, report


def test_scripted_leader_isolation_loses_nothing_on_a_correct_broker(
        harness: None, reports: Path) -> None:
    workload = StrataWorkload()
    valid, out = run_seed(0, workload, _options(reports, 0.0),
                          script=lambda ctx, nem: isolate_and_kill_leader(workload, ctx, nem))
    report = (out / "report.txt").read_text()
    assert valid, report
    assert check_report(out).counts.faults == 2, report


def test_ack_before_commit_is_caught_as_lost_writes(harness: None, reports: Path) -> None:
    workload = unsafe_ack_before_commit()
    valid, out = run_seed(0, workload, _options(reports, 0.0),
                          script=lambda ctx, nem: isolate_and_kill_leader(workload, ctx, nem))
    report = (out / "report.txt").read_text()
    result = check_report(out)
    assert not valid, f"brokers acknowledging before commit went unnoticed:\n{report}"
    lost = result.of_kind(AnomalyKind.LOST)
    assert lost, report
    assert all(a.partition is not None for a in lost), report

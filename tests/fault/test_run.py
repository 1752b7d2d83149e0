"""The chaos runner end to end on the toy log: a correct system passes, a lossy one is caught.

Short schedules (a few seconds) keep this in the normal test run; the long
runs are ``make chaos``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tests.fault.history import FinalRead, History
from tests.fault.run import main, parse_seeds
from tests.fault.workload import RunContext, ToyLogWorkload

SHORT = ["--duration", "3", "--nodes", "3", "--settle", "0.5", "--gap", "0.2", "0.4",
         "--fault-duration", "0.3", "0.6"]


@dataclasses.dataclass(slots=True)
class LossyToyLog(ToyLogWorkload):
    """The toy log with a planted bug: its final read forgets the first acknowledged record."""

    name: str = "lossy-toy-log"

    def final(self, ctx: RunContext) -> None:
        ToyLogWorkload.final(self, ctx)
        events = ctx.history.events()
        last = max(i for i, e in enumerate(events) if isinstance(e, FinalRead))
        read = events[last]
        assert isinstance(read, FinalRead)
        # History is append-only; a second final read of the partition replaces the first.
        ctx.history.final_read(read.partition, read.records[1:], topic=read.topic)


def test_parse_seeds() -> None:
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("7-7") == [7]
    assert parse_seeds("1,4-6,9") == [1, 4, 5, 6, 9]


def _report_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir())


def test_toy_log_survives_the_nemesis(harness: None, tmp_path: Path) -> None:
    assert main(["--seeds", "5-5", *SHORT, "--report-dir", str(tmp_path)]) == 0
    (out,) = _report_dirs(tmp_path)
    report = (out / "report.txt").read_text()
    assert "VALID" in report and "acknowledged writes: 0" not in report
    for name in ("history.jsonl", "schedule.json", "node1.log"):
        assert (out / name).exists()
    assert main(["--recheck", str(out / "history.jsonl")]) == 0


def test_lossy_system_is_reported(harness: None, tmp_path: Path) -> None:
    spec = f"{__name__}:LossyToyLog"
    assert main(["--seeds", "5-5", *SHORT, "--workload", spec, "--report-dir", str(tmp_path)]) == 1
    (out,) = _report_dirs(tmp_path)
    assert "[lost]" in (out / "report.txt").read_text()
    history = History.read_jsonl(out / "history.jsonl")
    assert any(isinstance(e, FinalRead) for e in history)

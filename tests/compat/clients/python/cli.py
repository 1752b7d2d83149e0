"""The command line and output every Python scenario driver shares (see ../README.md).

A driver module defines one function per scenario it can run and hands them to
:func:`main`, which parses the uniform command line, bounds the whole run with
``--timeout-ms``, and turns the outcome into the exit status the test side reads.
Events go to stdout as JSON lines, flushed at once, because the test reacts to them
while the driver is still running (a group member's assignment, a producer's acks).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

SCENARIOS = ("produce", "consume", "group", "admin", "delete", "metadata")
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_TIMEOUT = 0, 1, 2, 3
#: How long a poll blocks at most, so that the deadline and SIGTERM are noticed promptly.
POLL_MS = 200


class Timeout(Exception):
    """``--timeout-ms`` ran out before the scenario finished."""


@dataclass(slots=True)
class Args:
    """The parsed command line; each scenario reads the options it needs."""

    scenario: str
    bootstrap: str
    topic: str
    count: int = 0
    codec: str = "none"
    prefix: str = "v"
    rate: float = 0.0
    start: str = "earliest"
    group: str = ""
    session_timeout_ms: int = 6000
    partitions: int = 1
    replication_factor: int = 1
    add_partitions: int = 0
    config: dict[str, str] = field(default_factory=dict)
    alter: dict[str, str] = field(default_factory=dict)
    timeout_ms: int = 60_000
    deadline: float = 0.0
    #: Set by SIGTERM: a group member leaves its group and exits 0.
    stop: threading.Event = field(default_factory=threading.Event)

    @property
    def start_timestamp(self) -> int | None:
        """The ``--start`` timestamp in ms, or None for ``earliest``."""
        return None if self.start == "earliest" else int(self.start)

    @property
    def altered(self) -> dict[str, str]:
        """The topic's configs once the admin scenario altered them."""
        return {**self.config, **self.alter}

    def remaining_s(self) -> float:
        return max(0.0, self.deadline - time.monotonic())

    def check_deadline(self) -> None:
        if time.monotonic() >= self.deadline:
            raise Timeout(f"{self.scenario} did not finish within {self.timeout_ms} ms")


def key_of(i: int) -> str:
    return f"k-{i}"


def value_of(prefix: str, i: int) -> str:
    return f"{prefix}-{i}"


def shows(got: Mapping[str, str | None], want: Mapping[str, str]) -> bool:
    """Whether configs read back hold every wanted value."""
    return all(got.get(k) == v for k, v in want.items())


def emit(event: str, **fields: Any) -> None:
    """One event line on stdout, flushed (the test reads while the driver runs)."""
    sys.stdout.write(json.dumps({"event": event, **fields}, sort_keys=True) + "\n")
    sys.stdout.flush()


def text(data: bytes | str | None) -> str | None:
    if data is None or isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


def emit_record(partition: int, offset: int, key: Any, value: Any, timestamp: int) -> None:
    emit("record", partition=partition, offset=offset, key=text(key), value=text(value),
         timestamp=timestamp)  # fmt: skip


def emit_assigned(partitions: Sequence[int]) -> None:
    emit("assigned", partitions=sorted(partitions))


def emit_committed(offsets: Mapping[int, int]) -> None:
    emit("committed", offsets={str(p): o for p, o in sorted(offsets.items())})


def _key_value(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
    return key, value


def parse(argv: Sequence[str] | None, prog: str) -> Args:
    parser = argparse.ArgumentParser(prog=prog, description="A Kafka client scenario driver.")
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--codec", choices=CODECS, default="none")
    parser.add_argument("--prefix", default="v")
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--start", default="earliest")
    parser.add_argument("--group", default="")
    parser.add_argument("--session-timeout-ms", type=int, default=6000)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--replication-factor", type=int, default=1)
    parser.add_argument("--add-partitions", type=int, default=0)
    parser.add_argument("--config", type=_key_value, action="append", default=[])
    parser.add_argument("--alter", type=_key_value, action="append", default=[])
    parser.add_argument("--timeout-ms", type=int, default=60_000)
    ns = parser.parse_args(argv)
    if ns.start != "earliest" and not ns.start.isdigit():
        parser.error("--start is 'earliest' or a timestamp in ms")
    args = Args(
        scenario=ns.scenario, bootstrap=ns.bootstrap, topic=ns.topic, count=ns.count,
        codec=ns.codec, prefix=ns.prefix, rate=ns.rate, start=ns.start, group=ns.group,
        session_timeout_ms=ns.session_timeout_ms, partitions=ns.partitions,
        replication_factor=ns.replication_factor, add_partitions=ns.add_partitions,
        config=dict(ns.config), alter=dict(ns.alter), timeout_ms=ns.timeout_ms,
    )  # fmt: skip
    args.deadline = time.monotonic() + args.timeout_ms / 1000
    return args


class Pacer:
    """Spaces sends ``1/rate`` seconds apart (``rate`` 0: no pacing): a workload's shape."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.next_at = time.monotonic()

    def wait(self) -> None:
        if self.interval:
            self.next_at += self.interval
            delay = self.next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)


def main(
    scenarios: Mapping[str, Callable[[Args], None]],
    argv: Sequence[str] | None = None,
    prog: str = "driver",
) -> int:
    """Run the scenario the command line names; the exit status says how it ended."""
    args = parse(argv, prog)
    run = scenarios.get(args.scenario)
    if run is None:
        print(f"{prog}: scenario {args.scenario!r} is not available for this client", file=sys.stderr)
        return EXIT_USAGE
    signal.signal(signal.SIGTERM, lambda *_: args.stop.set())
    try:
        run(args)
    except Timeout as exc:
        emit("timeout", message=str(exc))
        return EXIT_TIMEOUT
    except Exception as exc:  # a driver reports every failure as an event, then exits 1
        emit("error", message=f"{type(exc).__name__}: {exc}")
        return EXIT_ERROR
    return EXIT_OK

"""Scenario driver for kcat, Debian's package (1.7.1 on librdkafka 2.0.2), see ../README.md.

kcat is a command-line tool, so this driver runs it and translates: lines to its stdin
for ``produce``, its ``-J`` JSON envelopes to ``record`` events, its ``% Group ...
rebalanced`` notices on stderr to ``assigned`` events. kcat prints no delivery report per
message, so ``produce`` acks carry no partition or offset: kcat exits 0 only when every
message was delivered (it exits 1 and names the failure otherwise). kcat has no admin
API; its ``metadata`` scenario is ``kcat -L``. The old librdkafka is the point: its
feature checks (compression only if Produce v0 is advertised, ZSTD only with Produce v7
and Fetch v10) are the ones a Kafka-compatible broker trips over.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from tests.compat.clients.python import cli
from tests.compat.clients.python.cli import Args, emit

KCAT = os.environ.get("KCAT", "kcat")
#: "% Group g rebalanced (memberid rdkafka-...): assigned: t [0], t [2]"
REBALANCE = re.compile(r"^% Group \S+ rebalanced \(memberid [^)]*\): (assigned|revoked): (.*)$")
PARTITION = re.compile(r"\[(\d+)\]")


def _kcat(*argv: str) -> list[str]:
    path = shutil.which(KCAT)
    if path is None:
        raise FileNotFoundError(f"{KCAT} is not on PATH (make compat-kcat installs it)")
    return [path, *argv]


def _common(args: Args) -> list[str]:
    # -u: unbuffered output, or records sit in kcat's stdio buffer while the test waits.
    return ["-u", "-b", args.bootstrap, "-X", f"socket.timeout.ms={min(args.timeout_ms, 30_000)}"]


def _run(argv: list[str], args: Args, on_line: Callable[[str], None], stdin: bytes | None = None,
         on_err: Callable[[str], None] | None = None) -> int:  # fmt: skip
    """Run kcat to its end or the deadline (then kill it), feeding its lines to handlers."""
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    errors: list[str] = []

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            errors.append(line)
            if on_err is not None:
                on_err(line)
            print(line, file=sys.stderr, flush=True)

    err_thread = threading.Thread(target=read_stderr, daemon=True)
    err_thread.start()
    stopper = threading.Thread(target=_forward_stop, args=(proc, args), daemon=True)
    stopper.start()
    if stdin is not None:
        assert proc.stdin is not None
        proc.stdin.write(stdin)
        proc.stdin.close()
    assert proc.stdout is not None
    for raw in proc.stdout:
        on_line(raw.decode(errors="replace").rstrip("\n"))
    try:
        code = proc.wait(timeout=max(0.1, args.remaining_s()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise cli.Timeout(f"kcat did not finish within {args.timeout_ms} ms") from None
    err_thread.join(timeout=5)
    if code != 0 and not args.stop.is_set():
        args.check_deadline()  # killed by the deadline: a timeout, not a kcat failure
        raise RuntimeError(f"kcat exited {code}: " + " | ".join(errors[-5:]))
    return code


def _forward_stop(proc: subprocess.Popen[bytes], args: Args) -> None:
    """SIGTERM for the driver becomes SIGTERM for kcat (it then leaves its group and exits);
    the deadline kills kcat, so that reading its stdout ends."""
    stopped = args.stop.wait(timeout=args.remaining_s())
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM if stopped else signal.SIGKILL)


def produce(args: Args) -> None:
    lines = "".join(f"{cli.key_of(i)}\t{cli.value_of(args.prefix, i)}\n" for i in range(args.count))
    _run(_kcat("-P", *_common(args), "-t", args.topic, "-K", "\t", "-z", args.codec,
               "-X", "acks=all", "-X", "enable.idempotence=true"),
         args, on_line=lambda line: None, stdin=lines.encode())  # fmt: skip
    for i in range(args.count):
        emit("ack", partition=None, offset=None, key=cli.key_of(i), value=cli.value_of(args.prefix, i))
    emit("done", count=args.count)


def _emit_envelope(line: str) -> None:
    if not line.startswith("{"):
        return
    msg = json.loads(line)
    cli.emit_record(msg["partition"], msg["offset"], msg.get("key"), msg.get("payload"), msg.get("ts", -1))


def consume(args: Args) -> None:
    start = "beginning" if args.start_timestamp is None else f"s@{args.start_timestamp}"
    _run(_kcat("-C", *_common(args), "-t", args.topic, "-o", start, "-c", str(args.count), "-J",
               "-q"), args, on_line=_emit_envelope)  # fmt: skip
    emit("done", count=args.count)


def group(args: Args) -> None:
    def on_err(line: str) -> None:
        match = REBALANCE.match(line)
        if match and match.group(1) == "assigned":
            cli.emit_assigned([int(p) for p in PARTITION.findall(match.group(2))])

    _run(_kcat("-C", *_common(args), "-G", args.group, "-J",
               "-X", "auto.offset.reset=earliest",
               "-X", f"session.timeout.ms={args.session_timeout_ms}",
               "-X", f"heartbeat.interval.ms={max(100, args.session_timeout_ms // 6)}",
               # kcat commits with librdkafka's auto-commit; often, so the test sees it soon.
               "-X", "auto.commit.interval.ms=100", args.topic),
         args, on_line=_emit_envelope, on_err=on_err)  # fmt: skip


def metadata(args: Args) -> None:
    lines: list[str] = []
    _run(_kcat("-L", *_common(args), "-J", "-t", args.topic), args, on_line=lines.append)
    doc = json.loads("".join(lines))
    (topic,) = doc["topics"]
    emit("metadata", brokers=sorted(b["id"] for b in doc["brokers"]), error=topic.get("error"),
         partitions=[{"partition": p["partition"], "leader": p["leader"],
                      "replicas": [r["id"] for r in p["replicas"]]}
                     for p in sorted(topic["partitions"], key=lambda p: p["partition"])])  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main({"produce": produce, "consume": consume, "group": group, "metadata": metadata},
                    argv, prog="kcat_driver")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

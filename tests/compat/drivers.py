"""The client matrix: which driver runs each client, what it can do, and how a test runs it.

A :class:`Client` names a scenario driver (``tests/compat/clients/README.md`` has their
common command line), the compression codecs the client has, and the scenarios it can
run. :class:`DriverProcess` starts one driver in its own process group, reads its JSON
event lines as they come (a test reacts to a group member's assignment while it runs),
and always stops it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CLIENTS_DIR = REPO_ROOT / "tests" / "compat" / "clients"
GO_BIN = REPO_ROOT / "build" / "compat" / "go"
JAVA_DIR = CLIENTS_DIR / "java" / "target"
NODE_DIR = CLIENTS_DIR / "node"
ALL_CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
ALL_SCENARIOS = frozenset({"produce", "consume", "group", "admin"})
#: Lines of a driver's stderr kept for a failure message.
STDERR_TAIL = 40
#: Events kept per driver; a scenario that prints more is a runaway.
MAX_EVENTS = 200_000

Event = dict[str, Any]


def _python(module: str) -> list[str]:
    return [sys.executable, "-m", f"tests.compat.clients.python.{module}"]


def _java() -> list[str]:
    classpath = f"{JAVA_DIR / 'classes'}:{JAVA_DIR / 'lib' / '*'}"
    return ["java", "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", classpath,
            "strata.compat.Driver"]  # fmt: skip


def _modules_missing(*modules: str) -> Callable[[], bool]:
    return lambda: any(importlib.util.find_spec(m) is None for m in modules)


@dataclass(frozen=True, slots=True)
class Client:
    """One Kafka client in the matrix."""

    name: str
    argv: Callable[[], list[str]]
    codecs: tuple[str, ...]
    scenarios: frozenset[str]
    #: The make target that installs or builds it.
    install: str
    #: True when the client is not installed or built here.
    absent: Callable[[], bool]

    def missing(self) -> str | None:
        if self.absent():
            return f"{self.name} is not installed or built: run `make {self.install}`"
        return None


CLIENTS: tuple[Client, ...] = (
    Client("kafka-python", lambda: _python("kafka_python_driver"), ALL_CODECS, ALL_SCENARIOS,
           "compat-python", _modules_missing("kafka", "snappy", "lz4", "zstandard")),
    Client("confluent-kafka", lambda: _python("confluent_driver"), ALL_CODECS, ALL_SCENARIOS,
           "compat-python", _modules_missing("confluent_kafka")),
    Client("aiokafka", lambda: _python("aiokafka_driver"), ALL_CODECS, ALL_SCENARIOS,
           "compat-python", _modules_missing("aiokafka", "cramjam")),
    # kcat: no admin API (its scenario is `kcat -L`, in the metadata test).
    Client("kcat", lambda: _python("kcat_driver"), ALL_CODECS,
           frozenset({"produce", "consume", "group"}), "compat-kcat",
           lambda: shutil.which("kcat") is None),
    # kafkajs: gzip built in, snappy by the kafkajs-snappy codec (lz4/zstd are native add-ons).
    Client("kafkajs", lambda: ["node", str(NODE_DIR / "driver.js")], ("none", "gzip", "snappy"),
           ALL_SCENARIOS, "compat-node",
           lambda: not (NODE_DIR / "node_modules" / "kafkajs").is_dir() or shutil.which("node") is None),
    Client("franz-go", lambda: [str(GO_BIN / "franz")], ALL_CODECS, ALL_SCENARIOS, "compat-go",
           lambda: not (GO_BIN / "franz").is_file()),
    Client("sarama", lambda: [str(GO_BIN / "sarama")], ALL_CODECS, ALL_SCENARIOS, "compat-go",
           lambda: not (GO_BIN / "sarama").is_file()),
    Client("java", _java, ALL_CODECS, ALL_SCENARIOS, "compat-java",
           lambda: not (JAVA_DIR / "classes" / "strata" / "compat" / "Driver.class").is_file()),
)  # fmt: skip
BY_NAME = {c.name: c for c in CLIENTS}


class DriverProcess:
    """One running driver: its events as they arrive, its exit, and a stop that always happens."""

    def __init__(self, client: Client, scenario: str, args: Sequence[str], *, timeout_s: float) -> None:
        self.client = client
        self.scenario = scenario
        self.timeout_s = timeout_s
        argv = [*client.argv(), scenario, *args, "--timeout-ms", str(int(timeout_s * 1000))]
        self.argv = argv
        self.events: list[Event] = []
        self.stderr: list[str] = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     start_new_session=True)  # fmt: skip
        self._readers = [
            threading.Thread(target=self._read_events, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _read_events(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                event = {"event": "garbage", "line": line}
            with self._changed:
                if len(self.events) < MAX_EVENTS:
                    self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            with self._changed:
                self.stderr.append(raw.decode(errors="replace").rstrip())
                del self.stderr[:-STDERR_TAIL]

    # -- reading --

    def of(self, kind: str) -> list[Event]:
        with self._changed:
            return [e for e in self.events if e["event"] == kind]

    def latest(self, kind: str) -> Event | None:
        found = self.of(kind)
        return found[-1] if found else None

    def describe(self) -> str:
        with self._changed:
            events = self.events[-15:]
            stderr = self.stderr[-STDERR_TAIL:]
        return (f"{self.client.name} {self.scenario} (exit {self.proc.poll()}): "
                f"{' '.join(self.argv)}\nlast events: {json.dumps(events, indent=1)}\n"
                f"stderr tail:\n" + "\n".join(stderr))  # fmt: skip

    def wait_for(self, condition: Callable[[DriverProcess], object], timeout_s: float, what: str) -> Any:
        """Wait until ``condition(self)`` is truthy; fail with the driver's story after the bound."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                value = condition(self)
                if value:
                    return value
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                if self.proc.poll() is not None and not self._readers[0].is_alive():
                    break  # exited and every event is read: nothing more will come
                self._changed.wait(timeout=min(left, 0.5))
        raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}\n{self.describe()}")

    # -- ending --

    def wait(self, timeout_s: float | None = None) -> int:
        """The exit status; a driver still running after the bound is killed (and it fails)."""
        try:
            code = self.proc.wait(timeout=self.timeout_s + 30 if timeout_s is None else timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"driver did not exit in time\n{self.describe()}") from None
        for t in self._readers:
            t.join(timeout=10)
        return code

    def terminate(self) -> None:
        """SIGTERM to the driver itself: a group member leaves its group and exits 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL of the driver's whole process group: a client that crashes."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def __enter__(self) -> DriverProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.kill()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def run_driver(client: Client, scenario: str, args: Sequence[str], *, timeout_s: float = 90.0
               ) -> DriverProcess:  # fmt: skip
    """Run a driver to its end; the result holds its events and exit status (``.proc.returncode``)."""
    with DriverProcess(client, scenario, args, timeout_s=timeout_s) as driver:
        driver.wait()
        return driver

"""Real broker processes for integration tests: free loopback ports, per-broker data dirs,
SIGKILL/SIGSTOP/restart, and a teardown that always stops them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


def free_ports(n: int) -> list[int]:
    """Ports the kernel says are free now (bound together so they are distinct)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_for(cond: Callable[[], object], timeout: float, what: str, interval: float = 0.05):
    """Poll ``cond`` until it returns something truthy; fail with ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = cond()
            if value:
                return value
        except Exception as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f": {last_exc!r}" if last_exc else ""))
        time.sleep(interval)


@dataclass
class BrokerProc:
    node_id: int
    port: int
    metrics_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen | None = None
    paused: bool = False
    #: The Kafka listener's port (``LocalCluster(kafka=True)``), else None.
    kafka_port: int | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def kafka_address(self) -> str:
        assert self.kafka_port is not None, "started without a Kafka listener"
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class LocalCluster:
    """N brokers on loopback. Use as a context manager (or call ``stop()``) so they always stop."""

    root: Path
    n: int = 3
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    brokers: dict[int, BrokerProc] = field(default_factory=dict)
    #: Also serve the Kafka API on a port of each broker's own (``kafka_bootstrap``).
    kafka: bool = False

    def __post_init__(self) -> None:
        per = 3 if self.kafka else 2
        ports = free_ports(per * self.n)
        for i in range(1, self.n + 1):
            d = self.root / f"broker-{i}"
            d.mkdir(parents=True, exist_ok=True)
            mine = ports[per * (i - 1): per * i]
            self.brokers[i] = BrokerProc(i, mine[0], mine[1], d, self.root / f"broker-{i}.log",
                                         kafka_port=mine[2] if self.kafka else None)

    @property
    def peers(self) -> str:
        return ",".join(f"{b.node_id}@127.0.0.1:{b.port}" for b in self.brokers.values())

    @property
    def bootstrap(self) -> str:
        return ",".join(b.address for b in self.brokers.values())

    @property
    def kafka_bootstrap(self) -> str:
        return ",".join(b.kafka_address for b in self.brokers.values())

    def command(self, b: BrokerProc) -> list[str]:
        return [
            sys.executable, "-m", "strata.broker.cli", "broker", "start",
            "--id", str(b.node_id), "--data-dir", str(b.data_dir),
            "--listen", b.address, "--peers", self.peers,
            "--metrics-listen", f"127.0.0.1:{b.metrics_port}",
            *(["--kafka-listen", b.kafka_address] if b.kafka_port is not None else []),
            *self.extra_args,
        ]

    def start(self, node_id: int | None = None) -> None:
        targets = [self.brokers[node_id]] if node_id is not None else list(self.brokers.values())
        env = {**os.environ, **self.env}
        for b in targets:
            assert not b.alive, f"broker {b.node_id} is already running"
            log = open(b.log_path, "ab")  # noqa: SIM115 - handed to the child
            b.proc = subprocess.Popen(self.command(b), stdout=log, stderr=subprocess.STDOUT, env=env,
                                      start_new_session=True)
            log.close()
            b.paused = False

    def wait_ready(self, node_id: int | None = None, timeout: float = 30.0) -> None:
        """Wait until each broker's /readyz answers 200 (joined, controller known, partitions loaded)."""
        import urllib.request

        targets = [self.brokers[node_id]] if node_id is not None else list(self.brokers.values())
        for b in targets:
            def ready(b=b):
                if not b.alive:
                    raise AssertionError(f"broker {b.node_id} exited: {self.tail(b.node_id)}")
                with urllib.request.urlopen(f"http://127.0.0.1:{b.metrics_port}/readyz", timeout=1) as r:
                    return r.status == 200
            wait_for(ready, timeout, f"broker {b.node_id} ready")

    def kill(self, node_id: int, sig: int = signal.SIGKILL) -> None:
        b = self.brokers[node_id]
        if b.proc and b.proc.poll() is None:
            if b.paused:
                os.kill(b.proc.pid, signal.SIGCONT)
            b.proc.send_signal(sig)
            b.proc.wait(timeout=30)
        b.paused = False

    def terminate(self, node_id: int, timeout: float = 30.0) -> int:
        b = self.brokers[node_id]
        assert b.proc is not None
        b.proc.send_signal(signal.SIGTERM)
        return b.proc.wait(timeout=timeout)

    def pause(self, node_id: int) -> None:
        b = self.brokers[node_id]
        assert b.proc is not None
        os.kill(b.proc.pid, signal.SIGSTOP)
        b.paused = True

    def resume(self, node_id: int) -> None:
        b = self.brokers[node_id]
        assert b.proc is not None
        os.kill(b.proc.pid, signal.SIGCONT)
        b.paused = False

    def tail(self, node_id: int, lines: int = 30) -> str:
        try:
            return "\n".join(self.brokers[node_id].log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self) -> None:
        for b in self.brokers.values():
            if b.proc and b.proc.poll() is None:
                if b.paused:
                    os.kill(b.proc.pid, signal.SIGCONT)
                b.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for b in self.brokers.values():
            if b.proc:
                try:
                    b.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(b.proc.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    b.proc.wait()

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

"""Loopback TCP throughput with iperf3, measured in the same run as the systems.

The catch-up read is reported as a ratio to what one TCP stream over loopback
carries on this machine at this moment, so that "how close to the wire" can be
compared across machines -- and, because it is measured in the same run, under
the same thermal and noisy-neighbour conditions as the systems themselves.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.omb.procs import ServerProcess, free_port


def parse_iperf3_json(text: str) -> float:
    """Bits per second received, from ``iperf3 -J`` output (sender side of a client run)."""
    data = json.loads(text)
    if "error" in data:
        raise RuntimeError(f"iperf3: {data['error']}")
    return float(data["end"]["sum_received"]["bits_per_second"])


def _wait_listening(port: int, server: ServerProcess, timeout: float = 10.0) -> None:
    """Wait for the iperf3 server's socket without connecting to it.

    A probe connection would count as the one-off (``-1``) server's single test,
    so readiness is read from the kernel's table of listening sockets instead.
    """
    needle = f":{port:04X} "
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.alive():
            raise RuntimeError(f"iperf3 server exited:\n{server.log_tail()}")
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                lines = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            # Field 2 is local_address (hex ip:port), field 4 the state; 0A = LISTEN.
            if any(needle in f"{ln.split()[1]} " and ln.split()[3] == "0A" for ln in lines):
                return
        time.sleep(0.05)
    raise TimeoutError(f"iperf3 server not listening on port {port} after {timeout}s")


def measure_loopback(seconds: float, binary: str = "iperf3") -> dict[str, Any]:
    """One TCP stream over 127.0.0.1 for ``seconds``; returns Gbit/s and MiB/s."""
    path = shutil.which(binary)
    if path is None:
        raise RuntimeError(f"{binary} not found on PATH (apt-get install iperf3, or `make bench`)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="strata-bench-iperf-") as tmp:
        server = ServerProcess(
            "iperf3",
            [path, "-s", "-1", "-B", "127.0.0.1", "-p", str(port)],
            Path(tmp) / "iperf3.log",
            Path(tmp),
        )
        server.start()
        try:
            _wait_listening(port, server)
            out = subprocess.run(
                [path, "-c", "127.0.0.1", "-p", str(port), "-t", f"{seconds:g}", "-J"],
                capture_output=True,
                text=True,
                timeout=seconds + 30,
            )
            bps = parse_iperf3_json(out.stdout)  # iperf3 -J exits 0 even on errors
        finally:
            server.stop()
    return {
        "tool": "iperf3",
        "seconds": seconds,
        "gbit_per_s": bps / 1e9,
        "mib_per_s": bps / 8 / (1 << 20),
    }

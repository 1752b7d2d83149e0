"""Server processes for the drivers: free loopback ports, process groups, cleanup.

Every server a driver starts is put in its own session (process group) and
registered here, so that one SIGKILL of the group also takes down anything the
server forked, and so that the runner can stop every server on any exit path
(normal return, exception, Ctrl-C, SIGTERM) through :func:`kill_all`.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_LIVE: dict[int, ServerProcess | ToolProcess] = {}


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port the kernel just handed out on ``host``.

    Binding port 0 and closing leaves a tiny race with other programs, which is
    acceptable on a benchmark machine; a driver whose server fails to bind
    reports the failure rather than silently using another port.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` distinct free ports (all sockets held until all are chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            socks.append(sock)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for sock in socks:
            sock.close()


def _spawn(argv: Sequence[str], cwd: Path, log_path: Path, *, pipe_stdout: bool) -> Any:
    """Start ``argv`` in a new session (its own process group), stderr appended to ``log_path``.

    With ``pipe_stdout`` stdout is a line-buffered text pipe for the caller to read;
    otherwise it goes to the log too.
    """
    log = open(log_path, "ab")  # noqa: SIM115 - owned by the child after Popen
    try:
        return subprocess.Popen(
            list(argv),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe_stdout else log,
            stderr=log if pipe_stdout else subprocess.STDOUT,
            text=pipe_stdout,
            bufsize=1 if pipe_stdout else -1,
            start_new_session=True,
        )
    finally:
        log.close()


class ServerProcess:
    """One server binary run in its own process group, with its output in a log file."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, cwd: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start (or restart) the server; output goes to ``log_path`` (appended)."""
        if self.alive():
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.proc = _spawn(self.argv, self.cwd, self.log_path, pipe_stdout=False)
        _LIVE[self.proc.pid] = self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError(f"{self.name} was never started")
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash, not a clean shutdown) and reap it."""
        if self.proc is None:
            return
        pid = self.proc.pid
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        _LIVE.pop(pid, None)

    def terminate(self) -> None:
        """SIGTERM the group without waiting: lets a caller stop several servers at once."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGTERM)

    def stop(self, grace: float = 3.0) -> None:
        """SIGTERM the group, then SIGKILL whatever is left after ``grace`` seconds."""
        if self.proc is None:
            return
        pid = self.proc.pid
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        self.kill()
        _LIVE.pop(pid, None)

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log, for error messages that say why it died."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True, slots=True)
class ToolExit:
    """How a load-generator run ended, with its own CPU (every thread, from ``wait4``)."""

    returncode: int
    stdout: list[str]
    user_s: float
    system_s: float
    wall_s: float

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.system_s


class ToolProcess:
    """A load generator (e.g. a JVM perf tool) whose stdout is read line by line as it runs.

    It runs in its own process group, registered for :func:`kill_all` like a server, and
    is reaped with ``os.wait4`` so that its CPU time (user and system, all threads) is
    known exactly, start-up included, without sampling /proc before it exits. Stderr
    goes to ``log_path``. ``cpus`` (e.g. ``"1"`` or ``"0-1"``) pins it with ``taskset``,
    which execs the tool: the pid, and the affinity of every thread it starts, are the
    tool's.
    """

    #: The most stdout lines kept: a perf tool prints one per interval, and a runaway
    #: tool must not grow the list without bound (the last lines are the summary).
    MAX_LINES = 10_000

    def __init__(
        self, argv: Sequence[str], log_path: Path, cwd: Path, cpus: str | None = None
    ) -> None:
        self.argv = (["taskset", "-c", cpus] if cpus else []) + list(argv)
        self.log_path = log_path
        self.cwd = cwd
        self.proc: subprocess.Popen[str] | None = None
        self._started = 0.0
        self._killed = threading.Event()

    def start(self) -> None:
        self.proc = _spawn(self.argv, self.cwd, self.log_path, pipe_stdout=True)
        self._started = time.monotonic()
        _LIVE[self.proc.pid] = self

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("tool was never started")
        return self.proc.pid

    def wait(self, on_line: Callable[[str], None] | None = None) -> ToolExit:
        """Read stdout to its end (calling ``on_line`` for each line), then reap. Blocking."""
        assert self.proc is not None and self.proc.stdout is not None
        lines: list[str] = []
        for raw in self.proc.stdout:
            line = raw.rstrip("\n")
            lines.append(line)
            if len(lines) > self.MAX_LINES:
                del lines[: len(lines) - self.MAX_LINES]
            if on_line is not None:
                on_line(line)
        self.proc.stdout.close()
        _, status, usage = os.wait4(self.proc.pid, 0)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        _LIVE.pop(self.proc.pid, None)
        return ToolExit(
            returncode=self.proc.returncode,
            stdout=lines,
            user_s=usage.ru_utime,
            system_s=usage.ru_stime,
            wall_s=time.monotonic() - self._started,
        )

    @property
    def killed(self) -> bool:
        return self._killed.is_set()

    def kill(self) -> None:
        """SIGKILL the group; :meth:`wait` then sees stdout end and reaps it."""
        if self.proc is None or self.proc.returncode is not None:
            return
        self._killed.set()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def kill_all() -> None:
    """SIGKILL every server still registered: the last line of defence on exit."""
    for server in list(_LIVE.values()):
        server.kill()
    _LIVE.clear()


atexit.register(kill_all)


async def wait_tcp(
    host: str, port: int, timeout: float, server: ServerProcess | None = None
) -> None:
    """Wait until ``host:port`` accepts a connection, failing early if ``server`` died."""
    deadline = time.monotonic() + timeout
    while True:
        if server is not None and not server.alive():
            raise RuntimeError(f"{server.name} exited during start-up:\n{server.log_tail()}")
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return

"""``strata dev``: a local cluster of real broker processes, kept by a small supervisor.

Each broker is its own process (``strata broker start``), with its data under
``DATA_DIR/broker-N`` and fixed ports so dashboards and scripts can rely on them: clients
on ``base_port + i`` and metrics on ``metrics_base_port + i``. The supervisor is there so
that a dev cluster behaves like a small production one, where failover can be tried:

* **Brokers never outlive it.** Each broker asks the kernel for SIGKILL when the
  supervisor dies (``PR_SET_PDEATHSIG``), so even a SIGKILLed supervisor leaves no broker
  holding its ports; each runs in its own process group, so a Ctrl-C or a closed terminal
  reaches only the supervisor, which then stops them in order (SIGTERM, so leaderships are
  handed over, then SIGKILL after ``stop_timeout_s``).
* **It tells the truth about readiness.** The banner comes once every broker's ``/readyz``
  answers 200, not when a port listens; a broker that exits first, or is not ready within
  ``ready_timeout_s``, is reported with the last lines of its log, and nothing is left
  running.
* **One broker's death is news, not the end.** It is reported in one line (exit status,
  log path) and the others keep serving; ``start N``, ``stop N``, ``restart N``,
  ``kill N`` and ``status`` typed on stdin (or sent to ``DATA_DIR/dev.sock``, see
  :func:`send_command`) bring it back or take others down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import enum
import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

#: How long every broker has to answer ``/readyz`` with 200 before ``strata dev`` gives up.
READY_TIMEOUT_S = 60.0
#: SIGTERM first (a broker hands its leaderships over in up to 5 s), SIGKILL after this.
STOP_TIMEOUT_S = 15.0
#: Between two ``/readyz`` probes of a starting broker.
READY_POLL_S = 0.1
#: Lines of a broker's log quoted when it fails to start or to get ready.
LOG_TAIL_LINES = 8
#: A command (stdin line or control-socket request) longer than this is refused.
MAX_COMMAND_BYTES = 256
#: Commands waiting for the one before them to finish; more are refused as busy.
MAX_PENDING_COMMANDS = 16
#: Control-socket connections served at once.
MAX_CONTROL_CONNECTIONS = 8
#: Longest answer ``send_command`` reads.
MAX_REPLY_BYTES = 64 << 10

CONTROL_SOCKET = "dev.sock"
LOCK_FILE = "dev.lock"
SUPERVISOR_LOG = "dev.log"

HELP = (
    "commands: start N | stop N | restart N | kill N (SIGKILL, as a crash) | status | help | quit"
    " -- N is a broker id, or several: 'stop 2 3'"
)

_PR_SET_PDEATHSIG = 1


class DevError(RuntimeError):
    """Talking to a running ``strata dev`` failed (none running, or it hung up)."""


class State(enum.Enum):
    """Where a broker is in its life, as the supervisor sees it."""

    NOT_STARTED = "not started"
    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"  # by a command or the cluster's shutdown
    EXITED = "exited"  # on its own: crashed, killed from outside, or failed to start


@dataclass(slots=True)
class DevNode:
    node_id: int
    port: int
    metrics_port: int
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    state: State = State.NOT_STARTED
    #: Size of the log when this run started: a failure quotes only what this run wrote.
    log_offset: int = 0
    started_at: float = 0.0
    #: Resolves to the exit status once the process has exited (set per run).
    exited: asyncio.Future[int] | None = None
    #: The broker's Kafka listener port (None: no Kafka listener).
    kafka_port: int | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.exited is not None and not self.exited.done()

    @property
    def pid(self) -> int:
        assert self.proc is not None, "the broker was never started"
        return self.proc.pid

    @property
    def exit_status(self) -> asyncio.Future[int]:
        assert self.exited is not None, "the broker was never started"
        return self.exited


def plan(nodes: int, data_dir: Path, host: str, base_port: int, metrics_base_port: int,
         kafka_base_port: int | None = None) -> list[DevNode]:
    return [
        DevNode(i, base_port + i - 1, metrics_base_port + i - 1, data_dir / f"broker-{i}",
                kafka_port=None if kafka_base_port is None else kafka_base_port + i - 1)
        for i in range(1, nodes + 1)
    ]


def broker_command(node: DevNode, peers: str, host: str, extra: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "strata.broker.cli", "broker", "start",
        "--id", str(node.node_id),
        "--data-dir", str(node.data_dir),
        "--listen", f"{host}:{node.port}",
        "--peers", peers,
        "--metrics-listen", f"{host}:{node.metrics_port}",
        *(["--kafka-listen", f"{host}:{node.kafka_port}"] if node.kafka_port is not None else []),
        *extra,
    ]


def listeners(members: list[DevNode], host: str) -> list[tuple[str, str]]:
    """``(protocol, bootstrap)`` for each protocol the brokers serve; the banner prints one
    line each, so a new listener (the Kafka one) is one more entry here."""
    out = [("strata", ",".join(f"{host}:{n.port}" for n in members))]
    if all(n.kafka_port is not None for n in members):
        out.append(("kafka", ",".join(f"{host}:{n.kafka_port}" for n in members)))
    return out


def banner(members: list[DevNode], data_dir: Path, host: str) -> list[str]:
    """What ``strata dev`` prints once every broker is ready."""
    served = listeners(members, host)
    lines = [f"Strata dev cluster: {len(members)} broker(s) ready, data under {data_dir}"]
    lines += [f"  bootstrap ({name}): {addresses}" for name, addresses in served]
    lines.append(f"  export STRATA_BOOTSTRAP={served[0][1]}")
    lines += [
        f"  broker {n.node_id}: strata {host}:{n.port}"
        + (f"  kafka {host}:{n.kafka_port}" if n.kafka_port is not None else "")
        + f"  metrics http://{host}:{n.metrics_port}/metrics  log {n.log_path}"
        for n in members
    ]
    n = min(2, members[-1].node_id)
    lines.append(f"Type 'restart {n}', 'stop {n}', 'start {n}', 'kill {n}' or 'status' and Enter to manage "
                 f"brokers (or send them to {data_dir / CONTROL_SOCKET}); Ctrl-C stops the cluster.")
    return lines


def describe_exit(returncode: int) -> str:
    """``exit status 1`` or ``killed by SIGKILL``: what a person reads in a report."""
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        return f"killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"killed by signal {-returncode}"


def log_tail(path: Path, since: int = 0, lines: int = LOG_TAIL_LINES, max_bytes: int = 64 << 10) -> list[str]:
    """The last ``lines`` non-empty lines written to ``path`` after byte ``since``.

    Reads at most ``max_bytes`` from the end, so a huge log costs nothing to quote.
    """
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            f.seek(max(since, end - max_bytes))
            data = f.read()
    except OSError:
        return []
    text = data.decode("utf-8", errors="replace").splitlines()
    return [line for line in text if line.strip()][-lines:]


def _failure(node: DevNode, what: str) -> list[str]:
    """A one-line verdict and the log lines that say why."""
    tail = log_tail(node.log_path, node.log_offset)
    if not tail:
        return [f"{what}; its log {node.log_path} has nothing from this run"]
    return [f"{what}. Last lines of {node.log_path}:", *(f"    {line}" for line in tail)]


# -- dying with the parent -------------------------------------------------------------------


def _prctl() -> Callable[..., int] | None:
    """libc's ``prctl``, looked up once, before any fork (Linux only)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_int
    return fn


_PRCTL = _prctl()


def die_with_parent(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent exits.

    Linux keeps this across ``exec``. The "parent" is the *thread* that forked us, so the
    supervisor forks brokers only from its main thread (the event loop's).
    """
    if _PRCTL is None:
        return False
    return _PRCTL(_PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) == 0


def _broker_preexec(supervisor_pid: int) -> Callable[[], None]:
    """Runs in the forked broker before exec: SIGKILL when the supervisor dies.

    If the supervisor died between fork and prctl, the signal will never come: give up now.
    Safe in a child of a process with no other threads (the supervisor has none: it
    resolves the host before starting and does all its I/O on one event loop).
    """

    def preexec() -> None:
        die_with_parent(signal.SIGKILL)
        if os.getppid() != supervisor_pid:
            os._exit(1)

    return preexec


# -- readiness ---------------------------------------------------------------------------


async def probe_ready(host: str, port: int, timeout_s: float = 1.0) -> tuple[bool, str]:
    """GET /readyz on a broker's metrics port: ``(ready, what it said)``."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write(f"GET /readyz HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
                data = b""
                while len(data) < 16 << 10:
                    chunk = await reader.read(4096)
                    if not chunk:
                        break
                    data += chunk
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return False, "its metrics port does not answer yet"
    head, _, body = data.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)
    if len(status) < 2 or not status[1].isdigit():
        return False, "its metrics port answered something that is not HTTP"
    reason = body.decode("utf-8", errors="replace").strip()
    return status[1] == b"200", reason or f"HTTP {status[1].decode()}"


# -- the supervisor ----------------------------------------------------------------------


def _controlling_terminal_on_stdin() -> bool:
    """Whether stdin is our controlling terminal (whose hang-up we must notice)."""
    try:
        fd = sys.stdin.fileno()
        os.tcgetpgrp(fd)
    except (AttributeError, ValueError, OSError):
        return False
    return True


@dataclass(slots=True)
class _Command:
    text: str
    reply: Callable[[str], None]
    done: asyncio.Future[None] | None = None


@dataclass(slots=True)
class Supervisor:
    """Starts the brokers, watches them, obeys commands, and stops them all when told."""

    members: list[DevNode]
    data_dir: Path
    host: str
    extra: list[str]
    echo: Callable[[str], None]
    command: Callable[[DevNode, str, str, list[str]], list[str]] = broker_command
    ready_timeout_s: float = READY_TIMEOUT_S
    stop_timeout_s: float = STOP_TIMEOUT_S
    #: The address /readyz probes use (``host`` resolved once; a wildcard means loopback).
    probe_host: str = ""
    serving: bool = False
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _hurry: asyncio.Event = field(default_factory=asyncio.Event)
    _queue: asyncio.Queue[_Command] = field(default_factory=lambda: asyncio.Queue(MAX_PENDING_COMMANDS))
    _stdin_buf: bytes = b""
    _stdin_tty: bool = False
    _control: asyncio.AbstractServer | None = None
    _control_conns: int = 0
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _log: TextIO | None = None

    @property
    def peers(self) -> str:
        return ",".join(f"{n.node_id}@{self.host}:{n.port}" for n in self.members)

    def say(self, line: str) -> None:
        """To the terminal, and to DATA_DIR/dev.log (the terminal may be gone: a SIGHUP)."""
        try:
            self.echo(line)
        except OSError:
            pass
        if self._log is not None:
            with contextlib.suppress(OSError):
                self._log.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}\n")
                self._log.flush()

    # -- run ------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        self._install_signals(loop)
        self._stdin_tty = _controlling_terminal_on_stdin()
        self._log = open(self.data_dir / SUPERVISOR_LOG, "a", encoding="utf-8")  # noqa: SIM115 - closed below
        try:
            socket_note = await self._start_control()
            self.say(f"starting {len(self.members)} broker(s), data under {self.data_dir} "
                     f"(ready within {self.ready_timeout_s:g} s, or reported)")
            for n in self.members:
                self._spawn(n)
            startup = asyncio.ensure_future(self._wait_all_ready())
            stop = asyncio.ensure_future(self._stop.wait())
            await asyncio.wait({startup, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not startup.done():
                startup.cancel()
                self.say("interrupted before every broker was ready")
                await self._stop_all()
                return 0
            stop.cancel()
            failures = startup.result()
            if failures:
                for line in failures:
                    self.say(line)
                self.say("stopping the other brokers: the cluster did not start")
                await self._stop_all()
                return 1
            for line in banner(self.members, self.data_dir, self.host):
                self.say(line)
            if socket_note:
                self.say(socket_note)
            self.serving = True
            self._attach_stdin(loop)
            worker = asyncio.ensure_future(self._commands())
            await self._stop.wait()
            worker.cancel()
            await self._stop_all()
            return 0
        finally:
            self._detach_stdin(loop)
            await self._stop_control()
            self._log.close()
            self._log = None

    def _install_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """SIGINT (Ctrl-C), SIGTERM and SIGHUP (the terminal closed) stop the cluster; a
        second one stops it now (SIGKILL). A SIGHUP ignored by whoever started us (nohup)
        stays ignored."""

        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            if sig == signal.SIGHUP and signal.getsignal(sig) == signal.SIG_IGN:
                continue
            loop.add_signal_handler(sig, self._request_stop, sig.name)

    def _request_stop(self, why: str) -> None:
        if self._stop.is_set():
            self._hurry.set()
            return
        self.say(f"{why}: stopping the cluster")
        self._stop.set()

    # -- brokers ----------------------------------------------------------------------------

    def _spawn(self, node: DevNode) -> None:
        """Start one broker (from the main thread: see :func:`die_with_parent`)."""
        loop = asyncio.get_running_loop()
        node.data_dir.mkdir(parents=True, exist_ok=True)
        with open(node.log_path, "ab") as log:
            log.write(f"--- strata dev: starting broker {node.node_id} at {time.strftime('%Y-%m-%d %H:%M:%S')} ---\n"
                      .encode())
            log.flush()
            node.log_offset = log.tell()
            node.proc = subprocess.Popen(
                self.command(node, self.peers, self.host, self.extra),
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=_broker_preexec(os.getpid()),
            )
        node.state = State.STARTING
        node.started_at = loop.time()
        node.exited = loop.create_future()
        self._watch_exit(node, node.proc, node.exited)

    def _watch_exit(self, node: DevNode, proc: subprocess.Popen[bytes], exited: asyncio.Future[int]) -> None:
        """Resolve ``exited`` when ``proc`` ends: a pidfd on the event loop, else polling."""
        loop = asyncio.get_running_loop()

        def reap() -> bool:
            rc = proc.poll()
            if rc is None:
                return False
            if not exited.done():
                exited.set_result(rc)
                self._on_exit(node, rc)
            return True

        try:
            pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):
            async def poll() -> None:
                while not reap():
                    await asyncio.sleep(0.2)
            task = loop.create_task(poll())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return

        def readable() -> None:
            loop.remove_reader(pidfd)
            os.close(pidfd)
            if not reap():  # readable means exited; waitpid may lag by a hair
                proc.wait()
                reap()

        loop.add_reader(pidfd, readable)

    def _on_exit(self, node: DevNode, rc: int) -> None:
        was = node.state
        node.state = State.STOPPED if was == State.STOPPING else State.EXITED
        if was == State.READY:
            self.say(f"broker {node.node_id} exited unexpectedly ({describe_exit(rc)}); the other brokers keep "
                     f"serving. Log: {node.log_path}. Type 'start {node.node_id}' to start it again.")
        # STARTING: the readiness wait reports it; STOPPING: whoever stopped it does.

    async def _wait_ready(self, node: DevNode) -> list[str]:
        """Empty once ``/readyz`` says 200; else why not (exited, or not ready in time)."""
        loop = asyncio.get_running_loop()
        assert node.exited is not None
        deadline = node.started_at + self.ready_timeout_s
        while True:
            if node.exited.done():
                return _failure(node, f"broker {node.node_id} could not start ({describe_exit(node.exited.result())})")
            ok, last = await probe_ready(self.probe_host, node.metrics_port)
            if ok and not node.exited.done():
                node.state = State.READY
                return []
            if loop.time() >= deadline:
                return _failure(node, f"broker {node.node_id} is not ready after {self.ready_timeout_s:g} s "
                                      f"(/readyz: {last})")
            await asyncio.wait({node.exited}, timeout=READY_POLL_S)

    async def _wait_all_ready(self) -> list[str]:
        results = await asyncio.gather(*(self._wait_ready(n) for n in self.members))
        return [line for lines in results for line in lines]

    async def _stop_nodes(self, nodes: list[DevNode], sig: int = signal.SIGTERM) -> None:
        """``sig`` to each, SIGKILL to those still running after the bound (or at a second Ctrl-C)."""
        running = [n for n in nodes if n.running]
        for n in running:
            n.state = State.STOPPING
            assert n.proc is not None
            with contextlib.suppress(ProcessLookupError):
                n.proc.send_signal(sig)
        if not running:
            return
        all_exited = asyncio.ensure_future(asyncio.wait({n.exit_status for n in running}))
        hurry = asyncio.ensure_future(self._hurry.wait())
        try:
            await asyncio.wait({all_exited, hurry}, timeout=self.stop_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            all_exited.cancel()
            hurry.cancel()
        late = [n for n in running if n.running]
        for n in late:
            self.say(f"broker {n.node_id} did not stop within {self.stop_timeout_s:g} s: SIGKILL")
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(n.pid, signal.SIGKILL)
        if late:
            await asyncio.wait({n.exit_status for n in late}, timeout=10)

    async def _stop_all(self) -> None:
        running = [n for n in self.members if n.running]
        if running:
            self.say(f"stopping {len(running)} broker(s)")
        await self._stop_nodes(running)
        self.say("stopped")

    # -- commands ---------------------------------------------------------------------------

    def _submit(self, text: str, reply: Callable[[str], None], done: asyncio.Future[None] | None = None) -> None:
        try:
            self._queue.put_nowait(_Command(text, reply, done))
        except asyncio.QueueFull:
            reply(f"busy: {MAX_PENDING_COMMANDS} commands are waiting; try again in a moment")
            if done is not None and not done.done():
                done.set_result(None)

    async def _commands(self) -> None:
        """One command at a time, in arrival order."""
        while True:
            cmd = await self._queue.get()
            try:
                await self._execute(cmd.text, cmd.reply)
            except Exception as exc:  # a command must never take the supervisor down
                cmd.reply(f"error: {cmd.text!r} failed: {exc!r}")
            finally:
                if cmd.done is not None and not cmd.done.done():
                    cmd.done.set_result(None)

    async def _execute(self, text: str, reply: Callable[[str], None]) -> None:
        words = text.split()
        if not words:
            return
        verb, args = words[0].lower(), words[1:]
        if verb == "help":
            reply(HELP)
            return
        if verb == "status":
            for n in self.members:
                reply(self._status_line(n))
            return
        if verb == "quit":
            reply("stopping the cluster")
            self._stop.set()
            return
        if verb not in ("start", "stop", "restart", "kill"):
            reply(f"unknown command {verb!r}; {HELP}")
            return
        by_id = {n.node_id: n for n in self.members}
        try:
            ids = [int(a) for a in args]
        except ValueError:
            ids = []
        if not ids or any(i not in by_id for i in ids):
            reply(f"{verb} needs broker ids among {', '.join(map(str, sorted(by_id)))}, e.g. '{verb} 2'")
            return
        for node in (by_id[i] for i in dict.fromkeys(ids)):
            if verb in ("stop", "restart", "kill"):
                await self._cmd_stop(node, reply, signal.SIGKILL if verb == "kill" else signal.SIGTERM,
                                     quiet_if_down=verb == "restart")
            if verb in ("start", "restart"):
                await self._cmd_start(node, reply)

    async def _cmd_stop(self, node: DevNode, reply: Callable[[str], None], sig: int, quiet_if_down: bool) -> None:
        if not node.running:
            if not quiet_if_down:
                reply(f"broker {node.node_id} is not running ({self._state_text(node)})")
            return
        await self._stop_nodes([node], sig)
        if node.running:
            reply(f"broker {node.node_id} (pid {node.pid}) does not exit even after SIGKILL")
        elif sig == signal.SIGKILL:
            reply(f"broker {node.node_id} killed (SIGKILL, as a crash)")
        else:
            reply(f"broker {node.node_id} stopped ({describe_exit(node.exited.result())})")

    async def _cmd_start(self, node: DevNode, reply: Callable[[str], None]) -> None:
        if node.running:
            reply(f"broker {node.node_id} is already running (pid {node.pid}, {node.state.value})")
            return
        self._spawn(node)
        reply(f"broker {node.node_id} starting (pid {node.pid}, log {node.log_path})")
        failure = await self._wait_ready(node)
        if not failure:
            took = asyncio.get_running_loop().time() - node.started_at
            reply(f"broker {node.node_id} is ready (pid {node.pid}, {took:.1f} s)")
            return
        for line in failure:
            reply(line)
        if node.running:
            reply(f"broker {node.node_id} keeps running; 'stop {node.node_id}' stops it")

    def _state_text(self, node: DevNode) -> str:
        if node.state in (State.EXITED, State.STOPPED) and node.exited is not None and node.exited.done():
            return f"{node.state.value}, {describe_exit(node.exited.result())}"
        return node.state.value

    def _status_line(self, node: DevNode) -> str:
        where = f"{self.host}:{node.port}"
        if node.running:
            up = asyncio.get_running_loop().time() - node.started_at
            return (f"broker {node.node_id}: {node.state.value}, pid {node.pid}, up {up:.0f} s, {where}, "
                    f"log {node.log_path}")
        return f"broker {node.node_id}: {self._state_text(node)}, {where}, log {node.log_path}"

    # -- stdin ------------------------------------------------------------------------------

    def _attach_stdin(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read commands from stdin when it is ours to read (not a background job's tty).

        Whether stdin is a terminal was asked when we started: a terminal that hung up
        meanwhile (closed while the brokers were starting, or just after the banner)
        answers as no terminal at all, and its end would pass for a closed pipe.
        """
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, ValueError, OSError):
            return  # no stdin
        if self._stdin_tty:
            try:
                foreground = os.tcgetpgrp(fd)
            except OSError:
                self._request_stop("the terminal closed")
                return
            if foreground != os.getpgrp():
                return  # a background job: reading would stop us (SIGTTIN); the socket still works
        try:
            loop.add_reader(fd, self._stdin_readable, loop, fd)
        except (ValueError, OSError):
            return  # one epoll cannot watch (a regular file, /dev/null)

    def _detach_stdin(self, loop: asyncio.AbstractEventLoop) -> None:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            loop.remove_reader(sys.stdin.fileno())

    def _stdin_readable(self, loop: asyncio.AbstractEventLoop, fd: int) -> None:
        try:
            data = os.read(fd, 1024)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EINTR):
                return
            data = b""
        if not data:
            if self._stdin_tty:
                try:
                    os.tcgetpgrp(fd)
                    return  # Ctrl-D: nothing to do
                except OSError:
                    # Hung up. Under make, the kernel's SIGHUP goes to make alone (the
                    # session leader), which waits for us: this is how we learn of it.
                    loop.remove_reader(fd)
                    self._request_stop("the terminal closed")
                    return
            loop.remove_reader(fd)  # a closed pipe: keep serving, stop listening
            return
        self._stdin_buf += data
        *complete, self._stdin_buf = self._stdin_buf.split(b"\n")
        if len(self._stdin_buf) > MAX_COMMAND_BYTES:  # no newline in sight: drop it now, refuse it at its end
            self._stdin_buf = b"x" * (MAX_COMMAND_BYTES + 1)
        for raw in complete:
            if len(raw) > MAX_COMMAND_BYTES:
                self.say(f"a command is at most {MAX_COMMAND_BYTES} bytes; {HELP}")
                continue
            line = raw.decode("utf-8", errors="replace").strip()
            if line:
                self._submit(line, self.say)

    # -- control socket ---------------------------------------------------------------------

    async def _start_control(self) -> str:
        """Listen on DATA_DIR/dev.sock (owner only). Returns a note if that is impossible."""
        path = self.data_dir / CONTROL_SOCKET
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # ours: we hold the data dir's dev.lock
        try:
            old = os.umask(0o177)
            try:
                self._control = await asyncio.start_unix_server(self._serve_control, path,
                                                                limit=MAX_COMMAND_BYTES * 2)
            finally:
                os.umask(old)
        except OSError as exc:
            return f"(no control socket at {path}: {exc.strerror or exc}; type commands here instead)"
        return ""

    async def _stop_control(self) -> None:
        if self._control is not None:
            self._control.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._control.wait_closed(), 2)
            self._control = None
            with contextlib.suppress(OSError):
                (self.data_dir / CONTROL_SOCKET).unlink()

    async def _serve_control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One command per connection: read a line, run it, answer, close."""
        if self._control_conns >= MAX_CONTROL_CONNECTIONS:
            writer.write(b"busy: too many control connections\n")
            writer.close()
            return
        self._control_conns += 1
        try:
            try:
                async with asyncio.timeout(5):
                    raw = await reader.readline()
            except (ValueError, TimeoutError, ConnectionError, asyncio.IncompleteReadError):
                writer.write(f"send one command of at most {MAX_COMMAND_BYTES} bytes and a newline\n".encode())
                return
            text = raw.decode("utf-8", errors="replace").strip()
            lines: list[str] = []
            if not self.serving:
                lines.append("the cluster is not serving yet (or any more)")
            else:
                done = asyncio.get_running_loop().create_future()
                self._submit(text, lines.append, done)
                await done
            writer.write("".join(f"{line}\n" for line in lines).encode())
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            self._control_conns -= 1
            writer.close()


def send_command(data_dir: Path, text: str, timeout_s: float = READY_TIMEOUT_S + STOP_TIMEOUT_S + 5) -> str:
    """Send one command (``restart 2``) to the ``strata dev`` running on ``data_dir``; return
    its answer. The wait covers a restart: a stop bound plus a readiness bound."""
    path = Path(data_dir) / CONTROL_SOCKET
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise DevError(f"no strata dev is running with data dir {data_dir} (no {path})") from None
        s.sendall(text.strip().encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        chunks: list[bytes] = []
        size = 0
        try:
            while size < MAX_REPLY_BYTES:
                chunk = s.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        except TimeoutError:
            raise DevError(f"strata dev on {data_dir} did not answer {text!r} within {timeout_s:g} s") from None
    return b"".join(chunks).decode("utf-8", errors="replace")


# -- entry point ---------------------------------------------------------------------------


def _lock(data_dir: Path) -> int | str:
    """Hold DATA_DIR/dev.lock for our life: one ``strata dev`` per data dir. Returns the
    lock's descriptor, or a message naming the process that holds it."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        return (f"another strata dev (pid {holder}) is running with data dir {data_dir}: stop it first "
                f"(Ctrl-C in its terminal, or kill {holder})")
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _probe_address(host: str) -> str:
    """``host`` as a numeric address to probe /readyz on (a wildcard listens on loopback too).

    Resolved here, once, so the event loop never resolves names in a thread: brokers are
    forked with a ``preexec_fn``, which is only safe in a process without threads.
    """
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    try:
        return str(socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0])
    except OSError:
        return host


def run_dev(nodes: int, data_dir: Path, host: str, base_port: int, metrics_base_port: int,
            extra: list[str], echo: Callable[[str], None] | None = None, *,
            command: Callable[[DevNode, str, str, list[str]], list[str]] = broker_command,
            ready_timeout_s: float = READY_TIMEOUT_S, stop_timeout_s: float = STOP_TIMEOUT_S,
            kafka_base_port: int | None = None) -> int:
    """Run the dev cluster until Ctrl-C, SIGTERM, SIGHUP or ``quit``; the exit status.

    0 after a requested stop; 1 when the cluster could not start (a broker exited or was
    not ready in time; nothing is left running) or another ``strata dev`` holds the data dir.
    """
    say = echo or (lambda line: print(line, flush=True))
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = _lock(data_dir)
    if isinstance(lock, str):
        say(f"error: {lock}")
        return 1
    # A parent that dies (make killed, the launching shell gone) is a closed terminal to us.
    if signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        die_with_parent(signal.SIGHUP)
    try:
        supervisor = Supervisor(plan(nodes, data_dir, host, base_port, metrics_base_port, kafka_base_port),
                                data_dir, host, extra,
                                say, command=command, ready_timeout_s=ready_timeout_s,
                                stop_timeout_s=stop_timeout_s, probe_host=_probe_address(host))
        return asyncio.run(supervisor.run())
    finally:
        os.close(lock)

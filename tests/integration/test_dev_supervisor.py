"""``strata dev`` as a supervisor, on real processes.

Real brokers for what a person does with a dev cluster: wait for the banner, kill a broker
and see the others serve, bring it back, close the terminal (SIGHUP), SIGKILL the supervisor.
Stand-in brokers (a small script with a listening port and a ``/readyz`` the test controls)
for what real brokers cannot be made to do on cue: stay unready, ignore SIGTERM, or be
probed while the test watches the banner not appear.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from strata.broker.cli.dev import DevError, send_command
from strata.client import AdminClient, Producer
from tests.integration.cluster import free_ports, wait_for

pytestmark = pytest.mark.integration

BANNER = r"^Strata dev cluster: (\d+) broker\(s\) ready"


def free_port_blocks(n: int, blocks: int = 2) -> list[int]:
    """Starts of ``blocks`` disjoint runs of ``n`` consecutive free loopback ports."""
    for _ in range(200):
        held: list[socket.socket] = []
        starts: list[int] = []
        try:
            for _ in range(blocks):
                (start,) = free_ports(1)
                if start + n > 65535:
                    raise OSError("too high")
                for port in range(start, start + n):
                    s = socket.socket()
                    held.append(s)
                    s.bind(("127.0.0.1", port))
                starts.append(start)
            return starts
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise AssertionError("no runs of consecutive free ports found")


def port_is_free(port: int) -> bool:
    """Could a new broker bind it now? (With SO_REUSEADDR, as the broker binds.)"""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def gone(pid: int) -> bool:
    """Exited (a zombie waiting for init to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc)."""
    parent: dict[int, int] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
    out: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p not in out}
        out |= frontier
    return {p for p in out if not gone(p)}


def children(pid: int) -> dict[int, int]:
    """``{broker id: pid}`` of the processes whose parent is ``pid`` (from /proc)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode().split("\0")
        except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
            continue
        if "--id" in argv and not gone(int(entry)):
            out[int(argv[argv.index("--id") + 1])] = int(entry)
    return out


def readyz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


class Dev:
    """A ``strata dev`` process under test: stdin to type into, stdout collected line by line."""

    def __init__(self, argv: list[str], data_dir: Path, base: int, mbase: int, nodes: int,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir, self.base, self.mbase, self.nodes = data_dir, base, mbase, nodes
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._eof = False
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, bufsize=1, start_new_session=True, env={**os.environ, **(env or {})})
        self._known: set[int] = set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._eof = True
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_line(self, pattern: str, timeout: float = 90.0, start: int = 0) -> int:
        """Index of the first line from ``start`` matching ``pattern``; fails with the output
        after ``timeout`` s, or at once when strata dev has exited without printing it."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i in range(start, len(self.lines)):
                    if rx.search(self.lines[i]):
                        return i
                start = len(self.lines)
                left = deadline - time.monotonic()
                if self._eof or left <= 0:
                    why = f"closed its output (exit status {self.proc.poll()})" if self._eof else f"timed out after {timeout}s"
                    raise AssertionError(f"strata dev {why} before a line matching {pattern!r}; it said:\n"
                                         + "\n".join(self.lines))
                self._cond.wait(left)

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def brokers(self) -> dict[int, int]:
        pids = children(self.proc.pid)
        self._known.update(pids.values())
        return pids

    def ports(self) -> list[int]:
        return [p for i in range(self.nodes) for p in (self.base + i, self.mbase + i)]

    def close(self) -> None:
        """Always: SIGKILL whatever is left (the brokers' own parent-death signal does the rest)."""
        self.brokers()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        for pid in self._known:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)


def start_real(tmp_path: Path, nodes: int = 3) -> Dev:
    base, mbase = free_port_blocks(nodes)
    data = tmp_path / "data"
    argv = [sys.executable, "-m", "strata.broker.cli", "dev", "--nodes", str(nodes), "--data-dir", str(data),
            "--base-port", str(base), "--metrics-base-port", str(mbase)]
    return Dev(argv, data, base, mbase, nodes)


# -- stand-in brokers ----------------------------------------------------------------------

FAKE_BROKER = r'''
import argparse, http.server, os, signal, socket, sys
from pathlib import Path

ap = argparse.ArgumentParser()
for flag in ("--id", "--listen", "--metrics-listen", "--data-dir"):
    ap.add_argument(flag)
a = ap.parse_args()
data = Path(a.data_dir)
print(f"stand-in broker {a.id} starting", flush=True)
if os.environ.get("FAKE_IGNORES_SIGTERM") == a.id:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("ignoring SIGTERM", flush=True)
else:
    signal.signal(signal.SIGTERM, lambda *_: (print("stand-in broker stopped", flush=True), os._exit(0)))
host, port = a.listen.rsplit(":", 1)
client_port = socket.create_server((host, int(port)))  # listening from the start, ready or not
print("waiting for a controller that never comes" if os.environ.get("FAKE_NEVER_READY") == a.id
      else "listening; ready once the test says so", flush=True)


class Readyz(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(data / "probes", "a") as f:
            f.write(self.path + "\n")
        ready = (data / "ready").exists()
        body = b"ready\n" if ready else b"no controller elected yet\n"
        self.send_response(200 if ready else 503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


mhost, mport = a.metrics_listen.rsplit(":", 1)
http.server.HTTPServer((mhost, int(mport)), Readyz).serve_forever()
'''

DRIVER = r'''
import json, sys
from pathlib import Path
from strata.broker.cli.dev import run_dev

cfg = json.loads(sys.argv[1])

def command(node, peers, host, extra):
    return [sys.executable, cfg["fake"], "--id", str(node.node_id), "--listen", f"{host}:{node.port}",
            "--metrics-listen", f"{host}:{node.metrics_port}", "--data-dir", str(node.data_dir)]

sys.exit(run_dev(cfg["nodes"], Path(cfg["data_dir"]), "127.0.0.1", cfg["base"], cfg["mbase"], [],
                 command=command, ready_timeout_s=cfg["ready_timeout_s"], stop_timeout_s=cfg["stop_timeout_s"]))
'''


def fake_cluster(tmp_path: Path, nodes: int = 3, ready: tuple[int, ...] = (1, 2, 3), ready_timeout_s: float = 60,
                 stop_timeout_s: float = 15) -> tuple[list[str], Path, int, int]:
    """(argv of a ``run_dev`` over stand-in brokers, data dir, base port, metrics base port)."""
    base, mbase = free_port_blocks(nodes)
    data = tmp_path / "data"
    fake = tmp_path / "fake_broker.py"
    fake.write_text(FAKE_BROKER)
    driver = tmp_path / "dev_driver.py"
    driver.write_text(DRIVER)
    for i in ready:
        (data / f"broker-{i}").mkdir(parents=True, exist_ok=True)
        (data / f"broker-{i}" / "ready").touch()
    cfg = {"fake": str(fake), "nodes": nodes, "data_dir": str(data), "base": base, "mbase": mbase,
           "ready_timeout_s": ready_timeout_s, "stop_timeout_s": stop_timeout_s}
    return [sys.executable, str(driver), json.dumps(cfg)], data, base, mbase


def start_fake(tmp_path: Path, nodes: int = 3, ready: tuple[int, ...] = (1, 2, 3), ready_timeout_s: float = 60,
               stop_timeout_s: float = 15, env: dict[str, str] | None = None) -> Dev:
    argv, data, base, mbase = fake_cluster(tmp_path, nodes, ready, ready_timeout_s, stop_timeout_s)
    return Dev(argv, data, base, mbase, nodes, env)


# -- real brokers --------------------------------------------------------------------------


def test_banner_comes_once_every_broker_is_ready_and_sighup_stops_them_all_freeing_the_ports(
        tmp_path: Path) -> None:
    dev = start_real(tmp_path)
    try:
        dev.wait_line(BANNER)
        # The banner's promise: every broker answers /readyz with 200 the moment it is printed.
        assert [readyz(dev.mbase + i) for i in range(3)] == [200, 200, 200]
        assert re.search(r"restart 2.*stop 2.*start 2", dev.output), "the banner must say how to restart a broker"
        pids = dev.brokers()
        assert sorted(pids) == [1, 2, 3]

        os.kill(dev.proc.pid, signal.SIGHUP)  # the terminal closed
        assert dev.proc.wait(timeout=60) == 0, dev.output
        assert "SIGHUP: stopping the cluster" in dev.output and dev.lines[-1] == "stopped"
        assert all(gone(pid) for pid in pids.values()), dev.output
        busy = [p for p in dev.ports() if not port_is_free(p)]
        assert not busy, f"ports still taken after the supervisor stopped: {busy}"
        for i in (1, 2, 3):  # stopped in order (SIGTERM), not killed
            assert f"broker {i} stopped" in (dev.data_dir / f"broker-{i}" / "broker.log").read_text()
    finally:
        dev.close()


def test_a_killed_broker_is_reported_the_others_keep_serving_and_restart_brings_it_back(tmp_path: Path) -> None:
    dev = start_real(tmp_path)
    try:
        dev.wait_line(BANNER)
        bootstrap = ",".join(f"127.0.0.1:{dev.base + i}" for i in range(3))
        with AdminClient(bootstrap) as admin, Producer(bootstrap=bootstrap, acks="all") as producer:
            admin.create_topic("events", partitions=3, replication_factor=3)
            for i in range(30):
                producer.send("events", value=b"before %d" % i, key=b"%d" % i).result(timeout=30)

            old_pid = dev.brokers()[2]
            mark = len(dev.lines)
            os.kill(old_pid, signal.SIGKILL)
            at = dev.wait_line(r"^broker 2 exited unexpectedly", start=mark)
            line = dev.lines[at]
            assert "killed by SIGKILL" in line and str(dev.data_dir / "broker-2" / "broker.log") in line, line
            assert "start 2" in line, line

            assert dev.proc.poll() is None, "one broker's death must not stop the cluster"
            assert sorted(dev.brokers()) == [1, 3]
            for i in range(30):  # a majority of every partition is alive: acks=all still commits
                producer.send("events", value=b"during %d" % i, key=b"%d" % i).result(timeout=30)

            mark = len(dev.lines)
            dev.send("start 2")
            dev.wait_line(r"^broker 2 is ready", start=mark)
            assert readyz(dev.mbase + 1) == 200

            def rejoined() -> bool:
                return all(2 in p.isr for p in admin.describe_topic("events").partitions)
            wait_for(rejoined, 60, "broker 2 back in every partition's ISR")

            before = dev.brokers()[2]
            answer = send_command(dev.data_dir, "restart 2")
            assert "broker 2 stopped (exit status 0)" in answer and "broker 2 is ready" in answer, answer
            assert dev.brokers()[2] != before
            status = send_command(dev.data_dir, "status")
            assert re.findall(r"^broker (\d): ready", status, re.M) == ["1", "2", "3"], status

        dev.proc.send_signal(signal.SIGTERM)
        assert dev.proc.wait(timeout=60) == 0, dev.output
    finally:
        dev.close()


def test_a_sigkilled_supervisor_takes_every_broker_down_and_frees_the_ports(tmp_path: Path) -> None:
    dev = start_real(tmp_path)
    try:
        dev.wait_line(BANNER)
        pids = dev.brokers()
        assert sorted(pids) == [1, 2, 3]
        dev.proc.kill()
        dev.proc.wait(timeout=10)
        wait_for(lambda: all(gone(pid) for pid in pids.values()), 10, "every broker to die with its supervisor")
        wait_for(lambda: all(port_is_free(p) for p in dev.ports()), 10, "every port to be free")
        with pytest.raises(DevError, match="no strata dev is running"):
            send_command(dev.data_dir, "status")  # the stale socket file answers nothing
    finally:
        dev.close()


def test_a_broker_that_cannot_start_is_reported_with_the_reason_from_its_log(tmp_path: Path) -> None:
    base, mbase = free_port_blocks(3)
    squatter = socket.create_server(("127.0.0.1", base + 2))  # broker 3's port, taken
    data = tmp_path / "data"
    dev = Dev([sys.executable, "-m", "strata.broker.cli", "dev", "--nodes", "3", "--data-dir", str(data),
               "--base-port", str(base), "--metrics-base-port", str(mbase)], data, base, mbase, 3)
    try:
        assert dev.proc.wait(timeout=90) == 1, dev.output
        out = dev.output
        assert re.search(r"^broker 3 could not start \(exit status \d\)\. Last lines of .*broker-3/broker\.log:$",
                         out, re.M), out
        assert re.search(r"^    .*in use", out, re.M | re.I), "the reason from the broker's log must be quoted"
        assert not re.search(BANNER, out, re.M)
        assert "the cluster did not start" in out
        assert not dev.brokers(), "brokers 1 and 2 must not be left running"
        assert all(port_is_free(p) for p in dev.ports() if p != base + 2)
    finally:
        squatter.close()
        dev.close()


# -- stand-in brokers ----------------------------------------------------------------------


def test_the_banner_waits_for_readyz_not_for_a_listening_port(tmp_path: Path) -> None:
    dev = start_fake(tmp_path, ready=(1, 3))
    try:
        probes = dev.data_dir / "broker-2" / "probes"
        # Broker 2 listens on both its ports but answers 503: the supervisor keeps asking...
        wait_for(lambda: probes.exists() and len(probes.read_text().split()) >= 3, 30,
                 "three /readyz probes of broker 2")
        assert set(probes.read_text().split()) == {"/readyz"}
        # ...and says nothing about being ready meanwhile.
        assert not re.search(BANNER, dev.output, re.M), dev.output
        (dev.data_dir / "broker-2" / "ready").touch()
        dev.wait_line(BANNER, timeout=30)
    finally:
        dev.close()


def test_a_broker_that_never_gets_ready_is_reported_after_the_bound_with_its_log(tmp_path: Path) -> None:
    dev = start_fake(tmp_path, ready=(1, 3), ready_timeout_s=2, env={"FAKE_NEVER_READY": "2"})
    try:
        assert dev.proc.wait(timeout=60) == 1, dev.output
        out = dev.output
        assert re.search(r"^broker 2 is not ready after 2 s \(/readyz: no controller elected yet\)\. Last lines of "
                         r".*broker-2/broker\.log:$", out, re.M), out
        assert "    waiting for a controller that never comes" in out
        assert not re.search(BANNER, out, re.M)
        assert not dev.brokers() and all(port_is_free(p) for p in dev.ports())
    finally:
        dev.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_stop_signal_stops_every_broker_and_one_ignoring_sigterm_is_killed_after_the_bound(
        tmp_path: Path, sig: signal.Signals) -> None:
    dev = start_fake(tmp_path, stop_timeout_s=2, env={"FAKE_IGNORES_SIGTERM": "3"})
    try:
        dev.wait_line(BANNER, timeout=30)
        pids = dev.brokers()
        assert sorted(pids) == [1, 2, 3]
        os.kill(dev.proc.pid, sig)
        assert dev.proc.wait(timeout=30) == 0, dev.output
        assert f"{sig.name}: stopping the cluster" in dev.output
        assert "broker 3 did not stop within 2 s: SIGKILL" in dev.output
        assert all(gone(pid) for pid in pids.values())
        for i in (1, 2):
            assert "stand-in broker stopped" in (dev.data_dir / f"broker-{i}" / "broker.log").read_text()
    finally:
        dev.close()


def test_commands_are_checked_and_a_closed_stdin_leaves_the_cluster_serving(tmp_path: Path) -> None:
    dev = start_fake(tmp_path)
    try:
        dev.wait_line(BANNER, timeout=30)
        mark = len(dev.lines)
        dev.send("stop 9")
        dev.wait_line(r"^stop needs broker ids among 1, 2, 3", start=mark)
        dev.send("frobnicate 2")
        dev.wait_line(r"^unknown command 'frobnicate'; commands: start N", start=mark)
        dev.send("x" * 1000)
        dev.wait_line(r"^a command is at most 256 bytes", start=mark)
        dev.send("stop 2")
        dev.wait_line(r"^broker 2 stopped \(exit status 0\)", start=mark)
        dev.send("stop 2")
        dev.wait_line(r"^broker 2 is not running \(stopped, exit status 0\)", start=mark)
        assert sorted(dev.brokers()) == [1, 3]

        assert dev.proc.stdin is not None
        dev.proc.stdin.close()  # EOF: no more typing, but the cluster keeps serving
        answer = send_command(dev.data_dir, "start 2")
        assert "broker 2 is ready" in answer, answer
        assert sorted(dev.brokers()) == [1, 2, 3] and dev.proc.poll() is None
        assert send_command(dev.data_dir, "quit").strip() == "stopping the cluster"
        assert dev.proc.wait(timeout=30) == 0, dev.output
    finally:
        dev.close()


def test_a_second_strata_dev_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    dev = start_fake(tmp_path)
    try:
        dev.wait_line(BANNER, timeout=30)
        second = subprocess.run([sys.executable, "-m", "strata.broker.cli", "dev", "--data-dir", str(dev.data_dir),
                                 "--base-port", str(dev.base), "--metrics-base-port", str(dev.mbase)],
                                capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert second.returncode == 1, second.stdout + second.stderr
        assert f"another strata dev (pid {dev.proc.pid}) is running with data dir" in second.stdout
        assert sorted(dev.brokers()) == [1, 2, 3], "the running cluster must be left alone"
    finally:
        dev.close()


@pytest.mark.parametrize("when", ["after the banner", "while the brokers start"])
def test_closing_the_terminal_of_make_run_stops_every_broker(tmp_path: Path, when: str) -> None:
    """The kernel sends a hung-up terminal's SIGHUP to its session leader only: under
    ``make run`` that is make, which waits for its child. The supervisor must notice the
    hang-up on its own (its stdin) and stop the cluster, so make can exit too: also when the
    terminal closed before the supervisor began to read it (a hung-up terminal no longer
    says it is one, and its end looks like a closed pipe)."""
    starting = when == "while the brokers start"
    argv, data, _, _ = fake_cluster(tmp_path, ready=() if starting else (1, 2, 3))
    makefile = tmp_path / "Makefile"
    makefile.write_text(f"run:\n\t{shlex.join(argv)}\n")
    master, slave = pty.openpty()

    def controlling_terminal() -> None:  # after setsid: the pty becomes make's terminal
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    make = subprocess.Popen(["make", "-s", "-f", str(makefile), "run"], stdin=slave, stdout=slave, stderr=slave,
                            start_new_session=True, preexec_fn=controlling_terminal)
    os.close(slave)
    screen = bytearray()
    below: set[int] = set()
    try:
        expected = r"starting 3 broker" if starting else BANNER

        def shown() -> bool:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                screen.extend(os.read(master, 4096))
            return re.search(expected.encode(), bytes(screen), re.M) is not None
        wait_for(shown, 60, f"{expected!r} on the terminal")
        wait_for(lambda: len(descendants(make.pid)) == 4, 30, "strata dev and 3 brokers below make")
        below = descendants(make.pid)

        os.close(master)  # the terminal window closes
        master = -1
        if starting:  # and only now do the brokers become ready
            assert BANNER.encode() not in bytes(screen)
            for i in (1, 2, 3):
                (data / f"broker-{i}").mkdir(parents=True, exist_ok=True)
                (data / f"broker-{i}" / "ready").touch()
        # make waits for strata dev, then dies of the hang-up it was sent (GNU make re-raises it).
        assert make.wait(timeout=60) in (0, -signal.SIGHUP)
        assert all(gone(p) for p in below)
        log = (data / "dev.log").read_text()
        assert "the terminal closed: stopping the cluster" in log and log.rstrip().endswith("stopped"), log
    finally:
        if master >= 0:
            os.close(master)
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
        for p in below:
            if not gone(p):
                os.kill(p, signal.SIGKILL)

"""A real Apache Kafka (4.x, KRaft) on loopback: for benchmarks and differential tests.

The jars come from ``make kafka-dist`` (Maven Central, no tarball, no Docker) into
``build/apache-kafka-<version>/libs``. This module starts a cluster of 1 or 3 *combined*
nodes (each both broker and KRaft controller, as Kafka's own quick start runs), with a
static voter set, each node formatted with ``kafka.tools.StorageTool`` in its own
directory, on free loopback ports, in its own process group::

    with ApacheKafkaCluster(KafkaClusterConfig(nodes=3), root=tmp_path) as kafka:
        producer = KafkaProducer(bootstrap_servers=kafka.bootstrap)
        ...
        kafka.kill_node(2)        # SIGKILL of node 2's process group
        kafka.restart_node(2)     # same ports, same data directory

A cluster is *ready* when every live node answers a Kafka Metadata request listing every
live node as a broker, i.e. each broker registered with the controller quorum and was
unfenced: what a client needs before it can create a replicated topic. Stopping is
SIGTERM to every node, then SIGKILL of each process group after a grace period; the
processes are also registered with :mod:`benchmarks.omb.procs`, whose ``atexit`` hook
SIGKILLs anything still alive when the interpreter exits, whatever failed before.

Run by hand: ``python -m tests.compat.apache_kafka --nodes 3`` prints the bootstrap
address and keeps the cluster up until Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

from benchmarks.omb.procs import ServerProcess, free_ports

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPAT_DIR = Path(__file__).resolve().parent / "apache-kafka"
POM = COMPAT_DIR / "pom.xml"
SERVER_LOG_CONFIG = COMPAT_DIR / "log4j2-server.properties"
TOOLS_LOG_CONFIG = COMPAT_DIR / "log4j2-tools.properties"
#: Where ``make kafka-dist`` writes its stamp; the file holds the version.
STAMP_NAME = ".installed"
#: Overrides the install location (a directory holding ``libs/``), e.g. a release tarball.
HOME_ENV = "STRATA_KAFKA_HOME"
INSTALL_HINT = "make kafka-dist"

#: A small heap: this machine has 2 cores and 24 GiB, shared with 3 Strata brokers and
#: the benchmark's clients. Kafka serves data from the page cache, not the heap.
DEFAULT_HEAP = "512m"
#: What kafka-server-start.sh passes (KAFKA_JVM_PERFORMANCE_OPTS), minus JMX and GC logs.
SERVER_JVM_FLAGS = (
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-XX:MaxInlineLevel=15",
    "-Djava.awt.headless=true",
)
#: Tools print numbers with the default locale's printf: pin it so that "1.5" never reads "1,5".
LOCALE_FLAGS = ("-Duser.language=en", "-Duser.country=US")
#: A short-lived admin tool (StorageTool) starts faster with the C1 compiler only.
QUICK_START_FLAGS = ("-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1")
FORMAT_TIMEOUT_S = 60.0


class KafkaDistMissing(RuntimeError):
    """Apache Kafka's jars are not installed; the message says which make command installs them."""


def default_version(pom: Path = POM) -> str:
    """The Kafka version ``make kafka-dist`` installs by default: the pom's ``kafka.version``."""
    match = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", pom.read_text())
    if match is None:
        raise ValueError(f"{pom}: no <kafka.version> property")
    return match.group(1).strip()


@dataclass(frozen=True, slots=True)
class KafkaDist:
    """An installed Apache Kafka: a ``libs/`` directory of jars and a Java to run them with."""

    home: Path
    version: str
    java: str

    @classmethod
    def find(cls, version: str | None = None) -> KafkaDist:
        """The installation ``make kafka-dist`` made (or ``$STRATA_KAFKA_HOME``); raises if absent."""
        override = os.environ.get(HOME_ENV)
        version = version or default_version()
        home = Path(override) if override else REPO_ROOT / "build" / f"apache-kafka-{version}"
        stamp = home / STAMP_NAME
        if override is None and not stamp.is_file():
            raise KafkaDistMissing(
                f"Apache Kafka {version} is not installed in {home}: run `{INSTALL_HINT}`"
            )
        if override is not None and stamp.is_file():
            version = stamp.read_text().strip() or version
        if not any((home / "libs").glob("kafka_2.13-*.jar")):
            raise KafkaDistMissing(f"no kafka_2.13 jar in {home / 'libs'}: run `{INSTALL_HINT}`")
        java = shutil.which("java")
        java_home = os.environ.get("JAVA_HOME")
        if java_home and (Path(java_home) / "bin" / "java").is_file():
            java = str(Path(java_home) / "bin" / "java")
        if java is None:
            raise KafkaDistMissing(f"no java on PATH (Java 17+ is needed): run `{INSTALL_HINT}`")
        return cls(home=home, version=version, java=java)

    @classmethod
    def available(cls, version: str | None = None) -> bool:
        try:
            cls.find(version)
        except KafkaDistMissing:
            return False
        return True

    @property
    def classpath(self) -> str:
        """Every jar in ``libs/`` (the JVM expands ``dir/*`` itself, as kafka-run-class.sh relies on)."""
        return str(self.home / "libs" / "*")

    def java_version(self) -> str:
        out = subprocess.run(
            [self.java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
        first = (out.stderr or out.stdout).splitlines()
        return first[0] if first else "unknown"

    def server_argv(self, properties: Path, logs_dir: Path, heap: str) -> list[str]:
        """``kafka.Kafka <server.properties>`` as kafka-server-start.sh runs it."""
        return [
            self.java,
            f"-Xms{heap}",
            f"-Xmx{heap}",
            *SERVER_JVM_FLAGS,
            f"-Dlog4j2.configurationFile={SERVER_LOG_CONFIG}",
            f"-Dkafka.logs.dir={logs_dir}",
            "-cp",
            self.classpath,
            "kafka.Kafka",
            str(properties),
        ]

    def tool_argv(
        self,
        main_class: str,
        args: Sequence[str],
        *,
        heap: str = "256m",
        quick_start: bool = False,
        jvm_flags: Sequence[str] = (),
    ) -> list[str]:
        """A Kafka command-line tool (``org.apache.kafka.tools.*``), logging WARN+ to stderr."""
        return [
            self.java,
            f"-Xmx{heap}",
            *(QUICK_START_FLAGS if quick_start else ()),
            *LOCALE_FLAGS,
            *jvm_flags,
            f"-Dlog4j2.configurationFile={TOOLS_LOG_CONFIG}",
            "-cp",
            self.classpath,
            main_class,
            *args,
        ]


def random_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (Kafka's ``Uuid``).

    Like Kafka's own ``Uuid.randomUuid``, an id starting with ``-`` is drawn again: a
    command line would read it as an option.
    """
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        if not text.startswith("-"):
            return text


@dataclass(frozen=True, slots=True)
class KafkaClusterConfig:
    """How to run the cluster. ``None`` defaults follow the node count (1 node: 1; 3 nodes: 3/2)."""

    nodes: int = 1
    #: ``default.replication.factor`` and the internal topics' replication factor.
    replication_factor: int | None = None
    min_insync_replicas: int | None = None
    num_partitions: int = 1
    heap: str = DEFAULT_HEAP
    #: Anything else, written into every node's server.properties after the launcher's own.
    extra_properties: Mapping[str, str] = field(default_factory=dict)
    ready_timeout_s: float = 120.0
    stop_grace_s: float = 5.0
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"nodes must be >= 1, got {self.nodes}")
        if not 1 <= self.effective_replication_factor <= self.nodes:
            raise ValueError(
                f"replication factor must be within [1, {self.nodes}], "
                f"got {self.effective_replication_factor}"
            )
        if not 1 <= self.effective_min_insync_replicas <= self.effective_replication_factor:
            raise ValueError(
                f"min.insync.replicas must be within [1, replication factor], "
                f"got {self.effective_min_insync_replicas}"
            )

    @property
    def effective_replication_factor(self) -> int:
        return self.replication_factor if self.replication_factor is not None else min(3, self.nodes)

    @property
    def effective_min_insync_replicas(self) -> int:
        if self.min_insync_replicas is not None:
            return self.min_insync_replicas
        return 2 if self.effective_replication_factor >= 3 else 1


@dataclass(slots=True)
class KafkaNode:
    """One combined broker+controller: its id, ports, directory and process."""

    node_id: int
    broker_port: int
    controller_port: int
    directory: Path
    server: ServerProcess

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def properties_path(self) -> Path:
        return self.directory / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.directory / "server.log"

    @property
    def pid(self) -> int:
        return self.server.pid

    @property
    def alive(self) -> bool:
        return self.server.alive()


def server_properties(
    config: KafkaClusterConfig, node_id: int, ports: Mapping[int, tuple[int, int]], data_dir: Path
) -> dict[str, str]:
    """One node's server.properties: combined roles, static voters, loopback listeners.

    ``ports`` maps every node id to its (broker, controller) ports. The internal topics
    (offsets, transactions, share state) get the cluster's replication factor, so that a
    one-node cluster can create them at all.
    """
    host = config.host
    broker_port, controller_port = ports[node_id]
    rf = config.effective_replication_factor
    min_isr = config.effective_min_insync_replicas
    voters = ",".join(f"{n}@{host}:{c}" for n, (_, c) in sorted(ports.items()))
    props = {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": voters,
        "listeners": f"PLAINTEXT://{host}:{broker_port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{broker_port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": str(config.num_partitions),
        "default.replication.factor": str(rf),
        "min.insync.replicas": str(min_isr),
        "offsets.topic.replication.factor": str(rf),
        "transaction.state.log.replication.factor": str(rf),
        "transaction.state.log.min.isr": str(min_isr),
        "share.coordinator.state.topic.replication.factor": str(rf),
        "share.coordinator.state.topic.min.isr": str(min_isr),
        # A consumer group's first rebalance waits 3 s by default for more members.
        "group.initial.rebalance.delay.ms": "0",
    }
    props.update(config.extra_properties)
    return props


def render_properties(props: Mapping[str, str]) -> str:
    return "".join(f"{key}={value}\n" for key, value in props.items())


# --- readiness: one Kafka Metadata request, no client library --------------------------

METADATA_API_KEY = 3
#: Metadata v4: the oldest version Kafka 4.x still serves (KIP-896 removed v0-v3), and
#: the newest without flexible (tagged-field) encoding, which keeps this probe short.
METADATA_VERSION = 4
MAX_RESPONSE_BYTES = 1 << 20


def encode_metadata_request(correlation_id: int, client_id: str = "strata-compat-probe") -> bytes:
    """A Metadata v4 request for no topics (brokers only), framed with its size."""
    cid = client_id.encode()
    header = struct.pack(">hhih", METADATA_API_KEY, METADATA_VERSION, correlation_id, len(cid)) + cid
    body = struct.pack(">ib", 0, 0)  # topics: empty array (not null = all); no auto-creation
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def decode_metadata_brokers(correlation_id: int, payload: bytes) -> list[tuple[int, str, int]]:
    """The (node id, host, port) of each broker in a Metadata v4 response (size prefix removed)."""
    (got,) = struct.unpack_from(">i", payload, 0)
    if got != correlation_id:
        raise ValueError(f"response for correlation id {got}, expected {correlation_id}")
    offset = 4 + 4  # correlation id, throttle_time_ms
    (count,) = struct.unpack_from(">i", payload, offset)
    offset += 4
    if not 0 <= count <= 10_000:
        raise ValueError(f"implausible broker count {count}")
    brokers = []
    for _ in range(count):
        node_id, host_len = struct.unpack_from(">ih", payload, offset)
        offset += 6
        host = payload[offset : offset + host_len].decode()
        offset += host_len
        (port, rack_len) = struct.unpack_from(">ih", payload, offset)
        offset += 6 + max(rack_len, 0)
        brokers.append((node_id, host, port))
    return brokers


def metadata_broker_ids(host: str, port: int, timeout: float = 2.0) -> set[int]:
    """Ask one node which brokers the cluster has (registered and unfenced)."""
    correlation_id = int(time.monotonic_ns() & 0x7FFFFFFF)
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(encode_metadata_request(correlation_id))
        (size,) = struct.unpack(">i", _read_exact(sock, 4))
        if not 0 < size <= MAX_RESPONSE_BYTES:
            raise ValueError(f"implausible response size {size}")
        payload = _read_exact(sock, size)
    return {node_id for node_id, _, _ in decode_metadata_brokers(correlation_id, payload)}


def _read_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        chunks += chunk
    return bytes(chunks)


# --- the cluster ------------------------------------------------------------------------


class ApacheKafkaCluster:
    """A KRaft cluster of combined nodes on loopback; start it, use it, always stop it."""

    def __init__(
        self,
        config: KafkaClusterConfig | None = None,
        root: Path | None = None,
        dist: KafkaDist | None = None,
    ) -> None:
        self.config = config or KafkaClusterConfig()
        self.dist = dist or KafkaDist.find()
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="apache-kafka-")) if root is None else root
        self.cluster_id = random_cluster_id()
        ports = free_ports(2 * self.config.nodes, self.config.host)
        self.nodes: list[KafkaNode] = []
        for i in range(self.config.nodes):
            node_id = i + 1
            directory = self.root / f"node-{node_id}"
            argv = self.dist.server_argv(
                directory / "server.properties", directory / "logs", self.config.heap
            )
            server = ServerProcess(f"node-{node_id}", argv, directory / "server.log", directory)
            self.nodes.append(KafkaNode(node_id, ports[2 * i], ports[2 * i + 1], directory, server))
        self._started = False

    # -- addresses and processes --

    @property
    def bootstrap(self) -> str:
        """``host:port,...`` of every node's client listener."""
        return ",".join(f"{self.config.host}:{n.broker_port}" for n in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        if not 1 <= node_id <= len(self.nodes):
            raise ValueError(f"no node {node_id}: node ids are 1..{len(self.nodes)}")
        return self.nodes[node_id - 1]

    @property
    def pids(self) -> dict[int, int]:
        """Live nodes' process ids by node id (each is its own process group's leader)."""
        return {n.node_id: n.pid for n in self.nodes if n.alive}

    # -- lifecycle --

    def start(self) -> ApacheKafkaCluster:
        """Format every node's storage, start them all, and wait until the cluster is ready."""
        if self._started:
            raise RuntimeError("cluster already started")
        self._started = True
        try:
            ports = {n.node_id: (n.broker_port, n.controller_port) for n in self.nodes}
            for n in self.nodes:
                n.directory.mkdir(parents=True, exist_ok=True)
                props = server_properties(self.config, n.node_id, ports, n.data_dir)
                n.properties_path.write_text(render_properties(props))
            self._format_all()
            for n in self.nodes:
                n.server.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _format_all(self) -> None:
        """``StorageTool format`` for every node at once (each is a JVM start of ~2 s of CPU)."""
        procs = []
        for n in self.nodes:
            argv = self.dist.tool_argv(
                "kafka.tools.StorageTool",
                ["format", "-t", self.cluster_id, "-c", str(n.properties_path)],
                quick_start=True,
            )
            log = open(n.directory / "format.log", "wb")  # noqa: SIM115 - closed below
            procs.append((n, log, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                   stdin=subprocess.DEVNULL,
                                                   start_new_session=True)))  # fmt: skip
        deadline = time.monotonic() + FORMAT_TIMEOUT_S
        failures = []
        try:
            for n, _log, proc in procs:
                try:
                    code = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    code = None
                if code != 0:
                    text = (n.directory / "format.log").read_text(errors="replace")
                    failures.append(f"node {n.node_id}: exit {code}\n{text[-2000:]}")
        finally:
            for _n, log, proc in procs:
                if proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                log.close()
        if failures:
            raise RuntimeError("kafka-storage format failed:\n" + "\n".join(failures))

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until every live node lists every live node as a broker (bounded).

        Raises with the node's log tail as soon as a node process exits, and with the
        last answer (or error) of each node when the time is up.
        """
        timeout = self.config.ready_timeout_s if timeout is None else timeout
        deadline = time.monotonic() + timeout
        last: dict[int, str] = {}
        while True:
            for n in self.nodes:
                if n.server.proc is not None and not n.alive:
                    raise RuntimeError(
                        f"Apache Kafka node {n.node_id} exited during start-up:\n"
                        f"{n.server.log_tail(40)}"
                    )
            want = {n.node_id for n in self.nodes if n.alive}
            ready = True
            for n in self.nodes:
                if not n.alive:
                    continue
                try:
                    seen = metadata_broker_ids(self.config.host, n.broker_port)
                except (OSError, ValueError, struct.error) as exc:
                    last[n.node_id] = f"{type(exc).__name__}: {exc}"
                    ready = False
                    continue
                last[n.node_id] = f"brokers {sorted(seen)}"
                if not want <= seen:
                    ready = False
            if ready:
                return
            if time.monotonic() > deadline:
                detail = "; ".join(f"node {k}: {v}" for k, v in sorted(last.items()))
                raise TimeoutError(
                    f"Apache Kafka not ready after {timeout:g}s (want brokers {sorted(want)}): "
                    f"{detail}"
                )
            time.sleep(0.2)

    def kill_node(self, node_id: int) -> None:
        """SIGKILL the node's process group: a crash, no controlled shutdown."""
        self.node(node_id).server.kill()

    def restart_node(self, node_id: int, *, wait: bool = True) -> None:
        """Start a stopped or killed node again on its old ports and data directory."""
        self.node(node_id).server.start()
        if wait:
            self.wait_ready()

    def stop(self) -> None:
        """SIGTERM every node at once; SIGKILL each group still alive after the grace period.

        Idempotent, and safe after a failed start. Removes the root directory when the
        cluster made it itself (a caller's directory is left for the caller).
        """
        alive = [n for n in self.nodes if n.alive]
        for n in alive:
            n.server.terminate()
        deadline = time.monotonic() + self.config.stop_grace_s
        for n in alive:
            proc = n.server.proc
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        for n in self.nodes:
            n.server.kill()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> ApacheKafkaCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.compat.apache_kafka",
        description="Run an Apache Kafka KRaft cluster on loopback until Ctrl-C.",
        epilog="Example: python -m tests.compat.apache_kafka --nodes 3 --set log.flush.interval.messages=1",
    )
    parser.add_argument("--nodes", type=int, default=1, choices=(1, 3))
    parser.add_argument("--heap", default=DEFAULT_HEAP, help=f"per node (default {DEFAULT_HEAP})")
    parser.add_argument("--min-insync-replicas", type=int, default=None)
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="extra server property"
    )
    args = parser.parse_args(argv)
    extra = dict(item.split("=", 1) for item in args.set)
    config = KafkaClusterConfig(
        nodes=args.nodes, heap=args.heap, min_insync_replicas=args.min_insync_replicas,
        extra_properties=extra,
    )  # fmt: skip
    try:
        cluster = ApacheKafkaCluster(config)
    except KafkaDistMissing as exc:
        print(f"error: {exc}")
        return 2
    with cluster:
        print(f"Apache Kafka {cluster.dist.version}: bootstrap {cluster.bootstrap}")
        print(f"pids {cluster.pids}; data under {cluster.root}; Ctrl-C stops it")
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

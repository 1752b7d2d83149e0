"""Dockerfile, entrypoint, Compose, Kubernetes and Grafana files: consistent with each other
and with the broker.

No container engine runs here, so nothing is built or deployed: the files are parsed (YAML,
JSON) and cross-checked — ports against the Dockerfile's EXPOSE and the entrypoint's
defaults, probe paths against what the broker's metrics server answers (asked for real),
mounted files against the tree — and the two shell entrypoints are run with a stub in place
of the broker, and once for real (a one-broker cluster started through the entrypoint).

Addressing gets its own checks (issue 13, item 11): every address a client is told must be
one it can reach from where it stands. The ``docker run`` example and each Compose broker
advertise, to clients on the host, a loopback address whose port the file publishes onto the
listener behind it; peers keep their in-network address; every flag the entrypoint passes is
one ``strata broker start --help`` lists; and a real broker with two listeners, behind a
stand-in for Docker's port publishing, serves a client that only knows the published port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from strata.broker.config import BrokerConfig, parse_host_port, parse_peers
from strata.broker.http import MetricsServer
from strata.client import AdminClient, Consumer, Producer, TopicPartition
from tests.integration.cluster import free_ports, wait_for
from tests.ops.opsfiles import OPS, PROMETHEUS_DIR, ROOT, dashboard

DOCKERFILE = ROOT / "Dockerfile"
ENTRYPOINT = OPS / "docker" / "entrypoint.sh"
COMPOSE = OPS / "docker-compose.yml"
K8S = OPS / "k8s"
#: Container ports: the native protocol (peers, Strata's clients), its external listener, the
#: Kafka API and its external listener, metrics. The same numbers as ``make run``'s.
CLIENT_PORT, EXTERNAL_PORT, KAFKA_PORT, KAFKA_EXTERNAL_PORT, METRICS_PORT = 9192, 19192, 9092, 19092, 9644
#: Addresses a client on the Docker host reaches a published port at.
HOST_REACHABLE = {"127.0.0.1", "localhost"}


def dockerfile() -> str:
    return DOCKERFILE.read_text()


def exposed_ports() -> set[int]:
    return {int(p) for line in re.findall(r"^EXPOSE\s+(.+)$", dockerfile(), re.M) for p in line.split()}


def entrypoint_defaults() -> dict[str, str]:
    return dict(re.findall(r'^: "\$\{(STRATA_\w+):=([^}]*)\}"', ENTRYPOINT.read_text(), re.M))


def k8s_docs() -> dict[str, dict]:
    docs = {}
    for f in sorted(K8S.glob("*.yaml")):
        for d in yaml.safe_load_all(f.read_text()):
            docs[f"{d['kind']}/{d.get('metadata', {}).get('name', f.stem)}"] = d
    return docs


def accepted_broker_flags() -> set[str]:
    """The options ``strata broker start --help`` lists (the real CLI, asked)."""
    res = subprocess.run([sys.executable, "-m", "strata.broker.cli", "broker", "start", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    options = res.stdout.split("Options:", 1)[1]
    return set(re.findall(r"^\s{2}(?:-\w, )?(--[a-z][a-z-]*)", options, re.M))


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}``, with every variable unset (what a fresh checkout gets)."""

    def default(m: re.Match[str]) -> str:
        assert m[2] is not None, f"${{{m[1]}}} has no default: the file does not work as written"
        return m[2]

    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", default, value)


def entrypoint_flags(stub_bin: Path, env: dict[str, str], hostname: str = "strata-host") -> dict[str, str]:
    """The ``strata broker start`` flags the Docker entrypoint turns ``env`` into."""
    res = run_script(ENTRYPOINT, stub_bin, {"HOSTNAME": hostname, **env})
    assert res.returncode == 0, res.stderr
    argv = [line for line in res.stdout.splitlines() if not line.startswith("env:")]
    assert argv[:2] == ["broker", "start"], argv
    assert len(argv[2:]) % 2 == 0 and all(a.startswith("--") for a in argv[2::2]), argv
    return dict(zip(argv[2::2], argv[3::2], strict=True))


def broker_config(flags: dict[str, str]) -> BrokerConfig:
    """What the broker would make of ``flags`` (its own parsers; raises ConfigError)."""
    return BrokerConfig(
        node_id=int(flags["--id"]), data_dir=Path(flags["--data-dir"]),
        listen=parse_host_port(flags["--listen"]), peers=parse_peers(flags["--peers"]),
        metrics_listen=parse_host_port(flags["--metrics-listen"]),
        advertised=parse_host_port(flags["--advertised"]),
        **{name.lstrip("-").replace("-", "_"): parse_host_port(flags[name])
           for name in ("--external-listen", "--external-advertised", "--kafka-listen", "--kafka-advertised",
                        "--kafka-external-listen", "--kafka-external-advertised") if name in flags},
    )


def client_facing(flags: dict[str, str], kafka: bool = False) -> tuple[tuple[str, int], int]:
    """(advertised address, listening port) of the listener clients outside are meant to use,
    for Strata's clients or (``kafka``) Kafka's."""
    prefix = "--kafka-" if kafka else "--"
    if f"{prefix}external-advertised" in flags:
        return (parse_host_port(flags[f"{prefix}external-advertised"]),
                parse_host_port(flags[f"{prefix}external-listen"])[1])
    return parse_host_port(flags[f"{prefix}advertised"]), parse_host_port(flags[f"{prefix}listen"])[1]


def published(mappings: list[str]) -> dict[int, int]:
    """``["9093:19092", ...]`` to ``{container port: host port}``."""
    out = {}
    for m in mappings:
        host_port, container_port = (int(p) for p in m.split(":")[-2:])
        out[container_port] = host_port
    return out


def docker_run_example() -> tuple[dict[str, str], dict[int, int], str]:
    """The Dockerfile's own ``docker run`` line: (environment, published ports, image)."""
    line = re.search(r"^#\s+(docker run .+)$", dockerfile(), re.M)
    assert line, "the Dockerfile's header must show how to run the image"
    argv = shlex.split(line[1])[2:]
    env, ports, rest = {}, [], []
    while argv:
        arg = argv.pop(0)
        if arg == "-e":
            key, _, value = argv.pop(0).partition("=")
            env[key] = value
        elif arg == "-p":
            ports.append(argv.pop(0))
        elif arg == "--name":
            argv.pop(0)
        elif not arg.startswith("-"):
            rest.append(arg)
    assert len(rest) == 1, f"one image expected after the options, got {rest}"
    return env, published(ports), rest[0]


def served_status(paths: set[str]) -> dict[str, int]:
    """Ask the broker's real metrics server (ready) for each path; return the status codes."""

    async def run() -> dict[str, int]:
        server = MetricsServer(lambda: b"", lambda: (True, "ready"))
        (port,) = free_ports(1)
        await server.start("127.0.0.1", port)
        try:
            out = {}
            for path in paths:
                def get(path: str = path) -> int:
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                            return r.status
                    except urllib.error.HTTPError as exc:
                        return exc.code
                out[path] = await asyncio.to_thread(get)
            return out
        finally:
            await server.stop()

    return asyncio.run(run())


# -- Dockerfile and entrypoint -----------------------------------------------------------------


def test_image_is_small_non_root_and_exposes_the_broker_ports() -> None:
    text = dockerfile()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert froms and all(f.startswith("python:3.11-slim") for f in froms) and len(froms) >= 2, froms
    assert re.search(r"^USER\s+(?!root|0\b)\S+", text, re.M), "the image must not run as root"
    assert re.search(r"^VOLUME\s+.*?/var/lib/strata", text, re.M)
    assert exposed_ports() == {CLIENT_PORT, EXTERNAL_PORT, KAFKA_PORT, KAFKA_EXTERNAL_PORT, METRICS_PORT}
    assert re.search(r'^ENTRYPOINT\s+\["strata-entrypoint"\]', text, re.M)
    assert "COPY --chmod=0755 ops/docker/entrypoint.sh /usr/local/bin/strata-entrypoint" in text
    for src in re.findall(r"^COPY\s+(?:--\S+\s+)*(\S+)\s", text, re.M):
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for needed in ("pyproject.toml", "README.md", "client", "storage", "broker", "ops/docker"):
        assert needed not in ignored, f".dockerignore drops {needed}, which the build needs"


def test_entrypoint_defaults_match_exposed_ports_and_healthcheck_probes_healthz() -> None:
    defaults = entrypoint_defaults()
    assert int(defaults["STRATA_LISTEN"].rsplit(":", 1)[1]) == CLIENT_PORT
    assert int(defaults["STRATA_METRICS_LISTEN"].rsplit(":", 1)[1]) == METRICS_PORT
    assert int(defaults["STRATA_EXTERNAL_LISTEN"].rsplit(":", 1)[1]) == EXTERNAL_PORT
    assert int(defaults["STRATA_KAFKA_LISTEN"].rsplit(":", 1)[1]) == KAFKA_PORT
    assert int(defaults["STRATA_KAFKA_EXTERNAL_LISTEN"].rsplit(":", 1)[1]) == KAFKA_EXTERNAL_PORT
    env = dict(re.findall(r"\s(STRATA_\w+)=(\S+)", "\n".join(
        line for line in dockerfile().splitlines() if not line.startswith("#"))))
    for key in ("STRATA_LISTEN", "STRATA_KAFKA_LISTEN", "STRATA_METRICS_LISTEN", "STRATA_DATA_DIR"):
        assert env[key] == defaults[key], key
    health = re.search(r"^HEALTHCHECK .*?CMD (.+)$", dockerfile(), re.M | re.S)[1]
    assert "/healthz" in health and "curl" not in health
    assert served_status({"/healthz"}) == {"/healthz": 200}


@pytest.fixture
def stub_bin(tmp_path: Path) -> Path:
    """A PATH directory whose ``strata`` and ``strata-entrypoint`` print what they were given."""
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("strata", "strata-entrypoint"):
        (d / name).write_text('#!/bin/sh\nprintf "%s\\n" "$@"\nenv | grep ^STRATA_ | sort | sed "s/^/env:/"\n')
        (d / name).chmod(0o755)
    return d


def run_script(script: Path, stub_bin: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {"PATH": f"{stub_bin}:/usr/bin:/bin", "HOSTNAME": "strata-host"}
    return subprocess.run(["/bin/sh", str(script), *args], env={**base, **env}, capture_output=True, text=True,
                          timeout=30)


def test_entrypoint_turns_environment_into_broker_flags(stub_bin: Path) -> None:
    res = run_script(ENTRYPOINT, stub_bin, {"STRATA_ID": "2", "STRATA_PEERS": "1@a:9192,2@b:9192",
                                            "STRATA_FLUSH_POLICY": "interval"}, "--tick-ms", "20")
    assert res.returncode == 0, res.stderr
    argv = [line for line in res.stdout.splitlines() if not line.startswith("env:")]
    assert argv[:3] == ["broker", "start", "--flush-policy"]
    flags = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert flags == {"--flush-policy": "interval", "--id": "2", "--peers": "1@a:9192,2@b:9192",
                     "--listen": "0.0.0.0:9192", "--advertised": "strata-host:9192",
                     "--metrics-listen": "0.0.0.0:9644", "--data-dir": "/var/lib/strata",
                     # The Kafka API is on by default, told as the container's name.
                     "--kafka-listen": "0.0.0.0:9092", "--kafka-advertised": "strata-host:9092",
                     "--tick-ms": "20"}


def test_entrypoint_refuses_to_start_without_id_or_peers(stub_bin: Path) -> None:
    res = run_script(ENTRYPOINT, stub_bin, {"STRATA_PEERS": "1@a:9092"})
    assert res.returncode == 2 and "STRATA_ID" in res.stderr
    res = run_script(ENTRYPOINT, stub_bin, {"STRATA_ID": "1"})
    assert res.returncode == 2 and "STRATA_PEERS" in res.stderr


def test_entrypoint_runs_other_commands_as_given(stub_bin: Path) -> None:
    res = run_script(ENTRYPOINT, stub_bin, {}, "strata", "topic", "list")
    assert res.returncode == 0 and res.stdout.splitlines()[:2] == ["topic", "list"]


def test_entrypoint_adds_the_external_listener_when_an_external_address_is_given(stub_bin: Path) -> None:
    base = {"STRATA_ID": "2", "STRATA_PEERS": "1@a:9192,2@b:9192"}
    flags = entrypoint_flags(stub_bin, {**base, "STRATA_EXTERNAL_ADVERTISED": "127.0.0.1:9193",
                                        "STRATA_KAFKA_EXTERNAL_ADVERTISED": "127.0.0.1:9093"}, hostname="b")
    assert flags["--external-listen"] == f"0.0.0.0:{EXTERNAL_PORT}"
    assert flags["--external-advertised"] == "127.0.0.1:9193"
    assert flags["--listen"] == f"0.0.0.0:{CLIENT_PORT}" and flags["--advertised"] == f"b:{CLIENT_PORT}"
    assert flags["--kafka-external-listen"] == f"0.0.0.0:{KAFKA_EXTERNAL_PORT}"
    assert flags["--kafka-external-advertised"] == "127.0.0.1:9093"
    assert flags["--kafka-listen"] == f"0.0.0.0:{KAFKA_PORT}" and flags["--kafka-advertised"] == f"b:{KAFKA_PORT}"
    plain = entrypoint_flags(stub_bin, base)
    assert "--external-listen" not in plain and "--kafka-external-listen" not in plain, \
        "no external listener unless asked"
    off = entrypoint_flags(stub_bin, {**base, "STRATA_KAFKA_LISTEN": "off"})
    assert not any(f.startswith("--kafka") for f in off), "STRATA_KAFKA_LISTEN=off turns the Kafka API off"
    res = run_script(ENTRYPOINT, stub_bin, {**base, "STRATA_EXTERNAL_LISTEN": "0.0.0.0:19192"})
    assert res.returncode == 2 and "STRATA_EXTERNAL_ADVERTISED" in res.stderr
    res = run_script(ENTRYPOINT, stub_bin, {**base, "STRATA_KAFKA_EXTERNAL_LISTEN": "0.0.0.0:19092"})
    assert res.returncode == 2 and "STRATA_KAFKA_EXTERNAL_ADVERTISED" in res.stderr


def test_the_docker_run_example_advertises_what_the_host_reaches_with_flags_the_cli_accepts(stub_bin: Path) -> None:
    env, ports, image = docker_run_example()
    assert image == re.search(r"^#\s+docker build -t (\S+) \.$", dockerfile(), re.M)[1]
    flags = entrypoint_flags(stub_bin, env, hostname="0123456789ab")  # a container id, as Docker names it
    assert set(flags) <= accepted_broker_flags(), set(flags) - accepted_broker_flags()
    config = broker_config(flags)
    for kafka in (False, True):
        (host, port), listening = client_facing(flags, kafka=kafka)
        assert host in HOST_REACHABLE, f"clients on the host are told {host}:{port}, which they cannot reach"
        assert ports.get(listening) == port, f"{host}:{port} must be published onto the listener (port {listening})"
    assert config.peers[config.node_id][1] == config.listen[1], "the broker must reach itself at its peer address"
    assert ports.get(config.metrics_listen[1]) == METRICS_PORT


@contextlib.contextmanager
def broker_via_entrypoint(tmp_path: Path, env: dict[str, str], metrics_port: int) -> Iterator[subprocess.Popen]:
    """A real broker started by the Docker entrypoint, ready; always stopped."""
    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "strata").exists(), "the strata console script is not installed in this environment"
    full = {**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "STRATA_DATA_DIR": str(tmp_path / "data"), "STRATA_FLUSH_POLICY": "always", **env}
    log_path = tmp_path / "broker.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["/bin/sh", str(ENTRYPOINT)], env=full, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        def ready() -> bool:
            if proc.poll() is not None:  # pytest.fail is not an Exception: wait_for lets it through
                pytest.fail(f"the broker exited with status {proc.returncode}:\n{log_path.read_text()}")
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=1) as r:
                return r.status == 200
        wait_for(ready, 30, "the broker started by the entrypoint to be ready")
        yield proc
        proc.send_signal(signal.SIGTERM)  # reaches the broker itself: the entrypoint exec'd it
        assert proc.wait(timeout=30) == 0, log_path.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.integration
def test_a_broker_started_by_the_entrypoint_becomes_ready_and_stops_cleanly(tmp_path: Path) -> None:
    port, kport, mport = free_ports(3)
    env = {"STRATA_ID": "1", "STRATA_PEERS": f"1@127.0.0.1:{port}", "STRATA_LISTEN": f"127.0.0.1:{port}",
           "STRATA_ADVERTISED": f"127.0.0.1:{port}", "STRATA_KAFKA_LISTEN": f"127.0.0.1:{kport}",
           "STRATA_METRICS_LISTEN": f"127.0.0.1:{mport}"}
    with broker_via_entrypoint(tmp_path, env, mport):
        pass
    assert (tmp_path / "data").is_dir()


class PublishedPort:
    """What ``docker run -p HOST:CONTAINER`` does: a host port forwarded to the container's.

    The broker behind it never sees the host port, so a client can use it only if the
    broker *tells* it that address: the point of an external advertised address.
    """

    MAX_CONNECTIONS = 32

    def __init__(self, host_port: int, target_port: int) -> None:
        self.target_port = target_port
        self.server = socket.create_server(("127.0.0.1", host_port))
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while len(self.sockets) < 2 * self.MAX_CONNECTIONS:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            upstream.settimeout(None)
            self.sockets += [conn, upstream]
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.server.close()
        for s in self.sockets:
            s.close()


@pytest.mark.integration
def test_a_client_on_the_host_produces_through_the_published_external_port(tmp_path: Path) -> None:
    internal, external, published_port, mport = free_ports(4)
    env = {"STRATA_ID": "1", "STRATA_PEERS": f"1@127.0.0.1:{internal}",
           "STRATA_LISTEN": f"127.0.0.1:{internal}", "STRATA_ADVERTISED": f"127.0.0.1:{internal}",
           "STRATA_EXTERNAL_LISTEN": f"127.0.0.1:{external}",
           "STRATA_EXTERNAL_ADVERTISED": f"127.0.0.1:{published_port}",
           "STRATA_KAFKA_LISTEN": "off", "STRATA_METRICS_LISTEN": f"127.0.0.1:{mport}"}
    with broker_via_entrypoint(tmp_path, env, mport):
        publish = PublishedPort(published_port, external)
        outside = f"127.0.0.1:{published_port}"
        try:
            with AdminClient(outside) as admin:
                # Through the external listener, the broker names itself by the published port...
                assert [(b.id, b.host, b.port) for b in admin.describe_cluster().brokers] == [
                    (1, "127.0.0.1", published_port)]
                admin.create_topic("from-the-host", partitions=1, replication_factor=1)
            with Producer(bootstrap=outside, acks="all") as producer:
                offsets = [producer.send("from-the-host", value=b"m%d" % i).result(timeout=30).offset
                           for i in range(10)]
            with Consumer(bootstrap=outside, auto_offset_reset="earliest") as consumer:
                consumer.assign([TopicPartition("from-the-host", 0)])
                got: list[bytes] = []
                wait_for(lambda: got.extend(r.value for r in consumer.poll(timeout_ms=500)) or len(got) >= 10, 30,
                         "the ten records, read back from the host")
            assert got == [b"m%d" % i for i in range(10)] and len(set(offsets)) == 10
            # ...and through the internal one, by its in-network address.
            with AdminClient(f"127.0.0.1:{internal}") as admin:
                assert [(b.host, b.port) for b in admin.describe_cluster().brokers] == [("127.0.0.1", internal)]
        finally:
            publish.close()


@pytest.mark.integration
def test_a_kafka_client_on_the_host_produces_through_the_published_external_kafka_port(tmp_path: Path) -> None:
    """kafka-python on the host, through a published port onto the external Kafka listener:
    it is told that published address (not the container's name) and produces and reads
    back; a Kafka client in the network is told the internal Kafka address."""
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
    from kafka import TopicPartition as KTP
    from kafka.admin import NewTopic

    native, kafka_in, kafka_ext, published_port, mport = free_ports(5)
    env = {"STRATA_ID": "1", "STRATA_PEERS": f"1@127.0.0.1:{native}",
           "STRATA_LISTEN": f"127.0.0.1:{native}", "STRATA_ADVERTISED": f"127.0.0.1:{native}",
           "STRATA_KAFKA_LISTEN": f"127.0.0.1:{kafka_in}", "STRATA_KAFKA_ADVERTISED": f"localhost:{kafka_in}",
           "STRATA_KAFKA_EXTERNAL_LISTEN": f"127.0.0.1:{kafka_ext}",
           "STRATA_KAFKA_EXTERNAL_ADVERTISED": f"127.0.0.1:{published_port}",
           "STRATA_METRICS_LISTEN": f"127.0.0.1:{mport}"}
    with broker_via_entrypoint(tmp_path, env, mport):
        publish = PublishedPort(published_port, kafka_ext)
        outside = f"127.0.0.1:{published_port}"
        try:
            admin = KafkaAdminClient(bootstrap_servers=outside, request_timeout_ms=30_000)
            try:
                assert [(b["broker_id"], b["host"], b["port"]) for b in admin.describe_cluster()["brokers"]] == [
                    (1, "127.0.0.1", published_port)]
                admin.create_topics([NewTopic("kafka-from-the-host", 1, 1)])
            finally:
                admin.close()
            producer = KafkaProducer(bootstrap_servers=outside, acks="all")
            try:
                metas = [producer.send("kafka-from-the-host", b"k%d" % i).get(timeout=30) for i in range(10)]
            finally:
                producer.close()
            consumer = KafkaConsumer(bootstrap_servers=outside, auto_offset_reset="earliest",
                                     consumer_timeout_ms=10_000)
            try:
                consumer.assign([KTP("kafka-from-the-host", 0)])
                got: list[bytes] = []
                wait_for(lambda: got.extend(r.value for rs in consumer.poll(timeout_ms=500).values() for r in rs)
                         or len(got) >= 10, 30, "the ten records, read back from the host through Kafka")
            finally:
                consumer.close()
            assert got == [b"k%d" % i for i in range(10)] and len({m.offset for m in metas}) == 10
            inside = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{kafka_in}", request_timeout_ms=30_000)
            try:
                assert [(b["host"], b["port"]) for b in inside.describe_cluster()["brokers"]] == [
                    ("localhost", kafka_in)]
            finally:
                inside.close()
        finally:
            publish.close()


# -- Compose -------------------------------------------------------------------------------------


def test_compose_runs_three_brokers_prometheus_and_grafana_from_files_that_exist() -> None:
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    brokers = {n: s for n, s in services.items() if n.startswith("strata-")}
    assert sorted(brokers) == ["strata-1", "strata-2", "strata-3"]
    assert {"prometheus", "grafana"} <= set(services)
    ids = set()
    for name, s in brokers.items():
        assert s["image"] == "strata:latest"
        assert (COMPOSE.parent / s["build"]["context"] / s["build"]["dockerfile"]).resolve() == DOCKERFILE
        env = s["environment"]
        ids.add(env["STRATA_ID"])
        peers = dict(p.split("@") for p in env["STRATA_PEERS"].split(","))
        assert peers[env["STRATA_ID"]] == env["STRATA_ADVERTISED"] == f"{name}:{CLIENT_PORT}"
        assert set(peers.values()) == {f"{n}:{CLIENT_PORT}" for n in brokers}
        assert env["STRATA_KAFKA_ADVERTISED"] == f"{name}:{KAFKA_PORT}"
        container_ports = {int(p.split(":")[-1]) for p in s["ports"]}
        assert container_ports == {EXTERNAL_PORT, KAFKA_EXTERNAL_PORT, METRICS_PORT}
        assert container_ports <= exposed_ports()
        assert int(env["STRATA_LISTEN"].rsplit(":", 1)[1]) == CLIENT_PORT
        assert int(env["STRATA_KAFKA_LISTEN"].rsplit(":", 1)[1]) == KAFKA_PORT
        assert int(env["STRATA_METRICS_LISTEN"].rsplit(":", 1)[1]) == METRICS_PORT
        check = " ".join(s["healthcheck"]["test"])
        path = re.search(r"127\.0\.0\.1:(\d+)(/\w+)", check)
        assert int(path[1]) == METRICS_PORT and served_status({path[2]}) == {path[2]: 200}
        assert any(v.endswith(":/var/lib/strata") for v in s["volumes"])
    assert ids == {"1", "2", "3"}
    for svc in ("prometheus", "grafana"):
        for v in services[svc]["volumes"]:
            src = v.split(":")[0]
            if src.startswith("."):
                assert (COMPOSE.parent / src).exists(), f"{svc} mounts {src}, which does not exist"
    prom_cfg = yaml.safe_load((PROMETHEUS_DIR / "prometheus.docker.yml").read_text())
    targets = {t for sc in prom_cfg["scrape_configs"] for c in sc["static_configs"] for t in c["targets"]}
    assert targets == {f"{n}:{METRICS_PORT}" for n in brokers}
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"] if v.startswith("."))
    provider = yaml.safe_load((OPS / "grafana/provisioning/dashboards/strata.yml").read_text())["providers"][0]
    assert Path(mounts["./grafana/strata.json"]).parent == Path(provider["options"]["path"])
    ds = yaml.safe_load((OPS / "grafana/provisioning/datasources/prometheus.yml").read_text())["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    assert "9090:9090" in services["prometheus"]["ports"]


def test_compose_brokers_tell_host_clients_published_addresses_and_peers_in_network_ones(stub_bin: Path) -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    brokers = {n: s for n, s in services.items() if n.startswith("strata-")}
    accepted = accepted_broker_flags()
    outside: dict[bool, dict[str, tuple[str, int]]] = {False: {}, True: {}}
    for name, s in brokers.items():
        env = {k: interpolate(str(v)) for k, v in s["environment"].items()}
        flags = entrypoint_flags(stub_bin, env, hostname=s["hostname"])
        assert set(flags) <= accepted, f"{name}: flags strata broker start does not take: {set(flags) - accepted}"
        config = broker_config(flags)
        inside = config.advertised_address
        # Peers and in-network clients: the service's name, at the internal listener.
        assert config.peers[config.node_id] == inside == (name, config.listen[1]), name
        assert config.kafka_advertised == (name, KAFKA_PORT), f"{name}: Kafka clients in the network"
        # Host clients: a loopback address whose port is published onto the external listener,
        # for Strata's clients and Kafka's alike.
        ports = published(s["ports"])
        for kafka, internal in ((False, config.listen), (True, config.kafka_listen)):
            assert internal is not None
            (host, port), listening = client_facing(flags, kafka=kafka)
            assert listening != internal[1], f"{name}: the external listener must be a listener of its own"
            assert host in HOST_REACHABLE, f"{name} tells host clients {host}:{port}, which they cannot reach"
            assert ports.get(listening) == port, f"{name}: {host}:{port} is not published onto port {listening}"
            assert internal[1] not in ports, f"{name}: a host client on an internal port would be told {inside}"
            assert (host, port) != inside
            outside[kafka][name] = (host, port)
    for addresses in outside.values():
        assert len(set(addresses.values())) == len(brokers), f"external addresses must be distinct: {addresses}"
    header = COMPOSE.read_text()
    bootstrap = ",".join(f"{h}:{p}" for h, p in outside[False].values())
    assert f"--bootstrap {bootstrap}" in header, "the file's header must show the host bootstrap"
    first_kafka = "{}:{}".format(*outside[True]["strata-1"])
    assert f"kcat -b {first_kafka} -L" in header, "the file's header must show a Kafka client's bootstrap"


# -- Kubernetes ----------------------------------------------------------------------------------


def test_kubernetes_statefulset_services_pdb_and_probes_fit_together() -> None:
    docs = k8s_docs()
    sts = docs["StatefulSet/strata"]
    headless = docs["Service/strata-headless"]
    pdb = docs["PodDisruptionBudget/strata"]
    cm = docs["ConfigMap/strata-entrypoint"]
    spec = sts["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert spec["serviceName"] == "strata-headless"
    assert spec["podManagementPolicy"] == "Parallel"
    assert headless["spec"]["clusterIP"] == "None" and headless["spec"]["publishNotReadyAddresses"] is True
    for svc in (headless, docs["Service/strata"]):
        assert svc["spec"]["selector"].items() <= labels.items()
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1

    (container,) = spec["template"]["spec"]["containers"]
    images = docs["Kustomization/kustomization"]["images"]
    image_names = {i["name"] for i in images}
    assert container["image"].split(":")[0] in image_names == {"strata"}
    (image,) = images
    registry = image["newName"].split("/")[0]
    assert "/" in image["newName"] and ("." in registry or ":" in registry), \
        f"newName must name a registry (a placeholder to replace), got {image['newName']!r}"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert image["newTag"] == version, "the manifests pin the release the image is built from"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"strata": CLIENT_PORT, "kafka": KAFKA_PORT, "metrics": METRICS_PORT}
    assert set(ports.values()) <= exposed_ports()  # no external listener: clients run in the cluster
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert int(env["STRATA_REPLICAS"]) == spec["replicas"]
    assert env["STRATA_HEADLESS_SERVICE"] == spec["serviceName"]
    assert int(env["STRATA_LISTEN"].rsplit(":", 1)[1]) == ports["strata"]
    # A port is named kafka only if it speaks Kafka's protocol: the Kafka listener's port.
    assert int(env["STRATA_KAFKA_LISTEN"].rsplit(":", 1)[1]) == ports["kafka"]
    for doc in docs.values():
        if doc["kind"] == "Service":
            assert {p["name"] for p in doc["spec"]["ports"]} <= set(ports), doc["metadata"]["name"]
            assert all(p["targetPort"] in ports for p in doc["spec"]["ports"])
    assert int(env["STRATA_METRICS_LISTEN"].rsplit(":", 1)[1]) == ports["metrics"]

    probes = {k: container[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz" and probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert ports[probe["port"]] == METRICS_PORT
    statuses = served_status({p["path"] for p in probes.values()})
    assert set(statuses.values()) == {200}, statuses

    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["entrypoint"]["configMap"]["name"] == cm["metadata"]["name"]
    script_path = f"{mounts['entrypoint']}/{next(iter(cm['data']))}"
    assert container["command"] == ["/bin/sh", script_path]
    assert mounts["data"] == env["STRATA_DATA_DIR"]
    assert [c["metadata"]["name"] for c in spec["volumeClaimTemplates"]] == ["data"]
    assert spec["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_kubernetes_entrypoint_derives_id_and_peers_from_the_pod_ordinal(tmp_path: Path, stub_bin: Path) -> None:
    cm = k8s_docs()["ConfigMap/strata-entrypoint"]
    script = tmp_path / "k8s-entrypoint.sh"
    script.write_text(cm["data"]["k8s-entrypoint.sh"])
    env = {"HOSTNAME": "strata-2", "POD_NAMESPACE": "prod", "STRATA_REPLICAS": "3",
           "STRATA_HEADLESS_SERVICE": "strata-headless", "STRATA_LISTEN": "0.0.0.0:9192",
           "STRATA_KAFKA_LISTEN": "0.0.0.0:9092"}
    res = run_script(script, stub_bin, env)
    assert res.returncode == 0, res.stderr
    got = dict(line[4:].split("=", 1) for line in res.stdout.splitlines() if line.startswith("env:"))
    dom = "strata-headless.prod.svc.cluster.local"
    assert got["STRATA_ID"] == "3"
    assert got["STRATA_PEERS"] == f"1@strata-0.{dom}:9192,2@strata-1.{dom}:9192,3@strata-2.{dom}:9192"
    assert got["STRATA_ADVERTISED"] == f"strata-2.{dom}:9192"
    assert got["STRATA_KAFKA_ADVERTISED"] == f"strata-2.{dom}:9092"
    res = run_script(script, stub_bin, {**env, "HOSTNAME": "not-a-statefulset-pod"})
    assert res.returncode == 2 and "ordinal" in res.stderr


# -- Grafana -------------------------------------------------------------------------------------


def test_dashboard_covers_the_issue_s_sections_with_real_queries() -> None:
    d = dashboard()
    rows = [p["title"] for p in d["panels"] if p["type"] == "row"]
    assert rows == ["Cluster overview", "Throughput", "Latency", "Replication health", "Consumer lag", "Disk"]
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids))
    assert any(v["type"] == "datasource" and v["name"] == "datasource" for v in d["templating"]["list"])
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
        assert all(t["expr"].strip() for t in p["targets"]), p["title"]

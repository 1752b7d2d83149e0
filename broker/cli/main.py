"""``strata``: run brokers and administer a cluster.

Every admin command takes ``--bootstrap HOST:PORT[,...]`` (or ``STRATA_BOOTSTRAP``) and,
where it prints data, ``--output json`` for scripts (a stable contract) or a table for people.
Errors say what went wrong and what to do, and exit non-zero.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import NoReturn

import click

from strata.broker.config import (
    BrokerConfig,
    ConfigError,
    Limits,
    RaftTiming,
    load_config_file,
    parse_host_port,
    parse_peers,
)


def fail(message: str, hint: str = "", code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="strata")
def main() -> None:
    """Strata: a replicated log broker (Kafka-like, Raft per partition).

    \b
    Start a local 3-broker cluster and use it:
      strata dev --nodes 3
      strata topic create events --partitions 6 --replication-factor 3
      printf 'k1:hello\\nk2:world\\n' | strata produce events --key-separator :
      strata consume events --from-beginning --count 2
    """


# -- broker ------------------------------------------------------------------------------


@main.group()
def broker() -> None:
    """Run a broker process."""


@broker.command("start")
@click.option("--id", "node_id", type=int, required=True, help="This broker's id; must appear in --peers.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where this broker keeps its logs and Raft state.")
@click.option("--listen", required=True, help="HOST:PORT for clients and peers.")
@click.option("--peers", required=True, help="Every broker of the cluster: ID@HOST:PORT,... (including this one).")
@click.option("--metrics-listen", default=None, help="HOST:PORT serving /metrics, /healthz and /readyz.")
@click.option("--advertised", default=None, help="HOST:PORT clients should use to reach this broker.")
@click.option("--external-listen", default=None,
              help="HOST:PORT of a second listener for clients outside the peers' network "
                   "(e.g. a container's published port); they are told --external-advertised.")
@click.option("--external-advertised", default=None,
              help="HOST:PORT clients of the external listener are told (default: --external-listen).")
@click.option("--kafka-listen", default=None,
              help="HOST:PORT serving the Kafka API (every Kafka client and tool: kcat, librdkafka, Java...).")
@click.option("--kafka-advertised", default=None,
              help="HOST:PORT Kafka clients are told (default: --kafka-listen).")
@click.option("--kafka-external-listen", default=None,
              help="HOST:PORT of a second Kafka listener for Kafka clients outside the brokers' network; "
                   "they are told --kafka-external-advertised.")
@click.option("--kafka-external-advertised", default=None,
              help="HOST:PORT clients of the external Kafka listener are told (default: --kafka-external-listen).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="A TOML file with broker settings ([limits], [raft], flush_policy, ...).")
@click.option("--flush-policy", type=click.Choice(["always", "interval", "never"]), default=None,
              help="When appends are fsynced (default: always, group-committed).")
@click.option("--tick-ms", type=click.IntRange(1, 10_000), default=None, help="Raft tick interval.")
def broker_start(node_id: int, data_dir: Path, listen: str, peers: str, metrics_listen: str | None,
                 advertised: str | None, external_listen: str | None, external_advertised: str | None,
                 kafka_listen: str | None, kafka_advertised: str | None, kafka_external_listen: str | None,
                 kafka_external_advertised: str | None, config_file: Path | None,
                 flush_policy: str | None, tick_ms: int | None) -> None:
    """Start one broker and serve until SIGTERM (which hands leadership over cleanly).

    \b
    Example (broker 1 of 3):
      strata broker start --id 1 --data-dir /var/lib/strata \\
        --listen 10.0.0.1:9192 --kafka-listen 10.0.0.1:9092 --metrics-listen 10.0.0.1:9644 \\
        --peers 1@10.0.0.1:9192,2@10.0.0.2:9192,3@10.0.0.3:9192
    """
    try:
        extra = load_config_file(config_file) if config_file else {}
        if flush_policy:
            extra["flush_policy"] = flush_policy
        raft = extra.pop("raft", RaftTiming())
        if tick_ms:
            raft.tick_ms = tick_ms
        config = BrokerConfig(
            node_id=node_id,
            data_dir=data_dir,
            listen=parse_host_port(listen, what="--listen"),
            peers=parse_peers(peers),
            metrics_listen=parse_host_port(metrics_listen, what="--metrics-listen") if metrics_listen else None,
            advertised=parse_host_port(advertised, what="--advertised") if advertised else None,
            external_listen=parse_host_port(external_listen, what="--external-listen") if external_listen else None,
            external_advertised=(parse_host_port(external_advertised, what="--external-advertised")
                                 if external_advertised else None),
            kafka_listen=parse_host_port(kafka_listen, what="--kafka-listen") if kafka_listen else None,
            kafka_advertised=parse_host_port(kafka_advertised, what="--kafka-advertised") if kafka_advertised else None,
            kafka_external_listen=(parse_host_port(kafka_external_listen, what="--kafka-external-listen")
                                   if kafka_external_listen else None),
            kafka_external_advertised=(parse_host_port(kafka_external_advertised, what="--kafka-external-advertised")
                                       if kafka_external_advertised else None),
            limits=extra.pop("limits", Limits()),
            raft=raft,
            **extra,
        )
    except ConfigError as exc:
        fail(str(exc), "see 'strata broker start --help'", code=2)
    from strata.broker.server import StartupError, run_broker

    try:
        run_broker(config)
    except StartupError as exc:
        fail(f"broker {node_id} could not start: {exc}", exc.hint)
    except OSError as exc:
        fail(f"broker {node_id} could not start: {exc}", "is the data dir writable?")


@main.command()
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True, help="How many brokers.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("./data"),
              show_default=True, help="Each broker keeps its data in DATA_DIR/broker-N.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--base-port", type=int, default=9192, show_default=True,
              help="Broker N serves the native protocol (Strata's clients, the CLI) on BASE+N-1.")
@click.option("--kafka-base-port", type=int, default=9092, show_default=True,
              help="Broker N serves the Kafka API on BASE+N-1 (0: no Kafka listener).")
@click.option("--metrics-base-port", type=int, default=9644, show_default=True,
              help="Broker N serves metrics on BASE+N-1.")
@click.option("--flush-policy", type=click.Choice(["always", "interval", "never"]), default=None)
def dev(nodes: int, data_dir: Path, host: str, base_port: int, kafka_base_port: int, metrics_base_port: int,
        flush_policy: str | None) -> None:
    """A local cluster of real broker processes, until Ctrl-C.

    \b
    Example:
      strata dev --nodes 3 --data-dir ./data
    """
    from strata.broker.cli.dev import run_dev

    extra = ["--flush-policy", flush_policy] if flush_policy else []
    sys.exit(run_dev(nodes, data_dir, host, base_port, metrics_base_port, extra, echo=click.echo,
                     kafka_base_port=kafka_base_port or None))


from strata.broker.cli.client import register  # noqa: E402 - after main exists

register(main)

"""The client commands of ``strata``: produce, consume, topic and group admin, cluster status.

Built on the sync client library (:mod:`strata.client`), in the spirit of kcat and
Redpanda's rpk: data on stdout (a table for people, ``--output json`` for scripts),
errors on stderr as ``error: ...`` plus a ``hint: ...``, and a non-zero exit.
:func:`register` adds the commands to the main ``strata`` group.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import click

from strata.client.errors import (
    FeatureNotAvailableError,
    FencedMemberEpochError,
    GroupIdNotFoundError,
    NoBrokersAvailableError,
    NonEmptyGroupError,
    StrataError,
    TopicAlreadyExistsError,
    UnknownPartitionError,
    UnknownTopicError,
)

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

_bootstrap = click.option(
    "--bootstrap",
    envvar="STRATA_BOOTSTRAP",
    default=DEFAULT_BOOTSTRAP,
    show_default=True,
    help="Brokers to contact first, HOST:PORT[,HOST:PORT...] (env STRATA_BOOTSTRAP).",
)
_output = click.option(
    "--output",
    "-o",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="'json' prints a stable machine-readable document.",
)


def _fail(message: str, hint: str = "", code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    sys.exit(code)


def _hint_for(exc: StrataError) -> str:
    if isinstance(exc, NoBrokersAvailableError):
        return "is the cluster running? check --bootstrap / STRATA_BOOTSTRAP"
    if isinstance(exc, UnknownTopicError):
        return "list topics with 'strata topic list', or create it with 'strata topic create'"
    if isinstance(exc, UnknownPartitionError):
        return "see the topic's partitions with 'strata topic describe TOPIC'"
    if isinstance(exc, TopicAlreadyExistsError):
        return "pick another name, or delete it first with 'strata topic delete'"
    if isinstance(exc, GroupIdNotFoundError):
        return "list groups with 'strata group list'"
    if isinstance(exc, NonEmptyGroupError):
        return ("stop the group's consumers first (or wait for their sessions to expire); "
                "'strata group describe G' shows its members")
    return exc.hint


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn client exceptions into ``error:``/``hint:`` lines and an exit code."""
    try:
        yield
    except FeatureNotAvailableError as exc:
        _fail(exc.message, "read partitions directly with --partition/--offset or --from-beginning")
    except StrataError as exc:
        _fail(exc.message or str(exc), _hint_for(exc))
    except (ValueError, TypeError) as exc:
        _fail(str(exc), "see --help for the expected format", code=2)
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as Unix tools do.
        with contextlib.suppress(Exception):
            sys.stdout = None  # type: ignore[assignment]
        sys.exit(0)


def _admin(bootstrap: str):
    """An AdminClient for one command, closed when it is done."""
    from strata.client import AdminClient

    return AdminClient(bootstrap, client_id="strata-cli")


def _kv(values: tuple[str, ...], what: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        k, sep, val = v.partition("=")
        if not sep or not k:
            _fail(f"bad {what} {v!r}: expected KEY=VALUE", f"e.g. --{what} retention.ms=86400000",
                  code=2)
        out.append((k, val))
    return out


# -- produce -----------------------------------------------------------------------------


@click.command("produce")
@click.argument("topic")
@_bootstrap
@click.option("--key-separator", "-K", default=None,
              help="Split each line at the first SEP into key and value (lines without it have no key).")
@click.option("--acks", type=click.Choice(["all", "-1", "1", "0"]), default="all", show_default=True,
              help="all: wait until replicated; 1: leader only; 0: do not wait.")
@click.option("--partition", "-p", type=int, default=None,
              help="Write every record to this partition (default: by key, or sticky when keyless).")
@click.option("--header", "-H", "headers", multiple=True, metavar="K=V",
              help="Add a header to every record (repeatable).")
@click.option("--compression", type=click.Choice(["none", "gzip", "zstd", "lz4"]), default="none",
              show_default=True, help="Batch compression codec.")
@click.option("--linger-ms", type=click.IntRange(0, 60_000), default=5, show_default=True,
              help="How long to wait for more records before sending a batch.")
def produce_cmd(topic: str, bootstrap: str, key_separator: str | None, acks: str,
                partition: int | None, headers: tuple[str, ...], compression: str,
                linger_ms: int) -> None:
    """Write lines from stdin as records to TOPIC (one record per line).

    \b
    Examples:
      echo hello | strata produce events
      printf 'user1:clicked\\nuser2:viewed\\n' | strata produce events --key-separator :
      strata produce events --acks 1 --header source=cli < lines.txt
    """
    from strata.client import Producer

    hs = [(k, v.encode()) for k, v in _kv(headers, "header")]
    sent = 0
    failures: list[BaseException] = []
    with _errors():
        producer = Producer(bootstrap, acks=acks, linger_ms=linger_ms,
                            compression_type=compression, client_id="strata-cli")
        try:
            stdin = click.get_binary_stream("stdin")
            sep = key_separator.encode() if key_separator is not None else None
            futures = []
            for raw in stdin:
                line = raw.rstrip(b"\n").rstrip(b"\r")
                key = None
                if sep is not None:
                    k, found, v = line.partition(sep)
                    if found:
                        key, line = k, v
                fut = producer.send(topic, line, key=key, partition=partition, headers=hs)
                futures.append(fut)
                sent += 1
                if len(futures) >= 10_000:  # bound what we keep for error reporting
                    _collect(futures, failures)
                    futures = []
            producer.flush()
            _collect(futures, failures)
        finally:
            producer.close()
    if failures:
        first = failures[0]
        msg = first.message if isinstance(first, StrataError) else str(first)
        _fail(f"{len(failures)} of {sent} records were not delivered: {msg}",
              _hint_for(first) if isinstance(first, StrataError) else "")
    click.echo(f"produced {sent} record{'s' if sent != 1 else ''} to {topic}", err=True)


def _collect(futures: list[Any], failures: list[BaseException]) -> None:
    for f in futures:
        exc = f.exception()
        if exc is not None:
            failures.append(exc)


# -- consume -----------------------------------------------------------------------------


def _text(b: bytes | None) -> str | None:
    return None if b is None else b.decode("utf-8", errors="backslashreplace")


@click.command("consume")
@click.argument("topic")
@_bootstrap
@click.option("--group", "-g", default=None,
              help="Consume as a member of group G: share the partitions with the group's other "
                   "consumers, start at the group's committed offsets, commit as records are printed.")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record (default: only new ones).")
@click.option("--count", "-c", type=click.IntRange(min=1), default=None,
              help="Exit after N records (default: run until Ctrl-C).")
@click.option("--partition", "-p", type=int, default=None, help="Read only this partition.")
@click.option("--offset", "-o", "offset", default=None,
              help="Start at this offset (or 'beginning' / 'end'); needs --partition for a number.")
@click.option("--format", "-f", "fmt", default="{value}", show_default=True,
              help="Line format; fields: {topic} {partition} {offset} {timestamp} {key} {value} {headers}.")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="'json': one JSON object per record and line.")
@click.option("--idle-timeout-ms", type=click.IntRange(min=1), default=None,
              help="Exit once no record arrived for this long.")
def consume_cmd(topic: str, bootstrap: str, group: str | None, from_beginning: bool,
                count: int | None, partition: int | None, offset: str | None, fmt: str,
                output: str, idle_timeout_ms: int | None) -> None:
    """Print records of TOPIC to stdout, one per line.

    With --group, the command is a member of a consumer group: the group's partitions
    are shared among its running consumers, reading starts at the group's committed
    offsets (--from-beginning only applies where nothing is committed yet), and each
    batch is committed once printed.

    \b
    Examples:
      strata consume events --from-beginning --count 10
      strata consume events --partition 0 --offset 42 --format '{offset} {key}={value}'
      strata consume events --from-beginning --output json | jq .value
      strata consume events --group billing --from-beginning
    """
    from strata.client import Consumer, TopicPartition

    if group is not None and (partition is not None or offset is not None):
        _fail("--group cannot be combined with --partition/--offset: a group's coordinator "
              "decides which partitions each member reads",
              "drop --partition/--offset, or reset the group's offsets with "
              "'strata group reset-offsets'", code=2)
    start: int | str | None = None
    if offset is not None:
        if offset in ("beginning", "end"):
            start = offset
        else:
            try:
                start = int(offset)
            except ValueError:
                _fail(f"bad --offset {offset!r}", "use a number, 'beginning' or 'end'", code=2)
            if partition is None:
                _fail("--offset N needs --partition P", "e.g. --partition 0 --offset 42", code=2)
            if start < 0:
                _fail("--offset must not be negative", "use 'end' for new records only", code=2)
    if output == "text":
        try:
            fmt.format(topic="", partition=0, offset=0, timestamp=0, key="", value="", headers="")
        except (KeyError, IndexError, ValueError) as exc:
            _fail(f"bad --format {fmt!r}: {exc}",
                  "fields: {topic} {partition} {offset} {timestamp} {key} {value} {headers}", code=2)
    reset = "earliest" if from_beginning or start == "beginning" else "latest"
    n = 0
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with _errors():
        consumer = Consumer(bootstrap=bootstrap, auto_offset_reset=reset, client_id="strata-cli",
                            group_id=group, enable_auto_commit=False)
        try:
            if group is not None:
                consumer.partitions_for_topic(topic)  # an unknown topic fails here, clearly
                consumer.subscribe([topic])
            else:
                if partition is not None:
                    tps = [TopicPartition(topic, partition)]
                else:
                    tps = [TopicPartition(topic, p)
                           for p in sorted(consumer.partitions_for_topic(topic))]
                consumer.assign(tps)
                if isinstance(start, int):
                    consumer.seek(tps[0], start)
                elif start == "end":
                    consumer.seek_to_end(*tps)
            idle_ms = 0.0
            out = click.get_text_stream("stdout")
            while count is None or n < count:
                want = 500 if count is None else min(500, count - n)
                records = consumer.poll(timeout_ms=500, max_records=want)
                if not records:
                    idle_ms += 500
                    if idle_timeout_ms is not None and idle_ms >= idle_timeout_ms:
                        break
                    continue
                idle_ms = 0.0
                lines = []
                for r in records:
                    if output == "json":
                        lines.append(json.dumps({
                            "topic": r.topic, "partition": r.partition, "offset": r.offset,
                            "timestamp": r.timestamp, "key": _text(r.key), "value": _text(r.value),
                            "headers": {k: _text(v) for k, v in r.headers},
                        }))
                    else:
                        lines.append(fmt.format(
                            topic=r.topic, partition=r.partition, offset=r.offset,
                            timestamp=r.timestamp, key=_text(r.key) or "",
                            value=_text(r.value) or "",
                            headers=",".join(f"{k}={_text(v) or ''}" for k, v in r.headers),
                        ))
                out.write("\n".join(lines) + "\n")
                out.flush()
                n += len(records)
                if group is not None:
                    _commit_printed(consumer, group)
        except KeyboardInterrupt:
            pass
        finally:
            if group is not None:
                with contextlib.suppress(StrataError):
                    _commit_printed(consumer, group)
            consumer.close()


def _commit_printed(consumer: Any, group: str) -> None:
    """Commit what was printed (at least once: a record is committed only after printing)."""
    try:
        consumer.commit()
    except FencedMemberEpochError as exc:
        # The consumer was removed from the group and has rejoined: keep going.
        click.echo(f"warning: {exc.message}", err=True)


# -- topic -------------------------------------------------------------------------------


@click.group("topic")
def topic_group() -> None:
    """Create, list, describe and delete topics."""


@topic_group.command("create")
@click.argument("name")
@_bootstrap
@click.option("--partitions", "-p", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--replication-factor", "-r", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--config", "-c", "configs", multiple=True, metavar="K=V",
              help="Topic config (repeatable): retention.ms, retention.bytes, segment.bytes, segment.ms.")
@click.option("--no-wait", is_flag=True, help="Return before every partition has a leader.")
def topic_create(name: str, bootstrap: str, partitions: int, replication_factor: int,
                 configs: tuple[str, ...], no_wait: bool) -> None:
    """Create topic NAME.

    \b
    Examples:
      strata topic create events --partitions 6 --replication-factor 3
      strata topic create logs -p 3 -r 3 --config retention.ms=86400000
    """

    cfg = dict(_kv(configs, "config"))
    with _errors(), _admin(bootstrap) as admin:
        admin.create_topic(name, partitions, replication_factor, cfg, wait=not no_wait)
    click.echo(f"created topic {name} ({partitions} partitions, replication factor "
               f"{replication_factor})")


@topic_group.command("list")
@_bootstrap
@_output
@click.option("--internal", is_flag=True, help="Include internal topics (names starting with '__').")
def topic_list(bootstrap: str, output: str, internal: bool) -> None:
    """List topics.

    \b
    Examples:
      strata topic list
      strata topic list --output json
    """

    with _errors(), _admin(bootstrap) as admin:
        names = admin.list_topics(internal=internal)
        descs = admin.describe_topics(names) if names else []
    rows = [{"name": d.name, "partitions": len(d.partitions),
             "replication_factor": max((len(p.replicas) for p in d.partitions), default=0)}
            for d in descs]
    if output == "json":
        click.echo(json.dumps({"topics": rows}))
        return
    _table(["NAME", "PARTITIONS", "REPLICAS"],
           [[r["name"], r["partitions"], r["replication_factor"]] for r in rows])


@topic_group.command("describe")
@click.argument("name")
@_bootstrap
@_output
def topic_describe(name: str, bootstrap: str, output: str) -> None:
    """Show each partition of NAME: leader, replicas, in-sync replicas and offsets.

    \b
    Examples:
      strata topic describe events
      strata topic describe events --output json
    """

    with _errors(), _admin(bootstrap) as admin:
        desc = admin.describe_topic(name)
    if output == "json":
        click.echo(json.dumps(desc.to_dict()))
        return
    _table(
        ["PARTITION", "LEADER", "REPLICAS", "ISR", "LOG-START", "LOG-END", "HIGH-WATERMARK"],
        [[p.partition, "-" if p.leader is None else p.leader, _ids(p.replicas), _ids(p.isr),
          _off(p.log_start_offset), _off(p.log_end_offset), _off(p.high_watermark)]
         for p in desc.partitions],
    )


@topic_group.command("delete")
@click.argument("name")
@_bootstrap
def topic_delete(name: str, bootstrap: str) -> None:
    """Delete topic NAME and all its records.

    \b
    Example:
      strata topic delete events
    """

    with _errors(), _admin(bootstrap) as admin:
        admin.delete_topic(name)
    click.echo(f"deleted topic {name}")


# -- group -------------------------------------------------------------------------------


@click.group("group")
def group_group() -> None:
    """List, describe, reset and delete consumer groups."""


@group_group.command("list")
@_bootstrap
@_output
def group_list(bootstrap: str, output: str) -> None:
    """List consumer groups, their state and coordinating broker.

    \b
    Examples:
      strata group list
      strata group list --output json
    """

    with _errors(), _admin(bootstrap) as admin:
        groups = admin.list_groups()
    if output == "json":
        click.echo(json.dumps({"groups": [g.to_dict() for g in groups]}))
        return
    _table(["GROUP", "STATE", "COORDINATOR"], [[g.group, g.state, g.coordinator] for g in groups])


@group_group.command("describe")
@click.argument("group")
@_bootstrap
@_output
def group_describe(group: str, bootstrap: str, output: str) -> None:
    """Show GROUP's members, the partitions each holds, committed offsets and lag.

    LAG is the high watermark minus the committed offset: how many records the group
    has yet to process ('-' when the partition has no leader right now).

    \b
    Examples:
      strata group describe billing
      strata group describe billing --output json | jq '.offsets[].lag'
    """

    with _errors(), _admin(bootstrap) as admin:
        desc = admin.describe_group(group)
    from strata.client import TopicPartition

    if output == "json":
        click.echo(json.dumps(desc.to_dict()))
        return
    click.echo(f"group        {desc.group}")
    click.echo(f"state        {desc.state}")
    click.echo(f"coordinator  {desc.coordinator}")
    click.echo(f"assignor     {desc.assignor or '-'}")
    click.echo("")
    _table(["MEMBER", "CLIENT-ID", "HOST", "PARTITIONS"],
           [[m.member_id, m.client_id or "-", m.host or "-",
             ",".join(f"{tp.topic}-{tp.partition}" for tp in m.assignment) or "-"]
            for m in desc.members])
    click.echo("")
    owner = {tp: m for m in desc.members for tp in m.assignment}
    committed = {(o.topic, o.partition): o for o in desc.offsets}
    keys = sorted(set(committed) | {(tp.topic, tp.partition) for tp in owner})
    rows = []
    for t, p in keys:
        m = owner.get(TopicPartition(t, p))
        o = committed.get((t, p))
        rows.append([t, p, "-" if o is None else o.committed,
                     "-" if o is None else _off(o.high_watermark),
                     "-" if o is None or o.lag < 0 else o.lag,
                     "-" if m is None else m.member_id, "-" if m is None else (m.client_id or "-")])
    _table(["TOPIC", "PARTITION", "COMMITTED", "HIGH-WATERMARK", "LAG", "MEMBER", "CLIENT-ID"],
           rows)


@group_group.command("reset-offsets")
@click.argument("group")
@_bootstrap
@_output
@click.option("--topic", "-t", required=True, help="The topic whose offsets to reset.")
@click.option("--to-earliest", is_flag=True, help="Reset to the oldest record still kept.")
@click.option("--to-latest", is_flag=True, help="Reset to the end (skip everything so far).")
@click.option("--to-offset", type=click.IntRange(min=0), default=None,
              help="Reset every partition to offset N (clamped to each partition's range).")
@click.option("--to-datetime", default=None, metavar="ISO8601",
              help="Reset to the first record at or after this time, e.g. 2024-05-01T12:00:00Z "
                   "(no zone = local time).")
def group_reset_offsets(group: str, bootstrap: str, output: str, topic: str, to_earliest: bool,
                        to_latest: bool, to_offset: int | None, to_datetime: str | None) -> None:
    """Set GROUP's committed offsets for TOPIC (only while none of its consumers runs).

    \b
    Examples:
      strata group reset-offsets billing --topic events --to-earliest
      strata group reset-offsets billing --topic events --to-offset 1000
      strata group reset-offsets billing --topic events --to-datetime 2024-05-01T12:00:00Z
    """
    import datetime


    chosen = [x for x in (to_earliest, to_latest, to_offset is not None, to_datetime is not None)
              if x]
    if len(chosen) != 1:
        _fail("give exactly one of --to-earliest, --to-latest, --to-offset N, --to-datetime T",
              "e.g. strata group reset-offsets G --topic T --to-earliest", code=2)
    to: str | int | datetime.datetime
    if to_earliest:
        to = "earliest"
    elif to_latest:
        to = "latest"
    elif to_offset is not None:
        to = to_offset
    else:
        assert to_datetime is not None
        try:
            to = datetime.datetime.fromisoformat(to_datetime.replace("Z", "+00:00"))
        except ValueError:
            _fail(f"bad --to-datetime {to_datetime!r}",
                  "use ISO 8601, e.g. 2024-05-01T12:00:00Z or 2024-05-01T14:00:00+02:00", code=2)
    with _errors(), _admin(bootstrap) as admin:
        done = admin.reset_offsets(group, topic, to)
    if output == "json":
        click.echo(json.dumps({"group": group, "offsets": [
            {"topic": tp.topic, "partition": tp.partition, "offset": off}
            for tp, off in sorted(done.items())]}))
        return
    _table(["TOPIC", "PARTITION", "NEW-OFFSET"],
           [[tp.topic, tp.partition, off] for tp, off in sorted(done.items())])


@group_group.command("delete")
@click.argument("group")
@_bootstrap
def group_delete(group: str, bootstrap: str) -> None:
    """Delete GROUP and its committed offsets (only while none of its consumers runs).

    \b
    Example:
      strata group delete billing
    """

    with _errors(), _admin(bootstrap) as admin:
        admin.delete_group(group)
    click.echo(f"deleted group {group}")


# -- cluster -----------------------------------------------------------------------------


@click.group("cluster")
def cluster_group() -> None:
    """Inspect the cluster."""


@cluster_group.command("status")
@_bootstrap
@_output
def cluster_status(bootstrap: str, output: str) -> None:
    """Brokers (alive or not), the controller, and partition health.

    \b
    Examples:
      strata cluster status
      strata cluster status --output json
    """

    with _errors(), _admin(bootstrap) as admin:
        desc = admin.describe_cluster()
    if output == "json":
        click.echo(json.dumps(desc.to_dict()))
        return
    click.echo(f"cluster     {desc.cluster_id}")
    click.echo(f"controller  {'-' if desc.controller is None else desc.controller}")
    click.echo(f"topics      {desc.topics}")
    click.echo(f"partitions  {desc.partitions} ({desc.under_replicated} under-replicated, "
               f"{desc.offline} offline)")
    click.echo("")
    _table(["ID", "ADDRESS", "ALIVE", "CONTROLLER", "VOTER"],
           [[b.id, f"{b.host}:{b.port}", "yes" if b.alive else "NO",
             "*" if b.id == desc.controller else "", "yes" if b.id in desc.voters else "no"]
            for b in desc.brokers])


# -- helpers -----------------------------------------------------------------------------


def _ids(ids: list[int]) -> str:
    return ",".join(str(i) for i in ids) or "-"


def _off(v: int) -> str:
    return "-" if v < 0 else str(v)


def _table(header: list[str], rows: list[list[Any]]) -> None:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def register(main: click.Group) -> None:
    """Add the client commands to the ``strata`` group (called at the end of broker/cli.py)."""
    commands: list[Callable[..., Any]] = [produce_cmd, consume_cmd, topic_group, group_group,
                                          cluster_group]
    for cmd in commands:
        assert isinstance(cmd, click.Command)
        if cmd.name not in main.commands:
            main.add_command(cmd)

"""The client commands of ``strata``: produce, consume, topic and group admin, cluster status.

Built on the sync client library (:mod:`strata.client`), in the spirit of kcat and
Redpanda's rpk: data on stdout (a table for people, ``--output json`` for scripts),
errors on stderr as ``error: ...`` plus a ``hint: ...``, and a non-zero exit.
:func:`register` adds the commands to the main ``strata`` group.

Short options mean one thing in every command: ``-o`` output, ``-O`` offset, ``-p``
partition, ``-n`` count, ``-c`` config, ``-g`` group, ``-t`` topic, ``-f`` format,
``-H`` header, ``-K`` key separator, ``-r`` replication factor, ``-h`` help. Hints that
name flags live here, never in the library's messages.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from strata.client.errors import (
    BatchTooLargeError,
    FeatureNotAvailableError,
    FencedMemberEpochError,
    GroupIdNotFoundError,
    InvalidConfigError,
    NoBrokersAvailableError,
    NonEmptyGroupError,
    NotStrataBrokerError,
    StrataError,
    TopicAlreadyExistsError,
    UnknownPartitionError,
    UnknownTopicError,
    UnresolvableHostError,
)

if TYPE_CHECKING:
    from strata.client import AdminClient, Consumer, RecordFuture

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
#: The exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
EXIT_INTERRUPTED = 128 + signal.SIGINT

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
        if any(isinstance(c, NotStrataBrokerError) for c in exc.causes):
            return ("point --bootstrap (or STRATA_BOOTSTRAP) at a Strata broker's client port: "
                    "the 'bootstrap' line 'strata dev' prints")
        if any(isinstance(c, UnresolvableHostError) for c in exc.causes):
            return "check the host names in --bootstrap / STRATA_BOOTSTRAP"
        return "is the cluster running? check --bootstrap / STRATA_BOOTSTRAP"
    if isinstance(exc, NotStrataBrokerError):
        return "point --bootstrap (or STRATA_BOOTSTRAP) at a Strata broker's client port"
    if isinstance(exc, UnresolvableHostError):
        return ("the brokers must advertise addresses this machine can resolve "
                "(strata broker start --advertised HOST:PORT)")
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
    if isinstance(exc, BatchTooLargeError):
        return ("send smaller records, or raise --max-message-bytes up to the topic's "
                "max.message.bytes ('strata topic describe TOPIC' shows it)")
    if isinstance(exc, InvalidConfigError):
        return "'strata topic describe TOPIC' lists the topic's configs and their values"
    return exc.hint


def _interrupted(what: str = "") -> NoReturn:
    click.echo(f"interrupted{': ' + what if what else ''}", err=True)
    sys.exit(EXIT_INTERRUPTED)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Turn client exceptions (and Ctrl-C) into ``error:``/``hint:`` lines and an exit code."""
    try:
        yield
    except FeatureNotAvailableError as exc:
        _fail(exc.message, "read partitions directly with --partition/--offset or --from-beginning")
    except StrataError as exc:
        _fail(exc.message or str(exc), _hint_for(exc))
    except (ValueError, TypeError) as exc:
        _fail(str(exc), "see --help for the expected format", code=2)
    except KeyboardInterrupt:
        _interrupted()
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as Unix tools do.
        with contextlib.suppress(Exception):
            sys.stdout = None
        sys.exit(0)


class _LevelFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _start() -> None:
    """What every client command does first.

    Ctrl-C raises KeyboardInterrupt even where SIGINT was ignored by our parent (a shell
    starting background jobs does that), so every command stops on it. The client
    library's warnings (a partition without a leader, a cluster out of reach: one line
    per change of state) go to stderr as ``warning: ...``, like the command's own.
    """
    signal.signal(signal.SIGINT, signal.default_int_handler)
    client_log = logging.getLogger("strata.client")
    if not client_log.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_LevelFormatter())
        client_log.addHandler(handler)
        client_log.setLevel(logging.WARNING)
        client_log.propagate = False


def _admin(bootstrap: str) -> AdminClient:
    """An AdminClient for one command, closed when it is done."""
    from strata.client import AdminClient

    return AdminClient(bootstrap, client_id="strata-cli")


def _kv(values: Sequence[str], what: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        k, sep, val = v.partition("=")
        if not sep or not k:
            _fail(f"bad {what} {v!r}: expected KEY=VALUE", f"e.g. --{what} retention.ms=86400000",
                  code=2)
        out.append((k, val))
    return out


def _parse_time(value: str, flag: str) -> datetime.datetime:
    """ISO 8601 (no zone = local time) or milliseconds since the epoch."""
    text = value.strip()
    if text.isdigit():
        return datetime.datetime.fromtimestamp(int(text) / 1000, datetime.UTC)
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"bad {flag} {value!r}",
              "use ISO 8601, e.g. 2024-05-01T12:00:00Z or 2024-05-01T14:00:00+02:00, "
              "or milliseconds since the epoch", code=2)
    return when if when.tzinfo is not None else when.astimezone()


def _ms(when: datetime.datetime) -> int:
    return int(when.timestamp() * 1000)


# -- produce -----------------------------------------------------------------------------


class _Deliveries:
    """What became of the records sent: counts, and the first failure to report."""

    __slots__ = ("acked", "failed", "first_error", "pending")

    #: Futures kept before they are looked at (bounds memory on long inputs).
    MAX_PENDING = 10_000

    def __init__(self) -> None:
        self.pending: list[RecordFuture] = []
        self.acked = 0
        self.failed = 0
        self.first_error: BaseException | None = None

    def add(self, fut: RecordFuture) -> None:
        self.pending.append(fut)
        if len(self.pending) >= self.MAX_PENDING:
            self.collect()

    def collect(self) -> None:
        """Count every pending record (waiting for each to be resolved)."""
        for f in self.pending:
            exc = f.exception()
            if exc is None:
                self.acked += 1
            else:
                self.failed += 1
                self.first_error = self.first_error or exc

    def count_resolved(self) -> int:
        """After an interrupt: count what is resolved, without waiting for the rest."""
        unresolved = 0
        for f in self.pending:
            if not f.done():
                unresolved += 1
                continue
            exc = f.exception()
            if exc is None:
                self.acked += 1
            else:
                self.failed += 1
        self.pending = []
        return unresolved


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
@click.option("--max-message-bytes", type=click.IntRange(min=1024), default=1 << 20,
              show_default=True,
              help="Largest request the producer sends (its max_request_size); raise it for big "
                   "records, up to the topic's max.message.bytes.")
def produce_cmd(topic: str, bootstrap: str, key_separator: str | None, acks: str,
                partition: int | None, headers: tuple[str, ...], compression: str,
                linger_ms: int, max_message_bytes: int) -> None:
    """Write lines from stdin as records to TOPIC (one record per line).

    Ctrl-C stops at once: records not yet acknowledged are dropped, and the command says
    how many were.

    \b
    Examples:
      echo hello | strata produce events
      printf 'user1:clicked\\nuser2:viewed\\n' | strata produce events --key-separator :
      strata produce events --acks 1 --header source=cli < lines.txt
      strata produce blobs --max-message-bytes 20971520 < big-record.txt
    """
    from strata.client import Producer

    hs = [(k, v.encode()) for k, v in _kv(headers, "header")]
    sent = 0
    done = _Deliveries()
    _start()
    with _errors():
        producer = Producer(bootstrap, acks=acks, linger_ms=linger_ms,
                            compression_type=compression, client_id="strata-cli",
                            max_request_size=max_message_bytes,
                            batch_size=min(1 << 20, max_message_bytes))
        try:
            stdin = sys.stdin.buffer
            sep = key_separator.encode() if key_separator is not None else None
            for raw in stdin:
                line = raw.rstrip(b"\n").rstrip(b"\r")
                key = None
                if sep is not None:
                    k, found, v = line.partition(sep)
                    if found:
                        key, line = k, v
                done.add(producer.send(topic, line, key=key, partition=partition, headers=hs))
                sent += 1
            producer.flush()
            done.collect()
        except KeyboardInterrupt:
            producer.close(timeout=0)  # what is not acknowledged now is dropped, not waited for
            done.count_resolved()
            lost = sent - done.acked
            _interrupted(f"{sent} record{'s' if sent != 1 else ''} read, {done.acked} acknowledged, "
                         f"{lost} not delivered")
        finally:
            producer.close()
    if done.failed:
        first = done.first_error
        msg = first.message if isinstance(first, StrataError) else str(first)
        _fail(f"{done.failed} of {sent} records were not delivered: {msg}",
              _hint_for(first) if isinstance(first, StrataError) else "")
    click.echo(f"produced {sent} record{'s' if sent != 1 else ''} to {topic}", err=True)


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
@click.option("--from-timestamp", default=None, metavar="TIME",
              help="Start at the first record at or after TIME: ISO 8601 (e.g. "
                   "2024-05-01T12:00:00Z; no zone = local time) or milliseconds since the epoch.")
@click.option("--count", "-n", type=click.IntRange(min=1), default=None,
              help="Exit after N records (default: run until Ctrl-C).")
@click.option("--partition", "-p", type=int, default=None, help="Read only this partition.")
@click.option("--offset", "-O", "offset", default=None,
              help="Start at this offset (or 'beginning' / 'end'); needs --partition for a number.")
@click.option("--format", "-f", "fmt", default="{value}", show_default=True,
              help="Line format; fields: {topic} {partition} {offset} {timestamp} {key} {value} {headers}.")
@click.option("--output", "-o", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="'json': one JSON object per record and line.")
@click.option("--idle-timeout-ms", type=click.IntRange(min=1), default=None,
              help="Exit once no record arrived for this long.")
def consume_cmd(topic: str, bootstrap: str, group: str | None, from_beginning: bool,
                from_timestamp: str | None, count: int | None, partition: int | None,
                offset: str | None, fmt: str, output: str, idle_timeout_ms: int | None) -> None:
    """Print records of TOPIC to stdout, one per line.

    With --group, the command is a member of a consumer group: the group's partitions
    are shared among its running consumers, reading starts at the group's committed
    offsets (--from-beginning only applies where nothing is committed yet), and each
    batch is committed once printed.

    \b
    Examples:
      strata consume events --from-beginning --count 10
      strata consume events --partition 0 --offset 42 --format '{offset} {key}={value}'
      strata consume events --from-timestamp 2024-05-01T12:00:00Z
      strata consume events --from-beginning --output json | jq .value
      strata consume events --group billing --from-beginning
    """
    from strata.client import Consumer, TopicPartition

    if group is not None and (partition is not None or offset is not None):
        _fail("--group cannot be combined with --partition/--offset: a group's coordinator "
              "decides which partitions each member reads",
              "drop --partition/--offset, or move the group's offsets with 'strata group seek'",
              code=2)
    if from_timestamp is not None and (group is not None or offset is not None or from_beginning):
        _fail("--from-timestamp cannot be combined with --group, --offset or --from-beginning",
              "to start a group at a time, move its offsets first: "
              "'strata group seek G --topic T --to-datetime TIME'", code=2)
    since = None if from_timestamp is None else _parse_time(from_timestamp, "--from-timestamp")
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
    _start()
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
                    _note_past_the_end(consumer, tps[0], start)
                elif start == "end":
                    consumer.seek_to_end(*tps)
                elif since is not None:
                    _seek_to_time(consumer, tps, since)
            idle_ms = 0.0
            out = sys.stdout
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
                    _commit_printed(consumer)
        except KeyboardInterrupt:
            pass  # a consumer stopped by Ctrl-C is a consumer done: exit 0, as kcat does
        finally:
            if group is not None:
                with contextlib.suppress(StrataError):
                    _commit_printed(consumer)
            consumer.close()


def _note_past_the_end(consumer: Consumer, tp: Any, offset: int) -> None:
    """Say once that the wanted offset is not there yet, rather than wait in silence."""
    end = consumer.end_offsets([tp])[tp]
    if offset > end:
        click.echo(f"note: offset {offset} is past the end of {tp} (next offset {end}); "
                   "waiting at the end for new records", err=True)


def _seek_to_time(consumer: Consumer, tps: list[Any], since: datetime.datetime) -> None:
    found = consumer.offsets_for_times(dict.fromkeys(tps, _ms(since)))
    late = []
    for tp in tps:
        hit = found.get(tp)
        if hit is None:
            consumer.seek_to_end(tp)
            late.append(str(tp))
        else:
            consumer.seek(tp, hit.offset)
    if late:
        click.echo(f"note: no record at or after {since.isoformat()} in {', '.join(late)}; "
                   "waiting at the end for new records", err=True)


def _commit_printed(consumer: Consumer) -> None:
    """Commit what was printed (at least once: a record is committed only after printing)."""
    try:
        consumer.commit()
    except FencedMemberEpochError as exc:
        # The consumer was removed from the group and has rejoined: keep going.
        click.echo(f"warning: {exc.message}", err=True)


# -- topic -------------------------------------------------------------------------------


@click.group("topic")
def topic_group() -> None:
    """Create, list, describe, configure and delete topics."""


@topic_group.command("create")
@click.argument("name")
@_bootstrap
@click.option("--partitions", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--replication-factor", "-r", type=click.IntRange(min=1), default=None,
              help="Replicas per partition (default: the cluster's default.replication.factor, "
                   "min(3, brokers) unless configured).")
@click.option("--config", "-c", "configs", multiple=True, metavar="K=V",
              help="Topic config (repeatable), e.g. retention.ms, retention.bytes, segment.bytes, "
                   "max.message.bytes; 'strata topic describe' lists them all.")
@click.option("--no-wait", is_flag=True, help="Return before every partition has a leader.")
def topic_create(name: str, bootstrap: str, partitions: int, replication_factor: int | None,
                 configs: tuple[str, ...], no_wait: bool) -> None:
    """Create topic NAME.

    \b
    Examples:
      strata topic create events --partitions 6 --replication-factor 3
      strata topic create logs --partitions 3 --config retention.ms=86400000
    """
    cfg = dict(_kv(configs, "config"))
    _start()
    with _errors(), _admin(bootstrap) as admin:
        created = admin.create_topic(name, partitions, replication_factor or -1, cfg,
                                     wait=not no_wait)
    rf = created.replication_factor if created.replication_factor > 0 else replication_factor
    used = f"replication factor {rf}" if rf else "the cluster's default replication factor"
    if replication_factor is None and rf:
        used += " (the cluster's default)"
    n = created.partitions if created.partitions > 0 else partitions
    click.echo(f"created topic {name} ({n} partition{'s' if n != 1 else ''}, {used})")


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
    _start()
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
    """Show each partition of NAME (leader, replicas, in-sync replicas, offsets) and the
    topic's configs, each with its source: 'topic' when set on the topic, else 'default'.

    \b
    Examples:
      strata topic describe events
      strata topic describe events --output json | jq '.configs["retention.ms"]'
    """
    from strata.client.aio import ConfigResource, ConfigResourceType

    _start()
    with _errors(), _admin(bootstrap) as admin:
        desc = admin.describe_topic(name)
        resource = ConfigResource(ConfigResourceType.TOPIC, name)
        configs = admin.describe_configs([resource])[resource]
    if output == "json":
        doc = desc.to_dict()
        doc["configs"] = {k: c.to_dict() for k, c in configs.items()}
        click.echo(json.dumps(doc))
        return
    _table(
        ["PARTITION", "LEADER", "REPLICAS", "ISR", "LOG-START", "LOG-END", "HIGH-WATERMARK"],
        [[p.partition, "-" if p.leader is None else p.leader, _ids(p.replicas), _ids(p.isr),
          _off(p.log_start_offset), _off(p.log_end_offset), _off(p.high_watermark)]
         for p in desc.partitions],
    )
    click.echo("")
    _table(["CONFIG", "VALUE", "SOURCE"],
           [[c.name, "-" if c.value is None else c.value, c.source] for c in configs.values()])


@topic_group.command("alter-config")
@click.argument("name")
@_bootstrap
@click.option("--set", "sets", multiple=True, metavar="K=V", help="Set a config (repeatable).")
@click.option("--delete", "deletes", multiple=True, metavar="K",
              help="Delete a config: back to its default (repeatable).")
@click.option("--dry-run", is_flag=True, help="Validate the change without applying it.")
def topic_alter_config(name: str, bootstrap: str, sets: tuple[str, ...], deletes: tuple[str, ...],
                       dry_run: bool) -> None:
    """Change configs of topic NAME; configs not named keep their values.

    Every replica applies the change at once, without a restart.

    \b
    Examples:
      strata topic alter-config events --set retention.ms=86400000
      strata topic alter-config events --set max.message.bytes=20971520 --delete segment.bytes
    """
    from strata.client.aio import ConfigResource, ConfigResourceType

    changes: dict[str, str | None] = dict(_kv(sets, "set"))
    for key in deletes:
        if key in changes:
            _fail(f"{key} is both set and deleted", "name each config once", code=2)
        changes[key] = None
    if not changes:
        _fail("nothing to change", "give --set K=V and/or --delete K", code=2)
    _start()
    with _errors(), _admin(bootstrap) as admin:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, changes)],
                            validate_only=dry_run)
    verb = "would change" if dry_run else "changed"
    for key, value in changes.items():
        click.echo(f"{verb} {name}: {key} = {value}" if value is not None
                   else f"{verb} {name}: {key} deleted (default)")


@topic_group.command("add-partitions")
@click.argument("name")
@_bootstrap
@click.option("--num", "total", type=click.IntRange(min=1), required=True,
              help="The new total number of partitions (as Kafka's --partitions).")
def topic_add_partitions(name: str, bootstrap: str, total: int) -> None:
    """Grow topic NAME to N partitions in all.

    Keys map to partitions by the partition count, so records of a key may go to a new
    partition from now on.

    \b
    Example:
      strata topic add-partitions events --num 12
    """
    _start()
    with _errors(), _admin(bootstrap) as admin:
        before = len(admin.describe_topic(name).partitions)
        if total <= before:
            _fail(f"topic {name} has {before} partitions already; --num is the new total",
                  f"e.g. --num {before + 1}", code=2)
        admin.create_partitions({name: total})
    click.echo(f"topic {name} now has {total} partitions (was {before})")


@topic_group.command("delete")
@click.argument("name")
@_bootstrap
def topic_delete(name: str, bootstrap: str) -> None:
    """Delete topic NAME and all its records.

    \b
    Example:
      strata topic delete events
    """
    _start()
    with _errors(), _admin(bootstrap) as admin:
        admin.delete_topic(name)
    click.echo(f"deleted topic {name}")


# -- group -------------------------------------------------------------------------------


@click.group("group")
def group_group() -> None:
    """List, describe, seek and delete consumer groups."""


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
    _start()
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
    from strata.client import TopicPartition

    _start()
    with _errors(), _admin(bootstrap) as admin:
        desc = admin.describe_group(group)
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


def _seek_target(to_earliest: bool, to_latest: bool, to_offset: int | None,
                 to_datetime: str | None, shift_by: int | None, usage: str
                 ) -> tuple[str | int | datetime.datetime | None, int | None]:
    """The one target the seek flags name: ``(to, shift_by)``."""
    chosen = [x for x in (to_earliest, to_latest, to_offset is not None, to_datetime is not None,
                          shift_by is not None) if x]
    flags = "--to-earliest, --to-latest, --to-offset N, --to-datetime T"
    if shift_by is not None or "--shift-by" in usage:
        flags += ", --shift-by N"
    if len(chosen) != 1:
        _fail(f"give exactly one of {flags}", f"e.g. {usage}", code=2)
    if to_earliest:
        return "earliest", None
    if to_latest:
        return "latest", None
    if to_offset is not None:
        return to_offset, None
    if to_datetime is not None:
        return _parse_time(to_datetime, "--to-datetime"), None
    return None, shift_by


_seek_options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
    click.option("--topic", "-t", required=True, help="The topic whose offsets to move."),
    click.option("--to-earliest", is_flag=True, help="To the oldest record still kept."),
    click.option("--to-latest", is_flag=True, help="To the end (skip everything so far)."),
    click.option("--to-offset", type=click.IntRange(min=0), default=None,
                 help="To offset N (clamped to each partition's range)."),
    click.option("--to-datetime", default=None, metavar="TIME",
                 help="To the first record at or after TIME: ISO 8601, e.g. 2024-05-01T12:00:00Z "
                      "(no zone = local time), or milliseconds since the epoch."),
]


def _with_seek_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_seek_options):
        fn = option(fn)
    return fn


@group_group.command("seek")
@click.argument("group")
@_bootstrap
@_output
@_with_seek_options
@click.option("--shift-by", type=int, default=None,
              help="Move each committed offset by N (negative: back); clamped to the range.")
@click.option("--partition", "-p", "partitions", type=click.IntRange(min=0), multiple=True,
              help="Only this partition (repeatable; default: every partition of the topic).")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
def group_seek(group: str, bootstrap: str, output: str, topic: str, to_earliest: bool,
               to_latest: bool, to_offset: int | None, to_datetime: str | None,
               shift_by: int | None, partitions: tuple[int, ...], dry_run: bool) -> None:
    """Move GROUP's committed offsets of a topic, per partition (only while none of the
    group's consumers runs). Prints each partition's old and new offset.

    \b
    Examples:
      strata group seek billing --topic events --to-datetime 2024-05-01T12:00:00Z
      strata group seek billing --topic events --shift-by -100 --partition 0 --dry-run
      strata group seek billing --topic events --to-earliest
    """
    to, shift = _seek_target(to_earliest, to_latest, to_offset, to_datetime, shift_by,
                             "strata group seek G --topic T --to-earliest")
    _start()
    with _errors(), _admin(bootstrap) as admin:
        changes = admin.seek_group_offsets(group, topic, to, shift_by=shift,
                                           partitions=partitions or None, dry_run=dry_run)
    if output == "json":
        click.echo(json.dumps({"group": group, "dry_run": dry_run,
                               "partitions": [c.to_dict() for c in changes]}))
        return
    _table(["TOPIC", "PARTITION", "OLD-OFFSET", "NEW-OFFSET"],
           [[c.topic, c.partition, "-" if c.old is None else c.old,
             "-" if c.new is None else c.new] for c in changes])
    skipped = [c for c in changes if c.new is None]
    if skipped:
        click.echo(f"note: {len(skipped)} partition(s) had no committed offset to shift; "
                   "left alone", err=True)
    if dry_run:
        click.echo("dry run: nothing was changed", err=True)


@group_group.command("reset-offsets")
@click.argument("group")
@_bootstrap
@_output
@_with_seek_options
def group_reset_offsets(group: str, bootstrap: str, output: str, topic: str, to_earliest: bool,
                        to_latest: bool, to_offset: int | None, to_datetime: str | None) -> None:
    """Set GROUP's committed offsets for TOPIC (only while none of its consumers runs).

    'strata group seek' does the same per partition, shows old and new offsets, and has
    --shift-by and --dry-run.

    \b
    Examples:
      strata group reset-offsets billing --topic events --to-earliest
      strata group reset-offsets billing --topic events --to-offset 1000
      strata group reset-offsets billing --topic events --to-datetime 2024-05-01T12:00:00Z
    """
    to, _ = _seek_target(to_earliest, to_latest, to_offset, to_datetime, None,
                         "strata group reset-offsets G --topic T --to-earliest")
    assert to is not None
    _start()
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
    _start()
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
    _start()
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


def _ids(ids: Sequence[int]) -> str:
    return ",".join(str(i) for i in ids) or "-"


def _off(v: int) -> str:
    return "-" if v < 0 else str(v)


def _table(header: list[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def register(main: click.Group) -> None:
    """Add the client commands to the ``strata`` group (called at the end of broker/cli.py)."""
    commands: list[click.Command] = [produce_cmd, consume_cmd, topic_group, group_group,
                                     cluster_group]
    for cmd in commands:
        if cmd.name not in main.commands:
            main.add_command(cmd)

"""The client commands of ``strata``: produce and consume here, and what every client
command shares (options, error reporting, Ctrl-C); the admin commands (topic, group,
cluster) are in :mod:`strata.broker.cli.admin`.

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
from collections.abc import Iterator, Sequence
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

DEFAULT_BOOTSTRAP = "127.0.0.1:9192"
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
@click.option("--compression", type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]), default="none",
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
    """Add the client commands to the ``strata`` group (called at the end of broker/cli/main.py)."""
    from strata.broker.cli.admin import cluster_group, group_group, topic_group

    commands: list[click.Command] = [produce_cmd, consume_cmd, topic_group, group_group,
                                     cluster_group]
    for cmd in commands:
        if cmd.name not in main.commands:
            main.add_command(cmd)

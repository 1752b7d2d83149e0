"""Scenario driver for kafka-python (3.x, pure Python): ``python -m`` this module, see ../README.md."""

from __future__ import annotations

import sys

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.consumer.subscription_state import ConsumerRebalanceListener

from tests.compat.clients.python import cli
from tests.compat.clients.python.cli import Args, emit


def produce(args: Args) -> None:
    producer = KafkaProducer(
        bootstrap_servers=args.bootstrap, acks="all", enable_idempotence=True,
        compression_type=None if args.codec == "none" else args.codec,
        request_timeout_ms=min(args.timeout_ms, 30_000),
    )  # fmt: skip
    try:
        pacer = cli.Pacer(args.rate)
        futures = []
        for i in range(args.count):
            pacer.wait()
            key, value = cli.key_of(i), cli.value_of(args.prefix, i)
            futures.append((key, value, producer.send(args.topic, key=key.encode(), value=value.encode())))
        for key, value, future in futures:
            meta = future.get(timeout=args.remaining_s())
            emit("ack", partition=meta.partition, offset=meta.offset, key=key, value=value)
        emit("done", count=len(futures))
    finally:
        producer.close(timeout=5)


def _partitions(consumer: KafkaConsumer, args: Args) -> list[TopicPartition]:
    while True:
        found = consumer.partitions_for_topic(args.topic)
        if found:
            return [TopicPartition(args.topic, p) for p in sorted(found)]
        args.check_deadline()
        consumer.poll(timeout_ms=cli.POLL_MS)  # drives the metadata refresh


def consume(args: Args) -> None:
    consumer = KafkaConsumer(bootstrap_servers=args.bootstrap, group_id=None,
                             enable_auto_commit=False)  # fmt: skip
    try:
        partitions = _partitions(consumer, args)
        consumer.assign(partitions)
        if args.start_timestamp is None:
            consumer.seek_to_beginning(*partitions)
        else:
            found = consumer.offsets_for_times({tp: args.start_timestamp for tp in partitions})
            ends = consumer.end_offsets(partitions)
            for tp in partitions:
                at = found.get(tp)
                consumer.seek(tp, at.offset if at is not None else ends[tp])
        seen = 0
        while seen < args.count:
            args.check_deadline()
            for records in consumer.poll(timeout_ms=cli.POLL_MS).values():
                for r in records:
                    cli.emit_record(r.partition, r.offset, r.key, r.value, r.timestamp)
                    seen += 1
        emit("done", count=seen)
    finally:
        consumer.close()


class _Listener(ConsumerRebalanceListener):
    def __init__(self, consumer: KafkaConsumer) -> None:
        self.consumer = consumer

    def on_partitions_revoked(self, revoked):  # type: ignore[no-untyped-def]
        pass

    def on_partitions_assigned(self, assigned):  # type: ignore[no-untyped-def]
        cli.emit_assigned([tp.partition for tp in self.consumer.assignment()])


def group(args: Args) -> None:
    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap, group_id=args.group, enable_auto_commit=False,
        auto_offset_reset="earliest", session_timeout_ms=args.session_timeout_ms,
        heartbeat_interval_ms=max(100, args.session_timeout_ms // 6),
    )  # fmt: skip
    # kafka-python 3.0.12 can lose a SyncGroup answer when its first generation saw no
    # partitions (the topic's metadata still on its way) and it rejoins at once: the answer
    # arrives and the consumer never takes its assignment. Knowing the topic before joining,
    # as a consumer that has run for a while does, keeps it to one rebalance.
    while not consumer.partitions_for_topic(args.topic):
        args.check_deadline()
    consumer.subscribe(topics=[args.topic], listener=_Listener(consumer))
    try:
        while not args.stop.is_set():
            args.check_deadline()
            polled = consumer.poll(timeout_ms=cli.POLL_MS)
            done: dict[int, int] = {}
            for tp, records in polled.items():
                for r in records:
                    cli.emit_record(r.partition, r.offset, r.key, r.value, r.timestamp)
                    done[tp.partition] = r.offset + 1
            if done:
                consumer.commit()
                cli.emit_committed(done)
    finally:
        consumer.close()  # leaves the group


def _describe(admin: KafkaAdminClient, args: Args, step: str, partitions: int,
              want: dict[str, str]) -> None:  # fmt: skip
    """Emit the partition count and the configs read back once they show what the scenario
    did: Kafka's brokers learn a change a moment after it is acknowledged, each on its own."""
    keys = sorted({*args.config, *args.alter})
    while True:
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, args.topic)],
                                         config_filter="all")["topic"][args.topic]  # fmt: skip
        picked = {k: configs[k]["value"] for k in keys if k in configs}
        count = len(admin.describe_topics([args.topic])[0]["partitions"])
        if count >= partitions and cli.shows(picked, want):
            break
        args.check_deadline()
    emit("step", step=step, partitions=count, configs=picked)


def admin(args: Args) -> None:
    client = KafkaAdminClient(bootstrap_servers=args.bootstrap,
                              request_timeout_ms=min(args.timeout_ms, 30_000))  # fmt: skip
    try:
        client.create_topics({args.topic: {"num_partitions": args.partitions,
                                           "replication_factor": args.replication_factor,
                                           "configs": args.config}},
                             wait_for_metadata=True)  # fmt: skip
        emit("step", step="create")
        _describe(client, args, "describe", args.partitions, args.config)
        client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, args.topic, configs=args.alter)])
        emit("step", step="alter")
        _describe(client, args, "describe-after-alter", args.partitions, args.altered)
        client.create_partitions({args.topic: args.add_partitions})
        emit("step", step="add-partitions")
        _describe(client, args, "describe-after-add", args.add_partitions, args.altered)
    finally:
        client.close()


def delete(args: Args) -> None:
    client = KafkaAdminClient(bootstrap_servers=args.bootstrap)
    try:
        client.delete_topics([args.topic])
        while args.topic in client.list_topics():
            args.check_deadline()
        emit("step", step="delete")
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(cli.main({"produce": produce, "consume": consume, "group": group, "admin": admin,
                       "delete": delete}, prog="kafka_python_driver"))  # fmt: skip
